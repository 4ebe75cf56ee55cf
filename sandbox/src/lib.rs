//! isol-sandbox: everything that happens between "a root directory exists" and `execve` of
//! the workload, written once and used by both modes: by the container backend
//! (`isol-container`) on the host and by the guest init (`isol-guest`) inside the microVM.
//!
//! Each backend keeps only what is really its own: the container backend its namespaces,
//! overlay and pivot_root; the guest its 9P overlay, switch of root and channel.
#![warn(missing_docs)]

pub mod cgroup;
pub mod exec;
pub mod jail;
pub mod net;
pub mod privdrop;
pub mod report;
pub mod rlimit;
pub mod seccomp;
pub mod stub;
pub mod supervisor;
pub mod syscall;
pub mod view;
pub mod workload;
