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
//!
//! Started hook: [`Prepared::run_observed`] calls its `started` callback at most once, as
//! soon as the workload's process tree exists and is set up (container: the init is in
//! its cgroups and has mounted the container's view; VM: the VMM runs), with the pid a
//! supervisor signals and watches. A run that fails before that returns `Err` without
//! calling it; a workload that ends before the backend noticed its start may return `Ok`
//! without calling it. A detached run's
//! supervisor uses it to report "started" and to serve its control socket; the
//! foreground [`Prepared::run`] passes a no-op.

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

/// What a backend says once the workload's process tree exists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Started {
    /// The process to signal and watch, in isol's pid namespace: the container's init
    /// (PID 1 of the workload's namespaces), or the VMM. A child of the caller, so its
    /// pid cannot be reused before `run` returns.
    pub pid: i32,
    /// The cgroups it runs in (paths on the host; empty when the backend has none to
    /// join, e.g. VM mode, where the workload's cgroup is inside the guest).
    pub cgroups: Vec<std::path::PathBuf>,
}

/// A workload ready to start.
pub trait Prepared {
    /// The backend's error type.
    type Error: std::error::Error + Send + Sync + 'static;

    /// Runs the workload to its end and releases every resource. `Ok` carries how the
    /// workload ended (including exec failure and timeout); `Err` is isol's own failure.
    /// `started` is called at most once, when the workload's process tree exists and is
    /// set up (see the module doc).
    fn run_observed(self, started: &mut dyn FnMut(&Started)) -> Result<WorkloadExit, Self::Error>;

    /// [`Prepared::run_observed`] with nobody to tell: the foreground run.
    fn run(self) -> Result<WorkloadExit, Self::Error>
    where
        Self: Sized,
    {
        self.run_observed(&mut |_| {})
    }
}
