//! Applying the view: every step's target is opened inside the root (openat2
//! RESOLVE_IN_ROOT from the root's fd) and the operation is made on that fd, in order,
//! stopping at the first failure, which is named for the error message.

use std::ffi::OsStr;
use std::os::fd::OwnedFd;
use std::path::{Component, Path, PathBuf};

use nix::errno::Errno;
use nix::mount::MsFlags;

use super::Step;
use crate::syscall::{Kind, Syscall};

/// A step that failed while applying the view.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("Cannot {step}: {errno}")]
pub struct ViewError {
    /// The step, described (what was wrong and what to do).
    pub step: String,
    /// The kernel's answer.
    pub errno: Errno,
}

/// A short description of a mount(2) for error messages (both backends' own mounts too).
pub fn describe_mount(target: &Path, fstype: Option<&str>, flags: MsFlags) -> String {
    match fstype {
        Some(t) => format!("mount {t} on {}", target.display()),
        None if flags.contains(MsFlags::MS_REMOUNT) => {
            format!("remount {} read-only", target.display())
        }
        None if flags.contains(MsFlags::MS_BIND) => format!("bind mount on {}", target.display()),
        None => format!("change propagation of {}", target.display()),
    }
}

/// A short description of a step for error messages.
pub fn describe(step: &Step) -> String {
    match step {
        Step::MountPoint { path, .. } => {
            format!("use {} of the root as a mount point", path.display())
        }
        Step::Mount {
            target,
            fstype,
            flags,
            ..
        } => describe_mount(target, *fstype, *flags),
        Step::Mkdir { path, .. } | Step::MkdirAll { path } => format!("mkdir {}", path.display()),
        Step::Device { path, .. } => format!("provide the device {}", path.display()),
        Step::Symlink { link, .. } => format!("symlink {}", link.display()),
        Step::BindHandle { target, .. } => format!("bind volume on {}", target.display()),
        Step::Mask { path } => format!("mask {}", path.display()),
        Step::ReadOnly { path } => format!("make {} read-only", path.display()),
        Step::BindFile { path, .. } => format!(
            "bind the run's {} (the rootfs's must be a regular file)",
            path.display()
        ),
        Step::JoinCgroups => "join the run's cgroups".to_string(),
    }
}

/// Splits an absolute view path into its parent and last component.
fn split(path: &Path) -> Result<(&Path, &OsStr), Errno> {
    match (path.parent(), path.file_name()) {
        (Some(parent), Some(name)) => Ok((parent, name)),
        _ => Err(Errno::EINVAL),
    }
}

/// Paths whose entries only the kernel makes: a missing one is a kernel without it.
fn kernel_made(path: &Path) -> bool {
    path.starts_with("/proc/") || path.starts_with("/sys/")
}

struct Ctx<'a> {
    sys: &'a dyn Syscall,
    root: OwnedFd,
}

impl Ctx<'_> {
    fn open(&self, path: &Path) -> nix::Result<OwnedFd> {
        self.sys.open_in_root(&self.root, path, false)
    }

    /// Opens a mask or read-only target; `None` for a kernel-made path the kernel lacks.
    /// No symlink is followed, so the target lies in the procfs/sysfs mounted at /proc
    /// or /sys by this view (the workload cannot add, remove or redirect entries there).
    fn open_strict(&self, path: &Path) -> nix::Result<Option<OwnedFd>> {
        match self.sys.open_in_root(&self.root, path, true) {
            Err(Errno::ENOENT) if kernel_made(path) => Ok(None),
            r => r.map(Some),
        }
    }

    fn mount_point(&self, path: &Path, mode: u32, create: bool) -> Result<(), ViewError> {
        let err = |what: &str, errno| {
            ViewError {
            step: format!(
                "use {} of the root as a mount point: it is {what}; a rootfs's /proc, /sys, /dev and /tmp must be directories{}",
                path.display(),
                if create { " or absent" } else { "" }
            ),
            errno,
        }
        };
        let fd = match self.open(path) {
            Err(Errno::ENOENT) if create => {
                let (parent, name) = split(path).map_err(|e| err("not a plain path", e))?;
                let dir = self.open(parent).map_err(|e| err("unreachable", e))?;
                return self
                    .sys
                    .mkdir_at(&dir, name, mode)
                    .map_err(|e| err("missing and cannot be made", e));
            }
            Err(e) => return Err(err("missing", e)),
            Ok(fd) => fd,
        };
        match self.sys.kind_of(&fd) {
            Ok(Kind::Dir) => Ok(()),
            Ok(Kind::Symlink) => Err(err("a symlink", Errno::ELOOP)),
            Ok(Kind::Other) => Err(err("not a directory", Errno::ENOTDIR)),
            Err(e) => Err(err("unreadable", e)),
        }
    }

    fn mkdir_all(&self, path: &Path) -> nix::Result<()> {
        let mut cur = PathBuf::from("/");
        for c in path.components() {
            if let Component::Normal(name) = c {
                let dir = self.open(&cur)?;
                self.sys.mkdir_at(&dir, name, 0o755)?;
                cur.push(name);
            }
        }
        Ok(())
    }

    fn in_parent(
        &self,
        path: &Path,
        f: impl FnOnce(&OwnedFd, &OsStr) -> nix::Result<()>,
    ) -> nix::Result<()> {
        let (parent, name) = split(path)?;
        let dir = self.open(parent)?;
        f(&dir, name)
    }

    /// Hides `path`: an empty read-only tmpfs over a directory, /dev/null over the rest.
    fn mask(&self, path: &Path, null: &Path) -> nix::Result<()> {
        let Some(fd) = self.open_strict(path)? else {
            return Ok(());
        };
        if self.sys.kind_of(&fd)? == Kind::Dir {
            let flags = MsFlags::MS_RDONLY | super::PSEUDO;
            self.sys.mount_on(
                Some(Path::new("tmpfs")),
                &fd,
                Some("tmpfs"),
                flags,
                Some("size=0"),
            )
        } else {
            self.sys
                .mount_on(Some(null), &fd, None, MsFlags::MS_BIND, None)
        }
    }

    /// Makes `path` read-only: bind it onto itself, open the new bind, remount it.
    fn read_only(&self, path: &Path) -> nix::Result<()> {
        let Some(fd) = self.open_strict(path)? else {
            return Ok(());
        };
        self.sys.bind_on(&fd, &fd)?;
        let bound = self.sys.open_in_root(&self.root, path, true)?;
        let flags = MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY | super::PSEUDO;
        self.sys.mount_on(None, &bound, None, flags, None)
    }

    fn device(&self, path: &Path, host: &Path) -> nix::Result<()> {
        self.in_parent(path, |dir, name| self.sys.create_file_at(dir, name, 0o666))?;
        let fd = self.sys.open_in_root(&self.root, path, true)?;
        self.sys
            .mount_on(Some(host), &fd, None, MsFlags::MS_BIND, None)
    }

    /// Binds `host` read-only over the regular file `path` (created when missing and
    /// `create`); the final component is never followed.
    fn bind_file(&self, path: &Path, host: &Path, create: bool) -> nix::Result<()> {
        let fd = match self.sys.open_in_root(&self.root, path, false) {
            Err(Errno::ENOENT) if create => {
                self.in_parent(path, |dir, name| self.sys.create_file_at(dir, name, 0o644))?;
                self.sys.open_in_root(&self.root, path, false)?
            }
            r => r?,
        };
        match self.sys.kind_of(&fd)? {
            Kind::Other => {}
            Kind::Symlink => return Err(Errno::ELOOP),
            Kind::Dir => return Err(Errno::EISDIR),
        }
        self.sys
            .mount_on(Some(host), &fd, None, MsFlags::MS_BIND, None)?;
        let bound = self.sys.open_in_root(&self.root, path, false)?;
        let flags = MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY | super::PSEUDO;
        self.sys.mount_on(None, &bound, None, flags, None)
    }

    fn bind_handle(&self, tree: &OwnedFd, target: &Path, read_only: bool) -> nix::Result<()> {
        let fd = self.open(target)?;
        self.sys.attach_on(tree, &fd)?;
        let bound = self.open(target)?;
        let mut flags =
            MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_NOSUID | MsFlags::MS_NODEV;
        if read_only {
            flags |= MsFlags::MS_RDONLY;
        }
        self.sys.mount_on(None, &bound, None, flags, None)
    }
}

/// Applies the view onto the directory `root` (a path in the caller's view, opened once
/// as the root of every lookup), in order. `handles` holds the detached trees of
/// [`Step::BindHandle`]; `join` does [`Step::JoinCgroups`]; `host_null` is the
/// /dev/null bound over masked files. Stops at the first failure.
pub fn apply(
    steps: &[Step],
    sys: &dyn Syscall,
    root: &Path,
    handles: &mut [Option<OwnedFd>],
    host_null: &Path,
    join: &mut dyn FnMut() -> nix::Result<()>,
) -> Result<(), ViewError> {
    let root_fd = sys.open_dir(root).map_err(|errno| ViewError {
        step: format!("open the root {}", root.display()),
        errno,
    })?;
    let cx = Ctx { sys, root: root_fd };
    for step in steps {
        let err = |errno| ViewError {
            step: describe(step),
            errno,
        };
        match step {
            Step::MountPoint { path, mode, create } => {
                cx.mount_point(path, *mode, *create)?;
                continue;
            }
            Step::Mount {
                source,
                target,
                fstype,
                flags,
                data,
            } => cx.open(target).and_then(|fd| {
                let src = source.as_deref().map(Path::new);
                sys.mount_on(src, &fd, *fstype, *flags, data.as_deref())
            }),
            Step::Mkdir { path, mode } => cx.in_parent(path, |d, n| sys.mkdir_at(d, n, *mode)),
            Step::MkdirAll { path } => cx.mkdir_all(path),
            Step::Device { path, host } => cx.device(path, host),
            Step::Symlink { target, link } => {
                cx.in_parent(link, |d, n| sys.symlink_at(target, d, n))
            }
            Step::BindHandle {
                slot,
                target,
                read_only,
            } => match handles.get_mut(*slot).and_then(Option::take) {
                Some(fd) => cx.bind_handle(&fd, target, *read_only),
                None => Err(Errno::EBADF),
            },
            Step::Mask { path } => cx.mask(path, host_null),
            Step::ReadOnly { path } => cx.read_only(path),
            Step::BindFile { path, host, create } => cx.bind_file(path, host, *create),
            Step::JoinCgroups => join(),
        }
        .map_err(err)?;
    }
    Ok(())
}
