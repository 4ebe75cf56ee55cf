//! bzImage through the 64-bit Linux boot protocol (Documentation/arch/x86/boot.rst):
//! `boot_params` (the zero page) from the image's setup header, plus the e820 map, command
//! line and initrd; the vCPU starts in long mode at the 64-bit entry (load address + 0x200).

use std::fs::File;

use linux_loader::loader::bootparam::{boot_e820_entry, boot_params, setup_header};
use linux_loader::loader::bzimage::BzImage;
use linux_loader::loader::KernelLoader;
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use super::layout::{CMDLINE_ADDR, ZERO_PAGE_ADDR};
use super::{cmdline, BootError, BootSpec, EntryPoint};
use crate::memory::{E820Entry, HIMEM_START};

const KERNEL_BOOT_FLAG_MAGIC: u16 = 0xaa55;
const KERNEL_HDR_MAGIC: u32 = 0x5372_6448; // "HdrS"
const KERNEL_LOADER_OTHER: u8 = 0xff;
const KERNEL_MIN_ALIGNMENT: u32 = 0x0100_0000;
/// The 64-bit entry is this far into the protected-mode kernel.
pub const ENTRY_64_OFFSET: u64 = 0x200;
/// Command-line limit for boot protocols before 2.06.
const OLD_CMDLINE_MAX: usize = 256;
/// Our own cap, whatever the header says.
const CMDLINE_CAP: usize = 4096;

/// Longest command line (NUL included) this kernel's header accepts.
pub fn cmdline_max(hdr: &setup_header) -> usize {
    if hdr.version >= 0x0206 && hdr.cmdline_size > 0 {
        (hdr.cmdline_size as usize + 1).min(CMDLINE_CAP)
    } else {
        OLD_CMDLINE_MAX
    }
}

/// The zero page (pure).
pub fn zero_page(
    hdr: setup_header,
    e820: &[E820Entry],
    cmdline_len: usize,
    initrd: Option<(u64, u64)>,
) -> boot_params {
    let mut p = boot_params {
        hdr,
        ..Default::default()
    };
    p.hdr.type_of_loader = KERNEL_LOADER_OTHER;
    p.hdr.boot_flag = KERNEL_BOOT_FLAG_MAGIC;
    p.hdr.header = KERNEL_HDR_MAGIC;
    p.hdr.cmd_line_ptr = CMDLINE_ADDR as u32;
    p.hdr.cmdline_size = cmdline_len as u32;
    p.hdr.kernel_alignment = KERNEL_MIN_ALIGNMENT;
    if let Some((addr, size)) = initrd {
        // Both fit in 32 bits: the initrd is placed below `initrd_addr_max` (< 4 GiB).
        p.hdr.ramdisk_image = addr as u32;
        p.hdr.ramdisk_size = size as u32;
    }
    let n = e820.len().min(p.e820_table.len());
    for (slot, e) in p.e820_table.iter_mut().zip(e820) {
        *slot = boot_e820_entry {
            addr: e.addr,
            size: e.size,
            r#type: e.kind,
        };
    }
    p.e820_entries = n as u8;
    p
}

/// Loads a bzImage and writes its zero page.
pub fn load(
    mem: &GuestMemoryMmap,
    spec: &BootSpec<'_>,
    e820: &[E820Entry],
    low_end: u64,
) -> Result<EntryPoint, BootError> {
    let path = spec.kernel;
    let mut f = File::open(path).map_err(super::kernel_read_err(path))?;
    let res =
        BzImage::load(mem, None, &mut f, Some(GuestAddress(HIMEM_START))).map_err(|source| {
            BootError::Load {
                path: path.to_path_buf(),
                source,
            }
        })?;
    let hdr = res.setup_header.unwrap_or_default();
    cmdline::write(mem, spec.cmdline, cmdline_max(&hdr))?;
    let initrd = match spec.initrd {
        Some(p) => {
            let max = if hdr.initrd_addr_max == 0 {
                0x37ff_ffff
            } else {
                u64::from(hdr.initrd_addr_max)
            };
            Some(super::load_initrd(
                mem,
                p,
                res.kernel_end,
                low_end.min(max + 1),
            )?)
        }
        None => None,
    };
    let params = zero_page(hdr, e820, spec.cmdline.len() + 1, initrd);
    mem.write_obj(params, GuestAddress(ZERO_PAGE_ADDR))
        .map_err(|source| BootError::WriteMemory {
            what: "boot_params",
            source,
        })?;
    Ok(EntryPoint::Linux64 {
        entry: res.kernel_load.0 + ENTRY_64_OFFSET,
        boot_params: ZERO_PAGE_ADDR,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::{e820_map, ram_ranges};

    #[test]
    fn test_linux_zero_page_fields() {
        let e820 = e820_map(&ram_ranges(256 << 20).unwrap());
        let hdr = setup_header {
            version: 0x020f,
            cmdline_size: 2047,
            ..Default::default()
        };
        let p = zero_page(hdr, &e820, 14, Some((0xf00_0000, 0x2000)));
        assert_eq!({ p.hdr.boot_flag }, KERNEL_BOOT_FLAG_MAGIC);
        assert_eq!({ p.hdr.header }, KERNEL_HDR_MAGIC);
        assert_eq!({ p.hdr.type_of_loader }, 0xff);
        assert_eq!({ p.hdr.cmd_line_ptr }, CMDLINE_ADDR as u32);
        assert_eq!({ p.hdr.ramdisk_image }, 0xf00_0000);
        assert_eq!({ p.hdr.ramdisk_size }, 0x2000);
        assert_eq!(p.e820_entries as usize, e820.len());
        assert_eq!({ p.e820_table[2].addr }, HIMEM_START);
    }

    #[test]
    fn test_linux_cmdline_max_from_header() {
        let mut hdr = setup_header {
            version: 0x0206,
            cmdline_size: 2047,
            ..Default::default()
        };
        assert_eq!(cmdline_max(&hdr), 2048);
        hdr.cmdline_size = 1 << 20;
        assert_eq!(cmdline_max(&hdr), CMDLINE_CAP);
        hdr.version = 0x0205;
        assert_eq!(cmdline_max(&hdr), OLD_CMDLINE_MAX);
    }
}
