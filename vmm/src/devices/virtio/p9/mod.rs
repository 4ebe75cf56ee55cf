//! A 9P2000.L file server confined to one host directory (virtio-9p's protocol).
//!
//! The guest kernel mounts it with `-t 9p -o trans=virtio,version=9p2000.L,cache=none,
//! access=client`; each request is one T-message and gets exactly one R-message, `Rlerror`
//! with a Linux errno on any failure. The guest kernel is hostile (it owns the rings and can
//! send any sequence of messages), and the host may move the tree while it is served:
//! - a fid is a path relative to the root ([`path`]), `..` a lexical pop stopping at the
//!   root; every request re-resolves it from the root fd with `openat2(RESOLVE_BENEATH |
//!   RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS)` ([`root`]) and acts on that file or on
//!   its freshly resolved parent plus one validated name. The kernel, not an identity
//!   check, keeps every lookup beneath the root, so nested or overlapping shares and
//!   directories moved out of the share by the host cannot lead outside it;
//! - the servers of one VM run one request at a time between them ([`group`]), so the
//!   guest cannot move a parent through another share between resolving it and using it;
//! - only regular files and directories are ever opened (FIFOs, sockets and devices get
//!   `ENXIO`), through `/proc/self/fd/N` of a just-checked `O_PATH` fd so the inode opened
//!   is the one checked; an open directory is listed only while its path still names it;
//! - volumes behave like a `nosuid,nodev` bind mount: set-user-ID and set-group-ID bits are
//!   stripped from every mode the guest sets, device nodes cannot be made, and the root's
//!   own mode and owner cannot be changed;
//! - lengths are bounded by the negotiated msize before anything is allocated; a request
//!   with an effect (a new fid, a new file) whose reply could not fit in
//!   `min(msize, reply_capacity)` fails with `EMSGSIZE` before it has any;
//! - fids are bounded per server (count and path bytes), open files per VM ([`group`]);
//! - a read-only server answers every mutating request with `EROFS`.
//!
//! Files the guest creates get the uid of the fid's attach and the gid of the request, as
//! QEMU's `security_model=passthrough` does (the server runs as root, like container mode).

mod attr;
mod dir;
mod fid;
mod file;
mod group;
mod host;
mod path;
pub mod remote;
mod root;
mod session;
#[cfg(test)]
mod tests;
mod wire;

use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use nix::errno::Errno;
use nix::fcntl::{OFlag, AT_FDCWD};
use nix::sys::stat::Mode;

use self::fid::FidTable;
pub use self::group::ServerGroup;
use self::host::Kind;
use self::root::Root;
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
    root: Root,
    group: Arc<ServerGroup>,
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
            .field("group", &self.group)
            .field("read_only", &self.read_only)
            .field("msize", &self.msize)
            .field("fids", &self.fids.count())
            .finish_non_exhaustive()
    }
}

impl P9Server {
    /// Serves `root` (must be an existing directory) on its own: a group of one server
    /// with the whole VM's fd budget (see [`P9Server::in_group`]).
    pub fn new(root: &Path, read_only: bool) -> Result<P9Server, P9Error> {
        P9Server::in_group(root, read_only, ServerGroup::for_vm())
    }

    /// Serves `root` (must be an existing directory) as one of the servers of `group`
    /// (all servers of one VM share one group). `read_only`: every mutating request gets
    /// `EROFS`.
    pub fn in_group(
        root: &Path,
        read_only: bool,
        group: Arc<ServerGroup>,
    ) -> Result<P9Server, P9Error> {
        let open_err = |source| P9Error::OpenRoot {
            path: root.to_path_buf(),
            source,
        };
        let flags = OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC;
        let fd: OwnedFd =
            nix::fcntl::openat(AT_FDCWD, root, flags, Mode::empty()).map_err(open_err)?;
        let (root_fd, kind) = Root::new(fd).map_err(open_err)?;
        if kind != Kind::Dir {
            return Err(P9Error::NotDirectory {
                path: root.to_path_buf(),
            });
        }
        Ok(P9Server {
            root: root_fd,
            group,
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

    /// The qid of the file `st` describes. The qid path is the inode number, with the
    /// device mixed into the top bits for files on another filesystem than the root's.
    fn qid(&self, st: &nix::sys::stat::FileStat) -> Qid {
        let ty = match Kind::of(st.st_mode) {
            Kind::Dir => wire::QT_DIR,
            Kind::Symlink => wire::QT_SYMLINK,
            Kind::File | Kind::Other => wire::QT_FILE,
        };
        let (dev, ino) = (st.st_dev, st.st_ino);
        let path = if dev == self.root.dev {
            ino
        } else {
            ino ^ (dev.wrapping_mul(0x9e37_79b9_7f4a_7c15) & 0xffff_0000_0000_0000)
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

impl P9Server {
    /// The fd of the share's root (the only fd a server holds before its first request).
    pub fn root_fd(&self) -> std::os::fd::RawFd {
        use std::os::fd::AsRawFd;
        self.root.fd().as_raw_fd()
    }
}

#[cfg(test)]
impl P9Server {
    /// Every fd the server holds between requests: its root and the files fids opened.
    fn held_fds(&self) -> Vec<std::os::fd::RawFd> {
        use std::os::fd::{AsFd, AsRawFd};
        let mut v = vec![self.root.fd().as_raw_fd()];
        v.extend(self.fids.open_files().map(|f| f.as_fd().as_raw_fd()));
        v
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
        let body = &request[HEADER_LEN..size];
        if wire::reply_bound(ty, body).is_some_and(|b| HEADER_LEN + b > limit) {
            // Refused before it has any effect: no fid set, no file made.
            wire::lerror(reply, tag, Errno::EMSGSIZE);
            return;
        }
        let group = Arc::clone(&self.group);
        let _serialised = group.serialise();
        let mut body = Reader::new(body);
        wire::begin(reply, ty.wrapping_add(1), tag);
        match self.dispatch(ty, &mut body, limit, reply) {
            Ok(()) if reply.len() <= limit => wire::finish(reply),
            Ok(()) => wire::lerror(reply, tag, Errno::EMSGSIZE),
            Err(e) => wire::lerror(reply, tag, e),
        }
    }
}
