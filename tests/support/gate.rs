//! The one place that decides whether a privileged test is skipped, and the one way the
//! suite reports what it did not run or had to run twice.
//!
//! Included by tests/support/mod.rs and, through `#[path]`, by vmm/tests/machine.rs, so
//! every test binary of the workspace makes the same decision. A notice goes to the real
//! stderr (fd 2, which libtest does not capture, unlike `eprintln!`) and is appended to a
//! log in the target's tmp dir that scripts/test.sh prints at the end; a run with any skip
//! fails there, so CI can never pass with a skip.
#![allow(dead_code)]

use std::io::Write;
use std::path::PathBuf;

/// Log of skipped tests (one line each), printed and counted by scripts/test.sh.
pub const SKIP_LOG: &str = "isol-skipped.log";
/// Log of lab retries (one line each), printed and counted by scripts/test.sh.
pub const RETRY_LOG: &str = "isol-lab-retries.log";

/// `<target>/tmp/NAME`.
pub fn target_tmp_file(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(name)
}

/// Writes `line` to the real stderr (uncaptured) and appends it to `<target>/tmp/LOG`.
pub fn report(log: &str, line: &str) {
    let _ = writeln!(std::io::stderr().lock(), "{line}");
    let path = target_tmp_file(log);
    if let Some(dir) = path.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    let appended = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .and_then(|mut f| writeln!(f, "{line}"));
    if let Err(e) = appended {
        let _ = writeln!(
            std::io::stderr().lock(),
            "!!! cannot append to {}: {e} !!!",
            path.display()
        );
    }
}

/// True when privileged tests should be skipped: only `ISOL_SKIP_PRIVILEGED=1`, which CI
/// never sets. Each skip is reported (see [`report`]) and makes scripts/test.sh fail.
pub fn skip_privileged(test: &str) -> bool {
    if std::env::var_os("ISOL_SKIP_PRIVILEGED").is_some_and(|v| v == "1") {
        report(
            SKIP_LOG,
            &format!("!!! ISOL_SKIP_PRIVILEGED=1: SKIPPED privileged test {test} !!!"),
        );
        return true;
    }
    false
}
