//! The init's side of the isol channel: port I/O with `rep outsb`/`rep insb` after
//! `ioperm`, or (debug mode only, e.g. under plain QEMU) the console.

use std::arch::asm;
use std::io::Write;

use crate::protocol::{
    ExitReport, CHANNEL_BASE, CHANNEL_LEN, MAGIC, PAGE, REG_EXIT, REG_MAGIC_EVENT, REG_SIGNAL,
    REG_STDERR, REG_STDIN_DATA, REG_STDIN_STATUS, REG_STDOUT, STDIN_EOF,
};
use crate::sys::{cvt, Ctx, InitError};

/// What the init asks of the host.
pub trait Host {
    /// Sends workload output (`err`: stderr, else stdout).
    fn output(&mut self, err: bool, data: &[u8]);
    /// Bytes of stdin available now (at most a page), 0 none yet, [`STDIN_EOF`].
    fn stdin_status(&mut self) -> u32;
    /// Reads exactly `buf.len()` stdin bytes (no more than the status offered).
    fn read_stdin(&mut self, buf: &mut [u8]);
    /// A pending signal for the workload, or 0.
    fn signal(&mut self) -> u32;
    /// Reports a boot-progress event.
    fn event(&mut self, ev: u8);
    /// Reports how the run ended; the VMM stops the VM.
    fn exit(&mut self, report: ExitReport);
}

/// The real channel (port I/O).
#[derive(Debug)]
pub struct PortHost(());

impl PortHost {
    /// Gains access to the ports and checks that the device answers; `Ok(None)` when
    /// nothing answers (no isol channel).
    pub fn open() -> Result<Option<PortHost>, InitError> {
        // SAFETY: ioperm only changes this process's I/O permission bitmap.
        cvt(unsafe { libc::ioperm(CHANNEL_BASE.into(), CHANNEL_LEN.into(), 1) })
            .ctx(|| format!("get access to ports {CHANNEL_BASE:#x}+{CHANNEL_LEN} (ioperm)"))?;
        let h = PortHost(());
        Ok((h.inb(REG_MAGIC_EVENT) == MAGIC).then_some(h))
    }

    fn inb(&self, reg: u16) -> u8 {
        let v: u8;
        // SAFETY: ioperm granted the channel ports; `in` touches no memory.
        unsafe {
            asm!("in al, dx", out("al") v, in("dx") CHANNEL_BASE + reg, options(nomem, nostack, preserves_flags))
        };
        v
    }

    fn inl(&self, reg: u16) -> u32 {
        let v: u32;
        // SAFETY: ioperm granted the channel ports; `in` touches no memory.
        unsafe {
            asm!("in eax, dx", out("eax") v, in("dx") CHANNEL_BASE + reg, options(nomem, nostack, preserves_flags))
        };
        v
    }

    fn outb(&self, reg: u16, v: u8) {
        // SAFETY: ioperm granted the channel ports; `out` touches no memory.
        unsafe {
            asm!("out dx, al", in("al") v, in("dx") CHANNEL_BASE + reg, options(nomem, nostack, preserves_flags))
        };
    }

    fn outl(&self, reg: u16, v: u32) {
        // SAFETY: ioperm granted the channel ports; `out` touches no memory.
        unsafe {
            asm!("out dx, eax", in("eax") v, in("dx") CHANNEL_BASE + reg, options(nomem, nostack, preserves_flags))
        };
    }
}

impl Host for PortHost {
    fn output(&mut self, err: bool, data: &[u8]) {
        let port = CHANNEL_BASE + if err { REG_STDERR } else { REG_STDOUT };
        for chunk in data.chunks(PAGE) {
            // SAFETY: ioperm granted the port; rsi/rcx describe `chunk`, which outsb only
            // reads; the direction flag is clear on entry to asm (Rust's asm contract).
            unsafe {
                asm!("rep outsb", in("dx") port, inout("rsi") chunk.as_ptr() => _,
                     inout("rcx") chunk.len() => _, options(nostack, preserves_flags, readonly))
            };
        }
    }

    fn stdin_status(&mut self) -> u32 {
        self.inl(REG_STDIN_STATUS)
    }

    fn read_stdin(&mut self, buf: &mut [u8]) {
        let port = CHANNEL_BASE + REG_STDIN_DATA;
        for chunk in buf.chunks_mut(PAGE) {
            // SAFETY: ioperm granted the port; rdi/rcx describe `chunk`, which insb fills;
            // the direction flag is clear on entry to asm.
            unsafe {
                asm!("rep insb", in("dx") port, inout("rdi") chunk.as_mut_ptr() => _,
                     inout("rcx") chunk.len() => _, options(nostack, preserves_flags))
            };
        }
    }

    fn signal(&mut self) -> u32 {
        self.inl(REG_SIGNAL)
    }

    fn event(&mut self, ev: u8) {
        self.outb(REG_MAGIC_EVENT, ev);
    }

    fn exit(&mut self, report: ExitReport) {
        self.outl(REG_EXIT, report.encode());
    }
}

/// Debug stand-in for the channel: output and reports go to the console, stdin is empty.
/// Used only when the config asks for debug mode and no channel answers.
#[derive(Debug)]
pub struct ConsoleHost;

impl Host for ConsoleHost {
    fn output(&mut self, err: bool, data: &[u8]) {
        if err {
            let _ = std::io::stderr().write_all(data);
        } else {
            let _ = std::io::stdout().write_all(data);
            let _ = std::io::stdout().flush();
        }
    }

    fn stdin_status(&mut self) -> u32 {
        STDIN_EOF
    }

    fn read_stdin(&mut self, buf: &mut [u8]) {
        buf.fill(0);
    }

    fn signal(&mut self) -> u32 {
        0
    }

    fn event(&mut self, ev: u8) {
        eprintln!("isol-init: event {ev}");
    }

    fn exit(&mut self, report: ExitReport) {
        eprintln!("ISOL-EXIT {report:?} {:#x}", report.encode());
    }
}
