//! Per-thread seccomp filters for the VMM, Firecracker's scheme: every thread the VMM runs
//! gets an allow-list of the syscalls its job needs, compiled by seccompiler from the
//! reviewed JSON lists beside this file (one per thread class, each merged with
//! `common.json`, at build time by vmm/build.rs), and installed with `seccomp(2)` at the
//! thread's start, after its setup and before it touches guest data:
//!
//! | class | threads | list |
//! |---|---|---|
//! | [`ThreadClass::Vcpu`] | `isol-vcpuN` | `vcpu.json`: `KVM_RUN` and the three register reads of a crash report |
//! | [`ThreadClass::VcpuServingVirtio`] | `isol-vcpuN` when a virtio device has no ioeventfd | `vcpu.json` + `virtio.json` |
//! | [`ThreadClass::Virtio`] | `isol-virtioN` (queue workers: the 9P servers) | `virtio.json` |
//! | [`ThreadClass::Host`] | `isol-stdin`, `isol-signals`, `isol-watchdog` | `host.json` |
//! | [`ThreadClass::Main`] | the thread that calls `Machine::run`, once it has started the others | `main.json` |
//!
//! Filters are inherited by threads created later and stack (all must allow), so the main
//! thread's filter comes last. A syscall outside the list raises SIGSYS
//! (`SECCOMP_RET_TRAP`): the handler, async-signal-safe, writes
//! `isol: the VMM's seccomp filter (class C) stopped syscall NAME (NR)` to stderr and ends
//! the process with 125. Trap rather than `SECCOMP_RET_KILL_PROCESS` because isol is the
//! VMM process itself (no parent of ours waits to report a kill), and a bare "Bad system
//! call" exit 159 names nothing; no filter allows `rt_sigaction`, so a confined thread
//! cannot replace the handler.

mod names;

use std::cell::Cell;
use std::sync::OnceLock;

use seccompiler::sock_filter;

include!(concat!(env!("OUT_DIR"), "/seccomp_filters.rs"));

/// Exit status of a VMM stopped by its seccomp filter (isol's own error).
pub const EXIT_SECCOMP: i32 = 125;

/// Which VMM threads run under their seccomp filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum VmmSeccomp {
    /// Every VMM thread, and the thread that calls `Machine::run` once the VM's threads
    /// are started (isol's default). That thread stays confined for good: one machine per
    /// thread, and afterwards only what `main.json` allows (finish up and exit).
    #[default]
    On,
    /// Only the threads the VMM starts; the caller of `Machine::run` stays free (tests
    /// that run several machines in one thread, embedding).
    SpawnedThreadsOnly,
    /// No filter at all: `--vmm-seccomp off`, for debugging.
    Off,
}

impl VmmSeccomp {
    /// Whether threads of `class` get their filter under this setting.
    pub fn confines(self, class: ThreadClass) -> bool {
        match self {
            VmmSeccomp::On => true,
            VmmSeccomp::SpawnedThreadsOnly => class != ThreadClass::Main,
            VmmSeccomp::Off => false,
        }
    }
}

/// The VMM's thread classes, one filter each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ThreadClass {
    /// A vCPU thread.
    Vcpu,
    /// A vCPU thread that also serves virtio queues (KVM refused the ioeventfd).
    VcpuServingVirtio,
    /// A virtio queue worker (the 9P server).
    Virtio,
    /// A host I/O thread of the isol channel or of `isol boot` (stdin, signals, watchdog).
    Host,
    /// The thread that started the others and waits for the VM to end.
    Main,
}

impl ThreadClass {
    /// Every class.
    pub const ALL: [ThreadClass; 5] = [
        ThreadClass::Vcpu,
        ThreadClass::VcpuServingVirtio,
        ThreadClass::Virtio,
        ThreadClass::Host,
        ThreadClass::Main,
    ];

    /// The name in error messages (the JSON list it comes from).
    pub fn name(self) -> &'static str {
        match self {
            ThreadClass::Vcpu => "vcpu",
            ThreadClass::VcpuServingVirtio => "vcpu+virtio",
            ThreadClass::Virtio => "virtio",
            ThreadClass::Host => "host",
            ThreadClass::Main => "main",
        }
    }

    /// The compiled BPF program.
    pub fn program(self) -> &'static [sock_filter] {
        match self {
            ThreadClass::Vcpu => VCPU,
            ThreadClass::VcpuServingVirtio => VCPU_SERVING_VIRTIO,
            ThreadClass::Virtio => VIRTIO,
            ThreadClass::Host => HOST,
            ThreadClass::Main => MAIN,
        }
    }
}

/// Errors of installing a filter.
#[derive(Debug, thiserror::Error)]
pub enum SeccompError {
    /// sigaction(SIGSYS) failed.
    #[error("Cannot install the SIGSYS handler of the VMM's seccomp filters")]
    Handler(#[source] std::io::Error),
    /// prctl(PR_SET_NO_NEW_PRIVS) or seccomp(2) refused the filter.
    #[error("Cannot install the VMM's {class} seccomp filter")]
    Install {
        /// The thread class.
        class: &'static str,
        /// Cause.
        #[source]
        source: seccompiler::Error,
    },
}

thread_local! {
    /// This thread's class once confined (an index into [`ThreadClass::ALL`]), for the
    /// SIGSYS report; u8::MAX before.
    static CLASS: Cell<u8> = const { Cell::new(u8::MAX) };
}

/// Installs `class`'s filter on the calling thread (and the SIGSYS handler, once per
/// process). From here on the thread can make only the syscalls its list allows.
pub fn install(class: ThreadClass) -> Result<(), SeccompError> {
    install_sigsys_handler()?;
    let index = ThreadClass::ALL.iter().position(|&c| c == class);
    CLASS.with(|c| c.set(index.and_then(|i| u8::try_from(i).ok()).unwrap_or(u8::MAX)));
    seccompiler::apply_filter(class.program()).map_err(|source| SeccompError::Install {
        class: class.name(),
        source,
    })
}

/// At a thread's start: installs `class`'s filter if `mode` confines it. A thread that
/// cannot be confined ends the process (exit 125) with the reason on stderr: the VMM never
/// runs a guest-facing thread unconfined by accident.
pub fn confine(class: ThreadClass, mode: VmmSeccomp) {
    if !mode.confines(class) {
        return;
    }
    if let Err(e) = install(class) {
        let cause = std::error::Error::source(&e).map(|s| format!(": {s}"));
        eprintln!("isol: {e}{}", cause.unwrap_or_default());
        std::process::exit(EXIT_SECCOMP);
    }
}

fn install_sigsys_handler() -> Result<(), SeccompError> {
    static INSTALLED: OnceLock<Result<(), i32>> = OnceLock::new();
    let r = INSTALLED.get_or_init(|| {
        // SAFETY: an all-zero sigaction is a valid "no flags, empty mask" value.
        let mut act: libc::sigaction = unsafe { std::mem::zeroed() };
        act.sa_sigaction = sigsys_handler as *const () as usize;
        act.sa_flags = libc::SA_SIGINFO;
        // SAFETY: `act` is initialized, its handler is an extern "C" fn with the
        // SA_SIGINFO signature that only makes async-signal-safe calls; no old action is
        // asked for.
        let rc = unsafe { libc::sigaction(libc::SIGSYS, &act, std::ptr::null_mut()) };
        if rc == 0 {
            Ok(())
        } else {
            Err(std::io::Error::last_os_error().raw_os_error().unwrap_or(0))
        }
    });
    r.map_err(|e| SeccompError::Handler(std::io::Error::from_raw_os_error(e)))
}

/// `si_syscall` of a SIGSYS siginfo (x86_64: after signo, errno, code and padding, the
/// `_sigsys` member holds `_call_addr` (8 bytes), then `_syscall`), as Firecracker reads it.
const SI_SYSCALL_OFFSET: usize = 24;
/// `si_code` of a seccomp SIGSYS.
const SYS_SECCOMP: i32 = 1;

extern "C" fn sigsys_handler(_: libc::c_int, info: *mut libc::siginfo_t, _: *mut libc::c_void) {
    // SAFETY: the kernel passes a valid siginfo for SA_SIGINFO handlers; reading its
    // si_code and the i32 at `SI_SYSCALL_OFFSET` (inside the 128-byte siginfo) is sound.
    let (code, nr) = unsafe {
        let code = (*info).si_code;
        let nr = info
            .cast::<u8>()
            .add(SI_SYSCALL_OFFSET)
            .cast::<i32>()
            .read_unaligned();
        (code, nr)
    };
    let class = CLASS.with(|c| c.get());
    let class = ThreadClass::ALL
        .get(usize::from(class))
        .map_or("unknown", |c| c.name());
    let mut msg = Report::new();
    if code == SYS_SECCOMP {
        msg.push(b"isol: the VMM's seccomp filter (");
        msg.push(class.as_bytes());
        msg.push(b" thread) stopped the forbidden syscall ");
        let name = usize::try_from(nr).ok().and_then(|n| names::NAMES.get(n));
        msg.push(
            name.filter(|n| !n.is_empty())
                .map_or(b"unknown", |n| n.as_bytes()),
        );
        msg.push(b" (");
        msg.push_number(nr);
        msg.push(b"): a bug in isol, or a guest attacking the VMM; the VM is ended\n");
    } else {
        msg.push(b"isol: the VMM got SIGSYS; the VM is ended\n");
    }
    // SAFETY: write(2) and _exit(2) are async-signal-safe; `msg` is a live buffer of
    // `msg.len` initialized bytes.
    unsafe {
        libc::write(libc::STDERR_FILENO, msg.buf.as_ptr().cast(), msg.len);
        libc::_exit(EXIT_SECCOMP);
    }
}

/// A fixed-size message built without allocating (inside a signal handler).
struct Report {
    buf: [u8; 256],
    len: usize,
}

impl Report {
    fn new() -> Report {
        Report {
            buf: [0; 256],
            len: 0,
        }
    }

    fn push(&mut self, bytes: &[u8]) {
        let n = bytes.len().min(self.buf.len() - self.len);
        self.buf[self.len..self.len + n].copy_from_slice(&bytes[..n]);
        self.len += n;
    }

    fn push_number(&mut self, n: i32) {
        let mut digits = [0u8; 11];
        let mut i = digits.len();
        let mut v = n.unsigned_abs();
        loop {
            i -= 1;
            digits[i] = b'0' + (v % 10) as u8;
            v /= 10;
            if v == 0 {
                break;
            }
        }
        if n < 0 {
            self.push(b"-");
        }
        self.push(&digits[i..]);
    }
}

#[cfg(test)]
mod tests;
