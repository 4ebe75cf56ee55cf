//! Fixed guest-physical addresses of the boot structures (Firecracker's layout). All sit in
//! the first 1 MiB, below the kernel, and are written before the first vCPU runs.

/// Boot GDT (4 entries).
pub const GDT_ADDR: u64 = 0x500;
/// Empty boot IDT.
pub const IDT_ADDR: u64 = 0x520;
/// PVH `hvm_start_info`.
pub const PVH_INFO_ADDR: u64 = 0x6000;
/// PVH module list (the initrd).
pub const PVH_MODLIST_ADDR: u64 = 0x6040;
/// PVH memory map (and, for bzImage boots, the zero page: never both).
pub const PVH_MEMMAP_ADDR: u64 = 0x7000;
/// Linux `boot_params` ("zero page").
pub const ZERO_PAGE_ADDR: u64 = 0x7000;
/// Initial stack pointer for 64-bit boots.
pub const BOOT_STACK: u64 = 0x8ff0;
/// Identity-map page tables: PML4, PDPT, PD (1 GiB in 2 MiB pages).
pub const PML4_ADDR: u64 = 0x9000;
/// Page-directory-pointer table.
pub const PDPT_ADDR: u64 = 0xa000;
/// Page directory.
pub const PD_ADDR: u64 = 0xb000;
/// Raw real-mode images load here (segment 0x1000).
pub const RAW_LOAD_ADDR: u64 = 0x1_0000;
/// Kernel command line.
pub const CMDLINE_ADDR: u64 = 0x2_0000;
/// Longest PVH/ELF command line, NUL included (x86 `COMMAND_LINE_SIZE`).
pub const CMDLINE_MAX: usize = 2048;
/// KVM's TSS (3 pages), just below the identity-map page, at the top of the MMIO hole.
pub const KVM_TSS_ADDR: u64 = 0xfffb_d000;
/// KVM's identity-map page (real-mode emulation on Intel).
pub const KVM_IDENTITY_MAP_ADDR: u64 = 0xfffb_c000;
