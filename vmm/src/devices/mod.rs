//! Devices of the bare VMM: on the port-I/O bus the 16550 console, the i8042 reset and
//! quiet legacy ports; on the MMIO bus virtio-mmio devices; the debug log for everything
//! else.

pub mod bus;
#[cfg(test)]
pub(crate) mod fuzz;
pub mod i8042;
pub mod legacy;
pub mod log;
pub mod serial;
pub mod virtio;

pub use bus::{Bus, BusDevice, BusError, SharedDevice, Space};
pub use log::{DebugLog, SharedWriter};
