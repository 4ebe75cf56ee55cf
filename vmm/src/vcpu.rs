//! vCPUs: per-vCPU setup (CPUID, boot MSRs, FPU, LAPIC LINT0/LINT1, boot registers), the
//! run loop each vCPU thread executes, exit dispatch as a plain function
//! ([`handle_kvm_exit`], unit-tested with hand-made exits), and the kick that gets a
//! thread out of `KVM_RUN`: a real-time signal whose handler sets `immediate_exit` in that
//! thread's `kvm_run` (Firecracker's scheme), so a halted or spinning guest stops promptly.

use std::cell::Cell;
use std::sync::{Arc, OnceLock};

use kvm_bindings::{kvm_cpuid_entry2, kvm_fpu, kvm_msr_entry, kvm_run, CpuId, Msrs};
use kvm_ioctls::{VcpuExit, VcpuFd};
use vmm_sys_util::signal::{register_signal_handler, SIGRTMIN};

use crate::boot::{regs, EntryPoint};
use crate::control::{MachineControl, MachineExit};
use crate::devices::{Bus, DebugLog};

/// Errors of vCPU setup.
#[derive(Debug, thiserror::Error)]
pub enum VcpuError {
    /// An ioctl on the vCPU failed.
    #[error("Cannot {op} on vCPU {index}")]
    Ioctl {
        /// What we tried.
        op: &'static str,
        /// Which vCPU.
        index: u8,
        /// Cause.
        #[source]
        source: kvm_ioctls::Error,
    },
    /// Building a KVM array failed (too many entries).
    #[error("Cannot build the {what} array for vCPU {index}")]
    Fam {
        /// Which array.
        what: &'static str,
        /// Which vCPU.
        index: u8,
    },
    /// The kick signal handler could not be installed.
    #[error("Cannot install the vCPU kick signal handler")]
    Signal(#[source] vmm_sys_util::errno::Error),
}

/// MSRs as a Linux boot expects them (Firecracker's `create_boot_msr_entries`).
pub fn boot_msrs() -> Vec<kvm_msr_entry> {
    const MTRR_ENABLE: u64 = 1 << 11;
    const MTRR_TYPE_WB: u64 = 6;
    const MISC_ENABLE_FAST_STRING: u64 = 1;
    [
        (0x174, 0),                          // IA32_SYSENTER_CS
        (0x175, 0),                          // IA32_SYSENTER_ESP
        (0x176, 0),                          // IA32_SYSENTER_EIP
        (0xc000_0081, 0),                    // STAR
        (0xc000_0083, 0),                    // CSTAR
        (0xc000_0102, 0),                    // KERNEL_GS_BASE
        (0xc000_0084, 0),                    // SYSCALL_MASK
        (0xc000_0082, 0),                    // LSTAR
        (0x10, 0),                           // IA32_TSC
        (0x1a0, MISC_ENABLE_FAST_STRING),    // IA32_MISC_ENABLE
        (0x2ff, MTRR_ENABLE | MTRR_TYPE_WB), // MTRRdefType
    ]
    .iter()
    .map(|&(index, data)| kvm_msr_entry {
        index,
        data,
        ..Default::default()
    })
    .collect()
}

const APIC_LVT0: usize = 0x350;
const APIC_LVT1: usize = 0x360;
const APIC_MODE_NMI: u32 = 0x4;
const APIC_MODE_EXTINT: u32 = 0x7;

fn lapic_reg(regs: &[std::os::raw::c_char], off: usize) -> u32 {
    let b: Vec<u8> = regs[off..off + 4].iter().map(|&c| c as u8).collect();
    u32::from_le_bytes([b[0], b[1], b[2], b[3]])
}

fn set_lapic_reg(regs: &mut [std::os::raw::c_char], off: usize, v: u32) {
    for (i, b) in v.to_le_bytes().iter().enumerate() {
        regs[off + i] = *b as std::os::raw::c_char;
    }
}

/// LINT0 as ExtINT (the PIC), LINT1 as NMI: the local APIC wiring the MP table describes.
pub fn set_lint(regs: &mut [std::os::raw::c_char]) {
    let delivery = |v: u32, mode: u32| (v & !0x700) | (mode << 8);
    let l0 = lapic_reg(regs, APIC_LVT0);
    set_lapic_reg(regs, APIC_LVT0, delivery(l0, APIC_MODE_EXTINT));
    let l1 = lapic_reg(regs, APIC_LVT1);
    set_lapic_reg(regs, APIC_LVT1, delivery(l1, APIC_MODE_NMI));
}

/// Sets up vCPU `index` of `count`; the boot vCPU (0) also gets the entry registers.
pub fn configure(
    vcpu: &VcpuFd,
    index: u8,
    count: u8,
    supported: &[kvm_cpuid_entry2],
    entry: &EntryPoint,
    log: &DebugLog,
) -> Result<(), VcpuError> {
    let io = |op| move |source| VcpuError::Ioctl { op, index, source };
    let table = crate::cpuid::filter_cpuid(supported, index, count);
    let cpuid = CpuId::from_entries(&table).map_err(|_| VcpuError::Fam {
        what: "CPUID",
        index,
    })?;
    vcpu.set_cpuid2(&cpuid).map_err(io("set CPUID"))?;
    let entries = boot_msrs();
    let msrs = Msrs::from_entries(&entries).map_err(|_| VcpuError::Fam { what: "MSR", index })?;
    let n = vcpu.set_msrs(&msrs).map_err(io("set MSRs"))?;
    if n != entries.len() {
        // KVM stops at the first MSR it refuses; the guest can live without the rest.
        log.line(format_args!(
            "vCPU {index}: KVM accepted {n} of {} boot MSRs (refused {:#x})",
            entries.len(),
            entries[n].index
        ));
    }
    let fpu = kvm_fpu {
        fcw: 0x37f,
        mxcsr: 0x1f80,
        ..Default::default()
    };
    vcpu.set_fpu(&fpu).map_err(io("set FPU"))?;
    let mut lapic = vcpu.get_lapic().map_err(io("get LAPIC"))?;
    set_lint(&mut lapic.regs);
    vcpu.set_lapic(&lapic).map_err(io("set LAPIC"))?;
    if index == 0 {
        let sregs = vcpu.get_sregs().map_err(io("get special registers"))?;
        vcpu.set_sregs(&regs::sregs_for(entry, sregs))
            .map_err(io("set special registers"))?;
        vcpu.set_regs(&regs::regs_for(entry))
            .map_err(io("set registers"))?;
    }
    Ok(())
}

/// What the run loop does after an exit.
#[derive(Debug, PartialEq, Eq)]
pub enum ExitAction {
    /// Enter the guest again.
    Continue,
    /// End the machine.
    Exit(MachineExit),
    /// `KVM_EXIT_INTERNAL_ERROR`: the loop logs KVM's details, then ends the machine.
    InternalError,
}

/// Dispatches one exit (Firecracker's `handle_kvm_exit`): port I/O to the port bus, MMIO
/// to the MMIO bus (unknown ports and addresses logged, reads all ones), resets and triple
/// faults end the machine, anything unexpected ends it as crashed.
pub fn handle_kvm_exit(exit: VcpuExit<'_>, bus: &Bus, mmio: &Bus, log: &DebugLog) -> ExitAction {
    match exit {
        VcpuExit::IoIn(port, data) => {
            if !bus.read(u64::from(port), data) {
                data.fill(0xff);
                log.line(format_args!(
                    "unknown port in {port:#x} ({} bytes)",
                    data.len()
                ));
            }
            ExitAction::Continue
        }
        VcpuExit::IoOut(port, data) => {
            if !bus.write(u64::from(port), data) {
                log.line(format_args!(
                    "unknown port out {port:#x} ({} bytes)",
                    data.len()
                ));
            }
            ExitAction::Continue
        }
        VcpuExit::MmioRead(addr, data) => {
            if mmio.read(addr, data) {
                return ExitAction::Continue;
            }
            data.fill(0xff);
            log.line(format_args!(
                "unhandled MMIO read {addr:#x} ({} bytes)",
                data.len()
            ));
            ExitAction::Continue
        }
        VcpuExit::MmioWrite(addr, data) => {
            if mmio.write(addr, data) {
                return ExitAction::Continue;
            }
            log.line(format_args!(
                "unhandled MMIO write {addr:#x} ({} bytes)",
                data.len()
            ));
            ExitAction::Continue
        }
        VcpuExit::Hlt | VcpuExit::Intr | VcpuExit::IrqWindowOpen | VcpuExit::IoapicEoi(_) => {
            ExitAction::Continue
        }
        VcpuExit::Shutdown => ExitAction::Exit(MachineExit::TripleFault),
        VcpuExit::SystemEvent(kind, _) => match kind {
            kvm_bindings::KVM_SYSTEM_EVENT_RESET => ExitAction::Exit(MachineExit::Reset),
            kvm_bindings::KVM_SYSTEM_EVENT_SHUTDOWN => ExitAction::Exit(MachineExit::Stopped),
            _ => ExitAction::Exit(MachineExit::Crashed {
                reason: format!("The guest reported system event {kind}"),
            }),
        },
        VcpuExit::FailEntry(reason, cpu) => ExitAction::Exit(MachineExit::Crashed {
            reason: format!(
                "KVM could not enter the guest (hardware entry failure {reason:#x} on CPU {cpu})"
            ),
        }),
        VcpuExit::InternalError => ExitAction::InternalError,
        other => ExitAction::Exit(MachineExit::Crashed {
            reason: format!("The guest stopped with an unexpected KVM exit: {other:?}"),
        }),
    }
}

thread_local! {
    /// This thread's `kvm_run`, for the kick handler; null outside the run loop.
    static KVM_RUN: Cell<*mut kvm_run> = const { Cell::new(std::ptr::null_mut()) };
}

extern "C" fn kick_handler(_: libc::c_int, _: *mut libc::siginfo_t, _: *mut libc::c_void) {
    let run = KVM_RUN.with(|r| r.get());
    if !run.is_null() {
        // SAFETY: `run` is this thread's live kvm_run mapping: set by `run_loop` before
        // the first KVM_RUN and cleared before the VcpuFd (and its mapping) is dropped.
        // A volatile byte store is async-signal-safe.
        unsafe { std::ptr::addr_of_mut!((*run).immediate_exit).write_volatile(1) };
    }
}

/// The signal that kicks a vCPU thread out of `KVM_RUN`.
pub fn kick_signal() -> libc::c_int {
    SIGRTMIN()
}

/// Installs the kick handler once per process (a failure is reported on every call).
pub fn install_kick_handler() -> Result<(), VcpuError> {
    static INSTALLED: OnceLock<Result<(), vmm_sys_util::errno::Error>> = OnceLock::new();
    INSTALLED
        .get_or_init(|| register_signal_handler(kick_signal(), kick_handler))
        .map_err(VcpuError::Signal)
}

/// What every vCPU thread shares.
#[derive(Debug, Clone)]
pub struct VcpuContext {
    /// Port devices.
    pub bus: Arc<Bus>,
    /// MMIO devices.
    pub mmio: Arc<Bus>,
    /// Ends the machine.
    pub control: MachineControl,
    /// Debug log.
    pub log: DebugLog,
}

/// Runs one vCPU until the machine ends. Never panics on guest behaviour.
pub fn run_loop(mut vcpu: VcpuFd, index: u8, ctx: &VcpuContext) {
    let run_ptr: *mut kvm_run = vcpu.get_kvm_run();
    KVM_RUN.with(|r| r.set(run_ptr));
    while !ctx.control.is_stopping() {
        let action = match vcpu.run() {
            Ok(exit) => handle_kvm_exit(exit, &ctx.bus, &ctx.mmio, &ctx.log),
            Err(e) if e.errno() == libc::EINTR || e.errno() == libc::EAGAIN => {
                vcpu.set_kvm_immediate_exit(0);
                ExitAction::Continue
            }
            Err(e) => ExitAction::Exit(MachineExit::Crashed {
                reason: format!("KVM_RUN failed on vCPU {index}: {e}"),
            }),
        };
        match action {
            ExitAction::Continue => {}
            ExitAction::Exit(exit) => {
                match &exit {
                    MachineExit::Crashed { reason } => {
                        dump_state(&mut vcpu, index, reason, &ctx.log);
                    }
                    // On Intel the registers are those of the fault; on AMD KVM has
                    // already INIT-reset the vCPU at the shutdown, so they are reset values.
                    MachineExit::TripleFault => dump_state(
                        &mut vcpu,
                        index,
                        "triple fault (AMD: registers already reset by KVM)",
                        &ctx.log,
                    ),
                    _ => {}
                }
                ctx.control.finish(exit);
            }
            ExitAction::InternalError => {
                let reason = internal_error_reason(&mut vcpu, index);
                dump_state(&mut vcpu, index, &reason, &ctx.log);
                ctx.control.finish(MachineExit::Crashed { reason });
            }
        }
    }
    KVM_RUN.with(|r| r.set(std::ptr::null_mut()));
    if ctx.control.exit() == Some(MachineExit::DeadlineExpired) {
        // Where a guest that never finished was: for the console log, not the user.
        dump_state(&mut vcpu, index, "still running at the deadline", &ctx.log);
    }
}

fn internal_error_reason(vcpu: &mut VcpuFd, index: u8) -> String {
    // SAFETY: the last exit was KVM_EXIT_INTERNAL_ERROR, so `internal` is the live member.
    let internal = unsafe { vcpu.get_kvm_run().__bindgen_anon_1.internal };
    let what = match internal.suberror {
        1 => "instruction emulation failed",
        2 => "simultaneous exceptions",
        3 => "event delivery failed",
        _ => "unknown cause",
    };
    format!(
        "The guest stopped with a KVM internal error on vCPU {index} ({what}, suberror {})",
        internal.suberror
    )
}

/// Writes the crash details to the debug log (console log), never to the user.
fn dump_state(vcpu: &mut VcpuFd, index: u8, reason: &str, log: &DebugLog) {
    log.always(format_args!("vCPU {index}: {reason}"));
    if let Ok(r) = vcpu.get_regs() {
        log.always(format_args!(
            "vCPU {index}: rip={:#x} rsp={:#x} rflags={:#x} rax={:#x} rbx={:#x} rcx={:#x} rdx={:#x} rsi={:#x} rdi={:#x}",
            r.rip, r.rsp, r.rflags, r.rax, r.rbx, r.rcx, r.rdx, r.rsi, r.rdi
        ));
    }
    if let Ok(mp) = vcpu.get_mp_state() {
        log.always(format_args!("vCPU {index}: mp_state={}", mp.mp_state));
    }
    if let Ok(s) = vcpu.get_sregs() {
        log.always(format_args!(
            "vCPU {index}: cs={:#x}/{:#x} cr0={:#x} cr3={:#x} cr4={:#x} efer={:#x}",
            s.cs.selector, s.cs.base, s.cr0, s.cr3, s.cr4, s.efer
        ));
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::devices::bus::BusDevice;
    use crate::devices::log::testing::VecSink;

    struct Rec(Vec<u8>);
    impl BusDevice for Rec {
        fn read(&mut self, _: u64, data: &mut [u8]) {
            data.fill(7);
        }
        fn write(&mut self, _: u64, data: &[u8]) {
            self.0.extend_from_slice(data);
        }
    }

    struct MRec(Vec<(u64, Vec<u8>)>);
    impl BusDevice for MRec {
        fn read(&mut self, offset: u64, data: &mut [u8]) {
            data.fill(offset as u8);
        }
        fn write(&mut self, offset: u64, data: &[u8]) {
            self.0.push((offset, data.to_vec()));
        }
    }

    type Buses = (Bus, Bus);

    fn setup() -> (Buses, Arc<Mutex<Rec>>, DebugLog, VecSink) {
        let mut bus = Bus::pio();
        let dev = Arc::new(Mutex::new(Rec(Vec::new())));
        bus.insert(0x3f8, 8, dev.clone()).unwrap();
        let sink = VecSink::default();
        let log = DebugLog::new(Box::new(sink.clone()));
        ((bus, Bus::mmio()), dev, log, sink)
    }

    #[test]
    fn test_exit_io_out_reaches_device() {
        let (bus, dev, log, _) = setup();
        let a = handle_kvm_exit(VcpuExit::IoOut(0x3f8, b"hi"), &bus.0, &bus.1, &log);
        assert_eq!(a, ExitAction::Continue);
        assert_eq!(dev.lock().unwrap().0, b"hi");
    }

    #[test]
    fn test_exit_unknown_port_in_reads_ones_and_logs() {
        let (bus, _, log, sink) = setup();
        let mut data = vec![0u8; 4096];
        let a = handle_kvm_exit(VcpuExit::IoIn(0x1234, &mut data), &bus.0, &bus.1, &log);
        assert_eq!(a, ExitAction::Continue);
        assert!(data.iter().all(|&b| b == 0xff));
        assert!(sink.text().contains("unknown port in 0x1234"));
        let a = handle_kvm_exit(VcpuExit::IoOut(0x1234, &[1, 2]), &bus.0, &bus.1, &log);
        assert_eq!(a, ExitAction::Continue);
    }

    #[test]
    fn test_exit_mmio_ignored_reads_ones() {
        let (bus, _, log, sink) = setup();
        let mut data = [0u8; 8];
        let a = handle_kvm_exit(
            VcpuExit::MmioRead(0xd000_0000, &mut data),
            &bus.0,
            &bus.1,
            &log,
        );
        assert_eq!(a, ExitAction::Continue);
        assert_eq!(data, [0xff; 8]);
        let a = handle_kvm_exit(
            VcpuExit::MmioWrite(0xffff_ffff_f000, &[1]),
            &bus.0,
            &bus.1,
            &log,
        );
        assert_eq!(a, ExitAction::Continue);
        assert!(sink.text().contains("MMIO write"));
    }

    #[test]
    fn test_exit_mmio_routed_to_device_by_offset() {
        let ((pio, mut mmio), _, log, sink) = setup();
        let dev = Arc::new(Mutex::new(MRec(Vec::new())));
        mmio.insert(0xd000_0000, 0x1000, dev.clone()).unwrap();
        let mut data = [0u8; 4];
        let a = handle_kvm_exit(
            VcpuExit::MmioRead(0xd000_0070, &mut data),
            &pio,
            &mmio,
            &log,
        );
        assert_eq!(a, ExitAction::Continue);
        assert_eq!(data, [0x70; 4]);
        let a = handle_kvm_exit(
            VcpuExit::MmioWrite(0xd000_0050, &[0, 0, 0, 0]),
            &pio,
            &mmio,
            &log,
        );
        assert_eq!(a, ExitAction::Continue);
        assert_eq!(dev.lock().unwrap().0, vec![(0x50, vec![0; 4])]);
        assert!(sink.text().is_empty(), "{}", sink.text());
        // Just past the window: not the device's, logged, all ones.
        let mut data = [0u8; 4];
        handle_kvm_exit(
            VcpuExit::MmioRead(0xd000_1000, &mut data),
            &pio,
            &mmio,
            &log,
        );
        assert_eq!(data, [0xff; 4]);
        assert!(sink.text().contains("unhandled MMIO read 0xd0001000"));
    }

    #[test]
    fn test_exit_shutdown_is_triple_fault_and_errors_crash() {
        let (bus, _, log, _) = setup();
        assert_eq!(
            handle_kvm_exit(VcpuExit::Shutdown, &bus.0, &bus.1, &log),
            ExitAction::Exit(MachineExit::TripleFault)
        );
        assert_eq!(
            handle_kvm_exit(VcpuExit::InternalError, &bus.0, &bus.1, &log),
            ExitAction::InternalError
        );
        assert!(matches!(
            handle_kvm_exit(VcpuExit::FailEntry(0x21, 0), &bus.0, &bus.1, &log),
            ExitAction::Exit(MachineExit::Crashed { .. })
        ));
        assert_eq!(
            handle_kvm_exit(VcpuExit::Hlt, &bus.0, &bus.1, &log),
            ExitAction::Continue
        );
        assert_eq!(
            handle_kvm_exit(
                VcpuExit::SystemEvent(kvm_bindings::KVM_SYSTEM_EVENT_RESET, &[]),
                &bus.0,
                &bus.1,
                &log
            ),
            ExitAction::Exit(MachineExit::Reset)
        );
    }

    #[test]
    fn test_set_lint_delivery_modes() {
        let mut regs = [0 as std::os::raw::c_char; 1024];
        set_lapic_reg(&mut regs, APIC_LVT0, 0x0001_0700);
        set_lint(&mut regs);
        assert_eq!(lapic_reg(&regs, APIC_LVT0), 0x0001_0700);
        assert_eq!((lapic_reg(&regs, APIC_LVT1) >> 8) & 7, APIC_MODE_NMI);
    }

    #[test]
    fn test_boot_msrs_include_misc_enable_and_mtrr() {
        let m = boot_msrs();
        assert!(m.iter().any(|e| e.index == 0x1a0 && e.data == 1));
        assert!(m
            .iter()
            .any(|e| e.index == 0x2ff && e.data == (1 << 11) | 6));
    }
}
