//! 9P servers in another process: the jailed VMM keeps the virtqueues and guest memory,
//! and a file-server process of its own keeps the shares and the capabilities serving
//! them needs (see `crate::jail::files`). Between them, one Unix stream socket per share
//! carries whole requests and replies, copied: the file server never sees guest memory,
//! and the VMM never holds a share's fd.
//!
//! Framing (little-endian): a request is `u32 reply_capacity, u32 len, len bytes`; a
//! reply is `u32 len, len bytes`. Each side bounds what it reads before allocating: a
//! request by [`MAX_FRAME`], a reply by the capacity it asked for. A peer that breaks the
//! framing, or goes away, ends the connection; the guest then gets `EIO` for every
//! request on that share.

use std::io::{self, Read, Write};
use std::os::fd::{AsFd, OwnedFd};

use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

use super::wire::{self, Reader, LERROR_LEN, NOTAG};
use super::MAX_MSIZE;
use crate::devices::virtio::RequestHandler;

/// The longest request or reply either side accepts: the largest msize, with room to spare
/// for a transport that gathers a little more than the 9P size says.
pub const MAX_FRAME: usize = MAX_MSIZE as usize + 4096;

/// The VMM's side of one share: forwards each request to the file server.
#[derive(Debug)]
pub struct RemoteServer {
    conn: Option<std::fs::File>,
}

impl RemoteServer {
    /// A handler that forwards over `conn` (one end of a stream socket pair).
    pub fn new(conn: OwnedFd) -> RemoteServer {
        RemoteServer {
            conn: Some(std::fs::File::from(conn)),
        }
    }

    fn call(&mut self, request: &[u8], cap: usize, reply: &mut Vec<u8>) -> io::Result<()> {
        let conn = self.conn.as_mut().ok_or(io::ErrorKind::NotConnected)?;
        let len = u32::try_from(request.len().min(MAX_FRAME)).unwrap_or(u32::MAX);
        let cap32 = u32::try_from(cap.min(MAX_FRAME)).unwrap_or(u32::MAX);
        let mut head = [0u8; 8];
        head[..4].copy_from_slice(&cap32.to_le_bytes());
        head[4..].copy_from_slice(&len.to_le_bytes());
        conn.write_all(&head)?;
        conn.write_all(&request[..len as usize])?;
        let n = read_len(conn)?;
        if n > cap32 as usize {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "reply too long"));
        }
        reply.resize(n, 0);
        conn.read_exact(reply)
    }
}

impl RequestHandler for RemoteServer {
    fn handle(&mut self, request: &[u8], reply_capacity: usize, reply: &mut Vec<u8>) {
        reply.clear();
        if self.call(request, reply_capacity, reply).is_ok() {
            return;
        }
        // The file server is gone (or broke the framing): never again for this share.
        self.conn = None;
        reply.clear();
        if reply_capacity >= LERROR_LEN {
            let mut head = Reader::new(request);
            let tag = match (head.u32(), head.u8(), head.u16()) {
                (Ok(_), Ok(_), Ok(tag)) => tag,
                _ => NOTAG,
            };
            wire::lerror(reply, tag, Errno::EIO);
        }
    }
}

fn read_len(r: &mut impl Read) -> io::Result<usize> {
    let mut b = [0u8; 4];
    r.read_exact(&mut b)?;
    Ok(u32::from_le_bytes(b) as usize)
}

/// Reads one request frame: `Ok(None)` at a clean end of stream.
fn read_request(r: &mut impl Read, buf: &mut Vec<u8>) -> io::Result<Option<usize>> {
    let mut head = [0u8; 8];
    match r.read(&mut head[..1])? {
        0 => return Ok(None),
        _ => r.read_exact(&mut head[1..])?,
    }
    let cap = u32::from_le_bytes([head[0], head[1], head[2], head[3]]) as usize;
    let len = u32::from_le_bytes([head[4], head[5], head[6], head[7]]) as usize;
    if len > MAX_FRAME || cap > MAX_FRAME {
        return Err(io::Error::new(io::ErrorKind::InvalidData, "frame too long"));
    }
    buf.resize(len, 0);
    r.read_exact(buf)?;
    Ok(Some(cap))
}

/// The file server's loop: serves each share's connection with its handler, one request
/// at a time across all of them (as the in-process servers of one VM are serialised),
/// until every connection has ended. Returns the number of connections that ended on an
/// error rather than a clean end of stream.
pub fn serve(shares: Vec<(Box<dyn RequestHandler>, OwnedFd)>) -> usize {
    let mut live: Vec<(Box<dyn RequestHandler>, std::fs::File)> = shares
        .into_iter()
        .map(|(h, fd)| (h, std::fs::File::from(fd)))
        .collect();
    let mut errors = 0;
    let (mut request, mut reply) = (Vec::new(), Vec::new());
    while !live.is_empty() {
        let ready: Vec<bool> = {
            let mut fds: Vec<PollFd<'_>> = live
                .iter()
                .map(|(_, c)| PollFd::new(c.as_fd(), PollFlags::POLLIN))
                .collect();
            match poll(&mut fds, PollTimeout::NONE) {
                Ok(_) => {}
                Err(Errno::EINTR) => continue,
                Err(_) => return errors + live.len(),
            }
            fds.iter().map(|f| f.any().unwrap_or(true)).collect()
        };
        let mut ended = Vec::new();
        for (i, (handler, conn)) in live.iter_mut().enumerate() {
            if !ready[i] {
                continue;
            }
            let served = read_request(conn, &mut request).and_then(|cap| {
                let Some(cap) = cap else { return Ok(false) };
                reply.clear();
                handler.handle(&request, cap, &mut reply);
                reply.truncate(cap);
                let len = u32::try_from(reply.len()).unwrap_or(0);
                conn.write_all(&len.to_le_bytes())?;
                conn.write_all(&reply[..len as usize])?;
                Ok(true)
            });
            match served {
                Ok(true) => {}
                Ok(false) => ended.push(i),
                Err(_) => {
                    errors += 1;
                    ended.push(i);
                }
            }
        }
        for i in ended.into_iter().rev() {
            live.remove(i);
        }
    }
    errors
}

#[cfg(test)]
mod tests {
    use std::os::unix::net::UnixStream;

    use super::*;

    /// Echoes the request, prefixed by the capacity it was given (one byte).
    struct Echo;
    impl RequestHandler for Echo {
        fn handle(&mut self, request: &[u8], cap: usize, reply: &mut Vec<u8>) {
            reply.push(u8::try_from(cap.min(255)).unwrap());
            reply.extend_from_slice(request);
        }
    }

    fn pair() -> (OwnedFd, OwnedFd) {
        let (a, b) = UnixStream::pair().unwrap();
        (a.into(), b.into())
    }

    #[test]
    fn test_remote_forwards_requests_and_replies_to_every_share() {
        let (vmm0, fs0) = pair();
        let (vmm1, fs1) = pair();
        let server = std::thread::spawn(move || {
            serve(vec![
                (Box::new(Echo) as Box<dyn RequestHandler>, fs0),
                (Box::new(Echo), fs1),
            ])
        });
        let (mut r0, mut r1) = (RemoteServer::new(vmm0), RemoteServer::new(vmm1));
        let mut reply = Vec::new();
        r0.handle(b"hello", 100, &mut reply);
        assert_eq!(reply, b"\x64hello");
        r1.handle(&[7; 70_000], 200, &mut reply);
        // The server truncates to the capacity; the client never takes more.
        assert_eq!(reply.len(), 200);
        assert_eq!(reply[0], 200);
        drop((r0, r1));
        assert_eq!(server.join().unwrap(), 0, "both ended cleanly");
    }

    #[test]
    fn test_remote_gone_server_answers_eio_with_the_tag() {
        let (vmm, fs) = pair();
        drop(fs);
        let mut r = RemoteServer::new(vmm);
        // Tversion with tag 0x1234.
        let req = [11, 0, 0, 0, 100, 0x34, 0x12, 0, 0, 0, 0];
        let mut reply = Vec::new();
        r.handle(&req, 4096, &mut reply);
        assert_eq!(reply.len(), LERROR_LEN);
        assert_eq!(reply[4], wire::RLERROR);
        assert_eq!(&reply[5..7], &[0x34, 0x12]);
        assert_eq!(
            u32::from_le_bytes(reply[7..11].try_into().unwrap()),
            Errno::EIO as u32
        );
        // No room for even an Rlerror: an empty reply, as the local server gives.
        r.handle(&req, 3, &mut reply);
        assert!(reply.is_empty());
    }

    #[test]
    fn test_remote_server_refuses_oversized_frames_without_allocating_them() {
        let (vmm, fs) = pair();
        let server = std::thread::spawn(move || {
            serve(vec![(Box::new(Echo) as Box<dyn RequestHandler>, fs)])
        });
        let mut c = std::fs::File::from(vmm);
        let mut head = Vec::new();
        head.extend_from_slice(&100u32.to_le_bytes());
        head.extend_from_slice(&u32::MAX.to_le_bytes());
        c.write_all(&head).unwrap();
        // The server ends the connection on the bad frame (an error, not a clean end).
        assert_eq!(server.join().unwrap(), 1);
        let mut rest = Vec::new();
        assert_eq!(c.read_to_end(&mut rest).unwrap(), 0);
    }
}
