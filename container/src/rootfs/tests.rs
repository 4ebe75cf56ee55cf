use std::path::{Path, PathBuf};

use isol_common::spec::Volume;
use nix::mount::MsFlags;

use super::*;
use crate::syscall::fake::FakeSyscall;

fn cfg<'a>(read_only: bool, volumes: &'a [Volume]) -> RootfsConfig<'a> {
    RootfsConfig {
        rootfs: Path::new("/rootfs"),
        scratch: Path::new("/run/isol/container/c1"),
        read_only,
        volumes,
        cwd: Path::new("/"),
        cgroups: &[],
        files: &[],
    }
}

fn all_dirs(_: &Path) -> bool {
    true
}

fn no_dirs(_: &Path) -> bool {
    false
}

fn view_of(steps: &[Step]) -> (&Path, &[view::Step]) {
    steps
        .iter()
        .find_map(|s| match s {
            Step::View { root, steps } => Some((root.as_path(), steps.as_slice())),
            _ => None,
        })
        .expect("a view step")
}

#[test]
fn test_plan_writable_uses_nodev_overlay_in_private_tmpfs() {
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
    let Step::Mount {
        target,
        data,
        flags,
        ..
    } = overlay
    else {
        unreachable!()
    };
    assert_eq!(target, Path::new("/run/isol/container/c1/root"));
    assert_eq!(*flags, MsFlags::MS_NODEV);
    assert_eq!(
        data.as_deref(),
        Some("lowerdir=/rootfs,upperdir=/run/isol/container/c1/upper,workdir=/run/isol/container/c1/work")
    );
    let n = steps.len();
    assert_eq!(view_of(&steps).0, Path::new("/run/isol/container/c1/root"));
    assert!(matches!(steps[n - 2], Step::View { .. }));
    assert_eq!(
        steps[n - 1],
        Step::PivotRoot {
            new_root: PathBuf::from("/run/isol/container/c1/root")
        }
    );
}

#[test]
fn test_plan_never_targets_the_rootfs_dir() {
    for ro in [false, true] {
        for f in [all_dirs as fn(&Path) -> bool, no_dirs] {
            let steps = plan(&cfg(ro, &[]), &f).unwrap();
            for s in &steps {
                let p = match s {
                    Step::Mount { target, .. } => target,
                    Step::Mkdir { path, .. } => path,
                    Step::View { root, .. } => root,
                    _ => continue,
                };
                assert!(!p.starts_with("/rootfs"), "{s:?} writes into the rootfs");
            }
        }
    }
}

#[test]
fn test_plan_read_only_binds_and_makes_ro_nodev_before_the_view() {
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
        if flags.contains(MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY | MsFlags::MS_NODEV)));
    // Nothing may be created in a read-only bind: mount points must exist.
    let (_, v) = view_of(&steps);
    assert!(v.iter().all(|s| !matches!(
        s,
        view::Step::MountPoint { create: true, .. } | view::Step::MkdirAll { .. }
    )));
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
    let (_, v) = view_of(&steps);
    assert!(
        matches!(v.last().unwrap(), view::Step::Mount { target, flags, .. }
        if target == Path::new("/") && flags.contains(MsFlags::MS_RDONLY | MsFlags::MS_REMOUNT))
    );
}

#[test]
fn test_plan_volumes_opened_first_and_bound_in_the_view_sorted() {
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
    assert_eq!(
        steps[1..3],
        [
            Step::OpenHost {
                path: "/h/a".into(),
                slot: 0
            },
            Step::OpenHost {
                path: "/h/b".into(),
                slot: 1
            }
        ]
    );
    let (_, v) = view_of(&steps);
    let pos = |s: view::Step| v.iter().position(|x| *x == s).unwrap();
    let a = pos(view::Step::BindHandle {
        slot: 0,
        target: "/data".into(),
        read_only: true,
    });
    let b = pos(view::Step::BindHandle {
        slot: 1,
        target: "/data/sub".into(),
        read_only: false,
    });
    assert!(a < b);
    assert!(
        pos(view::Step::MkdirAll {
            path: "/data/sub".into()
        }) < a
    );
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
fn test_apply_full_plan_resolves_the_view_in_the_new_root_then_pivots() {
    let vols = [Volume {
        host: "/h/a".into(),
        path: "/data".into(),
        read_only: true,
    }];
    let cg = [CgroupMount {
        name: None,
        v2: true,
        controllers: String::new(),
    }];
    let mut c = cfg(false, &vols);
    c.cgroups = &cg;
    let steps = plan(&c, &all_dirs).unwrap();
    let fake = FakeSyscall::default();
    let mut joined = 0;
    apply(&steps, &fake, &mut || {
        joined += 1;
        Ok(())
    })
    .unwrap();
    assert_eq!(joined, 1);
    let log = fake.changes();
    assert_eq!(
        log.last().unwrap(),
        "pivot_root /run/isol/container/c1/root"
    );
    let root = "/run/isol/container/c1/root";
    assert!(log.contains(&format!(
        "mount proc {root}/proc proc MsFlags(MS_NOSUID | MS_NODEV | MS_NOEXEC) -"
    )));
    assert!(log.contains(&format!("attach {root}/data")));
    assert!(log
        .iter()
        .any(|l| l.starts_with(&format!("mount cgroup2 {root}/sys/fs/cgroup cgroup2"))));
    // Every lookup of the view starts at the new root.
    assert!(fake
        .log()
        .iter()
        .filter(|l| l.starts_with("open "))
        .all(|l| l.starts_with(&format!("open {root}"))));
}

#[test]
fn test_apply_stops_at_first_failure_and_names_the_step() {
    let fake = FakeSyscall {
        fail_on: Some("mount proc".into()),
        ..FakeSyscall::default()
    };
    let steps = plan(&cfg(false, &[]), &all_dirs).unwrap();
    let e = apply(&steps, &fake, &mut || Ok(())).unwrap_err();
    assert_eq!(e.step, "mount proc on /proc");
    assert!(!fake.log().iter().any(|l| l.starts_with("pivot_root")));
}
