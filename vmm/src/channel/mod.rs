//! The isol channel: how the guest init and the host talk, without a network, a virtio
//! queue or any text the workload could forge.
//!
//! It is a paravirtual port-I/O device at [`protocol::CHANNEL_BASE`] (32 ports). The init
//! gets access to these ports with `ioperm`. Bulk data goes through a shared buffer: the
//! init registers 16 mlocked pages of its own memory (frame numbers from
//! /proc/self/pagemap), then each SEND/RECV moves up to 64 KiB per VM exit (KVM exits
//! once per byte of `rep outsb`, so the byte registers are only the fallback). The
//! workload never has access (the init revokes its `ioperm` bits in the child and drops
//! `CAP_SYS_RAWIO`), so only the init can report the exit status.
//!
//! - [`protocol`]: ports, the exit-status encoding, the init's config file: the crate
//!   isol-channel, which the guest init depends on too.
//! - [`device`]: the device on the port bus; stdout/stderr bytes go to isol's fds 1 and
//!   2, byte-exact, through [`output`] (a bounded queue and a writer thread, so a stalled
//!   reader never blocks a vCPU).
//! - [`state`]: what the device and the host threads share.
//! - [`host`]: the stdin pump, the signal forwarder and the watchdog.

pub mod device;
pub mod host;
pub mod output;
/// The wire protocol (crate isol-channel, shared with the guest init).
pub use isol_channel as protocol;
pub mod state;

pub use device::ChannelDevice;
pub use output::{Output, OutputQueue, Stream};
pub use state::{Channel, Outcome};
