use std::path::{Path, PathBuf};

use nix::errno::Errno;

use super::*;
use crate::syscall::fake::FakeSyscall;

fn binds() -> Vec<Bind> {
    vec![
        Bind {
            source: "/dev/kvm".into(),
            target: "/dev/kvm".into(),
            dir: false,
            read_only: false,
            device: true,
        },
        Bind {
            source: "/boot/vmlinux".into(),
            target: "/kernel".into(),
            dir: false,
            read_only: true,
            device: false,
        },
        Bind {
            source: "/srv/rootfs".into(),
            target: "/shares/0".into(),
            dir: true,
            read_only: true,
            device: false,
        },
    ]
}

fn plan(binds: &[Bind]) -> JailPlan<'_> {
    JailPlan {
        root: Path::new("/run/isol/vm/1-2/jail"),
        binds,
        proc: true,
        hostname: "isol-vmm",
    }
}

fn position(log: &[String], prefix: &str) -> usize {
    log.iter()
        .position(|l| l.starts_with(prefix))
        .unwrap_or_else(|| panic!("no {prefix:?} in {log:#?}"))
}

#[test]
fn test_unshare_namespaces_then_hostname() {
    let fake = FakeSyscall::default();
    unshare(&fake, "isol-vmm").unwrap();
    let log = fake.log();
    assert_eq!(log.len(), 2);
    for ns in [
        "CLONE_NEWNS",
        "CLONE_NEWIPC",
        "CLONE_NEWUTS",
        "CLONE_NEWNET",
    ] {
        assert!(log[0].contains(ns), "{log:?}");
    }
    assert!(!log[0].contains("CLONE_NEWPID") && !log[0].contains("CLONE_NEWUSER"));
    assert_eq!(log[1], "sethostname isol-vmm");
}

#[test]
fn test_enter_private_tmpfs_binds_proc_readonly_then_pivot() {
    let fake = FakeSyscall::default();
    let b = binds();
    enter(&fake, &plan(&b)).unwrap();
    let log = fake.log();
    let root = "/run/isol/vm/1-2/jail";
    assert!(
        log[0].starts_with("mount - / - MsFlags(MS_REC | MS_PRIVATE)"),
        "{log:#?}"
    );
    assert!(
        log[1].starts_with(&format!("mount tmpfs {root} tmpfs")),
        "{log:#?}"
    );
    assert!(log[1].ends_with(ROOT_TMPFS));
    // The kvm node: a file mount point, bound, remounted without nodev.
    let kvm = position(
        &log,
        &format!("mount /dev/kvm {root}/dev/kvm - MsFlags(MS_BIND) "),
    );
    assert_eq!(log[kvm - 1], format!("create {root}/dev/kvm 600"));
    assert_eq!(log[kvm - 2], format!("mkdir {root}/dev 755"));
    assert!(!log[kvm + 1].contains("MS_NODEV") && log[kvm + 1].contains("MS_NOEXEC"));
    assert!(!log[kvm + 1].contains("MS_RDONLY"));
    // The kernel: read-only, nodev.
    let k = position(&log, &format!("mount - {root}/kernel - "));
    assert!(log[k].contains("MS_RDONLY") && log[k].contains("MS_NODEV"));
    // A share: recursive bind into a created directory.
    let s = position(
        &log,
        &format!("mount /srv/rootfs {root}/shares/0 - MsFlags(MS_BIND | MS_REC)"),
    );
    assert_eq!(log[s - 1], format!("mkdir {root}/shares/0 755"));
    assert!(log[s + 1].contains("MS_RDONLY"));
    let p = position(&log, &format!("mount proc {root}/proc proc"));
    assert!(log[p].ends_with("subset=pid") && log[p].contains("MS_RDONLY"));
    let ro = position(&log, &format!("mount - {root} - MsFlags(MS_RDONLY"));
    assert!(ro > p && ro > s);
    assert_eq!(log.last().unwrap(), &format!("pivot_root {root}"));
}

#[test]
fn test_enter_refuses_relative_or_dotdot_targets() {
    for t in ["kernel", "/shares/../../etc"] {
        let mut b = binds();
        b[1].target = PathBuf::from(t);
        let fake = FakeSyscall::default();
        let e = enter(&fake, &plan(&b)).unwrap_err();
        assert_eq!(e.errno, Errno::EINVAL, "{t}");
        assert!(e.to_string().contains(t), "{e}");
        assert!(!fake.log().iter().any(|l| l.starts_with("pivot_root")));
    }
}

#[test]
fn test_enter_failure_names_the_path_and_never_pivots() {
    let fake = FakeSyscall {
        fail_on: Some("mount /srv/rootfs".into()),
        ..FakeSyscall::default()
    };
    let b = binds();
    let e = enter(&fake, &plan(&b)).unwrap_err();
    assert_eq!(
        e.to_string(),
        "Cannot build the jail: bind mount of /srv/rootfs failed"
    );
    assert!(!fake.log().iter().any(|l| l.starts_with("pivot_root")));
}

#[test]
fn test_enter_without_proc() {
    let fake = FakeSyscall::default();
    let mut p = plan(&[]);
    p.proc = false;
    enter(&fake, &p).unwrap();
    assert!(!fake.log().iter().any(|l| l.contains("proc")));
    assert_eq!(fake.log().len(), 4);
}

#[test]
fn test_close_inherited_fds_keeps_listed_ones() {
    let fake = FakeSyscall::default();
    close_inherited_fds(&fake, &[9, 2, 5, 6, 5]).unwrap();
    assert_eq!(
        fake.log(),
        [
            "close_range 3 4",
            "close_range 7 8",
            &format!("close_range 10 {}", u32::MAX)
        ]
    );
    let fake = FakeSyscall::default();
    close_inherited_fds(&fake, &[3]).unwrap();
    assert_eq!(fake.log(), [format!("close_range 4 {}", u32::MAX)]);
}
