//! Boot-vCPU register state for each [`EntryPoint`], computed as data: the GDT to place at
//! [`GDT_ADDR`], segment registers, control registers, and (for long mode) the identity
//! page tables. `vcpu.rs` applies them with KVM_SET_SREGS / KVM_SET_REGS.

use kvm_bindings::{kvm_regs, kvm_segment, kvm_sregs};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use super::layout::{BOOT_STACK, GDT_ADDR, IDT_ADDR, PDPT_ADDR, PD_ADDR, PML4_ADDR};
use super::{BootError, EntryPoint};

const CR0_PE: u64 = 1;
const CR0_ET: u64 = 1 << 4;
const CR0_PG: u64 = 1 << 31;
const CR4_PAE: u64 = 1 << 5;
const EFER_LME: u64 = 1 << 8;
const EFER_LMA: u64 = 1 << 10;

/// A GDT descriptor from access/flags bits, base and limit (Firecracker's `gdt_entry`).
pub fn gdt_entry(flags: u16, base: u32, limit: u32) -> u64 {
    let (flags, base, limit) = (u64::from(flags), u64::from(base), u64::from(limit));
    ((base & 0xff00_0000) << 32)
        | ((flags & 0xf0ff) << 40)
        | ((limit & 0x000f_0000) << 32)
        | ((base & 0x00ff_ffff) << 16)
        | (limit & 0xffff)
}

/// The KVM segment a descriptor at GDT slot `index` loads.
pub fn segment_from_gdt(entry: u64, index: u8) -> kvm_segment {
    let g = ((entry >> 55) & 1) as u8;
    let raw_limit = ((entry >> 32) & 0x000f_0000) | (entry & 0xffff);
    let limit = if g == 1 {
        (raw_limit << 12) | 0xfff
    } else {
        raw_limit
    } as u32;
    let present = ((entry >> 47) & 1) as u8;
    kvm_segment {
        base: ((entry >> 16) & 0x00ff_ffff) | ((entry >> 32) & 0xff00_0000),
        limit,
        selector: u16::from(index) * 8,
        type_: ((entry >> 40) & 0xf) as u8,
        present,
        dpl: ((entry >> 45) & 3) as u8,
        db: ((entry >> 54) & 1) as u8,
        s: ((entry >> 44) & 1) as u8,
        l: ((entry >> 53) & 1) as u8,
        g,
        avl: ((entry >> 52) & 1) as u8,
        unusable: u8::from(present == 0),
        padding: 0,
    }
}

/// The boot GDT for an entry kind (empty for real mode).
pub fn gdt(entry: &EntryPoint) -> Vec<u64> {
    match entry {
        EntryPoint::Pvh { .. } => vec![
            0,
            gdt_entry(0xc09b, 0, 0xffff_ffff), // 32-bit code
            gdt_entry(0xc093, 0, 0xffff_ffff), // data
            gdt_entry(0x008b, 0, 0x67),        // TSS
        ],
        EntryPoint::Linux64 { .. } => vec![
            0,
            gdt_entry(0xa09b, 0, 0xfffff), // 64-bit code
            gdt_entry(0xc093, 0, 0xfffff), // data
            gdt_entry(0x808b, 0, 0xfffff), // TSS
        ],
        EntryPoint::RealMode { .. } => Vec::new(),
    }
}

/// Adjusts `sregs` (as read from a fresh vCPU) for the entry kind.
pub fn sregs_for(entry: &EntryPoint, mut s: kvm_sregs) -> kvm_sregs {
    let table = gdt(entry);
    if let EntryPoint::RealMode { segment, .. } = *entry {
        for seg in [
            &mut s.cs, &mut s.ds, &mut s.es, &mut s.fs, &mut s.gs, &mut s.ss,
        ] {
            seg.base = u64::from(segment) << 4;
            seg.selector = segment;
            seg.limit = 0xffff;
        }
        return s;
    }
    s.gdt.base = GDT_ADDR;
    s.gdt.limit = (table.len() * 8 - 1) as u16;
    s.idt.base = IDT_ADDR;
    s.idt.limit = 7;
    let code = segment_from_gdt(table[1], 1);
    let data = segment_from_gdt(table[2], 2);
    s.cs = code;
    s.ds = data;
    s.es = data;
    s.fs = data;
    s.gs = data;
    s.ss = data;
    s.tr = segment_from_gdt(table[3], 3);
    match entry {
        EntryPoint::Pvh { .. } => {
            s.cr0 = CR0_PE | CR0_ET;
            s.cr4 = 0;
            s.efer = 0;
        }
        _ => {
            s.cr0 |= CR0_PE | CR0_PG | CR0_ET;
            s.cr3 = PML4_ADDR;
            s.cr4 |= CR4_PAE;
            s.efer |= EFER_LME | EFER_LMA;
        }
    }
    s
}

/// General registers for the entry kind.
pub fn regs_for(entry: &EntryPoint) -> kvm_regs {
    let mut r = kvm_regs {
        rflags: 0x2,
        ..Default::default()
    };
    match *entry {
        EntryPoint::Pvh { entry, start_info } => {
            r.rip = entry;
            r.rbx = start_info;
        }
        EntryPoint::Linux64 { entry, boot_params } => {
            r.rip = entry;
            r.rsp = BOOT_STACK;
            r.rbp = BOOT_STACK;
            r.rsi = boot_params;
        }
        EntryPoint::RealMode { ip, .. } => {
            r.rip = u64::from(ip);
            r.rsp = 0xfffe;
        }
    }
    r
}

/// Writes the GDT, the empty IDT and (long mode) the identity page tables for 1 GiB.
pub fn write_tables(mem: &GuestMemoryMmap, entry: &EntryPoint) -> Result<(), BootError> {
    let werr = |what| move |source| BootError::WriteMemory { what, source };
    for (i, e) in gdt(entry).iter().enumerate() {
        mem.write_obj(*e, GuestAddress(GDT_ADDR + 8 * i as u64))
            .map_err(werr("boot GDT"))?;
    }
    mem.write_obj(0u64, GuestAddress(IDT_ADDR))
        .map_err(werr("boot IDT"))?;
    if matches!(entry, EntryPoint::Linux64 { .. }) {
        mem.write_obj(PDPT_ADDR | 0x03, GuestAddress(PML4_ADDR))
            .map_err(werr("page tables"))?;
        mem.write_obj(PD_ADDR | 0x03, GuestAddress(PDPT_ADDR))
            .map_err(werr("page tables"))?;
        for i in 0..512u64 {
            mem.write_obj((i << 21) | 0x83, GuestAddress(PD_ADDR + i * 8))
                .map_err(werr("page tables"))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_gdt_entry_flat_code_segment() {
        let e = gdt_entry(0xa09b, 0, 0xfffff);
        assert_eq!(e, 0x00af_9b00_0000_ffff);
        let s = segment_from_gdt(e, 1);
        assert_eq!(
            (s.selector, s.type_, s.l, s.present, s.g),
            (8, 0xb, 1, 1, 1)
        );
        assert_eq!(s.limit, 0xffff_ffff);
    }

    #[test]
    fn test_pvh_sregs_flat_32bit_protected_mode() {
        let entry = EntryPoint::Pvh {
            entry: 0x100_0000,
            start_info: 0x6000,
        };
        let s = sregs_for(&entry, kvm_sregs::default());
        assert_eq!(s.cr0 & (CR0_PE | CR0_PG), CR0_PE);
        assert_eq!(
            (s.cs.db, s.cs.l, s.cs.base, s.cs.limit),
            (1, 0, 0, 0xffff_ffff)
        );
        assert_eq!(s.ds.selector, 0x10);
        assert_eq!(s.tr.selector, 0x18);
        assert_eq!(s.efer, 0);
        let r = regs_for(&entry);
        assert_eq!((r.rip, r.rbx, r.rflags), (0x100_0000, 0x6000, 2));
    }

    #[test]
    fn test_linux64_sregs_long_mode_paging() {
        let entry = EntryPoint::Linux64 {
            entry: 0x100_200,
            boot_params: 0x7000,
        };
        let s = sregs_for(&entry, kvm_sregs::default());
        assert_eq!(s.cr0 & CR0_PG, CR0_PG);
        assert_eq!(s.cr3, PML4_ADDR);
        assert_eq!(s.efer & (EFER_LME | EFER_LMA), EFER_LME | EFER_LMA);
        assert_eq!(s.cs.l, 1);
        assert_eq!(regs_for(&entry).rsi, 0x7000);
    }

    #[test]
    fn test_real_mode_segments() {
        let entry = EntryPoint::RealMode {
            segment: 0x1000,
            ip: 0x10,
        };
        let s = sregs_for(&entry, kvm_sregs::default());
        assert_eq!(
            (s.cs.base, s.cs.selector, s.ss.base),
            (0x10000, 0x1000, 0x10000)
        );
        assert_eq!(regs_for(&entry).rip, 0x10);
    }
}
