//! The workload's own init: PID 1 of the workload's pid namespace, as in container mode.
//!
//! The guest init (PID 1 of the VM) forks this process into a new pid namespace; it mounts
//! the workload root (its /proc must be mounted from inside the namespace to show the
//! namespace's pids), then hands over to isol-sandbox's PID-1 supervisor
//! (`isol_sandbox::supervisor`, the one container mode runs too), which forks the
//! workload (PID 2 there exactly as in container mode), forwards signals, reaps, and
//! writes the workload's end ([`Report`]) to the exit pipe. The workload process does
//! what only the guest has (stdio pipes, its cgroup, no channel ports, chroot into the
//! workload root) and then the sandbox's last steps before execve
//! (`isol_sandbox::workload`), the same as container mode's workload.

use std::ffi::CString;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;

use isol_sandbox::report::Report;
use isol_sandbox::supervisor::{self, exit_now};
use isol_sandbox::syscall::linux::LinuxSyscall;
use isol_sandbox::workload::{self, Workload};

use crate::setup::{self, Step};

/// Everything the workload process needs, prepared before fork so it only makes syscalls.
#[derive(Debug)]
pub struct Prepared {
    /// The sandbox's part: identity, argv, env, limits, seccomp.
    pub workload: Workload,
    /// The workload root (chroot).
    pub root: CString,
    /// `<cgroup>/cgroup.procs` of the workload's cgroup, if it has one.
    pub cgroup_procs: Option<CString>,
    /// `<root>/sys/fs/cgroup`, where the workload's own cgroup is mounted read-only.
    pub cgroup_view: CString,
}

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
    /// Start status pipe: a [`Report`] if the start failed; closed by a clean execve.
    pub status: OwnedFd,
    /// Where the workload's end goes (a [`Report`]).
    pub exit: OwnedFd,
}

/// Runs the namespace init; never returns.
pub fn run(ns: NsInit<'_>) -> ! {
    if let Err(e) = setup::apply(ns.plan, ns.dev_null) {
        crate::print_error(&e);
        Report::Setup {
            what: format!("mount the workload root: {}", e.op),
            errno: e.errno().try_into().unwrap_or(libc::EIO),
        }
        .send(&ns.status);
        exit_now(127);
    }
    let NsInit {
        prep,
        stdio,
        status,
        exit,
        ..
    } = ns;
    let sys = LinuxSyscall;
    match supervisor::run(&sys, &exit, status, move |fail| child(prep, &stdio, fail)) {
        Ok(()) => exit_now(0),
        Err(r) => {
            r.send(&exit);
            exit_now(127)
        }
    }
}

fn failed(what: &str) -> Report {
    Report::Setup {
        what: what.into(),
        errno: std::io::Error::last_os_error()
            .raw_os_error()
            .unwrap_or(libc::EIO),
    }
}

/// The workload process: the guest's own steps, then the sandbox's. Returns the failure.
fn child(p: &Prepared, stdio: &[OwnedFd; 3], report: &OwnedFd) -> Report {
    macro_rules! check {
        ($what:expr, $e:expr) => {
            if $e < 0 {
                return failed($what);
            }
        };
    }
    // SAFETY: every call gets plain integers or pointers to C strings prepared before
    // fork, alive until exec or _exit.
    unsafe {
        for (target, fd) in (0..).zip(stdio) {
            check!("set up stdio", libc::dup2(fd.as_raw_fd(), target));
        }
        if let Some(procs) = &p.cgroup_procs {
            let fd = libc::open(procs.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
            check!("join the workload cgroup", fd);
            let n = libc::write(fd, b"0".as_ptr().cast(), 1);
            libc::close(fd);
            check!("join the workload cgroup", n as libc::c_int);
            // As in container mode: a cgroup namespace rooted at the workload's cgroup,
            // and that cgroup read-only at /sys/fs/cgroup (memory.max and friends).
            check!(
                "mount its view of the cgroup",
                libc::unshare(libc::CLONE_NEWCGROUP)
            );
            let flags = libc::MS_RDONLY | libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC;
            check!(
                "mount its view of the cgroup",
                libc::mount(
                    c"cgroup2".as_ptr(),
                    p.cgroup_view.as_ptr(),
                    c"cgroup2".as_ptr(),
                    flags,
                    std::ptr::null()
                )
            );
        }
        check!(
            "revoke the channel ports",
            libc::ioperm(
                crate::protocol::CHANNEL_BASE.into(),
                crate::protocol::CHANNEL_LEN.into(),
                0
            )
        );
        check!(
            "chroot into the workload root",
            libc::chroot(p.root.as_ptr())
        );
    }
    workload::exec(&LinuxSyscall, &p.workload, report)
}
