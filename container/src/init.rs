//! Code that runs inside the container: the init (PID 1 of the new pid namespace, a
//! clone of isol, no exec) up to the point where the shared sandbox takes over.
//!
//! Order in the init: parent-death signal (isol killed => the init dies => the whole
//! namespace dies), hostname, loopback, mounts + pivot_root (while isol moves the init
//! into its cgroups), then wait for that, cgroup namespace and /sys/fs/cgroup; then the
//! PID-1 supervisor of isol-sandbox (`isol_sandbox::supervisor`: signal forwarding,
//! reaping, the exit report) forks the workload, which runs the sandbox's last steps
//! before execve (`isol_sandbox::workload`: session, keyring, rlimits, privilege drop,
//! cwd, umask, signals, fds, seccomp, exec), exactly as the guest's workload does.

use std::os::fd::{AsFd, OwnedFd};
use std::panic::AssertUnwindSafe;

use isol_sandbox::report::Report;
use isol_sandbox::supervisor::{self, exit_now};
use isol_sandbox::workload::{self, Workload};
use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::Signal;
use nix::sys::stat::Mode;

use crate::namespaces;
use crate::pty;
use crate::rootfs::{self, Step};
use crate::syscall::linux::LinuxSyscall;

/// Everything the container side needs, computed by isol before the clone.
#[derive(Debug, Clone)]
pub struct ChildConfig {
    /// The mount plan.
    pub steps: Vec<Step>,
    /// Hostname.
    pub hostname: String,
    /// The workload process (identity, argv, env, limits, seccomp).
    pub workload: Workload,
    /// `--network bridge`: eth0, configured once isol has handed the link over.
    pub net: Option<isol_sandbox::net::config::InterfaceConfig>,
}

fn setup_err(what: &str) -> impl FnOnce(Errno) -> Report + '_ {
    move |e| Report::Setup {
        what: what.to_string(),
        errno: e as i32,
    }
}

/// Entry point of the init after the clone. Never returns. `tty` (with `-t`) is the
/// socket the pty master goes back to isol on.
pub fn init_main(
    cfg: &ChildConfig,
    report: OwnedFd,
    sync: Option<OwnedFd>,
    tty: Option<OwnedFd>,
) -> ! {
    let result = std::panic::catch_unwind(AssertUnwindSafe(|| init(cfg, &report, sync, tty)));
    let code = match result {
        Ok(Ok(())) => 0,
        Ok(Err(r)) => {
            r.send(&report);
            1
        }
        Err(_) => 125,
    };
    exit_now(code)
}

/// True when isol (the reader of the report pipe) is already gone.
fn isol_gone(report: &OwnedFd) -> bool {
    let mut fds = [PollFd::new(report.as_fd(), PollFlags::POLLOUT)];
    poll(&mut fds, PollTimeout::ZERO).is_ok()
        && fds[0]
            .revents()
            .is_some_and(|r| r.contains(PollFlags::POLLERR))
}

/// With `-t`: a pty of the container's devpts (now mounted), its master sent to isol
/// over `sock`; returns the slave, the workload's stdio.
fn terminal(cfg: &ChildConfig, sock: OwnedFd) -> Result<OwnedFd, Report> {
    let id = &cfg.workload.identity;
    let (master, slave) = pty::open_pty(id.uid, id.gid).map_err(|(what, e)| setup_err(what)(e))?;
    pty::send_master(&sock, &master).map_err(setup_err("pass the pty's master to isol"))?;
    Ok(slave)
}

fn init(
    cfg: &ChildConfig,
    report: &OwnedFd,
    sync: Option<OwnedFd>,
    tty: Option<OwnedFd>,
) -> Result<(), Report> {
    nix::sys::prctl::set_pdeathsig(Signal::SIGKILL)
        .map_err(setup_err("set the parent-death signal"))?;
    if isol_gone(report) {
        exit_now(1);
    }
    namespaces::setup(&LinuxSyscall, &cfg.hostname).map_err(|(what, e)| setup_err(what)(e))?;
    nix::sys::stat::umask(Mode::empty());
    let mut sync = sync;
    let mut joined = None;
    let mut join = || {
        let fd = sync.take().ok_or(Errno::EINVAL)?;
        let mut b = [0u8; 1];
        if !matches!(nix::unistd::read(&fd, &mut b), Ok(1)) {
            // isol could not attach us to the cgroups (or died): it reports, not us.
            exit_now(1);
        }
        // isol has made the network link in this namespace too (before the byte).
        if let Some(iface) = &cfg.net {
            if let Err((what, e)) = isol_sandbox::net::config::configure(iface) {
                setup_err(what)(e).send(report);
                exit_now(1);
            }
        }
        joined = Some(fd);
        namespaces::join_cgroup_ns(&LinuxSyscall)
    };
    rootfs::apply(&cfg.steps, &LinuxSyscall, &mut join).map_err(|e| Report::Setup {
        what: e.step,
        errno: e.errno as i32,
    })?;
    // Closing the sync pipe tells isol the container is set up (its started hook); the
    // workload, forked next, must not hold it.
    drop(joined);
    let fail = report.try_clone().map_err(|e| Report::Setup {
        what: "duplicate the report pipe".into(),
        errno: e.raw_os_error().unwrap_or(libc::EIO),
    })?;
    let slave = tty.map(|sock| terminal(cfg, sock)).transpose()?;
    // The closure owns the slave: the init drops it unrun, so only the workload holds it.
    supervisor::run(&LinuxSyscall, report, fail, move |fail| {
        if let Some(s) = &slave {
            if let Err(e) = pty::slave_as_stdio(s) {
                return setup_err("make the pty its stdin, stdout and stderr")(e);
            }
        }
        workload::exec(&LinuxSyscall, &cfg.workload, fail)
    })
}
