//! The 16550 UART at 0x3f8 (vm-superio `Serial`), interrupting on IRQ 4 through an irqfd.
//! Output goes to the console sink the caller chose; input is not wired (the console is
//! output-only in isol).

use std::io::Write;

use vm_superio::{Serial, Trigger};
use vmm_sys_util::eventfd::EventFd;

use super::bus::BusDevice;

/// COM1 base port.
pub const COM1_BASE: u16 = 0x3f8;
/// Ports a 16550 occupies.
pub const UART_PORTS: u16 = 8;
/// COM1's ISA IRQ.
pub const COM1_IRQ: u32 = 4;

/// An interrupt line backed by an eventfd registered with KVM as an irqfd.
#[derive(Debug)]
pub struct EventFdTrigger(pub EventFd);

impl Trigger for EventFdTrigger {
    type E = std::io::Error;
    fn trigger(&self) -> std::io::Result<()> {
        self.0.write(1)
    }
}

/// The UART as a port-I/O device.
pub struct SerialDevice<T: Trigger, W: Write> {
    uart: Serial<T, vm_superio::serial::NoEvents, W>,
}

impl<T: Trigger, W: Write> std::fmt::Debug for SerialDevice<T, W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SerialDevice")
    }
}

impl<T: Trigger, W: Write> SerialDevice<T, W> {
    /// A UART raising `irq` and writing to `out`.
    pub fn new(irq: T, out: W) -> Self {
        SerialDevice {
            uart: Serial::new(irq, out),
        }
    }
}

impl<T: Trigger + Send, W: Write + Send> BusDevice for SerialDevice<T, W> {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        let Ok(off) = u8::try_from(offset) else {
            data.fill(0xff);
            return;
        };
        for b in data.iter_mut() {
            *b = self.uart.read(off);
        }
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        let Ok(off) = u8::try_from(offset) else {
            return;
        };
        for &b in data {
            // A console sink that fails (full disk, closed pipe) loses the byte; the guest
            // goes on, as with a real unplugged serial line.
            let _ = self.uart.write(off, b);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::Arc;

    use super::*;
    use crate::devices::log::testing::VecSink;

    #[derive(Clone, Default)]
    struct Counter(Arc<AtomicU32>);
    impl Trigger for Counter {
        type E = ();
        fn trigger(&self) -> Result<(), ()> {
            self.0.fetch_add(1, Ordering::SeqCst);
            Ok(())
        }
    }

    #[test]
    fn test_serial_write_thr_reaches_sink() {
        let sink = VecSink::default();
        let mut dev = SerialDevice::new(Counter::default(), sink.clone());
        dev.write(0, b"hi\n");
        assert_eq!(sink.text(), "hi\n");
    }

    #[test]
    fn test_serial_thre_interrupt_triggers_when_enabled() {
        let irq = Counter::default();
        let mut dev = SerialDevice::new(irq.clone(), VecSink::default());
        dev.write(1, &[0x02]); // IER: THR empty interrupt
        assert_eq!(
            irq.0.load(Ordering::SeqCst),
            1,
            "enabling THRE raises it at once"
        );
        let mut iir = [0u8; 1];
        dev.read(2, &mut iir); // reading IIR acknowledges it
        assert_ne!(iir[0] & 0x02, 0);
        dev.write(0, b"x");
        assert_eq!(
            irq.0.load(Ordering::SeqCst),
            2,
            "the transmitted byte raises it again"
        );
    }

    #[test]
    fn test_serial_lsr_reports_transmitter_empty() {
        let mut dev = SerialDevice::new(Counter::default(), VecSink::default());
        let mut lsr = [0u8; 1];
        dev.read(5, &mut lsr);
        assert_eq!(lsr[0] & 0x60, 0x60);
    }

    #[test]
    fn test_serial_bad_offset_reads_ones() {
        let mut dev = SerialDevice::new(Counter::default(), VecSink::default());
        let mut b = [0u8; 4];
        dev.read(0x1234, &mut b);
        assert_eq!(b, [0xff; 4]);
    }
}
