//! The jailed VMM process: isol forks it into a new pid namespace and moves it into its
//! cgroup; the child builds the jail and runs the caller's closure there; isol waits for it,
//! forwards signals to it and reaps it.
//!
//! The pid namespace: isol unshares `CLONE_NEWPID` (which applies to its next child
//! only), forks with glibc's `fork` (which keeps malloc usable in the child even if other
//! threads exist) and at once returns its children to its own pid namespace with setns,
//! so later runs in the same isol (`isol compare`) are unaffected.
//!
//! Signals: the child inherits isol's mask (the forwarded signals are blocked), so its
//! own forwarder sees what is sent to it. A signal sent to isol by a process (`kill`) is
//! passed on to the VMM; one the terminal generates (`^C`, hangup: `SI_KERNEL`) is not,
//! since the VMM is in isol's process group and gets it from the terminal itself. When
//! isol dies, the kernel SIGKILLs the VMM (parent-death signal); when the VMM dies, isol
//! sees its pipe close.

use std::fs::File;
use std::io::Write as _;
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::path::Path;

use isol_sandbox::jail::{self as sj, Bind, JailPlan};
use isol_sandbox::syscall::linux::LinuxSyscall;
use isol_sandbox::syscall::Syscall;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sched::CloneFlags;
use nix::sys::signal::{kill, SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{ForkResult, Pid};

use super::cgroup::VmmCgroup;
use super::link::{self, ChildLink, Message};
use super::{VmmJailError, HOSTNAME};

/// The signals isol passes on (the CLI blocks them).
const FORWARDED: [Signal; 4] = [
    Signal::SIGINT,
    Signal::SIGTERM,
    Signal::SIGHUP,
    Signal::SIGQUIT,
];

/// `si_code` of a signal the kernel sent (terminal, hangup), not a process.
const SI_KERNEL: i32 = 0x80;

/// What the jail is made of.
#[derive(Debug)]
pub struct JailSpec<'a> {
    /// An empty host directory that becomes the VMM's `/`.
    pub root: &'a Path,
    /// What it holds ([`super::binds`]).
    pub binds: Vec<Bind>,
    /// Fds the VMM keeps besides its pipes and 0-2 (the console log).
    pub keep_fds: Vec<RawFd>,
    /// The cgroup isol moves the VMM into before letting it run the guest.
    pub cgroup: Option<&'a VmmCgroup>,
}

/// isol's handle on the jailed VMM: reaped (SIGKILLed first if need be) on drop.
#[derive(Debug)]
pub struct Jailed {
    pid: Pid,
    to_child: Option<File>,
    from_child: File,
    reaped: bool,
}

fn spawn_err(what: &'static str) -> impl FnOnce(nix::Error) -> VmmJailError {
    move |source| VmmJailError::Spawn { what, source }
}

fn pipe() -> Result<(File, File), VmmJailError> {
    let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(spawn_err("pipe"))?;
    Ok((File::from(r), File::from(w)))
}

/// Forks the jailed VMM: the child builds the jail of `spec` and runs `child` in it,
/// then exits with the closure's code (125 if the jail cannot be built; the error goes
/// to isol as a [`Message::Error`]).
pub fn spawn<F>(spec: &JailSpec<'_>, child: F) -> Result<Jailed, VmmJailError>
where
    F: FnOnce(&mut ChildLink) -> i32,
{
    let (p2c_r, p2c_w) = pipe()?;
    let (c2p_r, c2p_w) = pipe()?;
    let isol_pid = std::process::id();
    let own_ns: OwnedFd = File::open("/proc/self/ns/pid")
        .map_err(|e| {
            spawn_err("open /proc/self/ns/pid")(nix::Error::from_raw(e.raw_os_error().unwrap_or(0)))
        })?
        .into();
    LinuxSyscall
        .unshare(CloneFlags::CLONE_NEWPID)
        .map_err(spawn_err("unshare(pid)"))?;
    // SAFETY: the child runs only `child_main`, which never returns into the caller's
    // frames (it ends in _exit); glibc's fork leaves malloc usable in the child.
    let forked = unsafe { nix::unistd::fork() };
    // Later children of isol are born in its own pid namespace again.
    let restored = nix::sched::setns(own_ns.as_fd(), CloneFlags::CLONE_NEWPID);
    match forked.map_err(spawn_err("fork"))? {
        ForkResult::Child => {
            drop((p2c_w, c2p_r, own_ns));
            let link = ChildLink {
                to_parent: c2p_w,
                from_parent: p2c_r,
                isol_pid,
            };
            child_main(spec, link, child)
        }
        ForkResult::Parent { child: pid } => {
            let jailed = Jailed {
                pid,
                to_child: Some(p2c_w),
                from_child: c2p_r,
                reaped: false,
            };
            restored.map_err(spawn_err("setns back to isol's pid namespace"))?;
            drop((p2c_r, c2p_w));
            // While the VMM builds its jail; it runs the guest only after isol's go.
            if let Some(cg) = spec.cgroup {
                cg.attach(pid.as_raw())?;
            }
            Ok(jailed)
        }
    }
}

fn child_main<F>(spec: &JailSpec<'_>, mut link: ChildLink, child: F) -> !
where
    F: FnOnce(&mut ChildLink) -> i32,
{
    let code = match build(spec, &link) {
        Ok(()) => child(&mut link),
        Err(e) => {
            link.send(&Message::Error(ChildLink::error_text(&e)));
            isol_common::exit::EXIT_ISOL_ERROR
        }
    };
    let _ = std::io::stdout().flush();
    // SAFETY: _exit(2) ends the process at once; nothing of the parent's frames runs.
    unsafe { libc::_exit(code) }
}

fn build(spec: &JailSpec<'_>, link: &ChildLink) -> Result<(), VmmJailError> {
    nix::sys::prctl::set_pdeathsig(Signal::SIGKILL)
        .map_err(spawn_err("set the parent-death signal"))?;
    let sys = LinuxSyscall;
    sj::unshare(&sys, HOSTNAME).map_err(VmmJailError::Jail)?;
    let plan = JailPlan {
        root: spec.root,
        binds: &spec.binds,
        proc: true,
        hostname: HOSTNAME,
    };
    sj::enter(&sys, &plan).map_err(VmmJailError::Jail)?;
    let mut keep: Vec<u32> = spec
        .keep_fds
        .iter()
        .chain(&[link.to_parent.as_raw_fd(), link.from_parent.as_raw_fd()])
        .filter_map(|&fd| u32::try_from(fd).ok())
        .collect();
    keep.sort_unstable();
    sj::close_inherited_fds(&sys, &keep).map_err(VmmJailError::Jail)
}

fn describe(status: WaitStatus) -> String {
    match status {
        WaitStatus::Exited(_, c) => format!("exited with {c}"),
        WaitStatus::Signaled(_, s, _) => format!("was killed by signal {} ({s})", s as i32),
        other => format!("ended ({other:?})"),
    }
}

impl Jailed {
    /// The VMM's pid (in isol's pid namespace).
    pub fn pid(&self) -> Pid {
        self.pid
    }

    fn reap(&mut self) -> String {
        self.reaped = true;
        loop {
            match waitpid(self.pid, None) {
                Err(nix::errno::Errno::EINTR) => continue,
                Ok(s) => return describe(s),
                Err(e) => return format!("could not be waited for ({e})"),
            }
        }
    }

    /// The VMM's next message; if it ended without one, it is reaped and the error says
    /// how it ended.
    fn next(&mut self) -> Result<Message, VmmJailError> {
        match link::receive(&mut self.from_child) {
            Ok(Some(m)) => Ok(m),
            Ok(None) => Err(VmmJailError::Died { how: self.reap() }),
            Err(e) => Err(VmmJailError::Link(e)),
        }
    }

    /// Waits until the VMM is set up: `Ok(None)` when it is ready, `Ok(Some(text))` when
    /// it failed (the error as isol prints it).
    pub fn wait_ready(&mut self) -> Result<Option<String>, VmmJailError> {
        match self.next()? {
            Message::Ready => Ok(None),
            Message::Error(text) => Ok(Some(text)),
            other => Ok(Some(format!("unexpected message from the VMM: {other:?}"))),
        }
    }

    /// Lets the VMM run and waits for its result, passing signals sent to isol on.
    /// The VMM is reaped before this returns.
    pub fn run(mut self) -> Result<Message, VmmJailError> {
        let go = self.to_child.as_mut().map(|w| w.write_all(b"G"));
        if let Some(Err(e)) = go {
            return Err(VmmJailError::Link(e));
        }
        let mut set = SigSet::empty();
        for s in FORWARDED {
            set.add(s);
        }
        let sfd = SignalFd::with_flags(&set, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC)
            .map_err(spawn_err("signalfd"))?;
        loop {
            let mut fds = [
                PollFd::new(self.from_child.as_fd(), PollFlags::POLLIN),
                PollFd::new(sfd.as_fd(), PollFlags::POLLIN),
            ];
            match poll(&mut fds, PollTimeout::NONE) {
                Err(nix::errno::Errno::EINTR) => continue,
                r => r.map_err(spawn_err("poll"))?,
            };
            if fds[1].any().unwrap_or(false) {
                while let Ok(Some(info)) = sfd.read_signal() {
                    let from_kernel = info.ssi_code == SI_KERNEL;
                    let sig = Signal::try_from(i32::try_from(info.ssi_signo).unwrap_or(0));
                    if let (false, Ok(sig)) = (from_kernel, sig) {
                        let _ = kill(self.pid, sig);
                    }
                }
            }
            if fds[0].any().unwrap_or(false) {
                let m = self.next()?;
                self.reap();
                return Ok(m);
            }
        }
    }
}

impl Drop for Jailed {
    fn drop(&mut self) {
        if !self.reaped {
            self.to_child = None;
            let _ = kill(self.pid, Signal::SIGKILL);
            self.reap();
        }
    }
}
