//! isol-common: the workload spec shared by both isolation modes, its validation, the
//! exit-status convention, and the traits the container and VM backends implement.
//!
//! This crate knows nothing of clap, KVM or nix: it is plain data and plain checks, so that
//! both backends receive exactly the same validated [`WorkloadSpec`].
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod backend;
pub mod elf;
pub mod exit;
pub mod paths;
pub mod rootfs;
pub mod security;
pub mod size;
pub mod spec;

pub use backend::{Backend, Prepared, Started};
pub use exit::{ExecFailure, WorkloadExit};
pub use spec::{Mode, Overrides, SpecError, WorkloadSpec};
