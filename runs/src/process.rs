//! The few process primitives a detached run needs that std and nix do not offer
//! safely: the double fork that detaches the supervisor, closing inherited fds, and
//! pidfds (`pidfd_open`, `pidfd_send_signal`), which name a process for good so that a
//! recycled pid is never signalled or joined. The only `unsafe` of this crate.

use std::os::fd::{FromRawFd, OwnedFd, RawFd};

use nix::errno::Errno;
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::ForkResult;

/// Where the caller of [`detach`] continues.
#[derive(Debug)]
pub enum Detached {
    /// In the original process, once the intermediate child has exited.
    Caller,
    /// In the detached grandchild: its own session, no controlling terminal, a child of
    /// init (or of the nearest subreaper), not of the caller.
    Daemon,
}

/// Double fork with `setsid` between: the grandchild leads no session (it can never
/// acquire a controlling terminal) and outlives the caller.
pub fn detach() -> nix::Result<Detached> {
    // SAFETY: the CLI is single-threaded when it detaches (no lock can be held by another
    // thread in the copy); the intermediate child only calls setsid, fork and _exit.
    match unsafe { nix::unistd::fork() }? {
        ForkResult::Parent { child } => loop {
            match waitpid(child, None) {
                Err(Errno::EINTR) => continue,
                Ok(WaitStatus::Exited(_, 0)) => return Ok(Detached::Caller),
                Ok(_) => return Err(Errno::ECHILD),
                Err(e) => return Err(e),
            }
        },
        ForkResult::Child => {
            let code = match nix::unistd::setsid().and_then(|_| {
                // SAFETY: as above: single-threaded copy; the parent side only _exits.
                unsafe { nix::unistd::fork() }
            }) {
                Ok(ForkResult::Child) => return Ok(Detached::Daemon),
                Ok(ForkResult::Parent { .. }) => 0,
                Err(_) => 1,
            };
            // SAFETY: _exit(2) takes no pointers and never returns; no destructor of
            // the caller's state runs in this copy.
            unsafe { libc::_exit(code) }
        }
    }
}

/// Closes every fd from 3 up except those in `keep`.
pub fn close_fds_except(keep: &[RawFd]) {
    let mut keep: Vec<RawFd> = keep.iter().copied().filter(|&fd| fd > 2).collect();
    keep.sort_unstable();
    let mut from: u32 = 3;
    for fd in keep {
        let Ok(fd) = u32::try_from(fd) else { continue };
        if fd > from {
            close_range(from, fd - 1);
        }
        from = fd + 1;
    }
    close_range(from, u32::MAX);
}

fn close_range(first: u32, last: u32) {
    // SAFETY: close_range(2) takes two integers and flags; it closes fds of this
    // process only, and the caller keeps no other handle to those it closes.
    unsafe { libc::syscall(libc::SYS_close_range, first, last, 0u32) };
}

/// A pidfd for `pid` (`O_CLOEXEC`).
pub fn pidfd_open(pid: i32) -> nix::Result<OwnedFd> {
    // SAFETY: pidfd_open(2) takes a pid and flags, returns a new fd or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0u32) };
    let fd = Errno::result(fd)?;
    let fd = RawFd::try_from(fd).map_err(|_| Errno::EBADF)?;
    // SAFETY: the kernel just returned this fd; nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Sends `sig` to the process of `pidfd`.
pub fn pidfd_send_signal(pidfd: &OwnedFd, sig: i32) -> nix::Result<()> {
    use std::os::fd::AsRawFd;
    // SAFETY: pidfd_send_signal(2) with a live fd, a signal number, a null siginfo
    // (the kernel fills in a kill(2)-like one) and no flags.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            sig,
            std::ptr::null::<libc::siginfo_t>(),
            0u32,
        )
    };
    Errno::result(rc).map(drop)
}

/// Whether the process of `pidfd` has ended (its pidfd is readable).
pub fn pidfd_exited(pidfd: &OwnedFd, timeout_ms: i32) -> bool {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    use std::os::fd::AsFd;
    let mut fds = [PollFd::new(pidfd.as_fd(), PollFlags::POLLIN)];
    let t = PollTimeout::try_from(timeout_ms).unwrap_or(PollTimeout::NONE);
    matches!(poll(&mut fds, t), Ok(n) if n > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_pidfd_of_a_child_signal_and_exit() {
        let mut child = std::process::Command::new("sleep")
            .arg("100")
            .spawn()
            .unwrap();
        let fd = pidfd_open(i32::try_from(child.id()).unwrap()).unwrap();
        assert!(!pidfd_exited(&fd, 0));
        pidfd_send_signal(&fd, libc::SIGKILL).unwrap();
        assert!(pidfd_exited(&fd, -1));
        let st = child.wait().unwrap();
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(st.signal(), Some(libc::SIGKILL));
        assert_eq!(pidfd_send_signal(&fd, 0), Err(Errno::ESRCH));
    }

    #[test]
    fn test_pidfd_open_of_no_process_fails() {
        assert!(pidfd_open(-5).is_err());
    }
}
