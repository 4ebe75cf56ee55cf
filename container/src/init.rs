//! Code that runs inside the container: the init (PID 1 of the new pid namespace, a
//! clone of isol, no exec) and the workload process it forks.
//!
//! Why an init: PID 1 of a pid namespace gets no signal it has no handler for, so a
//! workload run as PID 1 would ignore SIGTERM/SIGINT from isol (docker without `--init`
//! has that problem). Like `docker run --init` (tini), our init stays PID 1, forwards
//! every signal isol sends it to the workload, reaps orphans, and reports the workload's
//! exit to isol over the report pipe before exiting, which makes the kernel kill
//! everything left in the namespace. It costs one fork and no exec.
//!
//! Order in the init: parent-death signal (isol killed => the init dies => the whole
//! namespace dies), hostname, loopback, mounts + pivot_root (while isol moves the init
//! into its cgroups), then wait for that, cgroup namespace and /sys/fs/cgroup, block all
//! signals behind a signalfd and fork the workload (born in the cgroups). The workload drops privileges, enters its working directory,
//! restores the umask, default signal dispositions and an empty mask, marks every fd but
//! 0-2 close-on-exec, and execs through `PATH`.

use std::convert::Infallible;
use std::ffi::CString;
use std::os::fd::{AsFd, OwnedFd};
use std::panic::AssertUnwindSafe;
use std::path::PathBuf;

use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{kill, SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::stat::Mode;
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{ForkResult, Pid};

use crate::exec::Attempts;
use crate::report::Report;
use crate::rootfs::{self, Step};
use crate::security::{self, Identity};
use crate::syscall::linux::LinuxSyscall;
use crate::{namespaces, process};

/// Everything the container side needs, computed by isol before the clone.
#[derive(Debug, Clone)]
pub struct ChildConfig {
    /// The mount plan.
    pub steps: Vec<Step>,
    /// Hostname.
    pub hostname: String,
    /// User, group, capabilities.
    pub identity: Identity,
    /// Working directory.
    pub cwd: PathBuf,
    /// argv.
    pub argv: Vec<CString>,
    /// The environment, `K=V`.
    pub envp: Vec<CString>,
    /// Paths execve tries, in order (PATH lookup).
    pub candidates: Vec<CString>,
    /// The workload's seccomp filter (`None`: unconfined), installed right before execve.
    pub seccomp: Option<isol_sandbox::seccomp::Filter>,
}

/// Signals the init forwards to the workload (everything isol forwards, and the usual
/// job-control and user signals someone may send the init directly).
const FORWARDED: &[Signal] = &[
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

fn setup_err(what: &str) -> impl FnOnce(Errno) -> Report + '_ {
    move |e| Report::Setup {
        what: what.to_string(),
        errno: e as i32,
    }
}

fn send(report: &OwnedFd, r: &Report) {
    // One write below PIPE_BUF: atomic. Nothing to do if isol is gone.
    let _ = nix::unistd::write(report, &r.encode());
}

/// Entry point of the init after the clone. Never returns.
pub fn init_main(cfg: &ChildConfig, report: OwnedFd, sync: Option<OwnedFd>) -> ! {
    let result = std::panic::catch_unwind(AssertUnwindSafe(|| init(cfg, &report, sync)));
    let code = match result {
        Ok(Ok(())) => 0,
        Ok(Err(r)) => {
            send(&report, &r);
            1
        }
        Err(_) => 125,
    };
    process::exit_now(code)
}

/// True when isol (the reader of the report pipe) is already gone.
fn isol_gone(report: &OwnedFd) -> bool {
    let mut fds = [PollFd::new(report.as_fd(), PollFlags::POLLOUT)];
    poll(&mut fds, PollTimeout::ZERO).is_ok()
        && fds[0]
            .revents()
            .is_some_and(|r| r.contains(PollFlags::POLLERR))
}

fn init(cfg: &ChildConfig, report: &OwnedFd, sync: Option<OwnedFd>) -> Result<(), Report> {
    nix::sys::prctl::set_pdeathsig(Signal::SIGKILL)
        .map_err(setup_err("set the parent-death signal"))?;
    if isol_gone(report) {
        process::exit_now(1);
    }
    namespaces::setup(&LinuxSyscall, &cfg.hostname).map_err(|(what, e)| setup_err(what)(e))?;
    nix::sys::stat::umask(Mode::empty());
    let mut sync = sync;
    let mut join = || {
        let fd = sync.take().ok_or(Errno::EINVAL)?;
        let mut b = [0u8; 1];
        if !matches!(nix::unistd::read(&fd, &mut b), Ok(1)) {
            // isol could not attach us to the cgroups (or died): it reports, not us.
            process::exit_now(1);
        }
        namespaces::join_cgroup_ns(&LinuxSyscall)
    };
    rootfs::apply(&cfg.steps, &LinuxSyscall, &mut join).map_err(|e| Report::Setup {
        what: e.step,
        errno: e.errno as i32,
    })?;
    SigSet::all()
        .thread_set_mask()
        .map_err(setup_err("block signals in the init"))?;
    let mut set = SigSet::empty();
    for s in FORWARDED.iter().chain([&Signal::SIGCHLD]) {
        set.add(*s);
    }
    let sigfd = SignalFd::with_flags(&set, SfdFlags::SFD_CLOEXEC)
        .map_err(setup_err("create the init's signalfd"))?;
    match process::fork().map_err(setup_err("fork the workload"))? {
        ForkResult::Child => {
            drop(sigfd);
            workload_main(cfg, report)
        }
        ForkResult::Parent { child } => supervise(child, &sigfd, report),
    }
}

/// Forwards signals to the workload and reaps until the workload ends; reports its end.
fn supervise(workload: Pid, sigfd: &SignalFd, report: &OwnedFd) -> Result<(), Report> {
    loop {
        let info = match sigfd.read_signal() {
            Ok(Some(info)) => info,
            Ok(None) | Err(Errno::EINTR) => continue,
            Err(e) => return Err(setup_err("read the init's signalfd")(e)),
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
                Ok(WaitStatus::Exited(p, code)) if p == workload => {
                    send(report, &Report::Exited(code));
                    return Ok(());
                }
                Ok(WaitStatus::Signaled(p, s, _)) if p == workload => {
                    send(report, &Report::Signaled(s as i32));
                    return Ok(());
                }
                Ok(WaitStatus::StillAlive) | Err(Errno::ECHILD) => break,
                Err(Errno::EINTR) | Ok(_) => continue,
                Err(_) => break,
            }
        }
    }
}

/// The workload process: privileges, cwd, signals, exec. Never returns.
fn workload_main(cfg: &ChildConfig, report: &OwnedFd) -> ! {
    let (r, code) = match prepare_and_exec(cfg) {
        Err(r @ Report::Exec(_)) => (r, 127),
        Err(r) => (r, 125),
        Ok(never) => match never {},
    };
    send(report, &r);
    process::exit_now(code)
}

fn prepare_and_exec(cfg: &ChildConfig) -> Result<Infallible, Report> {
    security::drop_privileges(&LinuxSyscall, &cfg.identity)
        .map_err(|(what, e)| setup_err(what)(e))?;
    nix::unistd::chdir(&cfg.cwd).map_err(|e| Report::Setup {
        what: format!("enter the working directory {}", cfg.cwd.display()),
        errno: e as i32,
    })?;
    nix::sys::stat::umask(Mode::from_bits_truncate(0o022));
    process::reset_signals().map_err(setup_err("reset signal dispositions"))?;
    SigSet::empty()
        .thread_set_mask()
        .map_err(setup_err("unblock signals"))?;
    process::cloexec_from(3);
    if let Some(f) = &cfg.seccomp {
        isol_sandbox::seccomp::install(f).map_err(setup_err("install the seccomp filter"))?;
    }
    let mut attempts = Attempts::default();
    for path in &cfg.candidates {
        let Err(e) = nix::unistd::execve(path, &cfg.argv, &cfg.envp);
        if !attempts.failed(e) {
            break;
        }
    }
    Err(Report::Exec(attempts.result() as i32))
}
