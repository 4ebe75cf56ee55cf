//! Detached runs: `isol run -d`, its supervisor and control socket, and the commands
//! that find runs in the state directory (ps, logs, exec, kill, stop, wait, rm, inspect,
//! gc). The state directory, its files and the socket protocol are isol-runs'; the
//! protocol is documented in docs/lifecycle.md.

pub mod args;
pub mod commands;
pub mod detach;
pub mod exec;
mod server;
mod supervise;

use std::error::Error;
use std::path::{Path, PathBuf};

use isol_runs::proto::{self, Request, Response, SOCKET_FILE};
use isol_runs::{RunState, Status, Store};

/// The workload's stdout, in the run's directory.
pub const STDOUT_LOG: &str = "stdout.log";
/// The workload's stderr, in the run's directory.
pub const STDERR_LOG: &str = "stderr.log";

/// Errors printed with their causes; isol exits 125.
pub type Failure = Box<dyn Error + Send + Sync + 'static>;

/// The store at `--root DIR`, or the default location.
pub fn store(root: Option<&Path>) -> Store {
    Store::new(root.map_or_else(isol_runs::store::default_root, Path::to_path_buf))
}

/// Whether the run's supervisor is still the process its record names (same pid, same
/// start time, not a zombie).
pub fn supervisor_alive(s: &RunState) -> bool {
    isol_container::record::alive(s.supervisor_pid, s.supervisor_start)
}

/// What `ps` shows: the recorded state, or `unknown` when the supervisor died before the
/// workload's end was recorded.
pub fn status(s: &RunState) -> &'static str {
    match s.state {
        Status::Exited => "exited",
        _ if !supervisor_alive(s) => "unknown",
        Status::Created => "created",
        Status::Running => "running",
    }
}

/// The control socket of run `id`.
pub fn socket(store: &Store, id: &str) -> PathBuf {
    store.dir(id).join(SOCKET_FILE)
}

/// Sends `req` to the run's supervisor. When the supervisor is gone, the recorded state
/// answers for it if the run has ended; otherwise the error says so.
pub fn ask(store: &Store, s: &RunState, req: &Request) -> Result<RunState, Failure> {
    let answer = proto::call(&socket(store, &s.id), req);
    let answer = match answer {
        Ok(a) => a,
        Err(e) => {
            let now = RunState::read(&store.dir(&s.id)).unwrap_or_else(|_| s.clone());
            if now.state == Status::Exited {
                return Ok(now);
            }
            if !supervisor_alive(&now) {
                return Err(dead(&now).into());
            }
            return Err(
                format!("Cannot reach the supervisor of run {}: {e}", s.short_name()).into(),
            );
        }
    };
    match answer {
        Response {
            ok: true,
            state: Some(st),
            ..
        } => Ok(st),
        Response { error, .. } => Err(format!(
            "Run {}: {}",
            s.short_name(),
            error.unwrap_or_else(|| "the supervisor refused the request".into())
        )
        .into()),
    }
}

/// The message for a run whose supervisor died.
pub fn dead(s: &RunState) -> String {
    format!(
        "Run {}: its supervisor (pid {}) died; how the workload ended is unknown. \
         `isol rm {}` or `isol gc` cleans it up",
        s.short_name(),
        s.supervisor_pid,
        s.short_name()
    )
}

/// The text of an error and its causes, as `main` prints them (without the `isol: `).
pub fn chain_text(e: &(dyn Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(&format!("\n  caused by: {cause}"));
        source = cause.source();
    }
    text
}
