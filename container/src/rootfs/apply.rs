//! Applying the mount plan: one [`Syscall`] call (or two, for read-only paths) per
//! step, in order, stopping at the first failure, which is named for the error message.

use std::os::fd::OwnedFd;
use std::path::{Component, Path, PathBuf};

use nix::errno::Errno;
use nix::mount::MsFlags;

use super::Step;
use crate::syscall::Syscall;

/// A step that failed while applying the plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepError {
    /// The step, described.
    pub step: String,
    /// The kernel's answer.
    pub errno: Errno,
}

fn step_err(step: &Step) -> impl FnOnce(Errno) -> StepError + '_ {
    move |errno| StepError {
        step: describe(step),
        errno,
    }
}

/// A short description of a step for error messages.
pub fn describe(step: &Step) -> String {
    match step {
        Step::Mount {
            target,
            fstype,
            flags,
            ..
        } => match fstype {
            Some(t) => format!("mount {t} on {}", target.display()),
            None if flags.contains(MsFlags::MS_REMOUNT) => {
                format!("remount {} read-only", target.display())
            }
            None if flags.contains(MsFlags::MS_BIND) => {
                format!("bind mount on {}", target.display())
            }
            None => format!("change propagation of {}", target.display()),
        },
        Step::Mkdir { path, .. } | Step::MkdirAll { path } => format!("mkdir {}", path.display()),
        Step::Mknod { path, .. } => format!("mknod {}", path.display()),
        Step::Symlink { link, .. } => format!("symlink {}", link.display()),
        Step::OpenHost { path, .. } => format!("open volume source {}", path.display()),
        Step::BindHandle { target, .. } => format!("bind volume on {}", target.display()),
        Step::PivotRoot { new_root } => format!("pivot_root into {}", new_root.display()),
        Step::Mask { path } => format!("mask {}", path.display()),
        Step::ReadOnly { path } => format!("make {} read-only", path.display()),
        Step::JoinCgroups => "join the run's cgroups".to_string(),
    }
}

fn mkdir_all(sys: &dyn Syscall, path: &Path) -> nix::Result<()> {
    let mut cur = PathBuf::from("/");
    for c in path.components() {
        if let Component::Normal(name) = c {
            cur.push(name);
            sys.mkdir(&cur, 0o755)?;
        }
    }
    Ok(())
}

/// Masks `path` without looking first (a stat of /proc entries costs a lookup of its
/// own): bind /dev/null over it; a directory answers ENOTDIR and gets an empty read-only
/// tmpfs instead; a missing path (ENOENT) is skipped.
fn apply_mask(sys: &dyn Syscall, path: &Path) -> nix::Result<()> {
    let null = sys.mount(
        Some(Path::new("/dev/null")),
        path,
        None,
        MsFlags::MS_BIND,
        None,
    );
    match null {
        Err(Errno::ENOENT) => Ok(()),
        Err(Errno::ENOTDIR) => sys.mount(
            Some(Path::new("tmpfs")),
            path,
            Some("tmpfs"),
            MsFlags::MS_RDONLY,
            None,
        ),
        r => r,
    }
}

/// Makes `path` read-only: bind it onto itself, then remount the bind read-only. A
/// missing path (ENOENT) is skipped.
fn apply_readonly(sys: &dyn Syscall, path: &Path) -> nix::Result<()> {
    match sys.mount(
        Some(path),
        path,
        None,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None,
    ) {
        Err(Errno::ENOENT) => return Ok(()),
        r => r?,
    }
    let flags = MsFlags::MS_BIND
        | MsFlags::MS_REMOUNT
        | MsFlags::MS_RDONLY
        | MsFlags::MS_NOSUID
        | MsFlags::MS_NODEV
        | MsFlags::MS_NOEXEC;
    sys.mount(None, path, None, flags, None)
}

/// Applies the plan, in order; `join` does [`Step::JoinCgroups`]. Stops at the first
/// failure.
pub fn apply(
    steps: &[Step],
    sys: &dyn Syscall,
    join: &mut dyn FnMut() -> nix::Result<()>,
) -> Result<(), StepError> {
    let mut handles: Vec<Option<OwnedFd>> = Vec::new();
    for step in steps {
        match step {
            Step::Mount {
                source,
                target,
                fstype,
                flags,
                data,
            } => sys.mount(source.as_deref(), target, *fstype, *flags, data.as_deref()),
            Step::Mkdir { path, mode } => sys.mkdir(path, *mode),
            Step::MkdirAll { path } => mkdir_all(sys, path),
            Step::Mknod { path, major, minor } => sys.mknod_char(path, 0o666, *major, *minor),
            Step::Symlink { target, link } => sys.symlink(target, link),
            Step::OpenHost { path, slot } => sys.open_path(path).map(|fd| {
                handles.resize_with(handles.len().max(slot + 1), || None);
                handles[*slot] = Some(fd);
            }),
            Step::BindHandle { slot, target } => {
                match handles.get_mut(*slot).and_then(Option::take) {
                    Some(fd) => sys.bind_fd(&fd, target),
                    None => Err(Errno::EBADF),
                }
            }
            Step::PivotRoot { new_root } => sys.pivot_root(new_root),
            Step::Mask { path } => apply_mask(sys, path),
            Step::ReadOnly { path } => apply_readonly(sys, path),
            Step::JoinCgroups => join(),
        }
        .map_err(step_err(step))?;
    }
    Ok(())
}
