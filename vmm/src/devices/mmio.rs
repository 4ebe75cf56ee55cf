//! The MMIO bus: devices registered on disjoint guest-physical ranges, looked up on every
//! `KVM_EXIT_MMIO`. Accesses that hit no device are the caller's to log and ignore.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

/// A device on the MMIO bus.
pub trait MmioDevice: Send {
    /// `offset` is relative to the device's base address; `data` is the access (1 to 8
    /// bytes for a plain load).
    fn read(&mut self, offset: u64, data: &mut [u8]);
    /// `offset` is relative to the device's base address.
    fn write(&mut self, offset: u64, data: &[u8]);
}

/// A device shared between the bus and whoever else holds it.
pub type SharedMmioDevice = Arc<Mutex<dyn MmioDevice>>;

/// Errors of MMIO bus registration.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MmioBusError {
    /// The new range overlaps a registered one.
    #[error("MMIO range {base:#x}+{len:#x} overlaps the device at {other_base:#x}+{other_len:#x}")]
    Overlap {
        /// Requested base address.
        base: u64,
        /// Requested length.
        len: u64,
        /// Base of the device already there.
        other_base: u64,
        /// Its length.
        other_len: u64,
    },
    /// Zero length or a range past the end of the address space.
    #[error("MMIO range {base:#x}+{len:#x} is empty or wraps around the address space")]
    BadRange {
        /// Requested base address.
        base: u64,
        /// Requested length.
        len: u64,
    },
}

struct Entry {
    len: u64,
    dev: SharedMmioDevice,
}

/// MMIO devices keyed by base address; ranges never overlap.
#[derive(Default)]
pub struct MmioBus {
    devices: BTreeMap<u64, Entry>,
}

impl std::fmt::Debug for MmioBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ranges: Vec<(u64, u64)> = self.devices.iter().map(|(b, e)| (*b, e.len)).collect();
        f.debug_struct("MmioBus").field("ranges", &ranges).finish()
    }
}

impl MmioBus {
    /// An empty bus.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers `dev` on `base..base+len`; rejects empty, wrapping and overlapping ranges.
    pub fn insert(
        &mut self,
        base: u64,
        len: u64,
        dev: SharedMmioDevice,
    ) -> Result<(), MmioBusError> {
        let last = len.checked_sub(1).and_then(|l| base.checked_add(l));
        let Some(last) = last else {
            return Err(MmioBusError::BadRange { base, len });
        };
        // The only candidate for overlap: the last range starting at or before `last`.
        if let Some((&b, e)) = self.devices.range(..=last).next_back() {
            if b + (e.len - 1) >= base {
                return Err(MmioBusError::Overlap {
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

    /// The device holding `addr` and the offset of `addr` in it. An access is routed by its
    /// first byte: a device sees accesses that start inside its range.
    fn find(&self, addr: u64) -> Option<(u64, &SharedMmioDevice)> {
        let (&b, e) = self.devices.range(..=addr).next_back()?;
        let offset = addr - b;
        (offset < e.len).then_some((offset, &e.dev))
    }

    /// Dispatches a load; returns false (data untouched) when no device has the address.
    pub fn read(&self, addr: u64, data: &mut [u8]) -> bool {
        match self.find(addr) {
            Some((offset, dev)) => {
                lock(dev).read(offset, data);
                true
            }
            None => false,
        }
    }

    /// Dispatches a store; returns false when no device has the address.
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
fn lock(dev: &SharedMmioDevice) -> std::sync::MutexGuard<'_, dyn MmioDevice + 'static> {
    dev.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default)]
    struct Rec {
        writes: Vec<(u64, Vec<u8>)>,
    }
    impl MmioDevice for Rec {
        fn read(&mut self, offset: u64, data: &mut [u8]) {
            data.fill(offset as u8);
        }
        fn write(&mut self, offset: u64, data: &[u8]) {
            self.writes.push((offset, data.to_vec()));
        }
    }

    fn dev() -> SharedMmioDevice {
        Arc::new(Mutex::new(Rec::default()))
    }

    #[test]
    fn test_mmio_bus_overlap_rejected() {
        let mut bus = MmioBus::new();
        bus.insert(0xd000_0000, 0x1000, dev()).unwrap();
        for (base, len) in [
            (0xd000_0000, 0x1000),
            (0xcfff_f000, 0x1001),
            (0xd000_0fff, 1),
            (0xc000_0000, 0x2000_0000),
            (0xd000_0800, 0x10),
        ] {
            assert!(
                matches!(
                    bus.insert(base, len, dev()),
                    Err(MmioBusError::Overlap { .. })
                ),
                "{base:#x}+{len:#x}"
            );
        }
        bus.insert(0xcfff_f000, 0x1000, dev()).unwrap();
        bus.insert(0xd000_1000, 0x1000, dev()).unwrap();
    }

    #[test]
    fn test_mmio_bus_bad_range_rejected() {
        let mut bus = MmioBus::new();
        assert!(matches!(
            bus.insert(0x1000, 0, dev()),
            Err(MmioBusError::BadRange { .. })
        ));
        assert!(matches!(
            bus.insert(u64::MAX, 2, dev()),
            Err(MmioBusError::BadRange { .. })
        ));
        bus.insert(u64::MAX, 1, dev()).unwrap();
        assert!(bus.read(u64::MAX, &mut [0u8; 1]));
    }

    #[test]
    fn test_mmio_bus_lookup_offsets_relative_to_base() {
        let mut bus = MmioBus::new();
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
    fn test_mmio_bus_unknown_address_not_handled() {
        let mut bus = MmioBus::new();
        bus.insert(0xd000_0000, 0x1000, dev()).unwrap();
        let mut buf = [0xaau8; 4];
        assert!(!bus.read(0xd000_1000, &mut buf));
        assert!(!bus.read(0xcfff_ffff, &mut buf));
        assert!(!bus.write(0, &[1]));
        assert_eq!(buf, [0xaa; 4]);
    }
}
