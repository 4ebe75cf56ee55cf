//! The virtio-mmio transport, version 2 (virtio 1.2, section 4.2.2): the register window a
//! guest driver uses to discover a [`VirtioDevice`], negotiate features, set up its queues
//! and notify them.
//!
//! Every guest write is checked: features outside the offer are refused (FEATURES_OK is
//! not set), queue registers change only while the queue is not ready and before
//! DRIVER_OK, a queue becomes ready only with a power-of-two size within the maximum and
//! rings inside guest memory, and out-of-state writes are ignored and logged.
//!
//! Queues are served by [`Core::serve`]: on the thread of a [`VirtioWorker`] woken by an
//! ioeventfd on QueueNotify (the machine's way: the guest's kick returns at once, and
//! Linux's 9P client kicks with its channel spinlock held and interrupts off), or, without
//! a worker, on the vCPU thread that writes QueueNotify. The registers and the queues have
//! separate locks, so a vCPU reading InterruptStatus never waits for a request being
//! served. A broken ring sets DEVICE_NEEDS_RESET and raises a configuration interrupt.

use std::sync::atomic::Ordering::SeqCst;
use std::sync::Arc;

use virtio_queue::{Queue, QueueT};
use vm_memory::GuestMemoryMmap;
use vm_superio::Trigger;
use vmm_sys_util::eventfd::EventFd;

use super::device::VirtioDevice;
use super::worker::{Core, VirtioWorker, Work};
use crate::devices::bus::BusDevice;
use crate::devices::DebugLog;
use crate::seccomp::VmmSeccomp;

/// "virt", little endian.
pub const MAGIC_VALUE: u32 = 0x7472_6976;
/// The transport version implemented (virtio 1.x, no legacy).
pub const MMIO_VERSION: u32 = 2;
/// VendorID reported ("ISOL" would do; 0 is what Firecracker and crosvm report).
pub const VENDOR_ID: u32 = 0;
/// Feature bit: virtio 1.x device (no legacy interface).
pub const VIRTIO_F_VERSION_1: u64 = 1 << 32;

/// Register offsets (virtio 1.2, 4.2.2).
pub mod reg {
    #![allow(missing_docs)]
    pub const MAGIC_VALUE: u64 = 0x000;
    pub const VERSION: u64 = 0x004;
    pub const DEVICE_ID: u64 = 0x008;
    pub const VENDOR_ID: u64 = 0x00c;
    pub const DEVICE_FEATURES: u64 = 0x010;
    pub const DEVICE_FEATURES_SEL: u64 = 0x014;
    pub const DRIVER_FEATURES: u64 = 0x020;
    pub const DRIVER_FEATURES_SEL: u64 = 0x024;
    pub const QUEUE_SEL: u64 = 0x030;
    pub const QUEUE_NUM_MAX: u64 = 0x034;
    pub const QUEUE_NUM: u64 = 0x038;
    pub const QUEUE_READY: u64 = 0x044;
    pub const QUEUE_NOTIFY: u64 = 0x050;
    pub const INTERRUPT_STATUS: u64 = 0x060;
    pub const INTERRUPT_ACK: u64 = 0x064;
    pub const STATUS: u64 = 0x070;
    pub const QUEUE_DESC_LOW: u64 = 0x080;
    pub const QUEUE_DESC_HIGH: u64 = 0x084;
    pub const QUEUE_DRIVER_LOW: u64 = 0x090;
    pub const QUEUE_DRIVER_HIGH: u64 = 0x094;
    pub const QUEUE_DEVICE_LOW: u64 = 0x0a0;
    pub const QUEUE_DEVICE_HIGH: u64 = 0x0a4;
    pub const SHM_SEL: u64 = 0x0ac;
    pub const SHM_LEN_LOW: u64 = 0x0b0;
    pub const SHM_BASE_HIGH: u64 = 0x0bc;
    pub const CONFIG_GENERATION: u64 = 0x0fc;
    pub const CONFIG: u64 = 0x100;
}

/// Device status bits (virtio 1.2, 2.1).
pub mod status {
    #![allow(missing_docs)]
    pub const ACKNOWLEDGE: u32 = 1;
    pub const DRIVER: u32 = 2;
    pub const DRIVER_OK: u32 = 4;
    pub const FEATURES_OK: u32 = 8;
    pub const DEVICE_NEEDS_RESET: u32 = 64;
    pub const FAILED: u32 = 128;
}

/// InterruptStatus bit: a queue has used buffers.
pub const INT_USED_RING: u32 = 1;
/// InterruptStatus bit: the configuration (or DEVICE_NEEDS_RESET) changed.
pub const INT_CONFIG: u32 = 2;

/// The interrupt line of a transport (an irqfd in a machine, a counter in tests).
pub type IrqTrigger = Box<dyn Trigger<E = std::io::Error> + Send>;

/// One virtio device behind the MMIO register window: the driver-visible registers here,
/// the device and its queues in the [`Core`] shared with the worker.
pub struct MmioTransport {
    core: Arc<Core>,
    device_id: u32,
    offered: u64,
    num_queues: usize,
    queue_sel: u32,
    device_features_sel: u32,
    driver_features_sel: u32,
    driver_features: u64,
    /// Driver-written bits; DEVICE_NEEDS_RESET lives in the core.
    status: u32,
}

impl std::fmt::Debug for MmioTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MmioTransport")
            .field("device_id", &self.device_id)
            .field("status", &self.status)
            .finish_non_exhaustive()
    }
}

impl MmioTransport {
    /// Wraps `device`; its queues live in `mem`; `irq` raises its interrupt; guest mistakes
    /// go to `log`. Fails only if the device declares an invalid queue maximum size.
    pub fn new(
        device: Box<dyn VirtioDevice>,
        mem: GuestMemoryMmap,
        irq: IrqTrigger,
        log: DebugLog,
    ) -> Result<MmioTransport, virtio_queue::Error> {
        let queues = device
            .queue_max_sizes()
            .iter()
            .map(|&max| Queue::new(max))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(MmioTransport {
            device_id: device.device_id(),
            offered: device.features() | VIRTIO_F_VERSION_1,
            num_queues: queues.len(),
            core: Arc::new(Core::new(
                Work {
                    device,
                    queues,
                    irq,
                },
                mem,
                log,
            )),
            queue_sel: 0,
            device_features_sel: 0,
            driver_features_sel: 0,
            driver_features: 0,
            status: 0,
        })
    }

    /// Starts the thread that serves the queues whenever `notify` (an ioeventfd on
    /// QueueNotify) fires, under its seccomp filter unless `seccomp` is off; the returned
    /// handle stops and joins it when dropped.
    pub fn spawn_worker(
        &self,
        notify: EventFd,
        name: &str,
        seccomp: VmmSeccomp,
    ) -> std::io::Result<VirtioWorker> {
        VirtioWorker::spawn(self.core.clone(), notify, name, seccomp)
    }

    /// Everything the device offers, transport features included.
    fn offered(&self) -> u64 {
        self.offered
    }

    fn log(&self) -> &DebugLog {
        &self.core.log
    }

    fn has(&self, bits: u32) -> bool {
        self.status & bits == bits
    }

    /// Back to the state after [`MmioTransport::new`] (Status written 0); waits for a
    /// request being served to finish.
    fn reset(&mut self) {
        self.core.reset();
        self.queue_sel = 0;
        self.device_features_sel = 0;
        self.driver_features_sel = 0;
        self.driver_features = 0;
        self.status = 0;
    }

    /// Runs `f` on the selected queue (under the queues' lock); `None` if there is none.
    fn with_selected<R>(&self, f: impl FnOnce(&mut Queue) -> R) -> Option<R> {
        let mut work = self.core.lock();
        work.queues.get_mut(self.queue_sel as usize).map(f)
    }

    fn read_reg(&mut self, offset: u64) -> u32 {
        let lo = |v: u64| v as u32;
        match offset {
            reg::MAGIC_VALUE => MAGIC_VALUE,
            reg::VERSION => MMIO_VERSION,
            reg::DEVICE_ID => self.device_id,
            reg::VENDOR_ID => VENDOR_ID,
            reg::DEVICE_FEATURES => match self.device_features_sel {
                0 => lo(self.offered()),
                1 => lo(self.offered() >> 32),
                _ => 0,
            },
            reg::QUEUE_NUM_MAX => self.with_selected(|q| u32::from(q.max_size())).unwrap_or(0),
            reg::QUEUE_READY => self.with_selected(|q| u32::from(q.ready())).unwrap_or(0),
            reg::INTERRUPT_STATUS => self.core.interrupt_status.load(SeqCst),
            reg::STATUS => self.status | self.core.needs_reset_bit(),
            // No shared memory regions: length (and base) all ones.
            reg::SHM_LEN_LOW..=reg::SHM_BASE_HIGH => u32::MAX,
            reg::CONFIG_GENERATION => 0,
            _ => {
                self.log().line(format_args!(
                    "virtio-mmio: read of unknown register {offset:#x}"
                ));
                0
            }
        }
    }

    fn write_reg(&mut self, offset: u64, v: u32) {
        match offset {
            reg::DEVICE_FEATURES_SEL => self.device_features_sel = v,
            reg::DRIVER_FEATURES_SEL => self.driver_features_sel = v,
            reg::DRIVER_FEATURES => self.write_driver_features(v),
            reg::QUEUE_SEL => self.queue_sel = v,
            reg::QUEUE_NUM | reg::QUEUE_READY | reg::QUEUE_DESC_LOW..=reg::QUEUE_DEVICE_HIGH => {
                self.write_queue_reg(offset, v)
            }
            reg::QUEUE_NOTIFY => self.notify(v),
            reg::INTERRUPT_ACK => {
                self.core.interrupt_status.fetch_and(!v, SeqCst);
            }
            reg::STATUS => self.write_status(v),
            reg::SHM_SEL => {}
            _ => self.refuse(offset, v, "read-only or unknown register"),
        }
    }

    fn refuse(&self, offset: u64, v: u32, why: &str) {
        self.log().line(format_args!(
            "virtio-mmio: ignored write {v:#x} to {offset:#x}: {why}"
        ));
    }

    fn write_driver_features(&mut self, v: u32) {
        if !self.has(status::DRIVER) || self.has(status::FEATURES_OK) {
            return self.refuse(reg::DRIVER_FEATURES, v, "not negotiating features");
        }
        let v = u64::from(v);
        match self.driver_features_sel {
            0 => self.driver_features = (self.driver_features & !0xffff_ffff) | v,
            1 => self.driver_features = (self.driver_features & 0xffff_ffff) | (v << 32),
            _ if v == 0 => {}
            _ => self.refuse(reg::DRIVER_FEATURES, v as u32, "no such feature word"),
        }
    }

    fn write_status(&mut self, v: u32) {
        if v == 0 {
            return self.reset();
        }
        // DEVICE_NEEDS_RESET is the device's (kept in the core), whatever the driver writes.
        let old = self.status;
        let mut new = v & !status::DEVICE_NEEDS_RESET;
        // The driver only adds bits (virtio 1.2, 3.1.1).
        if new & old != old {
            return self.refuse(reg::STATUS, v, "status bits cleared without a reset");
        }
        let added = new & !old;
        if added & status::FEATURES_OK != 0 && !self.features_acceptable(new) {
            new &= !status::FEATURES_OK;
        }
        if added & status::DRIVER_OK != 0 && new & status::FEATURES_OK == 0 {
            return self.refuse(reg::STATUS, v, "DRIVER_OK before FEATURES_OK");
        }
        self.status = new;
        if added & status::DRIVER_OK != 0 {
            self.core.set_live(true);
        }
    }

    /// Whether FEATURES_OK can be set: the driver accepted only offered features,
    /// VERSION_1 among them, after DRIVER.
    fn features_acceptable(&self, new: u32) -> bool {
        let unoffered = self.driver_features & !self.offered();
        let ok = new & status::DRIVER != 0
            && unoffered == 0
            && self.driver_features & VIRTIO_F_VERSION_1 != 0;
        if !ok {
            self.log().line(format_args!(
                "virtio-mmio: FEATURES_OK refused (accepted {:#x}, offered {:#x})",
                self.driver_features,
                self.offered()
            ));
        }
        ok
    }

    fn write_queue_reg(&mut self, offset: u64, v: u32) {
        if !self.has(status::FEATURES_OK) || self.has(status::DRIVER_OK) {
            return self.refuse(offset, v, "queue setup outside FEATURES_OK..DRIVER_OK");
        }
        let mem = self.core.mem.clone();
        let outcome = self.with_selected(|q| {
            if q.ready() && !(offset == reg::QUEUE_READY && v == 0) {
                return Err("queue is ready");
            }
            let ok = match offset {
                reg::QUEUE_NUM => u16::try_from(v).is_ok_and(|n| q.try_set_size(n).is_ok()),
                reg::QUEUE_READY if v == 0 => {
                    q.set_ready(false);
                    true
                }
                reg::QUEUE_READY => {
                    q.set_ready(true);
                    let valid = v == 1 && q.is_valid(&mem);
                    q.set_ready(valid);
                    valid
                }
                _ => set_ring_half(q, offset, v),
            };
            ok.then_some(())
                .ok_or("invalid queue size, alignment or ring address")
        });
        match outcome {
            None => self.refuse(offset, v, "no such queue"),
            Some(Err(why)) => self.refuse(offset, v, why),
            Some(Ok(())) => {}
        }
    }

    /// QueueNotify that reached the VMM (no ioeventfd): serve one bounded pass of the
    /// queue on this thread. Chains left over are served on the guest's next notify (a
    /// driver notifies for every buffer it adds, so an honest one has one coming).
    fn notify(&mut self, index: u32) {
        if !self.has(status::DRIVER_OK) || self.core.needs_reset_bit() != 0 {
            return self.refuse(reg::QUEUE_NOTIFY, index, "device not live");
        }
        if index as usize >= self.num_queues {
            return self.refuse(reg::QUEUE_NOTIFY, index, "no such queue");
        }
        let _ = self.core.serve(Some(index as usize));
    }
}

/// Sets one 32-bit half of a ring address; false when misaligned.
fn set_ring_half(q: &mut Queue, offset: u64, v: u32) -> bool {
    let merge = |old: u64| {
        if offset & 4 == 0 {
            (old & !0xffff_ffff) | u64::from(v)
        } else {
            (old & 0xffff_ffff) | (u64::from(v) << 32)
        }
    };
    let addr = |a| vm_memory::GuestAddress(merge(a));
    match offset & !4 {
        reg::QUEUE_DESC_LOW => q.try_set_desc_table_address(addr(q.desc_table())),
        reg::QUEUE_DRIVER_LOW => q.try_set_avail_ring_address(addr(q.avail_ring())),
        reg::QUEUE_DEVICE_LOW => q.try_set_used_ring_address(addr(q.used_ring())),
        _ => return false,
    }
    .is_ok()
}

impl BusDevice for MmioTransport {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        if offset >= reg::CONFIG {
            return self
                .core
                .lock()
                .device
                .read_config(offset - reg::CONFIG, data);
        }
        if data.len() != 4 || offset % 4 != 0 {
            data.fill(0);
            return self.log().line(format_args!(
                "virtio-mmio: {}-byte read at {offset:#x}: registers are 32-bit aligned",
                data.len()
            ));
        }
        data.copy_from_slice(&self.read_reg(offset).to_le_bytes());
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        if offset >= reg::CONFIG {
            return self.log().line(format_args!(
                "virtio-mmio: ignored write to read-only config space at {offset:#x}"
            ));
        }
        let Ok(bytes) = <[u8; 4]>::try_from(data) else {
            return self.log().line(format_args!(
                "virtio-mmio: {}-byte write at {offset:#x}: registers are 32-bit",
                data.len()
            ));
        };
        if offset % 4 != 0 {
            return self.refuse(offset, u32::from_le_bytes(bytes), "misaligned");
        }
        self.write_reg(offset, u32::from_le_bytes(bytes));
    }
}

#[cfg(test)]
#[path = "transport_tests.rs"]
mod tests;
