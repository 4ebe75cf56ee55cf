//! Session messages: Tversion, Tattach, Twalk, Tclunk.

use nix::errno::Errno;

use super::fid::Fid;
use super::host::Kind;
use super::path::SharePath;
use super::root::inode;
use super::wire::{Reader, Writer, MAX_WALK, NOFID};
use super::{P9Server, MAX_MSIZE, MIN_MSIZE};

/// The only protocol version served.
const VERSION_L: &[u8] = b"9P2000.L";
/// The numeric uid meaning "none given" (Linux `INVALID_UID`).
const NO_UID: u32 = u32::MAX;

impl P9Server {
    /// Tversion: `msize[4] version[s]` → `msize[4] version[s]`. Drops every fid.
    pub(super) fn version(&mut self, r: &mut Reader<'_>, out: &mut Vec<u8>) -> Result<(), Errno> {
        let msize = r.u32()?;
        let version = r.string()?;
        if msize < MIN_MSIZE {
            return Err(Errno::EINVAL);
        }
        self.fids.clear();
        self.msize = msize.min(MAX_MSIZE);
        // Accept "9P2000.L" and extensions of it; anything else gets "unknown".
        let reply: &[u8] = if version.starts_with(VERSION_L) {
            VERSION_L
        } else {
            b"unknown"
        };
        Writer::new(out).u32(self.msize).string(reply)?;
        Ok(())
    }

    /// Tattach: `fid[4] afid[4] uname[s] aname[s] n_uname[4]` → `qid`. The aname is
    /// ignored (the server has one tree); n_uname is the uid owning what the fid creates.
    pub(super) fn attach(&mut self, r: &mut Reader<'_>, out: &mut Vec<u8>) -> Result<(), Errno> {
        let fid = r.u32()?;
        let afid = r.u32()?;
        let _uname = r.string()?;
        let _aname = r.string()?;
        let n_uname = r.u32()?;
        if afid != NOFID {
            return Err(Errno::EINVAL);
        }
        self.fids.check_free(fid)?;
        let root = self.root.node(&SharePath::root())?;
        let qid = self.qid(&root.st);
        let uid = (n_uname != NO_UID).then_some(n_uname);
        let path = SharePath::root();
        let inode = inode(&root.st);
        let open = None;
        self.fids.insert(
            fid,
            Fid {
                path,
                inode,
                uid,
                open,
            },
        );
        Writer::new(out).qid(&qid);
        Ok(())
    }

    /// Twalk: `fid[4] newfid[4] nwname[2] nwname*(wname[s])` → `nwqid[2] nwqid*(qid)`.
    /// Stops at the first name that fails: an error if it is the first, else the qids of
    /// the names that succeeded, and newfid is only set if every name succeeded. Each
    /// step is resolved from the root (`..` pops a name, see [`SharePath::step`]).
    pub(super) fn walk(&mut self, r: &mut Reader<'_>, out: &mut Vec<u8>) -> Result<(), Errno> {
        let fid = r.u32()?;
        let newfid = r.u32()?;
        let nwname = r.u16()?;
        if nwname > MAX_WALK {
            return Err(Errno::EINVAL);
        }
        let mut names = [&[][..]; MAX_WALK as usize];
        for name in names.iter_mut().take(usize::from(nwname)) {
            *name = r.string()?;
        }
        let names = &names[..usize::from(nwname)];
        let start = self.fids.get(fid)?;
        let (uid, mut id) = (start.uid, start.inode);
        if newfid != fid {
            self.fids.check_free(newfid)?;
        }
        let mut cur = start.path.clone();
        let mut qids = Vec::with_capacity(names.len());
        if !names.is_empty() {
            let mut kind = self.root.node(&cur)?.kind;
            for name in names {
                let next = match kind {
                    Kind::Dir => cur.step(name).and_then(|p| Ok((self.root.node(&p)?, p))),
                    _ => Err(Errno::ENOTDIR),
                };
                match next {
                    Ok((node, path)) => {
                        qids.push(self.qid(&node.st));
                        kind = node.kind;
                        id = inode(&node.st);
                        cur = path;
                    }
                    Err(e) if qids.is_empty() => return Err(e),
                    Err(_) => break,
                }
            }
        }
        // A walk of no names onto itself changes nothing (and keeps the fid open).
        let noop = names.is_empty() && newfid == fid;
        if qids.len() == names.len() && !noop {
            // Walking a fid onto itself replaces it (closing what it had open).
            self.fids.check_room(cur.len())?;
            let open = None;
            let path = cur;
            let inode = id;
            self.fids.insert(
                newfid,
                Fid {
                    path,
                    inode,
                    uid,
                    open,
                },
            );
        }
        let mut w = Writer::new(out);
        // At most MAX_WALK qids.
        w.u16(u16::try_from(qids.len()).unwrap_or(0));
        for q in &qids {
            w.qid(q);
        }
        Ok(())
    }

    /// Tclunk: `fid[4]` → nothing. Forgets the fid (closing what it had open).
    pub(super) fn clunk(&mut self, r: &mut Reader<'_>) -> Result<(), Errno> {
        let fid = r.u32()?;
        self.fids.remove(fid).map(drop)
    }
}
