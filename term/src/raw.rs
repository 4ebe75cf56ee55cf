//! Raw mode of the caller's terminal (termios), restored on drop.

use std::os::fd::{AsFd, BorrowedFd};

use nix::sys::termios::{self, SetArg, Termios};

use crate::TermError;

/// The caller's terminal in raw mode; dropping it restores the settings saved on entry.
#[derive(Debug)]
pub struct RawMode<'a> {
    fd: BorrowedFd<'a>,
    saved: Termios,
}

impl<'a> RawMode<'a> {
    /// Saves the settings of the terminal on `fd` and switches it to raw mode
    /// (cfmakeraw: no echo, no line editing, no signal keys, no output processing, no
    /// XON/XOFF: every byte goes to the workload).
    pub fn enter(fd: BorrowedFd<'a>) -> Result<RawMode<'a>, TermError> {
        let saved = termios::tcgetattr(fd).map_err(|source| TermError::Termios {
            what: "read",
            source,
        })?;
        let mut raw = saved.clone();
        termios::cfmakeraw(&mut raw);
        termios::tcsetattr(fd, SetArg::TCSANOW, &raw).map_err(|source| TermError::Termios {
            what: "set",
            source,
        })?;
        Ok(RawMode { fd, saved })
    }

    /// Restores the saved settings now (also done on drop).
    pub fn restore(&self) -> Result<(), TermError> {
        loop {
            match termios::tcsetattr(self.fd, SetArg::TCSANOW, &self.saved) {
                Err(nix::errno::Errno::EINTR) => continue,
                r => {
                    return r.map_err(|source| TermError::Termios {
                        what: "restore",
                        source,
                    })
                }
            }
        }
    }
}

impl AsFd for RawMode<'_> {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd
    }
}

impl Drop for RawMode<'_> {
    fn drop(&mut self) {
        // Nothing better to do with a failure here: the terminal is gone or not ours.
        let _ = self.restore();
    }
}

#[cfg(test)]
mod tests {
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

    use nix::sys::termios::LocalFlags;

    use super::*;

    fn pty() -> (OwnedFd, OwnedFd) {
        let p = nix::pty::openpty(None, None).unwrap();
        (p.master, p.slave)
    }

    #[test]
    fn test_raw_mode_is_raw_and_restored_on_drop() {
        let (_m, s) = pty();
        let before = termios::tcgetattr(&s).unwrap();
        assert!(before.local_flags.contains(LocalFlags::ICANON));
        {
            let _raw = RawMode::enter(s.as_fd()).unwrap();
            let now = termios::tcgetattr(&s).unwrap();
            assert!(!now
                .local_flags
                .contains(LocalFlags::ICANON | LocalFlags::ECHO));
            assert!(!now.local_flags.contains(LocalFlags::ISIG));
        }
        let after = termios::tcgetattr(&s).unwrap();
        assert_eq!(format!("{before:?}"), format!("{after:?}"));
    }

    #[test]
    fn test_raw_mode_on_a_pipe_is_an_error() {
        let (r, _w) = nix::unistd::pipe().unwrap();
        // SAFETY: dup returns a new fd nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(libc::dup(r.as_raw_fd())) };
        assert!(RawMode::enter(fd.as_fd()).is_err());
    }
}
