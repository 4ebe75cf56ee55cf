//! The channel's shared state: what the device (on a vCPU thread), the stdin pump, the
//! signal forwarder and the watchdog (host threads) tell each other. One mutex, one
//! condition variable; nobody holds the lock while doing I/O.

use std::collections::VecDeque;
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::output::OutputQueue;

/// Most bytes of isol's stdin buffered ahead of the guest.
pub const STDIN_BUFFER: usize = 64 << 10;

/// How a run ended from the channel's point of view.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The init wrote this raw EXIT value.
    Reported(u32),
    /// The workload's timeout expired; the VM was stopped.
    TimedOut,
    /// The workload never started within the boot timeout; `ready` says whether the init
    /// at least reported in.
    BootTimedOut {
        /// The init had reported READY.
        ready: bool,
    },
}

#[derive(Debug, Default)]
pub(crate) struct State {
    pub(crate) outcome: Option<Outcome>,
    pub(crate) ready: bool,
    pub(crate) started: Option<Instant>,
    pub(crate) signal: u32,
    pub(crate) stdin: VecDeque<u8>,
    pub(crate) stdin_eof: bool,
    pub(crate) closed: bool,
    pub(crate) bad_accesses: u64,
}

/// State shared by the channel device and the host threads that serve it.
#[derive(Debug, Default)]
pub struct Channel {
    state: Mutex<State>,
    cond: Condvar,
    output: OutputQueue,
}

impl Channel {
    /// A fresh channel: nothing reported, stdin empty and open.
    pub fn new() -> Channel {
        Channel::default()
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        // A panicking holder cannot leave State inconsistent (plain fields), so a poisoned
        // lock is still usable.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn notify(&self) {
        self.cond.notify_all();
    }

    /// Records the outcome unless one is already recorded; returns whether it was first.
    pub fn set_outcome(&self, o: Outcome) -> bool {
        let mut s = self.lock();
        let first = s.outcome.is_none();
        if first {
            s.outcome = Some(o);
        }
        drop(s);
        self.notify();
        first
    }

    /// The recorded outcome, if any.
    pub fn outcome(&self) -> Option<Outcome> {
        self.lock().outcome
    }

    /// Whether the init reported READY.
    pub fn ready(&self) -> bool {
        self.lock().ready
    }

    /// Guest accesses the device ignored (wrong offset, width or direction).
    pub fn bad_accesses(&self) -> u64 {
        self.lock().bad_accesses
    }

    /// Makes `sig` pending for the workload (a later signal replaces an unread one). From
    /// now on, a stalled reader of isol's stdout no longer holds the guest back (see
    /// [`OutputQueue::signaled`]), so the workload can take the signal and end.
    pub fn set_signal(&self, sig: u32) {
        self.lock().signal = sig;
        self.output.signaled();
    }

    /// The queue of the workload's stdout and stderr bytes.
    pub fn output(&self) -> &OutputQueue {
        &self.output
    }

    /// Appends stdin bytes, waiting while the buffer is full. Returns false once the
    /// channel is closed (the run is over).
    pub fn push_stdin(&self, mut bytes: &[u8]) -> bool {
        let mut s = self.lock();
        while !bytes.is_empty() {
            if s.closed {
                return false;
            }
            let room = STDIN_BUFFER.saturating_sub(s.stdin.len());
            if room == 0 {
                s = self
                    .cond
                    .wait_timeout(s, Duration::from_millis(100))
                    .unwrap_or_else(|p| p.into_inner())
                    .0;
                continue;
            }
            let n = room.min(bytes.len());
            s.stdin.extend(&bytes[..n]);
            bytes = &bytes[n..];
        }
        !s.closed
    }

    /// Marks isol's stdin as ended.
    pub fn stdin_eof(&self) {
        self.lock().stdin_eof = true;
    }

    /// Ends the run: the host threads serving the channel return.
    pub fn close(&self) {
        self.lock().closed = true;
        self.notify();
    }

    /// Whether [`Channel::close`] was called.
    pub fn is_closed(&self) -> bool {
        self.lock().closed
    }

    /// Waits until something changes or `until` passes (for the watchdog).
    pub(crate) fn wait_until<'a>(
        &self,
        guard: MutexGuard<'a, State>,
        until: Option<Instant>,
    ) -> MutexGuard<'a, State> {
        let dur = match until {
            Some(t) => t.saturating_duration_since(Instant::now()),
            None => Duration::from_millis(500),
        };
        self.cond
            .wait_timeout(guard, dur)
            .unwrap_or_else(|p| p.into_inner())
            .0
    }
}
