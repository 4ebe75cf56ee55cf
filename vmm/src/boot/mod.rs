//! Loading a kernel into guest memory and describing how the boot vCPU enters it.
//!
//! Three image kinds, told apart by their first bytes ([`detect`]):
//! - ELF vmlinux: loaded by linux-loader, entered through its PVH note
//!   (`XEN_ELFNOTE_PHYS32_ENTRY`) in 32-bit protected mode with `hvm_start_info` in %ebx;
//! - bzImage: loaded by linux-loader, entered at its 64-bit entry with `boot_params` in %rsi;
//! - raw real-mode image (isol's own format for tiny test guests, see [`raw`]).

pub mod cmdline;
pub mod layout;
pub mod linux;
pub mod pvh;
pub mod raw;
pub mod regs;

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use vm_memory::{GuestAddress, GuestMemoryMmap};

use crate::memory::{self, Range};

/// Errors of kernel loading and boot setup.
#[derive(Debug, thiserror::Error)]
pub enum BootError {
    /// Cannot open or read the kernel image.
    #[error("Cannot read kernel image {path}")]
    ReadKernel {
        /// The image.
        path: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// Not ELF, bzImage or raw.
    #[error("{path} is not a kernel image isol can boot: expected an ELF vmlinux with a PVH note, a bzImage, or an isol raw image")]
    UnknownFormat {
        /// The image.
        path: PathBuf,
    },
    /// linux-loader refused the image.
    #[error("Cannot load kernel image {path}")]
    Load {
        /// The image.
        path: PathBuf,
        /// Cause.
        #[source]
        source: linux_loader::loader::Error,
    },
    /// ELF without a PVH entry note.
    #[error("ELF kernel {path} has no PVH entry note (XEN_ELFNOTE_PHYS32_ENTRY): build it with CONFIG_PVH=y, or boot its bzImage")]
    NoPvhEntry {
        /// The image.
        path: PathBuf,
    },
    /// Raw image too big.
    #[error("Raw image {path} is {size} bytes: at most {max} fit below the EBDA")]
    RawTooBig {
        /// The image.
        path: PathBuf,
        /// Its size.
        size: u64,
        /// The limit.
        max: u64,
    },
    /// Cannot read the initrd.
    #[error("Cannot read initrd {path}")]
    ReadInitrd {
        /// The file.
        path: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// The initrd does not fit between the kernel and the end of low RAM.
    #[error("Initrd of {size} bytes does not fit in guest memory: give the guest more memory")]
    InitrdTooBig {
        /// Its size.
        size: u64,
    },
    /// Command line too long.
    #[error("Kernel command line is {len} bytes: at most {max} allowed")]
    CmdlineTooLong {
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// Command line with a NUL byte.
    #[error("Kernel command line contains a NUL byte")]
    CmdlineNul,
    /// Writing a boot structure failed (out of guest memory: a layout bug or tiny guest).
    #[error("Cannot write the {what} into guest memory")]
    WriteMemory {
        /// Which structure.
        what: &'static str,
        /// Cause.
        #[source]
        source: vm_memory::GuestMemoryError,
    },
}

/// Kind of kernel image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KernelFormat {
    /// ELF vmlinux (PVH entry).
    Elf,
    /// bzImage (64-bit Linux boot protocol).
    BzImage,
    /// isol raw real-mode image.
    Raw,
}

/// Tells the format from the first 0x210 bytes of an image.
pub fn detect(head: &[u8]) -> Option<KernelFormat> {
    if head.starts_with(b"\x7fELF") {
        Some(KernelFormat::Elf)
    } else if head.starts_with(raw::RAW_MAGIC) {
        Some(KernelFormat::Raw)
    } else if head.get(0x202..0x206) == Some(b"HdrS") {
        Some(KernelFormat::BzImage)
    } else {
        None
    }
}

/// How the boot vCPU enters the guest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryPoint {
    /// 32-bit protected mode, flat segments, paging off; %ebx = `start_info`.
    Pvh {
        /// Entry address from the PVH note.
        entry: u64,
        /// Address of `hvm_start_info`.
        start_info: u64,
    },
    /// 64-bit long mode, identity-mapped first GiB; %rsi = `boot_params`.
    Linux64 {
        /// 64-bit entry address.
        entry: u64,
        /// Address of the zero page.
        boot_params: u64,
    },
    /// Real mode at `segment:ip`.
    RealMode {
        /// Code (and data, stack) segment.
        segment: u16,
        /// Entry offset.
        ip: u16,
    },
}

/// What to boot.
#[derive(Debug, Clone)]
pub struct BootSpec<'a> {
    /// Kernel image.
    pub kernel: &'a Path,
    /// Initrd.
    pub initrd: Option<&'a Path>,
    /// Command line.
    pub cmdline: &'a str,
}

/// The error for a failed read of the kernel image at `path` (open, stat or read).
pub(crate) fn kernel_read_err(path: &Path) -> impl Fn(std::io::Error) -> BootError + Copy + '_ {
    move |source| BootError::ReadKernel {
        path: path.to_path_buf(),
        source,
    }
}

/// Reads the format of the image at `path`.
pub fn detect_file(path: &Path) -> Result<KernelFormat, BootError> {
    let read_err = kernel_read_err(path);
    let mut head = Vec::with_capacity(0x210);
    File::open(path)
        .map_err(read_err)?
        .take(0x210)
        .read_to_end(&mut head)
        .map_err(read_err)?;
    detect(&head).ok_or_else(|| BootError::UnknownFormat {
        path: path.to_path_buf(),
    })
}

/// Loads the kernel (and initrd, command line, boot structures) into `mem`.
pub fn load(
    mem: &GuestMemoryMmap,
    ranges: &[Range],
    spec: &BootSpec<'_>,
) -> Result<EntryPoint, BootError> {
    let e820 = memory::e820_map(ranges);
    let low_end = memory::low_ram_end(ranges);
    match detect_file(spec.kernel)? {
        KernelFormat::Elf => pvh::load(mem, spec, &e820, low_end),
        KernelFormat::BzImage => linux::load(mem, spec, &e820, low_end),
        KernelFormat::Raw => raw::load(mem, spec.kernel),
    }
}

/// Reads the initrd into the top of low RAM (page-aligned, below `limit`, above
/// `kernel_end`); returns (address, size).
pub fn load_initrd(
    mem: &GuestMemoryMmap,
    path: &Path,
    kernel_end: u64,
    limit: u64,
) -> Result<(u64, u64), BootError> {
    use vm_memory::Bytes;
    let read_err = |source| BootError::ReadInitrd {
        path: path.to_path_buf(),
        source,
    };
    let mut f = File::open(path).map_err(read_err)?;
    let size = f.metadata().map_err(read_err)?.len();
    let addr = initrd_addr(size, kernel_end, limit).ok_or(BootError::InitrdTooBig { size })?;
    let len = usize::try_from(size).map_err(|_| BootError::InitrdTooBig { size })?;
    mem.read_exact_volatile_from(GuestAddress(addr), &mut f, len)
        .map_err(|source| BootError::WriteMemory {
            what: "initrd",
            source,
        })?;
    Ok((addr, size))
}

/// Page-aligned address for an initrd of `size` bytes ending at or below `limit`, above
/// `kernel_end`; `None` when it does not fit.
pub fn initrd_addr(size: u64, kernel_end: u64, limit: u64) -> Option<u64> {
    let addr = limit.checked_sub(size)? & !0xfff;
    (addr >= kernel_end && size > 0).then_some(addr)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_detect_formats() {
        assert_eq!(detect(b"\x7fELF\x02\x01"), Some(KernelFormat::Elf));
        assert_eq!(detect(raw::RAW_MAGIC), Some(KernelFormat::Raw));
        let mut bz = vec![0u8; 0x210];
        bz[0x202..0x206].copy_from_slice(b"HdrS");
        assert_eq!(detect(&bz), Some(KernelFormat::BzImage));
        assert_eq!(detect(b"#!/bin/sh\n"), None);
        assert_eq!(detect(b""), None);
    }

    #[test]
    fn test_initrd_addr_top_of_ram_page_aligned() {
        assert_eq!(
            initrd_addr(0x1800, 0x200_0000, 0x800_0000),
            Some(0x7ff_e000)
        );
        assert_eq!(initrd_addr(0x800_0000, 0x200_0000, 0x800_0000), None);
        assert_eq!(initrd_addr(u64::MAX, 0, 0x800_0000), None);
        assert_eq!(initrd_addr(0, 0, 0x800_0000), None);
    }
}
