//! The jailed VMM's file server: a process of its own that serves the shares over 9P, so
//! that the VMM, which holds guest memory and emulates every device, keeps no capability
//! and sees no share (virtiofsd's split, with copies instead of shared memory).
//!
//! The VMM forks it inside the jail, once the shares' roots are open and before the
//! machine exists (so it holds no KVM fd and no guest memory). It keeps only its roots,
//! one stream socket per share and stderr (on fds 0-2); it gets a uid of its own
//! ([`file_server_id`], so the VMM cannot signal it), the three capabilities serving
//! needs ([`super::SHARE_CAPS`]), no_new_privs, and the `virtio` seccomp list (the one
//! the in-process 9P workers have; its socket I/O is `read`/`write`/`poll`). It ends when
//! the VMM closes its sockets, and with the VMM in any case: the VMM is pid 1 of the
//! jail's pid namespace, and the file server's parent-death signal is SIGKILL.
//!
//! The VMM then unmounts the shares from a mount namespace of its own and drops every
//! capability.

use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::path::PathBuf;

use isol_sandbox::jail as sj;
use isol_sandbox::syscall::linux::LinuxSyscall;
use nix::mount::MntFlags;
use nix::sched::CloneFlags;
use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};
use nix::unistd::ForkResult;

use super::{drop_privileges_to, share_path, VmmJailError, JAIL_ID_BASE, SHARE_CAPS};
use crate::devices::virtio::p9::remote::{self, RemoteServer};
use crate::devices::virtio::p9::P9Server;
use crate::devices::virtio::RequestHandler;
use crate::seccomp::{self, ThreadClass, VmmSeccomp};

/// The file server's uid/gid for the isol process `isol_pid`: in a range of its own,
/// above the VMMs' ([`super::jail_id`]).
pub fn file_server_id(isol_pid: u32) -> u32 {
    JAIL_ID_BASE + 0x10_0000 + (isol_pid & 0xf_ffff)
}

fn spawn_err(what: &'static str) -> impl FnOnce(nix::Error) -> VmmJailError {
    move |source| VmmJailError::Spawn { what, source }
}

/// Forks the file server with `servers` and returns the VMM's handlers for them, in the
/// same order. Must run while the VMM has a single thread.
pub fn spawn(
    servers: Vec<P9Server>,
    isol_pid: u32,
    seccomp: VmmSeccomp,
) -> Result<Vec<RemoteServer>, VmmJailError> {
    let mut vmm_ends = Vec::with_capacity(servers.len());
    let mut fs_ends = Vec::with_capacity(servers.len());
    for _ in &servers {
        let (a, b) = socketpair(
            AddressFamily::Unix,
            SockType::Stream,
            None,
            SockFlag::SOCK_CLOEXEC,
        )
        .map_err(spawn_err("socketpair for the file server"))?;
        vmm_ends.push(a);
        fs_ends.push(b);
    }
    // SAFETY: the VMM is single-threaded here (the caller's contract; the privilege drop
    // in the child checks it again), and the child ends in _exit without returning.
    match unsafe { nix::unistd::fork() }.map_err(spawn_err("fork the file server"))? {
        ForkResult::Child => {
            drop(vmm_ends);
            let code = match file_server(servers, fs_ends, isol_pid, seccomp) {
                Ok(errors) => i32::from(errors > 0),
                Err(e) => {
                    eprintln!("isol: the VMM's file server cannot start: {e}");
                    isol_common::exit::EXIT_ISOL_ERROR
                }
            };
            // SAFETY: _exit ends this process at once; nothing of the VMM's frames runs.
            unsafe { libc::_exit(code) }
        }
        ForkResult::Parent { .. } => {
            drop((servers, fs_ends));
            Ok(vmm_ends.into_iter().map(RemoteServer::new).collect())
        }
    }
}

fn file_server(
    servers: Vec<P9Server>,
    conns: Vec<OwnedFd>,
    isol_pid: u32,
    seccomp: VmmSeccomp,
) -> Result<usize, VmmJailError> {
    let sys = LinuxSyscall;
    // Only stderr stays of 0-2; then only the roots and the sockets of the rest.
    for fd in [0, 1] {
        // SAFETY: dup2 onto 0 and 1 replaces isol's stdin/stdout in this process only.
        unsafe { libc::dup2(2, fd) };
    }
    let mut keep: Vec<u32> = servers
        .iter()
        .map(P9Server::root_fd)
        .chain(conns.iter().map(AsRawFd::as_raw_fd))
        .filter_map(|fd: RawFd| u32::try_from(fd).ok())
        .collect();
    keep.sort_unstable();
    sj::close_inherited_fds(&sys, &keep).map_err(VmmJailError::Jail)?;
    let id = file_server_id(isol_pid);
    drop_privileges_to(id, SHARE_CAPS)?;
    seccomp::confine(ThreadClass::Virtio, seccomp);
    let shares = servers
        .into_iter()
        .map(|s| Box::new(s) as Box<dyn RequestHandler>)
        .zip(conns)
        .collect();
    Ok(remote::serve(shares))
}

/// In the VMM, after the file server is forked: a mount namespace of its own without the
/// shares (unmounted, detached), so the VMM cannot reach them even by name.
pub fn hide_shares(count: usize) -> Result<(), VmmJailError> {
    let jail = |step: &'static str, path: PathBuf| {
        move |errno: nix::Error| {
            VmmJailError::Jail(sj::JailError {
                what: step,
                path,
                errno,
            })
        }
    };
    nix::sched::unshare(CloneFlags::CLONE_NEWNS)
        .map_err(jail("unshare(mount) to hide the shares", PathBuf::new()))?;
    nix::mount::mount(
        None::<&str>,
        "/",
        None::<&str>,
        nix::mount::MsFlags::MS_REC | nix::mount::MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .map_err(jail("make / private", "/".into()))?;
    for i in 0..count {
        let path = share_path(i);
        nix::mount::umount2(&path, MntFlags::MNT_DETACH).map_err(jail("umount", path.clone()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_file_server_ids_are_apart_from_the_vmms() {
        for pid in [1, 2, 4242, u32::MAX] {
            assert_ne!(file_server_id(pid), super::super::jail_id(pid));
            assert!(file_server_id(pid) > JAIL_ID_BASE);
        }
        assert_ne!(file_server_id(10), file_server_id(11));
    }
}
