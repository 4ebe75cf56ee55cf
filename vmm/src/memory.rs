//! Guest physical memory: the layout (pure math, unit-tested) and its anonymous mapping.
//!
//! Below 3 GiB, RAM is one region at 0. Above, it is split around the 32-bit MMIO hole
//! (3 GiB..4 GiB): the rest continues at 4 GiB. The mapping is `MAP_NORESERVE` and never
//! touched here, so a big guest costs nothing until the guest uses its pages.

use vm_memory::{GuestAddress, GuestMemoryMmap, GuestRegionMmap, MmapRegion};

/// Start of the 32-bit MMIO hole (IOAPIC, LAPIC, TSS live up there).
pub const MMIO_HOLE_START: u64 = 0xc000_0000;
/// End of the hole: RAM resumes here.
pub const FOUR_GIB: u64 = 1 << 32;
/// Smallest guest: low memory structures plus a little room for a tiny guest.
pub const MIN_MEMORY: u64 = 2 << 20;
/// Largest guest we accept (1 TiB): beyond, a typo rather than an intent.
pub const MAX_MEMORY: u64 = 1 << 40;
/// Start of the legacy hole below 1 MiB (VGA, ROMs): not RAM in the e820 map.
pub const EBDA_START: u64 = 0x9fc00;
/// High memory: kernels load at or above 1 MiB.
pub const HIMEM_START: u64 = 0x10_0000;
const PAGE: u64 = 4096;

/// Errors of guest memory setup.
#[derive(Debug, thiserror::Error)]
pub enum MemoryError {
    /// Size out of range.
    #[error("Guest memory of {size} bytes is out of range: use between 2 MiB and 1 TiB")]
    BadSize {
        /// Requested bytes.
        size: u64,
    },
    /// mmap failed.
    #[error("Cannot map {size:#x} bytes of guest memory")]
    Mmap {
        /// Region size.
        size: u64,
        /// Cause.
        #[source]
        source: vm_memory::mmap::MmapRegionError,
    },
    /// KVM refused a memory slot.
    #[error("Cannot register memory slot {slot} with KVM")]
    SetUserMemoryRegion {
        /// Slot number.
        slot: u32,
        /// Cause.
        #[source]
        source: kvm_ioctls::Error,
    },
    /// Regions rejected by vm-memory (overlap: a bug in the layout).
    #[error("Cannot assemble guest memory regions")]
    Regions(#[source] vm_memory::region::GuestRegionCollectionError),
}

/// One RAM range in guest physical space: `(start, length)`.
pub type Range = (u64, u64);

/// RAM ranges for `size` bytes (rounded up to a page).
pub fn ram_ranges(size: u64) -> Result<Vec<Range>, MemoryError> {
    if !(MIN_MEMORY..=MAX_MEMORY).contains(&size) {
        return Err(MemoryError::BadSize { size });
    }
    let size = size.div_ceil(PAGE) * PAGE;
    Ok(if size <= MMIO_HOLE_START {
        vec![(0, size)]
    } else {
        vec![(0, MMIO_HOLE_START), (FOUR_GIB, size - MMIO_HOLE_START)]
    })
}

/// RAM end below 4 GiB (where initrd and boot data must stay).
pub fn low_ram_end(ranges: &[Range]) -> u64 {
    ranges.first().map_or(0, |(s, l)| s + l)
}

/// e820 type: usable RAM.
pub const E820_RAM: u32 = 1;
/// e820 type: reserved.
pub const E820_RESERVED: u32 = 2;

/// One e820 map entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct E820Entry {
    /// Start.
    pub addr: u64,
    /// Length.
    pub size: u64,
    /// `E820_RAM` or `E820_RESERVED`.
    pub kind: u32,
}

/// The e820 map for these RAM ranges: base memory up to the EBDA, the EBDA page (MP table)
/// reserved, the legacy hole left out, then RAM from 1 MiB (and from 4 GiB when split).
pub fn e820_map(ranges: &[Range]) -> Vec<E820Entry> {
    let mut map = vec![
        E820Entry {
            addr: 0,
            size: EBDA_START,
            kind: E820_RAM,
        },
        E820Entry {
            addr: EBDA_START,
            size: 0xa0000 - EBDA_START,
            kind: E820_RESERVED,
        },
    ];
    for &(start, len) in ranges {
        let s = start.max(HIMEM_START);
        let e = start + len;
        if e > s {
            map.push(E820Entry {
                addr: s,
                size: e - s,
                kind: E820_RAM,
            });
        }
    }
    map
}

/// Maps anonymous, unreserved, untouched memory for these ranges.
pub fn create_guest_memory(ranges: &[Range]) -> Result<GuestMemoryMmap, MemoryError> {
    let mut regions = Vec::with_capacity(ranges.len());
    for &(start, len) in ranges {
        let size = usize::try_from(len).map_err(|_| MemoryError::BadSize { size: len })?;
        let region = MmapRegion::<()>::build(
            None,
            size,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_ANONYMOUS | libc::MAP_PRIVATE | libc::MAP_NORESERVE,
        )
        .map_err(|source| MemoryError::Mmap { size: len, source })?;
        let region = GuestRegionMmap::new(region, GuestAddress(start))
            .ok_or(MemoryError::BadSize { size: len })?;
        regions.push(region);
    }
    GuestMemoryMmap::from_regions(regions).map_err(MemoryError::Regions)
}

/// Registers every region with KVM as slots 0, 1, ...
pub fn register_with_kvm(vm: &kvm_ioctls::VmFd, mem: &GuestMemoryMmap) -> Result<(), MemoryError> {
    use vm_memory::{GuestMemoryBackend, GuestMemoryRegion};
    for (slot, region) in mem.iter().enumerate() {
        let slot = slot as u32;
        let r = kvm_bindings::kvm_userspace_memory_region {
            slot,
            flags: 0,
            guest_phys_addr: region.start_addr().0,
            memory_size: region.len(),
            userspace_addr: region.as_ptr() as u64,
        };
        // SAFETY: `region` is a live mapping of exactly `memory_size` bytes owned by `mem`,
        // which the Machine keeps until the VM fd is closed; slots come from distinct,
        // non-overlapping regions (vm-memory checked that when assembling `mem`).
        unsafe { vm.set_user_memory_region(r) }
            .map_err(|source| MemoryError::SetUserMemoryRegion { slot, source })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_ram_ranges_small_single_region() {
        assert_eq!(ram_ranges(128 << 20).unwrap(), vec![(0, 128 << 20)]);
        assert_eq!(ram_ranges(3 << 30).unwrap(), vec![(0, 3 << 30)]);
    }

    #[test]
    fn test_ram_ranges_large_split_around_hole() {
        let r = ram_ranges(4 << 30).unwrap();
        assert_eq!(r, vec![(0, 3 << 30), (4 << 30, 1 << 30)]);
        assert_eq!(low_ram_end(&r), 3 << 30);
    }

    #[test]
    fn test_ram_ranges_rounds_to_page_and_rejects_extremes() {
        assert_eq!(
            ram_ranges((4 << 20) + 1).unwrap(),
            vec![(0, (4 << 20) + 4096)]
        );
        assert!(ram_ranges(4096).is_err());
        assert!(ram_ranges(2 << 40).is_err());
    }

    #[test]
    fn test_e820_map_layout() {
        let map = e820_map(&ram_ranges(5 << 30).unwrap());
        assert_eq!(map.len(), 4);
        assert_eq!(
            map[0],
            E820Entry {
                addr: 0,
                size: EBDA_START,
                kind: E820_RAM
            }
        );
        assert_eq!(map[1].kind, E820_RESERVED);
        assert_eq!(
            map[2],
            E820Entry {
                addr: HIMEM_START,
                size: (3 << 30) - HIMEM_START,
                kind: E820_RAM
            }
        );
        assert_eq!(
            map[3],
            E820Entry {
                addr: 4 << 30,
                size: 2 << 30,
                kind: E820_RAM
            }
        );
    }

    #[test]
    fn test_create_guest_memory_maps_regions() {
        use vm_memory::{Bytes, GuestMemoryBackend};
        let mem = create_guest_memory(&ram_ranges(16 << 20).unwrap()).unwrap();
        assert_eq!(mem.num_regions(), 1);
        mem.write_obj(0xdead_beef_u32, GuestAddress(0x1000))
            .unwrap();
        assert_eq!(
            mem.read_obj::<u32>(GuestAddress(0x1000)).unwrap(),
            0xdead_beef
        );
        assert!(mem.write_obj(1u8, GuestAddress(16 << 20)).is_err());
    }
}
