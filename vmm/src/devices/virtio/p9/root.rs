//! The share's root fd and the only way the server reaches a file under it: `openat2(2)`
//! from the root fd with `RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS`.
//!
//! The kernel guarantees that every component of the path stays beneath the root at the
//! time of the lookup, follows no symlink (a trailing one is returned as itself, with
//! `O_PATH | O_NOFOLLOW`) and no `/proc` magic link. Nothing else in the server resolves a
//! path: operations act on a freshly resolved file, or on a freshly resolved parent
//! directory plus one validated name (see [`SharePath`]). The root fd is the only fd a
//! lookup ever starts from; the fds resolved for a request are dropped with it (open files
//! are kept, for data only), so a directory that moved out of the share (by the host, or
//! by the guest through another, overlapping share) can no longer be reached.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use nix::errno::Errno;
use nix::fcntl::{OFlag, OpenHow, ResolveFlag};
use nix::sys::stat::{FileStat, Mode};

use super::host::{self, Kind};
use super::path::SharePath;

/// Tries of `openat2` that the kernel answers `EAGAIN` (a concurrent rename elsewhere made
/// it unsure a lookup stayed beneath the root) before giving up with `EAGAIN`.
const EAGAIN_RETRIES: usize = 16;

/// A file resolved under the root for one request.
#[derive(Debug)]
pub struct Node {
    /// Its fd (`O_PATH`, or an open directory for [`Root::dir`]).
    pub fd: OwnedFd,
    /// Its type.
    pub kind: Kind,
    /// Its `fstat`.
    pub st: FileStat,
}

impl Node {
    /// The fd, borrowed.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// Whether `self` is the inode `st` describes.
    pub fn is(&self, st: &FileStat) -> bool {
        inode(&self.st) == inode(st)
    }
}

/// The served directory.
#[derive(Debug)]
pub struct Root {
    fd: OwnedFd,
    /// `st_dev` of the root (qids of files on other filesystems get it mixed in).
    pub dev: u64,
    /// `st_ino` of the root.
    pub ino: u64,
}

impl Root {
    /// The root for `fd` (an `O_PATH` directory fd).
    pub fn new(fd: OwnedFd) -> Result<(Root, Kind), Errno> {
        let st = host::stat(fd.as_fd())?;
        let root = Root {
            fd,
            dev: st.st_dev,
            ino: st.st_ino,
        };
        Ok((root, Kind::of(st.st_mode)))
    }

    /// The root fd (what the server holds; the file server keeps it across its fd purge).
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// Opens `path` beneath the root with `flags` (`O_NOFOLLOW | O_CLOEXEC` added).
    pub fn open(&self, path: &SharePath, flags: OFlag, mode: Mode) -> Result<OwnedFd, Errno> {
        let how = OpenHow::new()
            .flags(flags | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC)
            .mode(mode)
            .resolve(
                ResolveFlag::RESOLVE_BENEATH
                    | ResolveFlag::RESOLVE_NO_SYMLINKS
                    | ResolveFlag::RESOLVE_NO_MAGICLINKS,
            );
        let mut tries = 0;
        loop {
            match nix::fcntl::openat2(self.fd.as_fd(), path.as_bytes(), how) {
                Err(Errno::EAGAIN) if tries < EAGAIN_RETRIES => tries += 1,
                Err(Errno::EINTR) => {}
                other => return other,
            }
        }
    }

    /// `path` as an `O_PATH` node (a symlink as itself).
    pub fn node(&self, path: &SharePath) -> Result<Node, Errno> {
        let fd = self.open(path, OFlag::O_PATH, Mode::empty())?;
        let st = host::stat(fd.as_fd())?;
        Ok(Node {
            fd,
            kind: Kind::of(st.st_mode),
            st,
        })
    }

    /// `path`, which must be a directory, as an `O_PATH` fd (`ENOTDIR` otherwise).
    pub fn dir(&self, path: &SharePath) -> Result<OwnedFd, Errno> {
        let node = self.node(path)?;
        match node.kind {
            Kind::Dir => Ok(node.fd),
            _ => Err(Errno::ENOTDIR),
        }
    }

    /// The parent directory of `path` and its last name; `EINVAL` for the root itself
    /// (which cannot be removed, renamed or linked).
    pub fn parent<'p>(&self, path: &'p SharePath) -> Result<(OwnedFd, &'p [u8]), Errno> {
        let (dir, name) = path.split().ok_or(Errno::EINVAL)?;
        Ok((self.dir(&dir)?, name))
    }
}

/// The `lstat` of `name` in directory `dir` (one validated name, never followed).
pub fn stat_at(dir: BorrowedFd<'_>, name: &[u8]) -> Result<FileStat, Errno> {
    nix::sys::stat::fstatat(dir, name, nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW)
}

/// The identity of the file `st` describes: `(st_dev, st_ino)`.
pub fn inode(st: &FileStat) -> (u64, u64) {
    (st.st_dev, st.st_ino)
}
