//! The Intel MultiProcessor Specification 1.4 table that describes CPUs and interrupt
//! routing to a guest kernel built without ACPI. Built as bytes (pure, unit-tested), then
//! written at [`MPTABLE_START`], in the last KiB of base memory where Linux scans for it.

use crate::memory::EBDA_START;

/// Where the table goes: the reserved last KiB of base memory.
pub const MPTABLE_START: u64 = EBDA_START;
/// Room there.
pub const MPTABLE_MAX: usize = 1024;
/// Most vCPUs the table (and isol) describes.
pub const MAX_VCPUS: u8 = 32;
/// Local APIC base address.
pub const APIC_ADDR: u32 = 0xfee0_0000;
/// IOAPIC base address.
pub const IOAPIC_ADDR: u32 = 0xfec0_0000;
/// IOAPIC pins routed by the table (KVM's in-kernel IOAPIC has 24): the 16 legacy IRQs
/// and 16..24 for virtio-mmio devices, all on the ISA bus (edge, active high), as
/// Firecracker does.
pub const IOAPIC_PINS: u8 = 24;

const APIC_VERSION: u8 = 0x14;
const IOAPIC_VERSION: u8 = 0x11;
const MP_SPEC_REV: u8 = 4;
const CPU_ENABLED: u8 = 1;
const CPU_BSP: u8 = 2;
const INT_TYPE_INT: u8 = 0;
const INT_TYPE_NMI: u8 = 1;
const INT_TYPE_EXTINT: u8 = 3;

fn checksum(bytes: &[u8]) -> u8 {
    bytes
        .iter()
        .fold(0u8, |a, b| a.wrapping_add(*b))
        .wrapping_neg()
}

/// Error: too many vCPUs for the table.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("Cannot describe {vcpus} vCPUs in the MP table: at most {MAX_VCPUS}")]
pub struct TooManyVcpus {
    /// Requested vCPUs.
    pub vcpus: u8,
}

/// The table for `vcpus` CPUs (APIC ids 0..vcpus, vCPU 0 the BSP), as it must sit at
/// [`MPTABLE_START`]: floating pointer, then the configuration table.
pub fn build(vcpus: u8) -> Result<Vec<u8>, TooManyVcpus> {
    if vcpus == 0 || vcpus > MAX_VCPUS {
        return Err(TooManyVcpus { vcpus });
    }
    let ioapic_id = vcpus; // first id after the CPUs
    let mut entries: Vec<u8> = Vec::new();
    for id in 0..vcpus {
        entries.extend_from_slice(&[0, id, APIC_VERSION]);
        entries.push(CPU_ENABLED | if id == 0 { CPU_BSP } else { 0 });
        entries.extend_from_slice(&0x600u32.to_le_bytes()); // cpu signature: family 6
        entries.extend_from_slice(&0x201u32.to_le_bytes()); // features: FPU, APIC
        entries.extend_from_slice(&[0; 8]);
    }
    entries.extend_from_slice(&[1, 0]);
    entries.extend_from_slice(b"ISA   ");
    entries.extend_from_slice(&[2, ioapic_id, IOAPIC_VERSION, 1]);
    entries.extend_from_slice(&IOAPIC_ADDR.to_le_bytes());
    for irq in 0..IOAPIC_PINS {
        entries.extend_from_slice(&[3, INT_TYPE_INT, 0, 0, 0, irq, ioapic_id, irq]);
    }
    // LINT0 is ExtINT (the 8259), LINT1 NMI, on every local APIC (0xff).
    entries.extend_from_slice(&[4, INT_TYPE_EXTINT, 0, 0, 0, 0, 0xff, 0]);
    entries.extend_from_slice(&[4, INT_TYPE_NMI, 0, 0, 0, 0, 0xff, 1]);
    let entry_count = u16::from(vcpus) + 2 + u16::from(IOAPIC_PINS) + 2;

    let table_addr = (MPTABLE_START + 16) as u32;
    let mut table: Vec<u8> = Vec::with_capacity(44 + entries.len());
    table.extend_from_slice(b"PCMP");
    table.extend_from_slice(&((44 + entries.len()) as u16).to_le_bytes());
    table.extend_from_slice(&[MP_SPEC_REV, 0]); // checksum patched below
    table.extend_from_slice(b"ISOL    "); // OEM id
    table.extend_from_slice(b"isol-vmm    "); // product id
    table.extend_from_slice(&[0; 4]); // OEM table pointer
    table.extend_from_slice(&[0; 2]); // OEM table size
    table.extend_from_slice(&entry_count.to_le_bytes());
    table.extend_from_slice(&APIC_ADDR.to_le_bytes());
    table.extend_from_slice(&[0; 4]); // extended table length, checksum, reserved
    table.extend_from_slice(&entries);
    table[7] = checksum(&table);

    let mut mpf: Vec<u8> = Vec::with_capacity(16 + table.len());
    mpf.extend_from_slice(b"_MP_");
    mpf.extend_from_slice(&table_addr.to_le_bytes());
    mpf.extend_from_slice(&[1, MP_SPEC_REV, 0, 0, 0, 0, 0, 0]);
    mpf[10] = checksum(&mpf[..16]);
    mpf.extend_from_slice(&table);
    debug_assert!(mpf.len() <= MPTABLE_MAX);
    Ok(mpf)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sum(b: &[u8]) -> u8 {
        b.iter().fold(0u8, |a, x| a.wrapping_add(*x))
    }

    #[test]
    fn test_mptable_checksums_zero() {
        for n in [1, 2, 7, MAX_VCPUS] {
            let t = build(n).unwrap();
            assert_eq!(sum(&t[..16]), 0, "floating pointer checksum, {n} vcpus");
            let len = u16::from_le_bytes([t[20], t[21]]) as usize;
            assert_eq!(16 + len, t.len());
            assert_eq!(sum(&t[16..]), 0, "config table checksum, {n} vcpus");
            assert!(t.len() <= MPTABLE_MAX);
        }
    }

    #[test]
    fn test_mptable_contents_per_vcpu() {
        let t = build(3).unwrap();
        assert_eq!(&t[..4], b"_MP_");
        assert_eq!(
            u32::from_le_bytes(t[4..8].try_into().unwrap()),
            (MPTABLE_START + 16) as u32
        );
        assert_eq!(&t[16..20], b"PCMP");
        let count = u16::from_le_bytes([t[16 + 34], t[16 + 35]]);
        assert_eq!(count, 3 + 2 + 24 + 2);
        let e = &t[16 + 44..];
        for id in 0..3u8 {
            let p = &e[usize::from(id) * 20..];
            assert_eq!((p[0], p[1]), (0, id));
            assert_eq!(p[3] & CPU_BSP != 0, id == 0);
        }
        let rest = &e[60..];
        assert_eq!(&rest[..8], b"\x01\x00ISA   ");
        assert_eq!(&rest[8..12], &[2, 3, IOAPIC_VERSION, 1]);
        let ints = &rest[16..];
        for irq in 0..24u8 {
            let i = &ints[usize::from(irq) * 8..];
            assert_eq!((i[0], i[5], i[6], i[7]), (3, irq, 3, irq));
        }
    }

    #[test]
    fn test_mptable_rejects_bad_counts() {
        assert!(build(0).is_err());
        assert!(build(MAX_VCPUS + 1).is_err());
    }
}
