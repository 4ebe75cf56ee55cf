//! The VMM's jail (Firecracker's jailer, built in): the process that runs the machine is
//! a child of isol confined before the guest runs a single instruction.
//!
//! - **Namespaces.** isol forks the VMM into a new pid namespace (it is pid 1 there and
//!   sees no host process); the VMM unshares mount, ipc, uts and net namespaces
//!   ([`isol_sandbox::jail::unshare`]).
//! - **Root.** [`isol_sandbox::jail::enter`] mounts a small tmpfs on the run's empty
//!   `jail` directory (in the VMM's mount namespace only), binds into it exactly what the
//!   VMM opens: [`KVM`], the kernel at [`KERNEL`], the initramfs at [`INITRD`] and the
//!   served directories at [`share_path`] (`/shares/0` is the rootfs, read-only; then the
//!   volumes), plus a `/proc` of its own pid namespace (`subset=pid`, read-only: the 9P
//!   server reopens files through `/proc/self/fd`), all nosuid and noexec, then
//!   pivot_roots into it and detaches the host's root. Fds isol had open are closed,
//!   except those the VMM was handed (console log, its pipes to isol).
//! - **Cgroup.** isol moves the VMM into its own cgroup ([`cgroup`]) before the guest
//!   runs: memory capped at guest RAM plus [`cgroup::VMM_OVERHEAD`], and a pids limit.
//! - **Privileges** ([`drop_privileges`], after the machine is set up and before any of
//!   its threads exists): a per-run unprivileged uid/gid ([`jail_id`] of isol's pid), no
//!   supplementary groups, no_new_privs, and no capability at all. /dev/kvm, the kernel
//!   and the initramfs are opened and the guest memory mapped before the drop, while the
//!   VMM is still root inside its jail, so no host file needs to be made accessible to
//!   the jail's uid.
//! - **Shares** ([`files`]): the 9P servers run in a file-server process of their own,
//!   forked by the VMM inside the jail before the machine exists (no KVM fd, no guest
//!   memory). The VMM forwards each 9P request to it over a socket and then unmounts the
//!   shares from a mount namespace of its own: a guest that takes over the VMM through a
//!   device-emulation bug finds no share, no capability and a seccomp filter.
//!
//! **Why the file server keeps three capabilities.** It serves trees owned by root and by
//! any other uid, creates files in volumes and chowns them to the guest's uid/gid, and
//! sets modes and times the guest asks for on files it does not own. That needs
//! `CAP_CHOWN`, `CAP_DAC_OVERRIDE` and `CAP_FOWNER` in the permitted, effective and
//! bounding sets ([`SHARE_CAPS`]); everything else goes (`CAP_SYS_ADMIN`,
//! `CAP_DAC_READ_SEARCH` and its `open_by_handle_at`, `CAP_MKNOD`, `CAP_FSETID`, ...).
//! The alternatives were weighed: a user namespace with an identity mapping of all uids
//! would hand it every capability inside it (mount, and the whole namespaced-net and
//! -ipc surface) to get the same three over the same files; fds opened before the drop
//! cannot chown or create files as another uid. With the mount namespace, the only files
//! these capabilities reach are the shares themselves, the bound kernel and initramfs
//! (read-only mounts) and /dev/kvm (useless there: its seccomp list has no ioctl); /proc
//! is read-only and without /proc/sys. It runs under its own uid ([`files::file_server_id`]), so the VMM can
//! neither signal nor trace it. virtiofsd makes the same split (a file daemon with
//! these capabilities beside a VMM without); here its requests come as copies over a
//! socket rather than through shared guest memory, so the file server never maps the
//! guest. Confinement beneath a share's root is the 9P server's own job (`openat2` with
//! `RESOLVE_BENEATH`): the bind mounts are views of whole host filesystems, so a
//! directory moved out of a share would still be reachable by `..` from the mount alone.
//!
//! `--vmm-jail off` ([`VmmJail::Off`]) runs the VMM in isol's own process, as before,
//! for debugging.

pub mod cgroup;
pub mod files;
mod link;
mod process;

use std::path::{Path, PathBuf};

use isol_sandbox::jail::{Bind, Identity, JailError};

/// Errors of the VMM's jail (isol exits 125).
#[derive(Debug, thiserror::Error)]
pub enum VmmJailError {
    /// A jail step (namespaces, mounts, pivot_root, privilege drop) failed.
    #[error("Cannot jail the VMM (run as root, or pass --vmm-jail off to debug without the jail)")]
    Jail(#[source] JailError),
    /// Capabilities are per thread: dropping them with several threads would miss some.
    #[error("Cannot drop the VMM's privileges: it already has {0} threads")]
    Threads(usize),
    /// fork, pipe or the pid namespace failed.
    #[error("Cannot start the jailed VMM process: {what}")]
    Spawn {
        /// The step.
        what: &'static str,
        /// Cause.
        #[source]
        source: nix::Error,
    },
    /// The VMM's cgroup could not be made.
    #[error("Cannot set up the VMM's cgroup {path}")]
    Cgroup {
        /// The cgroup directory or file.
        path: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// The VMM process ended without saying how the run went.
    #[error("The jailed VMM process {how} without reporting the run's result")]
    Died {
        /// "exited with 125", "was killed by signal 9 (SIGKILL)".
        how: String,
    },
    /// The pipe to the VMM failed.
    #[error("Lost contact with the jailed VMM")]
    Link(#[source] std::io::Error),
}
use isol_sandbox::syscall::linux::LinuxSyscall;

pub use link::{ChildLink, Message};
pub use process::{spawn, JailSpec, Jailed};

/// Whether the VMM runs jailed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub enum VmmJail {
    /// In its own process, jailed (isol's default).
    #[default]
    On,
    /// In isol's process, unconfined by namespaces (`--vmm-jail off`, debugging only).
    Off,
}

/// /dev/kvm inside the jail (the host's node, bound).
pub const KVM: &str = "/dev/kvm";
/// The guest kernel inside the jail.
pub const KERNEL: &str = "/kernel";
/// The initramfs inside the jail.
pub const INITRD: &str = "/initramfs";
/// The jail's hostname.
pub const HOSTNAME: &str = "isol-vmm";

/// `CAP_CHOWN`, `CAP_DAC_OVERRIDE`, `CAP_FOWNER`: what the file server keeps.
pub const SHARE_CAPS: u64 = (1 << CAP_CHOWN) | (1 << CAP_DAC_OVERRIDE) | (1 << CAP_FOWNER);

// linux/capability.h.
const CAP_CHOWN: u32 = 0;
const CAP_DAC_OVERRIDE: u32 = 1;
const CAP_FOWNER: u32 = 3;

/// First uid/gid of the jails' range: each run's VMM takes `JAIL_ID_BASE + isol's pid % 2^20`
/// and its file server the next 2^20 block,
/// far above any uid a distribution hands out, so no host user owns the VMM's files or
/// can signal or trace it.
pub const JAIL_ID_BASE: u32 = 0x7000_0000;

/// Where share `i` is served from inside the jail.
pub fn share_path(i: usize) -> PathBuf {
    PathBuf::from(format!("/shares/{i}"))
}

/// The uid and gid of the jail of the isol process `pid`.
pub fn jail_id(pid: u32) -> u32 {
    JAIL_ID_BASE + (pid & 0xf_ffff)
}

/// What the jail holds: /dev/kvm, the kernel, the initramfs (if any) and the shares
/// (host directory, read-only) at their fixed paths.
pub fn binds(kernel: &Path, initrd: Option<&Path>, shares: &[(PathBuf, bool)]) -> Vec<Bind> {
    let file = |source: &Path, target: &str, read_only: bool, device: bool| Bind {
        source: source.to_path_buf(),
        target: target.into(),
        dir: false,
        read_only,
        device,
    };
    let mut v = vec![
        file(Path::new(KVM), KVM, false, true),
        file(kernel, KERNEL, true, false),
    ];
    if let Some(i) = initrd {
        v.push(file(i, INITRD, true, false));
    }
    v.extend(shares.iter().enumerate().map(|(i, (host, ro))| Bind {
        source: host.clone(),
        target: share_path(i),
        dir: true,
        read_only: *ro,
        device: false,
    }));
    v
}

/// The machine's PVM check, made by isol before the jail (it reads host files the jail
/// does not hold). On success the jailed machine is told to skip it (`allow_pvm`).
pub fn check_pvm(kernel: &Path, allow_pvm: bool) -> Result<(), crate::MachineError> {
    crate::machine::check_pvm(&crate::MachineConfig {
        kernel: kernel.to_path_buf(),
        initrd: None,
        cmdline: String::new(),
        memory: 0,
        vcpus: 1,
        console: Box::new(std::io::sink()),
        allow_pvm,
        seccomp: crate::VmmSeccomp::Off,
    })
}

/// Threads of this process (from the jail's own /proc).
fn thread_count() -> usize {
    std::fs::read_dir("/proc/self/task").map_or(0, |d| d.count())
}

/// Drops the jailed VMM's privileges (see the module docs): the uid/gid of the jail of
/// isol process `isol_pid` ([`jail_id`]: isol's pid, since the VMM is pid 1 of its own
/// namespace) and no capability. Must run while the process has a single thread
/// (capabilities are per thread); refuses otherwise.
pub fn drop_privileges(isol_pid: u32) -> Result<(), VmmJailError> {
    drop_privileges_to(jail_id(isol_pid), 0)
}

/// The privilege drop of the VMM and of its file server ([`files`]): uid and gid `id`,
/// no supplementary groups, no_new_privs, capabilities `caps` only.
fn drop_privileges_to(id: u32, caps: u64) -> Result<(), VmmJailError> {
    let threads = thread_count();
    if threads != 1 {
        return Err(VmmJailError::Threads(threads));
    }
    let identity = Identity {
        uid: id,
        gid: id,
        caps,
    };
    isol_sandbox::jail::drop_privileges(&LinuxSyscall, &identity).map_err(VmmJailError::Jail)?;
    // The kernel clears the parent-death signal when credentials change: set it again.
    // (If isol died in between, the VMM finds its pipe closed when it waits for go.)
    nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL).map_err(|source| {
        VmmJailError::Spawn {
            what: "set the parent-death signal",
            source,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_binds_fixed_paths_and_modes() {
        let shares = vec![("/srv/root".into(), true), ("/data".into(), false)];
        let b = binds(
            Path::new("/k/vmlinux"),
            Some(Path::new("/run/i.cpio")),
            &shares,
        );
        let t: Vec<(&str, bool, bool, bool)> = b
            .iter()
            .map(|b| (b.target.to_str().unwrap(), b.dir, b.read_only, b.device))
            .collect();
        assert_eq!(
            t,
            [
                ("/dev/kvm", false, false, true),
                ("/kernel", false, true, false),
                ("/initramfs", false, true, false),
                ("/shares/0", true, true, false),
                ("/shares/1", true, false, false),
            ]
        );
        assert_eq!(b[0].source, Path::new("/dev/kvm"));
        assert_eq!(b[4].source, Path::new("/data"));
        assert_eq!(binds(Path::new("/k"), None, &[]).len(), 2);
    }

    #[test]
    fn test_share_caps_are_chown_dac_override_fowner() {
        assert_eq!(SHARE_CAPS, 0b1011);
    }

    #[test]
    fn test_jail_id_unprivileged_and_per_pid() {
        assert_eq!(jail_id(1), JAIL_ID_BASE + 1);
        assert_ne!(jail_id(100), jail_id(101));
        assert!(jail_id(u32::MAX) > 65535 && jail_id(u32::MAX) < u32::MAX);
    }
}
