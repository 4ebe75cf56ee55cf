//! isol-term: the caller's side of `isol run -t`, the same in both modes.
//!
//! - [`RawMode`]: puts the caller's terminal in raw mode (cfmakeraw) and restores the
//!   saved settings when dropped, so every way out of the run (exit, error, panic
//!   unwinding) restores them. Ctrl-C, Ctrl-Z and Ctrl-D then travel as bytes to the
//!   workload's pty, whose line discipline turns them into signals or EOF there, as a
//!   local shell would see them.
//! - [`winsize`] / [`set_winsize`]: TIOCGWINSZ on the caller's terminal, TIOCSWINSZ on
//!   the workload's pty master (at start and on SIGWINCH).
//! - [`Pump`]: copies bytes caller stdin -> pty master and master -> caller stdout
//!   through bounded buffers, driven by the caller's poll loop (never blocking on the
//!   master, never setting O_NONBLOCK on the caller's own files, which it shares with
//!   the caller's shell).
//!
//! The backend owns the pty (container: in the container's devpts; VM: in the guest);
//! this crate never allocates one on the host.
#![warn(missing_docs)]

mod pump;
mod raw;
mod session;
mod winsize;

use std::os::fd::AsFd;

pub use pump::{Pump, Slot};
pub use raw::RawMode;
pub use session::Session;
pub use winsize::{set_winsize, winsize, Winsize};

/// Errors of the caller-side terminal handling.
#[derive(Debug, thiserror::Error)]
pub enum TermError {
    /// `-t` was asked for but isol's stdin is not a terminal.
    #[error(
        "-t/--tty needs a terminal on isol's stdin, and stdin is not one (run isol from a \
         terminal, or drop -t: without it the workload's streams are pipes)"
    )]
    NotATerminal,
    /// tcgetattr/tcsetattr failed.
    #[error("Cannot {what} the caller's terminal settings")]
    Termios {
        /// get or set.
        what: &'static str,
        /// The errno.
        #[source]
        source: nix::Error,
    },
    /// A read or write of the byte pump failed.
    #[error("Cannot {what}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The errno.
        #[source]
        source: nix::Error,
    },
}

/// Fails with [`TermError::NotATerminal`] unless `fd` is a terminal.
pub fn require_tty(fd: impl AsFd) -> Result<(), TermError> {
    if nix::unistd::isatty(fd).unwrap_or(false) {
        Ok(())
    } else {
        Err(TermError::NotATerminal)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_require_tty_refuses_a_pipe() {
        let (r, _w) = nix::unistd::pipe().unwrap();
        assert!(matches!(require_tty(&r), Err(TermError::NotATerminal)));
        assert!(TermError::NotATerminal.to_string().contains("-t/--tty"));
    }
}
