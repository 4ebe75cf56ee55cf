//! Devices of the bare VMM: on the port-I/O bus the 16550 console, the i8042 reset and
//! quiet legacy ports; on the MMIO bus virtio-mmio devices; the debug log for everything
//! else.

pub mod bus;
pub mod i8042;
pub mod legacy;
pub mod log;
pub mod mmio;
pub mod serial;
pub mod virtio;

pub use bus::{BusError, PioBus, PioDevice, SharedPioDevice};
pub use log::{DebugLog, SharedWriter};
pub use mmio::{MmioBus, MmioBusError, MmioDevice, SharedMmioDevice};
