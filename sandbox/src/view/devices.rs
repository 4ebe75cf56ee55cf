//! The device allow-list, runc's default: the workload may create any device node
//! (mknod, with CAP_MKNOD) but open only null, zero, full, random, urandom, tty, ptmx
//! and the pseudo-terminals of its own devpts. Enforced by the kernel's device cgroup:
//! the v1 `devices` controller ([`v1_rules`]) where the host has it, else a
//! BPF_CGROUP_DEVICE program on the run's cgroup2 directory ([`program`],
//! [`attach_program`]). Both are made from the one table [`ALLOWED`].

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;

use nix::errno::Errno;

/// A device node the view provides (bind-mounted from the host's /dev).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Node {
    /// Name under /dev.
    pub name: &'static str,
    /// Major number.
    pub major: u32,
    /// Minor number.
    pub minor: u32,
}

/// The nodes /dev gets.
pub const NODES: &[Node] = &[
    Node {
        name: "null",
        major: 1,
        minor: 3,
    },
    Node {
        name: "zero",
        major: 1,
        minor: 5,
    },
    Node {
        name: "full",
        major: 1,
        minor: 7,
    },
    Node {
        name: "random",
        major: 1,
        minor: 8,
    },
    Node {
        name: "urandom",
        major: 1,
        minor: 9,
    },
    Node {
        name: "tty",
        major: 5,
        minor: 0,
    },
];

/// An allowed character device: `major` and a minor (`None`: every minor).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rule {
    /// Major number.
    pub major: u32,
    /// Minor number, `None` for all.
    pub minor: Option<u32>,
}

/// The character devices the workload may open (read/write): [`NODES`], /dev/ptmx (5:2)
/// and the pseudo-terminal slaves of major 136 (the first 256 of its devpts, as runc).
/// Block devices: none.
pub const ALLOWED: &[Rule] = &[
    Rule {
        major: 1,
        minor: Some(3),
    },
    Rule {
        major: 1,
        minor: Some(5),
    },
    Rule {
        major: 1,
        minor: Some(7),
    },
    Rule {
        major: 1,
        minor: Some(8),
    },
    Rule {
        major: 1,
        minor: Some(9),
    },
    Rule {
        major: 5,
        minor: Some(0),
    },
    Rule {
        major: 5,
        minor: Some(2),
    },
    Rule {
        major: 136,
        minor: None,
    },
];

/// The v1 `devices` controller writes, in order: `devices.deny` gets `a` (deny all),
/// then each line goes to `devices.allow` in its own write.
pub fn v1_rules() -> Vec<String> {
    let mut v = vec!["c *:* m".to_string(), "b *:* m".to_string()];
    for r in ALLOWED {
        let minor = r.minor.map_or("*".to_string(), |m| m.to_string());
        v.push(format!("c {}:{minor} rwm", r.major));
    }
    v
}

/// One eBPF instruction (`struct bpf_insn`).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Insn {
    code: u8,
    regs: u8,
    off: i16,
    imm: i32,
}

const LDX_W: u8 = 0x61; // BPF_LDX | BPF_MEM | BPF_W
const MOV_K: u8 = 0xb7; // BPF_ALU64 | BPF_MOV | BPF_K
const MOV_X: u8 = 0xbf; // BPF_ALU64 | BPF_MOV | BPF_X
const AND_K: u8 = 0x57; // BPF_ALU64 | BPF_AND | BPF_K
const RSH_K: u8 = 0x77; // BPF_ALU64 | BPF_RSH | BPF_K
const JEQ_K: u8 = 0x15; // BPF_JMP | BPF_JEQ | BPF_K
const JNE_K: u8 = 0x55; // BPF_JMP | BPF_JNE | BPF_K
const JA: u8 = 0x05; // BPF_JMP | BPF_JA
const EXIT: u8 = 0x95; // BPF_JMP | BPF_EXIT

fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Insn {
    Insn {
        code,
        regs: (src << 4) | dst,
        off,
        imm,
    }
}

/// Where a jump goes, patched once the program is laid out.
#[derive(Clone, Copy)]
enum Label {
    Allow,
    Deny,
}

/// The BPF_CGROUP_DEVICE program: returns 1 (allow) for a request that is only mknod,
/// or for read/write of an [`ALLOWED`] character device; 0 (EPERM) for anything else.
/// The context is `struct bpf_cgroup_dev_ctx { u32 access_type; u32 major; u32 minor; }`
/// with `access_type = access << 16 | type` (type 1 block, 2 char; access 1 mknod,
/// 2 read, 4 write).
pub fn program() -> Vec<Insn> {
    let mut p = vec![
        insn(LDX_W, 2, 1, 0, 0),      // r2 = access_type
        insn(MOV_X, 3, 2, 0, 0),      // r3 = r2
        insn(AND_K, 3, 0, 0, 0xffff), // r3 = type
        insn(RSH_K, 2, 0, 0, 16),     // r2 = access
        insn(LDX_W, 4, 1, 4, 0),      // r4 = major
        insn(LDX_W, 5, 1, 8, 0),      // r5 = minor
        insn(AND_K, 2, 0, 0, !1),     // r2 = access without mknod
    ];
    let mut jumps: Vec<(usize, Label)> = Vec::new();
    let mut jump = |p: &mut Vec<Insn>, code: u8, dst: u8, imm: i32, to: Label| {
        jumps.push((p.len(), to));
        p.push(insn(code, dst, 0, 0, imm));
    };
    jump(&mut p, JEQ_K, 2, 0, Label::Allow); // mknod only
    jump(&mut p, JNE_K, 3, 2, Label::Deny); // not a character device
    for r in ALLOWED {
        // Majors and minors of the table are small.
        #[allow(clippy::cast_possible_wrap)]
        let (major, minor) = (r.major as i32, r.minor.map(|m| m as i32));
        match minor {
            None => jump(&mut p, JEQ_K, 4, major, Label::Allow),
            Some(m) => {
                p.push(insn(JNE_K, 4, 0, 1, major)); // skip the minor test
                jump(&mut p, JEQ_K, 5, m, Label::Allow);
            }
        }
    }
    jump(&mut p, JA, 0, 0, Label::Deny);
    let deny = p.len();
    p.push(insn(MOV_K, 0, 0, 0, 0));
    p.push(insn(EXIT, 0, 0, 0, 0));
    let allow = p.len();
    p.push(insn(MOV_K, 0, 0, 0, 1));
    p.push(insn(EXIT, 0, 0, 0, 0));
    for (at, to) in jumps {
        let target = match to {
            Label::Allow => allow,
            Label::Deny => deny,
        };
        // The program is a few dozen instructions long.
        #[allow(clippy::cast_possible_truncation, clippy::cast_possible_wrap)]
        let off = (target as isize - at as isize - 1) as i16;
        p[at].off = off;
    }
    p
}

/// Runs [`program`] on one request the way the kernel would (for tests): true = allow.
pub fn evaluate(prog: &[Insn], access_type: u32, major: u32, minor: u32) -> bool {
    let mut r = [0u64; 11];
    let ctx = [access_type, major, minor];
    let mut pc = 0usize;
    loop {
        let i = prog[pc];
        let (dst, src) = (usize::from(i.regs & 0xf), usize::from(i.regs >> 4));
        // Immediates are sign-extended, as eBPF does.
        #[allow(clippy::cast_sign_loss)]
        let imm = i64::from(i.imm) as u64;
        let mut next = pc + 1;
        let target = |off: i16| (pc as isize + 1 + isize::from(off)) as usize;
        match i.code {
            LDX_W => r[dst] = u64::from(ctx[usize::try_from(i.off).unwrap_or(0) / 4]),
            MOV_K => r[dst] = imm,
            MOV_X => r[dst] = r[src],
            AND_K => r[dst] &= imm,
            RSH_K => r[dst] >>= imm,
            JEQ_K if r[dst] == imm => next = target(i.off),
            JNE_K if r[dst] != imm => next = target(i.off),
            JA => next = target(i.off),
            EXIT => return r[0] == 1,
            _ => {}
        }
        pc = next;
    }
}

const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_PROG_ATTACH: libc::c_long = 8;
const BPF_PROG_TYPE_CGROUP_DEVICE: u32 = 15;
const BPF_CGROUP_DEVICE: u32 = 6;

/// `union bpf_attr` for BPF_PROG_LOAD, up to `expected_attach_type`.
#[repr(C)]
struct ProgLoad {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
    prog_ifindex: u32,
    expected_attach_type: u32,
}

/// `union bpf_attr` for BPF_PROG_ATTACH.
#[repr(C)]
struct ProgAttach {
    target_fd: u32,
    attach_bpf_fd: u32,
    attach_type: u32,
    attach_flags: u32,
    replace_bpf_fd: u32,
}

fn bpf<T>(cmd: libc::c_long, attr: &T) -> nix::Result<libc::c_long> {
    // SAFETY: `attr` is a live, correctly laid out bpf_attr prefix of size_of::<T>()
    // bytes; the kernel reads it (and the buffers it points to, alive for the call).
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            attr as *const T,
            std::mem::size_of::<T>(),
        )
    };
    Errno::result(rc)
}

/// Loads [`program`] and attaches it to the cgroup2 directory `cgroup` (needs
/// CAP_SYS_ADMIN or CAP_BPF). The program stays attached until the cgroup is removed.
pub fn attach_program(cgroup: &Path) -> nix::Result<()> {
    let prog = program();
    let license = c"Apache-2.0";
    let mut name = [0u8; 16];
    name[..11].copy_from_slice(b"isol_device");
    let load = ProgLoad {
        prog_type: BPF_PROG_TYPE_CGROUP_DEVICE,
        insn_cnt: u32::try_from(prog.len()).map_err(|_| Errno::E2BIG)?,
        insns: prog.as_ptr() as u64,
        license: license.as_ptr() as u64,
        log_level: 0,
        log_size: 0,
        log_buf: 0,
        kern_version: 0,
        prog_flags: 0,
        prog_name: name,
        prog_ifindex: 0,
        expected_attach_type: 0,
    };
    let fd = bpf(BPF_PROG_LOAD, &load)?;
    // An fd always fits in i32.
    #[allow(clippy::cast_possible_truncation)]
    // SAFETY: BPF_PROG_LOAD just returned this fd; nothing else owns it.
    let prog_fd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
    let dir = nix::fcntl::open(
        cgroup,
        nix::fcntl::OFlag::O_RDONLY | nix::fcntl::OFlag::O_DIRECTORY | nix::fcntl::OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )?;
    // Fds are non-negative.
    #[allow(clippy::cast_sign_loss)]
    let attach = ProgAttach {
        target_fd: dir.as_raw_fd() as u32,
        attach_bpf_fd: prog_fd.as_raw_fd() as u32,
        attach_type: BPF_CGROUP_DEVICE,
        attach_flags: 0,
        replace_bpf_fd: 0,
    };
    bpf(BPF_PROG_ATTACH, &attach).map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHAR: u32 = 2;
    const BLOCK: u32 = 1;
    const MKNOD: u32 = 1 << 16;
    const RW: u32 = 6 << 16;

    #[test]
    fn test_program_allows_the_table_and_mknod_only() {
        let p = program();
        assert!(p.len() < 64, "{}", p.len());
        for n in NODES {
            assert!(evaluate(&p, RW | CHAR, n.major, n.minor), "{}", n.name);
        }
        assert!(evaluate(&p, RW | CHAR, 5, 2), "ptmx");
        assert!(evaluate(&p, RW | CHAR, 136, 7), "pts");
        assert!(evaluate(&p, MKNOD | CHAR, 10, 232), "mknod of kvm");
        assert!(evaluate(&p, MKNOD | BLOCK, 8, 0), "mknod of a disk");
        assert!(!evaluate(&p, RW | CHAR, 10, 232), "kvm");
        assert!(!evaluate(&p, (2 << 16) | CHAR, 10, 232), "kvm read");
        assert!(!evaluate(&p, RW | BLOCK, 8, 0), "sda");
        assert!(!evaluate(&p, RW | BLOCK, 1, 3), "block 1:3");
        assert!(!evaluate(&p, RW | CHAR, 1, 1), "mem");
        assert!(!evaluate(&p, RW | CHAR, 1, 4), "port");
        assert!(!evaluate(&p, RW | CHAR, 5, 1), "console");
        assert!(!evaluate(&p, RW | CHAR, 137, 0));
        assert!(!evaluate(&p, RW | CHAR, 135, 0));
        assert!(!evaluate(&p, (MKNOD | RW) | CHAR, 10, 232), "mknod+open");
    }

    #[test]
    fn test_v1_rules_deny_all_but_the_table() {
        let r = v1_rules();
        assert_eq!(r[..2], ["c *:* m", "b *:* m"]);
        assert!(r.contains(&"c 1:3 rwm".to_string()));
        assert!(r.contains(&"c 136:* rwm".to_string()));
        assert!(!r.iter().any(|l| l.starts_with("b ") && l.ends_with("rwm")));
        assert_eq!(r.len(), 2 + ALLOWED.len());
    }

    #[test]
    fn test_insn_layout_is_the_kernels() {
        assert_eq!(std::mem::size_of::<Insn>(), 8);
        assert_eq!(std::mem::size_of::<ProgLoad>(), 72);
        assert_eq!(std::mem::offset_of!(ProgLoad, prog_name), 48);
        assert_eq!(std::mem::size_of::<ProgAttach>(), 20);
    }
}
