//! A jail: a process confined to an empty root that holds only what was bound into it,
//! in its own namespaces, with its privileges dropped. The generic pieces, on the
//! [`Syscall`] layer, used by the VM backend to confine the VMM process (Firecracker's
//! jailer) and sharing its pivot_root ([`Syscall::pivot_root`]) with the container's
//! rootfs setup:
//!
//! - [`unshare`]: new mount, ipc, uts and net namespaces (the pid namespace is made by
//!   the caller's fork, since it applies only to children);
//! - [`enter`]: `/` made recursively private (nothing propagates to the host), a small
//!   tmpfs on the jail directory, a mount point per [`Bind`] created in it and the host
//!   path bound there (files and directories; read-only, nosuid, noexec, nodev as asked),
//!   optionally a `/proc` that shows only the jail's own processes (`subset=pid`, no
//!   `/proc/sys`, no `/proc/sysrq-trigger`, read-only), the tmpfs remounted read-only,
//!   then pivot_root into it and the old root detached;
//! - [`privilege::drop_privileges`]: ids, capability sets and bounding set, no_new_privs.

use std::path::{Component, Path, PathBuf};

use nix::errno::Errno;
use nix::mount::MsFlags;
use nix::sched::CloneFlags;

use crate::syscall::Syscall;

pub mod privilege;

pub use privilege::{drop_privileges, Identity};

/// The namespaces [`unshare`] makes: everything but pid (the caller's fork) and user.
pub const NAMESPACES: CloneFlags = CloneFlags::CLONE_NEWNS
    .union(CloneFlags::CLONE_NEWIPC)
    .union(CloneFlags::CLONE_NEWUTS)
    .union(CloneFlags::CLONE_NEWNET);

/// Flags of every bind in a jail: nothing in it is executed or setuid.
const BIND_FLAGS: MsFlags = MsFlags::MS_NOSUID.union(MsFlags::MS_NOEXEC);

/// The jail root's tmpfs: a few mount points only.
const ROOT_TMPFS: &str = "size=64k,nr_inodes=256,mode=0755";

/// One host path bound into the jail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bind {
    /// The host file or directory (resolved before the jail exists).
    pub source: PathBuf,
    /// Absolute path inside the jail, without `..`.
    pub target: PathBuf,
    /// A directory (bound with its submounts) rather than a file.
    pub dir: bool,
    /// Read-only.
    pub read_only: bool,
    /// A device node (the only bind without `nodev`).
    pub device: bool,
}

/// What [`enter`] builds.
#[derive(Debug, Clone)]
pub struct JailPlan<'a> {
    /// An empty host directory; a private tmpfs is mounted on it (in the new mount
    /// namespace only), so nothing is ever written into it on the host.
    pub root: &'a Path,
    /// What the jail holds.
    pub binds: &'a [Bind],
    /// Mount a `/proc` of the jail's own pid namespace (for `/proc/self/fd`).
    pub proc: bool,
    /// Hostname in the new uts namespace.
    pub hostname: &'a str,
}

/// A jail step failed: which one, on what, and the errno.
#[derive(Debug, thiserror::Error)]
#[error("Cannot build the jail: {what}{} failed", shown(.path))]
pub struct JailError {
    /// The operation.
    pub what: &'static str,
    /// Its path (empty if none).
    pub path: PathBuf,
    /// The kernel's answer.
    #[source]
    pub errno: Errno,
}

fn shown(path: &Path) -> String {
    match path.as_os_str().is_empty() {
        true => String::new(),
        false => format!(" {}", path.display()),
    }
}

fn step<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(Errno) -> JailError + 'a {
    move |errno| JailError {
        what,
        path: path.to_path_buf(),
        errno,
    }
}

/// New mount, ipc, uts and net namespaces for the calling process, then its hostname.
pub fn unshare(sys: &dyn Syscall, hostname: &str) -> Result<(), JailError> {
    sys.unshare(NAMESPACES)
        .map_err(step("unshare(mnt, ipc, uts, net)", Path::new("")))?;
    sys.sethostname(hostname)
        .map_err(step("sethostname", Path::new(hostname)))
}

/// `target` (absolute, no `..`) joined under `root`.
fn under(root: &Path, target: &Path) -> Result<PathBuf, JailError> {
    let bad = target
        .components()
        .any(|c| matches!(c, Component::ParentDir | Component::CurDir));
    if !target.is_absolute() || bad {
        return Err(step("a bind target must be absolute without '..':", target)(Errno::EINVAL));
    }
    Ok(root.join(target.strip_prefix("/").unwrap_or(target)))
}

/// Creates the directories from `root` (exclusive) down to `dir` (inclusive).
fn mkdirs(sys: &dyn Syscall, root: &Path, dir: &Path) -> Result<(), JailError> {
    let rel = dir.strip_prefix(root).unwrap_or(dir);
    let mut at = root.to_path_buf();
    for c in rel.components() {
        at.push(c);
        sys.mkdir(&at, 0o755).map_err(step("mkdir", &at))?;
    }
    Ok(())
}

fn bind(sys: &dyn Syscall, root: &Path, b: &Bind) -> Result<(), JailError> {
    let at = under(root, &b.target)?;
    let parent = at.parent().unwrap_or(root);
    mkdirs(sys, root, parent)?;
    if b.dir {
        sys.mkdir(&at, 0o755).map_err(step("mkdir", &at))?;
    } else {
        sys.create_file(&at, 0o600)
            .map_err(step("create mount point", &at))?;
    }
    let rec = if b.dir {
        MsFlags::MS_REC
    } else {
        MsFlags::empty()
    };
    sys.mount(Some(&b.source), &at, None, MsFlags::MS_BIND | rec, None)
        .map_err(step("bind mount of", &b.source))?;
    let mut flags = MsFlags::MS_REMOUNT | MsFlags::MS_BIND | BIND_FLAGS;
    if !b.device {
        flags |= MsFlags::MS_NODEV;
    }
    if b.read_only {
        flags |= MsFlags::MS_RDONLY;
    }
    sys.mount(None, &at, None, flags, None)
        .map_err(step("remount (nosuid, noexec) of", &at))
}

fn mount_proc(sys: &dyn Syscall, root: &Path) -> Result<(), JailError> {
    let at = root.join("proc");
    sys.mkdir(&at, 0o555).map_err(step("mkdir", &at))?;
    let flags = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC | MsFlags::MS_RDONLY;
    let proc = Path::new("proc");
    match sys.mount(Some(proc), &at, Some("proc"), flags, Some("subset=pid")) {
        // Kernels before 5.8 have no subset=pid: the read-only mount still stops writes
        // (sysctl writes also need uid 0, which the jail gives up).
        Err(Errno::EINVAL) => sys.mount(Some(proc), &at, Some("proc"), flags, None),
        r => r,
    }
    .map_err(step("mount proc on", &at))
}

/// Builds the jail in the current (new) mount namespace and makes it the root: see the
/// module docs. On return the process sees only the jail; its cwd is `/`.
pub fn enter(sys: &dyn Syscall, plan: &JailPlan<'_>) -> Result<(), JailError> {
    let root = plan.root;
    let slash = Path::new("/");
    sys.mount(
        None,
        slash,
        None,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None,
    )
    .map_err(step("make / private:", slash))?;
    let tmpfs = Path::new("tmpfs");
    let flags = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    sys.mount(Some(tmpfs), root, Some("tmpfs"), flags, Some(ROOT_TMPFS))
        .map_err(step("mount tmpfs on", root))?;
    for b in plan.binds {
        bind(sys, root, b)?;
    }
    if plan.proc {
        mount_proc(sys, root)?;
    }
    let ro = MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY | flags;
    sys.mount(None, root, None, ro, None)
        .map_err(step("remount read-only", root))?;
    sys.pivot_root(root).map_err(step("pivot_root into", root))
}

/// Closes every fd from 3 up except those in `keep` (fds the jailed process inherited
/// from its parent and has no business with: a handle on a host directory would undo
/// the pivot_root).
pub fn close_inherited_fds(sys: &dyn Syscall, keep: &[u32]) -> Result<(), JailError> {
    let mut keep: Vec<u32> = keep.iter().copied().filter(|&fd| fd >= 3).collect();
    keep.sort_unstable();
    keep.dedup();
    let mut first = 3;
    for fd in keep {
        if fd > first {
            sys.close_range(first, fd - 1)
                .map_err(step("close_range", Path::new("")))?;
        }
        first = fd + 1;
    }
    sys.close_range(first, u32::MAX)
        .map_err(step("close_range", Path::new("")))
}

#[cfg(test)]
mod tests;
