//! The workload's own init: PID 1 of the workload's pid namespace, as in container mode.
//!
//! The guest init (PID 1 of the VM) forks this process into a new pid namespace; it mounts
//! the workload root (its /proc must be mounted from inside the namespace to show the
//! namespace's pids), then forks the workload, which is PID 2 there exactly as in container
//! mode, and `ps` shows the workload's processes only. Like container mode's init it
//! forwards every signal it gets (the guest init sends it the host's) to the workload,
//! reaps orphans, and when the workload ends writes its raw wait status to the exit pipe
//! and exits, which makes the kernel kill whatever is left in the namespace.

use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;

use crate::setup::{self, Step};
use crate::spawn::{self, Prepared};
use crate::sys;

/// The step reported when the workload root cannot be mounted (see `spawn::step_name`).
pub const STEP_ROOT: u8 = 10;
/// The step reported when the workload cannot be forked.
pub const STEP_FORK: u8 = 11;

/// What the namespace init needs; every fd is its own (the guest init's ends are closed).
pub struct NsInit<'a> {
    /// The workload's exec, prepared before fork.
    pub prep: &'a Prepared,
    /// The workload root's mounts.
    pub plan: &'a [Step],
    /// `/dev/null` of the workload root (for masking files).
    pub dev_null: &'a Path,
    /// The workload's stdin, stdout and stderr.
    pub stdio: [OwnedFd; 3],
    /// Start status pipe (step, errno), close-on-exec.
    pub status: OwnedFd,
    /// Where the workload's raw wait status goes.
    pub exit: OwnedFd,
}

/// Runs the namespace init; never returns.
pub fn run(ns: NsInit<'_>) -> ! {
    if let Err(e) = setup::apply(ns.plan, ns.dev_null) {
        crate::print_error(&e);
        report_step(
            &ns.status,
            STEP_ROOT,
            e.errno().try_into().unwrap_or(libc::EIO),
        );
        exit(127);
    }
    let all = full_sigset();
    // SAFETY: `all` is an initialized sigset; the old mask is not wanted.
    unsafe { libc::sigprocmask(libc::SIG_BLOCK, &all, std::ptr::null_mut()) };
    // SAFETY: this process is single-threaded (a fork of the single-threaded guest init).
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        let fds = ns.stdio.each_ref().map(AsRawFd::as_raw_fd);
        let (step, errno) = spawn::child(ns.prep, fds);
        report_step(&ns.status, step, errno);
        exit(127);
    }
    if pid < 0 {
        report_step(
            &ns.status,
            STEP_FORK,
            std::io::Error::last_os_error().raw_os_error().unwrap_or(0),
        );
        exit(127);
    }
    // The workload holds the pipes now; ours would keep its stdin/stdout from ever ending.
    drop(ns.stdio);
    drop(ns.status);
    loop {
        // SAFETY: `all` is an initialized sigset; no siginfo is asked for.
        let sig = unsafe { libc::sigwaitinfo(&all, std::ptr::null_mut()) };
        if sig == libc::SIGCHLD {
            if let Some(status) = sys::reap_children(pid) {
                let _ = sys::write(ns.exit.as_raw_fd(), &status.to_le_bytes());
                exit(0);
            }
        } else if sig > 0 {
            // SAFETY: kill takes plain integers.
            unsafe { libc::kill(pid, sig) };
        }
    }
}

fn report_step(status: &OwnedFd, step: u8, errno: i32) {
    let mut msg = [0u8; 5];
    msg[0] = step;
    msg[1..].copy_from_slice(&errno.to_le_bytes());
    let _ = sys::write(status.as_raw_fd(), &msg);
}

fn full_sigset() -> libc::sigset_t {
    // SAFETY: sigfillset initializes the zeroed set it is given.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut set);
        set
    }
}

fn exit(code: i32) -> ! {
    // SAFETY: _exit ends this forked process without running the guest init's destructors.
    unsafe { libc::_exit(code) }
}
