//! Directory changes: Tmkdir, Tsymlink, Tmknod, Tlink, Trename, Trenameat, Tunlinkat,
//! Tremove. Every name is one validated component; nothing is resolved through a symlink.

use std::sync::Arc;

use nix::errno::Errno;
use nix::fcntl::AtFlags;
use nix::sys::stat::{Mode, SFlag};
use nix::unistd::UnlinkatFlags;

use super::fid::{self, Fid, Link, Node};
use super::host::{self, Kind, PATH_MAX};
use super::wire::{Reader, Writer};
use super::P9Server;

/// Tunlinkat's flag for removing a directory (Linux `AT_REMOVEDIR`).
const AT_REMOVEDIR: u32 = 0x200;

/// Gives the just-created `name` in directory fid `dir` its owner (the fid's uid, `gid`)
/// and, unless it is a symlink, exactly the permission bits of `mode` (the host umask
/// does not apply). Removes it again if that fails. Returns the new file.
fn own_new(dir: &Fid, name: &[u8], gid: u32, mode: u32) -> Result<Node, Errno> {
    let dirfd = dir.node.dir()?;
    let link = Link {
        dir: Arc::clone(&dir.node.fd),
        name: name.to_vec(),
    };
    let node = Node::new(host::open_path(dirfd, name)?, Some(link))?;
    let mut res = host::chown(node.fd(), dir.uid, Some(gid));
    if res.is_ok() && node.kind != Kind::Symlink {
        res = host::chmod(node.fd(), mode);
    }
    if let Err(e) = res {
        let flag = match node.kind {
            Kind::Dir => UnlinkatFlags::RemoveDir,
            _ => UnlinkatFlags::NoRemoveDir,
        };
        let _ = nix::unistd::unlinkat(dirfd, name, flag);
        return Err(e);
    }
    Ok(node)
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

impl P9Server {
    /// The directory fid `n` as an fd, or `ENOTDIR`/`EBADF`.
    fn dir_fid(&self, n: u32) -> Result<&Fid, Errno> {
        let f = self.fids.get(n)?;
        f.node.dir()?;
        Ok(f)
    }

    /// Tmkdir: `dfid[4] name[s] mode[4] gid[4]` → `qid`.
    pub(super) fn mkdir(&mut self, r: &mut Reader<'_>, out: &mut Vec<u8>) -> Result<(), Errno> {
        let dfid = r.u32()?;
        let name = fid::check_name(r.string()?)?;
        let (mode, gid) = (r.u32()?, r.u32()?);
        self.writable()?;
        let d = self.dir_fid(dfid)?;
        let perm = Mode::from_bits_truncate(mode & 0o7777);
        nix::sys::stat::mkdirat(d.node.fd(), name, perm)?;
        let node = own_new(d, name, gid, mode)?;
        Writer::new(out).qid(&self.qid(&node));
        Ok(())
    }

    /// Tsymlink: `fid[4] name[s] symtgt[s] gid[4]` → `qid`. The target is stored as is;
    /// the server never follows it (the guest kernel resolves symlinks itself).
    pub(super) fn symlink(&mut self, r: &mut Reader<'_>, out: &mut Vec<u8>) -> Result<(), Errno> {
        let dfid = r.u32()?;
        let name = fid::check_name(r.string()?)?;
        let target = r.string()?;
        let gid = r.u32()?;
        self.writable()?;
        if target.is_empty() || target.contains(&0) {
            return Err(Errno::EINVAL);
        }
        if target.len() >= PATH_MAX {
            return Err(Errno::ENAMETOOLONG);
        }
        let d = self.dir_fid(dfid)?;
        nix::unistd::symlinkat(target, d.node.fd(), name)?;
        let node = own_new(d, name, gid, 0)?;
        Writer::new(out).qid(&self.qid(&node));
        Ok(())
    }

    /// Tmknod: `dfid[4] name[s] mode[4] major[4] minor[4] gid[4]` → `qid`. Regular
    /// files, FIFOs and sockets only; device nodes get `EPERM`.
    pub(super) fn mknod(&mut self, r: &mut Reader<'_>, out: &mut Vec<u8>) -> Result<(), Errno> {
        let dfid = r.u32()?;
        let name = fid::check_name(r.string()?)?;
        let (mode, _major, _minor, gid) = (r.u32()?, r.u32()?, r.u32()?, r.u32()?);
        self.writable()?;
        let kind = mknod_kind(mode)?;
        let d = self.dir_fid(dfid)?;
        let perm = Mode::from_bits_truncate(mode & 0o7777);
        nix::sys::stat::mknodat(d.node.fd(), name, kind, perm, 0)?;
        let node = own_new(d, name, gid, mode)?;
        Writer::new(out).qid(&self.qid(&node));
        Ok(())
    }

    /// Tlink: `dfid[4] fid[4] name[s]` → nothing. Hard-links fid's file (not a
    /// directory) as `name` in dfid.
    pub(super) fn link(&mut self, r: &mut Reader<'_>) -> Result<(), Errno> {
        let (dfid, fid) = (r.u32()?, r.u32()?);
        let name = fid::check_name(r.string()?)?;
        self.writable()?;
        let d = self.dir_fid(dfid)?;
        let src = &self.fids.get(fid)?.node;
        if src.kind == Kind::Dir {
            return Err(Errno::EPERM);
        }
        nix::unistd::linkat(src.fd(), "", d.node.fd(), name, AtFlags::AT_EMPTY_PATH)
    }

    /// Trename: `fid[4] dfid[4] name[s]` → nothing. Moves fid's file (by the name it was
    /// walked to, if that still names it) to `name` in dfid.
    pub(super) fn rename(&mut self, r: &mut Reader<'_>) -> Result<(), Errno> {
        let (fid, dfid) = (r.u32()?, r.u32()?);
        let name = fid::check_name(r.string()?)?;
        self.writable()?;
        let d = self.dir_fid(dfid)?;
        let link = self.fids.get(fid)?.node.checked_link()?;
        nix::fcntl::renameat(link.dir.as_ref(), link.name.as_slice(), d.node.fd(), name)?;
        let new_link = Link {
            dir: Arc::clone(&d.node.fd),
            name: name.to_vec(),
        };
        self.fids.get_mut(fid)?.node.link = Some(new_link);
        Ok(())
    }

    /// Trenameat: `olddirfid[4] oldname[s] newdirfid[4] newname[s]` → nothing.
    pub(super) fn renameat(&mut self, r: &mut Reader<'_>) -> Result<(), Errno> {
        let old_dir = r.u32()?;
        let old_name = fid::check_name(r.string()?)?;
        let new_dir = r.u32()?;
        let new_name = fid::check_name(r.string()?)?;
        self.writable()?;
        let old = self.dir_fid(old_dir)?.node.fd();
        let new = self.dir_fid(new_dir)?.node.fd();
        nix::fcntl::renameat(old, old_name, new, new_name)
    }

    /// Tunlinkat: `dirfd[4] name[s] flags[4]` → nothing. `flags` may only be
    /// `AT_REMOVEDIR`.
    pub(super) fn unlinkat(&mut self, r: &mut Reader<'_>) -> Result<(), Errno> {
        let dfid = r.u32()?;
        let name = fid::check_name(r.string()?)?;
        let flags = r.u32()?;
        self.writable()?;
        let flag = match flags {
            0 => UnlinkatFlags::NoRemoveDir,
            AT_REMOVEDIR => UnlinkatFlags::RemoveDir,
            _ => return Err(Errno::EINVAL),
        };
        let d = self.dir_fid(dfid)?;
        nix::unistd::unlinkat(d.node.fd(), name, flag)
    }

    /// Tremove: `fid[4]` → nothing. Removes fid's file by the name it was walked to (if
    /// that still names it; `EINVAL` for the root) and clunks the fid, even on failure.
    pub(super) fn remove(&mut self, r: &mut Reader<'_>) -> Result<(), Errno> {
        let fid = r.u32()?;
        let f = self.fids.remove(fid)?;
        self.writable()?;
        let link = f.node.checked_link()?;
        let flag = match f.node.kind {
            Kind::Dir => UnlinkatFlags::RemoveDir,
            _ => UnlinkatFlags::NoRemoveDir,
        };
        nix::unistd::unlinkat(link.dir.as_ref(), link.name.as_slice(), flag)
    }
}
