//! A guest flooding a queue: one notify does bounded work, and the worker still lets
//! register reads, a reset and its own stop through.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use super::*;
use crate::devices::log::testing::VecSink;
use crate::devices::virtio::queue::{serve_requests, RingError, Served};
use crate::devices::virtio::RequestHandler;

/// Republishes chain 0 every time it is served: the driver side of a flood, running
/// "concurrently" (inside the device's pass, the worst case). Counts requests.
#[derive(Clone)]
struct Republish {
    mem: GuestMemoryMmap,
    served: Arc<AtomicU32>,
    stop: Arc<AtomicBool>,
}

impl RequestHandler for Republish {
    fn handle(&mut self, _request: &[u8], _cap: usize, reply: &mut Vec<u8>) {
        self.served.fetch_add(1, Ordering::SeqCst);
        reply.push(1);
        if self.stop.load(Ordering::SeqCst) {
            return;
        }
        let idx: u16 = self.mem.read_obj(GuestAddress(AVAIL + 2)).unwrap();
        let slot = AVAIL + 4 + 2 * u64::from(idx % QSIZE);
        self.mem.write_obj(0u16, GuestAddress(slot)).unwrap();
        self.mem
            .write_obj(idx.wrapping_add(1), GuestAddress(AVAIL + 2))
            .unwrap();
    }
}

struct FloodDevice(Republish);

impl VirtioDevice for FloodDevice {
    fn device_id(&self) -> u32 {
        42
    }
    fn features(&self) -> u64 {
        1
    }
    fn queue_max_sizes(&self) -> &[u16] {
        &[QSIZE]
    }
    fn read_config(&self, _: u64, data: &mut [u8]) {
        data.fill(0);
    }
    fn process_queue(
        &mut self,
        _: usize,
        q: &mut Queue,
        mem: &GuestMemoryMmap,
    ) -> Result<Served, RingError> {
        serve_requests(q, mem, &mut self.0)
    }
    fn reset(&mut self) {}
}

/// A live transport whose only device floods itself, and its handler's counters.
fn flooded() -> (T, Republish) {
    let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), MEM_SIZE as usize)]).unwrap();
    let handler = Republish {
        mem: mem.clone(),
        served: Arc::new(AtomicU32::new(0)),
        stop: Arc::new(AtomicBool::new(false)),
    };
    let irqs = Count::default();
    let log = VecSink::default();
    let transport = MmioTransport::new(
        Box::new(FloodDevice(handler.clone())),
        mem.clone(),
        Box::new(irqs.clone()),
        DebugLog::new(Box::new(log.clone())),
    )
    .unwrap();
    let mut t = T {
        t: transport,
        mem,
        irqs,
        echo: Echo::default(),
        resets: Arc::new(AtomicU32::new(0)),
        log,
    };
    t.negotiate(VIRTIO_F_VERSION_1 | 1);
    t.w(reg::QUEUE_SEL, 0);
    t.w(reg::QUEUE_NUM, u32::from(QSIZE));
    t.set_rings(DESC, AVAIL, USED);
    t.w(reg::QUEUE_READY, 1);
    let s = t.r(reg::STATUS);
    t.w(reg::STATUS, s | status::DRIVER_OK);
    t.desc(0, 0x8000, 1, F_NEXT, 1);
    t.desc(1, 0xa000, 1, F_WRITE, 0);
    (t, handler)
}

#[test]
fn test_flooded_queue_one_notify_serves_at_most_one_ring() {
    let (mut t, h) = flooded();
    t.kick(0); // on this (vCPU) thread: must return
    assert_eq!(h.served.load(Ordering::SeqCst), u32::from(QSIZE));
    assert_eq!(t.used_idx(), QSIZE);
    // The next notify serves the next ring's worth, no more.
    t.w(reg::QUEUE_NOTIFY, 0);
    assert_eq!(h.served.load(Ordering::SeqCst), 2 * u32::from(QSIZE));
}

#[test]
fn test_flooded_queue_worker_yields_to_registers_reset_and_stop() {
    let (mut t, h) = flooded();
    let notify = EventFd::new(libc::EFD_NONBLOCK).unwrap();
    let worker =
        t.t.spawn_worker(
            notify.try_clone().unwrap(),
            "test-flood",
            crate::seccomp::VmmSeccomp::Off,
        )
        .unwrap();
    t.mem.write_obj(0u16, GuestAddress(AVAIL + 4)).unwrap();
    t.mem.write_obj(1u16, GuestAddress(AVAIL + 2)).unwrap();
    notify.write(1).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    // The flood goes on by itself (the worker re-arms): many passes.
    while h.served.load(Ordering::SeqCst) < 10 * u32::from(QSIZE) {
        assert!(Instant::now() < deadline, "the worker stopped serving");
        std::thread::sleep(Duration::from_millis(1));
    }
    // Registers that take the queue lock still answer, and a reset gets through.
    assert_eq!(t.r(reg::QUEUE_NUM_MAX), u32::from(QSIZE));
    t.w(reg::STATUS, 0);
    assert_eq!(t.r(reg::STATUS), 0);
    let after_reset = h.served.load(Ordering::SeqCst);
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(h.served.load(Ordering::SeqCst), after_reset);
    h.stop.store(true, Ordering::SeqCst);
    drop(worker); // joins: a worker that never yields would hang here
}
