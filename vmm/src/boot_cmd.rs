//! `isol boot`: a raw kernel image in the bare VMM, serial console on stdout.

use std::path::PathBuf;
use std::time::Duration;

/// `isol boot`: a raw kernel in the bare VMM.
#[derive(Debug, Clone)]
pub struct BootConfig {
    /// ELF (PVH) or bzImage.
    pub kernel: PathBuf,
    /// Optional initrd.
    pub initrd: Option<PathBuf>,
    /// Kernel command line.
    pub cmdline: String,
    /// Guest memory in bytes.
    pub memory: u64,
    /// vCPUs.
    pub cpus: u8,
    /// Stop after this long.
    pub timeout: Option<Duration>,
    /// Boot even on a PVM host.
    pub allow_pvm: bool,
}

/// Errors of `isol boot`.
#[derive(Debug, thiserror::Error)]
pub enum BootError {
    /// Placeholder until the VMM lands.
    #[error("The VMM is not built yet")]
    NotBuilt,
}

/// Boots a raw kernel; serial output goes to stdout. Returns isol's exit code.
pub fn boot(_cfg: &BootConfig) -> Result<i32, BootError> {
    Err(BootError::NotBuilt)
}
