//! The container's root filesystem, computed as a list of [`Step`]s (plain data, unit
//! tested) and applied by [`apply`] through the [`Syscall`] layer inside the new mount
//! namespace. This backend owns only the root itself (overlay or read-only bind) and
//! pivot_root; the view on top of it (/proc, /sys, /dev, /tmp, volumes, masks, the
//! cgroup view) is the sandbox's ([`isol_sandbox::view`]), the same as in VM mode.
//!
//! Guarantees:
//! - The rootfs directory is never written. Writable runs get an overlayfs whose lower
//!   layer is the rootfs and whose upper/work dirs live in a private tmpfs mounted (inside
//!   the mount namespace only) on isol's records directory. `--read-only` runs bind the
//!   rootfs and make that bind read-only *before* anything else is mounted on it, so a
//!   missing mount point fails with EROFS instead of creating a directory in the rootfs;
//!   when a mount point is known to be missing, they use the overlay and remount it
//!   read-only at the end instead. The root is `nodev`.
//! - Every mount happens after `/` is made recursively private, so nothing propagates to
//!   the host and everything vanishes with the namespace.
//! - Volume sources are opened (detached binds) before anything is mounted; the view
//!   attaches them on targets resolved inside the new root, as every other view mount.

use std::os::fd::OwnedFd;
use std::path::{Component, Path, PathBuf};

use isol_common::spec::Volume;
use isol_sandbox::view::{self, ViewConfig, ViewFile, ViewVolume, VolumeSource};
use nix::errno::Errno;
use nix::mount::MsFlags;

pub use isol_sandbox::view::CgroupMount;

use crate::syscall::Syscall;

/// One operation of the mount plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// mount(2) (host paths).
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
    /// Opens a volume's host directory (a detached bind) into `slot`.
    OpenHost {
        /// Host directory.
        path: PathBuf,
        /// Index in the handle table.
        slot: usize,
    },
    /// The sandbox's view, applied onto the new root.
    View {
        /// The new root (host path).
        root: PathBuf,
        /// The view's steps (paths inside the root).
        steps: Vec<view::Step>,
    },
    /// pivot_root into this directory and detach the old root.
    PivotRoot {
        /// The new root.
        new_root: PathBuf,
    },
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
    /// The run's own files bound over the root's (the network's /etc files).
    pub files: &'a [ViewFile],
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
/// host) and only decides between bind and overlay for `--read-only` (the view checks
/// every mount point itself, inside the root).
pub fn plan(cfg: &RootfsConfig, is_dir: &dyn Fn(&Path) -> bool) -> Result<Vec<Step>, PlanError> {
    for v in cfg.volumes {
        if v.path.components().any(|c| c == Component::ParentDir) {
            return Err(PlanError::DotDot {
                path: v.path.clone(),
            });
        }
    }
    // A read-only bind also needs every file bound over to exist (it cannot be created).
    let files_exist = cfg
        .files
        .iter()
        .all(|f| under(cfg.rootfs, &f.path).is_file());
    let bind = cfg.read_only
        && files_exist
        && needed_mount_points(cfg).all(|p| is_dir(&under(cfg.rootfs, p)));
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
        steps.push(remount_ro(cfg.scratch.to_path_buf(), MsFlags::MS_NODEV));
        cfg.scratch.to_path_buf()
    } else {
        check_option_path(cfg.rootfs)?;
        check_option_path(cfg.scratch)?;
        overlay_steps(cfg, &mut steps)
    };
    let view_volumes: Vec<ViewVolume> = volumes
        .iter()
        .enumerate()
        .map(|(slot, v)| ViewVolume {
            path: v.path.clone(),
            read_only: v.read_only,
            source: VolumeSource::Handle(slot),
        })
        .collect();
    let view = view::plan_with_files(
        &ViewConfig {
            create: !bind,
            read_only_root: cfg.read_only && !bind,
            volumes: &view_volumes,
            cwd: cfg.cwd,
            cgroups: cfg.cgroups,
            host_dev: Path::new("/dev"),
        },
        cfg.files,
    );
    steps.push(Step::View {
        root: root.clone(),
        steps: view,
    });
    steps.push(Step::PivotRoot { new_root: root });
    Ok(steps)
}

/// The private tmpfs and the overlay on it (`nodev`); returns the new root.
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
        MsFlags::MS_NODEV,
        &data,
    ));
    s.join("root")
}

/// A step that failed while applying the plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepError {
    /// The step, described.
    pub step: String,
    /// The kernel's answer.
    pub errno: Errno,
}

/// A short description of a step for error messages.
pub fn describe(step: &Step) -> String {
    match step {
        Step::Mount {
            target,
            fstype,
            flags,
            ..
        } => view::describe_mount(target, *fstype, *flags),
        Step::Mkdir { path, .. } => format!("mkdir {}", path.display()),
        Step::OpenHost { path, .. } => format!("open volume source {}", path.display()),
        Step::View { root, .. } => format!("set up the view in {}", root.display()),
        Step::PivotRoot { new_root } => format!("pivot_root into {}", new_root.display()),
    }
}

/// Applies the plan, in order; `join` does the view's [`view::Step::JoinCgroups`]. Stops
/// at the first failure.
pub fn apply(
    steps: &[Step],
    sys: &dyn Syscall,
    join: &mut dyn FnMut() -> nix::Result<()>,
) -> Result<(), StepError> {
    let mut handles: Vec<Option<OwnedFd>> = Vec::new();
    for step in steps {
        let err = |errno| StepError {
            step: describe(step),
            errno,
        };
        match step {
            Step::Mount {
                source,
                target,
                fstype,
                flags,
                data,
            } => sys.mount(source.as_deref(), target, *fstype, *flags, data.as_deref()),
            Step::Mkdir { path, mode } => sys.mkdir(path, *mode),
            Step::OpenHost { path, slot } => sys.open_path(path).map(|fd| {
                handles.resize_with(handles.len().max(slot + 1), || None);
                handles[*slot] = Some(fd);
            }),
            Step::View { root, steps } => {
                view::apply(steps, sys, root, &mut handles, Path::new("/dev/null"), join).map_err(
                    |e| StepError {
                        step: e.step,
                        errno: e.errno,
                    },
                )?;
                Ok(())
            }
            Step::PivotRoot { new_root } => sys.pivot_root(new_root),
        }
        .map_err(err)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests;
