//! Ending a running machine from any thread: [`MachineControl`] records the first reason the
//! VM ends for and wakes `Machine::run`, which then kicks every vCPU out of `KVM_RUN`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Instant;

/// Why a machine stopped running.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MachineExit {
    /// The guest asked for a reset (i8042 reset command, or KVM's reset system event).
    Reset,
    /// A vCPU triple-faulted (`KVM_EXIT_SHUTDOWN`).
    TripleFault,
    /// [`MachineControl::stop`] was called (by the host or by a device).
    Stopped,
    /// The deadline given to `Machine::run` passed first.
    DeadlineExpired,
    /// The guest could not go on: KVM internal error, failed entry, unexpected exit.
    /// Details (registers, KVM's data) are in the console log, not here.
    Crashed {
        /// One line for the user.
        reason: String,
    },
}

#[derive(Debug, Default)]
struct Inner {
    exit: Mutex<Option<MachineExit>>,
    changed: Condvar,
    stopping: AtomicBool,
}

/// A handle that ends the machine it came from; `Clone + Send + Sync`.
#[derive(Debug, Clone, Default)]
pub struct MachineControl {
    inner: Arc<Inner>,
}

impl MachineControl {
    /// A handle for a new machine.
    pub fn new() -> Self {
        Self::default()
    }

    /// Ends the machine: `run()` returns [`MachineExit::Stopped`] unless it already ended
    /// for another reason. Returns at once; safe to call from any thread, any number of times.
    pub fn stop(&self) {
        self.finish(MachineExit::Stopped);
    }

    /// Ends the machine for `exit`; the first reason recorded wins.
    pub fn finish(&self, exit: MachineExit) {
        let mut slot = self.inner.exit.lock().unwrap_or_else(|e| e.into_inner());
        if slot.is_none() {
            *slot = Some(exit);
        }
        self.inner.stopping.store(true, Ordering::SeqCst);
        self.inner.changed.notify_all();
    }

    /// The reason the machine ended, once known.
    pub fn exit(&self) -> Option<MachineExit> {
        self.inner
            .exit
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// True once the machine is ending: vCPU loops check this before every `KVM_RUN`.
    pub fn is_stopping(&self) -> bool {
        self.inner.stopping.load(Ordering::SeqCst)
    }

    /// Blocks until some thread calls [`MachineControl::finish`] or `deadline` passes
    /// (then the exit is [`MachineExit::DeadlineExpired`]). Marks the machine as stopping.
    pub(crate) fn wait(&self, deadline: Option<Instant>) -> MachineExit {
        let mut slot = self.inner.exit.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if let Some(exit) = slot.as_ref() {
                return exit.clone();
            }
            match deadline {
                None => {
                    slot = self
                        .inner
                        .changed
                        .wait(slot)
                        .unwrap_or_else(|e| e.into_inner());
                }
                Some(d) => {
                    let now = Instant::now();
                    if now >= d {
                        *slot = Some(MachineExit::DeadlineExpired);
                        self.inner.stopping.store(true, Ordering::SeqCst);
                        continue;
                    }
                    slot = self
                        .inner
                        .changed
                        .wait_timeout(slot, d - now)
                        .unwrap_or_else(|e| e.into_inner())
                        .0;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn test_control_first_exit_wins() {
        let c = MachineControl::new();
        c.finish(MachineExit::Reset);
        c.stop();
        assert!(c.is_stopping());
        assert_eq!(c.wait(None), MachineExit::Reset);
    }

    #[test]
    fn test_control_deadline_expires() {
        let c = MachineControl::new();
        let exit = c.wait(Some(Instant::now() + Duration::from_millis(20)));
        assert_eq!(exit, MachineExit::DeadlineExpired);
        assert!(c.is_stopping());
    }

    #[test]
    fn test_control_stop_from_other_thread_wakes_waiter() {
        let c = MachineControl::new();
        let c2 = c.clone();
        let t = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(10));
            c2.stop();
        });
        let exit = c.wait(Some(Instant::now() + Duration::from_secs(10)));
        t.join().unwrap();
        assert_eq!(exit, MachineExit::Stopped);
    }
}
