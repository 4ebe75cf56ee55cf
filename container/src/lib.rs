//! isol-container: runs a workload in Linux namespaces and cgroups.
#![warn(missing_docs)]

use isol_common::{Backend, Prepared, WorkloadExit, WorkloadSpec};

/// The container backend.
#[derive(Debug, Default)]
pub struct ContainerBackend {
    opts: ContainerOptions,
}

/// Options of the container backend that are not part of the workload spec.
#[derive(Debug, Default, Clone)]
pub struct ContainerOptions {
    /// Print backend details on stderr.
    pub verbose: bool,
}

impl ContainerBackend {
    /// A backend with these options.
    pub fn new(opts: ContainerOptions) -> Self {
        ContainerBackend { opts }
    }
}

/// Removes what killed runs left behind; returns a line per thing removed.
pub fn gc() -> Result<Vec<String>, ContainerError> {
    Ok(Vec::new())
}

/// Errors of the container backend.
#[derive(Debug, thiserror::Error)]
pub enum ContainerError {
    /// Placeholder until the backend lands.
    #[error("The container backend is not built yet")]
    NotBuilt,
}

/// A prepared container.
#[derive(Debug)]
pub struct PreparedContainer {}

impl Backend for ContainerBackend {
    type Error = ContainerError;
    type Prepared = PreparedContainer;
    fn prepare(&self, _spec: &WorkloadSpec) -> Result<PreparedContainer, ContainerError> {
        Err(ContainerError::NotBuilt)
    }
}

impl Prepared for PreparedContainer {
    type Error = ContainerError;
    fn run(self) -> Result<WorkloadExit, ContainerError> {
        Err(ContainerError::NotBuilt)
    }
}
