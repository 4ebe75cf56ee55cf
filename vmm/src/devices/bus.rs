//! The port-I/O bus: devices registered on disjoint port ranges, looked up on every
//! `KVM_EXIT_IO`. Accesses that hit no device are the caller's to log and ignore.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

/// A device on the port-I/O bus.
pub trait PioDevice: Send {
    /// `offset` is relative to the device's base port. For string I/O (rep ins/outs)
    /// `data` holds all the bytes of the batch (size * count), up to a page.
    fn read(&mut self, offset: u16, data: &mut [u8]);
    /// `offset` is relative to the device's base port; `data` as for [`PioDevice::read`].
    fn write(&mut self, offset: u16, data: &[u8]);
}

/// A device shared between the bus and whoever else holds it.
pub type SharedPioDevice = Arc<Mutex<dyn PioDevice>>;

/// Errors of bus registration.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BusError {
    /// The new range overlaps a registered one.
    #[error("Port range {base:#x}+{len:#x} overlaps the device at {other_base:#x}+{other_len:#x}")]
    Overlap {
        /// Requested base port.
        base: u16,
        /// Requested length.
        len: u16,
        /// Base of the device already there.
        other_base: u16,
        /// Its length.
        other_len: u16,
    },
    /// Zero length or a range past port 0xffff.
    #[error("Port range {base:#x}+{len:#x} is empty or runs past port 0xffff")]
    BadRange {
        /// Requested base port.
        base: u16,
        /// Requested length.
        len: u16,
    },
}

struct Entry {
    len: u16,
    dev: SharedPioDevice,
}

/// Port-I/O devices keyed by base port; ranges never overlap.
#[derive(Default)]
pub struct PioBus {
    devices: BTreeMap<u16, Entry>,
}

impl std::fmt::Debug for PioBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ranges: Vec<(u16, u16)> = self.devices.iter().map(|(b, e)| (*b, e.len)).collect();
        f.debug_struct("PioBus").field("ranges", &ranges).finish()
    }
}

impl PioBus {
    /// An empty bus.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers `dev` on ports `base..base+len`; rejects empty, wrapping and overlapping ranges.
    pub fn insert(&mut self, base: u16, len: u16, dev: SharedPioDevice) -> Result<(), BusError> {
        let end = u32::from(base) + u32::from(len);
        if len == 0 || end > 0x1_0000 {
            return Err(BusError::BadRange { base, len });
        }
        // The only candidates for overlap: the last range starting at or before `end - 1`.
        if let Some((&b, e)) = self.devices.range(..=(end - 1) as u16).next_back() {
            if u32::from(b) + u32::from(e.len) > u32::from(base) {
                return Err(BusError::Overlap {
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

    fn find(&self, port: u16) -> Option<(u16, &SharedPioDevice)> {
        let (&b, e) = self.devices.range(..=port).next_back()?;
        (u32::from(port) < u32::from(b) + u32::from(e.len)).then_some((port - b, &e.dev))
    }

    /// Dispatches an `in`; returns false (data untouched) when no device has the port.
    pub fn read(&self, port: u16, data: &mut [u8]) -> bool {
        match self.find(port) {
            Some((offset, dev)) => {
                lock(dev).read(offset, data);
                true
            }
            None => false,
        }
    }

    /// Dispatches an `out`; returns false when no device has the port.
    pub fn write(&self, port: u16, data: &[u8]) -> bool {
        match self.find(port) {
            Some((offset, dev)) => {
                lock(dev).write(offset, data);
                true
            }
            None => false,
        }
    }
}

/// Locks a device; a device that panicked while locked is still usable (its state is
/// plain registers), so poisoning is ignored rather than spreading the panic.
pub fn lock(dev: &SharedPioDevice) -> std::sync::MutexGuard<'_, dyn PioDevice + 'static> {
    dev.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default)]
    struct Rec {
        writes: Vec<(u16, Vec<u8>)>,
    }
    impl PioDevice for Rec {
        fn read(&mut self, offset: u16, data: &mut [u8]) {
            data.fill(offset as u8);
        }
        fn write(&mut self, offset: u16, data: &[u8]) {
            self.writes.push((offset, data.to_vec()));
        }
    }

    fn dev() -> SharedPioDevice {
        Arc::new(Mutex::new(Rec::default()))
    }

    #[test]
    fn test_bus_insert_overlap_rejected() {
        let mut bus = PioBus::new();
        bus.insert(0x3f8, 8, dev()).unwrap();
        assert!(matches!(
            bus.insert(0x3f0, 9, dev()),
            Err(BusError::Overlap { .. })
        ));
        assert!(matches!(
            bus.insert(0x3ff, 1, dev()),
            Err(BusError::Overlap { .. })
        ));
        assert!(matches!(
            bus.insert(0x3f8, 8, dev()),
            Err(BusError::Overlap { .. })
        ));
        assert!(matches!(
            bus.insert(0x300, 0x200, dev()),
            Err(BusError::Overlap { .. })
        ));
        bus.insert(0x3f0, 8, dev()).unwrap();
        bus.insert(0x400, 1, dev()).unwrap();
    }

    #[test]
    fn test_bus_insert_bad_range_rejected() {
        let mut bus = PioBus::new();
        assert!(matches!(
            bus.insert(0x10, 0, dev()),
            Err(BusError::BadRange { .. })
        ));
        assert!(matches!(
            bus.insert(0xffff, 2, dev()),
            Err(BusError::BadRange { .. })
        ));
        bus.insert(0xffff, 1, dev()).unwrap();
    }

    #[test]
    fn test_bus_dispatch_offsets_relative_to_base() {
        let mut bus = PioBus::new();
        let d = Arc::new(Mutex::new(Rec::default()));
        bus.insert(0x60, 5, d.clone()).unwrap();
        assert!(bus.write(0x64, &[0xfe]));
        let mut buf = [0u8; 2];
        assert!(bus.read(0x62, &mut buf));
        assert_eq!(buf, [2, 2]);
        assert_eq!(d.lock().unwrap().writes, vec![(4, vec![0xfe])]);
    }

    #[test]
    fn test_bus_unknown_port_not_handled() {
        let mut bus = PioBus::new();
        bus.insert(0x60, 5, dev()).unwrap();
        let mut buf = [0xaau8; 1];
        assert!(!bus.read(0x65, &mut buf));
        assert!(!bus.read(0x5f, &mut buf));
        assert!(!bus.write(0x1234, &[1]));
        assert_eq!(buf, [0xaa]);
    }
}
