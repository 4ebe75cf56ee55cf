//! Errors of the container backend (isol exits 125 on any of them).

use std::path::PathBuf;

use nix::errno::Errno;

use crate::cgroup::CgroupError;
use crate::rootfs::PlanError;

/// A failure of isol's container backend (not of the workload).
#[derive(Debug, thiserror::Error)]
pub enum ContainerError {
    /// The CLI always fills the rootfs; a library caller may not.
    #[error("No root filesystem in the spec; pass --rootfs DIR")]
    NoRootfs,
    /// The container needs root (namespaces, mounts, cgroups).
    #[error("The container backend needs root (namespaces, mounts and cgroups); run isol as root")]
    NotRoot,
    /// The run's cgroups could not be planned or created.
    #[error("Cannot set up the run's cgroups")]
    Cgroup(#[source] CgroupError),
    /// The mount plan could not be made.
    #[error("Cannot prepare the container's root filesystem")]
    Plan(#[source] PlanError),
    /// The spec has a string the kernel cannot take (NUL byte).
    #[error("The {what} contains a NUL byte")]
    Nul {
        /// Which part of the spec.
        what: &'static str,
    },
    /// The run record could not be written.
    #[error("Cannot create the run record {path}; is {parent} writable?")]
    Record {
        /// The record directory.
        path: PathBuf,
        /// The run directory.
        parent: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// pipe2 or a write to the init failed.
    #[error("Cannot talk to the container's init through a pipe")]
    Pipe(#[source] Errno),
    /// clone(2) into new namespaces failed.
    #[error("Cannot create the container's namespaces (clone with CLONE_NEWPID|NEWNS|NEWUTS|NEWIPC|NEWNET)")]
    Clone(#[source] Errno),
    /// The init could not be moved into its cgroups.
    #[error("Cannot move the container into its cgroups")]
    Attach(#[source] CgroupError),
    /// signalfd for forwarded signals failed.
    #[error("Cannot take SIGINT/SIGTERM/SIGHUP/SIGQUIT for forwarding (signalfd)")]
    Signalfd(#[source] Errno),
    /// poll/read/waitpid on the container failed.
    #[error("Cannot wait for the container")]
    Wait(#[source] Errno),
    /// Setting up the container failed inside it.
    #[error("Container setup failed: cannot {what}")]
    Setup {
        /// The failed step.
        what: String,
        /// The kernel's answer.
        #[source]
        source: std::io::Error,
    },
    /// The spec's seccomp profile cannot be used.
    #[error("Cannot make the workload's seccomp filter")]
    Seccomp(#[source] isol_sandbox::seccomp::SeccompError),
    /// The pty master could not be received from the init (`-t`).
    #[error("Cannot receive the workload's terminal from the container's init")]
    Pty(#[source] Errno),
    /// The caller's side of `-t` failed.
    #[error("Cannot run the workload's terminal")]
    Terminal(#[source] isol_term::TermError),
    /// The bridge network could not be set up.
    #[error("Cannot set up the bridge network")]
    Network(#[source] isol_sandbox::net::host::NetError),
    /// The init exited without saying why.
    #[error("The container's init exited with status {code} without a report")]
    InitExited {
        /// Its exit code.
        code: i32,
    },
}
