//! Directory changes: Tmkdir, Tsymlink, Tmknod, Tlink, Trename, Trenameat, Tunlinkat,
//! Tremove. Each acts on a parent directory resolved beneath the root for this request
//! and one validated name in it; nothing is resolved through a symlink.

use std::os::fd::{AsFd, BorrowedFd};

use nix::errno::Errno;
use nix::fcntl::AtFlags;
use nix::sys::stat::{FileStat, Mode, SFlag};
use nix::unistd::UnlinkatFlags;

use super::attr::allowed_mode;
use super::host::{self, Kind, PATH_MAX};
use super::path::{check_name, SharePath};
use super::root::{inode, stat_at};
use super::wire::{Reader, Writer};
use super::P9Server;

/// Tunlinkat's flag for removing a directory (Linux `AT_REMOVEDIR`).
const AT_REMOVEDIR: u32 = 0x200;

/// Gives the just-created `name` in `dir` its owner (`uid`, `gid`) and, unless it is a
/// symlink, exactly the permission bits of `mode` (the host umask does not apply; the
/// caller stripped set-id bits). Removes it again if that fails. Returns its stat.
fn own_new(
    dir: BorrowedFd<'_>,
    name: &[u8],
    uid: Option<u32>,
    gid: u32,
    mode: u32,
) -> Result<FileStat, Errno> {
    let fd = host::open_path(dir, name)?;
    let kind = Kind::of(host::stat(fd.as_fd())?.st_mode);
    let mut res = host::chown(fd.as_fd(), uid, Some(gid));
    if res.is_ok() && kind != Kind::Symlink {
        res = host::chmod(fd.as_fd(), mode);
    }
    match res.and_then(|()| host::stat(fd.as_fd())) {
        Ok(st) => Ok(st),
        Err(e) => {
            let flag = match kind {
                Kind::Dir => UnlinkatFlags::RemoveDir,
                _ => UnlinkatFlags::NoRemoveDir,
            };
            let _ = nix::unistd::unlinkat(dir, name, flag);
            Err(e)
        }
    }
}

/// The host file type Tmknod may create for `mode`: regular files, FIFOs and sockets.
fn mknod_kind(mode: u32) -> Result<SFlag, Errno> {
    match mode & libc::S_IFMT {
        0 | libc::S_IFREG => Ok(SFlag::S_IFREG),
        libc::S_IFIFO => Ok(SFlag::S_IFIFO),
        libc::S_IFSOCK => Ok(SFlag::S_IFSOCK),
        libc::S_IFCHR | libc::S_IFBLK => Err(Errno::EPERM),
        _ => Err(Errno::EINVAL),
    }
}

/// The flag that removes a file of `st`'s type.
fn unlink_flag(st: &FileStat) -> UnlinkatFlags {
    match Kind::of(st.st_mode) {
        Kind::Dir => UnlinkatFlags::RemoveDir,
        _ => UnlinkatFlags::NoRemoveDir,
    }
}

impl P9Server {
    /// The path of fid `n` and its uid.
    fn fid_path(&self, n: u32) -> Result<(SharePath, Option<u32>), Errno> {
        let f = self.fids.get(n)?;
        Ok((f.path.clone(), f.uid))
    }

    /// The path of fid `n`, checked to still name the file the fid was walked to
    /// (`ENOENT` if it names another file now; `EINVAL` for the root).
    fn fid_file(&self, n: u32) -> Result<SharePath, Errno> {
        let f = self.fids.get(n)?;
        let (dir, name) = self.root.parent(&f.path)?;
        if inode(&stat_at(dir.as_fd(), name)?) != f.inode {
            return Err(Errno::ENOENT);
        }
        Ok(f.path.clone())
    }

    /// Tmkdir: `dfid[4] name[s] mode[4] gid[4]` → `qid`.
    pub(super) fn mkdir(&mut self, r: &mut Reader<'_>, out: &mut Vec<u8>) -> Result<(), Errno> {
        let dfid = r.u32()?;
        let name = check_name(r.string()?)?;
        let (mode, gid) = (r.u32()?, r.u32()?);
        self.writable()?;
        let (path, uid) = self.fid_path(dfid)?;
        let dir = self.root.dir(&path)?;
        let mode = allowed_mode(mode);
        nix::sys::stat::mkdirat(dir.as_fd(), name, Mode::from_bits_truncate(mode))?;
        let st = own_new(dir.as_fd(), name, uid, gid, mode)?;
        Writer::new(out).qid(&self.qid(&st));
        Ok(())
    }

    /// Tsymlink: `fid[4] name[s] symtgt[s] gid[4]` → `qid`. The target is stored as is;
    /// the server never follows it (the guest kernel resolves symlinks itself).
    pub(super) fn symlink(&mut self, r: &mut Reader<'_>, out: &mut Vec<u8>) -> Result<(), Errno> {
        let dfid = r.u32()?;
        let name = check_name(r.string()?)?;
        let target = r.string()?;
        let gid = r.u32()?;
        self.writable()?;
        if target.is_empty() || target.contains(&0) {
            return Err(Errno::EINVAL);
        }
        if target.len() >= PATH_MAX {
            return Err(Errno::ENAMETOOLONG);
        }
        let (path, uid) = self.fid_path(dfid)?;
        let dir = self.root.dir(&path)?;
        nix::unistd::symlinkat(target, dir.as_fd(), name)?;
        let st = own_new(dir.as_fd(), name, uid, gid, 0)?;
        Writer::new(out).qid(&self.qid(&st));
        Ok(())
    }

    /// Tmknod: `dfid[4] name[s] mode[4] major[4] minor[4] gid[4]` → `qid`. Regular
    /// files, FIFOs and sockets only; device nodes get `EPERM` (volumes are `nodev`).
    pub(super) fn mknod(&mut self, r: &mut Reader<'_>, out: &mut Vec<u8>) -> Result<(), Errno> {
        let dfid = r.u32()?;
        let name = check_name(r.string()?)?;
        let (mode, _major, _minor, gid) = (r.u32()?, r.u32()?, r.u32()?, r.u32()?);
        self.writable()?;
        let kind = mknod_kind(mode)?;
        let (path, uid) = self.fid_path(dfid)?;
        let dir = self.root.dir(&path)?;
        let mode = allowed_mode(mode);
        let perm = Mode::from_bits_truncate(mode);
        nix::sys::stat::mknodat(dir.as_fd(), name, kind, perm, 0)?;
        let st = own_new(dir.as_fd(), name, uid, gid, mode)?;
        Writer::new(out).qid(&self.qid(&st));
        Ok(())
    }

    /// Tlink: `dfid[4] fid[4] name[s]` → nothing. Hard-links fid's file (not a
    /// directory) as `name` in dfid.
    pub(super) fn link(&mut self, r: &mut Reader<'_>) -> Result<(), Errno> {
        let (dfid, fid) = (r.u32()?, r.u32()?);
        let name = check_name(r.string()?)?;
        self.writable()?;
        let (dpath, _) = self.fid_path(dfid)?;
        let (spath, _) = self.fid_path(fid)?;
        let dir = self.root.dir(&dpath)?;
        let (sdir, sname) = self.root.parent(&spath).map_err(|_| Errno::EPERM)?;
        if Kind::of(stat_at(sdir.as_fd(), sname)?.st_mode) == Kind::Dir {
            return Err(Errno::EPERM);
        }
        let flags = AtFlags::empty();
        nix::unistd::linkat(sdir.as_fd(), sname, dir.as_fd(), name, flags)
    }

    /// Moves `old` to `new` (both under the root; neither is the root) and every fid at
    /// or below `old` with it.
    fn move_path(&mut self, old: &SharePath, new: &SharePath) -> Result<(), Errno> {
        let (odir, oname) = self.root.parent(old)?;
        let (ndir, nname) = self.root.parent(new)?;
        nix::fcntl::renameat(odir.as_fd(), oname, ndir.as_fd(), nname)?;
        self.fids.rebase(old, new);
        Ok(())
    }

    /// Trename: `fid[4] dfid[4] name[s]` → nothing. Moves fid's file to `name` in dfid.
    pub(super) fn rename(&mut self, r: &mut Reader<'_>) -> Result<(), Errno> {
        let (fid, dfid) = (r.u32()?, r.u32()?);
        let name = check_name(r.string()?)?;
        self.writable()?;
        let old = self.fid_file(fid)?;
        let new = self.fid_path(dfid)?.0.join(name)?;
        self.move_path(&old, &new)
    }

    /// Trenameat: `olddirfid[4] oldname[s] newdirfid[4] newname[s]` → nothing.
    pub(super) fn renameat(&mut self, r: &mut Reader<'_>) -> Result<(), Errno> {
        let old_dir = r.u32()?;
        let old_name = check_name(r.string()?)?;
        let new_dir = r.u32()?;
        let new_name = check_name(r.string()?)?;
        self.writable()?;
        let old = self.fid_path(old_dir)?.0.join(old_name)?;
        let new = self.fid_path(new_dir)?.0.join(new_name)?;
        self.move_path(&old, &new)
    }

    /// Tunlinkat: `dirfd[4] name[s] flags[4]` → nothing. `flags` may only be
    /// `AT_REMOVEDIR`.
    pub(super) fn unlinkat(&mut self, r: &mut Reader<'_>) -> Result<(), Errno> {
        let dfid = r.u32()?;
        let name = check_name(r.string()?)?;
        let flags = r.u32()?;
        self.writable()?;
        let flag = match flags {
            0 => UnlinkatFlags::NoRemoveDir,
            AT_REMOVEDIR => UnlinkatFlags::RemoveDir,
            _ => return Err(Errno::EINVAL),
        };
        let dir = self.root.dir(&self.fid_path(dfid)?.0)?;
        nix::unistd::unlinkat(dir.as_fd(), name, flag)
    }

    /// Tremove: `fid[4]` → nothing. Removes fid's file (`EBUSY` for the root) and clunks
    /// the fid, even on failure.
    pub(super) fn remove(&mut self, r: &mut Reader<'_>) -> Result<(), Errno> {
        let fid = r.u32()?;
        let f = self.fids.remove(fid)?;
        self.writable()?;
        let (dir, name) = self.root.parent(&f.path)?;
        let st = stat_at(dir.as_fd(), name)?;
        if inode(&st) != f.inode {
            return Err(Errno::ENOENT);
        }
        nix::unistd::unlinkat(dir.as_fd(), name, unlink_flag(&st))
    }
}
