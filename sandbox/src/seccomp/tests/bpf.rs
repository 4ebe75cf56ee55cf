//! A classic-BPF interpreter for seccomp programs (the subset seccompiler and isol's
//! preamble emit: `ld [k]`, `and #k`, `ja`, `jeq/jgt/jge #k`, `ret #k`), so tests can ask
//! what a program returns for any call without installing it.

use seccompiler::sock_filter;

/// `AUDIT_ARCH_X86_64`.
pub const X86_64: u32 = 0xc000_003e;

/// One syscall as the filter sees it (`struct seccomp_data`).
#[derive(Debug, Clone, Copy)]
pub struct Call {
    pub nr: i64,
    pub arch: u32,
    pub args: [u64; 6],
}

impl Call {
    pub fn native(nr: i64, args: [u64; 6]) -> Call {
        Call {
            nr,
            arch: X86_64,
            args,
        }
    }

    /// The 32-bit word at byte offset `k` of `struct seccomp_data`.
    fn word(&self, k: u32) -> u32 {
        match k {
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            0 => self.nr as u32,
            4 => self.arch,
            16..=63 if k % 4 == 0 => {
                let arg = self.args[((k - 16) / 8) as usize];
                #[allow(clippy::cast_possible_truncation)]
                if (k - 16) % 8 == 0 {
                    arg as u32
                } else {
                    (arg >> 32) as u32
                }
            }
            _ => panic!("load from offset {k}"),
        }
    }
}

/// Runs `prog` on `call`; returns the `RET` value. Panics on anything a seccomp program
/// may not do (backward or out-of-range jumps, falling off the end).
pub fn run(prog: &[sock_filter], call: &Call) -> u32 {
    let mut acc = 0u32;
    let mut pc = 0usize;
    for _ in 0..=prog.len() {
        let i = prog
            .get(pc)
            .unwrap_or_else(|| panic!("fell off the program at {pc}"));
        pc += 1;
        match i.code {
            0x20 => acc = call.word(i.k),
            0x54 => acc &= i.k,
            0x05 => pc += i.k as usize,
            0x15 | 0x25 | 0x35 => {
                let taken = match i.code {
                    0x15 => acc == i.k,
                    0x25 => acc > i.k,
                    _ => acc >= i.k,
                };
                pc += usize::from(if taken { i.jt } else { i.jf });
            }
            0x06 => return i.k,
            other => panic!("unexpected opcode {other:#x} at {}", pc - 1),
        }
    }
    panic!("program did not return")
}
