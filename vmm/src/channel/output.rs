//! The workload's stdout and stderr on their way from the channel device (a vCPU thread)
//! to isol's fds 1 and 2, through a bounded queue and one writer thread.
//!
//! A vCPU never writes to isol's stdio itself: a reader that stops reading (a stalled
//! pipe, a pager) would block it inside `write(2)`, where neither `--timeout`, nor a
//! signal, nor the boot watchdog could end the VM. The device queues the bytes instead;
//! when [`QUEUE_BYTES`] are already waiting it waits too (backpressure, as a pipe gives
//! a container's workload), but in slices of [`WAIT_SLICE`], giving up when the caller's
//! `give_up` says so (the machine is stopping) or when a forwarded signal found the reader
//! stalled for [`STALL_GRACE`] (the bytes are then dropped, so the guest can take the
//! signal and end). Bytes stay in order per stream and across streams.

use crate::seccomp::{self, ThreadClass, VmmSeccomp};
use std::collections::VecDeque;
use std::io::Write;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Most bytes queued for the writer before the device waits.
pub const QUEUE_BYTES: usize = 256 << 10;
/// How often a waiting device looks at `give_up` and the stall state.
pub const WAIT_SLICE: Duration = Duration::from_millis(50);
/// How long the writer must have made no progress, after a forwarded signal, before
/// queued-for bytes are dropped.
pub const STALL_GRACE: Duration = Duration::from_secs(1);

/// Which of isol's fds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    /// fd 1.
    Stdout,
    /// fd 2.
    Stderr,
}

#[derive(Debug)]
struct Queue {
    chunks: VecDeque<(Stream, Vec<u8>)>,
    bytes: usize,
    /// The writer holds a chunk it has not finished writing.
    writing: bool,
    /// When the writer last took or finished a chunk (or the queue was made).
    progress: Instant,
    /// The last forwarded signal arrived at this time.
    signaled: Option<Instant>,
    /// Bytes dropped because the reader was stalled or the run was ending.
    dropped: u64,
    closed: bool,
}

impl Queue {
    /// A signal was forwarded and the writer has been stuck for [`STALL_GRACE`].
    fn stalled_after_signal(&self) -> bool {
        self.signaled.is_some() && self.writing && self.progress.elapsed() >= STALL_GRACE
    }
}

#[derive(Debug)]
struct Shared {
    queue: Mutex<Queue>,
    cond: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The producer side, held by the channel device; cheap to clone.
#[derive(Debug, Clone)]
pub struct OutputQueue {
    shared: Arc<Shared>,
}

/// The writer thread and its queue; [`Output::finish`] ends it.
#[derive(Debug)]
pub struct Output {
    queue: OutputQueue,
    thread: Option<JoinHandle<()>>,
}

/// A sink for one stream.
pub type Sink = Box<dyn Write + Send>;

impl Output {
    /// Starts the writer thread of `queue` on these sinks, unconfined (tests).
    pub fn spawn(queue: OutputQueue, stdout: Sink, stderr: Sink) -> std::io::Result<Output> {
        Output::spawn_confined(queue, stdout, stderr, VmmSeccomp::Off)
    }

    /// Starts the writer thread of `queue` on these sinks, under the host threads'
    /// seccomp filter unless `seccomp` is off.
    pub fn spawn_confined(
        queue: OutputQueue,
        stdout: Sink,
        stderr: Sink,
        seccomp: VmmSeccomp,
    ) -> std::io::Result<Output> {
        let s = queue.shared.clone();
        let thread = std::thread::Builder::new()
            .name("isol-output".into())
            .spawn(move || {
                seccomp::confine(ThreadClass::Host, seccomp);
                writer_loop(&s, stdout, stderr)
            })?;
        Ok(Output {
            queue,
            thread: Some(thread),
        })
    }

    /// The producer side.
    pub fn queue(&self) -> OutputQueue {
        self.queue.clone()
    }

    /// Ends the writer: waits until everything queued is written, or `give_up` returns
    /// true (polled every [`WAIT_SLICE`]), or `limit` passes with no progress, or a
    /// forwarded signal found the writer stuck (as for [`OutputQueue::push`]). What is
    /// still queued then is dropped; a writer blocked in `write(2)` is left behind (it
    /// dies with the process). Returns whether everything was written.
    pub fn finish(mut self, limit: Option<Duration>, give_up: &dyn Fn() -> bool) -> bool {
        let shared = &self.queue.shared;
        let (done, mut q) = loop {
            // Asked with the queue unlocked: `give_up` may look at the queue itself
            // (`signaled_since`), and std's mutex is not reentrant.
            let quit = give_up();
            let q = shared.lock();
            if q.chunks.is_empty() && !q.writing {
                break (true, q);
            }
            let stalled = limit.is_some_and(|l| q.progress.elapsed() >= l);
            if quit || stalled || q.stalled_after_signal() {
                break (false, q);
            }
            drop(shared.cond.wait_timeout(q, WAIT_SLICE));
        };
        q.dropped += q.bytes as u64;
        q.chunks.clear();
        q.bytes = 0;
        q.closed = true;
        let writing = q.writing;
        drop(q);
        shared.cond.notify_all();
        if let Some(t) = self.thread.take() {
            if !writing {
                let _ = t.join();
            }
        }
        done
    }
}

impl Default for OutputQueue {
    fn default() -> Self {
        OutputQueue::new()
    }
}

impl OutputQueue {
    /// An empty queue; [`Output::spawn`] starts its writer.
    pub fn new() -> OutputQueue {
        OutputQueue {
            shared: Arc::new(Shared {
                queue: Mutex::new(Queue {
                    chunks: VecDeque::new(),
                    bytes: 0,
                    writing: false,
                    progress: Instant::now(),
                    signaled: None,
                    dropped: 0,
                    closed: false,
                }),
                cond: Condvar::new(),
            }),
        }
    }

    /// Queues `data` for `stream`, waiting while the queue is full (see the module doc).
    /// Returns false when the bytes were dropped.
    pub fn push(&self, stream: Stream, data: &[u8], give_up: &dyn Fn() -> bool) -> bool {
        if data.is_empty() {
            return true;
        }
        let shared = &self.shared;
        let mut quit = false;
        let mut q = loop {
            let mut q = shared.lock();
            if q.closed {
                return false;
            }
            if q.bytes == 0 || q.bytes + data.len() <= QUEUE_BYTES {
                break q;
            }
            if quit || q.stalled_after_signal() {
                q.dropped += data.len() as u64;
                return false;
            }
            drop(shared.cond.wait_timeout(q, WAIT_SLICE));
            // Unlocked, as in `Output::finish`.
            quit = give_up();
        };
        q.bytes += data.len();
        q.chunks.push_back((stream, data.to_vec()));
        drop(q);
        shared.cond.notify_all();
        true
    }

    /// A signal was forwarded to the workload: from now on a stalled reader makes
    /// waiting pushes drop their bytes (after [`STALL_GRACE`] without progress).
    pub fn signaled(&self) {
        let mut q = self.shared.lock();
        q.signaled = Some(Instant::now());
        drop(q);
        self.shared.cond.notify_all();
    }

    /// Whether a signal was forwarded at or after `t`.
    pub fn signaled_since(&self, t: Instant) -> bool {
        self.shared.lock().signaled.is_some_and(|s| s >= t)
    }

    /// Bytes queued and not yet written.
    pub fn pending(&self) -> usize {
        self.shared.lock().bytes
    }

    /// What is queued for `stream`, in order (for tests without a writer).
    #[cfg(test)]
    pub(crate) fn queued(&self, stream: Stream) -> Vec<u8> {
        let q = self.shared.lock();
        let chunks = q.chunks.iter().filter(|(s, _)| *s == stream);
        chunks.flat_map(|(_, c)| c.iter().copied()).collect()
    }

    /// Bytes dropped so far.
    pub fn dropped(&self) -> u64 {
        self.shared.lock().dropped
    }
}

fn writer_loop(shared: &Shared, mut stdout: Sink, mut stderr: Sink) {
    // A sink that failed (e.g. a closed pipe) drops its later bytes, as a workload
    // writing to a closed pipe loses them; the other stream goes on.
    let mut ok = [true, true];
    loop {
        let mut q = shared.lock();
        let (stream, chunk) = loop {
            if let Some(c) = q.chunks.pop_front() {
                break c;
            }
            if q.closed {
                return;
            }
            q = shared.cond.wait(q).unwrap_or_else(|p| p.into_inner());
        };
        q.writing = true;
        q.progress = Instant::now();
        drop(q);
        let (sink, i) = match stream {
            Stream::Stdout => (&mut stdout, 0),
            Stream::Stderr => (&mut stderr, 1),
        };
        ok[i] = ok[i] && sink.write_all(&chunk).and_then(|()| sink.flush()).is_ok();
        let mut q = shared.lock();
        q.writing = false;
        q.bytes = q.bytes.saturating_sub(chunk.len());
        q.progress = Instant::now();
        drop(q);
        shared.cond.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};

    use super::*;

    /// A sink that blocks every write until `open` is set; records what it got.
    #[derive(Clone, Default)]
    struct Gate {
        open: Arc<AtomicBool>,
        got: Arc<Mutex<Vec<u8>>>,
    }
    impl Write for Gate {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            while !self.open.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(5));
            }
            self.got.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn open_gate() -> Gate {
        let g = Gate::default();
        g.open.store(true, Ordering::SeqCst);
        g
    }

    #[test]
    fn test_output_in_order_and_drained_on_finish() {
        let (out, err) = (open_gate(), open_gate());
        let o = Output::spawn(
            OutputQueue::new(),
            Box::new(out.clone()),
            Box::new(err.clone()),
        )
        .unwrap();
        let q = o.queue();
        for i in 0..100u8 {
            assert!(q.push(Stream::Stdout, &[i; 1000], &|| false));
        }
        assert!(q.push(Stream::Stderr, b"err", &|| false));
        assert!(o.finish(None, &|| false));
        let want: Vec<u8> = (0..100u8).flat_map(|i| [i; 1000]).collect();
        assert_eq!(*out.got.lock().unwrap(), want);
        assert_eq!(*err.got.lock().unwrap(), b"err");
    }

    #[test]
    fn test_output_stalled_reader_push_gives_up_when_told() {
        let gate = Gate::default(); // never opens: a reader that never reads
        let o = Output::spawn(
            OutputQueue::new(),
            Box::new(gate.clone()),
            Box::new(open_gate()),
        )
        .unwrap();
        let q = o.queue();
        let mut queued = 0;
        while q.pending() + 4096 <= QUEUE_BYTES {
            assert!(q.push(Stream::Stdout, &[1; 4096], &|| false));
            queued += 4096;
        }
        assert!(queued >= QUEUE_BYTES - 4096);
        // Full: the next push waits, and returns (dropping) once `give_up` says so.
        let stop = Arc::new(AtomicBool::new(false));
        let s2 = stop.clone();
        let t = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(200));
            s2.store(true, Ordering::SeqCst);
        });
        assert!(!q.push(Stream::Stdout, &[2; 4096], &|| stop.load(Ordering::SeqCst)));
        t.join().unwrap();
        assert_eq!(q.dropped(), 4096);
        // finish() does not wait for a writer stuck in write(2) beyond its limit.
        assert!(!o.finish(Some(Duration::from_millis(100)), &|| false));
    }

    #[test]
    fn test_output_signal_with_stalled_reader_drops_instead_of_waiting() {
        let gate = Gate::default();
        let o = Output::spawn(
            OutputQueue::new(),
            Box::new(gate.clone()),
            Box::new(open_gate()),
        )
        .unwrap();
        let q = o.queue();
        while q.pending() + 65536 <= QUEUE_BYTES {
            q.push(Stream::Stdout, &[1; 65536], &|| false);
        }
        q.signaled();
        // Never told to give up: only the signal plus the stall end the wait.
        assert!(!q.push(Stream::Stdout, &[2; 65536], &|| false));
        assert!(!q.push(Stream::Stdout, &[3; 65536], &|| false));
        // Nor does the final drain wait for the stuck writer (the run ending after the
        // workload took the signal): it would wait forever before.
        assert!(!o.finish(None, &|| false));
    }

    #[test]
    fn test_output_finish_may_ask_the_queue_whether_to_give_up() {
        // The VM backend's `give_up` is `signaled_since`, which locks the queue: with a
        // writer stuck in write(2) and fresh progress, finish() deadlocked on itself.
        let gate = Gate::default();
        let o = Output::spawn(
            OutputQueue::new(),
            Box::new(gate.clone()),
            Box::new(open_gate()),
        )
        .unwrap();
        let q = o.queue();
        while q.pending() + 4096 <= QUEUE_BYTES {
            assert!(q.push(Stream::Stdout, &[1; 4096], &|| false));
        }
        let (tx, rx) = std::sync::mpsc::channel();
        let q2 = q.clone();
        std::thread::spawn(move || {
            // push() on a full queue asks the same way.
            let full = q2.push(Stream::Stdout, &[2; 4096], &|| q2.pending() > 0);
            let start = Instant::now();
            let asked = || q2.signaled_since(start);
            let _ = tx.send((full, o.finish(Some(Duration::from_millis(300)), &asked)));
        });
        // A watchdog, not a timing assertion: a deadlock never answers.
        let done = rx.recv_timeout(Duration::from_secs(60));
        assert_eq!(done, Ok((false, false)), "push() or finish() deadlocked");
    }

    #[test]
    fn test_output_slow_reader_gets_everything() {
        let gate = Gate::default();
        let o = Output::spawn(
            OutputQueue::new(),
            Box::new(gate.clone()),
            Box::new(open_gate()),
        )
        .unwrap();
        let q = o.queue();
        let g2 = gate.clone();
        let t = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(300));
            g2.open.store(true, Ordering::SeqCst);
        });
        // More than the queue holds: the pushes wait for the reader, never drop.
        for _ in 0..8 {
            assert!(q.push(Stream::Stdout, &[7; 65536], &|| false));
        }
        t.join().unwrap();
        assert!(o.finish(None, &|| false));
        assert_eq!(gate.got.lock().unwrap().len(), 8 * 65536);
        assert_eq!(q.dropped(), 0);
    }
}
