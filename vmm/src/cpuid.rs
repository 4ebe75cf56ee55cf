//! CPUID for each vCPU: KVM's supported set, normalised the way Firecracker does it. Each
//! vCPU gets its own APIC id, a topology of N single-thread cores in one package (leaves 1,
//! 4 and 0xB), the hypervisor bit and KVM's signature leaves (so the guest knows it runs
//! under KVM and uses kvmclock), and no PMU or energy-bias features we cannot back.

use kvm_bindings::{kvm_cpuid_entry2, KVM_CPUID_FLAG_SIGNIFCANT_INDEX};

/// `CPUID.1:ECX.HYPERVISOR`.
const ECX_HYPERVISOR: u32 = 1 << 31;
/// `CPUID.1:EDX.HTT`: more than one logical processor per package.
const EDX_HTT: u32 = 1 << 28;
/// `CPUID.6:ECX` bit 3: energy-performance bias MSR.
const ECX_EPB: u32 = 1 << 3;
/// KVM's hypervisor leaves.
const KVM_SIGNATURE_LEAF: u32 = 0x4000_0000;
/// "KVMKVMKVM\0\0\0" as EBX, ECX, EDX.
const KVM_SIGNATURE: [u32; 3] = [0x4b4d_564b, 0x564b_4d56, 0x0000_004d];

fn leaf(function: u32, index: u32, flags: u32, regs: [u32; 4]) -> kvm_cpuid_entry2 {
    kvm_cpuid_entry2 {
        function,
        index,
        flags,
        eax: regs[0],
        ebx: regs[1],
        ecx: regs[2],
        edx: regs[3],
        ..Default::default()
    }
}

/// Bits needed to number `n` items (x2APIC id shift).
fn id_bits(n: u32) -> u32 {
    32 - n.saturating_sub(1).leading_zeros()
}

/// Returns the CPUID table for vCPU `index` of `count`, from KVM's supported `entries`.
pub fn filter_cpuid(entries: &[kvm_cpuid_entry2], index: u8, count: u8) -> Vec<kvm_cpuid_entry2> {
    let apic_id = u32::from(index);
    let n = u32::from(count.max(1));
    let max_basic = entries
        .iter()
        .find(|e| e.function == 0)
        .map_or(0, |e| e.eax);
    let mut out: Vec<kvm_cpuid_entry2> = Vec::with_capacity(entries.len() + 4);
    for e in entries {
        let mut e = *e;
        match e.function {
            1 => {
                e.ebx = (e.ebx & 0x0000_ffff) | (apic_id << 24) | (n << 16);
                e.ebx = (e.ebx & !0xff00) | (8 << 8); // CLFLUSH line: 8 * 8 bytes
                e.ecx |= ECX_HYPERVISOR;
                if n > 1 {
                    e.edx |= EDX_HTT;
                } else {
                    e.edx &= !EDX_HTT;
                }
            }
            4 => {
                let level = (e.eax >> 5) & 0x7;
                let sharing = if level >= 3 { n - 1 } else { 0 };
                e.eax = (e.eax & 0x3fff) | ((n - 1) << 26) | (sharing << 14);
            }
            6 => e.ecx &= !ECX_EPB,
            0xa => {
                // No virtual PMU: architectural perfmon version 0.
                e.eax = 0;
                e.ebx = 0;
                e.ecx = 0;
                e.edx = 0;
            }
            0xb | 0x1f => continue, // rebuilt below
            KVM_SIGNATURE_LEAF => {
                e.eax = e.eax.max(KVM_SIGNATURE_LEAF + 1);
                [e.ebx, e.ecx, e.edx] = KVM_SIGNATURE;
            }
            _ => {}
        }
        out.push(e);
    }
    if max_basic >= 0xb {
        let flags = KVM_CPUID_FLAG_SIGNIFCANT_INDEX;
        // Level 0: SMT, one thread per core. Level 1: cores, `n` per package. Then invalid.
        out.push(leaf(0xb, 0, flags, [0, 1, 1 << 8, apic_id]));
        out.push(leaf(0xb, 1, flags, [id_bits(n), n, (2 << 8) | 1, apic_id]));
        out.push(leaf(0xb, 2, flags, [0, 0, 2, apic_id]));
    }
    if !out.iter().any(|e| e.function == KVM_SIGNATURE_LEAF) {
        let [b, c, d] = KVM_SIGNATURE;
        out.push(leaf(
            KVM_SIGNATURE_LEAF,
            0,
            0,
            [KVM_SIGNATURE_LEAF + 1, b, c, d],
        ));
        out.push(leaf(KVM_SIGNATURE_LEAF + 1, 0, 0, [0; 4]));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn find(t: &[kvm_cpuid_entry2], f: u32, i: u32) -> kvm_cpuid_entry2 {
        *t.iter()
            .find(|e| e.function == f && e.index == i)
            .expect("leaf present")
    }

    fn host() -> Vec<kvm_cpuid_entry2> {
        vec![
            leaf(0, 0, 0, [0xd, 0x756e_6547, 0x6c65_746e, 0x4965_6e69]),
            leaf(1, 0, 0, [0x906ea, 0x0010_0800, 0x0000_0001, EDX_HTT]),
            leaf(4, 0, 1, [0x1c00_4121, 0, 0, 0]),
            leaf(4, 3, 1, [0x1c00_4163, 0, 0, 0]),
            leaf(6, 0, 0, [4, 0, 9, 0]),
            leaf(0xa, 0, 0, [0x0730_0404, 0, 0, 0x603]),
            leaf(0xb, 0, 1, [1, 2, 0x100, 7]),
        ]
    }

    #[test]
    fn test_cpuid_apic_id_and_hypervisor_bit_per_vcpu() {
        let t = filter_cpuid(&host(), 2, 4);
        let l1 = find(&t, 1, 0);
        assert_eq!(l1.ebx >> 24, 2);
        assert_eq!((l1.ebx >> 16) & 0xff, 4);
        assert_ne!(l1.ecx & ECX_HYPERVISOR, 0);
        assert_ne!(l1.edx & EDX_HTT, 0);
        assert_eq!(find(&t, 0xb, 0).edx, 2);
        assert_eq!(find(&t, 0xb, 1).edx, 2);
    }

    #[test]
    fn test_cpuid_leaf_b_topology_rebuilt() {
        let t = filter_cpuid(&host(), 0, 3);
        assert_eq!(t.iter().filter(|e| e.function == 0xb).count(), 3);
        let smt = find(&t, 0xb, 0);
        assert_eq!((smt.eax, smt.ebx, smt.ecx >> 8), (0, 1, 1));
        let core = find(&t, 0xb, 1);
        assert_eq!((core.eax, core.ebx, core.ecx >> 8), (2, 3, 2));
        assert_eq!(find(&t, 0xb, 2).ecx >> 8, 0);
    }

    #[test]
    fn test_cpuid_single_vcpu_no_htt_and_cache_topology() {
        let t = filter_cpuid(&host(), 0, 1);
        assert_eq!(find(&t, 1, 0).edx & EDX_HTT, 0);
        assert_eq!(find(&t, 4, 0).eax >> 26, 0);
        let t = filter_cpuid(&host(), 0, 4);
        assert_eq!(find(&t, 4, 0).eax >> 26, 3);
        assert_eq!((find(&t, 4, 3).eax >> 14) & 0xfff, 3);
        assert_eq!((find(&t, 4, 0).eax >> 14) & 0xfff, 0);
    }

    #[test]
    fn test_cpuid_pmu_and_epb_hidden_kvm_signature_added() {
        let t = filter_cpuid(&host(), 0, 1);
        let pmu = find(&t, 0xa, 0);
        assert_eq!((pmu.eax, pmu.edx), (0, 0));
        assert_eq!(find(&t, 6, 0).ecx & ECX_EPB, 0);
        let sig = find(&t, KVM_SIGNATURE_LEAF, 0);
        let mut bytes = Vec::new();
        for r in [sig.ebx, sig.ecx, sig.edx] {
            bytes.extend_from_slice(&r.to_le_bytes());
        }
        assert_eq!(&bytes[..9], b"KVMKVMKVM");
    }

    #[test]
    fn test_cpuid_id_bits() {
        assert_eq!(
            (id_bits(1), id_bits(2), id_bits(3), id_bits(4), id_bits(5)),
            (0, 1, 2, 2, 3)
        );
    }
}
