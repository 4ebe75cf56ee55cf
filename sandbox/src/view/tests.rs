use super::*;
use crate::syscall::fake::{FakeSyscall, FileKind};
use crate::syscall::Syscall;
use nix::errno::Errno;

fn volumes() -> Vec<ViewVolume> {
    vec![
        ViewVolume {
            path: "/data".into(),
            read_only: true,
            source: VolumeSource::Handle(0),
        },
        ViewVolume {
            path: "/vm".into(),
            read_only: false,
            source: VolumeSource::Mount {
                source: "isolvol0".into(),
                fstype: "9p",
                data: "trans=virtio".into(),
            },
        },
    ]
}

fn cfg<'a>(vols: &'a [ViewVolume], cgroups: &'a [CgroupMount]) -> ViewConfig<'a> {
    ViewConfig {
        create: true,
        read_only_root: false,
        volumes: vols,
        cwd: Path::new("/work"),
        cgroups,
        host_dev: Path::new("/dev"),
    }
}

fn run(fake: &FakeSyscall, steps: &[Step]) -> Result<(), ViewError> {
    let mut handles = vec![Some(fake.open_dir(Path::new("/host/vol")).unwrap())];
    let mut join = || Ok(());
    apply(
        steps,
        fake,
        Path::new("/r"),
        &mut handles,
        Path::new("/dev/null"),
        &mut join,
    )
}

#[test]
fn test_every_target_is_opened_in_the_root_and_mounted_on_its_fd() {
    let vols = volumes();
    let fake = FakeSyscall::default();
    run(&fake, &plan(&cfg(&vols, &[]))).unwrap();
    let log = fake.changes();
    assert!(
        log.contains(
            &"mount proc /r/proc proc MsFlags(MS_NOSUID | MS_NODEV | MS_NOEXEC) -".to_string()
        ),
        "{log:#?}"
    );
    assert!(log
        .iter()
        .any(|l| l.starts_with("mount sysfs /r/sys sysfs") && l.contains("MS_RDONLY")));
    // Nothing is reached by a path from the caller's root.
    assert!(fake
        .log()
        .iter()
        .filter(|l| l.starts_with("open "))
        .all(|l| l.starts_with("open /r")));
}

#[test]
fn test_dev_is_nodev_with_allowed_devices_bound_from_the_host() {
    let fake = FakeSyscall::default();
    run(&fake, &plan(&cfg(&[], &[]))).unwrap();
    let log = fake.changes();
    let dev = log
        .iter()
        .find(|l| l.starts_with("mount tmpfs /r/dev tmpfs"))
        .unwrap();
    assert!(
        dev.contains("MS_NODEV") && dev.contains("MS_NOSUID"),
        "{dev}"
    );
    for n in devices::NODES {
        assert!(
            log.contains(&format!("create /r/dev/{} 666", n.name)),
            "{log:#?}"
        );
        assert!(log.contains(&format!(
            "mount /dev/{0} /r/dev/{0} - MsFlags(MS_BIND) -",
            n.name
        )));
    }
    assert!(!log.iter().any(|l| l.starts_with("mknod")));
    let mq = log
        .iter()
        .find(|l| l.starts_with("mount mqueue /r/dev/mqueue"))
        .unwrap();
    assert!(mq.contains("MS_NODEV"), "{mq}");
    assert!(log.contains(&"symlink /r/dev/ptmx -> pts/ptmx".to_string()));
}

#[test]
fn test_volumes_are_nosuid_nodev() {
    let vols = volumes();
    let fake = FakeSyscall::default();
    run(&fake, &plan(&cfg(&vols, &[]))).unwrap();
    let log = fake.changes();
    let i = log.iter().position(|l| l == "attach /r/data").unwrap();
    assert_eq!(
        log[i + 1],
        "mount - /r/data - MsFlags(MS_RDONLY | MS_NOSUID | MS_NODEV | MS_REMOUNT | MS_BIND) -"
    );
    assert!(
        log.contains(
            &"mount isolvol0 /r/vm 9p MsFlags(MS_NOSUID | MS_NODEV) trans=virtio".to_string()
        ),
        "{log:#?}"
    );
}

#[test]
fn test_symlinked_or_file_mount_points_are_refused() {
    for (kind, errno) in [
        (FileKind::Symlink, Errno::ELOOP),
        (FileKind::Other, Errno::ENOTDIR),
    ] {
        let mut fake = FakeSyscall::default();
        fake.kinds.insert("/r/proc".into(), kind);
        let e = run(&fake, &plan(&cfg(&[], &[]))).unwrap_err();
        assert_eq!(e.errno, errno);
        assert!(
            e.step.contains("/proc") && e.step.contains("must be directories"),
            "{}",
            e.step
        );
        assert!(
            !fake.changes().iter().any(|l| l.starts_with("mount")),
            "nothing mounted"
        );
    }
}

#[test]
fn test_missing_mount_point_is_made_only_when_allowed() {
    let mut fake = FakeSyscall::default();
    fake.kinds.insert("/r/tmp".into(), FileKind::Missing);
    let mut c = cfg(&[], &[]);
    c.create = false;
    let e = run(&fake, &plan(&c)).unwrap_err();
    assert!(
        e.step.contains("/tmp") && e.step.contains("missing"),
        "{}",
        e.step
    );
    let fake2 = FakeSyscall {
        kinds: fake.kinds.clone(),
        ..FakeSyscall::default()
    };
    // The fake's Missing never becomes present, so mounting /tmp fails after the mkdir.
    let _ = run(&fake2, &plan(&cfg(&[], &[])));
    assert!(fake2.changes().contains(&"mkdir /r/tmp 1777".to_string()));
}

#[test]
fn test_masks_and_read_only_paths_fail_loudly_but_skip_what_the_kernel_lacks() {
    let mut fake = FakeSyscall::default();
    fake.kinds.insert("/r/proc/kcore".into(), FileKind::Other);
    fake.kinds.insert("/r/proc/acpi".into(), FileKind::Missing);
    run(&fake, &plan(&cfg(&[], &[]))).unwrap();
    let log = fake.changes();
    assert!(log.contains(&"mount /dev/null /r/proc/kcore - MsFlags(MS_BIND) -".to_string()));
    assert!(log
        .iter()
        .any(|l| l.starts_with("mount tmpfs /r/proc/scsi tmpfs") && l.contains("MS_RDONLY")));
    assert!(!log.iter().any(|l| l.contains("/r/proc/acpi")));
    let i = log
        .iter()
        .position(|l| l == "bind /r/proc/sys /r/proc/sys")
        .unwrap();
    assert!(log[i + 1].starts_with("mount - /r/proc/sys - ") && log[i + 1].contains("MS_RDONLY"));
    // A symlink on the way (ELOOP) is an error, not a skip.
    let mut fake = FakeSyscall::default();
    fake.kinds.insert("/r/proc/sys".into(), FileKind::Symlink);
    let e = run(&fake, &plan(&cfg(&[], &[]))).unwrap_err();
    assert_eq!(
        (e.step.as_str(), e.errno),
        ("make /proc/sys read-only", Errno::ELOOP)
    );
    // A failed mount of a mask is an error.
    let fake = FakeSyscall {
        fail_on: Some("mount /dev/null /r/proc/keys".into()),
        kinds: [("/r/proc/keys".into(), FileKind::Other)].into(),
        ..FakeSyscall::default()
    };
    let e = run(&fake, &plan(&cfg(&[], &[]))).unwrap_err();
    assert_eq!(e.step, "mask /proc/keys");
}

#[test]
fn test_cgroup_view_after_join_and_read_only_root_last() {
    let cg = [CgroupMount {
        name: None,
        v2: true,
        controllers: String::new(),
    }];
    let mut c = cfg(&[], &cg);
    c.read_only_root = true;
    let steps = plan(&c);
    let join = steps.iter().position(|s| *s == Step::JoinCgroups).unwrap();
    assert!(
        matches!(&steps[join + 1], Step::Mount { fstype: Some("cgroup2"), target, .. } if target == Path::new("/sys/fs/cgroup"))
    );
    assert_eq!(*steps.last().unwrap(), remount_ro("/", MsFlags::MS_NODEV));
    let fake = FakeSyscall::default();
    run(&fake, &steps).unwrap();
    assert_eq!(
        fake.changes().last().unwrap(),
        "mount - /r/ - MsFlags(MS_RDONLY | MS_NODEV | MS_REMOUNT | MS_BIND) -"
    );
}

#[test]
fn test_v1_cgroup_view_is_a_read_only_tmpfs_of_hierarchies() {
    let cg = [CgroupMount {
        name: Some("memory".into()),
        v2: false,
        controllers: "memory".into(),
    }];
    let steps = plan(&cfg(&[], &cg));
    let fake = FakeSyscall::default();
    run(&fake, &steps).unwrap();
    let log = fake.changes();
    let i = log
        .iter()
        .position(|l| l.starts_with("mount tmpfs /r/sys/fs/cgroup"))
        .unwrap();
    assert_eq!(log[i + 1], "mkdir /r/sys/fs/cgroup/memory 555");
    assert!(
        log[i + 2].starts_with("mount cgroup /r/sys/fs/cgroup/memory cgroup")
            && log[i + 2].ends_with("memory")
    );
    assert!(
        log[i + 3].starts_with("mount - /r/sys/fs/cgroup - ") && log[i + 3].contains("MS_RDONLY")
    );
}

#[test]
fn test_bind_file_binds_read_only_and_refuses_symlink() {
    let files = [ViewFile {
        path: "/etc/resolv.conf".into(),
        host: "/run/isol/net/files/x/resolv.conf".into(),
    }];
    let steps = plan_with_files(&cfg(&[], &[]), &files);
    assert!(steps.contains(&Step::MkdirAll {
        path: "/etc".into()
    }));
    let mut fake = FakeSyscall::default();
    fake.kinds
        .insert("/r/etc/resolv.conf".into(), FileKind::Other);
    run(&fake, &steps).unwrap();
    let log = fake.changes();
    assert!(
        log.iter().any(|l| l
            == "mount /run/isol/net/files/x/resolv.conf /r/etc/resolv.conf - MsFlags(MS_BIND) -"),
        "{log:#?}"
    );
    assert!(
        log.iter()
            .any(|l| l.starts_with("mount - /r/etc/resolv.conf")
                && l.contains("MS_RDONLY")
                && l.contains("MS_NOEXEC")),
        "{log:#?}"
    );
    let mut fake = FakeSyscall::default();
    fake.kinds
        .insert("/r/etc/resolv.conf".into(), FileKind::Symlink);
    let e = run(&fake, &steps).unwrap_err();
    assert_eq!(e.errno, Errno::ELOOP);
    assert!(e.step.contains("/etc/resolv.conf"), "{}", e.step);
}
