//! Errors of the VM backend: each one ends the run with exit 125.

use std::path::PathBuf;

use crate::initramfs::InitramfsError;
use crate::kernel::KernelError;
use crate::machine::MachineError;

/// Errors of the VM backend (isol exits 125).
#[derive(Debug, thiserror::Error)]
pub enum VmError {
    /// No usable kernel.
    #[error("No usable guest kernel")]
    Kernel(#[source] KernelError),
    /// The spec's seccomp profile cannot be used.
    #[error("Cannot make the workload's seccomp filter")]
    Seccomp(#[source] isol_sandbox::seccomp::SeccompError),
    /// The guest init binary is missing or not static.
    #[error("{0}")]
    GuestInit(String),
    /// More volumes than virtio-mmio slots.
    #[error("VM mode serves at most {max} volumes and the spec has {count}; merge some of them under one host directory or use --mode container")]
    TooManyVolumes {
        /// In the spec.
        count: usize,
        /// virtio-mmio slots.
        max: usize,
    },
    /// A volume's host directory cannot be served.
    #[error("Cannot serve --volume {host}:{path} to the VM")]
    Volume {
        /// Host dir.
        host: PathBuf,
        /// Path inside.
        path: PathBuf,
        /// Why.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The run directory could not be made.
    #[error("Cannot create the VM run directory under {path}")]
    RunDir {
        /// The parent dir.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The initramfs could not be written.
    #[error("Cannot write the VM's initramfs (the guest init and its config)")]
    Initramfs(#[source] InitramfsError),
    /// The spec names no rootfs (the CLI fills in the default one).
    #[error("No root filesystem in the spec; pass --rootfs DIR")]
    NoRootfs,
    /// The rootfs directory cannot be served.
    #[error("Cannot serve the root filesystem {path} to the VM")]
    Rootfs {
        /// The rootfs directory.
        path: PathBuf,
        /// Why.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// More vCPUs than the host CPUs isol may run on (container mode refuses the same).
    #[error("cpus = {cpus} needs {wanted} CPUs but only {available} are available here; use --cpus {available} or less")]
    TooManyCpus {
        /// As given.
        cpus: f64,
        /// ceil(cpus): the vCPU count.
        wanted: u32,
        /// CPUs in isol's affinity mask.
        available: u32,
    },
    /// The machine could not be created or run.
    #[error("Cannot run the microVM")]
    Machine(#[source] MachineError),
    /// A host thread serving the channel could not start.
    #[error("Cannot start the channel's host threads")]
    Threads(#[source] std::io::Error),
    /// The VM ended without an exit report.
    #[error("The microVM ended without reporting the workload's exit ({cause}); last console lines:\n{tail}")]
    NoReport {
        /// What ended it.
        cause: String,
        /// Console tail.
        tail: String,
    },
    /// The guest init failed (its message is on the console).
    #[error("The guest init failed (errno {errno}); last console lines:\n{tail}")]
    InitFailed {
        /// errno the init reported (0 if none).
        errno: u32,
        /// Console tail.
        tail: String,
    },
    /// The VMM's jail could not be built, or the jailed VMM process failed.
    #[error(transparent)]
    Jail(crate::jail::VmmJailError),
    /// The jailed VMM failed: its error and causes as it reported them.
    #[error("{0}")]
    InJail(String),
    /// The workload did not start in time.
    #[error("The workload did not start within {secs} s ({stage}); raise ISOL_VM_BOOT_TIMEOUT if the host is slow; last console lines:\n{tail}")]
    BootTimeout {
        /// The limit.
        secs: u64,
        /// How far the boot got.
        stage: &'static str,
        /// Console tail.
        tail: String,
    },
}
