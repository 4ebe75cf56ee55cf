//! The container's root filesystem, computed as a list of [`Step`]s (plain data, unit
//! tested) and applied by [`apply`] through the [`Syscall`] layer inside the new mount
//! namespace.
//!
//! Guarantees:
//! - The rootfs directory is never written. Writable runs get an overlayfs whose lower
//!   layer is the rootfs and whose upper/work dirs live in a private tmpfs mounted (inside
//!   the mount namespace only) on isol's records directory. `--read-only` runs bind the
//!   rootfs and make that bind read-only *before* anything else is mounted on it, so a
//!   missing mount point fails with EROFS instead of creating a directory in the rootfs;
//!   when a mount point is known to be missing, they use the overlay and remount it
//!   read-only at the end instead.
//! - Every mount happens after `/` is made recursively private, so nothing propagates to
//!   the host and everything vanishes with the namespace.
//! - Volumes are mounted after pivot_root (through O_PATH handles opened before it), so
//!   symlinks in the rootfs resolve inside the new root and cannot point a mount at the
//!   host.
//! - /proc, /sys (read-only), a minimal /dev, /tmp; runc's masked and read-only paths;
//!   for runs with limits, their own cgroups read-only at /sys/fs/cgroup.

use std::path::{Component, Path, PathBuf};

use isol_common::security::{MASKED_PATHS, READONLY_PATHS};
use isol_common::spec::Volume;
use nix::mount::MsFlags;

mod apply;

pub use apply::{apply, describe, StepError};

/// One operation of the mount plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// mount(2).
    Mount {
        /// Source (device name for pseudo filesystems).
        source: Option<PathBuf>,
        /// Where.
        target: PathBuf,
        /// Filesystem type, `None` for binds and remounts.
        fstype: Option<&'static str>,
        /// Flags.
        flags: MsFlags,
        /// Filesystem options.
        data: Option<String>,
    },
    /// mkdir(2) (existing is fine).
    Mkdir {
        /// Path.
        path: PathBuf,
        /// Mode (umask is 0 during setup).
        mode: u32,
    },
    /// mkdir -p, 0755 per missing component.
    MkdirAll {
        /// Path.
        path: PathBuf,
    },
    /// A character device node, mode 0666.
    Mknod {
        /// Path.
        path: PathBuf,
        /// Device major number.
        major: u64,
        /// Device minor number.
        minor: u64,
    },
    /// symlink(2).
    Symlink {
        /// What the link points to.
        target: PathBuf,
        /// The link.
        link: PathBuf,
    },
    /// Opens a volume's host directory (O_PATH) into `slot`, before pivot_root.
    OpenHost {
        /// Host directory.
        path: PathBuf,
        /// Index in the handle table.
        slot: usize,
    },
    /// Bind-mounts the handle in `slot` at `target` (after pivot_root).
    BindHandle {
        /// Index in the handle table.
        slot: usize,
        /// Path inside the container.
        target: PathBuf,
    },
    /// pivot_root into this directory and detach the old root.
    PivotRoot {
        /// The new root.
        new_root: PathBuf,
    },
    /// Hide a path: empty read-only tmpfs over a directory, /dev/null over anything else.
    Mask {
        /// Path inside the container.
        path: PathBuf,
    },
    /// Make a path read-only (bind onto itself, remount read-only); skipped if missing.
    ReadOnly {
        /// Path inside the container.
        path: PathBuf,
    },
    /// Wait until isol has moved the init into the run's cgroups, then unshare the cgroup
    /// namespace (its root becomes the run's cgroup). Done by the caller of [`apply`].
    JoinCgroups,
}

/// What the plan is made from.
#[derive(Debug, Clone)]
pub struct RootfsConfig<'a> {
    /// The rootfs directory (lower layer; never written).
    pub rootfs: &'a Path,
    /// Mount point (inside the namespace only) of the private tmpfs / the rootfs bind:
    /// isol's records directory, which nothing in the container needs.
    pub scratch: &'a Path,
    /// `--read-only`.
    pub read_only: bool,
    /// Volumes.
    pub volumes: &'a [Volume],
    /// Working directory (created if missing and the root is writable).
    pub cwd: &'a Path,
    /// The run's cgroup hierarchies, shown read-only under /sys/fs/cgroup.
    pub cgroups: &'a [CgroupMount],
}

/// A cgroup hierarchy shown read-only inside the container, rooted at the run's own
/// cgroup (the init unshares the cgroup namespace before mounting).
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

/// The plan cannot be made.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    /// overlayfs and mount(2) options cannot carry these characters.
    #[error("Path {path} contains ',', ':' or '\\', which overlayfs options cannot carry; use a path without them")]
    UnsupportedPath {
        /// The path.
        path: PathBuf,
    },
    /// A volume target with `..`.
    #[error("Volume path {path} contains '..'; give a normalized absolute path")]
    DotDot {
        /// The path.
        path: PathBuf,
    },
}

const DEV_NODES: &[(&str, u64, u64)] = &[
    ("null", 1, 3),
    ("zero", 1, 5),
    ("full", 1, 7),
    ("random", 1, 8),
    ("urandom", 1, 9),
    ("tty", 5, 0),
];

const DEV_LINKS: &[(&str, &str)] = &[
    ("ptmx", "pts/ptmx"),
    ("fd", "/proc/self/fd"),
    ("stdin", "/proc/self/fd/0"),
    ("stdout", "/proc/self/fd/1"),
    ("stderr", "/proc/self/fd/2"),
];

/// Joins an absolute container path under `root`.
fn under(root: &Path, p: &Path) -> PathBuf {
    root.join(p.strip_prefix("/").unwrap_or(p))
}

fn mount(source: &str, target: PathBuf, fstype: &'static str, flags: MsFlags, data: &str) -> Step {
    Step::Mount {
        source: Some(PathBuf::from(source)),
        target,
        fstype: Some(fstype),
        flags,
        data: (!data.is_empty()).then(|| data.to_string()),
    }
}

fn remount_ro(target: PathBuf, extra: MsFlags) -> Step {
    Step::Mount {
        source: None,
        target,
        fstype: None,
        flags: MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY | extra,
        data: None,
    }
}

fn check_option_path(p: &Path) -> Result<(), PlanError> {
    let s = p.as_os_str().as_encoded_bytes();
    if s.iter().any(|c| matches!(c, b',' | b':' | b'\\')) {
        return Err(PlanError::UnsupportedPath {
            path: p.to_path_buf(),
        });
    }
    Ok(())
}

/// Container paths the rootfs must already have for a plain read-only bind.
fn needed_mount_points<'a>(cfg: &'a RootfsConfig<'a>) -> impl Iterator<Item = &'a Path> + 'a {
    ["/proc", "/sys", "/dev", "/tmp"]
        .into_iter()
        .map(Path::new)
        .chain(cfg.volumes.iter().map(|v| v.path.as_path()))
        .chain(std::iter::once(cfg.cwd))
}

/// Computes the mount plan. `is_dir` answers for host paths (the rootfs as seen from the
/// host) and only decides between bind and overlay for `--read-only`.
pub fn plan(cfg: &RootfsConfig, is_dir: &dyn Fn(&Path) -> bool) -> Result<Vec<Step>, PlanError> {
    for v in cfg.volumes {
        if v.path.components().any(|c| c == Component::ParentDir) {
            return Err(PlanError::DotDot {
                path: v.path.clone(),
            });
        }
    }
    let bind = cfg.read_only && needed_mount_points(cfg).all(|p| is_dir(&under(cfg.rootfs, p)));
    let mut steps = vec![Step::Mount {
        source: None,
        target: PathBuf::from("/"),
        fstype: None,
        flags: MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        data: None,
    }];
    // Volume sources first: nothing mounted later (the scratch tmpfs) can shadow them.
    let mut volumes: Vec<&Volume> = cfg.volumes.iter().collect();
    volumes.sort_by(|a, b| a.path.cmp(&b.path));
    for (slot, v) in volumes.iter().enumerate() {
        steps.push(Step::OpenHost {
            path: v.host.clone(),
            slot,
        });
    }
    let root = if bind {
        steps.push(Step::Mount {
            source: Some(cfg.rootfs.to_path_buf()),
            target: cfg.scratch.to_path_buf(),
            fstype: None,
            flags: MsFlags::MS_BIND | MsFlags::MS_REC,
            data: None,
        });
        steps.push(remount_ro(cfg.scratch.to_path_buf(), MsFlags::empty()));
        cfg.scratch.to_path_buf()
    } else {
        check_option_path(cfg.rootfs)?;
        check_option_path(cfg.scratch)?;
        overlay_steps(cfg, &mut steps)
    };
    system_mounts(&root, !bind, &mut steps);
    steps.push(Step::PivotRoot { new_root: root });
    after_pivot(cfg, bind, &volumes, &mut steps);
    Ok(steps)
}

/// Steps inside the new root: volumes, working directory, masked and read-only paths,
/// joining the cgroups and their view, and the final read-only remount of an overlay root.
fn after_pivot(cfg: &RootfsConfig, bind: bool, volumes: &[&Volume], steps: &mut Vec<Step>) {
    for (slot, v) in volumes.iter().enumerate() {
        if !bind {
            steps.push(Step::MkdirAll {
                path: v.path.clone(),
            });
        }
        steps.push(Step::BindHandle {
            slot,
            target: v.path.clone(),
        });
        if v.read_only {
            steps.push(remount_ro(v.path.clone(), MsFlags::empty()));
        }
    }
    if !bind {
        steps.push(Step::MkdirAll {
            path: cfg.cwd.to_path_buf(),
        });
    }
    steps.extend(MASKED_PATHS.iter().map(|p| Step::Mask { path: p.into() }));
    steps.extend(
        READONLY_PATHS
            .iter()
            .map(|p| Step::ReadOnly { path: p.into() }),
    );
    if !cfg.cgroups.is_empty() {
        // Everything above ran while isol moved the init into its cgroups (one RCU grace
        // period on cgroup v1); only the cgroup namespace and its mounts wait for it.
        steps.push(Step::JoinCgroups);
        cgroup_mounts(Path::new("/sys/fs/cgroup"), cfg.cgroups, steps);
    }
    if cfg.read_only && !bind {
        steps.push(remount_ro(PathBuf::from("/"), MsFlags::empty()));
    }
}

/// The private tmpfs and the overlay on it; returns the new root.
fn overlay_steps(cfg: &RootfsConfig, steps: &mut Vec<Step>) -> PathBuf {
    let s = cfg.scratch;
    steps.push(mount(
        "tmpfs",
        s.to_path_buf(),
        "tmpfs",
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        "mode=0700",
    ));
    for (d, mode) in [("upper", 0o755), ("work", 0o700), ("root", 0o755)] {
        steps.push(Step::Mkdir {
            path: s.join(d),
            mode,
        });
    }
    let data = format!(
        "lowerdir={},upperdir={},workdir={}",
        cfg.rootfs.display(),
        s.join("upper").display(),
        s.join("work").display()
    );
    steps.push(mount(
        "overlay",
        s.join("root"),
        "overlay",
        MsFlags::empty(),
        &data,
    ));
    s.join("root")
}

/// /sys/fs/cgroup: the run's hierarchies, read-only (nothing without cgroups).
fn cgroup_mounts(at: &Path, cgroups: &[CgroupMount], steps: &mut Vec<Step>) {
    let pseudo = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    let ro = pseudo | MsFlags::MS_RDONLY;
    if let [CgroupMount { name: None, .. }] = cgroups {
        steps.push(mount("cgroup2", at.to_path_buf(), "cgroup2", ro, ""));
        return;
    }
    if cgroups.is_empty() {
        return;
    }
    steps.push(mount(
        "tmpfs",
        at.to_path_buf(),
        "tmpfs",
        pseudo,
        "mode=755",
    ));
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
    steps.push(remount_ro(at.to_path_buf(), pseudo));
}

/// /proc, /sys, /dev and /tmp under `root` (before pivot_root).
fn system_mounts(root: &Path, create: bool, steps: &mut Vec<Step>) {
    let pseudo = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    let at = |p: &str| root.join(p);
    let table: [(&str, &str, &'static str, MsFlags, &str, u32); 4] = [
        ("proc", "proc", "proc", pseudo, "", 0o555),
        (
            "sys",
            "sysfs",
            "sysfs",
            pseudo | MsFlags::MS_RDONLY,
            "",
            0o555,
        ),
        (
            "dev",
            "tmpfs",
            "tmpfs",
            MsFlags::MS_NOSUID | MsFlags::MS_STRICTATIME,
            "mode=755,size=65536k",
            0o755,
        ),
        (
            "tmp",
            "tmpfs",
            "tmpfs",
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
            "mode=1777",
            0o1777,
        ),
    ];
    for (dir, source, fstype, flags, data, mode) in table {
        if create {
            steps.push(Step::Mkdir {
                path: at(dir),
                mode,
            });
        }
        steps.push(mount(source, at(dir), fstype, flags, data));
        if dir == "dev" {
            dev_steps(&at("dev"), steps);
        }
    }
}

fn dev_steps(dev: &Path, steps: &mut Vec<Step>) {
    for (name, major, minor) in DEV_NODES {
        steps.push(Step::Mknod {
            path: dev.join(name),
            major: *major,
            minor: *minor,
        });
    }
    steps.push(Step::Mkdir {
        path: dev.join("pts"),
        mode: 0o755,
    });
    steps.push(mount(
        "devpts",
        dev.join("pts"),
        "devpts",
        MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
        "newinstance,ptmxmode=0666,mode=0620",
    ));
    steps.push(Step::Mkdir {
        path: dev.join("shm"),
        mode: 0o1777,
    });
    steps.push(mount(
        "shm",
        dev.join("shm"),
        "tmpfs",
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        "mode=1777,size=65536k",
    ));
    for (name, target) in DEV_LINKS {
        steps.push(Step::Symlink {
            target: PathBuf::from(target),
            link: dev.join(name),
        });
    }
}

#[cfg(test)]
mod tests;
