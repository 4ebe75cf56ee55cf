//! The `seccomp` setting of a spec (`--seccomp`, `[security] seccomp`): which profile the
//! workload's seccomp filter is compiled from (by isol-sandbox, in both modes).

use std::path::PathBuf;

use super::{invalid, SpecError};

/// Which seccomp profile the workload runs under.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Seccomp {
    /// isol's default profile (Docker's default, for x86_64): the default.
    #[default]
    Default,
    /// No filter at all.
    Unconfined,
    /// A profile file in the OCI/Docker JSON format, read when the spec is resolved.
    Profile {
        /// The file, as given.
        path: PathBuf,
        /// Its text (parsed and compiled by the backend; errors name the JSON field).
        json: String,
    },
}

/// The `[security]` section of a spec file.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct SecurityFile {
    pub(super) seccomp: Option<String>,
}

/// `default`, `unconfined`, or the path of a profile file (read now).
pub(super) fn parse_seccomp(field: &str, v: &str) -> Result<Seccomp, SpecError> {
    match v {
        "default" => Ok(Seccomp::Default),
        "unconfined" => Ok(Seccomp::Unconfined),
        "" => Err(invalid(
            field,
            v,
            "is empty",
            "use default, unconfined or the path of a JSON seccomp profile",
        )),
        path => match std::fs::read_to_string(path) {
            Ok(json) => Ok(Seccomp::Profile {
                path: PathBuf::from(path),
                json,
            }),
            Err(e) => Err(invalid(
                field,
                v,
                &format!("is not a readable profile file ({e})"),
                "use default, unconfined or the path of a JSON seccomp profile",
            )),
        },
    }
}

/// The setting from the flag, else the file's `[security] seccomp`, else the default.
pub(super) fn pick_seccomp(
    flag: Option<&str>,
    file: Option<&SecurityFile>,
) -> Result<Seccomp, SpecError> {
    match (flag, file.and_then(|f| f.seccomp.as_deref())) {
        (Some(v), _) => parse_seccomp("--seccomp", v),
        (None, Some(v)) => parse_seccomp("security.seccomp", v),
        (None, None) => Ok(Seccomp::Default),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::{Overrides, WorkloadSpec};

    fn ov(seccomp: Option<&str>) -> Overrides {
        Overrides {
            args: vec!["true".into()],
            seccomp: seccomp.map(String::from),
            ..Default::default()
        }
    }

    #[test]
    fn test_spec_security_seccomp_from_file_and_flag() {
        let toml = "[security]\nseccomp = \"unconfined\"\n";
        let s = WorkloadSpec::from_toml(toml, &ov(None)).unwrap();
        assert_eq!(s.seccomp, Seccomp::Unconfined);
        let s = WorkloadSpec::from_toml(toml, &ov(Some("default"))).unwrap();
        assert_eq!(s.seccomp, Seccomp::Default);
        let s = WorkloadSpec::from_toml("", &ov(None)).unwrap();
        assert_eq!(s.seccomp, Seccomp::Default);
    }

    #[test]
    fn test_spec_security_unknown_field_is_error() {
        let e = WorkloadSpec::from_toml("[security]\nsecomp = \"default\"\n", &ov(None));
        assert!(e.unwrap_err().to_string().contains("secomp"));
    }

    #[test]
    fn test_pick_seccomp_flag_wins_and_default_is_default() {
        let file = SecurityFile {
            seccomp: Some("unconfined".into()),
        };
        assert_eq!(pick_seccomp(None, None).unwrap(), Seccomp::Default);
        assert_eq!(
            pick_seccomp(None, Some(&file)).unwrap(),
            Seccomp::Unconfined
        );
        assert_eq!(
            pick_seccomp(Some("default"), Some(&file)).unwrap(),
            Seccomp::Default
        );
    }

    #[test]
    fn test_parse_seccomp_reads_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("p.json");
        std::fs::write(&p, "{}").unwrap();
        let s = parse_seccomp("--seccomp", p.to_str().unwrap()).unwrap();
        assert_eq!(
            s,
            Seccomp::Profile {
                path: p.clone(),
                json: "{}".into()
            }
        );
    }

    #[test]
    fn test_parse_seccomp_missing_file_names_field() {
        let e = parse_seccomp("security.seccomp", "/nonexistent/p.json").unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.starts_with("security.seccomp: \"/nonexistent/p.json\""),
            "{msg}"
        );
        assert!(msg.contains("unconfined"), "{msg}");
    }
}
