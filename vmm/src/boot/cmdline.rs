//! Kernel command line checks and placement.

use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use super::layout::CMDLINE_ADDR;
use super::BootError;

/// Checks `cmdline` fits in `max` bytes with its NUL and holds no NUL; returns its bytes
/// with the terminating NUL.
pub fn validate(cmdline: &str, max: usize) -> Result<Vec<u8>, BootError> {
    if cmdline.as_bytes().contains(&0) {
        return Err(BootError::CmdlineNul);
    }
    if cmdline.len() + 1 > max {
        return Err(BootError::CmdlineTooLong {
            len: cmdline.len(),
            max: max - 1,
        });
    }
    let mut v = Vec::with_capacity(cmdline.len() + 1);
    v.extend_from_slice(cmdline.as_bytes());
    v.push(0);
    Ok(v)
}

/// Writes the command line at [`CMDLINE_ADDR`]; returns its address.
pub fn write(mem: &GuestMemoryMmap, cmdline: &str, max: usize) -> Result<u64, BootError> {
    let bytes = validate(cmdline, max)?;
    mem.write_slice(&bytes, GuestAddress(CMDLINE_ADDR))
        .map_err(|source| BootError::WriteMemory {
            what: "command line",
            source,
        })?;
    Ok(CMDLINE_ADDR)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_cmdline_validate_appends_nul() {
        assert_eq!(validate("console=ttyS0", 2048).unwrap(), b"console=ttyS0\0");
        assert_eq!(validate("", 2048).unwrap(), b"\0");
    }

    #[test]
    fn test_cmdline_too_long_rejected() {
        let long = "a".repeat(2047);
        assert!(validate(&long, 2048).is_ok());
        let long = "a".repeat(2048);
        assert!(matches!(
            validate(&long, 2048),
            Err(BootError::CmdlineTooLong {
                len: 2048,
                max: 2047
            })
        ));
    }

    #[test]
    fn test_cmdline_nul_rejected() {
        assert!(matches!(validate("a\0b", 2048), Err(BootError::CmdlineNul)));
    }
}
