//! kvmcheck: proves that `/dev/kvm` runs guest code.
//!
//! Creates a VM with 64 KiB of memory, loads a few real-mode instructions at 0x1000 and runs
//! one vCPU until it halts. The guest adds two registers the host set (2 + 3), writes the
//! digit and a message from guest memory to the serial port 0x3f8 and stores a marker byte
//! in guest memory. The host checks all of it byte by byte and prints
//! `KVMCHECK_OK kvm=<module> exits=<n>`; any difference exits 1 with what differed.

use std::fmt::Write as _;

use kvm_bindings::kvm_userspace_memory_region;
use kvm_ioctls::{Kvm, VcpuExit};

/// Guest memory size (bytes); the code, message and marker all live in it.
const MEM_SIZE: usize = 0x10000;
/// Guest-physical address of the code.
const CODE_ADDR: u64 = 0x1000;
/// Guest-physical address of the NUL-terminated message the guest prints.
const MSG_ADDR: usize = 0x2000;
/// Guest-physical address where the guest stores `MARKER`.
const MARKER_ADDR: usize = 0x3000;
const MARKER: u8 = 0x5a;
const SERIAL_PORT: u16 = 0x3f8;
const MESSAGE: &[u8] = b"hello from a KVM guest\n";
/// Most exits a correct run takes (one per `out`, plus slack); more means a runaway guest.
const MAX_EXITS: usize = 256;

/// 16-bit real-mode code, loaded at CODE_ADDR.
const GUEST_CODE: &[u8] = &[
    0xc6, 0x06, 0x00, 0x30, MARKER, // mov byte [0x3000], MARKER
    0xba, 0xf8, 0x03, // mov dx, 0x3f8
    0x00, 0xd8, // add al, bl        (host set al=2, bl=3)
    0x04, b'0', // add al, '0'
    0xee, // out dx, al        ('5')
    0xb0, b'\n', // mov al, '\n'
    0xee,  // out dx, al
    0xbe, 0x00, 0x20, // mov si, 0x2000
    0xac, // loop: lodsb
    0x84, 0xc0, // test al, al
    0x74, 0x03, // jz done
    0xee, // out dx, al
    0xeb, 0xf8, // jmp loop
    0xf4, // done: hlt
];

#[derive(Debug, thiserror::Error)]
enum CheckError {
    #[error("Cannot open /dev/kvm (is a KVM module loaded?)")]
    OpenKvm(#[source] kvm_ioctls::Error),
    #[error("Cannot create a VM")]
    CreateVm(#[source] kvm_ioctls::Error),
    #[error("Cannot mmap {MEM_SIZE:#x} bytes of guest memory")]
    Mmap(#[source] std::io::Error),
    #[error("Cannot register guest memory with KVM")]
    SetMemory(#[source] kvm_ioctls::Error),
    #[error("Cannot create or set up the vCPU")]
    Vcpu(#[source] kvm_ioctls::Error),
    #[error("KVM_RUN failed")]
    Run(#[source] kvm_ioctls::Error),
    #[error("Unexpected exit from the guest: {0}")]
    UnexpectedExit(String),
    #[error("Guest did not halt within {MAX_EXITS} exits")]
    Runaway,
    #[error("Guest output differs: got {got:?}, want {want:?}")]
    Output { got: String, want: String },
    #[error("Guest memory marker at {MARKER_ADDR:#x} is {0:#04x}, want {MARKER:#04x}")]
    Marker(u8),
}

/// Anonymous shared memory for the guest, unmapped on drop.
struct GuestMemory {
    ptr: *mut u8,
}

impl GuestMemory {
    fn new() -> Result<Self, CheckError> {
        // SAFETY: a fresh anonymous mapping; no existing memory is touched, and the result
        // is checked against MAP_FAILED before use.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                MEM_SIZE,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_ANONYMOUS | libc::MAP_SHARED | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(CheckError::Mmap(std::io::Error::last_os_error()));
        }
        Ok(Self { ptr: ptr.cast() })
    }

    fn bytes(&mut self) -> &mut [u8] {
        // SAFETY: `ptr` is a live MEM_SIZE-byte read/write mapping owned by `self`; the
        // borrow of `self` keeps it alive and unaliased on the host side.
        unsafe { std::slice::from_raw_parts_mut(self.ptr, MEM_SIZE) }
    }
}

impl Drop for GuestMemory {
    fn drop(&mut self) {
        // SAFETY: `ptr` came from mmap of MEM_SIZE bytes and is unmapped exactly once.
        unsafe { libc::munmap(self.ptr.cast(), MEM_SIZE) };
    }
}

/// Which kernel module serves /dev/kvm.
fn kvm_flavour() -> &'static str {
    ["kvm_amd", "kvm_intel", "kvm_pvm"]
        .into_iter()
        .find(|m| std::path::Path::new("/sys/module").join(m).exists())
        .unwrap_or("unknown")
}

/// Runs the guest; returns the bytes it wrote to the serial port and the number of exits.
fn run_guest(mem: &mut GuestMemory) -> Result<(Vec<u8>, usize), CheckError> {
    let kvm = Kvm::new().map_err(CheckError::OpenKvm)?;
    let vm = kvm.create_vm().map_err(CheckError::CreateVm)?;
    let region = kvm_userspace_memory_region {
        slot: 0,
        flags: 0,
        guest_phys_addr: 0,
        memory_size: MEM_SIZE as u64,
        userspace_addr: mem.ptr as u64,
    };
    // SAFETY: the region covers `mem`, a live mapping that outlives the VM (it is dropped
    // after `vm` in the caller), and it is the only slot.
    unsafe { vm.set_user_memory_region(region) }.map_err(CheckError::SetMemory)?;

    let mut vcpu = vm.create_vcpu(0).map_err(CheckError::Vcpu)?;
    let mut sregs = vcpu.get_sregs().map_err(CheckError::Vcpu)?;
    sregs.cs.base = 0;
    sregs.cs.selector = 0;
    vcpu.set_sregs(&sregs).map_err(CheckError::Vcpu)?;
    let mut regs = vcpu.get_regs().map_err(CheckError::Vcpu)?;
    regs.rip = CODE_ADDR;
    regs.rax = 2;
    regs.rbx = 3;
    regs.rflags = 2;
    vcpu.set_regs(&regs).map_err(CheckError::Vcpu)?;

    let mut serial = Vec::new();
    for exits in 1..=MAX_EXITS {
        match vcpu.run().map_err(CheckError::Run)? {
            VcpuExit::IoOut(SERIAL_PORT, data) => serial.extend_from_slice(data),
            VcpuExit::Hlt => return Ok((serial, exits)),
            other => return Err(CheckError::UnexpectedExit(format!("{other:?}"))),
        }
    }
    Err(CheckError::Runaway)
}

fn check() -> Result<String, CheckError> {
    let mut mem = GuestMemory::new()?;
    let code = CODE_ADDR as usize;
    mem.bytes()[code..code + GUEST_CODE.len()].copy_from_slice(GUEST_CODE);
    mem.bytes()[MSG_ADDR..MSG_ADDR + MESSAGE.len()].copy_from_slice(MESSAGE);

    let (serial, exits) = run_guest(&mut mem)?;
    let mut want = b"5\n".to_vec();
    want.extend_from_slice(MESSAGE);
    if serial != want {
        return Err(CheckError::Output {
            got: String::from_utf8_lossy(&serial).into_owned(),
            want: String::from_utf8_lossy(&want).into_owned(),
        });
    }
    let marker = mem.bytes()[MARKER_ADDR];
    if marker != MARKER {
        return Err(CheckError::Marker(marker));
    }
    let mut line = String::new();
    let _ = write!(line, "KVMCHECK_OK kvm={} exits={exits}", kvm_flavour());
    Ok(line)
}

fn main() {
    match check() {
        Ok(line) => println!("{line}"),
        Err(e) => {
            let mut msg = format!("kvmcheck: {e}");
            let mut source = std::error::Error::source(&e);
            while let Some(s) = source {
                let _ = write!(msg, ": {s}");
                source = s.source();
            }
            eprintln!("{msg}");
            std::process::exit(1);
        }
    }
}
