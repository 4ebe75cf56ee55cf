//! isol-runs: what a detached run leaves on the host while it lives, and how isol's
//! commands talk to its supervisor.
//!
//! - [`state`]: `state.json`, the run's record (id, name, mode, command, state,
//!   supervisor and workload pids, times, exit code), replaced atomically (write + rename).
//! - [`store`]: the state directory (`/run/isol/runs/<id>/` for root, `--root DIR` moves
//!   it), random hex ids, unique names under a lock, lookup by id, id prefix or name.
//! - [`proto`]: the control socket's JSON protocol (one request line, one answer line).
//!
//! - [`process`]: the double fork that detaches a supervisor, and pidfds.
//!
//! No namespace or backend knowledge: the supervisor itself is the CLI's
//! (`src/lifecycle/supervise.rs`).
#![warn(missing_docs)]

pub mod process;
pub mod proto;
pub mod state;
pub mod store;

pub use state::{RunState, Status};
pub use store::{RunsError, Store};
