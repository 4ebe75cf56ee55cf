//! The bare KVM machine: guest memory, in-kernel irqchip and PIT, N vCPUs on their own
//! threads, a kernel loaded for PVH / 64-bit Linux / real-mode entry, an MP table, and
//! port-I/O devices (16550 console, i8042 reset, quiet legacy ports, the caller's own),
//! and virtio devices on virtio-mmio transports ([`Machine::add_virtio_device`]).
//!
//! [`Machine::new`] does all setup (errors surface before anything runs); [`Machine::run`]
//! starts the vCPU threads, blocks until the VM ends (reset, triple fault, crash,
//! [`MachineControl::stop`] or the deadline), joins every thread and frees every fd and
//! mapping before returning.

use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use kvm_ioctls::{IoEventAddress, NoDatamatch, VcpuFd, VmFd};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};
use vmm_sys_util::eventfd::EventFd;
use vmm_sys_util::signal::Killable;

use crate::boot::{self, BootError, BootSpec};
pub use crate::control::{MachineControl, MachineExit};
use crate::devices::i8042::{ResetTrigger, I8042, I8042_BASE, I8042_PORTS};
use crate::devices::legacy::{Cmos, Quiet, CMOS_BASE, QUIET_RANGES};
use crate::devices::serial::{EventFdTrigger, SerialDevice, COM1_BASE, COM1_IRQ, UART_PORTS};
use crate::devices::virtio::device::VIRTIO_MMIO_SIZE;
use crate::devices::virtio::transport::reg::QUEUE_NOTIFY;
use crate::devices::virtio::worker::VirtioWorker;
use crate::devices::virtio::{MmioTransport, VirtioDevice, VirtioSlot};
use crate::devices::{Bus, BusDevice, BusError, DebugLog, SharedWriter};
use crate::kvm::KvmError;
use crate::memory::{self, MemoryError};
use crate::mptable::{self, MAX_VCPUS, MPTABLE_START};
use crate::pvm;
use crate::seccomp::{self, ThreadClass, VmmSeccomp};
use crate::vcpu::{self, VcpuContext, VcpuError};

/// What to boot and how big.
pub struct MachineConfig {
    /// ELF (PVH), bzImage, or isol raw real-mode image.
    pub kernel: PathBuf,
    /// Initial ramdisk.
    pub initrd: Option<PathBuf>,
    /// Kernel command line.
    pub cmdline: String,
    /// Bytes of guest RAM.
    pub memory: u64,
    /// vCPUs (1..=32).
    pub vcpus: u8,
    /// Serial 0x3f8 output; also receives the VMM's debug log unless
    /// [`Machine::set_debug_log`] says otherwise.
    pub console: Box<dyn Write + Send>,
    /// Boot even a non-PVM kernel on a PVM host.
    pub allow_pvm: bool,
    /// Which VMM threads run under their seccomp filter ([`crate::seccomp`]).
    pub seccomp: VmmSeccomp,
}

impl std::fmt::Debug for MachineConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MachineConfig")
            .field("kernel", &self.kernel)
            .field("initrd", &self.initrd)
            .field("cmdline", &self.cmdline)
            .field("memory", &self.memory)
            .field("vcpus", &self.vcpus)
            .field("allow_pvm", &self.allow_pvm)
            .field("seccomp", &self.seccomp)
            .finish_non_exhaustive()
    }
}

/// Errors of machine setup and run.
#[derive(Debug, thiserror::Error)]
pub enum MachineError {
    /// vCPU count out of range.
    #[error("Cannot run {vcpus} vCPUs: use 1 to {MAX_VCPUS}")]
    BadVcpus {
        /// Requested.
        vcpus: u8,
    },
    /// PVM host, ordinary kernel (see [`crate::pvm`]).
    #[error("{message}")]
    PvmRefused {
        /// What, why, what to do.
        message: String,
    },
    /// Reading the kernel for the PVM check failed.
    #[error("Cannot read kernel image {path}")]
    ReadKernel {
        /// The image.
        path: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// /dev/kvm or VM setup failed.
    #[error("Cannot set up KVM")]
    Kvm(#[source] KvmError),
    /// Guest memory setup failed.
    #[error("Cannot set up guest memory")]
    Memory(#[source] MemoryError),
    /// Kernel, initrd or boot structures failed to load.
    #[error("Cannot load the guest kernel")]
    Boot(#[source] BootError),
    /// KVM_CREATE_VCPU failed.
    #[error("Cannot create vCPU {index}")]
    CreateVcpu {
        /// Which.
        index: u8,
        /// Cause.
        #[source]
        source: kvm_ioctls::Error,
    },
    /// vCPU setup failed.
    #[error("Cannot set up the vCPUs")]
    Vcpu(#[source] VcpuError),
    /// eventfd / irqfd for the serial interrupt failed.
    #[error("Cannot wire the serial interrupt (IRQ {COM1_IRQ})")]
    SerialIrq(#[source] std::io::Error),
    /// A port range was refused.
    #[error("Cannot add the port-I/O device")]
    Bus(#[source] BusError),
    /// The kernel command line lacks the slot's `virtio_mmio.device=` entry.
    #[error("Cannot add a virtio device in slot {slot}: the kernel command line lacks {entry:?}; append VirtioSlot::cmdline() to MachineConfig::cmdline")]
    VirtioCmdline {
        /// Slot index.
        slot: usize,
        /// The missing entry.
        entry: String,
    },
    /// eventfd / irqfd for a virtio device failed.
    #[error("Cannot wire the interrupt of virtio slot {slot} (IRQ {irq})")]
    VirtioIrq {
        /// Slot index.
        slot: usize,
        /// Its IRQ.
        irq: u32,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// The queue worker thread could not start.
    #[error("Cannot start the queue worker of virtio slot {slot}")]
    VirtioWorker {
        /// Slot index.
        slot: usize,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// The device declared an invalid queue.
    #[error("Cannot set up the queues of the virtio device in slot {slot}")]
    VirtioQueue {
        /// Slot index.
        slot: usize,
        /// Cause.
        #[source]
        source: virtio_queue::Error,
    },
    /// An MMIO range was refused (slot already taken).
    #[error("Cannot add the MMIO device")]
    MmioBus(#[source] BusError),
    /// A vCPU thread could not start.
    #[error("Cannot start the thread of vCPU {index}")]
    SpawnVcpu {
        /// Which.
        index: u8,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
}

/// A configured VM, ready to [`run`](Machine::run).
pub struct Machine {
    // Field order is drop order: vCPUs and the VM fd go before the memory they map.
    vcpus: Vec<VcpuFd>,
    bus: Bus,
    // MMIO devices and workers hold clones of `memory` (Arc'd regions): dropped before it.
    mmio: Bus,
    workers: Vec<VirtioWorker>,
    vm: VmFd,
    memory: GuestMemoryMmap,
    control: MachineControl,
    log: DebugLog,
    console: SharedWriter,
    cmdline: String,
    seccomp: VmmSeccomp,
    // A virtio device without an ioeventfd: its queues are served on the vCPU threads.
    virtio_on_vcpus: bool,
}

impl std::fmt::Debug for Machine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Machine")
            .field("vcpus", &self.vcpus.len())
            .field("bus", &self.bus)
            .field("mmio", &self.mmio)
            .finish_non_exhaustive()
    }
}

impl Machine {
    /// Opens /dev/kvm, checks its capabilities, creates the VM and its memory, loads the
    /// kernel and sets up vCPUs and the built-in devices. Refuses at once an ordinary kernel
    /// on a PVM host unless `allow_pvm`.
    pub fn new(cfg: MachineConfig) -> Result<Machine, MachineError> {
        if cfg.vcpus == 0 || cfg.vcpus > MAX_VCPUS {
            return Err(MachineError::BadVcpus { vcpus: cfg.vcpus });
        }
        let ranges = memory::ram_ranges(cfg.memory).map_err(MachineError::Memory)?;
        check_pvm(&cfg)?;
        let kvm = crate::kvm::open().map_err(MachineError::Kvm)?;
        let vm = crate::kvm::create_vm(&kvm).map_err(MachineError::Kvm)?;
        let mem = memory::create_guest_memory(&ranges).map_err(MachineError::Memory)?;
        let spec = BootSpec {
            kernel: &cfg.kernel,
            initrd: cfg.initrd.as_deref(),
            cmdline: &cfg.cmdline,
        };
        let vcpus = cfg.vcpus;
        let console = SharedWriter::new(cfg.console);
        let log = DebugLog::new(Box::new(console.clone()));
        // Registering the memory slots costs milliseconds on some hosts (PVM: ~9 ms for
        // 128 MiB) and needs nothing else: it runs beside kernel loading and vCPU setup.
        let vcpus = std::thread::scope(|s| {
            let register = || memory::register_with_kvm(&vm, &mem);
            let slots = std::thread::Builder::new()
                .name("isol-memslots".into())
                .spawn_scoped(s, register);
            let setup = load_guest(&mem, &ranges, &spec, vcpus)
                .and_then(|entry| create_vcpus(&kvm, &vm, vcpus, &entry, &log));
            let slots = match slots {
                Ok(h) => h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)),
                Err(_) => register(),
            };
            slots.map_err(MachineError::Memory)?;
            setup
        })?;
        let control = MachineControl::new();
        let bus = builtin_devices(&vm, &control, &console)?;
        Ok(Machine {
            vcpus,
            bus,
            mmio: Bus::mmio(),
            workers: Vec::new(),
            vm,
            memory: mem,
            control,
            log,
            console,
            cmdline: cfg.cmdline,
            seccomp: cfg.seccomp,
            virtio_on_vcpus: false,
        })
    }

    /// Adds a device on ports `base..base+len`; overlapping ranges are rejected.
    pub fn add_pio_device(
        &mut self,
        base: u16,
        len: u16,
        dev: Arc<Mutex<dyn BusDevice>>,
    ) -> Result<(), MachineError> {
        self.bus
            .insert(u64::from(base), u64::from(len), dev)
            .map_err(MachineError::Bus)
    }

    /// Adds `device` behind a virtio-mmio transport in `slot` (its register window and
    /// IRQ, wired with an irqfd). The guest finds it only through the kernel command line,
    /// which [`Machine::new`] already loaded: build `cfg.cmdline` with
    /// [`VirtioSlot::cmdline`] first; a slot missing from it is refused, as is a slot
    /// already taken. Its queues are served on a worker thread woken by an ioeventfd on
    /// QueueNotify (on the notifying vCPU thread if KVM refuses the ioeventfd); the worker
    /// is joined when the machine ends or is dropped.
    pub fn add_virtio_device(
        &mut self,
        slot: VirtioSlot,
        device: Box<dyn VirtioDevice>,
    ) -> Result<(), MachineError> {
        let entry = slot.cmdline();
        if !self.cmdline.split_ascii_whitespace().any(|w| w == entry) {
            return Err(MachineError::VirtioCmdline {
                slot: slot.index,
                entry,
            });
        }
        let irq_error = |source| MachineError::VirtioIrq {
            slot: slot.index,
            irq: slot.irq,
            source,
        };
        let evt = EventFd::new(libc::EFD_NONBLOCK).map_err(irq_error)?;
        self.vm
            .register_irqfd(&evt, slot.irq)
            .map_err(|e| irq_error(std::io::Error::from_raw_os_error(e.errno())))?;
        let transport = MmioTransport::new(
            device,
            self.memory.clone(),
            Box::new(EventFdTrigger(evt)),
            self.log.clone(),
        )
        .map_err(|source| MachineError::VirtioQueue {
            slot: slot.index,
            source,
        })?;
        let transport = Arc::new(Mutex::new(transport));
        self.mmio
            .insert(slot.addr, VIRTIO_MMIO_SIZE, transport.clone())
            .map_err(MachineError::MmioBus)?;
        // QueueNotify through an ioeventfd: KVM completes the guest's write and wakes the
        // worker. Without one, the write exits to the vCPU thread, which serves the queue.
        let notify = EventFd::new(libc::EFD_NONBLOCK).map_err(irq_error)?;
        let at = IoEventAddress::Mmio(slot.addr + QUEUE_NOTIFY);
        if let Err(e) = self.vm.register_ioevent(&notify, &at, NoDatamatch) {
            self.log.line(format_args!(
                "virtio slot {}: no ioeventfd ({e}): queues served on the vCPU threads",
                slot.index
            ));
            self.virtio_on_vcpus = true;
            return Ok(());
        }
        let worker = transport
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .spawn_worker(notify, &format!("isol-virtio{}", slot.index), self.seccomp)
            .map_err(|source| MachineError::VirtioWorker {
                slot: slot.index,
                source,
            })?;
        self.workers.push(worker);
        Ok(())
    }

    /// Sends the VMM's debug log (unknown ports, MMIO, crash details) to `sink` instead of
    /// the console.
    pub fn set_debug_log(&mut self, sink: Box<dyn Write + Send>) {
        self.log.set_sink(sink);
    }

    /// A handle that ends this machine from any thread (or from a device).
    pub fn control(&self) -> MachineControl {
        self.control.clone()
    }

    /// Guest memory (for devices that share buffers with the guest).
    pub fn memory(&self) -> &GuestMemoryMmap {
        &self.memory
    }

    /// Runs the guest until it ends; joins every vCPU thread and frees all memory and fds
    /// before returning.
    pub fn run(self, deadline: Option<Instant>) -> Result<MachineExit, MachineError> {
        vcpu::install_kick_handler().map_err(MachineError::Vcpu)?;
        let Machine {
            vcpus,
            bus,
            mmio,
            workers,
            vm,
            memory,
            control,
            log,
            mut console,
            cmdline: _,
            seccomp,
            virtio_on_vcpus,
        } = self;
        let vcpu_class = match virtio_on_vcpus {
            true => ThreadClass::VcpuServingVirtio,
            false => ThreadClass::Vcpu,
        };
        let ctx = VcpuContext {
            bus: Arc::new(bus),
            mmio: Arc::new(mmio),
            control: control.clone(),
            log,
        };
        let mut handles = Vec::with_capacity(vcpus.len());
        let mut spawn_error = None;
        for (index, fd) in vcpus.into_iter().enumerate() {
            let index = index as u8; // at most MAX_VCPUS
            let ctx = ctx.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("isol-vcpu{index}"))
                .spawn(move || {
                    seccomp::confine(vcpu_class, seccomp);
                    vcpu::run_loop(fd, index, &ctx);
                });
            match spawned {
                Ok(h) => handles.push(h),
                Err(source) => {
                    control.finish(MachineExit::Stopped);
                    spawn_error = Some(MachineError::SpawnVcpu { index, source });
                    break;
                }
            }
        }
        seccomp::confine(ThreadClass::Main, seccomp);
        let exit = control.wait(deadline);
        for h in &handles {
            // ESRCH (thread already gone) is fine: it has left KVM_RUN for good.
            let _ = h.kill(vcpu::kick_signal());
        }
        for h in handles {
            if h.join().is_err() {
                ctx.log.always(format_args!("a vCPU thread panicked"));
            }
        }
        drop(workers); // stops and joins them
        ctx.log.always(format_args!("VM ended: {exit:?}"));
        drop(ctx);
        drop(vm);
        drop(memory);
        let _ = console.flush();
        match spawn_error {
            Some(e) => Err(e),
            None => Ok(exit),
        }
    }
}

/// Loads kernel, initrd, command line and boot tables; returns how vCPU 0 enters.
fn load_guest(
    mem: &GuestMemoryMmap,
    ranges: &[memory::Range],
    spec: &BootSpec<'_>,
    vcpus: u8,
) -> Result<boot::EntryPoint, MachineError> {
    let entry = boot::load(mem, ranges, spec).map_err(MachineError::Boot)?;
    boot::regs::write_tables(mem, &entry).map_err(MachineError::Boot)?;
    write_mptable(mem, vcpus)?;
    Ok(entry)
}

/// Creates and configures `count` vCPUs.
fn create_vcpus(
    kvm: &kvm_ioctls::Kvm,
    vm: &VmFd,
    count: u8,
    entry: &boot::EntryPoint,
    log: &DebugLog,
) -> Result<Vec<VcpuFd>, MachineError> {
    let supported = kvm
        .get_supported_cpuid(kvm_bindings::KVM_MAX_CPUID_ENTRIES)
        .map_err(|e| MachineError::Kvm(KvmError::SupportedCpuid(e)))?;
    let mut vcpus = Vec::with_capacity(usize::from(count));
    for index in 0..count {
        let fd = vm
            .create_vcpu(u64::from(index))
            .map_err(|source| MachineError::CreateVcpu { index, source })?;
        vcpu::configure(&fd, index, count, supported.as_slice(), entry, log)
            .map_err(MachineError::Vcpu)?;
        vcpus.push(fd);
    }
    Ok(vcpus)
}

/// The PVM refusal (see [`crate::pvm`]). It reads host files (/sys/module, /proc/cpuinfo)
/// that a jailed VMM cannot see, so isol makes it before the jail as well.
pub(crate) fn check_pvm(cfg: &MachineConfig) -> Result<(), MachineError> {
    if cfg.allow_pvm || !pvm::host_is_pvm() {
        return Ok(());
    }
    let is_pvm_guest =
        pvm::kernel_is_pvm_guest(&cfg.kernel).map_err(|source| MachineError::ReadKernel {
            path: cfg.kernel.clone(),
            source,
        })?;
    if is_pvm_guest {
        return Ok(());
    }
    Err(MachineError::PvmRefused {
        message: pvm::refusal_message(&cfg.kernel),
    })
}

fn write_mptable(mem: &GuestMemoryMmap, vcpus: u8) -> Result<(), MachineError> {
    let table = mptable::build(vcpus).map_err(|_| MachineError::BadVcpus { vcpus })?;
    mem.write_slice(&table, GuestAddress(MPTABLE_START))
        .map_err(|source| {
            MachineError::Boot(BootError::WriteMemory {
                what: "MP table",
                source,
            })
        })
}

fn builtin_devices(
    vm: &VmFd,
    control: &MachineControl,
    console: &SharedWriter,
) -> Result<Bus, MachineError> {
    let mut bus = Bus::pio();
    let mut add = |base: u16, len: u16, dev: Arc<Mutex<dyn BusDevice>>| {
        bus.insert(u64::from(base), u64::from(len), dev)
            .map_err(MachineError::Bus)
    };
    let evt = EventFd::new(libc::EFD_NONBLOCK).map_err(MachineError::SerialIrq)?;
    vm.register_irqfd(&evt, COM1_IRQ)
        .map_err(|e| MachineError::SerialIrq(std::io::Error::from_raw_os_error(e.errno())))?;
    let serial = SerialDevice::new(EventFdTrigger(evt), console.clone());
    add(COM1_BASE, UART_PORTS, Arc::new(Mutex::new(serial)))?;
    let i8042 = I8042::new(ResetTrigger(control.clone()));
    add(I8042_BASE, I8042_PORTS, Arc::new(Mutex::new(i8042)))?;
    add(CMOS_BASE, 2, Arc::new(Mutex::new(Cmos::default())))?;
    for &(base, len, _) in QUIET_RANGES {
        add(base, len, Arc::new(Mutex::new(Quiet)))?;
    }
    Ok(bus)
}
