//! The real [`Syscall`]: thin wrappers over nix and, where nix has no wrapper, libc.
//! Every `unsafe` block of the setup layer lives here (the clone/fork/exec path lives in
//! `process`).

use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;

use nix::errno::Errno;
use nix::mount::{MntFlags, MsFlags};
use nix::sched::CloneFlags;
use nix::sys::socket::{socket, AddressFamily, SockFlag, SockType};
use nix::sys::stat::{Mode, SFlag};
use nix::unistd::{Gid, Uid};

use super::{CapSets, Kind, Syscall};

/// The host kernel.
#[derive(Debug, Default, Clone, Copy)]
pub struct LinuxSyscall;

/// `struct __user_cap_header_struct` (linux/capability.h).
#[repr(C)]
struct CapHeader {
    version: u32,
    pid: i32,
}

/// `struct __user_cap_data_struct` (linux/capability.h); version 3 takes two of them.
#[repr(C)]
#[derive(Clone, Copy)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

/// `_LINUX_CAPABILITY_VERSION_3`: 64-bit capability sets in two `CapData` words.
const CAP_VERSION_3: u32 = 0x2008_0522;

/// `struct ifreq` reduced to the flags member (linux/if.h); 40 bytes on x86_64.
#[repr(C)]
struct IfreqFlags {
    name: [u8; libc::IFNAMSIZ],
    flags: libc::c_short,
    _pad: [u8; 22],
}

// New mount API (linux/mount.h, include/uapi/asm-generic/unistd.h; Linux 5.2+). The
// syscall numbers are the same on x86_64 and every asm-generic architecture.
const SYS_OPEN_TREE: libc::c_long = 428;
const SYS_MOVE_MOUNT: libc::c_long = 429;
const OPEN_TREE_CLONE: libc::c_uint = 1;
// O_CLOEXEC is a positive flag bit.
#[allow(clippy::cast_sign_loss)]
const OPEN_TREE_CLOEXEC: libc::c_uint = libc::O_CLOEXEC as libc::c_uint;
const AT_RECURSIVE: libc::c_uint = 0x8000;
const MOVE_MOUNT_F_EMPTY_PATH: libc::c_uint = 4;

const MOVE_MOUNT_T_EMPTY_PATH: libc::c_uint = 0x40;

/// `/proc/self/fd/N`: the path through which a mount(2) reaches exactly the file an fd
/// refers to (runc's approach; the magic link is followed by the kernel, not by a walk).
fn fd_path(fd: &OwnedFd) -> std::path::PathBuf {
    std::path::PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()))
}

fn cstr(p: &std::ffi::OsStr) -> nix::Result<std::ffi::CString> {
    std::ffi::CString::new(p.as_encoded_bytes()).map_err(|_| Errno::EINVAL)
}

fn owned(rc: libc::c_long) -> nix::Result<OwnedFd> {
    let fd = Errno::result(rc)?;
    // An fd always fits in i32.
    #[allow(clippy::cast_possible_truncation)]
    let fd = fd as i32;
    // SAFETY: the kernel just returned this fd to us; nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn lo_request() -> IfreqFlags {
    let mut name = [0u8; libc::IFNAMSIZ];
    name[..2].copy_from_slice(b"lo");
    IfreqFlags {
        name,
        flags: 0,
        _pad: [0; 22],
    }
}

fn prctl(option: libc::c_int, arg2: libc::c_ulong, arg3: libc::c_ulong) -> nix::Result<()> {
    // SAFETY: every caller passes an integer-only prctl option (PR_CAPBSET_DROP,
    // PR_CAP_AMBIENT, PR_SET_DUMPABLE); no pointer is passed, so no memory is read or written.
    let rc = unsafe { libc::prctl(option, arg2, arg3, 0 as libc::c_ulong, 0 as libc::c_ulong) };
    Errno::result(rc).map(drop)
}

impl Syscall for LinuxSyscall {
    fn mount(
        &self,
        source: Option<&Path>,
        target: &Path,
        fstype: Option<&str>,
        flags: MsFlags,
        data: Option<&str>,
    ) -> nix::Result<()> {
        nix::mount::mount(source, target, fstype, flags, data)
    }

    fn pivot_root(&self, new_root: &Path) -> nix::Result<()> {
        nix::unistd::chdir(new_root)?;
        nix::unistd::pivot_root(".", ".")?;
        nix::mount::umount2(".", MntFlags::MNT_DETACH)?;
        nix::unistd::chdir("/")
    }

    fn mkdir(&self, path: &Path, mode: u32) -> nix::Result<()> {
        match nix::unistd::mkdir(path, Mode::from_bits_truncate(mode)) {
            Err(Errno::EEXIST) => Ok(()),
            r => r,
        }
    }

    fn mknod_char(&self, path: &Path, mode: u32, major: u64, minor: u64) -> nix::Result<()> {
        let dev = nix::sys::stat::makedev(major, minor);
        nix::sys::stat::mknod(path, SFlag::S_IFCHR, Mode::from_bits_truncate(mode), dev)
    }

    fn open_path(&self, path: &Path) -> nix::Result<OwnedFd> {
        let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes())
            .map_err(|_| Errno::EINVAL)?;
        let flags = OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_RECURSIVE;
        // SAFETY: `c` is a live NUL-terminated path for the duration of the call;
        // open_tree(2) only reads it and returns a new fd that we take ownership of.
        let rc = unsafe { libc::syscall(SYS_OPEN_TREE, libc::AT_FDCWD, c.as_ptr(), flags) };
        let fd = Errno::result(rc)?;
        // An fd always fits in i32.
        #[allow(clippy::cast_possible_truncation)]
        let fd = fd as i32;
        // SAFETY: the kernel just returned this fd to us; nothing else owns it.
        Ok(unsafe { OwnedFd::from_raw_fd(fd) })
    }

    fn bind_fd(&self, fd: &OwnedFd, target: &Path) -> nix::Result<()> {
        let c = std::ffi::CString::new(target.as_os_str().as_encoded_bytes())
            .map_err(|_| Errno::EINVAL)?;
        let empty = c"";
        // SAFETY: `fd` is a live detached mount tree from open_tree(OPEN_TREE_CLONE); both
        // strings are live and NUL-terminated during the call, which only reads them.
        let rc = unsafe {
            libc::syscall(
                SYS_MOVE_MOUNT,
                fd.as_raw_fd(),
                empty.as_ptr(),
                libc::AT_FDCWD,
                c.as_ptr(),
                MOVE_MOUNT_F_EMPTY_PATH,
            )
        };
        Errno::result(rc).map(drop)
    }

    fn symlink(&self, target: &Path, link: &Path) -> nix::Result<()> {
        std::os::unix::fs::symlink(target, link)
            .map_err(|e| Errno::from_raw(e.raw_os_error().unwrap_or(0)))
    }

    fn sethostname(&self, name: &str) -> nix::Result<()> {
        nix::unistd::sethostname(name)
    }

    fn unshare(&self, flags: CloneFlags) -> nix::Result<()> {
        nix::sched::unshare(flags)
    }

    fn loopback_up(&self) -> nix::Result<()> {
        let sock: OwnedFd = socket(
            AddressFamily::Inet,
            SockType::Datagram,
            SockFlag::SOCK_CLOEXEC,
            None,
        )?;
        let mut req = lo_request();
        // SAFETY: `req` is a live, writable ifreq-sized buffer naming "lo"; SIOCGIFFLAGS
        // writes only its flags member.
        let rc = unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req) };
        Errno::result(rc)?;
        // IFF_UP and IFF_RUNNING fit in the 16-bit flags member.
        #[allow(clippy::cast_possible_truncation)]
        let up = (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short;
        req.flags |= up;
        // SAFETY: as above; SIOCSIFFLAGS only reads the buffer.
        let rc = unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &req) };
        Errno::result(rc).map(drop)
    }

    fn chdir(&self, path: &Path) -> nix::Result<()> {
        nix::unistd::chdir(path)
    }

    fn clear_groups(&self) -> nix::Result<()> {
        nix::unistd::setgroups(&[])
    }

    fn drop_bounding_cap(&self, cap: u32) -> nix::Result<()> {
        prctl(libc::PR_CAPBSET_DROP, libc::c_ulong::from(cap), 0)
    }

    fn keep_caps(&self) -> nix::Result<()> {
        nix::sys::prctl::set_keepcaps(true)
    }

    fn set_gid(&self, gid: u32) -> nix::Result<()> {
        let g = Gid::from_raw(gid);
        nix::unistd::setresgid(g, g, g)
    }

    fn set_uid(&self, uid: u32) -> nix::Result<()> {
        let u = Uid::from_raw(uid);
        nix::unistd::setresuid(u, u, u)
    }

    fn set_caps(&self, c: CapSets) -> nix::Result<()> {
        let mut header = CapHeader {
            version: CAP_VERSION_3,
            pid: 0,
        };
        // Each 64-bit set is split into its low and high 32-bit words on purpose.
        #[allow(clippy::cast_possible_truncation)]
        let word = |shift: u32| CapData {
            effective: (c.effective >> shift) as u32,
            permitted: (c.permitted >> shift) as u32,
            inheritable: (c.inheritable >> shift) as u32,
        };
        let data = [word(0), word(32)];
        // SAFETY: `header` and `data` are live, correctly laid out (linux/capability.h,
        // version 3 = two data words) and outlive the call; capset only reads them.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_capset,
                &mut header as *mut CapHeader,
                data.as_ptr(),
            )
        };
        Errno::result(rc).map(drop)
    }

    fn clear_ambient_caps(&self) -> nix::Result<()> {
        match prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong,
            0,
        ) {
            // Kernels before 4.3 have no ambient set: nothing to clear.
            Err(Errno::EINVAL) => Ok(()),
            r => r,
        }
    }

    fn set_no_new_privs(&self) -> nix::Result<()> {
        nix::sys::prctl::set_no_new_privs()
    }

    fn setsid(&self) -> nix::Result<()> {
        nix::unistd::setsid().map(drop)
    }

    fn set_controlling_tty(&self) -> nix::Result<()> {
        // SAFETY: TIOCSCTTY takes an integer argument (0: do not steal a terminal that
        // is another session's); no memory is passed.
        let rc = unsafe { libc::ioctl(0, libc::TIOCSCTTY, 0) };
        Errno::result(rc).map(drop)
    }

    fn join_session_keyring(&self) -> nix::Result<()> {
        // SAFETY: keyctl(KEYCTL_JOIN_SESSION_KEYRING, NULL) passes a null name (an
        // anonymous keyring); the kernel reads no memory of ours.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_keyctl,
                libc::KEYCTL_JOIN_SESSION_KEYRING,
                std::ptr::null::<libc::c_char>(),
            )
        };
        Errno::result(rc).map(drop)
    }

    fn open_dir(&self, path: &Path) -> nix::Result<OwnedFd> {
        let c = cstr(path.as_os_str())?;
        let flags = libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC;
        // SAFETY: `c` is a live NUL-terminated path; open only reads it.
        let rc = unsafe { libc::open(c.as_ptr(), flags) };
        owned(libc::c_long::from(rc))
    }

    fn open_in_root(&self, root: &OwnedFd, path: &Path, no_symlinks: bool) -> nix::Result<OwnedFd> {
        let rel = path.strip_prefix("/").unwrap_or(path);
        let rel = if rel.as_os_str().is_empty() {
            Path::new(".")
        } else {
            rel
        };
        let c = cstr(rel.as_os_str())?;
        let mut resolve = libc::RESOLVE_IN_ROOT | libc::RESOLVE_NO_MAGICLINKS;
        if no_symlinks {
            resolve |= libc::RESOLVE_NO_SYMLINKS;
        }
        // SAFETY: open_how is plain data; all zeroes is valid.
        let mut how: libc::open_how = unsafe { std::mem::zeroed() };
        // The flags are positive bits.
        #[allow(clippy::cast_sign_loss)]
        {
            how.flags = (libc::O_PATH | libc::O_NOFOLLOW | libc::O_CLOEXEC) as u64;
        }
        how.resolve = resolve;
        // SAFETY: `c` and `how` are live for the call, which only reads them and returns
        // a new fd.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_openat2,
                root.as_raw_fd(),
                c.as_ptr(),
                &how as *const libc::open_how,
                std::mem::size_of::<libc::open_how>(),
            )
        };
        owned(rc)
    }

    fn kind_of(&self, fd: &OwnedFd) -> nix::Result<Kind> {
        let st = nix::sys::stat::fstat(fd)?;
        Ok(match st.st_mode & libc::S_IFMT {
            libc::S_IFDIR => Kind::Dir,
            libc::S_IFLNK => Kind::Symlink,
            _ => Kind::Other,
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
        nix::mount::mount(source, &fd_path(target), fstype, flags, data)
    }

    fn bind_on(&self, source: &OwnedFd, target: &OwnedFd) -> nix::Result<()> {
        let flags = MsFlags::MS_BIND | MsFlags::MS_REC;
        let src = fd_path(source);
        nix::mount::mount(
            Some(&src),
            &fd_path(target),
            None::<&str>,
            flags,
            None::<&str>,
        )
    }

    fn attach_on(&self, tree: &OwnedFd, target: &OwnedFd) -> nix::Result<()> {
        let empty = c"";
        // SAFETY: both fds are live (a detached tree and an O_PATH target); the empty
        // strings are live and NUL-terminated; move_mount only reads them.
        let rc = unsafe {
            libc::syscall(
                SYS_MOVE_MOUNT,
                tree.as_raw_fd(),
                empty.as_ptr(),
                target.as_raw_fd(),
                empty.as_ptr(),
                MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH,
            )
        };
        Errno::result(rc).map(drop)
    }

    fn set_rlimit(&self, resource: u32, soft: u64, hard: u64) -> nix::Result<()> {
        let new = libc::rlimit64 {
            rlim_cur: soft,
            rlim_max: hard,
        };
        // SAFETY: `new` is a live rlimit64 the kernel only reads; the old value is not
        // asked for (null).
        let rc = unsafe {
            libc::syscall(
                libc::SYS_prlimit64,
                0,
                libc::c_ulong::from(resource),
                &new as *const libc::rlimit64,
                std::ptr::null_mut::<libc::rlimit64>(),
            )
        };
        Errno::result(rc).map(drop)
    }

    fn set_oom_score_adj(&self, value: i32) -> nix::Result<()> {
        std::fs::write("/proc/self/oom_score_adj", value.to_string())
            .map_err(|e| Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)))
    }

    fn set_dumpable(&self, on: bool) -> nix::Result<()> {
        prctl(libc::PR_SET_DUMPABLE, libc::c_ulong::from(on), 0)
    }

    fn umask(&self, mask: u32) {
        nix::sys::stat::umask(Mode::from_bits_truncate(mask));
    }

    fn reset_signals(&self) -> nix::Result<()> {
        use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};
        let dfl = SigAction::new(SigHandler::SigDfl, SaFlags::empty(), SigSet::empty());
        for sig in Signal::iterator() {
            if matches!(sig, Signal::SIGKILL | Signal::SIGSTOP) {
                continue;
            }
            // SAFETY: installing SIG_DFL runs no code in this process, so no handler can
            // observe inconsistent state.
            unsafe { sigaction(sig, &dfl) }?;
        }
        SigSet::empty().thread_set_mask()
    }

    fn cloexec_from(&self, first: u32) {
        // SAFETY: close_range with CLOSE_RANGE_CLOEXEC only sets a flag on open fds of
        // this process; it closes nothing and touches no memory.
        let _ = unsafe { libc::close_range(first, u32::MAX, libc::CLOSE_RANGE_CLOEXEC as i32) };
    }

    fn install_seccomp(&self, filter: &crate::seccomp::Filter) -> nix::Result<()> {
        crate::seccomp::install(filter)
    }

    fn stub_memfd(&self) -> nix::Result<OwnedFd> {
        use nix::fcntl::{fcntl, FcntlArg, SealFlag};
        use nix::sys::memfd::{memfd_create, MFdFlags};
        let fd = memfd_create(
            c"isol-exec-stub",
            MFdFlags::MFD_CLOEXEC | MFdFlags::MFD_ALLOW_SEALING,
        )?;
        let stub = &crate::stub::STUB;
        if nix::unistd::write(&fd, stub)? != stub.len() {
            return Err(Errno::EIO);
        }
        let seals = SealFlag::F_SEAL_WRITE
            | SealFlag::F_SEAL_SHRINK
            | SealFlag::F_SEAL_GROW
            | SealFlag::F_SEAL_SEAL;
        fcntl(&fd, FcntlArg::F_ADD_SEALS(seals))?;
        Ok(fd)
    }

    fn report_fd_to_3(&self, fd: &OwnedFd) -> nix::Result<()> {
        let raw = fd.as_raw_fd();
        // SAFETY: dup2/fcntl on descriptors of this process; fd 3 is replaced on purpose
        // (everything from 3 up is close-on-exec by now, so nothing there is needed).
        let rc = unsafe {
            if raw == 3 {
                libc::fcntl(3, libc::F_SETFD, 0)
            } else {
                libc::dup2(raw, 3)
            }
        };
        Errno::result(rc).map(drop)
    }

    fn execve_fd(&self, fd: &OwnedFd, argv: &[CString], envp: &[CString]) -> Errno {
        match nix::unistd::execveat(fd, c"", argv, envp, nix::fcntl::AtFlags::AT_EMPTY_PATH) {
            Err(e) => e,
            Ok(never) => match never {},
        }
    }

    fn create_file(&self, path: &Path, mode: u32) -> nix::Result<()> {
        let flags = nix::fcntl::OFlag::O_CREAT
            | nix::fcntl::OFlag::O_WRONLY
            | nix::fcntl::OFlag::O_CLOEXEC
            | nix::fcntl::OFlag::O_NOFOLLOW;
        nix::fcntl::open(path, flags, Mode::from_bits_truncate(mode)).map(drop)
    }

    fn close_range(&self, first: u32, last: u32) -> nix::Result<()> {
        // SAFETY: close_range(2) takes integers only; the caller owns the fds it closes
        // (the jail closes what it inherited and will never use).
        let rc = unsafe { libc::syscall(libc::SYS_close_range, first, last, 0u32) };
        Errno::result(rc).map(drop)
    }

    fn mkdir_at(&self, dir: &OwnedFd, name: &std::ffi::OsStr, mode: u32) -> nix::Result<()> {
        match nix::sys::stat::mkdirat(dir, name, Mode::from_bits_truncate(mode)) {
            Err(Errno::EEXIST) => Ok(()),
            r => r,
        }
    }

    fn create_file_at(&self, dir: &OwnedFd, name: &std::ffi::OsStr, mode: u32) -> nix::Result<()> {
        let flags = nix::fcntl::OFlag::O_CREAT
            | nix::fcntl::OFlag::O_WRONLY
            | nix::fcntl::OFlag::O_NOFOLLOW
            | nix::fcntl::OFlag::O_CLOEXEC;
        nix::fcntl::openat(dir, name, flags, Mode::from_bits_truncate(mode)).map(drop)
    }

    fn symlink_at(&self, target: &Path, dir: &OwnedFd, name: &std::ffi::OsStr) -> nix::Result<()> {
        nix::unistd::symlinkat(target, dir, name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_ifreq_layout_matches_kernel() {
        assert_eq!(std::mem::size_of::<IfreqFlags>(), 40);
        assert_eq!(std::mem::offset_of!(IfreqFlags, flags), libc::IFNAMSIZ);
        assert_eq!(&lo_request().name[..3], b"lo\0");
    }
}
