//! Where the guest's serial console goes: a log file in the run directory, a ring buffer
//! of its last bytes (quoted in boot-failure errors), and isol's stderr with `--verbose`.
//! Never isol's stdout: the workload's output travels on the channel.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, Write};
use std::sync::{Arc, Mutex};

/// Bytes of console output kept for error messages.
const TAIL_BYTES: usize = 8 << 10;
/// Lines of console output quoted in error messages.
const TAIL_LINES: usize = 25;

#[derive(Debug)]
struct Inner {
    file: Option<File>,
    tail: VecDeque<u8>,
    verbose: bool,
}

/// A cloneable console sink (one clone goes to the machine, one stays with the backend).
#[derive(Debug, Clone)]
pub struct ConsoleLog {
    inner: Arc<Mutex<Inner>>,
}

impl ConsoleLog {
    /// Logs to `file` (if any), and to stderr when `verbose`.
    pub fn new(file: Option<File>, verbose: bool) -> ConsoleLog {
        ConsoleLog {
            inner: Arc::new(Mutex::new(Inner {
                file,
                tail: VecDeque::with_capacity(TAIL_BYTES),
                verbose,
            })),
        }
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

impl Write for ConsoleLog {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(f) = inner.file.as_mut() {
            // The log is best effort: a full disk must not stop the guest.
            let _ = f.write_all(buf);
        }
        if inner.verbose {
            let _ = io::stderr().write_all(buf);
        }
        let len = inner.tail.len();
        let over = (len + buf.len()).saturating_sub(TAIL_BYTES);
        inner.tail.drain(..over.min(len));
        let keep = &buf[buf.len().saturating_sub(TAIL_BYTES)..];
        inner.tail.extend(keep);
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
    fn test_console_tail_bounded_and_empty_case() {
        let c = ConsoleLog::new(None, false);
        assert_eq!(c.tail(), "(no console output)");
        let mut c2 = c.clone();
        c2.write_all(&vec![b'x'; 3 * TAIL_BYTES]).unwrap();
        assert_eq!(c.inner.lock().unwrap().tail.len(), TAIL_BYTES);
    }
}
