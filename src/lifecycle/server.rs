//! The control socket, served by the run's supervisor from the moment its workload has
//! started: one thread accepts, one short-lived thread per connection answers
//! (isol-runs' `proto`). Only the socket's owner may connect (mode 0600 in a 0700
//! directory), and a peer whose uid is not the supervisor's is dropped unanswered.

use std::io::Write;
use std::os::fd::OwnedFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

use isol_runs::process::pidfd_send_signal;
use isol_runs::proto::{self, Request, Response};
use isol_runs::{RunState, Status};

/// What the supervisor's threads share.
#[derive(Debug)]
pub struct Shared {
    /// The run's record (written to state.json on every change).
    pub state: Mutex<RunState>,
    /// Notified when the state becomes `exited`.
    pub ended: Condvar,
    /// The workload's process (a child of the supervisor: this pidfd names it for good).
    pub pidfd: Mutex<Option<OwnedFd>>,
    /// Connections being answered.
    pub active: AtomicUsize,
}

impl Shared {
    /// A record with nobody started yet.
    pub fn new(state: RunState) -> Arc<Shared> {
        Arc::new(Shared {
            state: Mutex::new(state),
            ended: Condvar::new(),
            pidfd: Mutex::new(None),
            active: AtomicUsize::new(0),
        })
    }

    /// The record, locked (a poisoned lock still holds a usable record).
    pub fn lock(&self) -> MutexGuard<'_, RunState> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn signal(&self, sig: i32) -> Result<(), String> {
        let fd = self
            .pidfd
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let fd = fd.as_ref().ok_or("the workload has not started")?;
        pidfd_send_signal(fd, sig).map_err(|e| format!("cannot send signal {sig}: {e}"))
    }

    /// Waits until the run has ended, or `limit` has passed; true when it has ended.
    fn wait_end(&self, limit: Option<Duration>) -> bool {
        let guard = self.lock();
        let ended = |s: &mut RunState| s.state != Status::Exited;
        match limit {
            None => {
                drop(self.ended.wait_while(guard, ended));
                true
            }
            Some(t) => match self.ended.wait_timeout_while(guard, t, ended) {
                Ok((s, _)) => s.state == Status::Exited,
                Err(_) => false,
            },
        }
    }
}

/// Accepts connections until the process ends.
pub fn serve(listener: UnixListener, shared: Arc<Shared>) {
    let me = nix::unistd::geteuid().as_raw();
    for conn in listener.incoming() {
        let Ok(conn) = conn else { continue };
        let peer = nix::sys::socket::getsockopt(&conn, nix::sys::socket::sockopt::PeerCredentials);
        if !peer.is_ok_and(|c| c.uid() == me) {
            continue;
        }
        let mine = Arc::clone(&shared);
        shared.active.fetch_add(1, Ordering::SeqCst);
        let spawned = std::thread::Builder::new()
            .name("control".into())
            .spawn(move || {
                answer(conn, &mine);
                mine.active.fetch_sub(1, Ordering::SeqCst);
            });
        if spawned.is_err() {
            // The connection was dropped with the closure, unanswered.
            shared.active.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

fn answer(mut conn: UnixStream, shared: &Shared) {
    let response = match proto::read_line(&conn).map_err(|e| e.to_string()) {
        Ok(line) => match proto::parse_request(&line) {
            Ok(req) => handle(&req, shared),
            Err(e) => Response::error(e),
        },
        Err(e) => Response::error(e),
    };
    let mut line = serde_json::to_string(&response).unwrap_or_default();
    line.push('\n');
    let _ = conn.write_all(line.as_bytes());
}

fn running(shared: &Shared) -> Result<(), String> {
    match shared.lock().state {
        Status::Exited => Err("the run has exited".into()),
        _ => Ok(()),
    }
}

/// Carries out one request.
pub fn handle(req: &Request, shared: &Shared) -> Response {
    let result = match *req {
        Request::State => Ok(()),
        Request::Signal { signal } => {
            if !(1..=64).contains(&signal) {
                Err(format!("no signal {signal}: use 1-64"))
            } else {
                running(shared).and_then(|()| shared.signal(signal))
            }
        }
        Request::Stop { timeout_secs } => {
            if !(0.0..1e9).contains(&timeout_secs) {
                Err(format!(
                    "bad stop timeout {timeout_secs}: use 0 or more seconds"
                ))
            } else {
                stop(shared, Duration::from_secs_f64(timeout_secs))
            }
        }
        Request::Wait => {
            shared.wait_end(None);
            Ok(())
        }
    };
    match result {
        Ok(()) => Response::state(shared.lock().clone()),
        Err(e) => Response::error(e),
    }
}

/// SIGTERM, SIGKILL after `grace` (at once with 0), then the end.
fn stop(shared: &Shared, grace: Duration) -> Result<(), String> {
    if shared.lock().state == Status::Exited {
        return Ok(());
    }
    if grace.is_zero() || {
        shared.signal(libc::SIGTERM)?;
        !shared.wait_end(Some(grace))
    } {
        // The end may have come meanwhile: a failed SIGKILL then is no error.
        let _ = shared.signal(libc::SIGKILL);
    }
    shared.wait_end(None);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state() -> RunState {
        serde_json::from_value(serde_json::json!({
            "id": "ab", "name": null, "mode": "container", "command": ["x"],
            "state": "running", "supervisor_pid": 1, "supervisor_start": 1, "pid": 2,
            "created": 0, "started": 0, "finished": null, "exit_code": null, "message": null
        }))
        .unwrap()
    }

    #[test]
    fn test_handle_state_bad_signal_and_exited() {
        let s = Shared::new(state());
        let r = handle(&Request::State, &s);
        assert!(r.ok && r.state.unwrap().id == "ab");
        let r = handle(&Request::Signal { signal: 99 }, &s);
        assert!(!r.ok && r.error.unwrap().contains("1-64"));
        let r = handle(&Request::Signal { signal: 15 }, &s);
        assert!(!r.ok && r.error.unwrap().contains("not started"));
        s.lock().state = Status::Exited;
        let r = handle(&Request::Signal { signal: 15 }, &s);
        assert!(!r.ok && r.error.unwrap().contains("exited"));
        assert!(handle(&Request::Stop { timeout_secs: 1.0 }, &s).ok);
        assert!(handle(&Request::Wait, &s).ok);
        assert!(!handle(&Request::Stop { timeout_secs: -1.0 }, &s).ok);
    }

    #[test]
    fn test_stop_signals_the_child_then_answers_at_its_end() {
        let mut child = std::process::Command::new("sleep")
            .arg("100")
            .spawn()
            .unwrap();
        let s = Shared::new(state());
        let pid = i32::try_from(child.id()).unwrap();
        *s.pidfd.lock().unwrap() = Some(isol_runs::process::pidfd_open(pid).unwrap());
        std::thread::scope(|sc| {
            let stopper = sc.spawn(|| handle(&Request::Stop { timeout_secs: 30.0 }, &s));
            let st = child.wait().unwrap();
            use std::os::unix::process::ExitStatusExt;
            assert_eq!(st.signal(), Some(libc::SIGTERM));
            s.lock().state = Status::Exited;
            s.ended.notify_all();
            assert!(stopper.join().unwrap().ok);
        });
    }
}
