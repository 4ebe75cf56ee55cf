use std::path::{Path, PathBuf};

use isol_common::spec::Volume;
use nix::mount::MsFlags;

use super::*;
use crate::syscall::fake::FakeSyscall;
use crate::syscall::fake::FileKind;

fn cfg<'a>(read_only: bool, volumes: &'a [Volume]) -> RootfsConfig<'a> {
    RootfsConfig {
        rootfs: Path::new("/rootfs"),
        scratch: Path::new("/run/isol/container/c1"),
        read_only,
        volumes,
        cwd: Path::new("/"),
        cgroups: &[],
    }
}

fn all_dirs(_: &Path) -> bool {
    true
}

fn no_dirs(_: &Path) -> bool {
    false
}

fn targets(steps: &[Step]) -> Vec<String> {
    steps
        .iter()
        .filter_map(|s| match s {
            Step::Mount { target, .. } => Some(target.display().to_string()),
            _ => None,
        })
        .collect()
}

#[test]
fn test_plan_writable_uses_overlay_in_private_tmpfs() {
    let steps = plan(&cfg(false, &[]), &all_dirs).unwrap();
    assert!(
        matches!(&steps[0], Step::Mount { flags, .. } if *flags == MsFlags::MS_REC | MsFlags::MS_PRIVATE)
    );
    let overlay = steps
        .iter()
        .find(|s| {
            matches!(
                s,
                Step::Mount {
                    fstype: Some("overlay"),
                    ..
                }
            )
        })
        .expect("an overlay mount");
    let Step::Mount { target, data, .. } = overlay else {
        unreachable!()
    };
    assert_eq!(target, Path::new("/run/isol/container/c1/root"));
    assert_eq!(
        data.as_deref(),
        Some("lowerdir=/rootfs,upperdir=/run/isol/container/c1/upper,workdir=/run/isol/container/c1/work")
    );
    assert!(steps.contains(&Step::PivotRoot {
        new_root: PathBuf::from("/run/isol/container/c1/root")
    }));
}

#[test]
fn test_plan_never_targets_the_rootfs_dir() {
    for ro in [false, true] {
        for f in [all_dirs as fn(&Path) -> bool, no_dirs] {
            let steps = plan(&cfg(ro, &[]), &f).unwrap();
            for s in &steps {
                let p = match s {
                    Step::Mount { target, .. } => target,
                    Step::Mkdir { path, .. } | Step::Mknod { path, .. } => path,
                    Step::Symlink { link, .. } => link,
                    _ => continue,
                };
                assert!(!p.starts_with("/rootfs"), "{s:?} writes into the rootfs");
            }
        }
    }
}

#[test]
fn test_plan_read_only_binds_and_makes_ro_before_submounts() {
    let steps = plan(&cfg(true, &[]), &all_dirs).unwrap();
    assert!(!steps.iter().any(|s| matches!(
        s,
        Step::Mount {
            fstype: Some("overlay"),
            ..
        }
    )));
    assert!(
        matches!(&steps[1], Step::Mount { source: Some(s), flags, .. }
        if s == Path::new("/rootfs") && flags.contains(MsFlags::MS_BIND))
    );
    assert!(matches!(&steps[2], Step::Mount { flags, .. }
        if flags.contains(MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY)));
    assert!(!steps
        .iter()
        .any(|s| matches!(s, Step::Mkdir { path, .. } if path.ends_with("proc"))));
}

#[test]
fn test_plan_read_only_with_missing_mount_point_uses_overlay_then_remounts_root() {
    let steps = plan(&cfg(true, &[]), &no_dirs).unwrap();
    assert!(steps.iter().any(|s| matches!(
        s,
        Step::Mount {
            fstype: Some("overlay"),
            ..
        }
    )));
    let last = steps.last().unwrap();
    assert!(matches!(last, Step::Mount { target, flags, .. }
        if target == Path::new("/") && flags.contains(MsFlags::MS_RDONLY | MsFlags::MS_REMOUNT)));
}

#[test]
fn test_plan_system_mounts_and_dev() {
    let steps = plan(&cfg(false, &[]), &all_dirs).unwrap();
    let t = targets(&steps);
    for want in [
        "root/proc",
        "root/sys",
        "root/dev",
        "root/dev/pts",
        "root/dev/shm",
        "root/tmp",
    ] {
        assert!(
            t.iter().any(|x| x.ends_with(want)),
            "missing {want} in {t:?}"
        );
    }
    let sys = steps
        .iter()
        .find(|s| {
            matches!(
                s,
                Step::Mount {
                    fstype: Some("sysfs"),
                    ..
                }
            )
        })
        .unwrap();
    assert!(matches!(sys, Step::Mount { flags, .. } if flags.contains(MsFlags::MS_RDONLY)));
    let nodes: Vec<_> = steps
        .iter()
        .filter_map(|s| match s {
            Step::Mknod { path, .. } => path.file_name().map(|n| n.to_string_lossy().into_owned()),
            _ => None,
        })
        .collect();
    assert_eq!(nodes, ["null", "zero", "full", "random", "urandom", "tty"]);
    assert!(steps.contains(&Step::Symlink {
        target: PathBuf::from("pts/ptmx"),
        link: PathBuf::from("/run/isol/container/c1/root/dev/ptmx")
    }));
    let devpts = steps
        .iter()
        .find(|s| {
            matches!(
                s,
                Step::Mount {
                    fstype: Some("devpts"),
                    ..
                }
            )
        })
        .unwrap();
    assert!(matches!(devpts, Step::Mount { data: Some(d), .. } if d.contains("newinstance")));
}

#[test]
fn test_plan_volumes_opened_before_pivot_and_bound_after_sorted() {
    let vols = [
        Volume {
            host: "/h/b".into(),
            path: "/data/sub".into(),
            read_only: false,
        },
        Volume {
            host: "/h/a".into(),
            path: "/data".into(),
            read_only: true,
        },
    ];
    let steps = plan(&cfg(false, &vols), &all_dirs).unwrap();
    let pivot = steps
        .iter()
        .position(|s| matches!(s, Step::PivotRoot { .. }))
        .unwrap();
    let open_a = steps
        .iter()
        .position(|s| {
            *s == Step::OpenHost {
                path: "/h/a".into(),
                slot: 0,
            }
        })
        .unwrap();
    assert!(open_a < pivot);
    let bind_a = steps
        .iter()
        .position(|s| {
            *s == Step::BindHandle {
                slot: 0,
                target: "/data".into(),
            }
        })
        .unwrap();
    let bind_b = steps
        .iter()
        .position(|s| {
            *s == Step::BindHandle {
                slot: 1,
                target: "/data/sub".into(),
            }
        })
        .unwrap();
    assert!(pivot < bind_a && bind_a < bind_b);
    assert!(
        matches!(&steps[bind_a + 1], Step::Mount { target, flags, .. }
        if target == Path::new("/data") && flags.contains(MsFlags::MS_RDONLY))
    );
    assert!(steps.contains(&Step::MkdirAll {
        path: "/data/sub".into()
    }));
}

#[test]
fn test_plan_rejects_dotdot_and_option_characters() {
    let vols = [Volume {
        host: "/h".into(),
        path: "/a/../../etc".into(),
        read_only: false,
    }];
    assert!(matches!(
        plan(&cfg(false, &vols), &all_dirs),
        Err(PlanError::DotDot { .. })
    ));
    let mut c = cfg(false, &[]);
    c.rootfs = Path::new("/root,fs");
    assert!(matches!(
        plan(&c, &all_dirs),
        Err(PlanError::UnsupportedPath { .. })
    ));
}

#[test]
fn test_plan_masks_and_readonly_paths_after_pivot() {
    let steps = plan(&cfg(false, &[]), &all_dirs).unwrap();
    let pivot = steps
        .iter()
        .position(|s| matches!(s, Step::PivotRoot { .. }))
        .unwrap();
    let kcore = steps
        .iter()
        .position(|s| {
            *s == Step::Mask {
                path: "/proc/kcore".into(),
            }
        })
        .unwrap();
    let sys = steps
        .iter()
        .position(|s| {
            *s == Step::ReadOnly {
                path: "/proc/sys".into(),
            }
        })
        .unwrap();
    assert!(pivot < kcore && pivot < sys);
}

#[test]
fn test_apply_masks_by_kind_and_skips_missing() {
    let mut fake = FakeSyscall::default();
    fake.kinds.insert("/proc/acpi".into(), FileKind::Dir);
    fake.kinds.insert("/proc/kcore".into(), FileKind::Other);
    fake.kinds.insert("/proc/nothing".into(), FileKind::Missing);
    fake.kinds.insert("/proc/sys".into(), FileKind::Dir);
    fake.kinds.insert("/proc/none".into(), FileKind::Missing);
    let steps = [
        Step::Mask {
            path: "/proc/acpi".into(),
        },
        Step::Mask {
            path: "/proc/kcore".into(),
        },
        Step::Mask {
            path: "/proc/nothing".into(),
        },
        Step::ReadOnly {
            path: "/proc/sys".into(),
        },
        Step::ReadOnly {
            path: "/proc/none".into(),
        },
    ];
    apply(&steps, &fake, &mut || Ok(())).unwrap();
    let log = fake.log();
    assert_eq!(log.len(), 7, "{log:#?}");
    assert!(
        log[0].starts_with("mount /dev/null /proc/acpi - "),
        "tried as a file first"
    );
    assert!(
        log[1].starts_with("mount tmpfs /proc/acpi tmpfs"),
        "then as a directory"
    );
    assert!(log[2].starts_with("mount /dev/null /proc/kcore - ") && log[2].contains("MS_BIND"));
    assert!(
        log[3].starts_with("mount /dev/null /proc/nothing"),
        "missing: one try, skipped"
    );
    assert!(log[4].starts_with("mount /proc/sys /proc/sys -"));
    assert!(log[5].contains("MS_RDONLY") && log[5].contains("MS_REMOUNT"));
    assert!(
        log[6].starts_with("mount /proc/none /proc/none -"),
        "missing: no remount"
    );
}

#[test]
fn test_apply_stops_at_first_failure_and_names_the_step() {
    let fake = FakeSyscall {
        fail_on: Some("mount overlay".into()),
        ..Default::default()
    };
    let steps = plan(&cfg(false, &[]), &all_dirs).unwrap();
    let err = apply(&steps, &fake, &mut || Ok(())).unwrap_err();
    assert_eq!(err.step, "mount overlay on /run/isol/container/c1/root");
    assert_eq!(err.errno, nix::errno::Errno::EPERM);
    assert!(fake.log().last().unwrap().starts_with("mount overlay"));
}

#[test]
fn test_apply_full_plan_against_fake_records_every_step() {
    let vols = [Volume {
        host: "/h".into(),
        path: "/v".into(),
        read_only: false,
    }];
    let fake = FakeSyscall::default();
    let steps = plan(&cfg(false, &vols), &all_dirs).unwrap();
    apply(&steps, &fake, &mut || Ok(())).unwrap();
    let log = fake.log();
    assert!(log.iter().any(|l| l == "open_path /h"));
    assert!(log.iter().any(|l| l == "bind_fd /v"));
    assert!(log
        .iter()
        .any(|l| l == "mknod /run/isol/container/c1/root/dev/null 666 1:3"));
}

#[test]
fn test_plan_cgroupfs_hybrid_tmpfs_with_v1_hierarchies_read_only() {
    let cgs = [
        CgroupMount {
            name: Some("memory".into()),
            v2: false,
            controllers: "memory".into(),
        },
        CgroupMount {
            name: Some("cpu,cpuacct".into()),
            v2: false,
            controllers: "cpu,cpuacct".into(),
        },
    ];
    let mut c = cfg(false, &[]);
    c.cgroups = &cgs;
    let steps = plan(&c, &all_dirs).unwrap();
    let base = PathBuf::from("/sys/fs/cgroup");
    let pivot = steps
        .iter()
        .position(|s| matches!(s, Step::PivotRoot { .. }))
        .unwrap();
    let join = steps.iter().position(|s| *s == Step::JoinCgroups).unwrap();
    let i = steps
        .iter()
        .position(
            |s| matches!(s, Step::Mount { target, fstype: Some("tmpfs"), .. } if *target == base),
        )
        .expect("tmpfs on /sys/fs/cgroup");
    assert!(
        pivot < join && join < i,
        "cgroupfs after joining, inside the new root"
    );
    assert!(
        matches!(&steps[i + 2], Step::Mount { target, fstype: Some("cgroup"), data: Some(d), flags, .. }
        if *target == base.join("memory") && d == "memory" && flags.contains(MsFlags::MS_RDONLY))
    );
    assert!(matches!(&steps[i + 4], Step::Mount { data: Some(d), .. } if d == "cpu,cpuacct"));
    assert!(matches!(&steps[i + 5], Step::Mount { target, flags, .. }
        if *target == base && flags.contains(MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY)));
}

#[test]
fn test_plan_cgroupfs_pure_v2_single_mount_and_none_without_cgroups() {
    let cgs = [CgroupMount {
        name: None,
        v2: true,
        controllers: String::new(),
    }];
    let mut c = cfg(false, &[]);
    c.cgroups = &cgs;
    let steps = plan(&c, &all_dirs).unwrap();
    let n = steps
        .iter()
        .filter(|s| matches!(s, Step::Mount { fstype: Some("cgroup2"), target, .. } if target == Path::new("/sys/fs/cgroup")))
        .count();
    assert_eq!(n, 1);
    let none = plan(&cfg(false, &[]), &all_dirs).unwrap();
    assert!(
        !none.contains(&Step::JoinCgroups),
        "no cgroups: nothing to wait for"
    );
    assert!(!none
        .iter()
        .any(|s| matches!(s, Step::Mount { target, .. } if target.ends_with("sys/fs/cgroup"))));
}

#[test]
fn test_apply_calls_join_at_the_marker() {
    let fake = FakeSyscall::default();
    let steps = [
        Step::Mkdir {
            path: "/a".into(),
            mode: 0o755,
        },
        Step::JoinCgroups,
        Step::Mkdir {
            path: "/b".into(),
            mode: 0o755,
        },
    ];
    let mut joined_after = None;
    apply(&steps, &fake, &mut || {
        joined_after = Some(fake.log().len());
        Ok(())
    })
    .unwrap();
    assert_eq!(joined_after, Some(1));
    assert_eq!(fake.log().len(), 2);
}
