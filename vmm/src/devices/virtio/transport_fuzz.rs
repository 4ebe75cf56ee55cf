//! Fuzzing the virtio-mmio transport and its virtqueue from the guest side: register
//! writes and reads in any order (valid offsets weighted up, any width, values around
//! the interesting ones), driver-like setups with rings anywhere (in memory, at its end,
//! outside it), descriptor tables and avail rings full of random chains (loops, indirect
//! tables, lengths past memory, writable before readable), random guest memory, and
//! notifies. Oracles, at every notify:
//! - no panic;
//! - bounded work: at most one ring's worth of chains handled, the used index moves by
//!   at most the queue size;
//! - every descriptor address and length is checked: the device writes guest memory only
//!   inside the used ring and the buffers that descriptors (direct or indirect) mark
//!   device-writable, and hands the handler requests no bigger than MAX_REQUEST.

use std::sync::atomic::{AtomicU64, Ordering};

use vm_memory::{Bytes, GuestAddress};

use super::*;
use crate::devices::fuzz::{self, Rng};
use crate::devices::virtio::queue::MAX_REQUEST;

const F_INDIRECT: u16 = 4;

/// Chains handed to the handler over the whole run (the fuzzer must reach serving).
static CHAINS: AtomicU64 = AtomicU64::new(0);

/// Register offsets a driver uses, weighted by repetition.
const REGS: &[u64] = &[
    reg::DEVICE_FEATURES_SEL,
    reg::DRIVER_FEATURES,
    reg::DRIVER_FEATURES_SEL,
    reg::QUEUE_SEL,
    reg::QUEUE_NUM,
    reg::QUEUE_READY,
    reg::QUEUE_NOTIFY,
    reg::INTERRUPT_ACK,
    reg::STATUS,
    reg::STATUS,
    reg::QUEUE_DESC_LOW,
    reg::QUEUE_DESC_HIGH,
    reg::QUEUE_DRIVER_LOW,
    reg::QUEUE_DRIVER_HIGH,
    reg::QUEUE_DEVICE_LOW,
    reg::QUEUE_DEVICE_HIGH,
    reg::CONFIG,
    reg::MAGIC_VALUE,
];

/// Places rings may go: valid, misaligned, at the end of memory, outside it.
fn ring_addr(rng: &mut Rng) -> u64 {
    match rng.below(8) {
        0..=3 => rng.pick(&[DESC, AVAIL, USED, 0x4000, 0x5000, 0x8000]),
        4 => MEM_SIZE - rng.below(0x200),
        5 => rng.below(MEM_SIZE) & !0xf,
        6 => MEM_SIZE + rng.below(0x10000),
        _ => rng.next(),
    }
}

fn buf_addr(rng: &mut Rng) -> u64 {
    match rng.below(8) {
        0..=4 => 0x10000 + rng.below(0x20000),
        5 => MEM_SIZE - rng.below(0x100),
        6 => rng.next(),
        _ => rng.below(MEM_SIZE),
    }
}

fn buf_len(rng: &mut Rng) -> u32 {
    match rng.below(8) {
        0..=4 => rng.below(0x400) as u32,
        5 => rng.u32_near(&[0x1000, MEM_SIZE, MAX_REQUEST as u64]),
        6 => u32::MAX - rng.below(16) as u32,
        _ => rng.next() as u32,
    }
}

struct Case {
    t: T,
    served_before: usize,
}

impl Case {
    fn size(&self) -> u16 {
        self.t.q().size
    }

    fn write_reg(&mut self, rng: &mut Rng) {
        let off = if rng.one_in(10) {
            rng.below(0x140)
        } else {
            rng.pick(REGS)
        };
        let v = match off {
            reg::QUEUE_NUM => rng.u32_near(&[u64::from(QSIZE), 1, 8, 0x8000]),
            reg::STATUS => rng.pick(&[0, 1, 3, 0xb, 0xf, 0x4f, 0x8b, 7]),
            reg::DRIVER_FEATURES => rng.u32_near(&[1, 0x21]),
            reg::QUEUE_DESC_LOW | reg::QUEUE_DRIVER_LOW | reg::QUEUE_DEVICE_LOW => {
                ring_addr(rng) as u32
            }
            _ => rng.u32_near(&[0, 1, 2]),
        };
        if off == reg::QUEUE_NOTIFY {
            return self.notify(v);
        }
        if rng.one_in(12) {
            let w = rng.pick(&[1usize, 2, 3, 8]);
            let data = vec![v as u8; w];
            self.t.t.write(off, &data);
        } else {
            self.t.w(off, v);
        }
    }

    fn read_reg(&mut self, rng: &mut Rng) {
        let off = if rng.one_in(4) {
            rng.below(0x200)
        } else {
            rng.pick(REGS)
        };
        let mut data = vec![0u8; rng.pick(&[1usize, 2, 4, 4, 8])];
        self.t.t.read(off, &mut data);
    }

    /// A driver's whole setup, with rings from [`ring_addr`] and a random queue size.
    fn setup(&mut self, rng: &mut Rng) {
        self.t.w(reg::STATUS, 0);
        self.t.negotiate(VIRTIO_F_VERSION_1 | 1);
        self.t.w(reg::QUEUE_SEL, 0);
        let size = rng.pick(&[u32::from(QSIZE), 1, 2, 4, 8, 3, 32]);
        self.t.w(reg::QUEUE_NUM, size);
        let (d, a, u) = if rng.one_in(3) {
            (ring_addr(rng), ring_addr(rng), ring_addr(rng))
        } else {
            (DESC, AVAIL, USED)
        };
        self.t.set_rings(d, a, u);
        self.t.w(reg::QUEUE_READY, 1);
        let s = self.t.r(reg::STATUS);
        self.t.w(reg::STATUS, s | status::DRIVER_OK);
    }

    fn write_desc(&mut self, rng: &mut Rng) {
        let q = self.t.q();
        let table = if rng.one_in(4) { 0x6000 } else { q.desc_table };
        let i = rng.below(u64::from(QSIZE) + 2);
        let mut flags = 0u16;
        for (bit, odds) in [(F_NEXT, 2), (F_WRITE, 2), (F_INDIRECT, 8)] {
            if rng.one_in(odds) {
                flags |= bit;
            }
        }
        if flags & F_INDIRECT != 0 && rng.one_in(2) {
            // An indirect table at 0x6000 with a few entries.
            let mut raw = 0x6000u64.to_le_bytes().to_vec();
            raw.extend_from_slice(&(16 * rng.below(5) as u32).to_le_bytes());
            raw.extend_from_slice(&F_INDIRECT.to_le_bytes());
            raw.extend_from_slice(&0u16.to_le_bytes());
            let _ = self.t.mem.write_slice(&raw, GuestAddress(table + 16 * i));
            return;
        }
        let mut raw = buf_addr(rng).to_le_bytes().to_vec();
        raw.extend_from_slice(&buf_len(rng).to_le_bytes());
        raw.extend_from_slice(&flags.to_le_bytes());
        raw.extend_from_slice(&(rng.below(u64::from(QSIZE) + 2) as u16).to_le_bytes());
        let _ = self.t.mem.write_slice(&raw, GuestAddress(table + 16 * i));
    }

    fn publish(&mut self, rng: &mut Rng) {
        let q = self.t.q();
        let Ok(idx) = self.t.mem.read_obj::<u16>(GuestAddress(q.avail_ring + 2)) else {
            return;
        };
        let n = match rng.below(6) {
            0 => rng.next() as u16,
            _ => rng.below(u64::from(QSIZE) + 3) as u16,
        };
        for k in 0..n.min(64) {
            let slot = q.avail_ring + 4 + 2 * u64::from(idx.wrapping_add(k) % q.size.max(1));
            let head = rng.below(u64::from(QSIZE) + 2) as u16;
            let _ = self.t.mem.write_obj(head, GuestAddress(slot));
        }
        let _ = self
            .t
            .mem
            .write_obj(idx.wrapping_add(n), GuestAddress(q.avail_ring + 2));
    }

    fn scribble(&mut self, rng: &mut Rng) {
        let at = rng.below(MEM_SIZE);
        let bytes: Vec<u8> = (0..rng.below(32)).map(|_| rng.next() as u8).collect();
        let _ = self.t.mem.write_slice(&bytes, GuestAddress(at));
    }

    /// Ranges the device may write at a notify: the used ring and every buffer a
    /// descriptor (in the table or an indirect table it points to) marks writable.
    fn writable(&self) -> Vec<(u64, u64)> {
        let q = self.t.q();
        let size = u64::from(q.size.max(1));
        let mut ok = vec![(q.used_ring, 6 + 8 * size)];
        let mut tables = vec![(q.desc_table, size)];
        let mut seen = 0;
        while let Some((table, n)) = tables.pop() {
            seen += 1;
            if seen > 64 {
                break;
            }
            for i in 0..n.min(256) {
                let mut raw = [0u8; 16];
                if self
                    .t
                    .mem
                    .read_slice(&mut raw, GuestAddress(table + 16 * i))
                    .is_err()
                {
                    continue;
                }
                let addr = u64::from_le_bytes(raw[..8].try_into().unwrap());
                let len = u64::from(u32::from_le_bytes(raw[8..12].try_into().unwrap()));
                let flags = u16::from_le_bytes(raw[12..14].try_into().unwrap());
                if flags & F_INDIRECT != 0 {
                    tables.push((addr, len / 16));
                } else if flags & F_WRITE != 0 {
                    ok.push((addr, len));
                }
            }
        }
        ok
    }

    fn notify(&mut self, v: u32) {
        let before = snapshot(&self.t.mem);
        let allowed = self.writable();
        let used_before = self.t.q().next_used;
        let size = self.size();
        self.t.w(reg::QUEUE_NOTIFY, v);
        let served = self.t.echo.0.lock().unwrap().len();
        let handled = served - self.served_before;
        self.served_before = served;
        CHAINS.fetch_add(handled as u64, Ordering::Relaxed);
        assert!(
            handled <= usize::from(size),
            "{handled} chains in one notify (size {size})"
        );
        for r in self.t.echo.0.lock().unwrap().iter() {
            assert!(r.len() <= MAX_REQUEST);
        }
        let after = snapshot(&self.t.mem);
        let chunks = before.chunks(4096).zip(after.chunks(4096));
        for (c, (a, b)) in chunks.enumerate().filter(|(_, (a, b))| a != b) {
            for (i, _) in a
                .iter()
                .zip(b.iter())
                .enumerate()
                .filter(|(_, (x, y))| x != y)
            {
                let at = (c * 4096 + i) as u64;
                assert!(
                    allowed.iter().any(|&(s, l)| at >= s && at - s < l),
                    "the device wrote {at:#x}, outside the used ring and writable buffers"
                );
            }
        }
        // The device's own used index (the guest may scribble over the ring's copy).
        let moved = self.t.q().next_used.wrapping_sub(used_before);
        assert!(
            moved <= size.max(1),
            "used index moved by {moved} (size {size})"
        );
    }
}

fn snapshot(mem: &GuestMemoryMmap) -> Vec<u8> {
    let mut v = vec![0u8; MEM_SIZE as usize];
    mem.read_slice(&mut v, GuestAddress(0)).unwrap();
    v
}

fn one_case(seed: u64) {
    let mut rng = Rng::new(seed);
    let mut case = Case {
        t: T::new(),
        served_before: 0,
    };
    if !rng.one_in(8) {
        case.setup(&mut rng);
    }
    let steps = 1 + rng.below(60);
    for _ in 0..steps {
        match rng.below(16) {
            0..=2 => case.write_reg(&mut rng),
            3 => case.read_reg(&mut rng),
            4 => case.setup(&mut rng),
            5..=8 => case.write_desc(&mut rng),
            9 | 10 => case.publish(&mut rng),
            11 => case.scribble(&mut rng),
            _ => case.notify(rng.pick(&[0, 0, 0, 1, u32::MAX])),
        }
    }
    // Whatever happened, the transport still answers and resets.
    assert_eq!(case.t.r(reg::MAGIC_VALUE), MAGIC_VALUE);
    case.t.w(reg::STATUS, 0);
    assert_eq!(case.t.r(reg::STATUS), 0);
    let _ = case.t.irqs.0.load(Ordering::SeqCst);
}

#[test]
fn fuzz_virtio_transport_registers_rings_and_memory() {
    let report = fuzz::run("virtio-mmio", one_case);
    let chains = CHAINS.load(Ordering::Relaxed);
    eprintln!("fuzz virtio-mmio: {chains} chains served");
    assert!(report.cases > 0);
    assert!(chains > 0, "no case got as far as serving a chain");
}
