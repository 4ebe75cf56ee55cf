//! A recording [`Syscall`] for unit tests: every call is appended to a log as one line
//! of text, and a call whose line starts with a chosen prefix fails with EPERM.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::ffi::{CString, OsStr};
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::mount::MsFlags;
use nix::sched::CloneFlags;

use super::{CapSets, Kind, Syscall};

/// What the fake kernel finds at a path, for mount(2) answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    /// A directory: a file bind-mounted on it gets ENOTDIR.
    Dir,
    /// A file.
    Other,
    /// Nothing: mounting on it gets ENOENT.
    Missing,
    /// A symlink: opening it in a root gives the link itself (or ELOOP when symlinks
    /// are refused).
    Symlink,
}

/// Records calls instead of making them.
#[derive(Debug, Default)]
pub struct FakeSyscall {
    /// One line per call, in order.
    pub calls: RefCell<Vec<String>>,
    /// What is at a mount target; targets not listed exist and accept any mount.
    pub kinds: BTreeMap<PathBuf, FileKind>,
    /// A call whose log line starts with this fails with EPERM.
    pub fail_on: Option<String>,
    /// What each fd handed out by the `*_at`/`open_*` calls names (for the log).
    pub fds: RefCell<BTreeMap<i32, PathBuf>>,
}

impl FakeSyscall {
    fn record(&self, line: String) -> nix::Result<()> {
        let fail = self.fail_on.as_deref().is_some_and(|p| line.starts_with(p));
        self.calls.borrow_mut().push(line);
        if fail {
            Err(Errno::EPERM)
        } else {
            Ok(())
        }
    }

    /// The log, for assertions.
    pub fn log(&self) -> Vec<String> {
        self.calls.borrow().clone()
    }

    /// The log without the `open` lines (lookups), for assertions on what was changed.
    pub fn changes(&self) -> Vec<String> {
        self.log()
            .into_iter()
            .filter(|l| !l.starts_with("open"))
            .collect()
    }

    /// The path an fd from this fake names.
    pub fn name(&self, fd: &OwnedFd) -> PathBuf {
        self.fds
            .borrow()
            .get(&fd.as_raw_fd())
            .cloned()
            .unwrap_or_else(|| PathBuf::from("?"))
    }

    fn new_fd(&self, name: PathBuf) -> nix::Result<OwnedFd> {
        let fd = OwnedFd::from(std::fs::File::open("/dev/null").map_err(|_| Errno::EIO)?);
        self.fds.borrow_mut().insert(fd.as_raw_fd(), name);
        Ok(fd)
    }
}

impl Syscall for FakeSyscall {
    fn mount(
        &self,
        source: Option<&Path>,
        target: &Path,
        fstype: Option<&str>,
        flags: MsFlags,
        data: Option<&str>,
    ) -> nix::Result<()> {
        let line = format!(
            "mount {} {} {} {:?} {}",
            source.map_or("-".into(), |s| s.display().to_string()),
            target.display(),
            fstype.unwrap_or("-"),
            flags,
            data.unwrap_or("-")
        );
        self.record(line)?;
        let file_source = source.is_some_and(|s| s == Path::new("/dev/null"));
        match self.kinds.get(target) {
            Some(FileKind::Missing) => Err(Errno::ENOENT),
            Some(FileKind::Dir) if file_source && flags.contains(MsFlags::MS_BIND) => {
                Err(Errno::ENOTDIR)
            }
            _ => Ok(()),
        }
    }
    fn pivot_root(&self, new_root: &Path) -> nix::Result<()> {
        self.record(format!("pivot_root {}", new_root.display()))
    }
    fn mkdir(&self, path: &Path, mode: u32) -> nix::Result<()> {
        self.record(format!("mkdir {} {mode:o}", path.display()))
    }
    fn mknod_char(&self, path: &Path, mode: u32, major: u64, minor: u64) -> nix::Result<()> {
        self.record(format!("mknod {} {mode:o} {major}:{minor}", path.display()))
    }
    fn open_path(&self, path: &Path) -> nix::Result<OwnedFd> {
        self.record(format!("open_path {}", path.display()))?;
        std::fs::File::open("/dev/null")
            .map(OwnedFd::from)
            .map_err(|_| Errno::EIO)
    }
    fn bind_fd(&self, _fd: &OwnedFd, target: &Path) -> nix::Result<()> {
        self.record(format!("bind_fd {}", target.display()))
    }
    fn symlink(&self, target: &Path, link: &Path) -> nix::Result<()> {
        self.record(format!(
            "symlink {} -> {}",
            link.display(),
            target.display()
        ))
    }
    fn sethostname(&self, name: &str) -> nix::Result<()> {
        self.record(format!("sethostname {name}"))
    }
    fn unshare(&self, flags: CloneFlags) -> nix::Result<()> {
        self.record(format!("unshare {flags:?}"))
    }
    fn loopback_up(&self) -> nix::Result<()> {
        self.record("loopback_up".into())
    }
    fn chdir(&self, path: &Path) -> nix::Result<()> {
        self.record(format!("chdir {}", path.display()))
    }
    fn clear_groups(&self) -> nix::Result<()> {
        self.record("setgroups []".into())
    }
    fn drop_bounding_cap(&self, cap: u32) -> nix::Result<()> {
        self.record(format!("capbset_drop {cap}"))
    }
    fn keep_caps(&self) -> nix::Result<()> {
        self.record("keepcaps".into())
    }
    fn set_gid(&self, gid: u32) -> nix::Result<()> {
        self.record(format!("setresgid {gid}"))
    }
    fn set_uid(&self, uid: u32) -> nix::Result<()> {
        self.record(format!("setresuid {uid}"))
    }
    fn set_caps(&self, c: CapSets) -> nix::Result<()> {
        self.record(format!(
            "capset eff={:#x} prm={:#x} inh={:#x}",
            c.effective, c.permitted, c.inheritable
        ))
    }
    fn clear_ambient_caps(&self) -> nix::Result<()> {
        self.record("ambient_clear".into())
    }
    fn set_no_new_privs(&self) -> nix::Result<()> {
        self.record("no_new_privs".into())
    }
    fn setsid(&self) -> nix::Result<()> {
        self.record("setsid".into())
    }
    fn set_controlling_tty(&self) -> nix::Result<()> {
        self.record("set_controlling_tty".into())
    }
    fn join_session_keyring(&self) -> nix::Result<()> {
        self.record("join_session_keyring".into())
    }
    fn set_rlimit(&self, resource: u32, soft: u64, hard: u64) -> nix::Result<()> {
        self.record(format!("setrlimit {resource} {soft} {hard}"))
    }
    fn set_oom_score_adj(&self, value: i32) -> nix::Result<()> {
        self.record(format!("oom_score_adj {value}"))
    }
    fn set_dumpable(&self, on: bool) -> nix::Result<()> {
        self.record(format!("dumpable {}", u8::from(on)))
    }
    fn umask(&self, mask: u32) {
        let _ = self.record(format!("umask {mask:03o}"));
    }
    fn reset_signals(&self) -> nix::Result<()> {
        self.record("reset_signals".into())
    }
    fn cloexec_from(&self, first: u32) {
        let _ = self.record(format!("cloexec_from {first}"));
    }
    fn install_seccomp(&self, f: &crate::seccomp::Filter) -> nix::Result<()> {
        self.record(format!("seccomp {} insns", f.len()))
    }
    fn stub_memfd(&self) -> nix::Result<OwnedFd> {
        self.record("stub_memfd".into())?;
        std::fs::File::open("/dev/null")
            .map(OwnedFd::from)
            .map_err(|_| Errno::EIO)
    }
    fn report_fd_to_3(&self, _fd: &OwnedFd) -> nix::Result<()> {
        self.record("report_fd_to_3".into())
    }
    fn execve_fd(&self, _fd: &OwnedFd, argv: &[CString], _envp: &[CString]) -> Errno {
        let args: Vec<_> = argv.iter().map(|a| a.to_string_lossy()).collect();
        match self.record(format!("execve_stub [{}]", args.join(","))) {
            Err(e) => e,
            Ok(()) => Errno::ENOEXEC,
        }
    }
    fn create_file(&self, path: &Path, mode: u32) -> nix::Result<()> {
        self.record(format!("create {} {mode:o}", path.display()))
    }
    fn close_range(&self, first: u32, last: u32) -> nix::Result<()> {
        self.record(format!("close_range {first} {last}"))
    }

    fn open_dir(&self, path: &Path) -> nix::Result<OwnedFd> {
        self.record(format!("open_dir {}", path.display()))?;
        self.new_fd(path.to_path_buf())
    }

    fn open_in_root(&self, root: &OwnedFd, path: &Path, no_symlinks: bool) -> nix::Result<OwnedFd> {
        let full = self.name(root).join(path.strip_prefix("/").unwrap_or(path));
        self.record(format!("open {}", full.display()))?;
        for a in full.ancestors() {
            match self.kinds.get(a) {
                Some(FileKind::Missing) => return Err(Errno::ENOENT),
                Some(FileKind::Symlink) if no_symlinks => return Err(Errno::ELOOP),
                Some(FileKind::Other) if a != full => return Err(Errno::ENOTDIR),
                _ => {}
            }
        }
        self.new_fd(full)
    }

    fn kind_of(&self, fd: &OwnedFd) -> nix::Result<Kind> {
        Ok(match self.kinds.get(&self.name(fd)) {
            Some(FileKind::Other) => Kind::Other,
            Some(FileKind::Symlink) => Kind::Symlink,
            _ => Kind::Dir,
        })
    }

    fn mount_on(
        &self,
        source: Option<&Path>,
        target: &OwnedFd,
        fstype: Option<&str>,
        flags: MsFlags,
        data: Option<&str>,
    ) -> nix::Result<()> {
        self.record(format!(
            "mount {} {} {} {:?} {}",
            source.map_or("-".into(), |s| s.display().to_string()),
            self.name(target).display(),
            fstype.unwrap_or("-"),
            flags,
            data.unwrap_or("-")
        ))
    }

    fn bind_on(&self, source: &OwnedFd, target: &OwnedFd) -> nix::Result<()> {
        self.record(format!(
            "bind {} {}",
            self.name(source).display(),
            self.name(target).display()
        ))
    }

    fn attach_on(&self, _tree: &OwnedFd, target: &OwnedFd) -> nix::Result<()> {
        self.record(format!("attach {}", self.name(target).display()))
    }

    fn mkdir_at(&self, dir: &OwnedFd, name: &OsStr, mode: u32) -> nix::Result<()> {
        let p = self.name(dir).join(name);
        self.record(format!("mkdir {} {mode:o}", p.display()))
    }

    fn create_file_at(&self, dir: &OwnedFd, name: &OsStr, mode: u32) -> nix::Result<()> {
        let p = self.name(dir).join(name);
        self.record(format!("create {} {mode:o}", p.display()))
    }

    fn symlink_at(&self, target: &Path, dir: &OwnedFd, name: &OsStr) -> nix::Result<()> {
        let p = self.name(dir).join(name);
        self.record(format!("symlink {} -> {}", p.display(), target.display()))
    }
}
