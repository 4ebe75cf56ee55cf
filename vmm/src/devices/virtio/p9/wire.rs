//! 9P2000.L wire format: little-endian integers, strings as `len[2] bytes[len]`, qids as
//! `type[1] version[4] path[8]`. Message type numbers are Linux's `include/net/9p/9p.h`.
//!
//! Decoding borrows from the request and never allocates; encoding appends to the reply.

use nix::errno::Errno;

/// Bytes of `size[4] type[1] tag[2]`.
pub const HEADER_LEN: usize = 7;
/// The tag of Tversion, and of replies to messages whose tag is unreadable.
pub const NOTAG: u16 = 0xffff;
/// "No fid" (Tattach's afid when no authentication is used).
pub const NOFID: u32 = 0xffff_ffff;
/// Bytes of an encoded qid.
pub const QID_LEN: usize = 13;
/// Twalk's limit on names per message (`MAXWELEM`).
pub const MAX_WALK: u16 = 16;

/// Qid type of a directory.
pub const QT_DIR: u8 = 0x80;
/// Qid type of a symbolic link.
pub const QT_SYMLINK: u8 = 0x02;
/// Qid type of a regular (or any other non-directory) file.
pub const QT_FILE: u8 = 0x00;

/// T-message type numbers (each R-message is the T number + 1).
#[allow(missing_docs)]
pub mod t {
    pub const LERROR: u8 = 6;
    pub const STATFS: u8 = 8;
    pub const LOPEN: u8 = 12;
    pub const LCREATE: u8 = 14;
    pub const SYMLINK: u8 = 16;
    pub const MKNOD: u8 = 18;
    pub const RENAME: u8 = 20;
    pub const READLINK: u8 = 22;
    pub const GETATTR: u8 = 24;
    pub const SETATTR: u8 = 26;
    pub const XATTRWALK: u8 = 30;
    pub const XATTRCREATE: u8 = 32;
    pub const READDIR: u8 = 40;
    pub const FSYNC: u8 = 50;
    pub const LOCK: u8 = 52;
    pub const GETLOCK: u8 = 54;
    pub const LINK: u8 = 70;
    pub const MKDIR: u8 = 72;
    pub const RENAMEAT: u8 = 74;
    pub const UNLINKAT: u8 = 76;
    pub const VERSION: u8 = 100;
    pub const AUTH: u8 = 102;
    pub const ATTACH: u8 = 104;
    pub const FLUSH: u8 = 108;
    pub const WALK: u8 = 110;
    pub const READ: u8 = 116;
    pub const WRITE: u8 = 118;
    pub const CLUNK: u8 = 120;
    pub const REMOVE: u8 = 122;
}

/// Rlerror's type number.
pub const RLERROR: u8 = t::LERROR + 1;

/// A file's identity as the client sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Qid {
    /// `QT_DIR`, `QT_SYMLINK` or `QT_FILE`.
    pub ty: u8,
    /// Version (always 0: the client runs with cache=none).
    pub version: u32,
    /// Unique per file (the host inode number, mixed with the device if not the root's).
    pub path: u64,
}

/// A cursor over a request body. Every read fails with `EPROTO` past the end.
#[derive(Debug)]
pub struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    /// A reader over `buf`.
    pub fn new(buf: &'a [u8]) -> Self {
        Reader { buf }
    }

    /// Takes the next `n` bytes.
    pub fn bytes(&mut self, n: usize) -> Result<&'a [u8], Errno> {
        if n > self.buf.len() {
            return Err(Errno::EPROTO);
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], Errno> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.bytes(N)?);
        Ok(out)
    }

    /// Reads a `u8`.
    pub fn u8(&mut self) -> Result<u8, Errno> {
        Ok(self.array::<1>()?[0])
    }

    /// Reads a little-endian `u16`.
    pub fn u16(&mut self) -> Result<u16, Errno> {
        self.array().map(u16::from_le_bytes)
    }

    /// Reads a little-endian `u32`.
    pub fn u32(&mut self) -> Result<u32, Errno> {
        self.array().map(u32::from_le_bytes)
    }

    /// Reads a little-endian `u64`.
    pub fn u64(&mut self) -> Result<u64, Errno> {
        self.array().map(u64::from_le_bytes)
    }

    /// Reads a string (`len[2]` then bytes), borrowed from the request.
    pub fn string(&mut self) -> Result<&'a [u8], Errno> {
        let len = self.u16()?;
        self.bytes(usize::from(len))
    }

    /// Whether nothing is left.
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }
}

/// Appends encoded fields to a reply buffer.
#[derive(Debug)]
pub struct Writer<'a> {
    buf: &'a mut Vec<u8>,
}

impl<'a> Writer<'a> {
    /// A writer appending to `buf`.
    pub fn new(buf: &'a mut Vec<u8>) -> Self {
        Writer { buf }
    }

    /// Appends a `u8`.
    pub fn u8(&mut self, v: u8) -> &mut Self {
        self.buf.push(v);
        self
    }

    /// Appends a little-endian `u16`.
    pub fn u16(&mut self, v: u16) -> &mut Self {
        self.buf.extend_from_slice(&v.to_le_bytes());
        self
    }

    /// Appends a little-endian `u32`.
    pub fn u32(&mut self, v: u32) -> &mut Self {
        self.buf.extend_from_slice(&v.to_le_bytes());
        self
    }

    /// Appends a little-endian `u64`.
    pub fn u64(&mut self, v: u64) -> &mut Self {
        self.buf.extend_from_slice(&v.to_le_bytes());
        self
    }

    /// Appends a string; fails with `ENAMETOOLONG` beyond 65535 bytes.
    pub fn string(&mut self, s: &[u8]) -> Result<&mut Self, Errno> {
        let len = u16::try_from(s.len()).map_err(|_| Errno::ENAMETOOLONG)?;
        self.u16(len);
        self.buf.extend_from_slice(s);
        Ok(self)
    }

    /// Appends a qid.
    pub fn qid(&mut self, q: &Qid) -> &mut Self {
        self.u8(q.ty).u32(q.version).u64(q.path)
    }
}

/// Starts a reply: a placeholder size, the type and the tag. [`finish`] fills the size.
pub fn begin(reply: &mut Vec<u8>, ty: u8, tag: u16) {
    reply.clear();
    Writer::new(reply).u32(0).u8(ty).u16(tag);
}

/// Writes the final size of the reply into its first four bytes.
pub fn finish(reply: &mut [u8]) {
    let size = u32::try_from(reply.len()).unwrap_or(u32::MAX);
    if let Some(head) = reply.get_mut(..4) {
        head.copy_from_slice(&size.to_le_bytes());
    }
}

/// Replaces `reply` with an Rlerror carrying `errno`.
pub fn lerror(reply: &mut Vec<u8>, tag: u16, errno: Errno) {
    begin(reply, RLERROR, tag);
    // Errno values are small positive numbers.
    Writer::new(reply).u32(u32::try_from(errno as i32).unwrap_or(libc::EIO as u32));
    finish(reply);
}

/// Bytes of an Rlerror.
pub const LERROR_LEN: usize = HEADER_LEN + 4;

/// The most bytes the reply body to a request of type `ty` with `body` can take, for the
/// requests that have an effect (a fid, a file, a session) and a reply bigger than an
/// Rlerror; `None` for the others (their reply is bounded as it is built, or always fits).
/// The server refuses a request whose bound does not fit before running it.
pub fn reply_bound(ty: u8, body: &[u8]) -> Option<usize> {
    match ty {
        // msize[4] version[s] (at most "9P2000.L").
        t::VERSION => Some(4 + 2 + 8),
        t::ATTACH | t::MKDIR | t::SYMLINK | t::MKNOD => Some(QID_LEN),
        t::LOPEN | t::LCREATE => Some(QID_LEN + 4),
        t::WALK => {
            // fid[4] newfid[4] nwname[2]: at most 16 qids come back (more is refused).
            let n = u16::from_le_bytes(body.get(8..10)?.try_into().ok()?);
            Some(2 + QID_LEN * usize::from(n.min(MAX_WALK)))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_reader_past_end_is_eproto() {
        let mut r = Reader::new(&[1, 2, 3]);
        assert_eq!(r.u16(), Ok(0x0201));
        assert_eq!(r.u16(), Err(Errno::EPROTO));
        assert_eq!(r.u8(), Ok(3));
        assert!(r.is_empty());
    }

    #[test]
    fn test_reader_string_longer_than_buffer_is_eproto() {
        let mut r = Reader::new(&[0xff, 0xff, b'a']);
        assert_eq!(r.string(), Err(Errno::EPROTO));
    }

    #[test]
    fn test_lerror_encoding() {
        let mut v = vec![9, 9, 9];
        lerror(&mut v, 0x1234, Errno::ENOENT);
        assert_eq!(v, [11, 0, 0, 0, RLERROR, 0x34, 0x12, 2, 0, 0, 0]);
        assert_eq!(v.len(), LERROR_LEN);
    }
}
