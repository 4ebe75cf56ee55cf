//! The workload's seccomp filter, the same in both modes.
//!
//! - The profile is data: [`DEFAULT_PROFILE`] (`default.json`, Docker's default profile
//!   rewritten for x86_64 and the workload's capabilities) or a `--seccomp FILE` in the
//!   OCI/Docker JSON format ([`profile`]).
//! - It is compiled on the host by [`for_spec`] ([`compile`], with seccompiler), before
//!   the container is cloned or the VM is built: container mode hands the program to its
//!   workload child, VM mode ships its bytes ([`Filter::to_bytes`]) in the guest init's
//!   config, so both modes install the very same instructions.
//! - The default profile is compiled once, ahead of time: `default.bpf` is its program,
//!   and a unit test checks it is exactly what `default.json` compiles to (parsing and
//!   compiling it per run took 100-300 us here, against a 0.5 ms budget for the whole
//!   hardening). A `--seccomp FILE` is compiled per run.
//! - [`install`] is the workload child's last step before execve, after no_new_privs: one
//!   `seccomp(2)` call, no allocation, so isol's own setup is never filtered.

mod compile;
pub mod profile;
mod ranges;
mod syscalls;

use isol_common::spec::Seccomp;
use nix::errno::Errno;
use seccompiler::sock_filter;

pub use compile::CompileError;
pub use profile::{Context, ProfileError};

/// isol's default profile (see the file's own comment).
pub const DEFAULT_PROFILE: &str = include_str!("default.json");
/// [`DEFAULT_PROFILE`] compiled ([`Filter::to_bytes`]); regenerate with
/// `ISOL_WRITE_DEFAULT_BPF=1 cargo test -p isol-sandbox --lib seccomp` after editing it.
pub const DEFAULT_BPF: &[u8] = include_bytes!("default.bpf");

/// Bytes per BPF instruction in [`Filter::to_bytes`]: `struct sock_filter`.
const INSN_BYTES: usize = 8;

/// Why the seccomp filter for a run could not be made.
#[derive(Debug, thiserror::Error)]
pub enum SeccompError {
    /// The profile does not parse or has a bad field.
    #[error("Invalid seccomp profile {source_name}")]
    Profile {
        /// `default` or the file given to `--seccomp`.
        source_name: String,
        /// What is wrong, naming the field.
        #[source]
        source: ProfileError,
    },
    /// The profile parses but cannot be compiled.
    #[error("Cannot compile seccomp profile {source_name}")]
    Compile {
        /// `default` or the file.
        source_name: String,
        /// Why.
        #[source]
        source: CompileError,
    },
    /// Bytes that are not a whole number of BPF instructions.
    #[error("A seccomp program of {0} bytes is not a whole number of instructions")]
    Bytes(usize),
}

/// A compiled seccomp program, ready for [`install`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Filter {
    insns: Vec<sock_filter>,
}

impl Filter {
    /// Number of BPF instructions.
    pub fn len(&self) -> usize {
        self.insns.len()
    }

    /// True for a program with no instruction (never made by [`compile_profile`]).
    pub fn is_empty(&self) -> bool {
        self.insns.is_empty()
    }

    /// The program as `struct sock_filter` bytes (code, jt, jf, k; little endian).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.insns.len() * INSN_BYTES);
        for i in &self.insns {
            out.extend_from_slice(&i.code.to_le_bytes());
            out.push(i.jt);
            out.push(i.jf);
            out.extend_from_slice(&i.k.to_le_bytes());
        }
        out
    }

    /// The program from [`Filter::to_bytes`].
    pub fn from_bytes(b: &[u8]) -> Result<Filter, SeccompError> {
        if b.is_empty() || b.len() % INSN_BYTES != 0 {
            return Err(SeccompError::Bytes(b.len()));
        }
        let insns = b
            .chunks_exact(INSN_BYTES)
            .map(|c| sock_filter {
                code: u16::from_le_bytes([c[0], c[1]]),
                jt: c[2],
                jf: c[3],
                k: u32::from_le_bytes([c[4], c[5], c[6], c[7]]),
            })
            .collect();
        Ok(Filter { insns })
    }
}

/// The workload's view for Docker's `includes`/`excludes`: its capabilities (always
/// Docker's default set) and this kernel's version.
pub fn workload_context() -> Context<'static> {
    static CAPS: std::sync::OnceLock<Vec<&'static str>> = std::sync::OnceLock::new();
    let caps = CAPS.get_or_init(|| {
        isol_common::security::DEFAULT_CAPABILITIES
            .iter()
            .map(|(_, n)| *n)
            .collect()
    });
    Context {
        caps,
        kernel: kernel_version(),
    }
}

fn kernel_version() -> (u32, u32) {
    let Ok(u) = nix::sys::utsname::uname() else {
        return (0, 0);
    };
    let release = u.release().to_string_lossy();
    let mut nums = release
        .split(|c: char| !c.is_ascii_digit())
        .map(|n| n.parse().unwrap_or(0));
    (nums.next().unwrap_or(0), nums.next().unwrap_or(0))
}

/// Parses and compiles a profile's JSON text; `source_name` names it in errors.
pub fn compile_profile(
    text: &str,
    source_name: &str,
    ctx: &Context,
) -> Result<Filter, SeccompError> {
    let p = profile::parse(text, ctx).map_err(|source| SeccompError::Profile {
        source_name: source_name.to_string(),
        source,
    })?;
    let insns = compile::compile(&p).map_err(|source| SeccompError::Compile {
        source_name: source_name.to_string(),
        source,
    })?;
    Ok(Filter { insns })
}

/// The filter a spec asks for: `None` for `unconfined`.
pub fn for_spec(s: &Seccomp) -> Result<Option<Filter>, SeccompError> {
    match s {
        Seccomp::Unconfined => Ok(None),
        Seccomp::Default => Filter::from_bytes(DEFAULT_BPF).map(Some),
        Seccomp::Profile { path, json } => {
            compile_profile(json, &path.display().to_string(), &workload_context()).map(Some)
        }
    }
}

/// Installs `f` on the calling thread (inherited across fork and execve). no_new_privs
/// must already be set (or the caller hold CAP_SYS_ADMIN). One syscall, no allocation:
/// fine in a forked child.
pub fn install(f: &Filter) -> Result<(), Errno> {
    let prog = libc::sock_fprog {
        len: u16::try_from(f.insns.len()).map_err(|_| Errno::EINVAL)?,
        // seccompiler's sock_filter is #[repr(C)] with libc's layout (code, jt, jf, k).
        filter: f.insns.as_ptr().cast_mut().cast(),
    };
    // SAFETY: `prog` points at `f.insns`, alive for the call; the kernel copies the program.
    let r = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_SET_MODE_FILTER,
            0,
            &prog as *const libc::sock_fprog,
        )
    };
    Errno::result(r).map(drop)
}

#[cfg(test)]
mod tests;
