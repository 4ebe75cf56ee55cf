//! PVM awareness. On a host whose /dev/kvm is served by `kvm_pvm` (Pagetable-based Virtual
//! Machine: KVM without VT-x/AMD-V, guests in ring 3 with shadow paging), only kernels built
//! as PVM guests (`CONFIG_PVM_GUEST=y`) run natively; anything else goes through KVM's
//! instruction emulator and dies with an internal error.
//!
//! Detecting a PVM guest kernel (heuristic): the kernel file, which for an uncompressed
//! vmlinux carries its symbol table, holds one of the names the PVM guest code defines
//! (`pvm_early_setup`, `x86_hyper_pvm`, `pvm_user_event_entry`, ...; see [`PVM_MARKERS`]).
//! A compressed bzImage or a stripped vmlinux hides them: such a kernel is reported as
//! "not a PVM guest" and needs `allow_pvm` to boot here.

use std::io::Read;
use std::path::Path;

/// Symbols only a `CONFIG_PVM_GUEST` kernel defines (from the PVM fork's arch/x86/kernel/pvm.c
/// and entry_64_pvm.S).
pub const PVM_MARKERS: &[&[u8]] = &[
    b"pvm_early_setup",
    b"x86_hyper_pvm",
    b"pvm_user_event_entry",
    b"pvm_kernel_event_entry",
    b"pvm_setup_early_traps",
];

/// True when /dev/kvm is PVM: `kvm_pvm` is loaded and the CPU has no vmx/svm.
pub fn host_is_pvm() -> bool {
    if !Path::new("/sys/module/kvm_pvm").exists() {
        return false;
    }
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    !cpu_flags_have_hw_virt(&cpuinfo)
}

fn cpu_flags_have_hw_virt(cpuinfo: &str) -> bool {
    cpuinfo
        .lines()
        .filter(|l| l.starts_with("flags"))
        .any(|l| l.split_whitespace().any(|f| f == "vmx" || f == "svm"))
}

/// True when `data` holds any of [`PVM_MARKERS`].
pub fn bytes_look_like_pvm_guest(data: &[u8]) -> bool {
    // All markers contain "pvm_" or "_pvm": find those, then compare around them.
    let mut i = 0;
    while let Some(pos) = data[i..].windows(3).position(|w| w == b"pvm") {
        let at = i + pos;
        for m in PVM_MARKERS {
            let mpos = m.windows(3).position(|w| w == b"pvm").unwrap_or(0);
            if at >= mpos && data[at - mpos..].starts_with(m) {
                return true;
            }
        }
        i = at + 3;
    }
    false
}

/// True when the kernel file looks like a PVM guest kernel (see the module doc).
pub fn kernel_is_pvm_guest(path: &Path) -> std::io::Result<bool> {
    let mut f = std::fs::File::open(path)?;
    let mut buf = vec![0u8; 1 << 20];
    let keep = 32; // longest marker, so matches across chunk borders are seen
    let mut filled = 0;
    loop {
        let n = f.read(&mut buf[filled..])?;
        if n == 0 {
            return Ok(bytes_look_like_pvm_guest(&buf[..filled]));
        }
        filled += n;
        if filled == buf.len() {
            if bytes_look_like_pvm_guest(&buf) {
                return Ok(true);
            }
            buf.copy_within(filled - keep.., 0);
            filled = keep;
        }
    }
}

/// The refusal shown when an ordinary kernel meets a PVM host.
pub fn refusal_message(kernel: &Path) -> String {
    format!(
        "This host's /dev/kvm is PVM (paravirtualized KVM without hardware virtualization: \
         no VT-x/AMD-V, module kvm_pvm), and {} is not a PVM guest kernel. An ordinary kernel \
         only runs there through KVM's instruction emulator and dies with a KVM internal \
         error. Use a PVM guest kernel (CONFIG_PVM_GUEST=y) via --kernel, run on a host with \
         VT-x/AMD-V, or run inside the nested lab: tests/lab/run.sh -- isol ...",
        kernel.display()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_pvm_markers_found_in_symbol_table_bytes() {
        let mut data = vec![0u8; 5000];
        data.extend_from_slice(b"\0start_kernel\0x86_hyper_pvm\0");
        assert!(bytes_look_like_pvm_guest(&data));
        assert!(bytes_look_like_pvm_guest(b"pvm_early_setup"));
    }

    #[test]
    fn test_pvm_markers_absent_in_ordinary_kernel() {
        assert!(!bytes_look_like_pvm_guest(
            b"\0kvm_guest_init\0pvm\0xpvm_early\0_pvm_"
        ));
        assert!(!bytes_look_like_pvm_guest(b""));
    }

    #[test]
    fn test_pvm_kernel_scan_across_chunk_border() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("k");
        let mut data = vec![0u8; (1 << 20) - 5];
        data.extend_from_slice(b"pvm_early_setup\0");
        data.extend_from_slice(&[0u8; 100]);
        std::fs::write(&p, &data).unwrap();
        assert!(kernel_is_pvm_guest(&p).unwrap());
        std::fs::write(&p, b"plain").unwrap();
        assert!(!kernel_is_pvm_guest(&p).unwrap());
    }

    #[test]
    fn test_pvm_cpu_flags_detection() {
        assert!(cpu_flags_have_hw_virt("flags\t\t: fpu vme vmx sse\n"));
        assert!(!cpu_flags_have_hw_virt("flags\t\t: fpu vme sse\nvmx\n"));
    }

    #[test]
    fn test_pvm_refusal_says_what_why_and_what_to_do() {
        let m = refusal_message(Path::new("/k"));
        for needle in [
            "PVM",
            "without hardware virtualization",
            "internal error",
            "--kernel",
            "VT-x/AMD-V",
            "tests/lab/run.sh",
        ] {
            assert!(m.contains(needle), "{needle} missing from {m}");
        }
    }
}
