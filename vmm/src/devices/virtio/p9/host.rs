//! Thin host syscall layer for the 9P server: every path the server hands to the kernel here
//! is either one validated name relative to a directory fd just resolved beneath the root
//! (never followed if a symlink), the empty path with `AT_EMPTY_PATH`, or `/proc/self/fd/N`
//! of an fd the server holds (a magic link that resolves to exactly that inode, so it
//! cannot lead anywhere else). Paths of more than one name go through [`super::root`].

use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag, AT_FDCWD};
use nix::sys::stat::{FileStat, Mode, SFlag};

/// The longest name the server accepts in one path component (Linux `NAME_MAX`).
pub const NAME_MAX: usize = 255;
/// The longest symlink target the server creates or returns (Linux `PATH_MAX`).
pub const PATH_MAX: usize = 4096;

/// What kind of file an fd refers to (fixed for the life of the inode).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A directory.
    Dir,
    /// A regular file.
    File,
    /// A symbolic link.
    Symlink,
    /// A FIFO, socket or device: never opened by the server.
    Other,
}

impl Kind {
    /// The kind of a `st_mode`.
    pub fn of(mode: libc::mode_t) -> Kind {
        match SFlag::from_bits_truncate(mode & libc::S_IFMT) {
            SFlag::S_IFDIR => Kind::Dir,
            SFlag::S_IFREG => Kind::File,
            SFlag::S_IFLNK => Kind::Symlink,
            _ => Kind::Other,
        }
    }
}

/// Converts an I/O error to the errno sent to the guest.
pub fn errno(e: &std::io::Error) -> Errno {
    Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO))
}

/// Opens `name` (one validated component) in `dir` as an `O_PATH` fd without following a
/// symlink: the fd refers to the symlink itself.
pub fn open_path(dir: BorrowedFd<'_>, name: &[u8]) -> Result<OwnedFd, Errno> {
    let flags = OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    nix::fcntl::openat(dir, name, flags, Mode::empty())
}

/// `/proc/self/fd/N` for `fd`.
fn proc_path(fd: BorrowedFd<'_>) -> String {
    format!("/proc/self/fd/{}", fd.as_raw_fd())
}

/// Opens the inode `fd` refers to again, with real access `flags` (`O_CLOEXEC` is added).
/// The caller has checked that it is a regular file or a directory.
pub fn reopen(fd: BorrowedFd<'_>, flags: OFlag) -> Result<File, Errno> {
    let path = proc_path(fd);
    let fd = nix::fcntl::openat(
        AT_FDCWD,
        path.as_str(),
        flags | OFlag::O_CLOEXEC,
        Mode::empty(),
    )?;
    Ok(File::from(fd))
}

/// `fstat` (works on `O_PATH` fds).
pub fn stat(fd: BorrowedFd<'_>) -> Result<FileStat, Errno> {
    nix::sys::stat::fstat(fd)
}

/// Changes owner and/or group of the inode `fd` refers to (a symlink itself if it is one).
pub fn chown(fd: BorrowedFd<'_>, uid: Option<u32>, gid: Option<u32>) -> Result<(), Errno> {
    let uid = uid.map(nix::unistd::Uid::from_raw);
    let gid = gid.map(nix::unistd::Gid::from_raw);
    let flags = AtFlags::AT_EMPTY_PATH | AtFlags::AT_SYMLINK_NOFOLLOW;
    nix::unistd::fchownat(fd, "", uid, gid, flags)
}

/// Changes the permission bits of the inode `fd` refers to, which is not a symlink (Linux
/// has no `fchmod` for `O_PATH` fds and no mode on symlinks).
pub fn chmod(fd: BorrowedFd<'_>, mode: u32) -> Result<(), Errno> {
    let mode = Mode::from_bits_truncate(mode & 0o7777);
    let path = proc_path(fd);
    nix::sys::stat::fchmodat(
        AT_FDCWD,
        path.as_str(),
        mode,
        nix::sys::stat::FchmodatFlags::FollowSymlink,
    )
}

/// Sets access and modification times of the inode `fd` refers to (a symlink itself if it
/// is one). `UTIME_OMIT` in `tv_nsec` leaves a time alone; `UTIME_NOW` means now.
pub fn set_times(
    fd: BorrowedFd<'_>,
    atime: libc::timespec,
    mtime: libc::timespec,
) -> Result<(), Errno> {
    let times = [atime, mtime];
    let flags = libc::AT_EMPTY_PATH | libc::AT_SYMLINK_NOFOLLOW;
    // SAFETY: the path is a valid NUL-terminated C string, `times` is a live array of the
    // two timespecs utimensat reads, and `fd` is a valid fd borrowed for the call.
    let rc = unsafe { libc::utimensat(fd.as_raw_fd(), c"".as_ptr(), times.as_ptr(), flags) };
    Errno::result(rc).map(drop)
}

/// Reads raw `linux_dirent64` records from directory `dir` at its current position.
pub fn getdents(dir: &File, buf: &mut [u8]) -> Result<usize, Errno> {
    // SAFETY: getdents64 writes at most `buf.len()` bytes into `buf`, which is valid and
    // exclusively borrowed for the call; `dir` is an open directory fd.
    let n = unsafe {
        libc::syscall(
            libc::SYS_getdents64,
            dir.as_raw_fd(),
            buf.as_mut_ptr(),
            buf.len(),
        )
    };
    let n = Errno::result(n)?;
    usize::try_from(n).map_err(|_| Errno::EIO)
}

/// Seeks directory `dir` to a cookie returned by an earlier [`getdents`] (`d_off`).
pub fn seek_dir(dir: &File, cookie: u64) -> Result<(), Errno> {
    let off = i64::try_from(cookie).map_err(|_| Errno::EINVAL)?;
    nix::unistd::lseek(dir.as_fd(), off, nix::unistd::Whence::SeekSet).map(drop)
}

/// One decoded `linux_dirent64`.
#[derive(Debug)]
pub struct Dirent<'a> {
    /// Inode number.
    pub ino: u64,
    /// Cookie of the next entry (to resume after this one).
    pub next: u64,
    /// `DT_*` type.
    pub ty: u8,
    /// Name without the NUL.
    pub name: &'a [u8],
}

/// Splits the first record off `buf` (as filled by [`getdents`]).
pub fn next_dirent(buf: &[u8]) -> Option<(Dirent<'_>, &[u8])> {
    let ino = u64::from_ne_bytes(buf.get(0..8)?.try_into().ok()?);
    let next = u64::from_ne_bytes(buf.get(8..16)?.try_into().ok()?);
    let reclen = usize::from(u16::from_ne_bytes(buf.get(16..18)?.try_into().ok()?));
    let ty = *buf.get(18)?;
    let raw_name = buf.get(19..reclen)?;
    let name_len = memchr::memchr(0, raw_name).unwrap_or(raw_name.len());
    let dirent = Dirent {
        ino,
        next,
        ty,
        name: &raw_name[..name_len],
    };
    Some((dirent, buf.get(reclen..)?))
}
