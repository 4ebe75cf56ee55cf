//! The virtio-9p device (device ID 9): one request queue carrying 9P messages to a
//! [`RequestHandler`] (the 9P2000.L server), and a config space naming the mount tag the
//! guest passes to `mount -t 9p -o trans=virtio TAG DIR`.

use virtio_queue::Queue;
use vm_memory::GuestMemoryMmap;

use super::device::{read_config_bytes, VirtioDevice};
use super::queue::{serve_requests, RingError, Served};
use super::RequestHandler;

/// Virtio device ID of the 9P transport.
pub const VIRTIO_ID_9P: u32 = 9;
/// Feature bit: the config space holds a mount tag.
pub const VIRTIO_9P_MOUNT_TAG: u64 = 1;
/// Feature bit: descriptors may point to an indirect table (one ring slot per request, even
/// for Linux's zero-copy requests of up to 128 pages).
pub const VIRTIO_RING_F_INDIRECT_DESC: u64 = 1 << 28;
/// Size of the request queue the driver may use.
pub const QUEUE_SIZE: u16 = 256;
/// Longest mount tag accepted (Linux takes any u16 length; QEMU caps tags far lower).
pub const MAX_TAG_LEN: usize = 255;

/// A mount tag the guest could not use.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("Mount tag {tag:?} is not usable: use 1 to {MAX_TAG_LEN} bytes without NUL or spaces")]
pub struct BadTag {
    /// The tag.
    pub tag: String,
}

/// virtio-9p: the tag and the 9P server behind the queue.
pub struct P9Device {
    config: Vec<u8>,
    handler: Box<dyn RequestHandler>,
}

impl std::fmt::Debug for P9Device {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("P9Device")
            .field("tag", &String::from_utf8_lossy(&self.config[2..]))
            .finish_non_exhaustive()
    }
}

impl P9Device {
    /// A device the guest mounts as `tag`, served by `handler`.
    pub fn new(tag: &str, handler: Box<dyn RequestHandler>) -> Result<P9Device, BadTag> {
        let bad = tag.is_empty()
            || tag.len() > MAX_TAG_LEN
            || tag
                .bytes()
                .any(|b| b == 0 || b.is_ascii_whitespace() || b == b',');
        if bad {
            return Err(BadTag { tag: tag.into() });
        }
        // Config space: le16 tag length, then the tag (no NUL).
        let mut config = (tag.len() as u16).to_le_bytes().to_vec();
        config.extend_from_slice(tag.as_bytes());
        Ok(P9Device { config, handler })
    }
}

impl VirtioDevice for P9Device {
    fn device_id(&self) -> u32 {
        VIRTIO_ID_9P
    }

    fn features(&self) -> u64 {
        VIRTIO_9P_MOUNT_TAG | VIRTIO_RING_F_INDIRECT_DESC
    }

    fn queue_max_sizes(&self) -> &[u16] {
        &[QUEUE_SIZE]
    }

    fn read_config(&self, offset: u64, data: &mut [u8]) {
        read_config_bytes(&self.config, offset, data);
    }

    fn process_queue(
        &mut self,
        _index: usize,
        queue: &mut Queue,
        mem: &GuestMemoryMmap,
    ) -> Result<Served, RingError> {
        serve_requests(queue, mem, self.handler.as_mut())
    }

    fn reset(&mut self) {
        // The server's session state (fids) ends with the next Tversion, which a driver
        // sends first on every mount (9P: Tversion aborts all I/O and clunks all fids).
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Nop;
    impl RequestHandler for Nop {
        fn handle(&mut self, _: &[u8], _: usize, _: &mut Vec<u8>) {}
    }

    #[test]
    fn test_p9_config_space_is_le16_len_and_tag() {
        let d = P9Device::new("isolvol0", Box::new(Nop)).unwrap();
        let mut buf = [0u8; 12];
        d.read_config(0, &mut buf);
        assert_eq!(&buf, b"\x08\x00isolvol0\0\0");
        let mut two = [0u8; 2];
        d.read_config(0, &mut two);
        assert_eq!(u16::from_le_bytes(two), 8);
        assert_eq!(d.device_id(), 9);
        assert_eq!(d.features() & VIRTIO_9P_MOUNT_TAG, 1);
        assert_eq!(d.queue_max_sizes(), &[QUEUE_SIZE]);
    }

    #[test]
    fn test_p9_bad_tags_refused() {
        let long = "x".repeat(MAX_TAG_LEN + 1);
        for tag in ["", "a b", "a\0b", "a,b", long.as_str()] {
            assert!(P9Device::new(tag, Box::new(Nop)).is_err(), "{tag:?}");
        }
        assert!(P9Device::new(&"x".repeat(MAX_TAG_LEN), Box::new(Nop)).is_ok());
    }
}
