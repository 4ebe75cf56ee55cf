//! Real terminals for black-box tests: a tmux server of the test's own (a pty the test
//! does not own), typed into (send-keys) and read (capture-pane). Waiting is a
//! watchdog: poll until a marker appears, with a generous deadline; nothing asserts on
//! time.
#![allow(dead_code)]

use std::process::Command;
use std::time::{Duration, Instant};

use super::{isol_bin, require_root, run_ok, stdout};

/// How long a marker may take to appear (the machine is shared and may be slow).
pub const DEADLINE: Duration = Duration::from_secs(120);

/// A detached tmux session of its own server, running a plain bash, 100x30.
pub struct Tmux {
    socket: String,
}

impl Tmux {
    pub fn new(test: &str) -> Tmux {
        require_root();
        let tmux = Command::new("tmux").arg("-V").output();
        assert!(
            tmux.is_ok_and(|o| o.status.success()),
            "these tests need tmux (apt-get install -y tmux)"
        );
        let t = Tmux {
            socket: format!("isol-term-{test}-{}", std::process::id()),
        };
        run_ok(t.cmd().args([
            "new-session",
            "-d",
            "-s",
            "t",
            "-x",
            "100",
            "-y",
            "30",
            "env",
            "PS1=$ ",
            "bash",
            "--norc",
            "--noprofile",
        ]));
        t
    }

    pub fn cmd(&self) -> Command {
        let mut c = Command::new("tmux");
        c.args(["-L", &self.socket]);
        c
    }

    /// Types `text` and Enter.
    pub fn line(&self, text: &str) {
        run_ok(self.cmd().args(["send-keys", "-t", "t", "-l", text]));
        self.key("Enter");
    }

    /// Presses one key (tmux name: C-c, C-z, C-d, Enter).
    pub fn key(&self, key: &str) {
        run_ok(self.cmd().args(["send-keys", "-t", "t", key]));
    }

    pub fn resize(&self, cols: u16, rows: u16) {
        let (x, y) = (cols.to_string(), rows.to_string());
        run_ok(
            self.cmd()
                .args(["resize-window", "-t", "t", "-x", &x, "-y", &y]),
        );
    }

    /// The pane with its history, wrapped lines joined.
    pub fn screen(&self) -> String {
        let out = self
            .cmd()
            .args(["capture-pane", "-p", "-J", "-S", "-1000", "-t", "t"])
            .output()
            .expect("tmux capture-pane");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Waits (watchdog) until the pane shows `marker`; returns the pane.
    pub fn wait_for(&self, marker: &str) -> String {
        let start = Instant::now();
        loop {
            let s = self.screen();
            if s.contains(marker) {
                return s;
            }
            assert!(
                start.elapsed() < DEADLINE,
                "{marker:?} did not appear within {DEADLINE:?}; the pane:\n{s}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.cmd().arg("kill-server").status();
    }
}

pub fn isol() -> String {
    isol_bin().to_str().expect("UTF-8 path").to_string()
}

/// Waits (watchdog) for a process whose full command line matches `pattern` (pgrep -f);
/// returns its pid.
pub fn wait_for_process(pattern: &str) -> String {
    let start = Instant::now();
    loop {
        let out = Command::new("pgrep")
            .args(["-f", pattern])
            .output()
            .expect("pgrep");
        let pids = stdout(&out);
        if let Some(pid) = pids.lines().next() {
            return pid.to_string();
        }
        assert!(start.elapsed() < DEADLINE, "no process {pattern:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}
