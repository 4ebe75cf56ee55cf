//! The VMM's debug log: unknown ports, MMIO and crash details, rate-limited, written to the
//! console log (or a sink the caller picks), never to isol's own stdout/stderr.

use std::io::Write;
use std::sync::{Arc, Mutex};

/// Lines logged per machine before the log goes quiet (one notice says so).
pub const LOG_LINE_LIMIT: u32 = 64;

/// A `Write` shared by several owners (serial output and the debug log use one console).
#[derive(Clone)]
pub struct SharedWriter(Arc<Mutex<Box<dyn Write + Send>>>);

impl std::fmt::Debug for SharedWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SharedWriter")
    }
}

impl SharedWriter {
    /// Shares `w`.
    pub fn new(w: Box<dyn Write + Send>) -> Self {
        SharedWriter(Arc::new(Mutex::new(w)))
    }
}

impl Write for SharedWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).write(buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).flush()
    }
}

struct State {
    sink: Box<dyn Write + Send>,
    lines: u32,
}

/// Rate-limited debug log; cheap to clone.
#[derive(Clone)]
pub struct DebugLog(Arc<Mutex<State>>);

impl std::fmt::Debug for DebugLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DebugLog")
    }
}

impl DebugLog {
    /// A log writing to `sink`.
    pub fn new(sink: Box<dyn Write + Send>) -> Self {
        DebugLog(Arc::new(Mutex::new(State { sink, lines: 0 })))
    }

    /// Logs one line (prefixed `[isol-vmm]`), unless the limit is reached.
    pub fn line(&self, msg: std::fmt::Arguments<'_>) {
        let mut s = self.0.lock().unwrap_or_else(|e| e.into_inner());
        s.lines = s.lines.saturating_add(1);
        if s.lines > LOG_LINE_LIMIT + 1 {
            return;
        }
        // A broken log sink must not stop the VM: write errors are dropped.
        let _ = if s.lines == LOG_LINE_LIMIT + 1 {
            writeln!(
                s.sink,
                "\n[isol-vmm] log limit reached, further messages dropped"
            )
        } else {
            writeln!(s.sink, "\n[isol-vmm] {msg}")
        };
        let _ = s.sink.flush();
    }

    /// Logs one line even when the limit is reached (crash details).
    pub fn always(&self, msg: std::fmt::Arguments<'_>) {
        let mut s = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let _ = writeln!(s.sink, "\n[isol-vmm] {msg}");
        let _ = s.sink.flush();
    }

    /// Swaps the sink (keeps the line count).
    pub fn set_sink(&self, sink: Box<dyn Write + Send>) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).sink = sink;
    }
}

#[cfg(test)]
pub(crate) mod testing {
    use super::*;

    /// A `Write` into a shared `Vec<u8>` for tests.
    #[derive(Clone, Default)]
    pub struct VecSink(pub Arc<Mutex<Vec<u8>>>);

    impl Write for VecSink {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl VecSink {
        pub fn text(&self) -> String {
            String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::testing::VecSink;
    use super::*;

    #[test]
    fn test_log_rate_limited() {
        let sink = VecSink::default();
        let log = DebugLog::new(Box::new(sink.clone()));
        for i in 0..1000 {
            log.line(format_args!("port {i}"));
        }
        let text = sink.text();
        assert_eq!(
            text.matches("[isol-vmm] port").count(),
            LOG_LINE_LIMIT as usize
        );
        assert_eq!(text.matches("log limit reached").count(), 1);
        log.always(format_args!("crash"));
        assert!(sink.text().contains("crash"));
    }
}
