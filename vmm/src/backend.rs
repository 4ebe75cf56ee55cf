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
mod outcome;
pub mod plan;
mod rundir;

use std::fs::File;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use isol_common::{Backend, Prepared, WorkloadExit, WorkloadSpec};

use crate::channel::host::{spawn_signal_forwarder, spawn_stdin_pump, spawn_watchdog, Deadlines};
use crate::channel::protocol::{volume_tag, CHANNEL_BASE, CHANNEL_LEN, ROOT_TAG};
use crate::channel::{Channel, ChannelDevice, Outcome, Output};
use crate::devices::virtio::device::VIRTIO_IRQS;
use crate::devices::virtio::p9::{P9Server, ServerGroup};
use crate::devices::virtio::{P9Device, VirtioSlot};
use crate::initramfs::{write_initramfs, Contents};
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
}

impl VmBackend {
    /// A backend with these options.
    pub fn new(opts: VmOptions) -> Self {
        VmBackend { opts }
    }
}

/// A prepared microVM: the machine, its channel and the run directory (removed on drop).
pub struct PreparedVm {
    machine: Machine,
    channel: Arc<Channel>,
    console: ConsoleLog,
    command: String,
    seccomp: VmmSeccomp,
    boot_timeout: Duration,
    workload_timeout: Option<Duration>,
    // Dropped last: the initramfs and console log live here.
    _dir: RunDir,
}

impl std::fmt::Debug for PreparedVm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PreparedVm")
            .field("command", &self.command)
            .field("boot_timeout", &self.boot_timeout)
            .finish_non_exhaustive()
    }
}

/// Finds the static guest init; the error says where it looked and how to build it.
fn find_guest_init() -> Result<PathBuf, VmError> {
    let exe = std::env::current_exe().ok();
    let candidates = plan::guest_init_candidates(exe.as_deref());
    let mut dynamic = Vec::new();
    for c in &candidates {
        // Only the ELF and program headers are read: this runs on every VM start.
        match isol_common::elf::file_is_static_elf(c) {
            Ok(true) => return Ok(c.clone()),
            Ok(false) => dynamic.push(c.display().to_string()),
            Err(_) => continue,
        }
    }
    let looked: Vec<String> = candidates.iter().map(|c| c.display().to_string()).collect();
    let mut msg = format!(
        "No static guest init ({GUEST_INIT_NAME}) found (looked in: {}); build it with \
         `RUSTFLAGS=\"-C target-feature=+crt-static\" cargo build --release -p isol-guest --target x86_64-unknown-linux-gnu` \
         or set ISOL_GUEST_INIT=FILE",
        looked.join(", ")
    );
    if !dynamic.is_empty() {
        msg.push_str(&format!(
            " ({} is dynamically linked and cannot run in the guest)",
            dynamic.join(", ")
        ));
    }
    Err(VmError::GuestInit(msg))
}

/// The vCPU count, refused like container mode's cpuset when it exceeds the CPUs isol may
/// run on: more vCPUs than CPUs only time-slice, and both modes must accept the same specs.
fn check_vcpus(spec: &WorkloadSpec, vcpus: u32) -> Result<u8, VmError> {
    let available = host_cpus();
    match u8::try_from(vcpus) {
        Ok(n) if vcpus <= available => Ok(n),
        _ => Err(VmError::TooManyCpus {
            cpus: spec.resources.cpus.unwrap_or(f64::from(vcpus)),
            wanted: vcpus,
            available,
        }),
    }
}

/// The 9P server holds an fd per file the guest has walked to: lift the soft fd limit to
/// the hard one, as Firecracker and QEMU do (failing that, the guest gets EMFILE).
fn raise_fd_limit() {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    if let Ok((_, hard)) = getrlimit(Resource::RLIMIT_NOFILE) {
        let _ = setrlimit(Resource::RLIMIT_NOFILE, hard, hard);
    }
}

/// CPUs in isol's affinity mask (1 if it cannot be read).
fn host_cpus() -> u32 {
    nix::sched::sched_getaffinity(nix::unistd::Pid::from_raw(0))
        .map(|set| {
            (0..nix::sched::CpuSet::count())
                .filter(|&i| set.is_set(i).unwrap_or(false))
                .count()
        })
        .map_or(1, |n| u32::try_from(n).unwrap_or(u32::MAX).max(1))
}

/// The virtio-9p devices: the rootfs, read-only, in slot 0 (the guest mounts
/// [`ROOT_TAG`] under an overlay with a tmpfs upper layer), then one per volume in
/// spec order (volume `i` as `volume_tag(i)` in slot `i + 1`); and the command line
/// fragments that declare them.
fn p9_devices(
    spec: &WorkloadSpec,
    rootfs: &Path,
) -> Result<(Vec<(VirtioSlot, P9Device)>, String), VmError> {
    let max = VIRTIO_IRQS.len() - 1;
    if spec.volumes.len() > max {
        return Err(VmError::TooManyVolumes {
            count: spec.volumes.len(),
            max,
        });
    }
    let mut shares = vec![(ROOT_TAG.to_string(), rootfs, true)];
    shares.extend(
        spec.volumes
            .iter()
            .enumerate()
            .map(|(i, v)| (volume_tag(i), v.host.as_path(), v.read_only)),
    );
    let mut devices = Vec::with_capacity(shares.len());
    let mut cmdline = String::new();
    // One lock and one fd budget for all shares of the VM (see p9::group).
    let group = ServerGroup::for_vm();
    for (i, (tag, host, read_only)) in shares.into_iter().enumerate() {
        let err = |source: Box<dyn std::error::Error + Send + Sync>| match i {
            0 => VmError::Rootfs {
                path: host.to_path_buf(),
                source,
            },
            _ => VmError::Volume {
                host: host.to_path_buf(),
                path: spec.volumes[i - 1].path.clone(),
                source,
            },
        };
        let slot = VirtioSlot::new(i).ok_or_else(|| err("no virtio-mmio slot left".into()))?;
        let server = P9Server::in_group(host, read_only, std::sync::Arc::clone(&group))
            .map_err(|e| err(Box::new(e)))?;
        let device = P9Device::new(&tag, Box::new(server)).map_err(|e| err(Box::new(e)))?;
        cmdline.push(' ');
        cmdline.push_str(&slot.cmdline());
        devices.push((slot, device));
    }
    Ok((devices, cmdline))
}

impl Backend for VmBackend {
    type Error = VmError;
    type Prepared = PreparedVm;

    fn prepare(&self, spec: &WorkloadSpec) -> Result<PreparedVm, VmError> {
        let rootfs = spec.rootfs.as_deref().ok_or(VmError::NoRootfs)?;
        let (shares, shares_cmdline) = p9_devices(spec, rootfs)?;
        raise_fd_limit();
        let kernel = resolve_kernel(self.opts.kernel.as_deref()).map_err(VmError::Kernel)?;
        let init = find_guest_init()?;
        let vcpus = plan::vcpus(spec);
        let vcpus_u8 = check_vcpus(spec, vcpus)?;
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
        let log = File::create(dir.path().join("console.log")).ok();
        let console = ConsoleLog::new(log, self.opts.verbose);
        let extra = self.opts.cmdline_extra.as_deref();
        let cfg = MachineConfig {
            kernel: kernel.path,
            initrd: Some(initrd),
            cmdline: plan::cmdline(self.opts.verbose, extra) + &shares_cmdline,
            memory: guest_ram(spec.resources.memory, size),
            vcpus: vcpus_u8,
            console: Box::new(console.clone()),
            allow_pvm: self.opts.allow_pvm,
            seccomp: self.opts.seccomp,
        };
        let mut machine = Machine::new(cfg).map_err(VmError::Machine)?;
        let channel = Arc::new(Channel::new());
        let device = ChannelDevice::new(channel.clone(), machine.control())
            .with_memory(machine.memory().clone());
        machine
            .add_pio_device(CHANNEL_BASE, CHANNEL_LEN, Arc::new(Mutex::new(device)))
            .map_err(VmError::Machine)?;
        for (slot, device) in shares {
            machine
                .add_virtio_device(slot, Box::new(device))
                .map_err(VmError::Machine)?;
        }
        Ok(PreparedVm {
            machine,
            channel,
            console,
            command: spec.args[0].clone(),
            seccomp: self.opts.seccomp,
            boot_timeout: self
                .opts
                .boot_timeout
                .unwrap_or(Duration::from_secs(DEFAULT_BOOT_TIMEOUT)),
            workload_timeout: spec.timeout,
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

    fn run(self) -> Result<WorkloadExit, VmError> {
        let PreparedVm {
            machine,
            channel,
            console,
            command,
            seccomp,
            boot_timeout,
            workload_timeout,
            _dir,
        } = self;
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
        path: parent,
        source,
    })?;
    Ok(removed
        .iter()
        .map(|p| format!("VM run directory {}", p.display()))
        .collect())
}

/// The path of the guest init this isol would use (for `isol kernel` style reports).
pub fn guest_init_path() -> Option<PathBuf> {
    find_guest_init().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec_with(volumes: &[&str], cpus: Option<&str>) -> WorkloadSpec {
        let ov = isol_common::Overrides {
            args: vec!["true".into()],
            volumes: volumes.iter().map(|v| v.to_string()).collect(),
            cpus: cpus.map(str::to_string),
            ..isol_common::Overrides::default()
        };
        WorkloadSpec::from_toml("", &ov).unwrap()
    }

    #[test]
    fn test_p9_devices_root_first_then_one_slot_per_volume() {
        let s = spec_with(&["/tmp:/a", "/tmp:/b:ro"], None);
        let (devices, cmdline) = p9_devices(&s, Path::new("/tmp")).unwrap();
        assert_eq!(devices.len(), 3);
        let slots: Vec<usize> = devices.iter().map(|(slot, _)| slot.index).collect();
        assert_eq!(slots, [0, 1, 2]);
        assert_eq!(
            cmdline,
            " virtio_mmio.device=4K@0xd0000000:5 virtio_mmio.device=4K@0xd0001000:6 \
             virtio_mmio.device=4K@0xd0002000:7"
        );
    }

    #[test]
    fn test_p9_devices_refuse_more_volumes_than_the_slots() {
        let vols: Vec<String> = (0..VIRTIO_IRQS.len())
            .map(|i| format!("/tmp:/v{i}"))
            .collect();
        let refs: Vec<&str> = vols.iter().map(String::as_str).collect();
        let e = p9_devices(&spec_with(&refs, None), Path::new("/tmp")).unwrap_err();
        assert!(e.to_string().contains("at most 13 volumes"), "{e}");
        let ok = &refs[..VIRTIO_IRQS.len() - 1];
        assert!(p9_devices(&spec_with(ok, None), Path::new("/tmp")).is_ok());
    }

    #[test]
    fn test_p9_devices_missing_rootfs_is_named() {
        let s = spec_with(&[], None);
        let e = p9_devices(&s, Path::new("/nonexistent-isol-rootfs")).unwrap_err();
        assert!(
            e.to_string()
                .contains("root filesystem /nonexistent-isol-rootfs"),
            "{e}"
        );
    }

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

    #[test]
    fn test_check_vcpus_refuses_more_than_the_host_cpus() {
        let n = host_cpus();
        let s = spec_with(&[], Some(&n.to_string()));
        assert_eq!(check_vcpus(&s, n).unwrap(), u8::try_from(n).unwrap());
        let e = check_vcpus(&s, n + 1).unwrap_err();
        assert!(
            e.to_string().contains(&format!("use --cpus {n} or less")),
            "{e}"
        );
    }
}
