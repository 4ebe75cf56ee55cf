//! `isol run -d`: the caller's side. It resolves the spec (bad input fails here, before
//! anything exists), creates the run's directory under the name lock, saves what `isol
//! exec` needs to rebuild the workload's sandbox, detaches the supervisor (double fork,
//! `setsid`) and waits on a pipe until the supervisor says the workload started (then it
//! prints the id) or why it could not start (then the supervisor has removed everything
//! and isol exits 125 with that error).

use std::io::Write;
use std::os::fd::OwnedFd;
use std::path::Path;

use isol_runs::process::{detach, Detached};
use isol_runs::store::new_id;
use isol_runs::{RunState, Status, Store};
use nix::fcntl::OFlag;

use super::{supervise, Failure};
use crate::cli::RunArgs;
use crate::run::{block_forwarded_signals, resolve_spec, CliResult};

/// What `isol exec` reads back: the `isol run` command line and its directory.
pub const ARGS_FILE: &str = "run-args.json";
/// The spec file's copy (`--spec`), so a later edit does not change `isol exec`.
pub const SPEC_COPY: &str = "spec.toml";

/// The supervisor's first message: `ok` or `err TEXT`, ended by a NUL byte (the
/// container's init inherits the pipe, so its end is not the end of the message).
pub const END: u8 = 0;

/// `isol run -d`.
pub fn run_detached(store: &Store, args: &RunArgs) -> CliResult {
    if args.term.tty {
        // A detached run has nobody at its terminal until `isol attach` exists.
        return Err(
            "-t/--tty with -d (--detach): a detached run cannot have a terminal yet \
                    (isol attach is not implemented); use -it in the foreground, or -d \
                    without -t"
                .into(),
        );
    }
    block_forwarded_signals()?;
    let spec = resolve_spec(&args.workload, args.mode.clone())?;
    let me = nix::unistd::getpid().as_raw();
    let state = RunState {
        id: new_id()?,
        name: args.detach.name.clone(),
        mode: spec.mode.to_string(),
        command: spec.args.clone(),
        state: Status::Created,
        supervisor_pid: me,
        supervisor_start: isol_container::record::start_time(me).unwrap_or(0),
        pid: None,
        cgroups: Vec::new(),
        created: isol_runs::state::now(),
        started: None,
        finished: None,
        exit_code: None,
        message: None,
    };
    let dir = store.create(&state)?;
    let undo = |e: Failure| -> CliResult {
        let _ = store.remove(&state.id);
        Err(e)
    };
    if let Err(e) = save_args(&dir, args) {
        return undo(e);
    }
    let (r, w) = match nix::unistd::pipe2(OFlag::O_CLOEXEC) {
        Ok(p) => p,
        Err(e) => return undo(e.into()),
    };
    match detach() {
        Err(e) => undo(format!("Cannot start the run's supervisor (fork): {e}").into()),
        Ok(Detached::Daemon) => {
            drop(r);
            std::process::exit(supervise::main(store, state, &spec, args, w))
        }
        Ok(Detached::Caller) => {
            drop(w);
            match first_message(&r) {
                Some(m) if m == b"ok" => {
                    println!("{}", state.id);
                    Ok(0)
                }
                Some(m) => {
                    let text = String::from_utf8_lossy(m.strip_prefix(b"err ").unwrap_or(&m));
                    undo(text.into_owned().into())
                }
                None => {
                    // The supervisor died before saying anything: clean what it left.
                    let _ = isol_container::gc();
                    undo("The run's supervisor died before the workload started".into())
                }
            }
        }
    }
}

/// Reads up to the first NUL byte (or the end of the pipe: `None` if nothing came).
fn first_message(r: &OwnedFd) -> Option<Vec<u8>> {
    let mut msg = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match nix::unistd::read(r, &mut buf) {
            Ok(0) => return None,
            Ok(n) => {
                msg.extend_from_slice(&buf[..n]);
                if let Some(end) = msg.iter().position(|&b| b == END) {
                    msg.truncate(end);
                    return Some(msg);
                }
            }
            Err(nix::errno::Errno::EINTR) => {}
            Err(_) => return None,
        }
    }
}

/// Saves the command line (and a copy of the spec file) for `isol exec`.
fn save_args(dir: &Path, args: &RunArgs) -> Result<(), Failure> {
    if let Some(spec) = &args.workload.spec {
        let text = std::fs::read(spec)?;
        isol_runs::state::private_file(&dir.join(SPEC_COPY))?.write_all(&text)?;
    }
    let saved = serde_json::json!({
        "argv": std::env::args().collect::<Vec<_>>(),
        "cwd": std::env::current_dir()?.to_string_lossy(),
    });
    isol_runs::state::private_file(&dir.join(ARGS_FILE))?
        .write_all(saved.to_string().as_bytes())?;
    Ok(())
}
