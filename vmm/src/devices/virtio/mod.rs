//! virtio devices over the MMIO transport (virtio 1.x, "virtio-mmio" version 2).
//!
//! The transport and queues live beside this file; each device type implements its
//! protocol behind a small trait so it can be tested without a guest.

pub mod device;
pub mod p9;
pub mod p9_device;
pub mod queue;
pub mod transport;
pub mod worker;

pub use device::{VirtioDevice, VirtioSlot};
pub use p9_device::P9Device;
pub use transport::MmioTransport;

/// A request/reply protocol served over one virtqueue (9P: one T-message in, one
/// R-message out). The transport gathers the device-readable buffers of a descriptor
/// chain into `request`, calls [`RequestHandler::handle`], and scatters `reply` over the
/// chain's device-writable buffers.
pub trait RequestHandler: Send {
    /// Handles one whole request; appends the whole reply to `reply` (empty on entry).
    /// `reply_capacity` is the room the guest gave for the reply; a handler must not
    /// produce more (9P: a reply never exceeds the negotiated msize).
    fn handle(&mut self, request: &[u8], reply_capacity: usize, reply: &mut Vec<u8>);
}
