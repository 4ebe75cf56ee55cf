//! Open files: Tlopen, Tlcreate, Tread, Twrite, Treaddir, Tfsync, Tlock, Tgetlock.

use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::fs::FileExt;

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::sys::stat::Mode;

use super::fid::Open;
use super::group::FdSlot;
use super::host::{self, Kind};
use super::path::check_name;
use super::root::{inode, Node};
use super::wire::{self, Qid, Reader, Writer, HEADER_LEN};
use super::{attr, P9Server};

/// 9P2000.L open flags (`P9_DOTL_*`, the Linux x86_64 `O_*` values).
mod l {
    pub const ACCMODE: u32 = 0o3;
    pub const EXCL: u32 = 0o200;
    pub const TRUNC: u32 = 0o1000;
    pub const APPEND: u32 = 0o2000;
    pub const DSYNC: u32 = 0o10000;
    pub const DIRECTORY: u32 = 0o200000;
    pub const SYNC: u32 = 0o4000000;
}

/// `F_UNLCK` as Tgetlock/Rgetlock encode it.
const LOCK_TYPE_UNLCK: u8 = 2;
/// Rlock's "granted".
const LOCK_SUCCESS: u8 = 0;
/// The getdents64 scratch buffer (bytes).
const DIRBUF_LEN: usize = 32 * 1024;
/// Bytes of a directory entry in Rreaddir before its name: qid, offset, type, name length.
const DIRENT_HEAD: usize = wire::QID_LEN + 8 + 1 + 2;

/// Host open flags for 9P2000.L `flags`, and whether they open for writing. Only known
/// bits pass: access mode, truncate, append and sync; creation, `O_DIRECT`, `O_NOATIME`,
/// `O_PATH`, `O_NOFOLLOW`-style bits and anything unknown are dropped.
fn host_flags(flags: u32) -> Result<(OFlag, bool), Errno> {
    let (mut oflags, write) = match flags & l::ACCMODE {
        0 => (OFlag::O_RDONLY, false),
        1 => (OFlag::O_WRONLY, true),
        2 => (OFlag::O_RDWR, true),
        _ => return Err(Errno::EINVAL),
    };
    for (bit, host) in [
        (l::TRUNC, OFlag::O_TRUNC),
        (l::APPEND, OFlag::O_APPEND),
        (l::DSYNC, OFlag::O_DSYNC),
        (l::SYNC, OFlag::O_SYNC),
    ] {
        if flags & bit != 0 {
            oflags |= host;
        }
    }
    Ok((oflags, write))
}

/// Whether `flags` would change the file (write access or truncation).
fn mutating(flags: u32) -> bool {
    flags & l::ACCMODE != 0 || flags & l::TRUNC != 0
}

/// Opens `node` with 9P2000.L `flags`: regular files and (read-only) directories only.
/// `slot` is the open file's place in the VM's fd budget.
fn open_node(node: &Node, flags: u32, slot: FdSlot) -> Result<Open, Errno> {
    let (oflags, write) = host_flags(flags)?;
    let file = match node.kind {
        Kind::Dir if mutating(flags) => return Err(Errno::EISDIR),
        Kind::Dir => host::reopen(node.fd(), OFlag::O_RDONLY | OFlag::O_DIRECTORY)?,
        Kind::File if flags & l::DIRECTORY != 0 => return Err(Errno::ENOTDIR),
        Kind::File => host::reopen(node.fd(), oflags)?,
        Kind::Symlink => return Err(Errno::ELOOP),
        Kind::Other => return Err(Errno::ENXIO),
    };
    Ok(Open {
        file,
        write,
        _slot: slot,
    })
}

/// An offset from the wire as a host `off_t`.
fn offset(v: u64) -> Result<u64, Errno> {
    i64::try_from(v).map(|_| v).map_err(|_| Errno::EINVAL)
}

impl P9Server {
    /// Tlopen: `fid[4] flags[4]` → `qid iounit[4]`.
    pub(super) fn lopen(&mut self, r: &mut Reader<'_>, out: &mut Vec<u8>) -> Result<(), Errno> {
        let fid = r.u32()?;
        let flags = r.u32()?;
        if mutating(flags) {
            self.writable()?;
        }
        let f = self.fids.get(fid)?;
        if f.open.is_some() {
            return Err(Errno::EBADF);
        }
        let node = self.root.node(&f.path)?;
        let open = open_node(&node, flags, self.group.take_slot()?)?;
        let qid = self.qid(&node.st);
        self.fids.get_mut(fid)?.open = Some(open);
        reply_open(out, &qid);
        Ok(())
    }

    /// Tlcreate: `fid[4] name[s] flags[4] mode[4] gid[4]` → `qid iounit[4]`. Creates a
    /// regular file in directory fid, owned by the fid's uid and `gid`; fid becomes the
    /// new file, open. Without `O_EXCL` an existing regular file is opened instead.
    pub(super) fn lcreate(&mut self, r: &mut Reader<'_>, out: &mut Vec<u8>) -> Result<(), Errno> {
        let fid = r.u32()?;
        let name = check_name(r.string()?)?;
        let flags = r.u32()?;
        let mode = r.u32()?;
        let gid = r.u32()?;
        self.writable()?;
        let f = self.fids.get(fid)?;
        if f.open.is_some() {
            return Err(Errno::EBADF);
        }
        let path = f.path.join(name)?;
        self.fids.check_room(path.len())?;
        let slot = self.group.take_slot()?;
        let dir = self.root.dir(&f.path)?;
        let (st, open) = match create_file(dir.as_fd(), f.uid, name, flags, mode, gid) {
            Err(Errno::EEXIST) if flags & l::EXCL == 0 => {
                let node = self.root.node(&path)?;
                let open = open_node(&node, flags, slot)?;
                (node.st, open)
            }
            other => {
                let (st, file, write) = other?;
                (
                    st,
                    Open {
                        file,
                        write,
                        _slot: slot,
                    },
                )
            }
        };
        let qid = self.qid(&st);
        self.fids.set_path(fid, path)?;
        let f = self.fids.get_mut(fid)?;
        f.inode = inode(&st);
        f.open = Some(open);
        reply_open(out, &qid);
        Ok(())
    }

    /// Tread: `fid[4] offset[8] count[4]` → `count[4] data[count]`; count is clamped to
    /// what fits in the reply.
    pub(super) fn read(
        &mut self,
        r: &mut Reader<'_>,
        limit: usize,
        out: &mut Vec<u8>,
    ) -> Result<(), Errno> {
        let fid = r.u32()?;
        let off = offset(r.u64()?)?;
        let count = r.u32()? as usize;
        let open = self.fids.get(fid)?.opened()?;
        let count = count.min(limit.saturating_sub(HEADER_LEN + 4));
        let start = out.len();
        out.resize(start + 4 + count, 0);
        let n = match open.file.read_at(&mut out[start + 4..], off) {
            Ok(n) => n,
            Err(e) => return Err(host::errno(&e)),
        };
        out.truncate(start + 4 + n);
        let n = u32::try_from(n).map_err(|_| Errno::EIO)?;
        out[start..start + 4].copy_from_slice(&n.to_le_bytes());
        Ok(())
    }

    /// Twrite: `fid[4] offset[8] count[4] data[count]` → `count[4]`.
    pub(super) fn write(&mut self, r: &mut Reader<'_>, out: &mut Vec<u8>) -> Result<(), Errno> {
        let fid = r.u32()?;
        let off = offset(r.u64()?)?;
        let count = r.u32()? as usize;
        let data = r.bytes(count)?;
        self.writable()?;
        let open = self.fids.get(fid)?.opened()?;
        if !open.write {
            return Err(Errno::EBADF);
        }
        let n = open.file.write_at(data, off).map_err(|e| host::errno(&e))?;
        Writer::new(out).u32(u32::try_from(n).map_err(|_| Errno::EIO)?);
        Ok(())
    }

    /// Treaddir: `fid[4] offset[8] count[4]` → `count[4] data[count]` of entries
    /// `qid offset[8] type[1] name[s]`. Offsets are the host filesystem's directory
    /// cookies (`d_off`): a client resumes by passing the last entry's offset.
    pub(super) fn readdir(
        &mut self,
        r: &mut Reader<'_>,
        limit: usize,
        out: &mut Vec<u8>,
    ) -> Result<(), Errno> {
        let fid = r.u32()?;
        let cookie = r.u64()?;
        let count = r.u32()? as usize;
        let count = count.min(limit.saturating_sub(HEADER_LEN + 4));
        let mut buf = std::mem::take(&mut self.dirbuf);
        buf.resize(DIRBUF_LEN, 0);
        let result = self.fill_dir(fid, cookie, count, &mut buf, out);
        self.dirbuf = buf;
        result
    }

    fn fill_dir(
        &self,
        fid: u32,
        cookie: u64,
        count: usize,
        buf: &mut [u8],
        out: &mut Vec<u8>,
    ) -> Result<(), Errno> {
        let f = self.fids.get(fid)?;
        let dir = &f.opened()?.file;
        // Listed only while its path still names it: a directory moved out of the share
        // since it was opened is not listed.
        let st = host::stat(dir.as_fd())?;
        if Kind::of(st.st_mode) != Kind::Dir {
            return Err(Errno::ENOTDIR);
        }
        if !self.root.node(&f.path)?.is(&st) {
            return Err(Errno::ENOENT);
        }
        let at_root = f.path.is_root();
        host::seek_dir(dir, cookie)?;
        let start = out.len();
        out.extend_from_slice(&[0; 4]);
        let mut full = false;
        while !full {
            let n = host::getdents(dir, buf)?;
            if n == 0 {
                break;
            }
            let mut rest = &buf[..n];
            while let Some((d, tail)) = host::next_dirent(rest) {
                if out.len() - start - 4 + DIRENT_HEAD + d.name.len() > count {
                    full = true;
                    break;
                }
                let ino = if at_root && d.name == b".." {
                    self.root.ino
                } else {
                    d.ino
                };
                let ty = match d.ty {
                    libc::DT_DIR => wire::QT_DIR,
                    libc::DT_LNK => wire::QT_SYMLINK,
                    _ => wire::QT_FILE,
                };
                let qid = Qid {
                    ty,
                    version: 0,
                    path: ino,
                };
                Writer::new(out)
                    .qid(&qid)
                    .u64(d.next)
                    .u8(d.ty)
                    .string(d.name)?;
                rest = tail;
            }
        }
        let used = out.len() - start - 4;
        if used == 0 && full {
            // Not even one entry fits in the client's count.
            return Err(Errno::EINVAL);
        }
        let used = u32::try_from(used).map_err(|_| Errno::EIO)?;
        out[start..start + 4].copy_from_slice(&used.to_le_bytes());
        Ok(())
    }

    /// Tfsync: `fid[4] datasync[4]` (datasync absent in older clients) → nothing.
    pub(super) fn fsync(&mut self, r: &mut Reader<'_>) -> Result<(), Errno> {
        let fid = r.u32()?;
        let datasync = if r.is_empty() { 0 } else { r.u32()? };
        let file = &self.fids.get(fid)?.opened()?.file;
        let res = if datasync != 0 {
            file.sync_data()
        } else {
            file.sync_all()
        };
        res.map_err(|e| host::errno(&e))
    }

    /// Tlock: `fid[4] type[1] flags[4] start[8] length[8] proc_id[4] client_id[s]` →
    /// `status[1]`. Not implemented: every lock is reported granted without taking a
    /// host lock (locks between guest processes are not enforced).
    pub(super) fn lock(&mut self, r: &mut Reader<'_>, out: &mut Vec<u8>) -> Result<(), Errno> {
        let fid = r.u32()?;
        let (_ty, _flags, _start, _len, _pid) = (r.u8()?, r.u32()?, r.u64()?, r.u64()?, r.u32()?);
        let _client = r.string()?;
        self.fids.get(fid)?;
        Writer::new(out).u8(LOCK_SUCCESS);
        Ok(())
    }

    /// Tgetlock: `fid[4] type[1] start[8] length[8] proc_id[4] client_id[s]` → the same
    /// fields; always answers "unlocked" (see [`P9Server::lock`]).
    pub(super) fn getlock(&mut self, r: &mut Reader<'_>, out: &mut Vec<u8>) -> Result<(), Errno> {
        let fid = r.u32()?;
        let (_ty, start, len, pid) = (r.u8()?, r.u64()?, r.u64()?, r.u32()?);
        let client = r.string()?;
        self.fids.get(fid)?;
        Writer::new(out)
            .u8(LOCK_TYPE_UNLCK)
            .u64(start)
            .u64(len)
            .u32(pid)
            .string(client)?;
        Ok(())
    }
}

/// Creates regular file `name` (validated) in directory `dir` as Tlcreate asks, owned by
/// `uid` and `gid`, with exactly `mode`'s permission bits less set-user-ID and
/// set-group-ID (the host umask does not apply). Returns its stat, the open file and
/// whether it is open for writing; leaves nothing behind on failure.
fn create_file(
    dir: BorrowedFd<'_>,
    uid: Option<u32>,
    name: &[u8],
    flags: u32,
    mode: u32,
    gid: u32,
) -> Result<(nix::sys::stat::FileStat, std::fs::File, bool), Errno> {
    let (oflags, write) = host_flags(flags)?;
    let mode = attr::allowed_mode(mode);
    let create = OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    let perm = Mode::from_bits_truncate(mode);
    let fd = nix::fcntl::openat(dir, name, oflags | create, perm)?;
    let owned = host::chown(fd.as_fd(), uid, Some(gid))
        .and_then(|()| host::chmod(fd.as_fd(), mode))
        .and_then(|()| host::stat(fd.as_fd()));
    match owned {
        Ok(st) => Ok((st, std::fs::File::from(fd), write)),
        Err(e) => {
            // Do not leave a file with the wrong owner behind.
            let _ = nix::unistd::unlinkat(dir, name, nix::unistd::UnlinkatFlags::NoRemoveDir);
            Err(e)
        }
    }
}

/// Rlopen/Rlcreate body: the qid and an iounit of 0 (the client uses msize).
fn reply_open(out: &mut Vec<u8>, qid: &Qid) {
    Writer::new(out).qid(qid).u32(0);
}
