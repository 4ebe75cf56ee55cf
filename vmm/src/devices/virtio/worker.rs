//! What the transport's registers and its queue worker share ([`Core`]: the device, its
//! queues, the interrupt state), and the worker thread ([`VirtioWorker`]) that serves the
//! queues when the guest's QueueNotify write fires an ioeventfd. One wake-up serves one
//! bounded pass per queue; with chains left, the worker re-arms its eventfd and yields.

use std::os::fd::{AsRawFd, BorrowedFd};
use std::sync::atomic::Ordering::SeqCst;
use std::sync::atomic::{AtomicBool, AtomicU32};
use std::sync::Arc;
use std::sync::{Mutex, MutexGuard};
use std::thread::JoinHandle;

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use virtio_queue::{Queue, QueueT};
use vm_memory::GuestMemoryMmap;
use vmm_sys_util::eventfd::EventFd;

use super::device::VirtioDevice;
use super::transport::{status, IrqTrigger, INT_CONFIG, INT_USED_RING};
use crate::devices::DebugLog;
use crate::seccomp::{ThreadClass, VmmSeccomp};

/// The device and its queues: locked while a queue is served or set up.
pub struct Work {
    /// The device type.
    pub device: Box<dyn VirtioDevice>,
    /// Its queues.
    pub queues: Vec<Queue>,
    /// Its interrupt line.
    pub irq: IrqTrigger,
}

impl std::fmt::Debug for Work {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Work")
            .field("device_id", &self.device.device_id())
            .field("queues", &self.queues)
            .finish_non_exhaustive()
    }
}

/// State shared by the register window (vCPU threads) and the worker.
pub struct Core {
    work: Mutex<Work>,
    /// InterruptStatus: read and acknowledged without waiting for the queue lock.
    pub interrupt_status: AtomicU32,
    needs_reset: AtomicBool,
    /// DRIVER_OK written and no reset since.
    live: AtomicBool,
    /// Guest memory.
    pub mem: GuestMemoryMmap,
    /// Where guest mistakes are reported.
    pub log: DebugLog,
}

impl std::fmt::Debug for Core {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Core")
            .field("interrupt_status", &self.interrupt_status)
            .field("needs_reset", &self.needs_reset)
            .field("live", &self.live)
            .finish_non_exhaustive()
    }
}

impl Core {
    /// A core for `work`, not live.
    pub fn new(work: Work, mem: GuestMemoryMmap, log: DebugLog) -> Core {
        Core {
            work: Mutex::new(work),
            interrupt_status: AtomicU32::new(0),
            needs_reset: AtomicBool::new(false),
            live: AtomicBool::new(false),
            mem,
            log,
        }
    }

    /// Locks the device and queues; a panic while serving leaves them usable (ignored
    /// poisoning: a guest must not be able to spread it to every vCPU).
    pub fn lock(&self) -> MutexGuard<'_, Work> {
        self.work.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// `DEVICE_NEEDS_RESET` if the device needs one, else 0.
    pub fn needs_reset_bit(&self) -> u32 {
        if self.needs_reset.load(SeqCst) {
            status::DEVICE_NEEDS_RESET
        } else {
            0
        }
    }

    /// Marks the device live (DRIVER_OK) or not.
    pub fn set_live(&self, live: bool) {
        self.live.store(live, SeqCst);
    }

    /// Device reset: stops serving, waits for a request in progress, resets the device and
    /// its queues, clears the interrupt and NEEDS_RESET.
    pub fn reset(&self) {
        self.set_live(false);
        let mut work = self.lock();
        work.device.reset();
        for q in &mut work.queues {
            q.reset();
        }
        self.interrupt_status.store(0, SeqCst);
        self.needs_reset.store(false, SeqCst);
    }

    /// Serves queue `only` (or every ready queue) if the device is live, one bounded pass
    /// each ([`super::queue`]); sets InterruptStatus, then interrupts, when chains were
    /// used or a ring broke. Returns whether a queue has chains left for another pass.
    pub fn serve(&self, only: Option<usize>) -> bool {
        let mut work = self.lock();
        if !self.live.load(SeqCst) {
            return false;
        }
        let mut more = false;
        let Work {
            device,
            queues,
            irq,
        } = &mut *work;
        let mut bits = 0;
        for (i, q) in queues.iter_mut().enumerate() {
            if only.is_some_and(|o| o != i) || !q.ready() {
                continue;
            }
            match device.process_queue(i, q, &self.mem) {
                Ok(served) => {
                    for e in &served.malformed {
                        self.log
                            .line(format_args!("virtio queue {i}: {e}; used with length 0"));
                    }
                    if served.used > 0 {
                        bits |= INT_USED_RING;
                    }
                    more |= served.more;
                }
                Err(e) => {
                    self.log.line(format_args!(
                        "virtio queue {i}: {e} ({}); device needs reset",
                        e.0
                    ));
                    self.needs_reset.store(true, SeqCst);
                    self.set_live(false);
                    bits |= INT_CONFIG;
                    more = false;
                    break;
                }
            }
        }
        if bits != 0 {
            self.interrupt_status.fetch_or(bits, SeqCst);
            if let Err(e) = irq.trigger() {
                self.log
                    .line(format_args!("virtio-mmio: cannot raise the interrupt: {e}"));
            }
        }
        more
    }
}

/// The thread serving a device's queues on notifies; dropping it stops and joins it.
#[derive(Debug)]
pub struct VirtioWorker {
    stop: EventFd,
    handle: Option<JoinHandle<()>>,
}

impl VirtioWorker {
    /// Starts `name`, serving `core` each time `notify` fires, until dropped; it confines
    /// itself with the virtio seccomp filter first unless `seccomp` is off.
    pub fn spawn(
        core: Arc<Core>,
        notify: EventFd,
        name: &str,
        seccomp: VmmSeccomp,
    ) -> std::io::Result<VirtioWorker> {
        let stop = EventFd::new(libc::EFD_NONBLOCK)?;
        let stop_rx = stop.try_clone()?;
        let handle = std::thread::Builder::new()
            .name(name.into())
            .spawn(move || {
                crate::seccomp::confine(ThreadClass::Virtio, seccomp);
                worker_loop(&core, &notify, &stop_rx);
            })?;
        Ok(VirtioWorker {
            stop,
            handle: Some(handle),
        })
    }
}

impl Drop for VirtioWorker {
    fn drop(&mut self) {
        // A failed write leaves a counter already non-zero: the worker sees it either way.
        let _ = self.stop.write(1);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

fn worker_loop(core: &Core, notify: &EventFd, stop: &EventFd) {
    // SAFETY: both eventfds outlive this function (borrowed for its whole run), so the
    // raw fds stay open while these borrows exist.
    let (n, s) = unsafe {
        (
            BorrowedFd::borrow_raw(notify.as_raw_fd()),
            BorrowedFd::borrow_raw(stop.as_raw_fd()),
        )
    };
    loop {
        let mut fds = [
            PollFd::new(n, PollFlags::POLLIN),
            PollFd::new(s, PollFlags::POLLIN),
        ];
        match poll(&mut fds, PollTimeout::NONE) {
            Ok(_) => {}
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => {
                core.log
                    .always(format_args!("virtio worker: poll failed ({e}); stopping"));
                return;
            }
        }
        let ready = |f: &PollFd<'_>| f.revents().is_some_and(|r| !r.is_empty());
        if ready(&fds[1]) {
            return;
        }
        if ready(&fds[0]) {
            // Non-blocking read resets the counter; EAGAIN means another pass took it.
            let _ = notify.read();
            if core.serve(None) {
                // Chains left at the pass's budget: re-arm and yield, so the stop request,
                // register accesses and resets (which wait for the queue lock) come first.
                let _ = notify.write(1);
                std::thread::yield_now();
            }
        }
    }
}
