//! `isol boot`: a raw kernel image in the bare VMM, serial console on stdout (raw bytes).
//!
//! Exit codes: 0 when the guest resets or triple-faults (how a guest "powers off" here),
//! 124 on `--timeout`, 128+N when isol gets signal N (SIGINT, SIGTERM, SIGHUP, SIGQUIT:
//! the VM is stopped cleanly first), 125 for a crash or any setup error (PVM refusal included).
//! stdout carries exactly the guest's serial bytes: the VMM's debug log (unknown ports,
//! MMIO, crash details, why the VM ended) goes to the file `$ISOL_VMM_LOG` names, or nowhere.

use std::os::fd::{AsFd, AsRawFd};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use isol_common::exit::EXIT_TIMEOUT;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::eventfd::{EfdFlags, EventFd};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};

use crate::jail::cgroup::VmmCgroup;
use crate::jail::{self, ChildLink, JailSpec, Message, VmmJail};
use crate::machine::{Machine, MachineConfig, MachineControl, MachineError, MachineExit};
use crate::seccomp::{self, ThreadClass, VmmSeccomp};

/// `isol boot`: a raw kernel in the bare VMM.
#[derive(Debug, Clone)]
pub struct BootConfig {
    /// ELF (PVH) or bzImage.
    pub kernel: PathBuf,
    /// Optional initrd.
    pub initrd: Option<PathBuf>,
    /// Kernel command line.
    pub cmdline: String,
    /// Guest memory in bytes.
    pub memory: u64,
    /// vCPUs.
    pub cpus: u8,
    /// Stop after this long.
    pub timeout: Option<Duration>,
    /// Boot even on a PVM host.
    pub allow_pvm: bool,
    /// The VMM's seccomp filters (on unless `--vmm-seccomp off`).
    pub seccomp: VmmSeccomp,
    /// The VMM's jail (on unless `--vmm-jail off`).
    pub jail: VmmJail,
}

/// Errors of `isol boot`.
#[derive(Debug, thiserror::Error)]
pub enum BootError {
    /// Setting up or running the machine failed.
    #[error("Cannot boot the kernel")]
    Machine(#[source] MachineError),
    /// The guest crashed (details in the console log).
    #[error("The guest crashed: {reason}")]
    Crashed {
        /// What happened.
        reason: String,
    },
    /// The signal watcher could not be set up.
    #[error("Cannot watch for signals")]
    Signals(#[source] std::io::Error),
    /// The jail could not be built or the jailed VMM failed.
    #[error(transparent)]
    Jail(crate::jail::VmmJailError),
    /// The jailed VMM failed: its error and causes as it reported them.
    #[error("{0}")]
    InJail(String),
    /// The run directory (which holds the jail's mount point) could not be made.
    #[error("Cannot create the VMM's run directory under {path}")]
    RunDir {
        /// The directory.
        path: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// `$ISOL_VMM_LOG` could not be opened.
    #[error("Cannot open the debug log {path}")]
    Log {
        /// The file.
        path: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
}

const FORWARDED: [Signal; 4] = [
    Signal::SIGINT,
    Signal::SIGTERM,
    Signal::SIGHUP,
    Signal::SIGQUIT,
];

/// Boots a raw kernel; serial output goes to stdout. Returns isol's exit code.
pub fn boot(cfg: &BootConfig) -> Result<i32, BootError> {
    let log = match std::env::var_os("ISOL_VMM_LOG").map(PathBuf::from) {
        Some(path) => {
            Some(std::fs::File::create(&path).map_err(|source| BootError::Log { path, source })?)
        }
        None => None,
    };
    match cfg.jail {
        VmmJail::Off => boot_here(cfg, log, &mut || Ok(())),
        VmmJail::On => boot_jailed(cfg, log),
    }
}

/// `isol boot` with the VMM in its jail (no shares: it keeps no capability).
fn boot_jailed(cfg: &BootConfig, log: Option<std::fs::File>) -> Result<i32, BootError> {
    jail::check_pvm(&cfg.kernel, cfg.allow_pvm).map_err(BootError::Machine)?;
    let parent = crate::backend::rundir::vm_runs_dir();
    let _ = crate::backend::rundir::gc_in(&parent);
    let run_dir_err = |path: &std::path::Path| {
        let path = path.to_path_buf();
        move |source| BootError::RunDir { path, source }
    };
    let dir = crate::backend::rundir::RunDir::create_in(&parent).map_err(run_dir_err(&parent))?;
    let root = dir.path().join("jail");
    std::fs::create_dir(&root).map_err(run_dir_err(&root))?;
    let name = dir
        .path()
        .file_name()
        .map(|n| n.to_string_lossy().into_owned());
    let cgroup = VmmCgroup::create(&name.unwrap_or_default(), cfg.memory, cfg.cpus)
        .map_err(BootError::Jail)?;
    let jspec = JailSpec {
        root: &root,
        binds: jail::binds(&cfg.kernel, cfg.initrd.as_deref(), &[]),
        keep_fds: log.iter().map(AsRawFd::as_raw_fd).collect(),
        cgroup: Some(&cgroup),
    };
    let mut jailed = jail::spawn(&jspec, move |link| {
        let mut c = cfg.clone();
        c.kernel = PathBuf::from(jail::KERNEL);
        c.initrd = c.initrd.map(|_| PathBuf::from(jail::INITRD));
        c.allow_pvm = true; // checked above, with the host's files in view
        let mut lock_down = || {
            jail::drop_privileges(link.isol_pid).map_err(BootError::Jail)?;
            link.send(&Message::Ready);
            match link.wait_go() {
                true => Ok(()),
                false => Err(BootError::InJail("isol is gone".into())),
            }
        };
        let result = boot_here(&c, log, &mut lock_down);
        let _ = std::io::Write::flush(&mut std::io::stdout());
        match result {
            Ok(code) => link.send(&Message::Code(code)),
            Err(e) => link.send(&Message::Error(ChildLink::error_text(&e))),
        }
        0
    })
    .map_err(BootError::Jail)?;
    if let Some(text) = jailed.wait_ready().map_err(BootError::Jail)? {
        return Err(BootError::InJail(text));
    }
    match jailed.run().map_err(BootError::Jail)? {
        Message::Code(code) => Ok(code),
        Message::Error(text) => Err(BootError::InJail(text)),
        other => Err(BootError::InJail(format!(
            "The jailed VMM sent an unexpected message: {other:?}"
        ))),
    }
}

/// Boots in this process; `lock_down` runs once the machine is set up, before any of
/// its threads exists.
fn boot_here(
    cfg: &BootConfig,
    log: Option<std::fs::File>,
    lock_down: &mut dyn FnMut() -> Result<(), BootError>,
) -> Result<i32, BootError> {
    let start = Instant::now();
    let mut machine = Machine::new(MachineConfig {
        kernel: cfg.kernel.clone(),
        initrd: cfg.initrd.clone(),
        cmdline: cfg.cmdline.clone(),
        memory: cfg.memory,
        vcpus: cfg.cpus,
        console: Box::new(std::io::stdout()),
        allow_pvm: cfg.allow_pvm,
        seccomp: cfg.seccomp,
    })
    .map_err(BootError::Machine)?;
    match log {
        Some(f) => machine.set_debug_log(Box::new(f)),
        None => machine.set_debug_log(Box::new(std::io::sink())),
    }
    lock_down()?;
    let watcher = SignalWatcher::start(machine.control(), cfg.seccomp)?;
    let result = machine.run(cfg.timeout.map(|t| start + t));
    let signal = watcher.finish();
    match result.map_err(BootError::Machine)? {
        MachineExit::Reset | MachineExit::TripleFault => Ok(0),
        MachineExit::Stopped => Ok(signal.map_or(0, |s| 128 + s as i32)),
        MachineExit::DeadlineExpired => {
            eprintln!(
                "isol: the guest was stopped after the {:.1} s timeout",
                cfg.timeout.unwrap_or_default().as_secs_f64()
            );
            Ok(EXIT_TIMEOUT)
        }
        MachineExit::Crashed { reason } => Err(BootError::Crashed { reason }),
    }
}

/// Stops the machine when isol gets a forwarded signal (they are blocked in every thread by
/// the CLI, so a signalfd sees them).
struct SignalWatcher {
    done: Arc<EventFd>,
    thread: std::thread::JoinHandle<Option<Signal>>,
}

impl SignalWatcher {
    fn start(control: MachineControl, seccomp: VmmSeccomp) -> Result<Self, BootError> {
        let mut set = SigSet::empty();
        for s in FORWARDED {
            set.add(s);
        }
        let sfd = SignalFd::with_flags(&set, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC)
            .map_err(|e| BootError::Signals(e.into()))?;
        let done = Arc::new(
            EventFd::from_flags(EfdFlags::EFD_NONBLOCK | EfdFlags::EFD_CLOEXEC)
                .map_err(|e| BootError::Signals(e.into()))?,
        );
        let done2 = done.clone();
        let thread = std::thread::Builder::new()
            .name("isol-signals".into())
            .spawn(move || {
                seccomp::confine(ThreadClass::Host, seccomp);
                watch(sfd, done2, control)
            })
            .map_err(BootError::Signals)?;
        Ok(SignalWatcher { done, thread })
    }

    fn finish(self) -> Option<Signal> {
        let _ = self.done.write(1);
        self.thread.join().ok().flatten()
    }
}

fn watch(sfd: SignalFd, done: Arc<EventFd>, control: MachineControl) -> Option<Signal> {
    loop {
        let mut fds = [
            PollFd::new(sfd.as_fd(), PollFlags::POLLIN),
            PollFd::new(done.as_fd(), PollFlags::POLLIN),
        ];
        if poll(&mut fds, PollTimeout::NONE).is_err() {
            continue;
        }
        if fds[1].any().unwrap_or(false) {
            return None;
        }
        if let Ok(Some(info)) = sfd.read_signal() {
            control.stop();
            return Signal::try_from(info.ssi_signo as i32).ok();
        }
    }
}
