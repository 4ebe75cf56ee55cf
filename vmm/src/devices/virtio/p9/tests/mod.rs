//! Tests of the 9P server: a hand-written client encodes T-messages, feeds them to
//! [`RequestHandler::handle`] and decodes the replies. The server serves `<tmp>/root`;
//! `<tmp>/secret` sits just outside it to detect escapes. Runs as root (chown).

mod basic;
mod escape;
mod fuzz;
mod malformed;
mod policy;
mod security;

use std::path::{Path, PathBuf};

use tempfile::TempDir;

use super::wire::{self, t, Qid, Reader, HEADER_LEN, RLERROR};
use super::{P9Server, MAX_MSIZE};
use crate::devices::virtio::RequestHandler;

/// The tag the client uses.
const TAG: u16 = 7;
/// The msize the client negotiates.
const MSIZE: u32 = 64 * 1024;
/// Content of the file outside the root.
const SECRET: &[u8] = b"host secret\n";

/// Linux open flags as 9P2000.L carries them.
const O_RDONLY: u32 = 0;
const O_WRONLY: u32 = 1;
const O_RDWR: u32 = 2;
const O_EXCL: u32 = 0o200;
const O_TRUNC: u32 = 0o1000;

/// A T-message body under construction.
#[derive(Default)]
struct Enc(Vec<u8>);

impl Enc {
    fn u8(mut self, v: u8) -> Self {
        self.0.push(v);
        self
    }
    fn u16(mut self, v: u16) -> Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    fn u32(mut self, v: u32) -> Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    fn u64(mut self, v: u64) -> Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    fn s(mut self, v: &[u8]) -> Self {
        self = self.u16(u16::try_from(v.len()).unwrap());
        self.0.extend_from_slice(v);
        self
    }
}

/// A whole T-message of type `ty` with `body`.
fn msg(ty: u8, tag: u16, body: &[u8]) -> Vec<u8> {
    let size = u32::try_from(HEADER_LEN + body.len()).unwrap();
    let mut m = size.to_le_bytes().to_vec();
    m.push(ty);
    m.extend_from_slice(&tag.to_le_bytes());
    m.extend_from_slice(body);
    m
}

/// Checks the framing of `reply` (answering a request of type `ty` with `tag`, within
/// `cap` bytes) and returns its body, or the errno of an Rlerror.
fn decode(reply: &[u8], ty: u8, tag: u16, cap: usize) -> Result<Vec<u8>, i32> {
    assert!(
        reply.len() <= cap,
        "reply {} bytes > capacity {cap}",
        reply.len()
    );
    let mut r = Reader::new(reply);
    let size = r.u32().unwrap() as usize;
    assert_eq!(size, reply.len(), "size field");
    let rty = r.u8().unwrap();
    assert_eq!(r.u16().unwrap(), tag, "tag");
    let body = reply[HEADER_LEN..].to_vec();
    if rty == RLERROR {
        assert_eq!(body.len(), 4, "Rlerror body");
        return Err(i32::try_from(u32::from_le_bytes(body[..4].try_into().unwrap())).unwrap());
    }
    assert_eq!(rty, ty + 1, "reply type");
    Ok(body)
}

/// Reads a qid.
fn qid(r: &mut Reader<'_>) -> Qid {
    Qid {
        ty: r.u8().unwrap(),
        version: r.u32().unwrap(),
        path: r.u64().unwrap(),
    }
}

/// The interesting fields of an Rgetattr.
#[derive(Debug)]
struct Attr {
    qid: Qid,
    mode: u32,
    uid: u32,
    gid: u32,
    size: u64,
    mtime: (u64, u64),
}

/// One Rreaddir entry.
#[derive(Debug)]
struct Dirent {
    qid: Qid,
    offset: u64,
    name: Vec<u8>,
}

/// A test client over a server serving `<tmp>/root`, attached as fid 0.
struct Client {
    _tmp: Option<TempDir>,
    outer: PathBuf,
    root: PathBuf,
    srv: P9Server,
    cap: usize,
}

impl Client {
    /// A read-write server, attached as uid 0.
    fn new() -> Client {
        Client::with(false, 0)
    }

    fn with(read_only: bool, uid: u32) -> Client {
        let tmp = tempfile::tempdir().unwrap();
        let outer = tmp.path().to_path_buf();
        let root = outer.join("root");
        std::fs::create_dir(&root).unwrap();
        std::fs::write(outer.join("secret"), SECRET).unwrap();
        let mut c = Client::serving(&root, read_only, uid);
        c._tmp = Some(tmp);
        c.outer = outer;
        c
    }

    /// A client of a new server of `root` (an existing directory the caller owns), attached
    /// as `uid`; `outer` is the root's parent.
    fn serving(root: &Path, read_only: bool, uid: u32) -> Client {
        Client::attached(P9Server::new(root, read_only).unwrap(), root, uid)
    }

    /// A client of a new read-write server of `root` in `group`, attached as uid 0.
    fn in_group(root: &Path, group: &std::sync::Arc<super::ServerGroup>) -> Client {
        let srv = P9Server::in_group(root, false, std::sync::Arc::clone(group)).unwrap();
        Client::attached(srv, root, 0)
    }

    /// A client of `srv` (serving `root`), attached as `uid`.
    fn attached(srv: P9Server, root: &Path, uid: u32) -> Client {
        let mut c = Client {
            _tmp: None,
            outer: root.parent().unwrap().to_path_buf(),
            root: root.to_path_buf(),
            srv,
            cap: MAX_MSIZE as usize,
        };
        let msize = c.version(MSIZE, b"9P2000.L").unwrap().0;
        assert_eq!(msize, MSIZE);
        c.cap = MSIZE as usize;
        c.attach(0, uid).unwrap();
        c
    }

    /// Path of `rel` under the served root.
    fn path(&self, rel: &str) -> PathBuf {
        self.root.join(rel)
    }

    fn raw(&mut self, request: &[u8], cap: usize) -> Vec<u8> {
        let mut reply = Vec::new();
        self.srv.handle(request, cap, &mut reply);
        reply
    }

    fn rpc(&mut self, ty: u8, body: Enc) -> Result<Vec<u8>, i32> {
        let cap = self.cap;
        let reply = self.raw(&msg(ty, TAG, &body.0), cap);
        decode(&reply, ty, TAG, cap)
    }

    fn version(&mut self, msize: u32, v: &[u8]) -> Result<(u32, Vec<u8>), i32> {
        let reply = self.raw(
            &msg(t::VERSION, wire::NOTAG, &Enc::default().u32(msize).s(v).0),
            1 << 20,
        );
        let body = decode(&reply, t::VERSION, wire::NOTAG, 1 << 20)?;
        let mut r = Reader::new(&body);
        Ok((r.u32().unwrap(), r.string().unwrap().to_vec()))
    }

    fn attach(&mut self, fid: u32, uid: u32) -> Result<Qid, i32> {
        let e = Enc::default()
            .u32(fid)
            .u32(wire::NOFID)
            .s(b"root")
            .s(b"")
            .u32(uid);
        let body = self.rpc(t::ATTACH, e)?;
        Ok(qid(&mut Reader::new(&body)))
    }

    fn walk(&mut self, fid: u32, newfid: u32, names: &[&str]) -> Result<Vec<Qid>, i32> {
        let mut e = Enc::default()
            .u32(fid)
            .u32(newfid)
            .u16(u16::try_from(names.len()).unwrap());
        for n in names {
            e = e.s(n.as_bytes());
        }
        let body = self.rpc(t::WALK, e)?;
        let mut r = Reader::new(&body);
        let n = r.u16().unwrap();
        Ok((0..n).map(|_| qid(&mut r)).collect())
    }

    fn clunk(&mut self, fid: u32) -> Result<(), i32> {
        self.rpc(t::CLUNK, Enc::default().u32(fid)).map(drop)
    }

    fn lopen(&mut self, fid: u32, flags: u32) -> Result<Qid, i32> {
        let body = self.rpc(t::LOPEN, Enc::default().u32(fid).u32(flags))?;
        Ok(qid(&mut Reader::new(&body)))
    }

    fn lcreate(
        &mut self,
        fid: u32,
        name: &str,
        flags: u32,
        mode: u32,
        gid: u32,
    ) -> Result<Qid, i32> {
        let e = Enc::default()
            .u32(fid)
            .s(name.as_bytes())
            .u32(flags)
            .u32(mode)
            .u32(gid);
        let body = self.rpc(t::LCREATE, e)?;
        Ok(qid(&mut Reader::new(&body)))
    }

    fn read(&mut self, fid: u32, offset: u64, count: u32) -> Result<Vec<u8>, i32> {
        let body = self.rpc(t::READ, Enc::default().u32(fid).u64(offset).u32(count))?;
        let n = u32::from_le_bytes(body[..4].try_into().unwrap()) as usize;
        assert_eq!(n, body.len() - 4, "Rread count");
        Ok(body[4..].to_vec())
    }

    fn write(&mut self, fid: u32, offset: u64, data: &[u8]) -> Result<u32, i32> {
        let e = Enc::default()
            .u32(fid)
            .u64(offset)
            .u32(u32::try_from(data.len()).unwrap());
        let mut e = e;
        e.0.extend_from_slice(data);
        let body = self.rpc(t::WRITE, e)?;
        Ok(u32::from_le_bytes(body[..4].try_into().unwrap()))
    }

    fn getattr(&mut self, fid: u32) -> Result<Attr, i32> {
        let body = self.rpc(t::GETATTR, Enc::default().u32(fid).u64(0x7ff))?;
        let mut r = Reader::new(&body);
        assert_eq!(r.u64().unwrap(), 0x7ff);
        let qid = qid(&mut r);
        let (mode, uid, gid) = (r.u32().unwrap(), r.u32().unwrap(), r.u32().unwrap());
        let (_nlink, _rdev, size) = (r.u64().unwrap(), r.u64().unwrap(), r.u64().unwrap());
        let (_blksize, _blocks, _atime) = (
            r.u64().unwrap(),
            r.u64().unwrap(),
            (r.u64().unwrap(), r.u64().unwrap()),
        );
        let mtime = (r.u64().unwrap(), r.u64().unwrap());
        Ok(Attr {
            qid,
            mode,
            uid,
            gid,
            size,
            mtime,
        })
    }

    fn readdir(&mut self, fid: u32, offset: u64, count: u32) -> Result<Vec<Dirent>, i32> {
        let body = self.rpc(t::READDIR, Enc::default().u32(fid).u64(offset).u32(count))?;
        let mut r = Reader::new(&body);
        let n = r.u32().unwrap() as usize;
        assert_eq!(n, body.len() - 4, "Rreaddir count");
        assert!(n <= count as usize);
        let mut out = Vec::new();
        while !r.is_empty() {
            let qid = qid(&mut r);
            let offset = r.u64().unwrap();
            let _ty = r.u8().unwrap();
            let name = r.string().unwrap().to_vec();
            out.push(Dirent { qid, offset, name });
        }
        Ok(out)
    }

    fn mkdir(&mut self, dfid: u32, name: &str, mode: u32, gid: u32) -> Result<Qid, i32> {
        let e = Enc::default()
            .u32(dfid)
            .s(name.as_bytes())
            .u32(mode)
            .u32(gid);
        let body = self.rpc(t::MKDIR, e)?;
        Ok(qid(&mut Reader::new(&body)))
    }

    fn symlink(&mut self, dfid: u32, name: &str, target: &str, gid: u32) -> Result<Qid, i32> {
        let e = Enc::default()
            .u32(dfid)
            .s(name.as_bytes())
            .s(target.as_bytes())
            .u32(gid);
        let body = self.rpc(t::SYMLINK, e)?;
        Ok(qid(&mut Reader::new(&body)))
    }

    fn unlinkat(&mut self, dfid: u32, name: &str, flags: u32) -> Result<(), i32> {
        self.rpc(
            t::UNLINKAT,
            Enc::default().u32(dfid).s(name.as_bytes()).u32(flags),
        )
        .map(drop)
    }

    /// Walks `name` from the root into `newfid`, then opens it with `flags`.
    fn open_at_root(&mut self, newfid: u32, name: &str, flags: u32) -> Result<Qid, i32> {
        self.walk(0, newfid, &[name])?;
        self.lopen(newfid, flags)
    }

    /// Checks the host file outside the root is untouched and nothing new appeared there.
    fn assert_outside_untouched(&self) {
        assert_eq!(std::fs::read(self.outer.join("secret")).unwrap(), SECRET);
        let mut names: Vec<_> = std::fs::read_dir(&self.outer)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        names.sort();
        assert_eq!(names, ["root", "secret"]);
    }
}

/// The host's metadata of `p` without following a symlink.
fn lstat(p: &Path) -> std::fs::Metadata {
    std::fs::symlink_metadata(p).unwrap()
}
