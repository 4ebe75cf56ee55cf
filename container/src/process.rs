//! Starting the container and waiting for it, from isol's side: the clone that creates
//! the namespaces and the init, moving the init into its cgroups before it goes on,
//! forwarding signals isol receives (SIGINT, SIGTERM, SIGHUP, SIGQUIT, blocked by the CLI
//! and taken here with a signalfd), the timeout, and the outcome. Also the few
//! process-level primitives (clone, fork, _exit, signal reset) the container side uses:
//! with `syscall/linux.rs` and `pty.rs`, the only `unsafe` of this crate.
//!
//! With `-t` ([`Workload::terminal`](isol_sandbox::workload::Workload)), the init passes
//! back the master of a pty of the container's own devpts ([`crate::pty`]) and the same
//! wait loop also drives an [`isol_term::Session`] (caller's terminal raw, bytes both
//! ways, SIGWINCH -> TIOCSWINSZ); without it nothing of that exists or is polled.

use std::io::ErrorKind;
use std::os::fd::{AsFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

use isol_common::{ExecFailure, WorkloadExit};
use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sched::CloneFlags;
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::Pid;

use crate::cgroup::Cgroups;
use crate::error::ContainerError;
use crate::init::{self, ChildConfig};
use crate::namespaces;
use crate::pty;
pub use crate::signals::ISOL_FORWARDED;
use crate::signals::{forwarded_signalfd, tty_taken};
use isol_sandbox::report::{Outcome, Report};
use isol_term::{Session, Slot};

/// Clones the container's init into new namespaces; `None` in the child, else its pid
/// and a pidfd (readable once the init has exited and its namespace is empty).
pub(crate) fn clone_init(flags: CloneFlags) -> nix::Result<Option<(Pid, OwnedFd)>> {
    let flags = flags.bits() as libc::c_ulong
        | libc::CLONE_PIDFD as libc::c_ulong
        | libc::SIGCHLD as libc::c_ulong;
    let mut pidfd: libc::c_int = -1;
    // SAFETY: clone(2) without CLONE_VM and with a null stack behaves like fork(2): the
    // child gets a copy of the address space and continues on a copy of this stack. isol
    // is single-threaded when it runs a container (the CLI starts no threads), so no lock
    // is held by another thread in the copy. The child never returns into isol's code
    // path: it runs `init::init_main`, which ends with `_exit`. The only pointer passed
    // is `pidfd` (x86_64 argument order: flags, stack, parent_tid, child_tid, tls), a
    // live local the kernel writes the pidfd into (CLONE_PIDFD).
    let rc = unsafe {
        libc::syscall(
            libc::SYS_clone,
            flags,
            0usize,
            &mut pidfd as *mut libc::c_int,
            0usize,
            0usize,
        )
    };
    match Errno::result(rc)? {
        0 => Ok(None),
        pid => {
            // SAFETY: with CLONE_PIDFD the kernel stored a new fd in `pidfd` that nothing
            // else owns.
            let fd = unsafe { OwnedFd::from_raw_fd(pidfd) };
            // A pid always fits in i32.
            #[allow(clippy::cast_possible_truncation)]
            Ok(Some((Pid::from_raw(pid as i32), fd)))
        }
    }
}

/// The pipes between isol and the init (and, with `-t`, the socketpair the pty master
/// comes back on: isol's end, the init's end).
struct Pipes {
    report_r: OwnedFd,
    report_w: OwnedFd,
    sync: Option<(OwnedFd, OwnedFd)>,
    tty: Option<(OwnedFd, OwnedFd)>,
}

fn pipes(with_sync: bool, with_tty: bool) -> Result<Pipes, ContainerError> {
    let pipe = || nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(ContainerError::Pipe);
    let (report_r, report_w) = pipe()?;
    let sync = if with_sync { Some(pipe()?) } else { None };
    let tty = if with_tty {
        Some(pty::channel().map_err(ContainerError::Pty)?)
    } else {
        None
    };
    Ok(Pipes {
        report_r,
        report_w,
        sync,
        tty,
    })
}

pub(crate) fn reap(pid: Pid) -> Result<WaitStatus, ContainerError> {
    loop {
        match waitpid(pid, None) {
            Err(Errno::EINTR) => continue,
            r => return r.map_err(ContainerError::Wait),
        }
    }
}

/// Starts the container and waits for the workload to end (or the timeout).
pub fn run(
    cfg: &ChildConfig,
    cgroups: &Cgroups,
    timeout: Option<Duration>,
    command: &str,
    net: Option<&isol_sandbox::net::host::Attachment>,
    started: &mut dyn FnMut(&isol_common::Started),
) -> Result<WorkloadExit, ContainerError> {
    let p = pipes(!cgroups.is_empty(), cfg.workload.terminal)?;
    let flags = namespaces::clone_flags(p.sync.is_some());
    let Some((pid, pidfd)) = clone_init(flags).map_err(ContainerError::Clone)? else {
        let Pipes {
            report_r,
            report_w,
            sync,
            tty,
        } = p;
        drop(report_r);
        let sync_r = sync.map(|(r, w)| {
            drop(w);
            r
        });
        let tty = tty.map(|(isol, init)| {
            drop(isol);
            init
        });
        init::init_main(cfg, report_w, sync_r, tty)
    };
    let Pipes {
        report_r,
        report_w,
        sync,
        tty,
    } = p;
    drop(report_w);
    let mut setup_done = None;
    let tty = tty.map(|(isol, init)| {
        drop(init);
        isol
    });
    if let Some((sync_r, sync_w)) = sync {
        drop(sync_r);
        let go = cgroups
            .attach(pid.as_raw())
            .map_err(ContainerError::Attach)
            .and_then(|()| match net {
                // A pid is positive.
                #[allow(clippy::cast_sign_loss)]
                Some(att) => {
                    crate::network::plug(att, pid.as_raw() as u32).map_err(ContainerError::Network)
                }
                None => Ok(()),
            })
            .and_then(|()| {
                nix::unistd::write(&sync_w, b"g")
                    .map(drop)
                    .map_err(ContainerError::Pipe)
            });
        if let Err(e) = go {
            let _ = kill(pid, Signal::SIGKILL);
            let status = reap(pid)?;
            // The init may have failed first (and exited, so it could not be attached):
            // its own report says why.
            let reports = read_reports(&report_r)?;
            return match outcome(&reports, status, false, command) {
                Err(setup @ ContainerError::Setup { .. }) => Err(setup),
                _ => Err(e),
            };
        }
        // The init closes its end once its own setup is done (see init.rs).
        setup_done = Some(sync_w);
    }
    // With -t: the master (none when the init failed first: its report says why), then
    // the caller's terminal goes raw until this function returns.
    let master = match tty.as_ref().map(pty::recv_master).transpose() {
        Ok(m) => m.flatten(),
        Err(e) => return abort(pid, ContainerError::Pty(e)),
    };
    if master.is_some() {
        if let Err(e) = tty_taken().thread_block() {
            return abort(pid, ContainerError::Signalfd(e));
        }
    }
    let mut session = match master.as_ref().map(|m| Session::start(m.as_fd())) {
        None => None,
        Some(Ok(s)) => Some(s),
        Some(Err(e)) => return abort(pid, ContainerError::Terminal(e)),
    };
    let mut start = Start {
        setup_done,
        report_r: &report_r,
        started,
        info: isol_common::Started {
            pid: pid.as_raw(),
            cgroups: cgroups.paths(),
        },
    };
    if start.setup_done.is_none() {
        start.fire();
    }
    let waited =
        wait(pid, &pidfd, timeout, Some(&mut start), session.as_mut()).and_then(|timed_out| {
            // The init is dead and its namespace empty: every writer of the pipe is gone.
            Ok((read_reports(&report_r)?, timed_out))
        });
    if waited.is_err() {
        let _ = kill(pid, Signal::SIGKILL);
    }
    let status = reap(pid)?;
    let (reports, timed_out) = waited?;
    outcome(&reports, status, timed_out, command)
}

/// Kills and reaps the init after isol's own failure.
fn abort(pid: Pid, e: ContainerError) -> Result<WorkloadExit, ContainerError> {
    let _ = kill(pid, Signal::SIGKILL);
    reap(pid)?;
    Err(e)
}

fn poll_timeout(deadline: Option<Instant>, timed_out: bool) -> PollTimeout {
    match deadline {
        Some(d) if !timed_out => {
            let left = d.saturating_duration_since(Instant::now());
            // Round up so we never wake just before the deadline and spin.
            let ms = left.as_micros().div_ceil(1000);
            PollTimeout::try_from(ms).unwrap_or(PollTimeout::MAX)
        }
        _ => PollTimeout::NONE,
    }
}

/// The started hook, fired once the init has finished setting up the container (it
/// closed its end of the sync pipe) without reporting a failure: from then on only the
/// workload's own last steps before its execve can fail.
pub(crate) struct Start<'a> {
    /// Our end of the sync pipe, until the setup is done.
    pub setup_done: Option<OwnedFd>,
    /// The report pipe: a report already there when the setup is done means it failed
    /// (or the workload has ended already: `run_observed`'s caller sees the end).
    pub report_r: &'a OwnedFd,
    /// The hook.
    pub started: &'a mut dyn FnMut(&isol_common::Started),
    /// What it is told.
    pub info: isol_common::Started,
}

impl Start<'_> {
    /// Fires the hook.
    pub fn fire(&mut self) {
        self.setup_done = None;
        (self.started)(&self.info);
    }

    /// The init closed its end of the sync pipe: fire unless a report is waiting.
    fn setup_ended(&mut self) {
        let mut fds = [PollFd::new(self.report_r.as_fd(), PollFlags::POLLIN)];
        if poll(&mut fds, PollTimeout::ZERO).is_ok_and(|n| n > 0) {
            self.setup_done = None;
        } else {
            self.fire();
        }
    }
}

/// Waits until the init has exited (its pidfd is readable), forwarding signals and
/// enforcing the timeout; true when the timeout fired. Waiting on the pidfd rather than
/// on the report pipe wakes isol once at the end instead of once per message (and once
/// more when the container's setup is done, for `start`'s hook). With a terminal `tty`,
/// the same loop pumps its bytes and follows SIGWINCH.
pub(crate) fn wait(
    pid: Pid,
    pidfd: &OwnedFd,
    timeout: Option<Duration>,
    mut start: Option<&mut Start<'_>>,
    mut tty: Option<&mut Session<'_>>,
) -> Result<bool, ContainerError> {
    // SIGWINCH is blocked (pending, not lost) since before Session::start's resize.
    let sigfd = forwarded_signalfd(tty.is_some())?;
    let deadline = timeout.map(|t| Instant::now() + t);
    let mut timed_out = false;
    loop {
        let (slots, tty_fds): (Vec<Slot>, Vec<PollFd>) = tty
            .as_deref()
            .map(|t| t.pump.interests())
            .unwrap_or_default()
            .into_iter()
            .unzip();
        let mut fds = vec![
            PollFd::new(pidfd.as_fd(), PollFlags::POLLIN),
            PollFd::new(sigfd.as_fd(), PollFlags::POLLIN),
        ];
        // A pipe's write end polls POLLERR once every read end is closed.
        let setup_fd = start.as_ref().and_then(|s| s.setup_done.as_ref());
        if let Some(fd) = setup_fd {
            fds.push(PollFd::new(fd.as_fd(), PollFlags::empty()));
        }
        let tty_base = fds.len();
        fds.extend(tty_fds);
        match poll(&mut fds, poll_timeout(deadline, timed_out)) {
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(ContainerError::Wait(e)),
            Ok(_) => {}
        }
        let revents: Vec<PollFlags> = fds
            .iter()
            .map(|f| f.revents().unwrap_or(PollFlags::empty()))
            .collect();
        drop(fds);
        let ready = |i: usize| revents.get(i).is_some_and(|r| !r.is_empty());
        let (exited, sig_ready) = (ready(0), ready(1));
        if tty_base == 3 && ready(2) {
            if let Some(s) = start.as_mut() {
                s.setup_ended();
            }
        }
        if sig_ready {
            while let Ok(Some(info)) = sigfd.read_signal() {
                match (Signal::try_from(info.ssi_signo as i32), tty.as_deref()) {
                    (Ok(Signal::SIGWINCH), Some(t)) => t.resize(),
                    (Ok(sig), _) => drop(kill(pid, sig)),
                    (Err(_), _) => {}
                }
            }
        }
        if let Some(t) = tty.as_deref_mut() {
            for (i, slot) in slots.iter().enumerate() {
                t.pump
                    .ready(*slot, revents[i + tty_base])
                    .map_err(ContainerError::Terminal)?;
            }
        }
        if exited {
            if let Some(t) = tty {
                t.pump.finish().map_err(ContainerError::Terminal)?;
            }
            return Ok(timed_out);
        }
        if !timed_out && deadline.is_some_and(|d| Instant::now() >= d) {
            let _ = kill(pid, Signal::SIGKILL);
            timed_out = true;
        }
    }
}

/// Reads the report pipe to its end.
pub(crate) fn read_reports(report_r: &OwnedFd) -> Result<Vec<Report>, ContainerError> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        match nix::unistd::read(report_r, &mut chunk) {
            Ok(0) => return Ok(Report::decode_all(&buf)),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(Errno::EINTR) => {}
            Err(e) => return Err(ContainerError::Wait(e)),
        }
    }
}

/// How the run ended, from the init's reports and its own wait status.
pub fn outcome(
    reports: &[Report],
    init_status: WaitStatus,
    timed_out: bool,
    command: &str,
) -> Result<WorkloadExit, ContainerError> {
    if timed_out {
        return Ok(WorkloadExit::TimedOut);
    }
    match Report::outcome(reports) {
        Some(Outcome::Setup { what, errno }) => {
            return Err(ContainerError::Setup {
                what,
                source: std::io::Error::from_raw_os_error(errno),
            })
        }
        Some(Outcome::Exec(errno)) => {
            return Ok(WorkloadExit::ExecFailed {
                failure: ExecFailure::from_errno(errno),
                command: command.to_string(),
            })
        }
        Some(Outcome::Exited(code)) => return Ok(WorkloadExit::Exited(code)),
        Some(Outcome::Signaled(sig)) => return Ok(WorkloadExit::Signaled(sig)),
        None => {}
    }
    match init_status {
        // The init itself was killed (kill -9 of PID 1, OOM): the workload died with it.
        WaitStatus::Signaled(_, sig, _) => Ok(WorkloadExit::Signaled(sig as i32)),
        WaitStatus::Exited(_, code) => Err(ContainerError::InitExited { code }),
        other => Err(ContainerError::InitExited {
            code: -(other.pid().map_or(0, Pid::as_raw)),
        }),
    }
}

/// Whether an io error means "already gone".
pub fn is_not_found(e: &std::io::Error) -> bool {
    e.kind() == ErrorKind::NotFound
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pid() -> Pid {
        Pid::from_raw(42)
    }

    #[test]
    fn test_outcome_exit_code_and_signal() {
        let ok = WaitStatus::Exited(pid(), 0);
        assert_eq!(
            outcome(&[Report::Exited(7)], ok, false, "x").unwrap(),
            WorkloadExit::Exited(7)
        );
        assert_eq!(
            outcome(&[Report::Signaled(9)], ok, false, "x").unwrap(),
            WorkloadExit::Signaled(9)
        );
    }

    #[test]
    fn test_outcome_exec_failure_wins_over_exit() {
        let r = outcome(
            &[Report::Exec(2), Report::Exited(127)],
            WaitStatus::Exited(pid(), 0),
            false,
            "nope",
        )
        .unwrap();
        assert_eq!(r.exit_code(), 127);
        let r = outcome(
            &[Report::Exec(13), Report::Exited(127)],
            WaitStatus::Exited(pid(), 0),
            false,
            "f",
        )
        .unwrap();
        assert_eq!(r.exit_code(), 126);
    }

    #[test]
    fn test_outcome_timeout_wins() {
        let st = WaitStatus::Signaled(pid(), Signal::SIGKILL, false);
        assert_eq!(outcome(&[], st, true, "x").unwrap(), WorkloadExit::TimedOut);
    }

    #[test]
    fn test_outcome_init_killed_without_report_is_signal() {
        let st = WaitStatus::Signaled(pid(), Signal::SIGKILL, false);
        assert_eq!(
            outcome(&[], st, false, "x").unwrap(),
            WorkloadExit::Signaled(9)
        );
    }

    #[test]
    fn test_outcome_setup_failure_is_error_with_step() {
        let r = [Report::Setup {
            what: "mount proc on /x".into(),
            errno: 1,
        }];
        let e = outcome(&r, WaitStatus::Exited(pid(), 1), false, "x").unwrap_err();
        assert_eq!(
            e.to_string(),
            "Container setup failed: cannot mount proc on /x"
        );
    }

    #[test]
    fn test_outcome_init_exit_without_report_is_error() {
        assert!(outcome(&[], WaitStatus::Exited(pid(), 1), false, "x").is_err());
    }

    #[test]
    fn test_poll_timeout_rounds_up_and_none_after_timeout() {
        assert_eq!(poll_timeout(None, false), PollTimeout::NONE);
        let d = Instant::now() + Duration::from_micros(1500);
        let t: i32 = poll_timeout(Some(d), false).into();
        assert!((1..=2).contains(&t), "{t}");
        assert_eq!(poll_timeout(Some(d), true), PollTimeout::NONE);
    }
}
