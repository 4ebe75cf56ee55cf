//! A 9P2000.L file server confined to one host directory (virtio-9p's protocol).
//!
//! The guest kernel mounts it with `-t 9p -o trans=virtio,version=9p2000.L,cache=none,
//! access=client`; each request is one T-message and gets exactly one R-message, `Rlerror`
//! with a Linux errno on any failure. The guest is untrusted:
//! - every file is reached one validated name at a time from the root with `O_NOFOLLOW`
//!   (see [`fid`]); symlinks are never followed on the host and `..` stops at the root;
//! - only regular files and directories are ever opened (FIFOs, sockets and devices get
//!   `ENXIO`), through `/proc/self/fd/N` of the fid's own fd so the inode is the one checked;
//! - lengths are bounded by the negotiated msize before anything is allocated, and a reply
//!   never exceeds `min(msize, reply_capacity)`;
//! - a read-only server answers every mutating request with `EROFS`.
//!
//! Files the guest creates get the uid of the fid's attach and the gid of the request, as
//! QEMU's `security_model=passthrough` does (the server runs as root, like container mode).

mod attr;
mod dir;
mod fid;
mod file;
mod host;
mod session;
#[cfg(test)]
mod tests;
mod wire;

use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{OFlag, AT_FDCWD};
use nix::sys::stat::Mode;

use self::fid::{FidTable, Node};
use self::host::Kind;
use self::wire::{Qid, Reader, HEADER_LEN, LERROR_LEN, NOTAG};
use crate::devices::virtio::RequestHandler;

/// The largest msize the server accepts in Tversion (mount with at most this `msize=`).
pub const MAX_MSIZE: u32 = 512 * 1024;
/// The smallest msize the server accepts in Tversion.
pub const MIN_MSIZE: u32 = 4096;

/// Failure to start serving a directory.
#[derive(Debug, thiserror::Error)]
pub enum P9Error {
    /// The root could not be opened.
    #[error("Cannot open {} to serve it over 9P (check the --volume host path)", path.display())]
    OpenRoot {
        /// The root asked for.
        path: PathBuf,
        /// The cause.
        #[source]
        source: Errno,
    },
    /// The root is not a directory.
    #[error("Cannot serve {} over 9P: not a directory (a --volume host path must be a directory)", path.display())]
    NotDirectory {
        /// The root asked for.
        path: PathBuf,
    },
}

/// A 9P2000.L server for one host directory.
pub struct P9Server {
    root: Node,
    read_only: bool,
    msize: u32,
    fids: FidTable,
    /// Scratch buffer for `getdents64`.
    dirbuf: Vec<u8>,
}

impl std::fmt::Debug for P9Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("P9Server")
            .field("root_ino", &self.root.ino)
            .field("read_only", &self.read_only)
            .field("msize", &self.msize)
            .field("fids", &self.fids.count())
            .finish_non_exhaustive()
    }
}

impl P9Server {
    /// Serves `root` (must be an existing directory). `read_only`: every mutating request
    /// gets `EROFS`.
    pub fn new(root: &Path, read_only: bool) -> Result<P9Server, P9Error> {
        let open_err = |source| P9Error::OpenRoot {
            path: root.to_path_buf(),
            source,
        };
        let flags = OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC;
        let fd: OwnedFd =
            nix::fcntl::openat(AT_FDCWD, root, flags, Mode::empty()).map_err(open_err)?;
        let node = Node::new(fd, None).map_err(open_err)?;
        if node.kind != Kind::Dir {
            return Err(P9Error::NotDirectory {
                path: root.to_path_buf(),
            });
        }
        Ok(P9Server {
            root: node,
            read_only,
            msize: MAX_MSIZE,
            fids: FidTable::default(),
            dirbuf: Vec::new(),
        })
    }

    /// Fails with `EROFS` on a read-only server.
    fn writable(&self) -> Result<(), Errno> {
        if self.read_only {
            Err(Errno::EROFS)
        } else {
            Ok(())
        }
    }

    /// The qid of `node`. The qid path is the inode number, with the device mixed into
    /// the top bits for files on another filesystem than the root's.
    fn qid(&self, node: &Node) -> Qid {
        let ty = match node.kind {
            Kind::Dir => wire::QT_DIR,
            Kind::Symlink => wire::QT_SYMLINK,
            Kind::File | Kind::Other => wire::QT_FILE,
        };
        let path = if node.dev == self.root.dev {
            node.ino
        } else {
            node.ino ^ (node.dev.wrapping_mul(0x9e37_79b9_7f4a_7c15) & 0xffff_0000_0000_0000)
        };
        Qid {
            ty,
            version: 0,
            path,
        }
    }

    /// Runs the handler of message type `ty`, which appends the reply body to `out`.
    fn dispatch(
        &mut self,
        ty: u8,
        r: &mut Reader<'_>,
        limit: usize,
        out: &mut Vec<u8>,
    ) -> Result<(), Errno> {
        use wire::t;
        match ty {
            t::VERSION => self.version(r, out),
            t::ATTACH => self.attach(r, out),
            // Every request is answered before the next is read: nothing to flush.
            t::FLUSH => r.u16().map(drop),
            // No authentication: Tattach takes afid NOFID.
            t::AUTH => Err(Errno::EOPNOTSUPP),
            t::WALK => self.walk(r, out),
            t::CLUNK => self.clunk(r),
            t::LOPEN => self.lopen(r, out),
            t::LCREATE => self.lcreate(r, out),
            t::READ => self.read(r, limit, out),
            t::WRITE => self.write(r, out),
            t::READDIR => self.readdir(r, limit, out),
            t::FSYNC => self.fsync(r),
            t::LOCK => self.lock(r, out),
            t::GETLOCK => self.getlock(r, out),
            t::GETATTR => self.getattr(r, out),
            t::SETATTR => self.setattr(r),
            t::STATFS => self.statfs(r, out),
            t::READLINK => self.readlink(r, out),
            t::XATTRWALK => self.xattrwalk(r),
            t::XATTRCREATE => self.xattrcreate(r),
            t::MKDIR => self.mkdir(r, out),
            t::SYMLINK => self.symlink(r, out),
            t::MKNOD => self.mknod(r, out),
            t::LINK => self.link(r),
            t::RENAME => self.rename(r),
            t::RENAMEAT => self.renameat(r),
            t::UNLINKAT => self.unlinkat(r),
            t::REMOVE => self.remove(r),
            _ => Err(Errno::EOPNOTSUPP),
        }
    }
}

impl RequestHandler for P9Server {
    fn handle(&mut self, request: &[u8], reply_capacity: usize, reply: &mut Vec<u8>) {
        reply.clear();
        let limit = reply_capacity.min(self.msize as usize);
        if limit < LERROR_LEN {
            // Not even an Rlerror fits: the transport completes the request empty.
            return;
        }
        let mut head = Reader::new(request);
        let (Ok(size), Ok(ty), Ok(tag)) = (head.u32(), head.u8(), head.u16()) else {
            wire::lerror(reply, NOTAG, Errno::EPROTO);
            return;
        };
        let size = size as usize;
        if size < HEADER_LEN || size > request.len() {
            wire::lerror(reply, tag, Errno::EPROTO);
            return;
        }
        // Tversion is judged by the largest msize, anything else by the negotiated one.
        let max = if ty == wire::t::VERSION {
            MAX_MSIZE
        } else {
            self.msize
        };
        if size > max as usize {
            wire::lerror(reply, tag, Errno::EINVAL);
            return;
        }
        let mut body = Reader::new(&request[HEADER_LEN..size]);
        wire::begin(reply, ty.wrapping_add(1), tag);
        match self.dispatch(ty, &mut body, limit, reply) {
            Ok(()) if reply.len() <= limit => wire::finish(reply),
            Ok(()) => wire::lerror(reply, tag, Errno::EMSGSIZE),
            Err(e) => wire::lerror(reply, tag, e),
        }
    }
}
