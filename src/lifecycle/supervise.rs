//! The per-run supervisor (conmon/containerd-shim style): a detached copy of `isol run
//! -d` that holds the workload through the backend's own `prepare().run_observed()`,
//! the very path of a foreground run (container: the init; VM: the VMM). It
//! - has `/` as cwd, /dev/null as stdin, and the run's `stdout.log` / `stderr.log` as
//!   stdout and stderr, which the workload inherits (byte-exact, kept apart); no other
//!   fd of its caller;
//! - keeps the forwarded signals blocked, so SIGTERM/SIGINT/SIGHUP/SIGQUIT sent to it
//!   reach the workload as in a foreground run; `--timeout` is the backend's;
//! - once the backend says the workload started: records `running`, serves the control
//!   socket ([`super::server`]) and tells the caller `ok`;
//! - at the end records `exited` with the exit code (run's convention) and removes its
//!   socket. If preparation fails, it removes the run's directory and tells the caller
//!   why (nothing is left behind).

use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::os::unix::net::UnixListener;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use isol_common::{Backend, Mode, Prepared, Started, WorkloadExit, WorkloadSpec};
use isol_container::{ContainerBackend, ContainerOptions};
use isol_runs::process::{close_fds_except, pidfd_open};
use isol_runs::proto::SOCKET_FILE;
use isol_runs::{RunState, Status, Store};
use isol_vmm::VmBackend;

use super::detach::END;
use super::server::{self, Shared};
use super::{chain_text, Failure, STDERR_LOG, STDOUT_LOG};
use crate::cli::RunArgs;

/// How long the supervisor lets answers in flight finish after the end.
const DRAIN: Duration = Duration::from_secs(5);

/// The supervisor's life; its exit code.
pub fn main(
    store: &Store,
    state: RunState,
    spec: &WorkloadSpec,
    args: &RunArgs,
    tell: OwnedFd,
) -> i32 {
    let dir = store.dir(&state.id);
    let mut tell = Some(tell);
    let setup = (|| -> Result<(UnixListener, Arc<Shared>), Failure> {
        let listener = take_stdio(&dir, tell.as_ref())?;
        let mut state = state.clone();
        state.supervisor_pid = nix::unistd::getpid().as_raw();
        state.supervisor_start =
            isol_container::record::start_time(state.supervisor_pid).unwrap_or(0);
        state.write(&dir)?;
        Ok((listener, Shared::new(state)))
    })();
    let (listener, shared) = match setup {
        Ok(s) => s,
        Err(e) => return refuse(store, &state.id, tell.as_ref(), &chain_text(&*e)),
    };
    let mut listener = Some(listener);
    let mut on_start = |s: &Started| {
        started(&dir, &shared, s, listener.take());
        if let Some(fd) = tell.take() {
            let _ = nix::unistd::write(&fd, b"ok\0");
        }
    };
    let result = match spec.mode {
        Mode::Container => drive(
            &ContainerBackend::new(ContainerOptions {
                verbose: args.workload.verbose,
            }),
            spec,
            &mut on_start,
        ),
        Mode::Vm => drive(
            &VmBackend::new(crate::run::vm_options(&args.workload, &crate::run::EnvVars)),
            spec,
            &mut on_start,
        ),
    };
    match (&tell, &result) {
        // It never started: the caller reports the error, nothing stays.
        (Some(fd), Err(e)) => refuse(store, &state.id, Some(fd), e),
        (Some(fd), Ok(_)) => {
            // It ran and ended before its start was seen: recorded, then reported.
            let code = finish(&dir, &shared, result);
            let _ = nix::unistd::write(fd, b"ok\0");
            code
        }
        (None, _) => finish(&dir, &shared, result),
    }
}

fn drive<B: Backend>(
    backend: &B,
    spec: &WorkloadSpec,
    on_start: &mut dyn FnMut(&Started),
) -> Result<WorkloadExit, String> {
    backend
        .prepare(spec)
        .and_then(|p| p.run_observed(on_start))
        .map_err(|e| chain_text(&e))
}

/// stdin /dev/null, stdout and stderr to the logs, cwd `/`, no inherited fd but
/// `keep`; and the control socket, bound (mode 0600) but not yet served.
fn take_stdio(dir: &Path, keep: Option<&OwnedFd>) -> Result<UnixListener, Failure> {
    std::env::set_current_dir("/")?;
    let log = |name: &str| {
        std::fs::OpenOptions::new()
            .create_new(true)
            .write(true)
            .mode(0o600)
            .open(dir.join(name))
    };
    let (out, err) = (log(STDOUT_LOG)?, log(STDERR_LOG)?);
    nix::unistd::dup2_stdin(std::fs::File::open("/dev/null")?)?;
    nix::unistd::dup2_stdout(&out)?;
    nix::unistd::dup2_stderr(&err)?;
    drop((out, err));
    let old = nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o077));
    let listener = UnixListener::bind(dir.join(SOCKET_FILE));
    nix::sys::stat::umask(old);
    let listener = listener?;
    std::fs::set_permissions(
        dir.join(SOCKET_FILE),
        std::fs::Permissions::from_mode(0o600),
    )?;
    let mut fds = vec![listener.as_raw_fd()];
    fds.extend(keep.map(AsRawFd::as_raw_fd));
    close_fds_except(&fds);
    Ok(listener)
}

/// The workload exists: record it, hold its pidfd, serve the socket.
fn started(dir: &Path, shared: &Arc<Shared>, s: &Started, listener: Option<UnixListener>) {
    // The pid is our unreaped child: pidfd_open cannot name another process.
    if let Ok(fd) = pidfd_open(s.pid) {
        *shared
            .pidfd
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(fd);
    }
    {
        let mut st = shared.lock();
        st.state = Status::Running;
        st.pid = Some(s.pid);
        st.cgroups.clone_from(&s.cgroups);
        st.started = Some(isol_runs::state::now());
        let _ = st.write(dir);
    }
    if let Some(l) = listener {
        let shared = Arc::clone(shared);
        let _ = std::thread::Builder::new()
            .name("accept".into())
            .spawn(move || server::serve(l, shared));
    }
}

/// Records the end, lets answers in flight go out, removes the socket.
fn finish(dir: &Path, shared: &Arc<Shared>, result: Result<WorkloadExit, String>) -> i32 {
    let code = {
        let mut st = shared.lock();
        let (code, message) = match &result {
            Ok(exit) => (exit.exit_code(), exit.message()),
            Err(e) => (
                isol_common::exit::EXIT_ISOL_ERROR,
                Some(format!("isol: {e}")),
            ),
        };
        st.state = Status::Exited;
        st.exit_code = Some(code);
        st.message = message;
        st.finished = Some(isol_runs::state::now());
        if let Err(e) = st.write(dir) {
            eprintln!("isol: cannot record the run's end: {e}");
        }
        code
    };
    *shared
        .pidfd
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner) = None;
    shared.ended.notify_all();
    let deadline = Instant::now() + DRAIN;
    while shared.active.load(Ordering::SeqCst) > 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    let _ = std::fs::remove_file(dir.join(SOCKET_FILE));
    code
}

/// Preparation failed: remove the run, tell the caller why.
fn refuse(store: &Store, id: &str, tell: Option<&OwnedFd>, text: &str) -> i32 {
    let _ = store.remove(id);
    if let Some(fd) = tell {
        let mut msg = b"err ".to_vec();
        msg.extend_from_slice(text.as_bytes());
        msg.push(END);
        let _ = nix::unistd::write(fd, &msg);
    }
    isol_common::exit::EXIT_ISOL_ERROR
}
