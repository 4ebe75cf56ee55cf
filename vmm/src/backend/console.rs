//! Where the guest's serial console goes: a log file in the run directory, a ring buffer
//! of its last bytes (quoted in boot-failure errors), and isol's stderr with `--verbose`.
//! Never isol's stdout: the workload's output travels on the channel.
//!
//! The guest decides how much it prints, so the log and the stderr copy are capped: a
//! token bucket of [`LOG_BURST`] bytes refilled at [`LOG_RATE`] bytes per second, and
//! [`LOG_MAX`] bytes in all for the file (the run directory is usually on a tmpfs such as
//! /run). What goes over is dropped, with one notice; the in-memory tail always follows
//! the console, so an error still quotes its last lines. The stderr copy is written by
//! a thread of its own through a bounded queue that drops when full: a stalled stderr
//! reader never blocks the vCPU that prints.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, Write};
use std::sync::mpsc::{sync_channel, SyncSender};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// Bytes of console output kept for error messages.
const TAIL_BYTES: usize = 8 << 10;
/// Lines of console output quoted in error messages.
const TAIL_LINES: usize = 25;
/// Console bytes logged at once before the rate applies (a whole verbose boot fits).
pub const LOG_BURST: u64 = 256 << 10;
/// Console bytes logged per second after the burst.
pub const LOG_RATE: u64 = 16 << 10;
/// Most bytes the log file ever holds.
pub const LOG_MAX: u64 = 1 << 20;
/// Chunks queued for the stderr copy before it drops.
const STDERR_QUEUE: usize = 256;
/// Written once, when the cap first drops output.
const CAPPED_NOTICE: &[u8] =
    b"\n[isol-vmm] console output over the log's cap (256 KiB, then 16 KiB/s, 1 MiB in all): dropped from here on\n";

/// A token bucket: `LOG_BURST` bytes, refilled at `LOG_RATE` per second.
#[derive(Debug)]
struct Bucket {
    tokens: f64,
    last: Instant,
}

impl Bucket {
    fn new(now: Instant) -> Bucket {
        Bucket {
            tokens: LOG_BURST as f64,
            last: now,
        }
    }

    /// How many of `want` bytes may pass at `now`; takes them.
    fn take(&mut self, want: usize, now: Instant) -> usize {
        let dt = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + dt * LOG_RATE as f64).min(LOG_BURST as f64);
        // Whole tokens only; at most LOG_BURST, so the cast cannot truncate.
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let n = (self.tokens.floor() as usize).min(want);
        self.tokens -= n as f64;
        n
    }
}

#[derive(Debug)]
struct Inner {
    file: Option<File>,
    file_bytes: u64,
    tail: VecDeque<u8>,
    stderr: Option<SyncSender<Vec<u8>>>,
    bucket: Bucket,
    dropped: u64,
}

/// A cloneable console sink (one clone goes to the machine, one stays with the backend).
#[derive(Debug, Clone)]
pub struct ConsoleLog {
    inner: Arc<Mutex<Inner>>,
}

impl ConsoleLog {
    /// Logs to `file` (if any), and to stderr when `verbose`.
    pub fn new(file: Option<File>, verbose: bool) -> ConsoleLog {
        let stderr = verbose
            .then(|| spawn_copy(Box::new(io::stderr())))
            .flatten();
        ConsoleLog::with_sinks(file, stderr, Instant::now())
    }

    /// Starts the `--verbose` copy to stderr later than [`ConsoleLog::new`] would (its
    /// thread must start after the jailed VMM dropped its privileges).
    pub fn copy_to_stderr(&self) {
        let tx = spawn_copy(Box::new(io::stderr()));
        self.inner.lock().unwrap_or_else(|p| p.into_inner()).stderr = tx;
    }

    fn with_sinks(
        file: Option<File>,
        stderr: Option<SyncSender<Vec<u8>>>,
        now: Instant,
    ) -> ConsoleLog {
        ConsoleLog {
            inner: Arc::new(Mutex::new(Inner {
                file,
                file_bytes: 0,
                tail: VecDeque::with_capacity(TAIL_BYTES),
                stderr,
                bucket: Bucket::new(now),
                dropped: 0,
            })),
        }
    }

    /// Console bytes the cap dropped (from the file and the stderr copy).
    pub fn dropped(&self) -> u64 {
        self.inner.lock().unwrap_or_else(|p| p.into_inner()).dropped
    }

    /// Takes `buf` as written at `now`.
    fn write_at(&self, buf: &[u8], now: Instant) {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let inner = &mut *inner;
        let pass = inner.bucket.take(buf.len(), now);
        if pass < buf.len() && inner.dropped == 0 {
            inner.log(CAPPED_NOTICE);
        }
        inner.dropped += (buf.len() - pass) as u64;
        inner.log(&buf[..pass]);
        let len = inner.tail.len();
        let over = (len + buf.len()).saturating_sub(TAIL_BYTES);
        inner.tail.drain(..over.min(len));
        let keep = &buf[buf.len().saturating_sub(TAIL_BYTES)..];
        inner.tail.extend(keep);
    }

    /// The last lines of the console, for an error message ("(no console output)" if none).
    pub fn tail(&self) -> String {
        let inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let bytes: Vec<u8> = inner.tail.iter().copied().collect();
        let text = String::from_utf8_lossy(&bytes).replace('\r', "");
        let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
        if lines.is_empty() {
            return "(no console output)".to_string();
        }
        let start = lines.len().saturating_sub(TAIL_LINES);
        lines[start..]
            .iter()
            .map(|l| format!("  | {l}"))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl Inner {
    /// Writes `bytes` (already within the rate) to the file, up to [`LOG_MAX`], and to
    /// the stderr copy. Both are best effort: a full disk or a stalled stderr must not
    /// stop the guest.
    fn log(&mut self, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        if let Some(f) = self.file.as_mut() {
            let room = LOG_MAX.saturating_sub(self.file_bytes);
            let n = usize::try_from(room).unwrap_or(usize::MAX).min(bytes.len());
            if f.write_all(&bytes[..n]).is_ok() {
                self.file_bytes += n as u64;
            }
        }
        if let Some(tx) = &self.stderr {
            let _ = tx.try_send(bytes.to_vec());
        }
    }
}

/// A thread copying chunks to `sink` from a bounded queue (`None` if it cannot start).
fn spawn_copy(mut sink: Box<dyn Write + Send>) -> Option<SyncSender<Vec<u8>>> {
    let (tx, rx) = sync_channel::<Vec<u8>>(STDERR_QUEUE);
    std::thread::Builder::new()
        .name("isol-console".into())
        .spawn(move || {
            for chunk in rx {
                let _ = sink.write_all(&chunk);
            }
        })
        .ok()?;
    Some(tx)
}

impl Write for ConsoleLog {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.write_at(buf, Instant::now());
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_console_tail_keeps_last_lines_without_cr() {
        let mut c = ConsoleLog::new(None, false);
        for i in 0..100 {
            write!(c, "line {i}\r\n").unwrap();
        }
        let t = c.tail();
        assert!(t.ends_with("  | line 99"), "{t}");
        assert!(!t.contains("line 74\n"));
        assert_eq!(t.lines().count(), TAIL_LINES);
    }

    #[test]
    fn test_console_cap_burst_then_rate_then_total() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("console.log");
        let t0 = Instant::now();
        let (tx, rx) = sync_channel(1 << 16);
        let c = ConsoleLog::with_sinks(Some(File::create(&path).unwrap()), Some(tx), t0);
        let chunk = vec![b'k'; 4096];
        // An endless writer at t0: only the burst passes (plus the notice).
        for _ in 0..1000 {
            c.write_at(&chunk, t0);
        }
        let notice = CAPPED_NOTICE.len() as u64;
        let size = || std::fs::metadata(&path).unwrap().len();
        assert_eq!(size(), LOG_BURST + notice);
        assert_eq!(c.dropped(), 1000 * 4096 - LOG_BURST);
        // Ten seconds later: ten seconds' worth more.
        for _ in 0..1000 {
            c.write_at(&chunk, t0 + std::time::Duration::from_secs(10));
        }
        assert_eq!(size(), LOG_BURST + notice + 10 * LOG_RATE);
        // An hour of flooding: the file stops at LOG_MAX.
        for s in 0..3600 {
            c.write_at(&chunk, t0 + std::time::Duration::from_secs(11 + s));
        }
        assert_eq!(size(), LOG_MAX);
        // The stderr copy got what the file got, before the total cap.
        let copied: usize = rx.try_iter().map(|v| v.len()).sum();
        assert!(copied as u64 >= LOG_MAX, "{copied}");
        // The tail still follows the console.
        c.write_at(b"\nlast words\n", t0 + std::time::Duration::from_secs(5000));
        assert!(c.tail().ends_with("  | last words"), "{}", c.tail());
    }

    #[test]
    fn test_console_stalled_stderr_copy_never_blocks() {
        let (tx, _rx) = sync_channel(1); // never received from
        let c = ConsoleLog::with_sinks(None, Some(tx), Instant::now());
        for _ in 0..100 {
            c.write_at(b"x", Instant::now());
        }
        assert!(c.tail().contains('x'));
    }

    #[test]
    fn test_console_tail_bounded_and_empty_case() {
        let c = ConsoleLog::new(None, false);
        assert_eq!(c.tail(), "(no console output)");
        let mut c2 = c.clone();
        c2.write_all(&vec![b'x'; 3 * TAIL_BYTES]).unwrap();
        assert_eq!(c.inner.lock().unwrap().tail.len(), TAIL_BYTES);
    }
}
