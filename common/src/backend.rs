//! The traits both isolation backends implement.
//!
//! The flow is two steps, so that callers (the CLI, `isol compare`, benchmarks) can tell
//! resource acquisition from the run itself:
//! 1. [`Backend::prepare`] validates what only the backend can check and acquires its
//!    resources (cgroups + rootfs layer; or VM memory, kernel and initramfs).
//! 2. [`Prepared::run`] starts the workload with isol's own stdin/stdout/stderr as the
//!    workload's, waits for it, enforces `spec.timeout`, and releases every resource before
//!    returning, whatever happened. Dropping a `Prepared` without running it also releases
//!    everything.
//!
//! Signals: before `prepare`, the CLI blocks SIGINT, SIGTERM, SIGHUP and SIGQUIT in every
//! thread (the mask is inherited). While `run` waits, the backend takes them (e.g. with a
//! signalfd) and delivers them to the workload; the workload itself starts with an empty
//! signal mask and default dispositions.

use crate::exit::WorkloadExit;
use crate::spec::WorkloadSpec;

/// One isolation model.
pub trait Backend {
    /// The backend's error type (isol exits 125 on any of them).
    type Error: std::error::Error + Send + Sync + 'static;
    /// Resources acquired for one run.
    type Prepared: Prepared<Error = Self::Error>;

    /// Checks the spec against what this backend can do and acquires resources.
    fn prepare(&self, spec: &WorkloadSpec) -> Result<Self::Prepared, Self::Error>;
}

/// A workload ready to start.
pub trait Prepared {
    /// The backend's error type.
    type Error: std::error::Error + Send + Sync + 'static;

    /// Runs the workload to its end and releases every resource. `Ok` carries how the
    /// workload ended (including exec failure and timeout); `Err` is isol's own failure.
    fn run(self) -> Result<WorkloadExit, Self::Error>;
}
