//! Fids: what each client handle names, and the bounded table of them.
//!
//! A fid holds no host fd for *where* it is, only a [`SharePath`] relative to the share's
//! root, re-resolved beneath the root on every use (see [`super::root`]). Only an opened
//! fid holds an fd: the file it opened, used for data (read, write, getdents, fsync,
//! ftruncate, fstat) and never as the base of a path lookup; it is counted against the
//! VM's fd budget (see [`super::group`]).

use std::collections::HashMap;
use std::fs::File;

use nix::errno::Errno;

use super::group::FdSlot;
use super::path::SharePath;

/// The most fids a client may hold at once (beyond: `EMFILE`).
pub const MAX_FIDS: usize = 65536;
/// The most bytes of paths all fids of one server may hold together (beyond: `ENOMEM`);
/// a few hundred times what a guest walking a real tree needs.
pub const MAX_PATH_BYTES: usize = 32 << 20;

/// One client handle.
#[derive(Debug)]
pub struct Fid {
    /// Where it is, from the root.
    pub path: SharePath,
    /// `(st_dev, st_ino)` of what `path` named when the fid got it: Tremove and Trename
    /// act on the name only while it still names that file.
    pub inode: (u64, u64),
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
    /// Its place in the VM's fd budget.
    pub _slot: FdSlot,
}

impl Fid {
    /// The open file, or `EBADF` if the fid was not opened.
    pub fn opened(&self) -> Result<&Open, Errno> {
        self.open.as_ref().ok_or(Errno::EBADF)
    }
}

/// The fid table, bounded by [`MAX_FIDS`] and [`MAX_PATH_BYTES`].
#[derive(Debug, Default)]
pub struct FidTable {
    fids: HashMap<u32, Fid>,
    path_bytes: usize,
}

impl FidTable {
    /// The fid numbered `n`, or `EBADF`.
    pub fn get(&self, n: u32) -> Result<&Fid, Errno> {
        self.fids.get(&n).ok_or(Errno::EBADF)
    }

    /// The fid numbered `n` for changing its open file, or `EBADF`.
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

    /// Fails with `ENOMEM` unless a path of `len` bytes fits the table's path bound.
    pub fn check_room(&self, len: usize) -> Result<(), Errno> {
        if self.path_bytes + len > MAX_PATH_BYTES {
            return Err(Errno::ENOMEM);
        }
        Ok(())
    }

    /// Sets fid `n` (replacing it if present; the caller checked room for a new one).
    pub fn insert(&mut self, n: u32, fid: Fid) {
        self.path_bytes += fid.path.len();
        if let Some(old) = self.fids.insert(n, fid) {
            self.path_bytes -= old.path.len();
        }
    }

    /// Moves fid `n` to `path` (keeping what it has open).
    pub fn set_path(&mut self, n: u32, path: SharePath) -> Result<(), Errno> {
        let f = self.fids.get_mut(&n).ok_or(Errno::EBADF)?;
        self.path_bytes = self.path_bytes - f.path.len() + path.len();
        f.path = path;
        Ok(())
    }

    /// After the client renamed `old` to `new`: every fid at or below `old` follows.
    pub fn rebase(&mut self, old: &SharePath, new: &SharePath) {
        for f in self.fids.values_mut() {
            if let Some(p) = f.path.rebase(old, new) {
                self.path_bytes = self.path_bytes - f.path.len() + p.len();
                f.path = p;
            }
        }
    }

    /// Removes fid `n`, or `EBADF`.
    pub fn remove(&mut self, n: u32) -> Result<Fid, Errno> {
        let f = self.fids.remove(&n).ok_or(Errno::EBADF)?;
        self.path_bytes -= f.path.len();
        Ok(f)
    }

    /// Drops every fid.
    pub fn clear(&mut self) {
        self.fids.clear();
        self.path_bytes = 0;
    }

    /// How many fids are held.
    pub fn count(&self) -> usize {
        self.fids.len()
    }

    /// Every open file (for tests that check what the server holds).
    #[cfg(test)]
    pub fn open_files(&self) -> impl Iterator<Item = &File> {
        self.fids
            .values()
            .filter_map(|f| f.open.as_ref().map(|o| &o.file))
    }
}
