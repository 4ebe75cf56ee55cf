//! Tests of the virtio-mmio transport, driven through its registers as a guest driver
//! would, with the rings written by hand into a test `GuestMemoryMmap`.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use super::*;
use crate::devices::log::testing::VecSink;
use crate::devices::virtio::p9_device::{P9Device, VIRTIO_9P_MOUNT_TAG};
use crate::devices::virtio::queue::{serve_requests, RingError, Served};
use crate::devices::virtio::RequestHandler;

const MEM_SIZE: u64 = 0x10_0000;
const DESC: u64 = 0x1000;
const AVAIL: u64 = 0x2000;
const USED: u64 = 0x3000;
const QSIZE: u16 = 16;
const F_NEXT: u16 = 1;
const F_WRITE: u16 = 2;

/// Reverses the request; records what it saw.
#[derive(Clone, Default)]
struct Echo(Arc<Mutex<Vec<Vec<u8>>>>);
impl RequestHandler for Echo {
    fn handle(&mut self, request: &[u8], _cap: usize, reply: &mut Vec<u8>) {
        self.0.lock().unwrap().push(request.to_vec());
        reply.extend(request.iter().rev());
    }
}

/// A device with one queue of `QSIZE` served by `Echo`; counts resets.
struct Fake {
    echo: Echo,
    resets: Arc<AtomicU32>,
}
impl VirtioDevice for Fake {
    fn device_id(&self) -> u32 {
        42
    }
    fn features(&self) -> u64 {
        1 | 1 << 5
    }
    fn queue_max_sizes(&self) -> &[u16] {
        &[QSIZE]
    }
    fn read_config(&self, offset: u64, data: &mut [u8]) {
        data.fill(offset as u8);
    }
    fn process_queue(
        &mut self,
        _: usize,
        q: &mut Queue,
        mem: &GuestMemoryMmap,
    ) -> Result<Served, RingError> {
        serve_requests(q, mem, &mut self.echo)
    }
    fn reset(&mut self) {
        self.resets.fetch_add(1, Ordering::SeqCst);
    }
}

#[derive(Clone, Default)]
struct Count(Arc<AtomicU32>);
impl Trigger for Count {
    type E = std::io::Error;
    fn trigger(&self) -> std::io::Result<()> {
        self.0.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}

struct T {
    t: MmioTransport,
    mem: GuestMemoryMmap,
    irqs: Count,
    echo: Echo,
    resets: Arc<AtomicU32>,
    log: VecSink,
}

impl T {
    fn with(device: Option<Box<dyn VirtioDevice>>) -> T {
        let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), MEM_SIZE as usize)]).unwrap();
        let echo = Echo::default();
        let resets = Arc::new(AtomicU32::new(0));
        let device = device.unwrap_or_else(|| {
            Box::new(Fake {
                echo: echo.clone(),
                resets: resets.clone(),
            })
        });
        let irqs = Count::default();
        let log = VecSink::default();
        let t = MmioTransport::new(
            device,
            mem.clone(),
            Box::new(irqs.clone()),
            DebugLog::new(Box::new(log.clone())),
        )
        .unwrap();
        T {
            t,
            mem,
            irqs,
            echo,
            resets,
            log,
        }
    }

    fn new() -> T {
        T::with(None)
    }

    fn r(&mut self, off: u64) -> u32 {
        let mut d = [0u8; 4];
        self.t.read(off, &mut d);
        u32::from_le_bytes(d)
    }

    fn w(&mut self, off: u64, v: u32) {
        self.t.write(off, &v.to_le_bytes());
    }

    /// ACKNOWLEDGE, DRIVER, accept `features`, FEATURES_OK; returns the status read back.
    fn negotiate(&mut self, features: u64) -> u32 {
        self.w(reg::STATUS, status::ACKNOWLEDGE);
        self.w(reg::STATUS, status::ACKNOWLEDGE | status::DRIVER);
        self.w(reg::DRIVER_FEATURES_SEL, 0);
        self.w(reg::DRIVER_FEATURES, features as u32);
        self.w(reg::DRIVER_FEATURES_SEL, 1);
        self.w(reg::DRIVER_FEATURES, (features >> 32) as u32);
        let s = status::ACKNOWLEDGE | status::DRIVER | status::FEATURES_OK;
        self.w(reg::STATUS, s);
        self.r(reg::STATUS)
    }

    fn set_rings(&mut self, desc: u64, avail: u64, used: u64) {
        for (lo, v) in [
            (reg::QUEUE_DESC_LOW, desc),
            (reg::QUEUE_DRIVER_LOW, avail),
            (reg::QUEUE_DEVICE_LOW, used),
        ] {
            self.w(lo, v as u32);
            self.w(lo + 4, (v >> 32) as u32);
        }
    }

    /// Negotiates, sets up queue 0 with `QSIZE` entries, DRIVER_OK.
    fn live() -> T {
        let mut t = T::new();
        t.negotiate(VIRTIO_F_VERSION_1 | 1);
        t.w(reg::QUEUE_SEL, 0);
        t.w(reg::QUEUE_NUM, u32::from(QSIZE));
        t.set_rings(DESC, AVAIL, USED);
        t.w(reg::QUEUE_READY, 1);
        assert_eq!(t.r(reg::QUEUE_READY), 1, "{}", t.log.text());
        let s = t.r(reg::STATUS);
        t.w(reg::STATUS, s | status::DRIVER_OK);
        t
    }

    fn desc(&self, i: u16, addr: u64, len: u32, flags: u16, next: u16) {
        let at = GuestAddress(DESC + 16 * u64::from(i));
        let mut raw = addr.to_le_bytes().to_vec();
        raw.extend_from_slice(&len.to_le_bytes());
        raw.extend_from_slice(&flags.to_le_bytes());
        raw.extend_from_slice(&next.to_le_bytes());
        self.mem.write_slice(&raw, at).unwrap();
    }

    /// Makes `head` available and notifies queue 0.
    fn kick(&mut self, head: u16) {
        let idx: u16 = self.mem.read_obj(GuestAddress(AVAIL + 2)).unwrap();
        let slot = AVAIL + 4 + 2 * u64::from(idx % QSIZE);
        self.mem.write_obj(head, GuestAddress(slot)).unwrap();
        self.mem
            .write_obj(idx.wrapping_add(1), GuestAddress(AVAIL + 2))
            .unwrap();
        self.w(reg::QUEUE_NOTIFY, 0);
    }

    fn used_idx(&self) -> u16 {
        self.mem.read_obj(GuestAddress(USED + 2)).unwrap()
    }

    /// The used element `n`: (id, len).
    fn used(&self, n: u16) -> (u32, u32) {
        let at = USED + 4 + 8 * u64::from(n % QSIZE);
        let id = self.mem.read_obj(GuestAddress(at)).unwrap();
        let len = self.mem.read_obj(GuestAddress(at + 4)).unwrap();
        (id, len)
    }

    fn q(&self) -> virtio_queue::QueueState {
        self.t.core.lock().queues[0].state()
    }

    fn irq_count(&self) -> u32 {
        self.irqs.0.load(Ordering::SeqCst)
    }
}

#[test]
fn test_identity_registers() {
    let mut t = T::new();
    assert_eq!(t.r(reg::MAGIC_VALUE), 0x7472_6976);
    assert_eq!(t.r(reg::VERSION), 2);
    assert_eq!(t.r(reg::DEVICE_ID), 42);
    assert_eq!(t.r(reg::VENDOR_ID), VENDOR_ID);
    t.w(reg::DEVICE_FEATURES_SEL, 0);
    assert_eq!(t.r(reg::DEVICE_FEATURES), 0x21);
    t.w(reg::DEVICE_FEATURES_SEL, 1);
    assert_eq!(t.r(reg::DEVICE_FEATURES), 1, "VERSION_1 is bit 32");
    t.w(reg::DEVICE_FEATURES_SEL, 2);
    assert_eq!(t.r(reg::DEVICE_FEATURES), 0);
    assert_eq!(t.r(reg::QUEUE_NUM_MAX), u32::from(QSIZE));
    assert_eq!(t.r(reg::QUEUE_READY), 0);
    assert_eq!(t.r(reg::STATUS), 0);
    assert_eq!(t.r(reg::CONFIG_GENERATION), 0);
    assert_eq!(t.r(reg::SHM_LEN_LOW), u32::MAX, "no shared memory regions");
    // Narrow or misaligned register reads give zeros, never panic.
    let mut b = [0xaau8; 2];
    t.t.read(reg::MAGIC_VALUE, &mut b);
    assert_eq!(b, [0, 0]);
    assert_eq!(t.r(reg::MAGIC_VALUE + 1), 0);
    // Config space: any width, at 0x100.
    let mut c = [0u8; 3];
    t.t.read(reg::CONFIG + 5, &mut c);
    assert_eq!(c, [5, 5, 5]);
}

#[test]
fn test_feature_negotiation_accepts_only_offered_with_version_1() {
    let mut t = T::new();
    let ok = status::ACKNOWLEDGE | status::DRIVER | status::FEATURES_OK;
    assert_eq!(t.negotiate(VIRTIO_F_VERSION_1 | 1 << 5), ok);

    let mut t = T::new();
    let s = t.negotiate(VIRTIO_F_VERSION_1 | 1 << 6);
    assert_eq!(s & status::FEATURES_OK, 0, "bit 6 was never offered");
    assert!(t.log.text().contains("FEATURES_OK refused"));

    let mut t = T::new();
    assert_eq!(
        t.negotiate(1) & status::FEATURES_OK,
        0,
        "legacy driver refused"
    );

    // Features written before DRIVER, or after FEATURES_OK, are ignored.
    let mut t = T::new();
    t.w(reg::DRIVER_FEATURES, 0xffff_ffff);
    assert_eq!(t.negotiate(VIRTIO_F_VERSION_1), ok);
    t.w(reg::DRIVER_FEATURES_SEL, 0);
    t.w(reg::DRIVER_FEATURES, 0xffff_ffff);
    assert_eq!(t.t.driver_features, VIRTIO_F_VERSION_1);
}

#[test]
fn test_status_bits_cannot_be_cleared_or_skip_features_ok() {
    let mut t = T::new();
    t.w(reg::STATUS, status::ACKNOWLEDGE | status::DRIVER);
    t.w(
        reg::STATUS,
        status::ACKNOWLEDGE | status::DRIVER | status::DRIVER_OK,
    );
    assert_eq!(t.r(reg::STATUS), status::ACKNOWLEDGE | status::DRIVER);
    t.w(reg::STATUS, status::ACKNOWLEDGE);
    assert_eq!(t.r(reg::STATUS), status::ACKNOWLEDGE | status::DRIVER);
    t.w(
        reg::STATUS,
        status::DEVICE_NEEDS_RESET | status::ACKNOWLEDGE | status::DRIVER,
    );
    assert_eq!(t.r(reg::STATUS) & status::DEVICE_NEEDS_RESET, 0);
}

#[test]
fn test_queue_setup_bad_values_refused() {
    let mut t = T::new();
    // Before FEATURES_OK, queue registers are ignored.
    t.w(reg::QUEUE_NUM, 4);
    assert_eq!(t.q().size, QSIZE);
    t.negotiate(VIRTIO_F_VERSION_1);
    for bad in [0, 3, 12, u32::from(QSIZE) * 2, 0x1_0004] {
        t.w(reg::QUEUE_NUM, bad);
        assert_eq!(t.q().size, QSIZE, "size {bad:#x}");
    }
    t.w(reg::QUEUE_NUM, 8);
    assert_eq!(t.q().size, 8);
    // Misaligned rings are refused.
    t.set_rings(DESC + 8, AVAIL + 1, USED + 2);
    assert_eq!(t.q().desc_table, 0);
    assert_eq!(t.q().avail_ring, 0);
    assert_eq!(t.q().used_ring, 0);
    // Rings outside guest memory: the queue does not become ready.
    t.set_rings(DESC, AVAIL, MEM_SIZE - 8);
    t.w(reg::QUEUE_READY, 1);
    assert_eq!(t.r(reg::QUEUE_READY), 0);
    t.set_rings(0x1_0000_0000 + DESC, AVAIL, USED);
    t.w(reg::QUEUE_READY, 1);
    assert_eq!(t.r(reg::QUEUE_READY), 0);
    t.set_rings(DESC, AVAIL, USED);
    t.w(reg::QUEUE_READY, 2);
    assert_eq!(t.r(reg::QUEUE_READY), 0, "only 1 makes a queue ready");
    t.w(reg::QUEUE_READY, 1);
    assert_eq!(t.r(reg::QUEUE_READY), 1);
    // A ready queue cannot be changed.
    t.w(reg::QUEUE_NUM, 4);
    t.w(reg::QUEUE_DESC_LOW, 0x5000);
    assert_eq!((t.q().size, t.q().desc_table), (8, DESC));
    // No queue 1: reads as absent, writes ignored.
    t.w(reg::QUEUE_SEL, 1);
    assert_eq!(t.r(reg::QUEUE_NUM_MAX), 0);
    t.w(reg::QUEUE_NUM, 4);
    t.w(reg::QUEUE_READY, 1);
    assert_eq!(t.r(reg::QUEUE_READY), 0);
}

#[test]
fn test_notify_gathers_request_and_scatters_reply() {
    let mut t = T::live();
    t.mem.write_slice(b"hello ", GuestAddress(0x8000)).unwrap();
    t.mem.write_slice(b"world", GuestAddress(0x9000)).unwrap();
    // Two readable buffers, then three writable ones of 4, 3 and 100 bytes.
    t.desc(3, 0x8000, 6, F_NEXT, 7);
    t.desc(7, 0x9000, 5, F_NEXT, 1);
    t.desc(1, 0xa000, 4, F_WRITE | F_NEXT, 2);
    t.desc(2, 0xb000, 3, F_WRITE | F_NEXT, 4);
    t.desc(4, 0xc000, 100, F_WRITE, 0);
    t.kick(3);
    assert_eq!(
        t.echo.0.lock().unwrap().as_slice(),
        [b"hello world".to_vec()]
    );
    assert_eq!(t.used_idx(), 1);
    assert_eq!(t.used(0), (3, 11));
    let mut got = [0u8; 11];
    t.mem
        .read_slice(&mut got[..4], GuestAddress(0xa000))
        .unwrap();
    t.mem
        .read_slice(&mut got[4..7], GuestAddress(0xb000))
        .unwrap();
    t.mem
        .read_slice(&mut got[7..], GuestAddress(0xc000))
        .unwrap();
    assert_eq!(&got, b"dlrow olleh");
    assert_eq!(t.r(reg::INTERRUPT_STATUS), INT_USED_RING);
    assert_eq!(t.irq_count(), 1);
    t.w(reg::INTERRUPT_ACK, INT_USED_RING);
    assert_eq!(t.r(reg::INTERRUPT_STATUS), 0);
    // Two chains made available before one notify are both served.
    t.desc(5, 0x8000, 1, F_NEXT, 6);
    t.desc(6, 0xa000, 1, F_WRITE, 0);
    t.desc(8, 0x9000, 0, 0, 0);
    let idx: u16 = t.mem.read_obj(GuestAddress(AVAIL + 2)).unwrap();
    t.mem.write_obj(5u16, GuestAddress(AVAIL + 4 + 2)).unwrap();
    t.mem.write_obj(idx + 1, GuestAddress(AVAIL + 2)).unwrap();
    t.kick(8);
    assert_eq!(t.used_idx(), 3);
    assert_eq!((t.used(1), t.used(2)), ((5, 1), (8, 0)));
    assert_eq!(t.irq_count(), 2);
}

#[test]
fn test_malformed_chains_used_with_zero_length_not_panicking() {
    let mut t = T::live();
    // Readable buffer outside guest memory.
    t.desc(0, MEM_SIZE - 4, 8, F_NEXT, 1);
    t.desc(1, 0xa000, 16, F_WRITE, 0);
    t.kick(0);
    // A loop: 2 -> 3 -> 2.
    t.desc(2, 0x8000, 4, F_NEXT, 3);
    t.desc(3, 0x8000, 4, F_NEXT, 2);
    t.kick(2);
    // Next index past the table.
    t.desc(4, 0x8000, 4, F_NEXT, 200);
    t.kick(4);
    // Readable after writable.
    t.desc(5, 0xa000, 4, F_WRITE | F_NEXT, 6);
    t.desc(6, 0x8000, 4, 0, 0);
    t.kick(5);
    // Writable buffer wrapping the address space.
    t.desc(9, 0x8000, 4, F_NEXT, 10);
    t.desc(10, u64::MAX - 2, 16, F_WRITE, 0);
    t.kick(9);
    // Reply larger than the writable room.
    t.desc(11, 0x8000, 8, F_NEXT, 12);
    t.desc(12, 0xa000, 4, F_WRITE, 0);
    t.kick(11);
    assert_eq!(t.used_idx(), 6);
    for (n, head) in [0u32, 2, 4, 5, 9, 11].iter().enumerate() {
        assert_eq!(t.used(n as u16), (*head, 0), "chain {head}");
    }
    // Only the chain whose reply did not fit reached the handler.
    assert_eq!(t.echo.0.lock().unwrap().len(), 1);
    let log = t.log.text();
    for what in [
        "outside guest memory",
        "loops",
        "readable buffer after",
        "does not fit",
    ] {
        assert!(log.contains(what), "{what}: {log}");
    }
    assert_eq!(t.r(reg::STATUS) & status::DEVICE_NEEDS_RESET, 0);
    // The device still serves good chains.
    t.desc(13, 0x8000, 2, F_NEXT, 14);
    t.desc(14, 0xa000, 2, F_WRITE, 0);
    t.kick(13);
    assert_eq!(t.used(6), (13, 2));
}

#[test]
fn test_broken_ring_sets_needs_reset() {
    let mut t = T::live();
    t.kick(QSIZE + 3); // head index past the table
    assert_ne!(t.r(reg::STATUS) & status::DEVICE_NEEDS_RESET, 0);
    assert_ne!(t.r(reg::INTERRUPT_STATUS) & INT_CONFIG, 0);
    assert_eq!(t.irq_count(), 1);
    // Avail index jumping past the queue size: refused, nothing served.
    let mut t = T::live();
    t.mem.write_obj(QSIZE + 1, GuestAddress(AVAIL + 2)).unwrap();
    t.w(reg::QUEUE_NOTIFY, 0);
    assert_ne!(t.r(reg::STATUS) & status::DEVICE_NEEDS_RESET, 0);
    assert_eq!(t.used_idx(), 0);
    // Notifies are ignored until a reset.
    t.w(reg::QUEUE_NOTIFY, 0);
    assert_eq!(t.echo.0.lock().unwrap().len(), 0);
}

#[test]
fn test_notify_ignored_before_driver_ok_or_for_missing_queue() {
    let mut t = T::new();
    t.negotiate(VIRTIO_F_VERSION_1);
    t.w(reg::QUEUE_NOTIFY, 0);
    let mut t = T::live();
    t.w(reg::QUEUE_NOTIFY, 1);
    t.w(reg::QUEUE_NOTIFY, u32::MAX);
    assert_eq!(t.used_idx(), 0);
    assert_eq!(t.irq_count(), 0);
}

#[test]
fn test_reset_returns_to_initial_state() {
    let mut t = T::live();
    t.desc(0, 0x8000, 2, F_NEXT, 1);
    t.desc(1, 0xa000, 2, F_WRITE, 0);
    t.kick(0);
    t.w(reg::QUEUE_SEL, 1);
    t.w(reg::DEVICE_FEATURES_SEL, 1);
    t.w(reg::STATUS, 0);
    assert_eq!(t.resets.load(Ordering::SeqCst), 1);
    assert_eq!(t.r(reg::STATUS), 0);
    assert_eq!(t.r(reg::INTERRUPT_STATUS), 0);
    assert_eq!(t.r(reg::DEVICE_FEATURES), 0x21, "feature select back to 0");
    assert_eq!(
        t.r(reg::QUEUE_READY),
        0,
        "queue select back to 0, not ready"
    );
    assert_eq!(t.r(reg::QUEUE_NUM_MAX), u32::from(QSIZE));
    let q = t.q();
    assert_eq!((q.size, q.next_avail, q.next_used), (QSIZE, 0, 0));
    assert_eq!(t.t.driver_features, 0);
    // The driver can start again from scratch, with fresh rings.
    t.mem.write_obj(0u16, GuestAddress(AVAIL + 2)).unwrap();
    t.mem.write_obj(0u16, GuestAddress(USED + 2)).unwrap();
    t.negotiate(VIRTIO_F_VERSION_1);
    t.w(reg::QUEUE_NUM, u32::from(QSIZE));
    t.set_rings(DESC, AVAIL, USED);
    t.w(reg::QUEUE_READY, 1);
    let s = t.r(reg::STATUS);
    t.w(reg::STATUS, s | status::DRIVER_OK);
    t.kick(0);
    assert_eq!((t.used_idx(), t.used(0)), (1, (0, 2)));
}

#[test]
fn test_p9_device_through_the_transport() {
    let echo = Echo::default();
    let dev = P9Device::new("vol0", Box::new(echo.clone())).unwrap();
    let mut t = T::with(Some(Box::new(dev)));
    assert_eq!(t.r(reg::DEVICE_ID), 9);
    assert_eq!(t.r(reg::DEVICE_FEATURES) & 1, 1);
    assert_eq!(t.r(reg::QUEUE_NUM_MAX), 256);
    let mut c = [0u8; 6];
    t.t.read(reg::CONFIG, &mut c);
    assert_eq!(&c, b"\x04\x00vol0");
    let s = t.negotiate(VIRTIO_F_VERSION_1 | VIRTIO_9P_MOUNT_TAG);
    assert_ne!(s & status::FEATURES_OK, 0);
    t.w(reg::QUEUE_NUM, u32::from(QSIZE));
    t.set_rings(DESC, AVAIL, USED);
    t.w(reg::QUEUE_READY, 1);
    t.w(reg::STATUS, s | status::DRIVER_OK);
    t.mem
        .write_slice(b"Tversion", GuestAddress(0x8000))
        .unwrap();
    t.desc(0, 0x8000, 8, F_NEXT, 1);
    t.desc(1, 0xa000, 64, F_WRITE, 0);
    t.kick(0);
    assert_eq!(t.used(0), (0, 8));
    assert_eq!(echo.0.lock().unwrap().as_slice(), [b"Tversion".to_vec()]);
}

#[test]
fn test_worker_serves_on_notify_event_and_stops_when_dropped() {
    let mut t = T::live();
    let notify = EventFd::new(libc::EFD_NONBLOCK).unwrap();
    let worker =
        t.t.spawn_worker(notify.try_clone().unwrap(), "test-virtio", VmmSeccomp::Off)
            .unwrap();
    t.desc(0, 0x8000, 3, F_NEXT, 1);
    t.desc(1, 0xa000, 3, F_WRITE, 0);
    t.mem.write_obj(0u16, GuestAddress(AVAIL + 4)).unwrap();
    t.mem.write_obj(1u16, GuestAddress(AVAIL + 2)).unwrap();
    // What KVM does with an ioeventfd on QueueNotify: no register write reaches us.
    notify.write(1).unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while t.irq_count() == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the worker never served"
        );
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    assert_eq!((t.used_idx(), t.used(0)), (1, (0, 3)));
    assert_eq!(t.r(reg::INTERRUPT_STATUS), INT_USED_RING);
    // A reset stops serving: a later notify does nothing.
    t.w(reg::STATUS, 0);
    t.mem.write_obj(2u16, GuestAddress(AVAIL + 2)).unwrap();
    notify.write(1).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(50));
    assert_eq!(t.irq_count(), 1);
    drop(worker); // joins: a hang here fails the test by timeout
}

#[path = "transport_flood_tests.rs"]
mod flood;

#[path = "transport_fuzz.rs"]
mod fuzz;
