//! Helpers of the detached-run tests (tests/lifecycle.rs, tests/lifecycle_exec.rs):
//! a private state directory per test, and the list of traces a run may leave.
#![allow(dead_code)]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use crate::support::{self, assert_code, isol_bin, require_root, run_with_stdin};

/// Watchdog of the polling helpers.
pub const WATCHDOG: Duration = Duration::from_secs(120);

/// A private state directory for detached runs.
pub struct Runs {
    root: tempfile::TempDir,
}

impl Runs {
    pub fn new() -> Runs {
        require_root();
        let base = support::target_tmp_file("lifecycle");
        fs::create_dir_all(&base).unwrap();
        Runs {
            root: tempfile::tempdir_in(base).unwrap(),
        }
    }

    pub fn root(&self) -> &Path {
        self.root.path()
    }

    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(isol_bin());
        c.arg("--root").arg(self.root()).args(args);
        c
    }

    /// `isol --root DIR ARGS...` with `stdin`.
    pub fn isol_in(&self, args: &[&str], stdin: &[u8]) -> Output {
        run_with_stdin(&mut self.cmd(args), stdin)
    }

    pub fn isol(&self, args: &[&str]) -> Output {
        self.isol_in(args, b"")
    }

    /// `isol run -d ARGS...`: the id it printed.
    pub fn start(&self, args: &[&str]) -> String {
        let mut full = vec!["run", "--mode", "container", "-d"];
        full.extend_from_slice(args);
        let out = self.isol(&full);
        assert_code(&out, 0);
        let id = support::stdout(&out).trim().to_string();
        assert_eq!(id.len(), 32, "run -d prints the id: {id:?}");
        id
    }

    /// The run's record (`inspect --json`).
    pub fn inspect(&self, key: &str) -> serde_json::Value {
        let out = self.isol(&["inspect", "--json", key]);
        assert_code(&out, 0);
        serde_json::from_slice(&out.stdout).unwrap()
    }

    /// Polls `isol logs --stdout` until `done` holds for it.
    pub fn logs_until(&self, key: &str, done: impl Fn(&[u8]) -> bool) -> Vec<u8> {
        let t = Instant::now();
        loop {
            let out = self.isol(&["logs", "--stdout", key]);
            assert_code(&out, 0);
            if done(&out.stdout) {
                return out.stdout;
            }
            assert!(
                t.elapsed() < WATCHDOG,
                "watchdog: logs never matched: {out:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Runs {
    /// A failed test leaves no run behind either: every run still recorded is removed.
    fn drop(&mut self) {
        let Ok(out) = self.cmd(&["ps", "-a", "--json"]).output() else {
            return;
        };
        let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        for r in list.as_array().into_iter().flatten() {
            if let Some(id) = r["id"].as_str() {
                let _ = self.cmd(&["rm", "-f", id]).output();
            }
        }
    }
}

pub fn int(v: &serde_json::Value, k: &str) -> i32 {
    v[k].as_i64()
        .unwrap_or_else(|| panic!("{k} in {v}"))
        .try_into()
        .unwrap()
}

pub fn pid_exists(pid: i32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// Every trace a run may leave: its supervisor and init processes, its cgroups (the
/// recorded ones and any `isol-<supervisor pid>-*`), mounts naming it, the container
/// backend's record, and its state directory (logs, socket).
pub fn traces(runs: &Runs, rec: &serde_json::Value) -> Vec<String> {
    let mut found = Vec::new();
    let sup = int(rec, "supervisor_pid");
    if isol_container::record::alive(sup, rec["supervisor_start"].as_u64().unwrap()) {
        found.push(format!("supervisor {sup} alive"));
    }
    if let Some(pid) = rec["pid"].as_i64() {
        let pid = i32::try_from(pid).unwrap();
        if pid_exists(pid)
            && fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| {
                String::from_utf8_lossy(&c).contains(&runs.root().to_string_lossy().to_string())
            })
        {
            found.push(format!("init {pid} alive"));
        }
    }
    for cg in rec["cgroups"].as_array().unwrap() {
        let p = PathBuf::from(cg.as_str().unwrap());
        if p.exists() {
            found.push(format!("cgroup {}", p.display()));
        }
    }
    let tag = format!("isol-{sup}-");
    for l in fs::read_to_string("/proc/mounts").unwrap().lines() {
        if l.contains(&tag) || l.contains(rec["id"].as_str().unwrap()) {
            found.push(format!("mount {l}"));
        }
    }
    let records = isol_common::paths::run_dir().join("container");
    for e in fs::read_dir(records).into_iter().flatten().flatten() {
        if e.file_name().to_string_lossy().starts_with(&tag) {
            found.push(format!("record {}", e.path().display()));
        }
    }
    let dir = runs.root().join(rec["id"].as_str().unwrap());
    if dir.exists() {
        found.push(format!("state dir {}", dir.display()));
    }
    found
}

/// Asserts nothing of the run is left (`rm` returns only once its supervisor is gone,
/// so this looks once, without waiting).
pub fn assert_no_trace(runs: &Runs, rec: &serde_json::Value) {
    let t = traces(runs, rec);
    assert!(t.is_empty(), "left behind: {t:#?}");
}
