//! The i8042 keyboard controller at 0x60-0x64, reduced to what a guest needs from it: the
//! CPU reset command (0xFE to port 0x64) ends the VM with [`MachineExit::Reset`].

use vm_superio::{I8042Device, Trigger};

use super::bus::BusDevice;
use crate::control::{MachineControl, MachineExit};

/// Base port (data); the command/status port is base + 4.
pub const I8042_BASE: u16 = 0x60;
/// Ports covered (0x60-0x64; 0x61 reads as 0).
pub const I8042_PORTS: u16 = 5;

/// Ends the machine with a reset when triggered.
#[derive(Debug, Clone)]
pub struct ResetTrigger(pub MachineControl);

impl Trigger for ResetTrigger {
    type E = std::convert::Infallible;
    fn trigger(&self) -> Result<(), Self::E> {
        self.0.finish(MachineExit::Reset);
        Ok(())
    }
}

/// The i8042 as a port-I/O device.
#[derive(Debug)]
pub struct I8042<T: Trigger>(I8042Device<T>);

impl<T: Trigger> I8042<T> {
    /// A controller that fires `reset` on the reset command.
    pub fn new(reset: T) -> Self {
        I8042(I8042Device::new(reset))
    }
}

impl<T: Trigger + Send> BusDevice for I8042<T> {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        let off = u8::try_from(offset).unwrap_or(u8::MAX);
        for b in data.iter_mut() {
            // Status 0: input and output buffers empty, so drivers never wait on us.
            *b = self.0.read(off);
        }
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        let Ok(off) = u8::try_from(offset) else {
            return;
        };
        for &b in data {
            let _ = self.0.write(off, b);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_i8042_reset_command_ends_machine() {
        let c = MachineControl::new();
        let mut dev = I8042::new(ResetTrigger(c.clone()));
        dev.write(4, &[0xfe]);
        assert!(c.is_stopping());
        assert_eq!(c.wait(None), MachineExit::Reset);
    }

    #[test]
    fn test_i8042_other_writes_ignored_status_empty() {
        let c = MachineControl::new();
        let mut dev = I8042::new(ResetTrigger(c.clone()));
        dev.write(0, &[0xfe]);
        dev.write(4, &[0xaa, 0x60]);
        let mut st = [0xffu8; 1];
        dev.read(4, &mut st);
        assert_eq!(st, [0]);
        assert!(!c.is_stopping());
    }
}
