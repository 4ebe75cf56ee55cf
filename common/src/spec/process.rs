//! The `[process]` attributes besides argv/env/cwd/user: resource limits (`rlimits`, OCI
//! names) and `oom_score_adj`, the same in both modes.
//!
//! Every run gets a fixed rlimit set, never the caller's: [`DEFAULT_RLIMITS`] first, then
//! the spec file's `[process] rlimits`, then `--ulimit` flags (each replaces an earlier
//! value of the same limit). Limits not named anywhere are isol's own: the CLI completes
//! the set from its own limits (`isol_sandbox::rlimit::complete`) and both modes set all
//! of them, so VM mode's guest does not fall back to its kernel's defaults.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::{invalid, SpecError};

/// "No limit" (RLIM_INFINITY).
pub const RLIM_INFINITY: u64 = u64::MAX;

/// A resource limit of the workload, as setrlimit(2) takes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rlimit {
    /// The Linux resource number (RLIMIT_NOFILE = 7, ...).
    pub resource: u32,
    /// Soft limit.
    pub soft: u64,
    /// Hard limit (at least `soft`).
    pub hard: u64,
}

impl Rlimit {
    /// The OCI name (`RLIMIT_NOFILE`).
    pub fn name(&self) -> &'static str {
        RLIMIT_NAMES
            .iter()
            .find(|(_, n)| *n == self.resource)
            .map_or("RLIMIT_?", |(s, _)| s)
    }
}

/// OCI names and Linux resource numbers (asm-generic/resource.h, the same on x86_64).
pub const RLIMIT_NAMES: &[(&str, u32)] = &[
    ("RLIMIT_CPU", 0),
    ("RLIMIT_FSIZE", 1),
    ("RLIMIT_DATA", 2),
    ("RLIMIT_STACK", 3),
    ("RLIMIT_CORE", 4),
    ("RLIMIT_RSS", 5),
    ("RLIMIT_NPROC", 6),
    ("RLIMIT_NOFILE", 7),
    ("RLIMIT_MEMLOCK", 8),
    ("RLIMIT_AS", 9),
    ("RLIMIT_LOCKS", 10),
    ("RLIMIT_SIGPENDING", 11),
    ("RLIMIT_MSGQUEUE", 12),
    ("RLIMIT_NICE", 13),
    ("RLIMIT_RTPRIO", 14),
    ("RLIMIT_RTTIME", 15),
];

/// RLIMIT_NOFILE.
pub const RLIMIT_NOFILE: u32 = 7;

/// The limits every run starts from: open files 1024:1024, as runc's/containerd's default
/// spec and docker give containers. 1024 keeps select(2)-based programs working, and a
/// fixed value makes `ulimit -n` the same in both modes whoever runs isol.
pub const DEFAULT_RLIMITS: &[Rlimit] = &[Rlimit {
    resource: RLIMIT_NOFILE,
    soft: 1024,
    hard: 1024,
}];

/// Smallest and largest `oom_score_adj` (linux/oom.h).
pub const OOM_SCORE_ADJ_RANGE: std::ops::RangeInclusive<i32> = -1000..=1000;

/// `[process] rlimits` as written: `RLIMIT_NOFILE = [soft, hard]`.
#[derive(Debug, Default, Deserialize)]
#[serde(transparent)]
pub(super) struct RlimitsFile(BTreeMap<String, toml::Value>);

fn resource(field: &str, name: &str) -> Result<u32, SpecError> {
    let upper = name.to_ascii_uppercase();
    let full = if upper.starts_with("RLIMIT_") {
        upper
    } else {
        format!("RLIMIT_{upper}")
    };
    RLIMIT_NAMES
        .iter()
        .find(|(n, _)| *n == full)
        .map(|(_, r)| *r)
        .ok_or_else(|| {
            invalid(
                field,
                name,
                "is not a resource limit",
                "use an OCI name such as RLIMIT_NOFILE, RLIMIT_NPROC, RLIMIT_CORE (or nofile)",
            )
        })
}

fn limit_value(field: &str, v: &str) -> Result<u64, SpecError> {
    match v {
        "unlimited" | "-1" => Ok(RLIM_INFINITY),
        _ => v.parse().map_err(|_| {
            invalid(
                field,
                v,
                "is not a limit",
                "give a non-negative integer or \"unlimited\"",
            )
        }),
    }
}

fn checked(field: &str, shown: &str, r: Rlimit) -> Result<Rlimit, SpecError> {
    if r.soft > r.hard {
        return Err(invalid(
            field,
            shown,
            "has a soft limit above its hard limit",
            "make SOFT <= HARD",
        ));
    }
    Ok(r)
}

/// Parses one `--ulimit NAME=SOFT[:HARD]` (HARD defaults to SOFT, docker's syntax).
pub fn parse_ulimit(flag: &str) -> Result<Rlimit, SpecError> {
    let field = "--ulimit";
    let bad = || {
        invalid(
            field,
            flag,
            "is not NAME=SOFT[:HARD]",
            "write e.g. --ulimit nofile=1024:4096",
        )
    };
    let (name, vals) = flag.split_once('=').ok_or_else(bad)?;
    let (soft, hard) = vals.split_once(':').unwrap_or((vals, vals));
    let r = Rlimit {
        resource: resource(field, name)?,
        soft: limit_value(field, soft)?,
        hard: limit_value(field, hard)?,
    };
    checked(field, flag, r)
}

fn toml_limit(field: &str, v: &toml::Value) -> Result<u64, SpecError> {
    match v {
        toml::Value::Integer(i) if *i == -1 => Ok(RLIM_INFINITY),
        toml::Value::Integer(i) => u64::try_from(*i).map_err(|_| {
            invalid(
                field,
                i,
                "is negative",
                "give a limit >= 0 or \"unlimited\"",
            )
        }),
        toml::Value::String(s) => limit_value(field, s),
        other => Err(invalid(
            field,
            other,
            "is not a limit",
            "give an integer or \"unlimited\"",
        )),
    }
}

/// The run's rlimits: defaults, then the file's, then the flags'; one entry per resource,
/// ordered by resource number.
pub(super) fn rlimits(file: &RlimitsFile, flags: &[String]) -> Result<Vec<Rlimit>, SpecError> {
    let mut out: BTreeMap<u32, Rlimit> = DEFAULT_RLIMITS.iter().map(|r| (r.resource, *r)).collect();
    for (name, v) in &file.0 {
        let field = format!("process.rlimits.{name}");
        let pair = match v {
            toml::Value::Array(a) if a.len() == 2 => (&a[0], &a[1]),
            other => {
                return Err(invalid(
                    &field,
                    other,
                    "is not [soft, hard]",
                    "write e.g. RLIMIT_NOFILE = [1024, 4096]",
                ))
            }
        };
        let r = Rlimit {
            resource: resource(&field, name)?,
            soft: toml_limit(&field, pair.0)?,
            hard: toml_limit(&field, pair.1)?,
        };
        out.insert(r.resource, checked(&field, &v.to_string(), r)?);
    }
    for f in flags {
        let r = parse_ulimit(f)?;
        out.insert(r.resource, r);
    }
    Ok(out.into_values().collect())
}

/// `oom_score_adj`: the flag's, else the file's, else 0.
pub(super) fn oom_score_adj(flag: Option<&str>, file: Option<i64>) -> Result<i32, SpecError> {
    let (field, v) = match (flag, file) {
        (Some(s), _) => (
            "--oom-score-adj",
            s.parse::<i64>().map_err(|_| {
                invalid(
                    "--oom-score-adj",
                    s,
                    "is not an integer",
                    "give -1000..1000",
                )
            })?,
        ),
        (None, Some(v)) => ("process.oom_score_adj", v),
        (None, None) => return Ok(0),
    };
    i32::try_from(v)
        .ok()
        .filter(|v| OOM_SCORE_ADJ_RANGE.contains(v))
        .ok_or_else(|| invalid(field, v, "is out of range", "give -1000..1000"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(text: &str) -> RlimitsFile {
        toml::from_str(text).unwrap()
    }

    #[test]
    fn test_defaults_are_nofile_1024() {
        let r = rlimits(&RlimitsFile::default(), &[]).unwrap();
        assert_eq!(r, DEFAULT_RLIMITS);
        assert_eq!(r[0].name(), "RLIMIT_NOFILE");
    }

    #[test]
    fn test_file_then_flags_replace_by_resource() {
        let f = file("RLIMIT_NOFILE = [10, 20]\nRLIMIT_CORE = [0, \"unlimited\"]");
        let r = rlimits(&f, &["nofile=5".into(), "RLIMIT_NPROC=1:2".into()]).unwrap();
        let core = Rlimit {
            resource: 4,
            soft: 0,
            hard: RLIM_INFINITY,
        };
        let nproc = Rlimit {
            resource: 6,
            soft: 1,
            hard: 2,
        };
        let nofile = Rlimit {
            resource: 7,
            soft: 5,
            hard: 5,
        };
        assert_eq!(r, [core, nproc, nofile]);
    }

    #[test]
    fn test_bad_rlimits_name_the_field() {
        let e = parse_ulimit("nofile=9:3").unwrap_err().to_string();
        assert!(
            e.starts_with("--ulimit: \"nofile=9:3\" has a soft limit above"),
            "{e}"
        );
        let e = parse_ulimit("bogus=1").unwrap_err().to_string();
        assert!(e.contains("is not a resource limit"), "{e}");
        let e = parse_ulimit("nofile").unwrap_err().to_string();
        assert!(e.contains("NAME=SOFT[:HARD]"), "{e}");
        let e = rlimits(&file("RLIMIT_NOFILE = 3"), &[])
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("process.rlimits.RLIMIT_NOFILE: "), "{e}");
    }

    #[test]
    fn test_oom_score_adj_default_range_and_precedence() {
        assert_eq!(oom_score_adj(None, None).unwrap(), 0);
        assert_eq!(oom_score_adj(None, Some(-5)).unwrap(), -5);
        assert_eq!(oom_score_adj(Some("7"), Some(-5)).unwrap(), 7);
        assert!(oom_score_adj(Some("1001"), None).is_err());
        assert!(oom_score_adj(None, Some(-1001)).is_err());
        assert!(oom_score_adj(Some("x"), None).is_err());
    }
}
