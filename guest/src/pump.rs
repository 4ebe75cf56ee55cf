//! The init's main loop while the workload runs: moves the workload's stdout/stderr to
//! the host, the host's stdin to the workload, forwards pending signals, reaps every
//! child, and returns the workload's exit status once it has ended and its pipes are
//! drained.
//!
//! poll(2) wakes on pipe data and on SIGCHLD (a signalfd). The host cannot interrupt the
//! guest, so stdin and SIGNAL are polled: every 1 ms after activity, backing off to 20 ms
//! when idle.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

use isol_sandbox::report::{Outcome, Report};

use crate::host::Host;
use crate::protocol::{ExitReport, PAGE};
use crate::spawn::Workload;
use crate::sys::{self, Ctx, InitError};

const MIN_IDLE_MS: i32 = 1;
const MAX_IDLE_MS: i32 = 20;
/// Least time between two reads of the SIGNAL register.
const SIGNAL_EVERY: Duration = Duration::from_millis(2);

/// A signalfd for SIGCHLD (blocked in the init; the child unblocks it before exec).
pub fn sigchld_fd() -> Result<OwnedFd, InitError> {
    // SAFETY: the sigset calls only write the local set; sigprocmask/signalfd read it.
    let fd = unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGCHLD);
        libc::sigprocmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        libc::signalfd(-1, &set, libc::SFD_CLOEXEC | libc::SFD_NONBLOCK)
    };
    let fd = sys::cvt(fd).ctx(|| "create a signalfd for SIGCHLD".into())?;
    // SAFETY: signalfd returned a fresh descriptor that we own from here on.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// The init's stdin state.
struct Stdin {
    pipe: Option<OwnedFd>,
    pending: Vec<u8>,
}

/// Runs until the workload ends; returns its status.
pub fn run(host: &mut dyn Host, w: Workload, sigchld: &OwnedFd) -> Result<ExitReport, InitError> {
    for fd in [&w.stdin, &w.stdout, &w.stderr] {
        sys::set_nonblocking(fd.as_raw_fd())
            .ctx(|| "make the workload's pipes non-blocking".into())?;
    }
    let mut outs: [Option<OwnedFd>; 2] = [Some(w.stdout), Some(w.stderr)];
    let mut stdin = Stdin {
        pipe: Some(w.stdin),
        pending: Vec::new(),
    };
    let mut status = None;
    let mut idle_ms = MIN_IDLE_MS;
    let mut last_signal_check = Instant::now();
    let mut buf = vec![0u8; 16 * PAGE];
    loop {
        let mut fds = Vec::with_capacity(4);
        fds.push(pollfd(sigchld.as_raw_fd(), libc::POLLIN));
        for o in outs.iter().flatten() {
            fds.push(pollfd(o.as_raw_fd(), libc::POLLIN));
        }
        let stdin_ready = !stdin.pending.is_empty();
        if let (Some(p), true) = (&stdin.pipe, stdin_ready) {
            fds.push(pollfd(p.as_raw_fd(), libc::POLLOUT));
        }
        // fds.len() is at most 4.
        #[allow(clippy::cast_possible_truncation)]
        // SAFETY: `fds` is a valid array of fds.len() pollfds.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, idle_ms) };
        let mut active = n > 0;
        active |= drain_outputs(host, &mut outs, &mut buf, false);
        active |= feed_stdin(host, &mut stdin);
        // SIGNAL costs a VM exit: while output streams, ask at most every SIGNAL_EVERY.
        let sig = if last_signal_check.elapsed() >= SIGNAL_EVERY {
            last_signal_check = Instant::now();
            host.signal()
        } else {
            0
        };
        if sig != 0 {
            // Signal numbers are small; anything else fails in kill with EINVAL.
            #[allow(clippy::cast_possible_wrap)]
            // SAFETY: kill takes plain integers.
            unsafe {
                libc::kill(w.pid, sig as libc::c_int)
            };
            active = true;
        }
        drain_sigchld(sigchld);
        if status.is_none() {
            status = reap(w.pid, &w.exit);
        }
        if let Some(st) = status {
            drain_outputs(host, &mut outs, &mut buf, true);
            return Ok(st);
        }
        idle_ms = if active {
            MIN_IDLE_MS
        } else {
            (idle_ms * 2).min(MAX_IDLE_MS)
        };
    }
}

fn pollfd(fd: libc::c_int, events: libc::c_short) -> libc::pollfd {
    libc::pollfd {
        fd,
        events,
        revents: 0,
    }
}

/// Most bytes the final drain takes from each pipe once the workload has exited: what it
/// wrote is at most a pipe buffer (64 KiB); more comes only from background processes
/// that still write, which must not keep the VM alive forever.
const FINAL_DRAIN_MAX: usize = 4 << 20;

/// Moves what the output pipes hold to the host; with `all`, until they are empty (or
/// [`FINAL_DRAIN_MAX`]). Returns whether anything moved.
fn drain_outputs(
    host: &mut dyn Host,
    outs: &mut [Option<OwnedFd>; 2],
    buf: &mut [u8],
    all: bool,
) -> bool {
    let mut moved = false;
    for (i, slot) in outs.iter_mut().enumerate() {
        let Some(fd) = slot else { continue };
        let mut budget = FINAL_DRAIN_MAX;
        loop {
            match sys::read(fd.as_raw_fd(), buf) {
                Ok(0) => {
                    *slot = None;
                    break;
                }
                Ok(n) => {
                    host.output(i == 1, &buf[..n]);
                    moved = true;
                    budget = budget.saturating_sub(n);
                    if !all || budget == 0 {
                        break;
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(_) => {
                    *slot = None;
                    break;
                }
            }
        }
    }
    moved
}

/// Fetches stdin from the host when nothing is pending and writes what is pending to
/// the workload. Returns whether anything moved.
fn feed_stdin(host: &mut dyn Host, s: &mut Stdin) -> bool {
    let Some(pipe) = &s.pipe else { return false };
    let mut moved = false;
    if s.pending.is_empty() {
        if !host.recv_stdin(&mut s.pending) {
            s.pipe = None; // Closing the write end gives the workload EOF.
            return true;
        }
        if s.pending.is_empty() {
            return false;
        }
        moved = true;
    }
    match sys::write(pipe.as_raw_fd(), &s.pending) {
        Ok(n) => {
            s.pending.drain(..n);
            moved = true;
        }
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
        Err(_) => {
            // EPIPE: the workload closed its stdin; the rest is dropped.
            s.pipe = None;
            s.pending.clear();
        }
    }
    moved
}

fn drain_sigchld(fd: &OwnedFd) {
    let mut buf = [0u8; 128];
    while matches!(sys::read(fd.as_raw_fd(), &mut buf), Ok(n) if n > 0) {}
}

/// Reaps every exited child; once the workload's init is gone, the workload's end from
/// the exit pipe (or the init's own, if it died before writing it, e.g. by SIGKILL).
fn reap(workload: libc::pid_t, exit: &OwnedFd) -> Option<ExitReport> {
    let st = sys::reap_children(workload)?;
    let reports = crate::spawn::read_all(exit).unwrap_or_default();
    match Report::outcome(&reports) {
        Some(Outcome::Exited(code)) => Some(ExitReport::Exited(code)),
        Some(Outcome::Signaled(sig)) => u8::try_from(sig).ok().map(ExitReport::Signaled),
        Some(Outcome::Exec(e)) => Some(ExitReport::ExecFailed(u32::try_from(e).unwrap_or(0))),
        Some(Outcome::Setup { errno, .. }) => {
            eprintln!("isol-init: the workload's init failed: {reports:?}");
            Some(ExitReport::InitFailed(u32::try_from(errno).unwrap_or(0)))
        }
        None => decode_wait(st),
    }
}

/// Turns a wait status into a report (`None` for stop/continue notifications).
pub fn decode_wait(st: libc::c_int) -> Option<ExitReport> {
    if libc::WIFEXITED(st) {
        u8::try_from(libc::WEXITSTATUS(st) & 0xff)
            .ok()
            .map(ExitReport::Exited)
    } else if libc::WIFSIGNALED(st) {
        u8::try_from(libc::WTERMSIG(st))
            .ok()
            .map(ExitReport::Signaled)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_decode_wait_exit_and_signal() {
        assert_eq!(decode_wait(7 << 8), Some(ExitReport::Exited(7)));
        assert_eq!(decode_wait(9), Some(ExitReport::Signaled(9)));
        assert_eq!(decode_wait(0x137f), None); // stopped
    }
}
