//! Serving a request/reply virtqueue: for each available descriptor chain, gather the
//! device-readable buffers into one request, hand it to a [`RequestHandler`], scatter the
//! reply over the device-writable buffers and mark the chain used with the bytes written.
//!
//! Chains are walked with rust-vmm's `virtio-queue` (bounded walk: at most queue-size
//! descriptors, indirect tables followed once); the checks that crate leaves to the device
//! are here: every buffer inside guest memory, readable buffers before writable ones, a
//! chain that ends while its last descriptor still says "next" (a loop or a bad index), and
//! a cap on the request size. A malformed chain is used with length 0 and reported; only a
//! broken ring (used ring or head index unusable) is an error, which the transport turns
//! into `DEVICE_NEEDS_RESET`.
//!
//! One pass does bounded work whatever the guest does meanwhile (a hostile driver can
//! republish chains as fast as they are used): at most one ring's worth of chains and
//! [`PASS_BYTES`] bytes of requests and replies. What is left is reported in
//! [`Served::more`]; the worker serves it in a later pass, after letting register
//! accesses, resets and the stop request through.

use std::sync::atomic::Ordering;

use virtio_queue::desc::split::Descriptor;
use virtio_queue::{Queue, QueueOwnedT, QueueT};
use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend, GuestMemoryMmap};

use super::RequestHandler;

/// Largest request gathered from one chain (Linux's 9P msize tops out at 512 KiB).
pub const MAX_REQUEST: usize = 8 << 20;

/// Most request and reply bytes one pass moves (a chain already started is finished).
pub const PASS_BYTES: usize = 16 << 20;

/// Why a chain was refused (used with length 0).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ChainError {
    /// The chain has no descriptor (head index out of the table, or unreadable table).
    #[error("Descriptor chain {head} is empty or its table is unreadable")]
    Empty {
        /// Head index.
        head: u16,
    },
    /// The walk stopped before the chain's end (a loop, a bad next index).
    #[error("Descriptor chain {head} loops or links to a missing descriptor")]
    Truncated {
        /// Head index.
        head: u16,
    },
    /// A buffer lies (partly) outside guest memory.
    #[error("Descriptor chain {head} has a buffer at {addr:#x}+{len:#x} outside guest memory")]
    OutsideMemory {
        /// Head index.
        head: u16,
        /// Buffer address.
        addr: u64,
        /// Buffer length.
        len: u32,
    },
    /// A device-readable buffer follows a device-writable one.
    #[error("Descriptor chain {head} has a readable buffer after a writable one")]
    ReadAfterWrite {
        /// Head index.
        head: u16,
    },
    /// The request is bigger than [`MAX_REQUEST`].
    #[error("Descriptor chain {head} carries a request over {MAX_REQUEST} bytes")]
    TooBig {
        /// Head index.
        head: u16,
    },
    /// The handler's reply does not fit the writable buffers.
    #[error("Reply of {reply} bytes does not fit the {room} bytes of chain {head}")]
    ReplyTooBig {
        /// Head index.
        head: u16,
        /// Reply size.
        reply: usize,
        /// Writable room.
        room: usize,
    },
}

/// The ring itself is unusable: the device must be reset by the driver.
#[derive(Debug, thiserror::Error)]
#[error("Cannot use the virtqueue rings")]
pub struct RingError(#[source] pub virtio_queue::Error);

/// What one pass over the queue did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Served {
    /// Chains marked used (good and malformed).
    pub used: u32,
    /// Malformed chains among them, each with why.
    pub malformed: Vec<ChainError>,
    /// The pass stopped at its budget with chains still available.
    pub more: bool,
}

/// Serves every available chain of `queue`. Returns an error only when the rings cannot be
/// used (the transport then asks for a reset); chains served before that stay used.
pub fn serve_requests(
    queue: &mut Queue,
    mem: &GuestMemoryMmap,
    handler: &mut dyn RequestHandler,
) -> Result<Served, RingError> {
    let mut served = Served::default();
    let mut request = Vec::new();
    let mut reply = Vec::new();
    let budget = u32::from(queue.size());
    let mut bytes = 0usize;
    loop {
        if served.used >= budget || bytes >= PASS_BYTES {
            let avail = queue.avail_idx(mem, Ordering::Acquire).map_err(RingError)?;
            served.more = avail.0 != queue.next_avail();
            return Ok(served);
        }
        let chain = {
            let mut iter = queue.iter(mem).map_err(RingError)?;
            iter.next()
        };
        let Some(chain) = chain else {
            return Ok(served);
        };
        let head = chain.head_index();
        let descs: Vec<Descriptor> = chain.collect();
        request.clear();
        reply.clear();
        let len = match serve_chain(head, &descs, mem, handler, &mut request, &mut reply) {
            Ok(len) => len,
            Err(e) => {
                served.malformed.push(e);
                0
            }
        };
        bytes = bytes.saturating_add(request.len() + reply.len());
        queue.add_used(mem, head, len).map_err(RingError)?;
        served.used += 1;
    }
}

/// Gathers, handles, scatters one chain; returns the bytes written.
fn serve_chain(
    head: u16,
    descs: &[Descriptor],
    mem: &GuestMemoryMmap,
    handler: &mut dyn RequestHandler,
    request: &mut Vec<u8>,
    reply: &mut Vec<u8>,
) -> Result<u32, ChainError> {
    let writable = check_chain(head, descs, mem)?;
    for d in descs.iter().filter(|d| !d.is_write_only()) {
        let start = request.len();
        let end = start + d.len() as usize;
        if end > MAX_REQUEST {
            return Err(ChainError::TooBig { head });
        }
        request.resize(end, 0);
        mem.read_slice(&mut request[start..], d.addr())
            .map_err(|_| outside(head, d))?;
    }
    let room: usize = writable.iter().map(|d| d.len() as usize).sum();
    handler.handle(request, room, reply);
    if reply.len() > room {
        return Err(ChainError::ReplyTooBig {
            head,
            reply: reply.len(),
            room,
        });
    }
    let mut rest: &[u8] = reply;
    for d in writable {
        if rest.is_empty() {
            break;
        }
        let n = rest.len().min(d.len() as usize);
        mem.write_slice(&rest[..n], d.addr())
            .map_err(|_| outside(head, d))?;
        rest = &rest[n..];
    }
    // `room` is the sum of u32 lengths the chain walk capped at 2^32 - 1 in total.
    Ok(u32::try_from(reply.len()).unwrap_or(u32::MAX))
}

/// Checks shape and bounds before anything is read or handled; returns the writable part.
fn check_chain<'a>(
    head: u16,
    descs: &'a [Descriptor],
    mem: &GuestMemoryMmap,
) -> Result<&'a [Descriptor], ChainError> {
    let last = descs.last().ok_or(ChainError::Empty { head })?;
    if last.has_next() {
        return Err(ChainError::Truncated { head });
    }
    for d in descs {
        if !GuestMemoryBackend::check_range(mem, d.addr(), d.len() as usize) {
            return Err(outside(head, d));
        }
    }
    let first_writable = descs
        .iter()
        .position(|d| d.is_write_only())
        .unwrap_or(descs.len());
    let writable = &descs[first_writable..];
    if writable.iter().any(|d| !d.is_write_only()) {
        return Err(ChainError::ReadAfterWrite { head });
    }
    Ok(writable)
}

fn outside(head: u16, d: &Descriptor) -> ChainError {
    let GuestAddress(addr) = d.addr();
    ChainError::OutsideMemory {
        head,
        addr,
        len: d.len(),
    }
}
