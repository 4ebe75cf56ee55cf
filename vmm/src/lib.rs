//! isol-vmm: runs a workload in a KVM microVM booted by isol's own VMM.
//!
//! Module owners (during the first build-out): `machine`, `kvm`, `memory`, `vcpu`, `boot`,
//! `devices`, `boot_cmd` are the bare VMM; `channel`, `initramfs`, `backend` run a workload
//! in it with the guest init; `kernel` finds the guest kernel.
#![warn(missing_docs)]

pub mod backend;
pub mod boot;
pub mod boot_cmd;
pub mod channel;
pub mod devices;
pub mod initramfs;
pub mod jail;
pub mod kernel;
pub mod machine;
// The bare VMM's own modules (helper "vmm").
pub mod control;
pub mod cpuid;
pub mod kvm;
pub mod memory;
pub mod mptable;
pub mod pvm;
pub mod seccomp;
pub mod vcpu;

pub use backend::{gc, PreparedVm, VmBackend, VmError, VmOptions};
pub use boot_cmd::{boot, BootConfig};
pub use jail::VmmJail;
pub use kernel::kernel_report;
pub use machine::{Machine, MachineConfig, MachineControl, MachineError, MachineExit};
pub use seccomp::VmmSeccomp;
