//! A resolved [`Profile`] to one classic-BPF seccomp program, with `seccompiler`.
//!
//! seccompiler builds a filter with one match action and one mismatch action. A profile
//! has several actions (Docker's default: ALLOW for most, ENOSYS for `clone3`, EPERM for
//! the rest), so isol builds seccompiler filters per action, with a sentinel mismatch
//! action, and chains them into one program: each sentinel `RET` becomes a jump to the next
//! action's group, and the last one falls through to the profile's default action. The
//! actions are tried most restrictive first (the kernel's own precedence between filters:
//! kill process, kill thread, trap, errno, trace, log, allow), so when two actions match a
//! call, the more restrictive one wins.
//!
//! Each action's code has two parts: the syscalls it takes whatever their arguments, as
//! runs of numbers written directly ([`super::ranges`]: seccompiler's five instructions per
//! syscall made the install cost 0.25-0.6 ms), then the syscalls with argument rules, by
//! seccompiler. Those are cut into buckets of [`BUCKET`] syscalls, one seccompiler filter
//! each, behind a dispatch on the number, so that no call walks a long chain (the kernel
//! walks the program for every syscall number at install, to cache the allowed ones).
//!
//! The program starts with isol's own preamble, whatever the profile says:
//! - `arch != AUDIT_ARCH_X86_64` (an i386 call through `int 0x80` or `sysenter`) returns
//!   EPERM: syscall numbers mean other syscalls there, and no rule is written for them;
//! - `nr >= 0x40000000` (the x32 ABI's numbers, same arch value) returns EPERM.
//!
//! Argument comparisons are 64-bit (libseccomp's), except for arguments the kernel takes
//! as a 32-bit `int` ([`DWORD_ARGS`]): there the kernel ignores the high half, so the
//! filter must too, or `socket(0x1_0000_0028, ...)` would pass a `!= AF_VSOCK` rule.

use std::collections::BTreeMap;

use seccompiler::{
    sock_filter, BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition,
    SeccompFilter, SeccompRule, TargetArch,
};

use super::profile::{Action, Cond, Op, Profile};
use super::ranges;

/// Classic BPF opcodes (linux/bpf_common.h).
pub(super) const BPF_LD_W_ABS: u16 = 0x20;
pub(super) const BPF_JMP_JA: u16 = 0x05;
const BPF_JMP_JEQ_K: u16 = 0x15;
const BPF_JMP_JGE_K: u16 = 0x35;
pub(super) const BPF_RET_K: u16 = 0x06;
/// Offsets in `struct seccomp_data` (linux/seccomp.h).
pub(super) const DATA_NR: u32 = 0;
const DATA_ARCH: u32 = 4;
/// `AUDIT_ARCH_X86_64` (linux/audit.h: EM_X86_64 | 64BIT | LE).
const AUDIT_ARCH_X86_64: u32 = 62 | 0x8000_0000 | 0x4000_0000;
/// `__X32_SYSCALL_BIT` (asm/unistd.h).
const X32_SYSCALL_BIT: u32 = 0x4000_0000;
/// The kernel's limit on a filter's length (BPF_MAXINSNS).
const MAX_INSNS: usize = 4096;
/// Most syscalls per seccompiler filter (see the module doc).
pub const BUCKET: usize = 16;

/// (syscall, argument index) pairs the kernel declares `int`/`unsigned int`: compared on
/// their low 32 bits only.
pub const DWORD_ARGS: &[(i64, u8)] = &[
    (libc::SYS_socket, 0),
    (libc::SYS_socket, 1),
    (libc::SYS_socket, 2),
    (libc::SYS_socketpair, 0),
    (libc::SYS_socketpair, 1),
    (libc::SYS_socketpair, 2),
    (libc::SYS_personality, 0),
];

/// A compiled filter could not be built.
#[derive(Debug, thiserror::Error)]
pub enum CompileError {
    /// seccompiler refused a part of it.
    #[error("Cannot compile the seccomp filter")]
    Seccompiler(#[source] seccompiler::BackendError),
    /// More instructions than the kernel accepts.
    #[error("The seccomp filter has {0} instructions, more than the kernel's {MAX_INSNS}")]
    TooLong(usize),
}

pub(super) fn stmt(code: u16, k: u32) -> sock_filter {
    sock_filter {
        code,
        jt: 0,
        jf: 0,
        k,
    }
}

pub(super) fn jump(code: u16, k: u32, jt: u8, jf: u8) -> sock_filter {
    sock_filter { code, jt, jf, k }
}

fn to_seccompiler(a: Action) -> SeccompAction {
    match a {
        Action::KillProcess => SeccompAction::KillProcess,
        Action::KillThread => SeccompAction::KillThread,
        Action::Trap => SeccompAction::Trap,
        Action::Errno(e) => SeccompAction::Errno(u32::from(e)),
        Action::Trace(t) => SeccompAction::Trace(u32::from(t)),
        Action::Log => SeccompAction::Log,
        Action::Allow => SeccompAction::Allow,
    }
}

/// The return value of `a` in a BPF program.
pub fn ret_value(a: Action) -> u32 {
    u32::from(to_seccompiler(a))
}

fn condition(nr: i64, c: &Cond) -> Result<SeccompCondition, CompileError> {
    let len = if DWORD_ARGS.contains(&(nr, c.index)) {
        SeccompCmpArgLen::Dword
    } else {
        SeccompCmpArgLen::Qword
    };
    let op = match c.op {
        Op::Ne => SeccompCmpOp::Ne,
        Op::Lt => SeccompCmpOp::Lt,
        Op::Le => SeccompCmpOp::Le,
        Op::Eq => SeccompCmpOp::Eq,
        Op::Ge => SeccompCmpOp::Ge,
        Op::Gt => SeccompCmpOp::Gt,
        Op::MaskedEq { mask } => SeccompCmpOp::MaskedEq(mask),
    };
    SeccompCondition::new(c.index, len, op, c.value).map_err(CompileError::Seccompiler)
}

/// The seccompiler program of one action's rules; `sentinel` is its mismatch value.
fn segment(
    action: Action,
    rules: &BTreeMap<i64, Vec<Vec<Cond>>>,
    sentinel: SeccompAction,
) -> Result<BpfProgram, CompileError> {
    let mut map = BTreeMap::new();
    for (nr, alts) in rules {
        let mut chain = Vec::new();
        for conds in alts.iter().filter(|c| !c.is_empty()) {
            let conds = conds
                .iter()
                .map(|c| condition(*nr, c))
                .collect::<Result<Vec<_>, _>>()?;
            chain.push(SeccompRule::new(conds).map_err(CompileError::Seccompiler)?);
        }
        if alts.iter().any(Vec::is_empty) {
            chain.clear(); // an empty chain is seccompiler's "always"
        }
        map.insert(*nr, chain);
    }
    let filter = SeccompFilter::new(map, sentinel, to_seccompiler(action), TargetArch::x86_64)
        .map_err(CompileError::Seccompiler)?;
    BpfProgram::try_from(filter).map_err(CompileError::Seccompiler)
}

/// Turns `prog`'s sentinel returns into jumps to `end`, `prog` starting at `at`.
fn patch(prog: BpfProgram, at: usize, end: usize, sentinel: u32) -> Vec<sock_filter> {
    prog.into_iter()
        .enumerate()
        .map(|(i, insn)| {
            if insn.code == BPF_RET_K && insn.k == sentinel {
                stmt(BPF_JMP_JA, offset(at + i, end))
            } else {
                insn
            }
        })
        .collect()
}

/// The `ja` offset from the instruction at `from` to the one at `to` (`to > from`).
pub(super) fn offset(from: usize, to: usize) -> u32 {
    // Programs are at most MAX_INSNS long (checked before install), so this fits.
    u32::try_from(to - from - 1).unwrap_or(u32::MAX)
}

/// One action's code: a dispatch on the syscall number to its buckets. Every path that
/// matches no rule of the action ends at the instruction right after it.
fn group(
    action: Action,
    rules: &BTreeMap<i64, Vec<Vec<Cond>>>,
    sentinel: &SeccompAction,
) -> Result<Vec<sock_filter>, CompileError> {
    let entries: Vec<_> = rules.iter().map(|(n, a)| (*n, a.clone())).collect();
    let buckets: Vec<BTreeMap<i64, Vec<Vec<Cond>>>> = entries
        .chunks(BUCKET)
        .map(|c| c.iter().cloned().collect())
        .collect();
    let progs = buckets
        .iter()
        .map(|b| segment(action, b, sentinel.clone()))
        .collect::<Result<Vec<_>, _>>()?;
    // ld nr; (jge next_lo, 1, 0; ja bucket) per bucket but the last; ja last bucket.
    let dispatch_len = 2 * progs.len();
    let mut starts = Vec::with_capacity(progs.len());
    let mut end = dispatch_len;
    for p in &progs {
        starts.push(end);
        end += p.len();
    }
    let mut out = vec![stmt(BPF_LD_W_ABS, DATA_NR)];
    for (i, b) in buckets.iter().enumerate().skip(1) {
        let lo = b.keys().next().copied().unwrap_or(0);
        out.push(jump(
            BPF_JMP_JGE_K,
            u32::try_from(lo).unwrap_or(u32::MAX),
            1,
            0,
        ));
        out.push(stmt(BPF_JMP_JA, offset(out.len(), starts[i - 1])));
    }
    if let Some(last) = starts.last() {
        out.push(stmt(BPF_JMP_JA, offset(out.len(), *last)));
    }
    let sentinel = u32::from(sentinel.clone());
    for (p, at) in progs.into_iter().zip(starts) {
        out.extend(patch(p, at, end, sentinel));
    }
    Ok(out)
}

/// A `SECCOMP_RET_TRACE` value no action of `p` returns (the segments' "no match here").
fn sentinel(p: &Profile) -> SeccompAction {
    let used = |t: u16| p.default == Action::Trace(t) || p.rules.contains_key(&Action::Trace(t));
    let free = (0..=u16::MAX).rev().find(|t| !used(*t)).unwrap_or(0);
    SeccompAction::Trace(u32::from(free))
}

/// Compiles `p` into one program (see the module doc for its shape).
pub fn compile(p: &Profile) -> Result<Vec<sock_filter>, CompileError> {
    let deny = ret_value(Action::Errno(libc::EPERM as u16));
    let mut prog = vec![
        stmt(BPF_LD_W_ABS, DATA_ARCH),
        jump(BPF_JMP_JEQ_K, AUDIT_ARCH_X86_64, 1, 0),
        stmt(BPF_RET_K, deny),
        stmt(BPF_LD_W_ABS, DATA_NR),
        jump(BPF_JMP_JGE_K, X32_SYSCALL_BIT, 0, 1),
        stmt(BPF_RET_K, deny),
    ];
    let sentinel = sentinel(p);
    // Rules are keyed by Action, whose order is the kernel's precedence.
    for (action, rules) in &p.rules {
        let (always, with_args): (BTreeMap<_, _>, BTreeMap<_, _>) = rules
            .iter()
            .map(|(n, a)| (*n, a.clone()))
            .partition(|(_, alts)| alts.iter().any(Vec::is_empty));
        let always: Vec<u32> = always
            .keys()
            .filter_map(|n| u32::try_from(*n).ok())
            .collect();
        if !always.is_empty() {
            prog.extend(ranges::emit(&always, ret_value(*action)));
        }
        if !with_args.is_empty() {
            prog.extend(group(*action, &with_args, &sentinel)?);
        }
    }
    prog.push(stmt(BPF_RET_K, ret_value(p.default)));
    if prog.len() > MAX_INSNS {
        return Err(CompileError::TooLong(prog.len()));
    }
    Ok(prog)
}
