//! The PID-1 supervisor of the workload's pid namespace, the same in both modes.
//!
//! PID 1 of a pid namespace gets no signal it has no handler for, so a workload run as
//! PID 1 would ignore SIGTERM/SIGINT (docker without `--init` has that problem). Like
//! `docker run --init` (tini), this init stays PID 1: it makes itself non-dumpable (its
//! /proc/1 and /proc/1/exe are then out of the workload's reach), blocks every signal
//! behind a signalfd, forks the workload, forwards every signal in [`FORWARDED`] to it,
//! reaps orphans, and reports the workload's end ([`Report::Exited`] or
//! [`Report::Signaled`]) before returning; its caller then exits, which makes the kernel
//! kill whatever is left in the namespace.

use std::os::fd::OwnedFd;

use nix::errno::Errno;
use nix::sys::signal::{kill, SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{ForkResult, Pid};

use crate::report::Report;
use crate::syscall::Syscall;

/// Signals the init forwards to the workload (everything isol and the guest init forward,
/// and the usual job-control and user signals someone may send the init directly).
pub const FORWARDED: &[Signal] = &[
    Signal::SIGHUP,
    Signal::SIGINT,
    Signal::SIGQUIT,
    Signal::SIGTERM,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
    Signal::SIGALRM,
    Signal::SIGWINCH,
    Signal::SIGCONT,
];

/// Ends the calling process at once, without running destructors or atexit handlers
/// (the init and the workload are copies of their parent: they must not clean up its
/// state).
pub fn exit_now(code: i32) -> ! {
    // SAFETY: _exit(2) takes no pointers and cannot fail; it never returns.
    unsafe { libc::_exit(code) }
}

fn setup(what: &'static str) -> impl FnOnce(Errno) -> Report {
    move |e| Report::Setup {
        what: what.into(),
        errno: e as i32,
    }
}

/// What the end of a child means: the workload's report once it is the one that ended.
pub fn on_wait(status: WaitStatus, workload: Pid) -> Option<Report> {
    match status {
        WaitStatus::Exited(p, code) if p == workload => Some(Report::Exited(code)),
        WaitStatus::Signaled(p, s, _) if p == workload => Some(Report::Signaled(s as i32)),
        _ => None,
    }
}

/// Runs the init: forks the workload, which runs `workload` with `fail` (it execs, or
/// returns the failure to report, which is sent on `fail` before the child exits 127 for
/// an exec failure, 125 otherwise); then supervises it until it ends and sends its end on
/// `report`. `workload` is dropped unrun in the init, so fds it owns (the workload's
/// stdio) are closed there. Returns an error only when the init itself fails.
pub fn run<F>(sys: &dyn Syscall, report: &OwnedFd, fail: OwnedFd, workload: F) -> Result<(), Report>
where
    F: FnOnce(&OwnedFd) -> Report,
{
    sys.set_dumpable(false)
        .map_err(setup("make the init non-dumpable"))?;
    SigSet::all()
        .thread_set_mask()
        .map_err(setup("block signals in the init"))?;
    let mut set = SigSet::empty();
    for s in FORWARDED.iter().chain([&Signal::SIGCHLD]) {
        set.add(*s);
    }
    let sigfd = SignalFd::with_flags(&set, SfdFlags::SFD_CLOEXEC)
        .map_err(setup("create the init's signalfd"))?;
    // SAFETY: the init is single-threaded (a clone of single-threaded isol, or a fork of
    // the single-threaded guest init), so no lock is held by another thread in the
    // child's copy. The child only makes system calls and execs or _exits.
    match unsafe { nix::unistd::fork() }.map_err(setup("fork the workload"))? {
        ForkResult::Child => {
            drop(sigfd);
            let r = workload(&fail);
            r.send(&fail);
            exit_now(if matches!(r, Report::Exec(_)) {
                127
            } else {
                125
            })
        }
        ForkResult::Parent { child } => {
            drop(fail);
            drop(workload);
            supervise(child, &sigfd, report)
        }
    }
}

/// Forwards signals to the workload and reaps until the workload ends; reports its end.
fn supervise(workload: Pid, sigfd: &SignalFd, report: &OwnedFd) -> Result<(), Report> {
    loop {
        let info = match sigfd.read_signal() {
            Ok(Some(info)) => info,
            Ok(None) | Err(Errno::EINTR) => continue,
            Err(e) => return Err(setup("read the init's signalfd")(e)),
        };
        let Ok(sig) = Signal::try_from(info.ssi_signo as i32) else {
            continue;
        };
        if sig != Signal::SIGCHLD {
            let _ = kill(workload, sig);
            continue;
        }
        loop {
            match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) | Err(Errno::ECHILD) => break,
                Ok(st) => {
                    if let Some(r) = on_wait(st, workload) {
                        r.send(report);
                        return Ok(());
                    }
                }
                Err(Errno::EINTR) => {}
                Err(_) => break,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_on_wait_reports_only_the_workload() {
        let w = Pid::from_raw(2);
        let other = Pid::from_raw(3);
        assert_eq!(
            on_wait(WaitStatus::Exited(w, 7), w),
            Some(Report::Exited(7))
        );
        assert_eq!(
            on_wait(WaitStatus::Signaled(w, Signal::SIGKILL, false), w),
            Some(Report::Signaled(9))
        );
        assert_eq!(on_wait(WaitStatus::Exited(other, 0), w), None);
        assert_eq!(on_wait(WaitStatus::Stopped(w, Signal::SIGSTOP), w), None);
    }

    #[test]
    fn test_init_failure_before_fork_is_reported() {
        let fake = crate::syscall::fake::FakeSyscall {
            fail_on: Some("dumpable".into()),
            ..Default::default()
        };
        let (r, w) = nix::unistd::pipe().unwrap();
        let e = run(&fake, &w, r, |_| unreachable!()).unwrap_err();
        assert_eq!(
            e,
            Report::Setup {
                what: "make the init non-dumpable".into(),
                errno: libc::EPERM
            }
        );
    }
}
