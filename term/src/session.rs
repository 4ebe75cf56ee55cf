//! One `-t` session on the caller's side: the caller's terminal in raw mode, its size on
//! the workload's pty master (at start and on every [`Session::resize`], which the
//! caller's loop calls on SIGWINCH), and the [`Pump`] between them. Dropping the session
//! restores the caller's terminal.

use std::os::fd::BorrowedFd;

use crate::{require_tty, set_winsize, winsize, Pump, RawMode, TermError};

/// The caller's stdin (fd 0, never closed by isol).
fn stdin() -> BorrowedFd<'static> {
    // SAFETY: fd 0 stays open for the life of the process (isol never closes it).
    unsafe { BorrowedFd::borrow_raw(0) }
}

/// The caller's stdout (fd 1, never closed by isol).
fn stdout() -> BorrowedFd<'static> {
    // SAFETY: fd 1 stays open for the life of the process (isol never closes it).
    unsafe { BorrowedFd::borrow_raw(1) }
}

/// See the module documentation.
#[derive(Debug)]
pub struct Session<'a> {
    /// The byte pump (the caller's poll loop drives it).
    pub pump: Pump<'a>,
    master: BorrowedFd<'a>,
    _raw: RawMode<'static>,
}

impl<'a> Session<'a> {
    /// Starts a session on isol's stdin/stdout and the pty `master`.
    pub fn start(master: BorrowedFd<'a>) -> Result<Session<'a>, TermError> {
        require_tty(stdin())?;
        let raw = RawMode::enter(stdin())?;
        let s = Session {
            pump: Pump::new(Some(stdin()), stdout(), master)?,
            master,
            _raw: raw,
        };
        s.resize();
        Ok(s)
    }

    /// Copies the caller's window size to the pty (best effort: a terminal without a
    /// size keeps the pty's).
    pub fn resize(&self) {
        if let Some(ws) = winsize(stdin()) {
            let _ = set_winsize(self.master, ws);
        }
    }
}
