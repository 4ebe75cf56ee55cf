//! Fids: what each client handle points at on the host, and the bounded table of them.
//!
//! A fid holds an fd of its file (normally `O_PATH`), obtained by walking one validated
//! name at a time from the served root with `O_NOFOLLOW`, so a fid can only ever name a
//! file inside the root: symlinks are held as symlinks (never resolved on the host) and
//! `..` at the root stays at the root.

use std::collections::HashMap;
use std::fs::File;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::Arc;

use nix::errno::Errno;

use super::host::{self, Kind, NAME_MAX};

/// The most fids a client may hold at once (beyond: `EMFILE`).
pub const MAX_FIDS: usize = 65536;

/// The directory and name a file was reached by (for Tremove/Trename, which name a file
/// only by its fid). Checked against the file's identity before use.
#[derive(Debug, Clone)]
pub struct Link {
    /// The parent directory.
    pub dir: Arc<OwnedFd>,
    /// The name in it (a validated component).
    pub name: Vec<u8>,
}

/// A file on the host, as reached by a walk.
#[derive(Debug, Clone)]
pub struct Node {
    /// Its fd (`O_PATH`, or an open file after Tlcreate).
    pub fd: Arc<OwnedFd>,
    /// Its type.
    pub kind: Kind,
    /// `st_dev` (identity with `ino`).
    pub dev: u64,
    /// `st_ino`.
    pub ino: u64,
    /// How it was reached (`None` for the root and for walks through `..`).
    pub link: Option<Link>,
}

impl Node {
    /// A node for `fd`, reached through `link`.
    pub fn new(fd: OwnedFd, link: Option<Link>) -> Result<Node, Errno> {
        let st = host::stat(fd.as_fd())?;
        Ok(Node {
            fd: Arc::new(fd),
            kind: Kind::of(st.st_mode),
            dev: st.st_dev,
            ino: st.st_ino,
            link,
        })
    }

    /// The fd, borrowed.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// Whether `self` and `other` are the same inode.
    pub fn same_file(&self, other: &Node) -> bool {
        self.dev == other.dev && self.ino == other.ino
    }

    /// Fails with `ENOTDIR` unless a directory.
    pub fn dir(&self) -> Result<BorrowedFd<'_>, Errno> {
        match self.kind {
            Kind::Dir => Ok(self.fd()),
            _ => Err(Errno::ENOTDIR),
        }
    }

    /// The link this node was reached by, if its name there still refers to this inode.
    pub fn checked_link(&self) -> Result<&Link, Errno> {
        let link = self.link.as_ref().ok_or(Errno::EINVAL)?;
        let at = Node::new(host::open_path(link.dir.as_fd(), &link.name)?, None)?;
        if at.same_file(self) {
            Ok(link)
        } else {
            Err(Errno::ENOENT)
        }
    }
}

/// One client handle.
#[derive(Debug)]
pub struct Fid {
    /// The file.
    pub node: Node,
    /// The uid the client attached as (access=client: the owner of files it creates);
    /// `None` when the client sent no numeric uid.
    pub uid: Option<u32>,
    /// The open file or directory after Tlopen/Tlcreate.
    pub open: Option<Open>,
}

/// An opened fid.
#[derive(Debug)]
pub struct Open {
    /// The host file (a directory for Treaddir).
    pub file: File,
    /// Whether opened for writing.
    pub write: bool,
}

impl Fid {
    /// The open file, or `EBADF` if the fid was not opened.
    pub fn opened(&self) -> Result<&Open, Errno> {
        self.open.as_ref().ok_or(Errno::EBADF)
    }
}

/// Validates one name the client asks the server to create, remove or look up: not empty,
/// no `/` or NUL, not `.` or `..`, at most `NAME_MAX` bytes.
pub fn check_name(name: &[u8]) -> Result<&[u8], Errno> {
    if name.len() > NAME_MAX {
        return Err(Errno::ENAMETOOLONG);
    }
    if name.is_empty() || name == b"." || name == b".." || name.contains(&b'/') {
        return Err(Errno::EINVAL);
    }
    if name.contains(&0) {
        return Err(Errno::EINVAL);
    }
    Ok(name)
}

/// Walks one step from `cur` (one name of a Twalk). `..` from `root` stays at `root`.
pub fn step(root: &Node, cur: &Node, name: &[u8]) -> Result<Node, Errno> {
    cur.dir()?;
    if name == b".." {
        if cur.same_file(root) {
            return Ok(root.clone());
        }
        return Node::new(host::open_parent(cur.fd())?, None);
    }
    let name = check_name(name)?;
    let fd = host::open_path(cur.fd(), name)?;
    let link = Link {
        dir: Arc::clone(&cur.fd),
        name: name.to_vec(),
    };
    Node::new(fd, Some(link))
}

/// The fid table, bounded by [`MAX_FIDS`].
#[derive(Debug, Default)]
pub struct FidTable {
    fids: HashMap<u32, Fid>,
}

impl FidTable {
    /// The fid numbered `n`, or `EBADF`.
    pub fn get(&self, n: u32) -> Result<&Fid, Errno> {
        self.fids.get(&n).ok_or(Errno::EBADF)
    }

    /// The fid numbered `n` for changing, or `EBADF`.
    pub fn get_mut(&mut self, n: u32) -> Result<&mut Fid, Errno> {
        self.fids.get_mut(&n).ok_or(Errno::EBADF)
    }

    /// Fails unless `n` can be added as a new fid: `EEXIST` if in use, `EMFILE` if full.
    pub fn check_free(&self, n: u32) -> Result<(), Errno> {
        if self.fids.contains_key(&n) {
            return Err(Errno::EEXIST);
        }
        if self.fids.len() >= MAX_FIDS {
            return Err(Errno::EMFILE);
        }
        Ok(())
    }

    /// Sets fid `n` (replacing it if present; the caller checked room for a new one).
    pub fn insert(&mut self, n: u32, fid: Fid) {
        self.fids.insert(n, fid);
    }

    /// Removes fid `n`, or `EBADF`.
    pub fn remove(&mut self, n: u32) -> Result<Fid, Errno> {
        self.fids.remove(&n).ok_or(Errno::EBADF)
    }

    /// Drops every fid.
    pub fn clear(&mut self) {
        self.fids.clear();
    }

    /// How many fids are held.
    pub fn count(&self) -> usize {
        self.fids.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_check_name_rejects_bad_names() {
        for bad in [&b""[..], b".", b"..", b"a/b", b"/", b"a\0b"] {
            assert_eq!(check_name(bad), Err(Errno::EINVAL), "{bad:?}");
        }
        assert_eq!(check_name(&[b'x'; 256]), Err(Errno::ENAMETOOLONG));
        assert!(check_name(&[b'x'; 255]).is_ok());
        assert!(check_name(b"..a").is_ok());
    }
}
