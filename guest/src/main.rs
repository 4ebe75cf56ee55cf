//! isol-guest-init: PID 1 inside isol's microVM.
//!
//! The kernel runs it from the initramfs (`rdinit=/init`). It mounts the init's own
//! /dev, /proc, /sys; reads the workload config ([`protocol::CONFIG_PATH`]); opens the isol
//! channel (port I/O, see `vmm/src/channel`); sets the hostname, brings up loopback
//! (a failure is fatal, as in container mode: isol-sandbox `net`),
//! prepares the workload root and cgroup; starts the workload as its child; pumps stdio
//! and signals until the workload ends; reports the exit status through the channel, so
//! the VMM ends the VM. Its own errors go to the console (ttyS0) and are reported as
//! `InitFailed`. Built static (`-C target-feature=+crt-static`), it needs nothing from
//! the workload's root filesystem.
//!
//! Debug mode (config `debug 1`): when no channel answers (e.g. under plain QEMU), the
//! workload's output and the exit report go to the console instead.

use isol_channel as protocol;

mod host;
mod nsinit;
mod pump;
mod setup;
mod spawn;
mod sys;

use std::error::Error;
use std::path::Path;

use host::{ConsoleHost, Host, PortHost};
use protocol::{ExitReport, GuestConfig, CONFIG_PATH, EVENT_READY, EVENT_STARTED};
use sys::{Ctx, InitError};

fn main() {
    let mut host: Option<Box<dyn Host>> = None;
    let report = match run(&mut host) {
        Ok(r) => r,
        Err(e) => {
            print_error(&e);
            ExitReport::InitFailed(e.errno())
        }
    };
    match host.as_mut() {
        Some(h) => h.exit(report),
        None => eprintln!("isol-init: no channel to report {report:?}"),
    }
    // The VMM stops the VM on EXIT; if it has not, reset the machine.
    sys::reboot();
}

fn print_error(e: &InitError) {
    let mut msg = format!("isol-init: error: {e}");
    let mut src = e.source();
    while let Some(s) = src {
        msg.push_str(&format!(": {s}"));
        src = s.source();
    }
    eprintln!("{msg}");
}

fn run(host_slot: &mut Option<Box<dyn Host>>) -> Result<ExitReport, InitError> {
    setup::apply(&setup::system_plan(), Path::new("/dev/null"))?;
    ensure_stdio();
    // Guest RAM is small (the workload's limit plus overhead), so the kernel's heuristic
    // would refuse a single allocation larger than it, where the host grants it and the
    // memory cgroup OOM-kills the workload (137). Always overcommit, as the host
    // effectively does for any limit that fits its RAM.
    std::fs::write("/proc/sys/vm/overcommit_memory", "1")
        .ctx(|| "set vm.overcommit_memory to 1".into())?;
    let text = std::fs::read_to_string(CONFIG_PATH).ctx(|| format!("read {CONFIG_PATH}"))?;
    let cfg = GuestConfig::decode(&text).map_err(|e| InitError {
        op: format!("parse {CONFIG_PATH}"),
        source: std::io::Error::new(std::io::ErrorKind::InvalidData, e),
    })?;
    let host = host_slot.insert(open_host(&cfg)?);
    host.event(EVENT_READY);
    sys::sethostname(&cfg.hostname).ctx(|| format!("set the hostname to {:?}", cfg.hostname))?;
    // One rule in both modes (isol-sandbox `net`): failing to bring lo up fails the run,
    // unless the kernel has no networking at all.
    isol_sandbox::net::loopback_up(&isol_sandbox::syscall::linux::LinuxSyscall)
        .map_err(std::io::Error::from)
        .ctx(|| "bring the loopback interface up".into())?;
    let cgroup = setup::cgroup(&cfg)?;
    let root = setup::rootfs();
    setup::apply(&setup::root_plan(root), Path::new("/dev/null"))?;
    let plan = setup::workload_plan(&cfg, root);
    let sigchld = pump::sigchld_fd()?;
    match spawn::spawn(&cfg, root, cgroup.as_deref(), &plan)? {
        spawn::Started::Running(w) => {
            host.event(EVENT_STARTED);
            pump::run(host.as_mut(), w, &sigchld)
        }
        spawn::Started::ExecFailed(errno) => {
            host.event(EVENT_STARTED);
            Ok(ExitReport::ExecFailed(u32::try_from(errno).unwrap_or(0)))
        }
    }
}

/// Makes sure fds 0, 1, 2 are open on the console (the kernel opens /dev/console for the
/// init only if the initramfs has it), so errors reach ttyS0.
fn ensure_stdio() {
    for fd in 0..3 {
        // SAFETY: F_GETFD on any integer has no memory effects.
        if unsafe { libc::fcntl(fd, libc::F_GETFD) } >= 0 {
            continue;
        }
        let Ok(c) = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/console")
        else {
            return;
        };
        let raw = std::os::fd::IntoRawFd::into_raw_fd(c);
        if raw != fd {
            // SAFETY: dup2/close on descriptors we own.
            unsafe {
                libc::dup2(raw, fd);
                libc::close(raw);
            }
        }
    }
}

fn open_host(cfg: &GuestConfig) -> Result<Box<dyn Host>, InitError> {
    match PortHost::open() {
        Ok(Some(h)) => return Ok(Box::new(h)),
        Ok(None) if cfg.debug => {
            eprintln!("isol-init: no isol channel; debug mode: using the console")
        }
        Err(e) if cfg.debug => print_error(&e),
        Ok(None) => {
            return Err(InitError {
                op: "find the isol channel (is this isol's VMM?)".into(),
                source: std::io::ErrorKind::NotFound.into(),
            })
        }
        Err(e) => return Err(e),
    }
    Ok(Box::new(ConsoleHost))
}
