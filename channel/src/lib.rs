//! isol-channel: the isol channel's wire protocol, shared by the host (isol-vmm) and the
//! guest init (isol-guest), which both depend on this crate: port numbers, the exit-status
//! encoding, and the config file the init reads from the initramfs.
//!
//! It uses only `std`, so it builds into the static guest init as well as into isol.
//!
//! # Ports (base [`CHANNEL_BASE`] = 0x0ee0, [`CHANNEL_LEN`] = 16 ports)
//!
//! | offset | dir | width | register |
//! |---|---|---|---|
//! | 0x0 | out | `rep outsb` | STDOUT: bytes for isol's fd 1 |
//! | 0x1 | out | `rep outsb` | STDERR: bytes for isol's fd 2 |
//! | 0x2 | in  | `rep insb`  | STDIN data: the next bytes of isol's fd 0 |
//! | 0x3 | in  | 8 bit | MAGIC: always [`MAGIC`] (detects the channel) |
//! | 0x3 | out | 8 bit | EVENT: [`EVENT_READY`] (init up), [`EVENT_STARTED`] (workload forked) |
//! | 0x4 | in  | 32 bit | STDIN status: bytes available now (at most [`PAGE`]), 0 none yet, [`STDIN_EOF`] |
//! | 0x8 | in  | 32 bit | SIGNAL: pending signal number for the workload (read clears it), 0 none |
//! | 0xc | out | 32 bit | EXIT: the encoded status ([`ExitReport`]); the VMM stops the VM |
//! | 0x10 | out | 32 bit | BUF_PAGE: frame number (GPA >> 12) of the next shared buffer page |
//! | 0x14 | out | 32 bit | SEND: `stream << 24 \| len`: the host takes `len` bytes from the buffer |
//! | 0x18 | in  | 32 bit | RECV: the host fills the buffer with stdin; bytes, 0 none yet, [`STDIN_EOF`] |
//!
//! Two transports, because KVM exits to the VMM once per *element* of `rep outsb` (only
//! `ins` is batched): the init registers up to [`MAX_BUF_PAGES`] pages of its own memory
//! (mlocked, frame numbers from /proc/self/pagemap) and then moves up to 64 KiB per VM exit
//! with SEND/RECV; the byte registers (STDOUT/STDERR/STDIN) are the fallback when that
//! setup fails.
//!
//! Only the init touches these ports: it gets them with `ioperm`, and the workload loses
//! them (the init revokes its `ioperm` bits before exec and drops `CAP_SYS_RAWIO`), so the
//! workload cannot forge its exit status or its output routing.

/// First port of the channel (free on a PC: between the PCI config ports and nothing else).
pub const CHANNEL_BASE: u16 = 0x0ee0;
/// Number of ports the channel decodes.
pub const CHANNEL_LEN: u16 = 32;
/// Offset of the STDOUT register.
pub const REG_STDOUT: u16 = 0x0;
/// Offset of the STDERR register.
pub const REG_STDERR: u16 = 0x1;
/// Offset of the STDIN data register.
pub const REG_STDIN_DATA: u16 = 0x2;
/// Offset of the MAGIC (in) / EVENT (out) register.
pub const REG_MAGIC_EVENT: u16 = 0x3;
/// Offset of the STDIN status register.
pub const REG_STDIN_STATUS: u16 = 0x4;
/// Offset of the SIGNAL register.
pub const REG_SIGNAL: u16 = 0x8;
/// Offset of the EXIT register.
pub const REG_EXIT: u16 = 0xc;
/// Offset of the BUF_PAGE register.
pub const REG_BUF_PAGE: u16 = 0x10;
/// Offset of the SEND register.
pub const REG_SEND: u16 = 0x14;
/// Offset of the RECV register.
pub const REG_RECV: u16 = 0x18;
/// Most shared buffer pages the init may register.
pub const MAX_BUF_PAGES: usize = 16;
/// SEND stream: the workload's stdout.
pub const STREAM_STDOUT: u32 = 1;
/// SEND stream: the workload's stderr.
pub const STREAM_STDERR: u32 = 2;

/// What the MAGIC register reads (an absent device reads 0xff).
pub const MAGIC: u8 = 0x5a;
/// EVENT: the init runs and has found the channel.
pub const EVENT_READY: u8 = 1;
/// EVENT: the workload process exists (its timeout starts now).
pub const EVENT_STARTED: u8 = 2;
/// STDIN status: isol's stdin reached end of file.
pub const STDIN_EOF: u32 = 0xffff_ffff;
/// Most bytes one string I/O transfer moves (KVM batches string I/O by the page).
pub const PAGE: usize = 4096;

/// How the workload (or the init) ended, as sent through the EXIT register.
///
/// Encoding: bits 31..24 the kind, bits 23..0 the value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitReport {
    /// exit(code).
    Exited(u8),
    /// Killed by this signal.
    Signaled(u8),
    /// execve of the command failed with this errno.
    ExecFailed(u32),
    /// The init itself failed (details on the console); carries an errno or 0.
    InitFailed(u32),
}

const KIND_EXITED: u32 = 1;
const KIND_SIGNALED: u32 = 2;
const KIND_EXEC_FAILED: u32 = 3;
const KIND_INIT_FAILED: u32 = 4;
const VALUE_MASK: u32 = 0x00ff_ffff;

impl ExitReport {
    /// The 32-bit value written to the EXIT register.
    pub fn encode(self) -> u32 {
        let (kind, value) = match self {
            ExitReport::Exited(c) => (KIND_EXITED, u32::from(c)),
            ExitReport::Signaled(s) => (KIND_SIGNALED, u32::from(s)),
            ExitReport::ExecFailed(e) => (KIND_EXEC_FAILED, e & VALUE_MASK),
            ExitReport::InitFailed(e) => (KIND_INIT_FAILED, e & VALUE_MASK),
        };
        (kind << 24) | value
    }

    /// Decodes an EXIT value; `None` for anything a correct init never writes.
    pub fn decode(raw: u32) -> Option<ExitReport> {
        let value = raw & VALUE_MASK;
        let small = u8::try_from(value).ok();
        match raw >> 24 {
            KIND_EXITED => small.map(ExitReport::Exited),
            KIND_SIGNALED => small.filter(|s| *s > 0).map(ExitReport::Signaled),
            KIND_EXEC_FAILED => Some(ExitReport::ExecFailed(value)),
            KIND_INIT_FAILED => Some(ExitReport::InitFailed(value)),
            _ => None,
        }
    }
}

mod config;
pub use config::*;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_exit_report_round_trip() {
        for r in [
            ExitReport::Exited(0),
            ExitReport::Exited(255),
            ExitReport::Signaled(9),
            ExitReport::ExecFailed(2),
            ExitReport::InitFailed(0),
        ] {
            assert_eq!(ExitReport::decode(r.encode()), Some(r));
        }
    }

    #[test]
    fn test_exit_report_garbage_is_none() {
        assert_eq!(ExitReport::decode(0), None);
        assert_eq!(ExitReport::decode(0xffff_ffff), None);
        assert_eq!(ExitReport::decode((1 << 24) | 256), None);
        assert_eq!(ExitReport::decode(2 << 24), None);
    }
}
