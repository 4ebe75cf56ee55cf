//! The VM backend: spec -> guest init config + initramfs -> microVM -> workload exit.

use std::path::PathBuf;

use isol_common::{Backend, Prepared, WorkloadExit, WorkloadSpec};

/// The VM backend.
#[derive(Debug, Default)]
pub struct VmBackend {
    #[allow(dead_code)]
    opts: VmOptions,
}

/// Options of the VM backend that are not part of the workload spec.
#[derive(Debug, Default, Clone)]
pub struct VmOptions {
    /// Guest kernel; `None`: `$ISOL_KERNEL`, then the default from the kernel cache.
    pub kernel: Option<PathBuf>,
    /// Copy the guest console to stderr.
    pub verbose: bool,
}

impl VmBackend {
    /// A backend with these options.
    pub fn new(opts: VmOptions) -> Self {
        VmBackend { opts }
    }
}

/// Errors of the VM backend.
#[derive(Debug, thiserror::Error)]
pub enum VmError {
    /// Placeholder until the backend lands.
    #[error("The VM backend is not built yet")]
    NotBuilt,
}

/// A prepared microVM.
#[derive(Debug)]
pub struct PreparedVm {}

impl Backend for VmBackend {
    type Error = VmError;
    type Prepared = PreparedVm;
    fn prepare(&self, _spec: &WorkloadSpec) -> Result<PreparedVm, VmError> {
        Err(VmError::NotBuilt)
    }
}

impl Prepared for PreparedVm {
    type Error = VmError;
    fn run(self) -> Result<WorkloadExit, VmError> {
        Err(VmError::NotBuilt)
    }
}

/// Removes what killed runs left behind; returns a line per thing removed.
pub fn gc() -> Result<Vec<String>, VmError> {
    Ok(Vec::new())
}
