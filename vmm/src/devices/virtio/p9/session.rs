//! Session messages: Tversion, Tattach, Twalk, Tclunk.

use nix::errno::Errno;

use super::fid::{self, Fid};
use super::wire::{Reader, Writer, NOFID};
use super::{P9Server, MAX_MSIZE, MIN_MSIZE};

/// The only protocol version served.
const VERSION_L: &[u8] = b"9P2000.L";
/// Twalk's limit on names per message (`MAXWELEM`).
pub const MAX_WALK: u16 = 16;
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
        let node = self.root.clone();
        let qid = self.qid(&node);
        let uid = (n_uname != NO_UID).then_some(n_uname);
        self.fids.insert(
            fid,
            Fid {
                node,
                uid,
                open: None,
            },
        );
        Writer::new(out).qid(&qid);
        Ok(())
    }

    /// Twalk: `fid[4] newfid[4] nwname[2] nwname*(wname[s])` → `nwqid[2] nwqid*(qid)`.
    /// Stops at the first name that fails: an error if it is the first, else the qids of
    /// the names that succeeded, and newfid is only set if every name succeeded.
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
        let start = self.fids.get(fid)?;
        let uid = start.uid;
        if newfid != fid {
            self.fids.check_free(newfid)?;
        }
        let mut cur = start.node.clone();
        let mut qids = Vec::with_capacity(usize::from(nwname));
        for name in &names[..usize::from(nwname)] {
            match fid::step(&self.root, &cur, name) {
                Ok(next) => {
                    qids.push(self.qid(&next));
                    cur = next;
                }
                Err(e) if qids.is_empty() => return Err(e),
                Err(_) => break,
            }
        }
        // A walk of no names onto itself changes nothing (and keeps the fid open).
        let noop = nwname == 0 && newfid == fid;
        if qids.len() == usize::from(nwname) && !noop {
            let open = None;
            self.fids.insert(
                newfid,
                Fid {
                    node: cur,
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
