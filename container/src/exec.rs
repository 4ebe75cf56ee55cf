//! `isol exec` in container mode: one more process inside a running container, in its
//! namespaces and cgroups, under exactly the workload's sandbox.
//!
//! The calling process (a throwaway `isol exec`), in this order:
//! 1. becomes non-dumpable (its memory and `/proc/PID/exe` out of reach, as the init);
//! 2. joins the run's cgroups (writes itself to each `cgroup.procs` while it still sees
//!    the host's cgroupfs), so the device allow-list and the limits hold for the new
//!    process from its first instruction;
//! 3. joins every namespace of the container's init at once with `setns(pidfd, flags)`
//!    (Linux 5.8): a pidfd, never `/proc/PID/ns/*` paths, so a recycled pid cannot send
//!    it elsewhere (the caller opens the pidfd, then checks with the run's supervisor,
//!    whose unreaped child the init is, that the pid is still its init);
//! 4. forks the exec'd process, the first of its children in the container's pid
//!    namespace; that child runs isol-sandbox's [`workload::exec`], the very steps the
//!    workload ran (session, keyring, rlimits, privilege drop, cwd, umask, signals, fds,
//!    seccomp, exec stub), so 126/127 come from the same stub;
//! 5. waits for it, forwarding SIGINT, SIGTERM, SIGHUP and SIGQUIT.
//!
//! The calling process stays outside the container's pid namespace: the workload cannot
//! see or signal it. The exec'd process gets the caller's stdio (the CLI puts /dev/null
//! on stdin without `-i`). With `-t` ([`Workload::terminal`]), between steps 3 and 4 it
//! opens a new pty in the container's own devpts (the mount namespace just joined, as
//! `isol run -t`'s init does: [`pty::open_pty`]); the exec'd process gets the slave as
//! its stdio and controlling terminal, and this process pumps the master to the
//! caller's terminal (raw until it returns) and follows SIGWINCH.

use std::os::fd::{AsRawFd, OwnedFd};
use std::path::PathBuf;

use isol_common::{ExecFailure, WorkloadExit};
use isol_sandbox::report::{Outcome, Report};
use isol_sandbox::supervisor::exit_now;
use isol_sandbox::workload::{self, Workload};
use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::sched::CloneFlags;
use nix::sys::wait::WaitStatus;

use crate::signals::tty_taken;
use crate::syscall::linux::LinuxSyscall;
use crate::{process, pty};

/// Why `isol exec` could not run its command.
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    /// Joining one of the run's cgroups failed.
    #[error("Cannot join the run's cgroup {path}")]
    JoinCgroup {
        /// The cgroup.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// setns on the init's pidfd failed.
    #[error("Cannot join the container's namespaces (setns on the init's pidfd)")]
    Setns(#[source] Errno),
    /// A process-level step failed (non-dumpable, pipe, fork, wait).
    #[error("Cannot {what}")]
    Process {
        /// The step.
        what: &'static str,
        /// The kernel's answer.
        #[source]
        source: Errno,
    },
    /// Waiting for the exec'd process failed.
    #[error("Cannot wait for the exec'd process")]
    Wait(#[source] crate::ContainerError),
    /// The exec's pty could not be opened in the container's devpts.
    #[error("Cannot {what} for isol exec -t")]
    Pty {
        /// The step.
        what: &'static str,
        /// The kernel's answer.
        #[source]
        source: Errno,
    },
    /// The caller's side of the terminal failed.
    #[error("Cannot run isol exec -t's terminal")]
    Terminal(#[source] isol_term::TermError),
    /// The sandbox steps before execve failed.
    #[error("Exec setup failed: cannot {what}")]
    Setup {
        /// The failed step.
        what: String,
        /// The kernel's answer.
        #[source]
        source: std::io::Error,
    },
}

/// Every namespace the container's init was created in (see `namespaces::clone_flags`).
pub fn join_flags() -> CloneFlags {
    CloneFlags::CLONE_NEWPID
        | CloneFlags::CLONE_NEWNS
        | CloneFlags::CLONE_NEWUTS
        | CloneFlags::CLONE_NEWIPC
        | CloneFlags::CLONE_NEWNET
        | CloneFlags::CLONE_NEWCGROUP
}

fn step(what: &'static str) -> impl FnOnce(Errno) -> ExecError {
    move |source| ExecError::Process { what, source }
}

/// Runs `w` in the container whose init `init` (a pidfd) is, in `cgroups`; returns how it
/// ended. Changes the calling process for good (cgroups, namespaces): call it last.
pub fn exec(init: &OwnedFd, cgroups: &[PathBuf], w: &Workload) -> Result<WorkloadExit, ExecError> {
    nix::sys::prctl::set_dumpable(false).map_err(step("make isol exec non-dumpable"))?;
    for cg in cgroups {
        let path = cg.join("cgroup.procs");
        std::fs::write(&path, b"0").map_err(|source| ExecError::JoinCgroup {
            path: cg.clone(),
            source,
        })?;
    }
    // SAFETY: setns(2) takes an fd this process owns (a pidfd, valid for the call) and a
    // flag word; it changes only this (single-threaded) process's namespaces.
    let rc = unsafe { libc::setns(init.as_raw_fd(), join_flags().bits()) };
    Errno::result(rc).map_err(ExecError::Setns)?;
    let (report_r, report_w) =
        nix::unistd::pipe2(OFlag::O_CLOEXEC | OFlag::O_NONBLOCK).map_err(step("make a pipe"))?;
    // The stub writes one report on failure; a blocking write end keeps that simple.
    nix::fcntl::fcntl(&report_w, nix::fcntl::FcntlArg::F_SETFL(OFlag::empty()))
        .map_err(step("make a pipe"))?;
    // Held by this process only: its end (POLLHUP in the child) means isol exec is gone.
    let (alive_r, alive_w) = nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(step("make a pipe"))?;
    // In the container's mount namespace now: its own devpts.
    let tty = match w.terminal {
        true => Some(
            pty::open_pty(w.identity.uid, w.identity.gid)
                .map_err(|(what, source)| ExecError::Pty { what, source })?,
        ),
        false => None,
    };
    let Some((pid, pidfd)) =
        process::clone_init(CloneFlags::empty()).map_err(step("fork the exec'd process"))?
    else {
        drop((report_r, alive_w));
        let _ = nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL);
        if parent_gone(&alive_r) {
            // isol exec was killed before the parent-death signal was armed.
            exit_now(125);
        }
        let r = match &tty {
            Some((_, slave)) => match pty::slave_as_stdio(slave) {
                Ok(()) => workload::exec(&LinuxSyscall, w, &report_w),
                Err(e) => Report::Setup {
                    what: "make the pty its stdin, stdout and stderr".into(),
                    errno: e as i32,
                },
            },
            None => workload::exec(&LinuxSyscall, w, &report_w),
        };
        r.send(&report_w);
        exit_now(if matches!(r, Report::Exec(_)) {
            127
        } else {
            125
        })
    };
    drop((report_w, alive_r));
    let master = tty.map(|(master, _slave)| master);
    let waited = match &master {
        Some(m) => with_terminal(pid, &pidfd, m),
        None => process::wait(pid, &pidfd, None, None, None).map_err(ExecError::Wait),
    };
    drop(alive_w);
    if waited.is_err() {
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
    }
    let status = process::reap(pid).map_err(ExecError::Wait)?;
    waited?;
    outcome(&drain(&report_r), status, &command(w))
}

/// Waits for the exec'd process `pid` with the caller's terminal raw and pumped to the
/// pty `master` (restored when this returns), following SIGWINCH. The signals a raw
/// terminal must not die of are blocked only now, after the fork, so the exec'd process
/// never inherits that mask.
fn with_terminal(
    pid: nix::unistd::Pid,
    pidfd: &OwnedFd,
    master: &OwnedFd,
) -> Result<bool, ExecError> {
    use std::os::fd::AsFd;
    tty_taken()
        .thread_block()
        .map_err(step("block the terminal's signals"))?;
    let mut session = isol_term::Session::start(master.as_fd()).map_err(ExecError::Terminal)?;
    process::wait(pid, pidfd, None, None, Some(&mut session)).map_err(ExecError::Wait)
}

/// True when every write end of `r` is closed (the parent has exited).
fn parent_gone(r: &OwnedFd) -> bool {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    use std::os::fd::AsFd;
    let mut fds = [PollFd::new(r.as_fd(), PollFlags::POLLIN)];
    poll(&mut fds, PollTimeout::ZERO).is_ok()
        && fds[0]
            .revents()
            .is_some_and(|e| e.contains(PollFlags::POLLHUP))
}

fn command(w: &Workload) -> String {
    w.argv
        .first()
        .map(|a| a.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// The reports already in the pipe (written before the child ended).
fn drain(r: &OwnedFd) -> Vec<Report> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        match nix::unistd::read(r, &mut chunk) {
            Ok(0) | Err(Errno::EAGAIN) => return Report::decode_all(&buf),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(Errno::EINTR) => {}
            Err(_) => return Report::decode_all(&buf),
        }
    }
}

/// How the exec'd process ended, from its reports and its wait status.
pub fn outcome(
    reports: &[Report],
    status: WaitStatus,
    command: &str,
) -> Result<WorkloadExit, ExecError> {
    match Report::outcome(reports) {
        Some(Outcome::Setup { what, errno }) => Err(ExecError::Setup {
            what,
            source: std::io::Error::from_raw_os_error(errno),
        }),
        Some(Outcome::Exec(errno)) => Ok(WorkloadExit::ExecFailed {
            failure: ExecFailure::from_errno(errno),
            command: command.to_string(),
        }),
        _ => match status {
            WaitStatus::Exited(_, code) => {
                Ok(WorkloadExit::Exited(u8::try_from(code).unwrap_or(255)))
            }
            WaitStatus::Signaled(_, sig, _) => Ok(WorkloadExit::Signaled(sig as i32)),
            _ => Err(ExecError::Process {
                what: "wait for the exec'd process",
                source: Errno::ECHILD,
            }),
        },
    }
}

#[cfg(test)]
mod tests {
    use nix::sys::signal::Signal;
    use nix::unistd::Pid;

    use super::*;

    #[test]
    fn test_parent_gone_once_every_writer_closed() {
        let (r, w) = nix::unistd::pipe2(OFlag::O_CLOEXEC).unwrap();
        assert!(!parent_gone(&r));
        drop(w);
        assert!(parent_gone(&r));
    }

    #[test]
    fn test_outcome_own_exit_code_signal_and_exec_failure() {
        let p = Pid::from_raw(2);
        let ok = |r: &[Report], s| outcome(r, s, "x").unwrap().exit_code();
        assert_eq!(ok(&[], WaitStatus::Exited(p, 3)), 3);
        assert_eq!(
            ok(&[], WaitStatus::Signaled(p, Signal::SIGTERM, false)),
            143
        );
        assert_eq!(
            ok(&[Report::Exec(libc::ENOENT)], WaitStatus::Exited(p, 127)),
            127
        );
        assert_eq!(
            ok(&[Report::Exec(libc::EACCES)], WaitStatus::Exited(p, 127)),
            126
        );
        let setup = [Report::Setup {
            what: "enter the working directory /x".into(),
            errno: libc::ENOENT,
        }];
        let e = outcome(&setup, WaitStatus::Exited(p, 125), "x").unwrap_err();
        assert!(e.to_string().contains("working directory /x"), "{e}");
    }

    #[test]
    fn test_join_flags_cover_every_namespace_of_the_init() {
        let created = crate::namespaces::clone_flags(false);
        assert!(join_flags().contains(created));
        assert!(!join_flags().contains(CloneFlags::CLONE_NEWUSER));
    }
}
