use super::*;

fn ov_args(args: &[&str]) -> Overrides {
    Overrides {
        args: args.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    }
}

fn err_text(r: Result<WorkloadSpec, SpecError>) -> String {
    r.expect_err("spec should be rejected").to_string()
}

#[test]
fn test_resolve_no_file_defaults() {
    let s = WorkloadSpec::resolve(None, &ov_args(&["true"])).unwrap();
    assert_eq!(s.mode, Mode::Container);
    assert_eq!(s.args, vec!["true"]);
    assert_eq!(s.cwd, PathBuf::from("/"));
    assert_eq!(s.user, User { uid: 0, gid: 0 });
    assert_eq!(s.hostname, "isol");
    assert_eq!(s.rootfs, None);
    assert!(!s.read_only);
    assert_eq!(s.resources, Resources::default());
    assert_eq!(s.timeout, None);
}

#[test]
fn test_resolve_no_command_is_error() {
    assert!(matches!(
        WorkloadSpec::resolve(None, &Overrides::default()),
        Err(SpecError::NoCommand)
    ));
}

#[test]
fn test_from_toml_full_spec() {
    let text = r#"
        mode = "vm"
        hostname = "box"
        timeout = 2.5
        [process]
        args = ["sh", "-c", "echo hi"]
        env = { A = "1", EMPTY = "" }
        cwd = "/tmp"
        user = { uid = 1000, gid = 100 }
        [rootfs]
        path = "/"
        read_only = true
        [[volumes]]
        host = "/tmp"
        path = "/data"
        read_only = true
        [resources]
        cpus = 1.5
        memory = "64M"
        pids = 32
        [network]
        mode = "none"
    "#;
    let s = WorkloadSpec::from_toml(text, &Overrides::default()).unwrap();
    assert_eq!(s.mode, Mode::Vm);
    assert_eq!(s.hostname, "box");
    assert_eq!(s.timeout, Some(Duration::from_millis(2500)));
    assert_eq!(s.args, vec!["sh", "-c", "echo hi"]);
    assert_eq!(s.env.get("EMPTY").map(String::as_str), Some(""));
    assert_eq!(
        s.user,
        User {
            uid: 1000,
            gid: 100
        }
    );
    assert!(s.read_only);
    assert_eq!(s.volumes.len(), 1);
    assert!(s.volumes[0].read_only);
    assert_eq!(s.resources.cpus, Some(1.5));
    assert_eq!(s.resources.memory, Some(64 << 20));
    assert_eq!(s.resources.pids, Some(32));
    assert_eq!(s.visible_cpus(), Some(2));
}

#[test]
fn test_flags_override_file() {
    let text = "[process]\nargs=[\"a\"]\n[resources]\nmemory=\"1G\"\n";
    let ov = Overrides {
        args: vec!["b".into()],
        memory: Some("64M".into()),
        mode: Some("vm".into()),
        env: vec!["X=a=b".into()],
        ..Default::default()
    };
    let s = WorkloadSpec::from_toml(text, &ov).unwrap();
    assert_eq!(s.args, vec!["b"]);
    assert_eq!(s.resources.memory, Some(64 << 20));
    assert_eq!(s.mode, Mode::Vm);
    assert_eq!(s.env.get("X").map(String::as_str), Some("a=b"));
}

#[test]
fn test_bad_memory_names_field_value_and_hint() {
    let text = "[process]\nargs=[\"a\"]\n[resources]\nmemory=\"12 parsecs\"\n";
    let e = err_text(WorkloadSpec::from_toml(text, &Overrides::default()));
    assert_eq!(
        e,
        "resources.memory: \"12 parsecs\" is not a size; use 64M, 1G or bytes"
    );
}

#[test]
fn test_bad_memory_flag_names_flag() {
    let ov = Overrides {
        memory: Some("lots".into()),
        ..ov_args(&["true"])
    };
    let e = err_text(WorkloadSpec::resolve(None, &ov));
    assert!(e.starts_with("--memory: \"lots\" is not a size"), "{e}");
}

#[test]
fn test_unknown_field_is_error() {
    let e = err_text(WorkloadSpec::from_toml(
        "[process]\nargs=[\"a\"]\ncolour=\"red\"\n",
        &Overrides::default(),
    ));
    assert!(e.contains("colour"), "{e}");
}

#[test]
fn test_unknown_section_is_error() {
    let e = err_text(WorkloadSpec::from_toml(
        "[gpu]\ncount=1\n",
        &ov_args(&["x"]),
    ));
    assert!(e.contains("gpu"), "{e}");
}

#[test]
fn test_bad_values_rejected() {
    let cases: &[(Overrides, &str)] = &[
        (
            Overrides {
                mode: Some("jail".into()),
                ..ov_args(&["x"])
            },
            "--mode",
        ),
        (
            Overrides {
                cpus: Some("0".into()),
                ..ov_args(&["x"])
            },
            "--cpus",
        ),
        (
            Overrides {
                cpus: Some("nan".into()),
                ..ov_args(&["x"])
            },
            "--cpus",
        ),
        (
            Overrides {
                cpus: Some("65".into()),
                ..ov_args(&["x"])
            },
            "--cpus",
        ),
        (
            Overrides {
                pids: Some("0".into()),
                ..ov_args(&["x"])
            },
            "--pids",
        ),
        (
            Overrides {
                memory: Some("1K".into()),
                ..ov_args(&["x"])
            },
            "--memory",
        ),
        (
            Overrides {
                timeout: Some("-1".into()),
                ..ov_args(&["x"])
            },
            "--timeout",
        ),
        (
            Overrides {
                user: Some("root".into()),
                ..ov_args(&["x"])
            },
            "--user",
        ),
        (
            Overrides {
                hostname: Some("a b".into()),
                ..ov_args(&["x"])
            },
            "--hostname",
        ),
        (
            Overrides {
                cwd: Some("rel".into()),
                ..ov_args(&["x"])
            },
            "--workdir",
        ),
        (
            Overrides {
                env: vec!["NOVALUE".into()],
                ..ov_args(&["x"])
            },
            "--env",
        ),
        (
            Overrides {
                rootfs: Some("/nonexistent/rootfs".into()),
                ..ov_args(&["x"])
            },
            "--rootfs",
        ),
        (
            Overrides {
                volumes: vec!["/tmp".into()],
                ..ov_args(&["x"])
            },
            "--volume",
        ),
        (
            Overrides {
                volumes: vec!["/tmp:/".into()],
                ..ov_args(&["x"])
            },
            "--volume",
        ),
        (
            Overrides {
                volumes: vec!["/tmp:/a".into(), "/tmp:/a".into()],
                ..ov_args(&["x"])
            },
            "--volume",
        ),
    ];
    for (ov, field) in cases {
        let e = err_text(WorkloadSpec::resolve(None, ov));
        assert!(e.starts_with(field), "{e} should start with {field}");
    }
}

#[test]
fn test_user_uid_only_defaults_gid_zero() {
    let ov = Overrides {
        user: Some("1000".into()),
        ..ov_args(&["x"])
    };
    assert_eq!(
        WorkloadSpec::resolve(None, &ov).unwrap().user,
        User { uid: 1000, gid: 0 }
    );
}

#[test]
fn test_volume_flag_ro() {
    let ov = Overrides {
        volumes: vec!["/tmp:/data:ro".into()],
        ..ov_args(&["x"])
    };
    let s = WorkloadSpec::resolve(None, &ov).unwrap();
    assert_eq!(
        s.volumes[0],
        Volume {
            host: "/tmp".into(),
            path: "/data".into(),
            read_only: true
        }
    );
}

#[test]
fn test_effective_env_defaults_and_user_wins() {
    let ov = Overrides {
        env: vec!["PATH=/x".into(), "E=".into()],
        ..ov_args(&["x"])
    };
    let s = WorkloadSpec::resolve(None, &ov).unwrap();
    let env = s.effective_env();
    assert!(env.contains(&("PATH".into(), "/x".into())));
    assert!(env.contains(&("HOME".into(), "/root".into())));
    assert!(env.contains(&("HOSTNAME".into(), "isol".into())));
    assert!(env.contains(&("E".into(), "".into())));
}

#[test]
fn test_resolve_missing_file_is_read_error() {
    let r = WorkloadSpec::resolve(Some(Path::new("/nonexistent/spec.toml")), &ov_args(&["x"]));
    assert!(matches!(r, Err(SpecError::Read { .. })));
}

#[test]
fn test_cpu_quota_us_scales_and_has_floor() {
    assert_eq!(cpu_quota_us(0.5), 50_000);
    assert_eq!(cpu_quota_us(2.0), 200_000);
    assert_eq!(cpu_quota_us(0.001), 1000);
}
