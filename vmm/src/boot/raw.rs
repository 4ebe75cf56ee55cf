//! isol's raw real-mode image: a flat binary that starts with the 8-byte magic
//! `ISOLRAW1` and 8 reserved bytes, then 16-bit code. The whole file is loaded at
//! [`RAW_LOAD_ADDR`] (segment 0x1000) and entered in real mode at offset 0x10, with all
//! segment registers 0x1000. It exists because a PVM host runs real-mode guests (through
//! KVM's emulator) and so tiny test guests can run there; see vmm/tests/guests/README.md.

use std::fs::File;
use std::path::Path;

use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use super::layout::RAW_LOAD_ADDR;
use super::{BootError, EntryPoint};
use crate::memory::EBDA_START;

/// First bytes of a raw image.
pub const RAW_MAGIC: &[u8] = b"ISOLRAW1";
/// Header length: the entry point's offset.
pub const RAW_ENTRY: u16 = 0x10;

/// Loads a raw image.
pub fn load(mem: &GuestMemoryMmap, path: &Path) -> Result<EntryPoint, BootError> {
    let read_err = super::kernel_read_err(path);
    let mut f = File::open(path).map_err(read_err)?;
    let size = f.metadata().map_err(read_err)?.len();
    let max = EBDA_START - RAW_LOAD_ADDR;
    if size > max {
        return Err(BootError::RawTooBig {
            path: path.to_path_buf(),
            size,
            max,
        });
    }
    // size <= max < usize::MAX, checked just above.
    mem.read_exact_volatile_from(GuestAddress(RAW_LOAD_ADDR), &mut f, size as usize)
        .map_err(|source| BootError::WriteMemory {
            what: "raw image",
            source,
        })?;
    Ok(EntryPoint::RealMode {
        segment: (RAW_LOAD_ADDR >> 4) as u16,
        ip: RAW_ENTRY,
    })
}
