//! The signals isol takes while a container runs: those it forwards (SIGINT, SIGTERM,
//! SIGHUP, SIGQUIT, blocked by the CLI), and with `-t` also SIGWINCH and the signals whose
//! default action would end isol with the caller's terminal still raw.

use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};

use crate::error::ContainerError;

/// The signals isol forwards (the CLI blocks them in every thread before `prepare`).
pub const ISOL_FORWARDED: [Signal; 4] = [
    Signal::SIGINT,
    Signal::SIGTERM,
    Signal::SIGHUP,
    Signal::SIGQUIT,
];

/// With `-t`, also taken by isol's signalfd: SIGWINCH (the window size), and the signals
/// whose default action would end isol with the caller's terminal still raw (forwarded
/// like the others; the init passes on those its supervisor forwards). Blocked only once
/// the init is cloned, so the init never inherits the mask.
const TTY_TAKEN: [Signal; 11] = [
    Signal::SIGWINCH,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
    Signal::SIGALRM,
    Signal::SIGVTALRM,
    Signal::SIGPROF,
    Signal::SIGIO,
    Signal::SIGXCPU,
    Signal::SIGXFSZ,
    Signal::SIGPWR,
    Signal::SIGSTKFLT,
];

/// [`TTY_TAKEN`] as a set.
pub fn tty_taken() -> SigSet {
    let mut set = SigSet::empty();
    for s in TTY_TAKEN {
        set.add(s);
    }
    set
}

/// The signalfd of the forwarded signals, and with a terminal [`TTY_TAKEN`] too (which
/// `run` has blocked: isol is single-threaded in container mode).
pub fn forwarded_signalfd(tty: bool) -> Result<SignalFd, ContainerError> {
    let mut set = if tty { tty_taken() } else { SigSet::empty() };
    for s in ISOL_FORWARDED {
        set.add(s);
    }
    SignalFd::with_flags(&set, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK)
        .map_err(ContainerError::Signalfd)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_tty_set_holds_winch_and_the_killing_signals_not_stop_or_kill() {
        let set = tty_taken();
        for s in [Signal::SIGWINCH, Signal::SIGUSR1, Signal::SIGALRM] {
            assert!(set.contains(s), "{s}");
        }
        for s in [
            Signal::SIGKILL,
            Signal::SIGSTOP,
            Signal::SIGTTOU,
            Signal::SIGCHLD,
        ] {
            assert!(!set.contains(s), "{s}");
        }
    }
}
