//! The one device bus, as Firecracker, Cloud Hypervisor and crosvm have it: devices
//! registered on disjoint address ranges of an address space, looked up on every exit.
//! The machine has two instances: port I/O (`KVM_EXIT_IO`, ports 0 to 0xffff) and MMIO
//! (`KVM_EXIT_MMIO`, the whole 64-bit guest-physical space). Accesses that hit no device
//! are the caller's to log and ignore. An access is routed by its first byte: a device
//! sees the accesses that start inside its range, with the offset from its base.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

/// A device on a [`Bus`].
pub trait BusDevice: Send {
    /// A read at `offset` from the device's base. Port I/O: for string I/O (rep ins)
    /// `data` holds all the bytes of the batch (size * count), up to a page. MMIO: 1 to 8
    /// bytes.
    fn read(&mut self, offset: u64, data: &mut [u8]);
    /// A write at `offset` from the device's base; `data` as for [`BusDevice::read`].
    fn write(&mut self, offset: u64, data: &[u8]);
}

/// A device shared between the bus and whoever else holds it.
pub type SharedDevice = Arc<Mutex<dyn BusDevice>>;

/// Which address space a bus decodes (for its error messages and its size).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Space {
    /// I/O ports 0..=0xffff.
    Pio,
    /// Guest-physical addresses, the whole 64-bit space.
    Mmio,
}

impl Space {
    fn last(self) -> u64 {
        match self {
            Space::Pio => 0xffff,
            Space::Mmio => u64::MAX,
        }
    }
}

impl std::fmt::Display for Space {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Space::Pio => "Port",
            Space::Mmio => "MMIO",
        })
    }
}

/// Errors of bus registration.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BusError {
    /// The new range overlaps a registered one.
    #[error(
        "{space} range {base:#x}+{len:#x} overlaps the device at {other_base:#x}+{other_len:#x}"
    )]
    Overlap {
        /// The bus.
        space: Space,
        /// Requested base.
        base: u64,
        /// Requested length.
        len: u64,
        /// Base of the device already there.
        other_base: u64,
        /// Its length.
        other_len: u64,
    },
    /// Zero length, or a range past the end of the address space.
    #[error("{space} range {base:#x}+{len:#x} is empty or runs past the end of the address space")]
    BadRange {
        /// The bus.
        space: Space,
        /// Requested base.
        base: u64,
        /// Requested length.
        len: u64,
    },
}

struct Entry {
    len: u64,
    dev: SharedDevice,
}

/// Devices keyed by base address; ranges never overlap.
pub struct Bus {
    space: Space,
    devices: BTreeMap<u64, Entry>,
}

impl std::fmt::Debug for Bus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ranges: Vec<(u64, u64)> = self.devices.iter().map(|(b, e)| (*b, e.len)).collect();
        f.debug_struct("Bus")
            .field("space", &self.space)
            .field("ranges", &ranges)
            .finish()
    }
}

impl Bus {
    /// An empty bus over `space`.
    pub fn new(space: Space) -> Self {
        Bus {
            space,
            devices: BTreeMap::new(),
        }
    }

    /// An empty port-I/O bus.
    pub fn pio() -> Self {
        Bus::new(Space::Pio)
    }

    /// An empty MMIO bus.
    pub fn mmio() -> Self {
        Bus::new(Space::Mmio)
    }

    /// Registers `dev` on `base..base+len`; rejects empty, out-of-space and overlapping
    /// ranges.
    pub fn insert(&mut self, base: u64, len: u64, dev: SharedDevice) -> Result<(), BusError> {
        let space = self.space;
        let last = len.checked_sub(1).and_then(|l| base.checked_add(l));
        let Some(last) = last.filter(|&l| l <= space.last()) else {
            return Err(BusError::BadRange { space, base, len });
        };
        // The only candidate for overlap: the last range starting at or before `last`.
        if let Some((&b, e)) = self.devices.range(..=last).next_back() {
            if b + (e.len - 1) >= base {
                return Err(BusError::Overlap {
                    space,
                    base,
                    len,
                    other_base: b,
                    other_len: e.len,
                });
            }
        }
        self.devices.insert(base, Entry { len, dev });
        Ok(())
    }

    /// The device holding `addr` and the offset of `addr` in it.
    fn find(&self, addr: u64) -> Option<(u64, &SharedDevice)> {
        let (&b, e) = self.devices.range(..=addr).next_back()?;
        let offset = addr - b;
        (offset < e.len).then_some((offset, &e.dev))
    }

    /// Dispatches a read; returns false (data untouched) when no device has the address.
    pub fn read(&self, addr: u64, data: &mut [u8]) -> bool {
        match self.find(addr) {
            Some((offset, dev)) => {
                lock(dev).read(offset, data);
                true
            }
            None => false,
        }
    }

    /// Dispatches a write; returns false when no device has the address.
    pub fn write(&self, addr: u64, data: &[u8]) -> bool {
        match self.find(addr) {
            Some((offset, dev)) => {
                lock(dev).write(offset, data);
                true
            }
            None => false,
        }
    }
}

/// Locks a device; poisoning is ignored (a device that panicked keeps its registers, and a
/// guest must not be able to spread a panic to every vCPU).
pub fn lock(dev: &SharedDevice) -> std::sync::MutexGuard<'_, dyn BusDevice + 'static> {
    dev.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default)]
    struct Rec {
        writes: Vec<(u64, Vec<u8>)>,
    }
    impl BusDevice for Rec {
        fn read(&mut self, offset: u64, data: &mut [u8]) {
            data.fill(offset as u8);
        }
        fn write(&mut self, offset: u64, data: &[u8]) {
            self.writes.push((offset, data.to_vec()));
        }
    }

    fn dev() -> SharedDevice {
        Arc::new(Mutex::new(Rec::default()))
    }

    #[test]
    fn test_bus_pio_overlap_rejected() {
        let mut bus = Bus::pio();
        bus.insert(0x3f8, 8, dev()).unwrap();
        for (base, len) in [(0x3f0, 9), (0x3ff, 1), (0x3f8, 8), (0x300, 0x200)] {
            let e = bus.insert(base, len, dev()).unwrap_err();
            assert!(matches!(e, BusError::Overlap { .. }), "{base:#x}+{len:#x}");
        }
        bus.insert(0x3f0, 8, dev()).unwrap();
        bus.insert(0x400, 1, dev()).unwrap();
    }

    #[test]
    fn test_bus_mmio_overlap_rejected() {
        let mut bus = Bus::mmio();
        bus.insert(0xd000_0000, 0x1000, dev()).unwrap();
        for (base, len) in [
            (0xd000_0000, 0x1000),
            (0xcfff_f000, 0x1001),
            (0xd000_0fff, 1),
            (0xc000_0000, 0x2000_0000),
            (0xd000_0800, 0x10),
        ] {
            let e = bus.insert(base, len, dev()).unwrap_err();
            assert!(matches!(e, BusError::Overlap { .. }), "{base:#x}+{len:#x}");
        }
        bus.insert(0xcfff_f000, 0x1000, dev()).unwrap();
        bus.insert(0xd000_1000, 0x1000, dev()).unwrap();
    }

    #[test]
    fn test_bus_bad_ranges_rejected_per_space() {
        let mut pio = Bus::pio();
        for (base, len) in [(0x10, 0), (0xffff, 2), (0x1_0000, 1)] {
            let e = pio.insert(base, len, dev()).unwrap_err();
            assert!(matches!(e, BusError::BadRange { .. }), "{base:#x}+{len:#x}");
        }
        pio.insert(0xffff, 1, dev()).unwrap();
        let mut mmio = Bus::mmio();
        let e = mmio.insert(u64::MAX, 2, dev()).unwrap_err();
        assert!(e.to_string().starts_with("MMIO range"), "{e}");
        mmio.insert(u64::MAX, 1, dev()).unwrap();
        assert!(mmio.read(u64::MAX, &mut [0u8; 1]));
    }

    #[test]
    fn test_bus_dispatch_offsets_relative_to_base() {
        let mut bus = Bus::mmio();
        let d = Arc::new(Mutex::new(Rec::default()));
        bus.insert(0xd000_1000, 0x1000, dev()).unwrap();
        bus.insert(0xd000_0000, 0x1000, d.clone()).unwrap();
        assert!(bus.write(0xd000_0070, &[1, 0, 0, 0]));
        let mut buf = [0u8; 4];
        assert!(bus.read(0xd000_0004, &mut buf));
        assert_eq!(buf, [4; 4]);
        assert!(bus.read(0xd000_0fff, &mut buf[..1]));
        assert_eq!(buf[0], 0xff);
        assert_eq!(d.lock().unwrap().writes, vec![(0x70, vec![1, 0, 0, 0])]);
    }

    #[test]
    fn test_bus_unknown_address_not_handled() {
        let mut bus = Bus::pio();
        bus.insert(0x60, 5, dev()).unwrap();
        let mut buf = [0xaau8; 1];
        assert!(!bus.read(0x65, &mut buf));
        assert!(!bus.read(0x5f, &mut buf));
        assert!(!bus.write(0x1234, &[1]));
        assert_eq!(buf, [0xaa]);
    }
}
