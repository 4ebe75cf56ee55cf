//! ELF vmlinux through its PVH entry: `hvm_start_info` (magic, command line, e820-typed
//! memory map, the initrd as module 0) at fixed low addresses, as Firecracker does.

use std::fs::File;

use linux_loader::loader::elf::start_info::{
    hvm_memmap_table_entry, hvm_modlist_entry, hvm_start_info,
};
use linux_loader::loader::elf::{Elf, PvhBootCapability};
use linux_loader::loader::KernelLoader;
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use super::layout::{CMDLINE_MAX, PVH_INFO_ADDR, PVH_MEMMAP_ADDR, PVH_MODLIST_ADDR};
use super::{cmdline, BootError, BootSpec, EntryPoint};
use crate::memory::{E820Entry, HIMEM_START};

/// `hvm_start_info.magic` ("xEn3" with the top bit set).
pub const XEN_HVM_START_MAGIC: u32 = 0x336e_c578;

/// The start_info and memory map for these parameters (pure).
pub fn start_info(
    e820: &[E820Entry],
    cmdline_addr: u64,
    initrd: Option<(u64, u64)>,
) -> (
    hvm_start_info,
    Vec<hvm_memmap_table_entry>,
    Option<hvm_modlist_entry>,
) {
    let memmap: Vec<hvm_memmap_table_entry> = e820
        .iter()
        .map(|e| hvm_memmap_table_entry {
            addr: e.addr,
            size: e.size,
            type_: e.kind,
            reserved: 0,
        })
        .collect();
    let module = initrd.map(|(paddr, size)| hvm_modlist_entry {
        paddr,
        size,
        ..Default::default()
    });
    let info = hvm_start_info {
        magic: XEN_HVM_START_MAGIC,
        version: 1,
        nr_modules: u32::from(module.is_some()),
        modlist_paddr: if module.is_some() {
            PVH_MODLIST_ADDR
        } else {
            0
        },
        cmdline_paddr: cmdline_addr,
        memmap_paddr: PVH_MEMMAP_ADDR,
        memmap_entries: memmap.len() as u32,
        ..Default::default()
    };
    (info, memmap, module)
}

/// Loads an ELF kernel and writes its PVH boot structures.
pub fn load(
    mem: &GuestMemoryMmap,
    spec: &BootSpec<'_>,
    e820: &[E820Entry],
    low_end: u64,
) -> Result<EntryPoint, BootError> {
    let path = spec.kernel;
    let mut f = File::open(path).map_err(super::kernel_read_err(path))?;
    let res = Elf::load(mem, None, &mut f, Some(GuestAddress(HIMEM_START))).map_err(|source| {
        BootError::Load {
            path: path.to_path_buf(),
            source,
        }
    })?;
    let PvhBootCapability::PvhEntryPresent(entry) = res.pvh_boot_cap else {
        return Err(BootError::NoPvhEntry {
            path: path.to_path_buf(),
        });
    };
    let cmdline_addr = cmdline::write(mem, spec.cmdline, CMDLINE_MAX)?;
    let initrd = match spec.initrd {
        Some(p) => Some(super::load_initrd(mem, p, res.kernel_end, low_end)?),
        None => None,
    };
    let (info, memmap, module) = start_info(e820, cmdline_addr, initrd);
    let werr = |what| move |source| BootError::WriteMemory { what, source };
    mem.write_obj(info, GuestAddress(PVH_INFO_ADDR))
        .map_err(werr("PVH start info"))?;
    for (i, m) in memmap.iter().enumerate() {
        let at = PVH_MEMMAP_ADDR + (i * std::mem::size_of::<hvm_memmap_table_entry>()) as u64;
        mem.write_obj(*m, GuestAddress(at))
            .map_err(werr("PVH memory map"))?;
    }
    if let Some(m) = module {
        mem.write_obj(m, GuestAddress(PVH_MODLIST_ADDR))
            .map_err(werr("PVH module list"))?;
    }
    Ok(EntryPoint::Pvh {
        entry: entry.0,
        start_info: PVH_INFO_ADDR,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::{e820_map, ram_ranges};

    #[test]
    fn test_pvh_start_info_fields() {
        let e820 = e820_map(&ram_ranges(128 << 20).unwrap());
        let (info, memmap, module) = start_info(&e820, 0x20000, Some((0x700_0000, 0x1234)));
        assert_eq!(info.magic, XEN_HVM_START_MAGIC);
        assert_eq!(info.version, 1);
        assert_eq!(info.cmdline_paddr, 0x20000);
        assert_eq!(info.memmap_entries as usize, e820.len());
        assert_eq!(info.nr_modules, 1);
        assert_eq!(info.modlist_paddr, PVH_MODLIST_ADDR);
        assert_eq!(memmap[2].addr, HIMEM_START);
        assert_eq!(memmap[2].type_, 1);
        let m = module.unwrap();
        assert_eq!((m.paddr, m.size), (0x700_0000, 0x1234));
    }

    #[test]
    fn test_pvh_start_info_without_initrd() {
        let e820 = e820_map(&ram_ranges(64 << 20).unwrap());
        let (info, _, module) = start_info(&e820, 0x20000, None);
        assert_eq!((info.nr_modules, info.modlist_paddr), (0, 0));
        assert!(module.is_none());
    }

    #[test]
    fn test_pvh_structs_fit_before_memmap() {
        assert!(PVH_INFO_ADDR + std::mem::size_of::<hvm_start_info>() as u64 <= PVH_MODLIST_ADDR);
        assert!(
            PVH_MODLIST_ADDR + std::mem::size_of::<hvm_modlist_entry>() as u64 <= PVH_MEMMAP_ADDR
        );
    }
}
