//! Attributes: Tgetattr, Tsetattr, Tstatfs, Treadlink, Txattrwalk, Txattrcreate.

use std::os::fd::AsFd;

use nix::errno::Errno;
use nix::fcntl::OFlag;

use super::host::{self, Kind, PATH_MAX};
use super::wire::{Reader, Writer};
use super::P9Server;

/// The permission bits the guest may set on a file: all but set-user-ID and set-group-ID
/// (volumes behave like a `nosuid` mount; the sticky bit stays).
pub fn allowed_mode(mode: u32) -> u32 {
    mode & 0o1777
}

/// Rgetattr's `valid`: the basic fields (`P9_STATS_BASIC`); no btime, gen, data version.
const STATS_BASIC: u64 = 0x7ff;

/// Tsetattr's `valid` bits (`P9_ATTR_*`, Linux's `ATTR_*`).
mod set {
    pub const MODE: u32 = 1 << 0;
    pub const UID: u32 = 1 << 1;
    pub const GID: u32 = 1 << 2;
    pub const SIZE: u32 = 1 << 3;
    pub const ATIME: u32 = 1 << 4;
    pub const MTIME: u32 = 1 << 5;
    pub const ATIME_SET: u32 = 1 << 7;
    pub const MTIME_SET: u32 = 1 << 8;
}

/// A decoded Tsetattr.
#[derive(Debug)]
struct SetAttr {
    valid: u32,
    mode: u32,
    uid: u32,
    gid: u32,
    size: u64,
    atime: (u64, u64),
    mtime: (u64, u64),
}

impl SetAttr {
    fn decode(r: &mut Reader<'_>) -> Result<SetAttr, Errno> {
        Ok(SetAttr {
            valid: r.u32()?,
            mode: r.u32()?,
            uid: r.u32()?,
            gid: r.u32()?,
            size: r.u64()?,
            atime: (r.u64()?, r.u64()?),
            mtime: (r.u64()?, r.u64()?),
        })
    }

    fn has(&self, bit: u32) -> bool {
        self.valid & bit != 0
    }

    /// The timespec for one time: unchanged, now, or the given one.
    fn time(
        &self,
        bit: u32,
        set_bit: u32,
        (sec, nsec): (u64, u64),
    ) -> Result<libc::timespec, Errno> {
        let (tv_sec, tv_nsec) = if !self.has(bit) {
            (0, libc::UTIME_OMIT)
        } else if !self.has(set_bit) {
            (0, libc::UTIME_NOW)
        } else if nsec >= 1_000_000_000 {
            return Err(Errno::EINVAL);
        } else {
            // The wire carries the signed seconds as their two's-complement bits.
            (sec as i64, nsec as i64)
        };
        Ok(libc::timespec { tv_sec, tv_nsec })
    }
}

impl P9Server {
    /// Tgetattr: `fid[4] request_mask[8]` → `valid[8] qid mode[4] uid[4] gid[4] nlink[8]
    /// rdev[8] size[8] blksize[8] blocks[8]` then atime, mtime, ctime, btime as
    /// `sec[8] nsec[8]`, then `gen[8] data_version[8]`.
    pub(super) fn getattr(&mut self, r: &mut Reader<'_>, out: &mut Vec<u8>) -> Result<(), Errno> {
        let fid = r.u32()?;
        let _mask = r.u64()?;
        let f = self.fids.get(fid)?;
        // An open fid describes what it has open (which may be unlinked by now).
        let st = match &f.open {
            Some(open) => host::stat(open.file.as_fd())?,
            None => self.root.node(&f.path)?.st,
        };
        let qid = self.qid(&st);
        let mut w = Writer::new(out);
        w.u64(STATS_BASIC).qid(&qid);
        w.u32(st.st_mode).u32(st.st_uid).u32(st.st_gid);
        w.u64(st.st_nlink).u64(st.st_rdev).u64(st.st_size as u64);
        w.u64(st.st_blksize as u64).u64(st.st_blocks as u64);
        for (sec, nsec) in [
            (st.st_atime, st.st_atime_nsec),
            (st.st_mtime, st.st_mtime_nsec),
            (st.st_ctime, st.st_ctime_nsec),
            (0, 0),
        ] {
            w.u64(sec as u64).u64(nsec as u64);
        }
        w.u64(0).u64(0);
        Ok(())
    }

    /// Tsetattr: `fid[4] valid[4] mode[4] uid[4] gid[4] size[8] atime[16] mtime[16]` →
    /// nothing. Everything is checked before anything changes; then size, owner, mode
    /// (less set-id bits) and times are applied in that order. The share's root keeps its
    /// owner and mode (`EPERM`), as the mount point of a bind mount would.
    pub(super) fn setattr(&mut self, r: &mut Reader<'_>) -> Result<(), Errno> {
        let fid = r.u32()?;
        let a = SetAttr::decode(r)?;
        self.writable()?;
        let f = self.fids.get(fid)?;
        if f.path.is_root() && (a.has(set::MODE) || a.has(set::UID) || a.has(set::GID)) {
            return Err(Errno::EPERM);
        }
        // A fid open for writing is truncated through its open file, as Twrite writes
        // through it; everything else acts on the file its path names now.
        let open_w = f.open.as_ref().filter(|o| o.write);
        let meta = set::MODE | set::UID | set::GID | set::ATIME | set::MTIME;
        let node = match a.valid & meta != 0 || open_w.is_none() {
            true => Some(self.root.node(&f.path)?),
            false => None,
        };
        let kind = match (&node, open_w) {
            (Some(n), _) => n.kind,
            (None, Some(o)) => Kind::of(host::stat(o.file.as_fd())?.st_mode),
            (None, None) => return Err(Errno::EBADF),
        };
        if a.has(set::MODE) && kind == Kind::Symlink {
            return Err(Errno::EOPNOTSUPP);
        }
        let size = match (a.has(set::SIZE), kind) {
            (false, _) => None,
            (true, Kind::File) => Some(i64::try_from(a.size).map_err(|_| Errno::EFBIG)?),
            (true, Kind::Dir) => return Err(Errno::EISDIR),
            (true, _) => return Err(Errno::EINVAL),
        };
        let times = if a.has(set::ATIME) || a.has(set::MTIME) {
            let atime = a.time(set::ATIME, set::ATIME_SET, a.atime)?;
            let mtime = a.time(set::MTIME, set::MTIME_SET, a.mtime)?;
            Some((atime, mtime))
        } else {
            None
        };
        if let Some(size) = size {
            match (open_w, &node) {
                (Some(open), _) => nix::unistd::ftruncate(open.file.as_fd(), size)?,
                (None, Some(n)) => {
                    let file = host::reopen(n.fd(), OFlag::O_WRONLY)?;
                    nix::unistd::ftruncate(file.as_fd(), size)?
                }
                (None, None) => return Err(Errno::EBADF),
            }
        }
        let Some(node) = node else {
            return Ok(());
        };
        if a.has(set::UID) || a.has(set::GID) {
            let uid = a.has(set::UID).then_some(a.uid);
            let gid = a.has(set::GID).then_some(a.gid);
            host::chown(node.fd(), uid, gid)?;
        }
        if a.has(set::MODE) {
            host::chmod(node.fd(), allowed_mode(a.mode))?;
        }
        if let Some((atime, mtime)) = times {
            host::set_times(node.fd(), atime, mtime)?;
        }
        Ok(())
    }

    /// Tstatfs: `fid[4]` → `type[4] bsize[4] blocks[8] bfree[8] bavail[8] files[8]
    /// ffree[8] fsid[8] namelen[4]` of the filesystem holding fid.
    pub(super) fn statfs(&mut self, r: &mut Reader<'_>, out: &mut Vec<u8>) -> Result<(), Errno> {
        let fid = r.u32()?;
        let node = self.root.node(&self.fids.get(fid)?.path)?;
        let fs = nix::sys::statfs::fstatfs(node.fd())?;
        let vfs = nix::sys::statvfs::fstatvfs(node.fd())?;
        let mut w = Writer::new(out);
        // f_type and f_bsize fit in 32 bits on Linux.
        w.u32(fs.filesystem_type().0 as u32)
            .u32(vfs.block_size() as u32);
        w.u64(vfs.blocks())
            .u64(vfs.blocks_free())
            .u64(vfs.blocks_available());
        w.u64(vfs.files())
            .u64(vfs.files_free())
            .u64(vfs.filesystem_id());
        w.u32(u32::try_from(vfs.name_max()).unwrap_or(u32::MAX));
        Ok(())
    }

    /// Treadlink: `fid[4]` → `target[s]`; `EINVAL` unless fid is a symlink.
    pub(super) fn readlink(&mut self, r: &mut Reader<'_>, out: &mut Vec<u8>) -> Result<(), Errno> {
        let fid = r.u32()?;
        let node = self.root.node(&self.fids.get(fid)?.path)?;
        if node.kind != Kind::Symlink {
            return Err(Errno::EINVAL);
        }
        let target = nix::fcntl::readlinkat(node.fd(), "")?;
        let target = std::os::unix::ffi::OsStrExt::as_bytes(target.as_os_str());
        if target.len() > PATH_MAX {
            return Err(Errno::ENAMETOOLONG);
        }
        Writer::new(out).string(target)?;
        Ok(())
    }

    /// Txattrwalk: `fid[4] newfid[4] name[s]`. Extended attributes are not supported:
    /// always `EOPNOTSUPP` (the guest sees no xattrs and no POSIX ACLs).
    pub(super) fn xattrwalk(&mut self, r: &mut Reader<'_>) -> Result<(), Errno> {
        let (fid, _newfid, _name) = (r.u32()?, r.u32()?, r.string()?);
        self.fids.get(fid)?;
        Err(Errno::EOPNOTSUPP)
    }

    /// Txattrcreate: `fid[4] name[s] attr_size[8] flags[4]`: `EROFS` on a read-only
    /// server, else `EOPNOTSUPP` (see [`P9Server::xattrwalk`]).
    pub(super) fn xattrcreate(&mut self, r: &mut Reader<'_>) -> Result<(), Errno> {
        let (fid, _name, _size, _flags) = (r.u32()?, r.string()?, r.u64()?, r.u32()?);
        self.writable()?;
        self.fids.get(fid)?;
        Err(Errno::EOPNOTSUPP)
    }
}
