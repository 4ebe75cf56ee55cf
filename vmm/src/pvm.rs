//! PVM awareness. On a host whose /dev/kvm is served by `kvm_pvm` (Pagetable-based Virtual
//! Machine: KVM without VT-x/AMD-V, guests in ring 3 with shadow paging), only kernels built
//! as PVM guests (`CONFIG_PVM_GUEST=y`) run natively; anything else goes through KVM's
//! instruction emulator and dies with an internal error.
//!
//! Detecting a PVM guest kernel (heuristic): the kernel file, which for an uncompressed
//! vmlinux carries its symbol table, holds one of the names the PVM guest code defines
//! (`pvm_early_setup`, `x86_hyper_pvm`, `pvm_user_event_entry`, ...; see [`PVM_MARKERS`]).
//! For an ELF only the `.symtab` string table is read (a few MB, found through the section
//! headers); other files are scanned whole (up to 64 MiB).
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
    PVM_MARKERS
        .iter()
        .any(|m| memchr::memmem::find(data, m).is_some())
}

/// `(offset, size)` of the string table of an ELF64 file's `.symtab`, from its section
/// headers; `None` when the file is not ELF64 or is stripped.
pub fn elf_symbol_strings(
    head: &[u8],
    shdrs: impl Fn(u64, usize) -> Option<Vec<u8>>,
) -> Option<(u64, u64)> {
    const SHT_SYMTAB: u32 = 2;
    if head.len() < 64 || !head.starts_with(b"\x7fELF\x02\x01") {
        return None;
    }
    let u16_at = |b: &[u8], o: usize| u16::from_le_bytes([b[o], b[o + 1]]);
    let u32_at = |b: &[u8], o: usize| u32::from_le_bytes(b[o..o + 4].try_into().unwrap_or([0; 4]));
    let u64_at = |b: &[u8], o: usize| u64::from_le_bytes(b[o..o + 8].try_into().unwrap_or([0; 8]));
    let shoff = u64_at(head, 0x28);
    let shentsize = usize::from(u16_at(head, 0x3a));
    let shnum = usize::from(u16_at(head, 0x3c));
    if shentsize < 64 || shnum == 0 {
        return None;
    }
    let table = shdrs(shoff, shentsize.checked_mul(shnum)?)?;
    let section = |i: usize| table.get(i * shentsize..i * shentsize + 64);
    let symtab = (0..shnum)
        .filter_map(section)
        .find(|h| u32_at(h, 4) == SHT_SYMTAB)?;
    let strtab = section(u32_at(symtab, 0x28) as usize)?;
    Some((u64_at(strtab, 0x18), u64_at(strtab, 0x20)))
}

/// True when the kernel file looks like a PVM guest kernel (see the module doc): the
/// symbol names of an ELF vmlinux, or the whole file for other formats, hold a marker.
pub fn kernel_is_pvm_guest(path: &Path) -> std::io::Result<bool> {
    use std::io::{Seek, SeekFrom};
    const MAX_SCAN: u64 = 64 << 20;
    let mut f = std::fs::File::open(path)?;
    let mut head = Vec::with_capacity(64);
    (&mut f).take(64).read_to_end(&mut head)?;
    let file_len = f.metadata()?.len();
    let read_at = |f: &mut std::fs::File, off: u64, len: u64| -> Option<Vec<u8>> {
        if off.checked_add(len)? > file_len || len > MAX_SCAN {
            return None;
        }
        f.seek(SeekFrom::Start(off)).ok()?;
        let mut buf = Vec::with_capacity(len as usize);
        f.take(len).read_to_end(&mut buf).ok()?;
        Some(buf)
    };
    if head.starts_with(b"\x7fELF") {
        let cell = std::cell::RefCell::new(&mut f);
        let range = elf_symbol_strings(&head, |off, len| {
            read_at(&mut cell.borrow_mut(), off, len as u64)
        });
        return Ok(match range {
            Some((off, len)) => read_at(&mut cell.borrow_mut(), off, len)
                .is_some_and(|strings| bytes_look_like_pvm_guest(&strings)),
            None => false,
        });
    }
    f.seek(SeekFrom::Start(0))?;
    let mut data = Vec::new();
    f.take(MAX_SCAN).read_to_end(&mut data)?;
    Ok(bytes_look_like_pvm_guest(&data))
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
    fn test_pvm_kernel_scan_non_elf_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("k");
        let mut data = vec![0u8; (1 << 20) - 5];
        data.extend_from_slice(b"pvm_early_setup\0");
        std::fs::write(&p, &data).unwrap();
        assert!(kernel_is_pvm_guest(&p).unwrap());
        std::fs::write(&p, b"plain").unwrap();
        assert!(!kernel_is_pvm_guest(&p).unwrap());
    }

    /// A minimal ELF64: header, two sections (.symtab linked to a string table).
    fn tiny_elf(strings: &[u8]) -> Vec<u8> {
        let mut f = vec![0u8; 64];
        f[..6].copy_from_slice(b"\x7fELF\x02\x01");
        let str_off = 64u64;
        f.extend_from_slice(strings);
        let shoff = f.len() as u64;
        f[0x28..0x30].copy_from_slice(&shoff.to_le_bytes());
        f[0x3a..0x3c].copy_from_slice(&64u16.to_le_bytes());
        f[0x3c..0x3e].copy_from_slice(&2u16.to_le_bytes());
        let mut symtab = [0u8; 64];
        symtab[4..8].copy_from_slice(&2u32.to_le_bytes());
        symtab[0x28..0x2c].copy_from_slice(&1u32.to_le_bytes());
        let mut strtab = [0u8; 64];
        strtab[4..8].copy_from_slice(&3u32.to_le_bytes());
        strtab[0x18..0x20].copy_from_slice(&str_off.to_le_bytes());
        strtab[0x20..0x28].copy_from_slice(&(strings.len() as u64).to_le_bytes());
        f.extend_from_slice(&symtab);
        f.extend_from_slice(&strtab);
        f
    }

    #[test]
    fn test_pvm_kernel_elf_symbol_names_scanned() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("vmlinux");
        std::fs::write(&p, tiny_elf(b"\0start_kernel\0x86_hyper_pvm\0")).unwrap();
        assert!(kernel_is_pvm_guest(&p).unwrap());
        std::fs::write(&p, tiny_elf(b"\0start_kernel\0kvm_guest_init\0")).unwrap();
        assert!(!kernel_is_pvm_guest(&p).unwrap());
    }

    #[test]
    fn test_pvm_kernel_stripped_or_truncated_elf_is_not_pvm() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("vmlinux");
        let mut elf = tiny_elf(b"\0x86_hyper_pvm\0");
        elf.truncate(100);
        std::fs::write(&p, &elf).unwrap();
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
