//! What a virtio device type provides to the MMIO transport, and where each device slot
//! sits in the guest (address, IRQ, kernel command line entry).

use virtio_queue::Queue;
use vm_memory::GuestMemoryMmap;

use super::queue::{RingError, Served};

/// First virtio-mmio window, in the 32-bit MMIO hole (below the IOAPIC at 0xfec0_0000).
pub const VIRTIO_MMIO_BASE: u64 = 0xd000_0000;
/// Size of each device's window (registers at 0, config space at 0x100).
pub const VIRTIO_MMIO_SIZE: u64 = 0x1000;
/// IOAPIC pins of the device slots, in slot order: the legacy IRQs no hardware a Linux
/// guest may probe uses (not PIT 0, i8042 1/12, cascade 2, COM2 3, COM1 4, RTC 8, FPU 13,
/// IDE 14/15), then the IOAPIC's pins above the ISA range. The MP table routes them all.
pub const VIRTIO_IRQS: [u32; 14] = [5, 6, 7, 9, 10, 11, 16, 17, 18, 19, 20, 21, 22, 23];

/// Where one virtio-mmio device sits in the guest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VirtioSlot {
    /// Slot number (0 to [`VIRTIO_IRQS`]`.len() - 1`).
    pub index: usize,
    /// Guest-physical base of its register window.
    pub addr: u64,
    /// Its IOAPIC pin (a GSI).
    pub irq: u32,
}

impl VirtioSlot {
    /// Slot `index`, or `None` past the last one. Pure: callers use it to build the kernel
    /// command line before the machine exists.
    pub fn new(index: usize) -> Option<VirtioSlot> {
        let irq = *VIRTIO_IRQS.get(index)?;
        Some(VirtioSlot {
            index,
            addr: VIRTIO_MMIO_BASE + VIRTIO_MMIO_SIZE * index as u64,
            irq,
        })
    }

    /// The kernel command line entry that makes Linux probe this slot
    /// (`CONFIG_VIRTIO_MMIO_CMDLINE_DEVICES`): `virtio_mmio.device=4K@0xd0000000:5`.
    pub fn cmdline(&self) -> String {
        format!(
            "virtio_mmio.device={}K@{:#x}:{}",
            VIRTIO_MMIO_SIZE >> 10,
            self.addr,
            self.irq
        )
    }
}

/// A virtio device type behind the MMIO transport. The transport owns the registers,
/// feature negotiation, queue setup and interrupts; the device only serves its queues.
pub trait VirtioDevice: Send {
    /// Virtio device ID (9: 9P transport).
    fn device_id(&self) -> u32;
    /// Device-specific feature bits offered; the transport adds `VIRTIO_F_VERSION_1`.
    fn features(&self) -> u64;
    /// Maximum size of each queue (a power of two, at most 32768); one entry per queue.
    fn queue_max_sizes(&self) -> &[u16];
    /// Reads the device config space at `offset` (beyond its end reads as zeros).
    fn read_config(&self, offset: u64, data: &mut [u8]);
    /// Serves what the driver made available on queue `index` (ready and inside guest
    /// memory: the transport checked). The transport interrupts when chains were used.
    fn process_queue(
        &mut self,
        index: usize,
        queue: &mut Queue,
        mem: &GuestMemoryMmap,
    ) -> Result<Served, RingError>;
    /// Returns the device to its initial state (the driver wrote 0 to Status).
    fn reset(&mut self);
}

/// Reads `data.len()` bytes of `config` at `offset`, zeros past its end.
pub fn read_config_bytes(config: &[u8], offset: u64, data: &mut [u8]) {
    data.fill(0);
    let Ok(start) = usize::try_from(offset) else {
        return;
    };
    if let Some(src) = config.get(start..) {
        let n = src.len().min(data.len());
        data[..n].copy_from_slice(&src[..n]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mptable::IOAPIC_PINS;

    #[test]
    fn test_slots_addresses_irqs_and_cmdline() {
        let s0 = VirtioSlot::new(0).unwrap();
        assert_eq!((s0.addr, s0.irq), (0xd000_0000, 5));
        assert_eq!(s0.cmdline(), "virtio_mmio.device=4K@0xd0000000:5");
        let s1 = VirtioSlot::new(1).unwrap();
        assert_eq!(s1.cmdline(), "virtio_mmio.device=4K@0xd0001000:6");
        assert!(VirtioSlot::new(VIRTIO_IRQS.len()).is_none());
    }

    #[test]
    fn test_slot_irqs_are_routed_by_the_mptable_and_free() {
        for irq in VIRTIO_IRQS {
            assert!(
                irq < u32::from(IOAPIC_PINS),
                "IRQ {irq} not in the MP table"
            );
            assert_ne!(irq, crate::devices::serial::COM1_IRQ);
        }
        let last = VirtioSlot::new(VIRTIO_IRQS.len() - 1).unwrap();
        assert!(last.addr + VIRTIO_MMIO_SIZE <= u64::from(crate::mptable::IOAPIC_ADDR));
        const { assert!(VIRTIO_MMIO_BASE >= crate::memory::MMIO_HOLE_START) };
    }

    #[test]
    fn test_read_config_bytes_zero_past_end() {
        let mut d = [0xaa; 4];
        read_config_bytes(&[1, 2, 3], 1, &mut d);
        assert_eq!(d, [2, 3, 0, 0]);
        read_config_bytes(&[1, 2, 3], 9, &mut d);
        assert_eq!(d, [0; 4]);
    }
}
