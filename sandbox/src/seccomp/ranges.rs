//! The BPF for syscalls an action takes whatever their arguments, written directly: runs of
//! consecutive numbers, two instructions per run (`nr > hi`? next run : `nr >= lo`? the
//! action : no match). seccompiler spends five instructions per syscall on these, which
//! made Docker's profile 1,500 instructions and its install (the kernel copies, checks
//! and JITs the program) cost 0.25-0.6 ms here; as runs it is about 150 instructions.
//! Argument rules stay with seccompiler ([`super::compile`]).

use seccompiler::sock_filter;

use super::compile::{jump, offset, stmt, BPF_JMP_JA, BPF_LD_W_ABS, BPF_RET_K, DATA_NR};

const BPF_JMP_JGT_K: u16 = 0x25;
const BPF_JMP_JGE_K: u16 = 0x35;
/// Runs per chunk: each chunk ends with its own `ret` and `ja`, so the conditional jumps
/// (8-bit offsets) stay short.
const RUNS_PER_CHUNK: usize = 100;

/// `(lo, hi)` runs of consecutive numbers in sorted, distinct `nrs`.
pub fn runs(nrs: &[u32]) -> Vec<(u32, u32)> {
    let mut out: Vec<(u32, u32)> = Vec::new();
    for &n in nrs {
        match out.last_mut() {
            Some((_, hi)) if hi.checked_add(1) == Some(n) => *hi = n,
            _ => out.push((n, n)),
        }
    }
    out
}

/// Code returning `ret` for every syscall in `nrs` (sorted, distinct); any other number
/// falls through to the instruction right after it. Loads the syscall number itself.
pub fn emit(nrs: &[u32], ret: u32) -> Vec<sock_filter> {
    let mut out = vec![stmt(BPF_LD_W_ABS, DATA_NR)];
    let mut exits = Vec::new();
    for chunk in runs(nrs).chunks(RUNS_PER_CHUNK) {
        let n = chunk.len();
        for (i, (lo, hi)) in chunk.iter().enumerate() {
            // Instructions of the later runs of this chunk (< 2 * RUNS_PER_CHUNK < 255).
            let rest = u8::try_from(2 * (n - i - 1)).unwrap_or(u8::MAX);
            // nr > hi: the next run, or past this chunk's `ret` and `ja` for the last one.
            let next = if i + 1 == n { 3 } else { 1 };
            out.push(jump(BPF_JMP_JGT_K, *hi, next, 0));
            // lo <= nr <= hi: the chunk's `ret`; nr < lo: no later run matches either.
            out.push(jump(BPF_JMP_JGE_K, *lo, rest, rest.saturating_add(1)));
        }
        out.push(stmt(BPF_RET_K, ret));
        exits.push(out.len());
        out.push(stmt(BPF_JMP_JA, 0));
    }
    let end = out.len();
    for e in exits {
        out[e] = stmt(BPF_JMP_JA, offset(e, end));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_runs_merge_consecutive_numbers() {
        assert_eq!(runs(&[0, 1, 2, 5, 7, 8]), [(0, 2), (5, 5), (7, 8)]);
        assert!(runs(&[]).is_empty());
    }
}
