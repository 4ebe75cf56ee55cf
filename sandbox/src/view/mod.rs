//! The workload's view of the system, the same in both modes: /proc, read-only /sys, a
//! /dev holding only the allowed devices, /dev/pts, /dev/shm, /dev/mqueue, /tmp, the
//! volumes, runc's masked and read-only paths, the run's cgroups at /sys/fs/cgroup and a
//! read-only root. Planned as data ([`plan`]: a list of [`Step`]s with paths as the
//! workload will see them) and applied by [`apply`] through the [`Syscall`] layer onto a
//! root directory that the backend has prepared (container mode: its overlay before
//! pivot_root; VM mode: the guest's 9P overlay before the switch of root).
//!
//! Guarantees:
//! - Every target is resolved inside the root (openat2 with RESOLVE_IN_ROOT from the
//!   root's fd) and mounted onto that fd, so a symlink in the rootfs can never point a
//!   mount at the host (or at the guest init's files).
//! - /proc, /sys, /dev and /tmp of the rootfs must be directories (or missing, when the
//!   root is writable): a symlink or a file there is refused with a clear error.
//! - A masked or read-only path that cannot be applied is an error. Only a path under
//!   /proc or /sys that the kernel does not have is skipped: those are looked up without
//!   following any symlink inside the procfs/sysfs instance mounted a step before, whose
//!   entries the workload cannot add or remove.
//! - /dev is a `nodev` tmpfs; the allowed devices ([`devices::ALLOWED`]) are bind-mounted
//!   onto it from the host's (or guest init's) /dev, and a device cgroup
//!   ([`devices`]) refuses to open anything else. /tmp, /dev/shm, /dev/mqueue and the
//!   volumes are `nosuid,nodev`.

use std::path::{Path, PathBuf};

use isol_common::security::{MASKED_PATHS, READONLY_PATHS};
use nix::mount::MsFlags;

mod apply;
pub mod devices;

pub use apply::{apply, describe, describe_mount, ViewError};

#[cfg(doc)]
use crate::syscall::Syscall;

/// One operation of the view. Paths are absolute paths inside the view's root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// A directory the view mounts on: must be a directory, not a symlink; created
    /// (with `mode`) when missing and `create`.
    MountPoint {
        /// The path.
        path: PathBuf,
        /// Mode when created.
        mode: u32,
        /// Whether it may be created.
        create: bool,
    },
    /// mount(2) onto the resolved target.
    Mount {
        /// Source (device name for pseudo filesystems, a tag for 9p).
        source: Option<String>,
        /// Where.
        target: PathBuf,
        /// Filesystem type, `None` for remounts.
        fstype: Option<&'static str>,
        /// Flags.
        flags: MsFlags,
        /// Filesystem options.
        data: Option<String>,
    },
    /// mkdir(2) of the last component (existing is fine).
    Mkdir {
        /// Path.
        path: PathBuf,
        /// Mode (umask is 0 during setup).
        mode: u32,
    },
    /// mkdir -p, 0755 per missing component (symlinks followed inside the root).
    MkdirAll {
        /// Path.
        path: PathBuf,
    },
    /// An allowed device: an empty file at `path` with the device `host` bind-mounted
    /// on it (so /dev itself can be `nodev`).
    Device {
        /// Path inside the view.
        path: PathBuf,
        /// The device node to bind (a path outside the view: the host's /dev).
        host: PathBuf,
    },
    /// symlink(2).
    Symlink {
        /// What the link points to.
        target: PathBuf,
        /// The link.
        link: PathBuf,
    },
    /// Attaches the detached tree in handle `slot` (a container volume) at `target`,
    /// then remounts it nosuid,nodev (and read-only).
    BindHandle {
        /// Index in the handle table.
        slot: usize,
        /// Path inside the view.
        target: PathBuf,
        /// Read-only volume.
        read_only: bool,
    },
    /// Hide a path: empty read-only tmpfs over a directory, /dev/null over anything else.
    Mask {
        /// Path inside the view.
        path: PathBuf,
    },
    /// Make a path read-only (bind onto itself, remount read-only).
    ReadOnly {
        /// Path inside the view.
        path: PathBuf,
    },
    /// A file made for the run on the caller's side (the network's /etc/resolv.conf,
    /// hosts, hostname) bound read-only (nosuid, nodev, noexec) over `path`, which must
    /// be a regular file, or is created empty when missing and `create`.
    BindFile {
        /// Path inside the view.
        path: PathBuf,
        /// The file to bind (a path outside the view).
        host: PathBuf,
        /// Whether a missing `path` may be created.
        create: bool,
    },
    /// Wait until the run is in its cgroups, then unshare the cgroup namespace (its root
    /// becomes the run's cgroup). Done by the caller's `join`.
    JoinCgroups,
}

/// A volume of the view.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ViewVolume {
    /// Path inside the view (normalized, absolute).
    pub path: PathBuf,
    /// Read-only.
    pub read_only: bool,
    /// Where it comes from.
    pub source: VolumeSource,
}

/// Where a volume comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VolumeSource {
    /// A detached bind of a host directory, in the caller's handle table (container).
    Handle(usize),
    /// A filesystem to mount (VM mode: a 9P share).
    Mount {
        /// Source (the share's tag).
        source: String,
        /// Filesystem type.
        fstype: &'static str,
        /// Options.
        data: String,
    },
}

/// A cgroup hierarchy shown read-only inside the view, rooted at the run's own cgroup
/// (the cgroup namespace is unshared before mounting).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CgroupMount {
    /// Directory under /sys/fs/cgroup; `None` mounts cgroup2 on /sys/fs/cgroup itself
    /// (pure cgroup2 hosts).
    pub name: Option<String>,
    /// cgroup2 rather than a v1 hierarchy.
    pub v2: bool,
    /// The v1 hierarchy's controllers (`cpu,cpuacct`), its mount options.
    pub controllers: String,
}

/// What the view is made from.
#[derive(Debug, Clone)]
pub struct ViewConfig<'a> {
    /// Mount points missing from the root may be created (the root is writable now).
    pub create: bool,
    /// Remount the root read-only at the end (`--read-only` over a writable layer).
    pub read_only_root: bool,
    /// Volumes.
    pub volumes: &'a [ViewVolume],
    /// Working directory (created when `create`).
    pub cwd: &'a Path,
    /// The run's cgroup hierarchies for /sys/fs/cgroup; empty: no cgroup view here.
    pub cgroups: &'a [CgroupMount],
    /// Where the allowed device nodes are bind-mounted from (`/dev` of the caller).
    pub host_dev: &'a Path,
}

const PSEUDO: MsFlags = MsFlags::MS_NOSUID
    .union(MsFlags::MS_NODEV)
    .union(MsFlags::MS_NOEXEC);

fn mount(
    source: &str,
    target: impl Into<PathBuf>,
    fstype: &'static str,
    flags: MsFlags,
    data: &str,
) -> Step {
    Step::Mount {
        source: Some(source.to_string()),
        target: target.into(),
        fstype: Some(fstype),
        flags,
        data: (!data.is_empty()).then(|| data.to_string()),
    }
}

/// A read-only remount of a bind or of a filesystem's root, keeping `extra`.
pub fn remount_ro(target: impl Into<PathBuf>, extra: MsFlags) -> Step {
    Step::Mount {
        source: None,
        target: target.into(),
        fstype: None,
        flags: MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY | extra,
        data: None,
    }
}

/// /dev's symlinks.
const DEV_LINKS: &[(&str, &str)] = &[
    ("ptmx", "pts/ptmx"),
    ("fd", "/proc/self/fd"),
    ("stdin", "/proc/self/fd/0"),
    ("stdout", "/proc/self/fd/1"),
    ("stderr", "/proc/self/fd/2"),
];

/// A file of the run bound over a file of the root ([`Step::BindFile`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ViewFile {
    /// Path inside the view.
    pub path: PathBuf,
    /// The file to bind (outside the view).
    pub host: PathBuf,
}

/// Computes the view.
pub fn plan(cfg: &ViewConfig) -> Vec<Step> {
    plan_with_files(cfg, &[])
}

/// Computes the view with the run's own files bound over the root's (`files`).
pub fn plan_with_files(cfg: &ViewConfig, files: &[ViewFile]) -> Vec<Step> {
    let mut steps = Vec::new();
    for (dir, mode) in [
        ("/proc", 0o555),
        ("/sys", 0o555),
        ("/dev", 0o755),
        ("/tmp", 0o1777),
    ] {
        steps.push(Step::MountPoint {
            path: dir.into(),
            mode,
            create: cfg.create,
        });
    }
    if cfg.create {
        steps.push(Step::MkdirAll {
            path: cfg.cwd.to_path_buf(),
        });
        for v in cfg.volumes {
            steps.push(Step::MkdirAll {
                path: v.path.clone(),
            });
        }
    }
    steps.push(mount("proc", "/proc", "proc", PSEUDO, ""));
    steps.push(mount(
        "sysfs",
        "/sys",
        "sysfs",
        PSEUDO | MsFlags::MS_RDONLY,
        "",
    ));
    dev_steps(cfg.host_dev, &mut steps);
    steps.push(mount(
        "tmpfs",
        "/tmp",
        "tmpfs",
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        "mode=1777",
    ));
    for v in cfg.volumes {
        steps.push(volume_step(v));
    }
    for f in files {
        if let (true, Some(parent)) = (cfg.create, f.path.parent()) {
            steps.push(Step::MkdirAll {
                path: parent.to_path_buf(),
            });
        }
        steps.push(Step::BindFile {
            path: f.path.clone(),
            host: f.host.clone(),
            create: cfg.create,
        });
    }
    steps.extend(MASKED_PATHS.iter().map(|p| Step::Mask { path: p.into() }));
    steps.extend(
        READONLY_PATHS
            .iter()
            .map(|p| Step::ReadOnly { path: p.into() }),
    );
    if !cfg.cgroups.is_empty() {
        // Everything above ran while the caller moved the run into its cgroups (one RCU
        // grace period on cgroup v1); only the cgroup namespace and its mounts wait.
        steps.push(Step::JoinCgroups);
        cgroup_mounts(Path::new("/sys/fs/cgroup"), cfg.cgroups, &mut steps);
    }
    if cfg.read_only_root {
        steps.push(remount_ro("/", MsFlags::MS_NODEV));
    }
    steps
}

fn volume_step(v: &ViewVolume) -> Step {
    match &v.source {
        VolumeSource::Handle(slot) => Step::BindHandle {
            slot: *slot,
            target: v.path.clone(),
            read_only: v.read_only,
        },
        VolumeSource::Mount {
            source,
            fstype,
            data,
        } => {
            let mut flags = MsFlags::MS_NOSUID | MsFlags::MS_NODEV;
            if v.read_only {
                flags |= MsFlags::MS_RDONLY;
            }
            mount(source, v.path.clone(), fstype, flags, data)
        }
    }
}

/// A `nodev` tmpfs with the allowed devices bound onto it, devpts, shm, mqueue, links.
fn dev_steps(host_dev: &Path, steps: &mut Vec<Step>) {
    let dev = Path::new("/dev");
    steps.push(mount(
        "tmpfs",
        dev,
        "tmpfs",
        PSEUDO | MsFlags::MS_STRICTATIME,
        "mode=755,size=65536k",
    ));
    for d in devices::NODES {
        steps.push(Step::Device {
            path: dev.join(d.name),
            host: host_dev.join(d.name),
        });
    }
    let dirs: [(&str, &str, &'static str, MsFlags, &str, u32); 3] = [
        (
            "pts",
            "devpts",
            "devpts",
            MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
            "newinstance,ptmxmode=0666,mode=0620",
            0o755,
        ),
        (
            "shm",
            "shm",
            "tmpfs",
            PSEUDO,
            "mode=1777,size=65536k",
            0o1777,
        ),
        ("mqueue", "mqueue", "mqueue", PSEUDO, "", 0o755),
    ];
    for (name, source, fstype, flags, data, mode) in dirs {
        steps.push(Step::Mkdir {
            path: dev.join(name),
            mode,
        });
        steps.push(mount(source, dev.join(name), fstype, flags, data));
    }
    for (name, target) in DEV_LINKS {
        steps.push(Step::Symlink {
            target: PathBuf::from(target),
            link: dev.join(name),
        });
    }
}

/// /sys/fs/cgroup: the run's hierarchies, read-only.
fn cgroup_mounts(at: &Path, cgroups: &[CgroupMount], steps: &mut Vec<Step>) {
    let ro = PSEUDO | MsFlags::MS_RDONLY;
    if let [CgroupMount { name: None, .. }] = cgroups {
        steps.push(mount("cgroup2", at, "cgroup2", ro, ""));
        return;
    }
    steps.push(mount("tmpfs", at, "tmpfs", PSEUDO, "mode=755"));
    for c in cgroups {
        let dir = at.join(c.name.as_deref().unwrap_or("unified"));
        steps.push(Step::Mkdir {
            path: dir.clone(),
            mode: 0o555,
        });
        let (fstype, data) = if c.v2 {
            ("cgroup2", "")
        } else {
            ("cgroup", c.controllers.as_str())
        };
        steps.push(mount("cgroup", dir, fstype, ro, data));
    }
    steps.push(remount_ro(at, PSEUDO));
}

#[cfg(test)]
mod tests;
