//! The VM backend: spec -> guest init config + initramfs -> microVM -> workload exit.
//!
//! `prepare` resolves the kernel, finds the static guest init (see
//! [`plan::guest_init_candidates`]), writes the initramfs (init and config) into a
//! private run directory, sizes the VM ([`plan`] documents how guest RAM relates to
//! `--memory`) and creates the machine with the isol channel on its port bus and
//! virtio-9p devices served live from host directories: the rootfs, read-only (the guest
//! lays a tmpfs over it, so writes are discarded at exit, as container mode's overlay
//! does), and one per volume (read-write unless `:ro`, like container mode's bind mounts).
//! `run` serves the channel (stdin pump, signal forwarder, watchdog), runs the machine and
//! maps what the init reported to a [`WorkloadExit`]. A VM that ends without a report
//! (reset, triple fault, crash, init failure, boot timeout) is a [`VmError`] (exit 125)
//! quoting the console's last lines.
//!
//! Timeouts: the workload's `--timeout` counts from the moment the init reports the
//! workload started (as container mode counts from its start), so a slow boot does not eat
//! it; the boot itself is bounded by [`VmOptions::boot_timeout`] (the CLI takes it from
//! `$ISOL_VM_BOOT_TIMEOUT`; default [`DEFAULT_BOOT_TIMEOUT`], [`LAB_BOOT_TIMEOUT`] inside the
//! nested lab where boots are emulated). The boot watchdog applies only until the init
//! reports the workload started; without a `--timeout` the VM then runs as long as its
//! workload does.

mod console;
mod error;
mod jailed;
mod outcome;
pub mod plan;
pub(crate) mod rundir;
mod setup;

use std::fs::File;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use isol_common::{Backend, Prepared, WorkloadExit, WorkloadSpec};

use crate::channel::host::{spawn_signal_forwarder, spawn_stdin_pump, spawn_watchdog, Deadlines};
use crate::channel::protocol::{CHANNEL_BASE, CHANNEL_LEN};
use crate::channel::{Channel, ChannelDevice, Outcome, Output};
use crate::devices::virtio::RequestHandler;
use crate::initramfs::{write_initramfs, Contents};
use crate::jail::cgroup::VmmCgroup;
use crate::jail::{Jailed, VmmJail};
use crate::kernel::resolve_kernel;
use crate::machine::{Machine, MachineConfig};
use crate::seccomp::VmmSeccomp;
pub use console::ConsoleLog;
pub use error::VmError;
use outcome::map_outcome;
pub use plan::{guest_ram, GUEST_INIT_NAME};
use rundir::RunDir;

/// Seconds the workload may take to start on a host with hardware KVM.
pub const DEFAULT_BOOT_TIMEOUT: u64 = 60;
/// ... and inside the nested lab (emulated boots take seconds to minutes).
pub const LAB_BOOT_TIMEOUT: u64 = 600;

/// How long isol still waits for a reader of its stdout that makes no progress, once the
/// run ended without an exit report (timeout, boot failure).
const OUTPUT_GRACE: Duration = Duration::from_secs(1);

/// How long after the watchdog's last deadline the machine's backstop ends the VM.
const BACKSTOP_MARGIN: Duration = Duration::from_secs(30);

/// The VM backend.
#[derive(Debug, Default)]
pub struct VmBackend {
    opts: VmOptions,
}

/// Options of the VM backend that are not part of the workload spec. The CLI fills them
/// (from its flags and `ISOL_VM_*` variables): the library reads no environment of its own
/// for these, so a jailed VMM depends on nothing its caller's environment says.
#[derive(Debug, Default, Clone)]
pub struct VmOptions {
    /// Guest kernel; `None`: `$ISOL_KERNEL`, then the default from the kernel cache.
    pub kernel: Option<PathBuf>,
    /// Copy the guest console to stderr.
    pub verbose: bool,
    /// How long the workload may take to start; `None`: [`DEFAULT_BOOT_TIMEOUT`].
    /// Applies only until the init reports the workload started.
    pub boot_timeout: Option<Duration>,
    /// Boot the kernel even on a PVM host (for tiny test guests, which PVM runs through
    /// KVM's emulator; a Linux kernel would die there, see the VMM's check).
    pub allow_pvm: bool,
    /// Appended to the guest kernel command line.
    pub cmdline_extra: Option<String>,
    /// The VMM's seccomp filters (on unless `--vmm-seccomp off`).
    pub seccomp: VmmSeccomp,
    /// The VMM's jail (on unless `--vmm-jail off`; see [`crate::jail`]).
    pub jail: VmmJail,
}

impl VmBackend {
    /// A backend with these options.
    pub fn new(opts: VmOptions) -> Self {
        VmBackend { opts }
    }
}

/// A prepared microVM (its machine in isol's process, or its jailed VMM process set up
/// and waiting for go), and the run's resources (dropped in this order, last the run
/// directory: the initramfs and console log live there).
pub struct PreparedVm {
    vm: Vm,
    command: String,
    boot_timeout: Duration,
    // The jailed VMM is reaped (by `vm`) before its cgroup goes.
    _cgroup: Option<VmmCgroup>,
    _dir: RunDir,
}

/// Where the machine is.
enum Vm {
    /// In isol's own process (`--vmm-jail off`).
    Local(Box<LocalVm>),
    /// In the jailed VMM process.
    Jailed(Jailed),
}

/// A machine ready to run, and what running it needs.
struct LocalVm {
    machine: Machine,
    channel: Arc<Channel>,
    console: ConsoleLog,
    command: String,
    seccomp: VmmSeccomp,
    boot_timeout: Duration,
    workload_timeout: Option<Duration>,
}

impl std::fmt::Debug for PreparedVm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PreparedVm")
            .field("command", &self.command)
            .field("boot_timeout", &self.boot_timeout)
            .field("jailed", &matches!(self.vm, Vm::Jailed(_)))
            .finish_non_exhaustive()
    }
}

/// What the machine is made of, computed by isol before any VMM process exists.
struct Parts {
    kernel: PathBuf,
    initrd: PathBuf,
    cmdline: String,
    memory: u64,
    vcpus: u8,
    log: Option<File>,
    verbose: bool,
    allow_pvm: bool,
    seccomp: VmmSeccomp,
    command: String,
    boot_timeout: Duration,
    workload_timeout: Option<Duration>,
}

/// Builds the machine from `parts` with the shares' 9P servers. `lock_down` runs
/// once the machine is set up and before any of its threads exists (the jail drops its
/// privileges there).
fn build(
    parts: Parts,
    shares: Vec<setup::Share<Box<dyn RequestHandler>>>,
    lock_down: &dyn Fn() -> Result<(), VmError>,
) -> Result<LocalVm, VmError> {
    let (shares, shares_cmdline) = setup::p9_devices(shares);
    let console = ConsoleLog::new(parts.log, false);
    let cfg = MachineConfig {
        kernel: parts.kernel,
        initrd: Some(parts.initrd),
        cmdline: parts.cmdline + &shares_cmdline,
        memory: parts.memory,
        vcpus: parts.vcpus,
        console: Box::new(console.clone()),
        allow_pvm: parts.allow_pvm,
        seccomp: parts.seccomp,
    };
    let mut machine = Machine::new(cfg).map_err(VmError::Machine)?;
    let channel = Arc::new(Channel::new());
    let device = ChannelDevice::new(channel.clone(), machine.control())
        .with_memory(machine.memory().clone());
    machine
        .add_pio_device(CHANNEL_BASE, CHANNEL_LEN, Arc::new(Mutex::new(device)))
        .map_err(VmError::Machine)?;
    lock_down()?;
    if parts.verbose {
        console.copy_to_stderr();
    }
    for (slot, device) in shares {
        machine
            .add_virtio_device(slot, Box::new(device))
            .map_err(VmError::Machine)?;
    }
    Ok(LocalVm {
        machine,
        channel,
        console,
        command: parts.command,
        seccomp: parts.seccomp,
        boot_timeout: parts.boot_timeout,
        workload_timeout: parts.workload_timeout,
    })
}

impl Backend for VmBackend {
    type Error = VmError;
    type Prepared = PreparedVm;

    fn prepare(&self, spec: &WorkloadSpec) -> Result<PreparedVm, VmError> {
        let rootfs = spec.rootfs.as_deref().ok_or(VmError::NoRootfs)?;
        // Checked here (and the shares opened once) so that errors name host paths
        // before any VMM process exists; the jailed VMM opens them again in its jail.
        let host = |_: usize, h: &Path| h.to_path_buf();
        drop(setup::p9_servers(spec, rootfs, &host)?);
        setup::raise_fd_limit();
        let kernel = resolve_kernel(self.opts.kernel.as_deref()).map_err(VmError::Kernel)?;
        let init = setup::find_guest_init()?;
        let vcpus = plan::vcpus(spec);
        let vcpus_u8 = setup::check_vcpus(spec, vcpus)?;
        let parent = rundir::vm_runs_dir();
        // Directories of killed runs go now, not only on `isol gc` (a readdir when clean).
        let _ = rundir::gc_in(&parent);
        let dir = RunDir::create_in(&parent).map_err(|source| VmError::RunDir {
            path: parent,
            source,
        })?;
        let mut guest = plan::guest_config(spec, false);
        guest.seccomp = isol_sandbox::seccomp::for_spec(&spec.seccomp)
            .map_err(VmError::Seccomp)?
            .map(|f| f.to_bytes());
        let config = guest.encode();
        let initrd = dir.path().join("initramfs.cpio");
        let contents = Contents {
            init: &init,
            config: &config,
        };
        let size = write_initramfs(&initrd, &contents).map_err(VmError::Initramfs)?;
        let parts = Parts {
            kernel: kernel.path,
            initrd,
            cmdline: plan::cmdline(self.opts.verbose, self.opts.cmdline_extra.as_deref()),
            memory: guest_ram(spec.resources.memory, size),
            vcpus: vcpus_u8,
            log: File::create(dir.path().join("console.log")).ok(),
            verbose: self.opts.verbose,
            allow_pvm: self.opts.allow_pvm,
            seccomp: self.opts.seccomp,
            command: spec.args[0].clone(),
            boot_timeout: self
                .opts
                .boot_timeout
                .unwrap_or(Duration::from_secs(DEFAULT_BOOT_TIMEOUT)),
            workload_timeout: spec.timeout,
        };
        let (command, boot_timeout) = (parts.command.clone(), parts.boot_timeout);
        let (vm, cgroup) = match self.opts.jail {
            VmmJail::Off => {
                let shares = setup::local(setup::p9_servers(spec, rootfs, &host)?);
                let local = build(parts, shares, &|| Ok(()))?;
                (Vm::Local(Box::new(local)), None)
            }
            VmmJail::On => {
                let (jailed, cgroup) = jailed::spawn_vm(spec, parts, &dir)?;
                (Vm::Jailed(jailed), Some(cgroup))
            }
        };
        Ok(PreparedVm {
            vm,
            command,
            boot_timeout,
            _cgroup: cgroup,
            _dir: dir,
        })
    }
}

/// An unbuffered writer on a duplicate of isol's fd 1 or 2 (byte-exact, no line
/// buffering); a sink that drops everything if the fd cannot be duplicated.
fn dup_stdio(fd: std::os::fd::BorrowedFd<'_>) -> Box<dyn std::io::Write + Send> {
    match fd.try_clone_to_owned() {
        Ok(owned) => Box::new(File::from(owned)),
        Err(_) => Box::new(std::io::sink()),
    }
}

impl Prepared for PreparedVm {
    type Error = VmError;

    fn run_observed(
        self,
        started: &mut dyn FnMut(&isol_common::Started),
    ) -> Result<WorkloadExit, VmError> {
        let PreparedVm {
            vm, _cgroup, _dir, ..
        } = self;
        // The VMM is the process a supervisor holds: isol itself, or the jailed child.
        let (pid, cgroups) = match &vm {
            Vm::Local(_) => (nix::unistd::getpid().as_raw(), Vec::new()),
            Vm::Jailed(j) => (j.pid().as_raw(), Vec::new()),
        };
        started(&isol_common::Started { pid, cgroups });
        match vm {
            Vm::Local(local) => local.run(),
            Vm::Jailed(jailed) => jailed::run(jailed),
        }
    }
}

impl LocalVm {
    /// Serves the channel, runs the machine and maps how the workload ended.
    fn run(self) -> Result<WorkloadExit, VmError> {
        let LocalVm {
            machine,
            channel,
            console,
            command,
            seccomp,
            boot_timeout,
            workload_timeout,
        } = *Box::new(self);
        let control = machine.control();
        let deadlines = Deadlines {
            boot: boot_timeout,
            workload: workload_timeout,
        };
        let threads = (|| {
            let output = Output::spawn_confined(
                channel.output().clone(),
                dup_stdio(std::io::stdout().as_fd()),
                dup_stdio(std::io::stderr().as_fd()),
                seccomp,
            )?;
            spawn_stdin_pump(channel.clone(), 0, seccomp)?;
            spawn_signal_forwarder(channel.clone(), seccomp)?;
            spawn_watchdog(
                channel.clone(),
                deadlines,
                Box::new(move || control.stop()),
                seccomp,
            )?;
            Ok(output)
        })();
        let output = match threads {
            Ok(output) => output,
            Err(e) => {
                channel.close();
                return Err(VmError::Threads(e));
            }
        };
        let result = machine.run(backstop(Instant::now(), boot_timeout, workload_timeout));
        let outcome = channel.outcome();
        finish_output(output, &channel, outcome);
        channel.close();
        let exit = result.map_err(VmError::Machine)?;
        map_outcome(outcome, &exit, &command, &console, boot_timeout)
    }
}

/// Writes what the workload wrote before it ended. After an exit report, everything (a
/// slow reader, a pager, is waited for), unless a signal comes to isol meanwhile; after a
/// timeout or a failure, only while the reader keeps up, so a stalled reader cannot keep
/// isol from ending.
fn finish_output(output: Output, channel: &Channel, outcome: Option<Outcome>) {
    let start = Instant::now();
    let signaled = || channel.output().signaled_since(start);
    match outcome {
        Some(Outcome::Reported(_)) => output.finish(None, &signaled),
        _ => output.finish(Some(OUTPUT_GRACE), &signaled),
    };
}

/// The machine's own deadline, a backstop behind the watchdog (which ends the VM first):
/// the workload must start within `boot` and then has its `--timeout`. Without a
/// `--timeout` there is none: the VM runs as long as its workload does.
fn backstop(now: Instant, boot: Duration, workload: Option<Duration>) -> Option<Instant> {
    workload.map(|w| now + boot + w + BACKSTOP_MARGIN)
}

/// Removes what killed runs left behind; returns a line per thing removed.
pub fn gc() -> Result<Vec<String>, VmError> {
    let parent = rundir::vm_runs_dir();
    let removed = rundir::gc_in(&parent).map_err(|source| VmError::RunDir {
        path: parent.clone(),
        source,
    })?;
    let mut lines: Vec<String> = removed
        .iter()
        .map(|p| format!("VM run directory {}", p.display()))
        .collect();
    // A VMM cgroup is removed before its run directory; one whose directory is gone
    // belongs to a killed run.
    let live = |name: &str| parent.join(name).exists();
    lines.extend(
        crate::jail::cgroup::gc(&live)
            .iter()
            .map(|p| format!("VMM cgroup {}", p.display())),
    );
    Ok(lines)
}

/// The path of the guest init this isol would use (for `isol kernel` style reports).
pub fn guest_init_path() -> Option<PathBuf> {
    setup::find_guest_init().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_backstop_none_without_workload_timeout() {
        let now = Instant::now();
        let boot = Duration::from_secs(60);
        assert_eq!(backstop(now, boot, None), None);
        let w = Duration::from_secs(5);
        assert_eq!(
            backstop(now, boot, Some(w)),
            Some(now + boot + w + BACKSTOP_MARGIN)
        );
    }
}
