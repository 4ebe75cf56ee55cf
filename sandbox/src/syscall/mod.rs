//! The system calls the sandbox setup makes (in both modes), behind a trait so that the setup logic
//! (mount plan, namespace setup, privilege drop) can be unit-tested against a recording
//! fake ([`fake::FakeSyscall`]) while the real thing ([`linux::LinuxSyscall`]) is a thin
//! layer that does no thinking of its own (youki's `Syscall`, but injected).

use std::ffi::{CString, OsStr};
use std::os::fd::OwnedFd;
use std::path::Path;

use nix::errno::Errno;

use nix::mount::MsFlags;
use nix::sched::CloneFlags;

pub mod linux;

/// The recording test double (compiled always, so the backends' tests can use it too).
pub mod fake;

/// The system calls of the container setup. Every method is one kernel operation.
pub trait Syscall {
    /// mount(2).
    fn mount(
        &self,
        source: Option<&Path>,
        target: &Path,
        fstype: Option<&str>,
        flags: MsFlags,
        data: Option<&str>,
    ) -> nix::Result<()>;
    /// Makes `new_root` the root: chdir, pivot_root(".", "."), then lazily unmounts the
    /// old root stacked on top (runc's trick, no put_old directory needed).
    fn pivot_root(&self, new_root: &Path) -> nix::Result<()>;
    /// mkdir(2); an existing directory is not an error.
    fn mkdir(&self, path: &Path, mode: u32) -> nix::Result<()>;
    /// mknod(2) of a character device.
    fn mknod_char(&self, path: &Path, mode: u32, major: u64, minor: u64) -> nix::Result<()>;
    /// open_tree(2) with OPEN_TREE_CLONE: a detached copy of the mount tree at a host
    /// directory, which can still be attached after pivot_root (a volume's source).
    fn open_path(&self, path: &Path) -> nix::Result<OwnedFd>;
    /// Attaches the detached tree `fd` (from [`Syscall::open_path`]) at `target`
    /// (move_mount(2)); the target path resolves inside the current root.
    fn bind_fd(&self, fd: &OwnedFd, target: &Path) -> nix::Result<()>;
    /// symlink(2): `link` points to `target`.
    fn symlink(&self, target: &Path, link: &Path) -> nix::Result<()>;
    /// sethostname(2).
    fn sethostname(&self, name: &str) -> nix::Result<()>;
    /// unshare(2).
    fn unshare(&self, flags: CloneFlags) -> nix::Result<()>;
    /// Brings the loopback interface of the current network namespace up (SIOCSIFFLAGS).
    fn loopback_up(&self) -> nix::Result<()>;
    /// chdir(2).
    fn chdir(&self, path: &Path) -> nix::Result<()>;
    /// setgroups(2) with an empty list.
    fn clear_groups(&self) -> nix::Result<()>;
    /// prctl(PR_CAPBSET_DROP) of one capability.
    fn drop_bounding_cap(&self, cap: u32) -> nix::Result<()>;
    /// prctl(PR_SET_KEEPCAPS, 1): keep permitted capabilities across setuid.
    fn keep_caps(&self) -> nix::Result<()>;
    /// setresgid(2) with all three ids equal.
    fn set_gid(&self, gid: u32) -> nix::Result<()>;
    /// setresuid(2) with all three ids equal.
    fn set_uid(&self, uid: u32) -> nix::Result<()>;
    /// capset(2) of the calling thread's three sets.
    fn set_caps(&self, sets: CapSets) -> nix::Result<()>;
    /// prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL).
    fn clear_ambient_caps(&self) -> nix::Result<()>;
    /// prctl(PR_SET_NO_NEW_PRIVS, 1).
    fn set_no_new_privs(&self) -> nix::Result<()>;
    /// setsid(2): a new session without a controlling terminal.
    fn setsid(&self) -> nix::Result<()>;
    /// ioctl(0, TIOCSCTTY, 0): the terminal on fd 0 becomes the controlling terminal of
    /// the session the caller leads (`isol run -t`: the workload's own pty).
    fn set_controlling_tty(&self) -> nix::Result<()>;
    /// keyctl(KEYCTL_JOIN_SESSION_KEYRING, NULL): a new anonymous session keyring.
    fn join_session_keyring(&self) -> nix::Result<()>;
    /// setrlimit(2) (prlimit64 on the calling process).
    fn set_rlimit(&self, resource: u32, soft: u64, hard: u64) -> nix::Result<()>;
    /// Writes /proc/self/oom_score_adj.
    fn set_oom_score_adj(&self, value: i32) -> nix::Result<()>;
    /// prctl(PR_SET_DUMPABLE): no core dumps, /proc/PID owned by root, no ptrace by the
    /// same uid.
    fn set_dumpable(&self, on: bool) -> nix::Result<()>;
    /// umask(2).
    fn umask(&self, mask: u32);
    /// Default disposition for every signal that can have one, and an empty signal mask.
    fn reset_signals(&self) -> nix::Result<()>;
    /// Marks every fd from `first` up close-on-exec (close_range; a kernel without it
    /// keeps them, and Rust opens every fd close-on-exec anyway).
    fn cloexec_from(&self, first: u32);
    /// Installs a seccomp filter on the calling thread (needs no_new_privs).
    fn install_seccomp(&self, filter: &crate::seccomp::Filter) -> nix::Result<()>;
    /// A memfd (close-on-exec) holding [`crate::stub::STUB`], sealed against any change.
    fn stub_memfd(&self) -> nix::Result<OwnedFd>;
    /// Makes `fd` also fd 3, without close-on-exec (the exec stub's report fd).
    fn report_fd_to_3(&self, fd: &OwnedFd) -> nix::Result<()>;
    /// execveat(fd, "", argv, envp, AT_EMPTY_PATH); returns only on failure.
    fn execve_fd(&self, fd: &OwnedFd, argv: &[CString], envp: &[CString]) -> Errno;
    /// Creates an empty regular file (a mount point for a file bind); existing is fine.
    fn create_file(&self, path: &Path, mode: u32) -> nix::Result<()>;
    /// close_range(2) of `first..=last` (fds opened before a jail that it must not keep).
    fn close_range(&self, first: u32, last: u32) -> nix::Result<()>;

    // Mount targets resolved inside a root (the view, `crate::view`): every path below
    // is looked up from a directory fd, never from the caller's root.

    /// open(2) of a directory with O_PATH|O_DIRECTORY|O_CLOEXEC (the view's root).
    fn open_dir(&self, path: &Path) -> nix::Result<OwnedFd>;
    /// openat2(2) of `path` under `root` with O_PATH|O_NOFOLLOW|O_CLOEXEC and
    /// RESOLVE_IN_ROOT|RESOLVE_NO_MAGICLINKS (plus RESOLVE_NO_SYMLINKS with
    /// `no_symlinks`): absolute symlinks and `..` stay inside `root`; a final symlink is
    /// opened itself, not followed.
    fn open_in_root(&self, root: &OwnedFd, path: &Path, no_symlinks: bool) -> nix::Result<OwnedFd>;
    /// fstat(2) of an O_PATH fd: what it is.
    fn kind_of(&self, fd: &OwnedFd) -> nix::Result<Kind>;
    /// mount(2) onto the file `target` refers to (through /proc/self/fd/N), so the target
    /// is exactly what [`Syscall::open_in_root`] resolved. A bind's `source` is a path.
    fn mount_on(
        &self,
        source: Option<&Path>,
        target: &OwnedFd,
        fstype: Option<&str>,
        flags: MsFlags,
        data: Option<&str>,
    ) -> nix::Result<()>;
    /// A bind mount of the file `source` refers to onto `target` (both fds, recursive).
    fn bind_on(&self, source: &OwnedFd, target: &OwnedFd) -> nix::Result<()>;
    /// move_mount(2) of a detached tree (from [`Syscall::open_path`]) onto `target`.
    fn attach_on(&self, tree: &OwnedFd, target: &OwnedFd) -> nix::Result<()>;
    /// mkdirat(2) of `name` in `dir`; an existing entry is not an error.
    fn mkdir_at(&self, dir: &OwnedFd, name: &OsStr, mode: u32) -> nix::Result<()>;
    /// Creates an empty regular file `name` in `dir` (a device node's bind target).
    fn create_file_at(&self, dir: &OwnedFd, name: &OsStr, mode: u32) -> nix::Result<()>;
    /// symlinkat(2): `name` in `dir` points to `target`.
    fn symlink_at(&self, target: &Path, dir: &OwnedFd, name: &OsStr) -> nix::Result<()>;
}

/// What an fd refers to ([`Syscall::kind_of`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A directory.
    Dir,
    /// A symbolic link (opened with O_NOFOLLOW).
    Symlink,
    /// Anything else (file, device, socket...).
    Other,
}

/// The capability sets capset(2) sets (bit per capability).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CapSets {
    /// Effective.
    pub effective: u64,
    /// Permitted.
    pub permitted: u64,
    /// Inheritable.
    pub inheritable: u64,
}
