//! Just enough ELF to tell a statically linked x86_64 executable from a dynamic one: the
//! default rootfs needs a static busybox and the microVM needs a static guest init, since
//! neither has a dynamic loader to run under.

use std::io::{self, Read};
use std::path::Path;

const PT_INTERP: u32 = 3;
/// ELF64 header size; the program header table follows it in practice.
const EHDR_LEN: usize = 0x40;

fn u16_at(b: &[u8], o: usize) -> Option<usize> {
    b.get(o..o + 2)
        .map(|x| usize::from(u16::from_le_bytes([x[0], x[1]])))
}

fn u64_at(b: &[u8], o: usize) -> Option<usize> {
    let x: [u8; 8] = b.get(o..o + 8)?.try_into().ok()?;
    usize::try_from(u64::from_le_bytes(x)).ok()
}

/// Where the program header table ends, if `bytes` starts with an ELF64 header.
fn phdrs_end(bytes: &[u8]) -> Option<usize> {
    if !bytes.starts_with(b"\x7fELF\x02") {
        return None;
    }
    let (phoff, phentsize, phnum) = (
        u64_at(bytes, 0x20)?,
        u16_at(bytes, 0x36)?,
        u16_at(bytes, 0x38)?,
    );
    phoff.checked_add(phentsize.checked_mul(phnum)?)
}

/// Whether `bytes` (the start of a file, at least through its program headers) is a 64-bit
/// ELF with no PT_INTERP program header. Anything unreadable counts as not static.
pub fn is_static_elf(bytes: &[u8]) -> bool {
    let Some(end) = phdrs_end(bytes) else {
        return false;
    };
    if end > bytes.len() {
        return false;
    }
    let (phoff, phentsize, phnum) = match (
        u64_at(bytes, 0x20),
        u16_at(bytes, 0x36),
        u16_at(bytes, 0x38),
    ) {
        (Some(a), Some(b), Some(c)) => (a, b, c),
        _ => return false,
    };
    (phnum == 0 || phentsize >= 4)
        && (0..phnum).all(|i| {
            let o = phoff + i * phentsize;
            bytes
                .get(o..o + 4)
                .is_some_and(|t| u32::from_le_bytes([t[0], t[1], t[2], t[3]]) != PT_INTERP)
        })
}

/// [`is_static_elf`] of a file, reading only its ELF header and program headers.
pub fn file_is_static_elf(path: &Path) -> io::Result<bool> {
    let mut f = std::fs::File::open(path)?;
    let mut head = vec![0u8; EHDR_LEN];
    if f.read(&mut head)? < EHDR_LEN {
        return Ok(false);
    }
    let Some(end) = phdrs_end(&head) else {
        return Ok(false);
    };
    // A sane table is a few KiB; refuse to read megabytes for a corrupt header.
    if end > 1 << 20 {
        return Ok(false);
    }
    head.resize(end.max(EHDR_LEN), 0);
    let want = head.len() - EHDR_LEN;
    let got = f.take(want as u64).read(&mut head[EHDR_LEN..])?;
    head.truncate(EHDR_LEN + got);
    Ok(is_static_elf(&head))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_is_static_elf_test_binary_is_dynamic() {
        let me = std::fs::read(std::env::current_exe().unwrap()).unwrap();
        assert!(!is_static_elf(&me), "test binaries are dynamically linked");
        assert!(!file_is_static_elf(&std::env::current_exe().unwrap()).unwrap());
    }

    #[test]
    fn test_is_static_elf_rejects_non_elf_and_truncated() {
        assert!(!is_static_elf(b"#!/bin/sh\n"));
        assert!(!is_static_elf(b"\x7fELF\x02"));
        let mut hdr = b"\x7fELF\x02\x01\x01".to_vec();
        hdr.resize(EHDR_LEN, 0);
        hdr[0x20] = 0x40; // phoff
        hdr[0x36] = 56; // phentsize
        hdr[0x38] = 2; // phnum: the table is missing
        assert!(!is_static_elf(&hdr));
    }

    #[test]
    fn test_is_static_elf_ld_linux_string_alone_is_not_dynamic() {
        // An ELF64 header with an empty program header table and the loader's name inside.
        let mut stat = b"\x7fELF\x02\x01\x01".to_vec();
        stat.resize(EHDR_LEN, 0);
        stat[0x36] = 56;
        stat.extend_from_slice(b"ld-linux-x86-64.so.2");
        assert!(is_static_elf(&stat));
    }

    #[test]
    fn test_file_is_static_elf_busybox_static() {
        let bb = Path::new("/bin/busybox");
        assert!(
            bb.exists(),
            "needs Debian's busybox-static (scripts/deps.sh installs it)"
        );
        assert!(file_is_static_elf(bb).unwrap());
        assert_eq!(
            file_is_static_elf(bb).unwrap(),
            is_static_elf(&std::fs::read(bb).unwrap())
        );
    }
}
