//! Shared harness for black-box tests of the `isol` binary.
//!
//! `run_isol(mode, args, stdin)` runs `isol run --mode MODE ARGS...` and returns its output.
//! Container mode runs directly (needs root). VM mode runs directly on a host whose /dev/kvm
//! is hardware-backed (kvm_intel / kvm_amd), and inside the nested lab (tests/lab/run.sh) on
//! a PVM host, where ordinary guest kernels cannot boot. Missing prerequisites fail the test
//! with what is missing; `ISOL_SKIP_PRIVILEGED=1` is the one loud opt-out.
#![allow(dead_code)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// The isolation model a test body runs under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// `--mode container`.
    Container,
    /// `--mode vm`.
    Vm,
}

impl Mode {
    /// The `--mode` value.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Container => "container",
            Mode::Vm => "vm",
        }
    }
}

/// The `isol` binary under test.
pub fn isol_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_isol"))
}

/// The repository root.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// True when privileged tests should be skipped (loudly). CI never sets this.
pub fn skip_privileged(test: &str) -> bool {
    if std::env::var_os("ISOL_SKIP_PRIVILEGED").is_some_and(|v| v == "1") {
        eprintln!("!!! ISOL_SKIP_PRIVILEGED=1: SKIPPING privileged test {test} !!!");
        return true;
    }
    false
}

/// Panics (fails the test) unless we are root.
pub fn require_root() {
    let uid = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .map(str::to_string)
        })
        .and_then(|l| l.split_whitespace().nth(1).map(str::to_string));
    assert_eq!(
        uid.as_deref(),
        Some("0"),
        "this test needs root (run the README test command as root)"
    );
}

/// How /dev/kvm is served on this host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KvmKind {
    /// kvm_intel or kvm_amd: Linux guests boot directly.
    Hardware,
    /// kvm_pvm: Linux guests only boot inside the nested lab.
    Pvm,
}

/// Detects the KVM flavour; fails the test when there is no /dev/kvm at all.
pub fn kvm_kind() -> KvmKind {
    assert!(
        Path::new("/dev/kvm").exists(),
        "/dev/kvm is missing: VM-mode tests need KVM (load kvm_intel or kvm_amd, or run on a PVM host with the lab)"
    );
    if Path::new("/sys/module/kvm_pvm").exists() {
        KvmKind::Pvm
    } else {
        KvmKind::Hardware
    }
}

/// True when this process already runs inside the nested lab (the lab sets ISOL_IN_LAB=1).
pub fn in_lab() -> bool {
    std::env::var_os("ISOL_IN_LAB").is_some_and(|v| v == "1")
}

/// Runs `isol ARGS...` (any subcommand) directly, feeding `stdin`.
pub fn run_raw(args: &[&str], stdin: &[u8]) -> Output {
    run_with_stdin(Command::new(isol_bin()).args(args), stdin)
}

/// Runs `isol run --mode MODE ARGS...`, through the lab when VM mode needs it.
pub fn run_isol(mode: Mode, args: &[&str], stdin: &[u8]) -> Output {
    require_root();
    let mut full: Vec<String> = vec!["run".into(), "--mode".into(), mode.as_str().into()];
    full.extend(args.iter().map(|s| s.to_string()));
    if mode == Mode::Vm && !in_lab() && kvm_kind() == KvmKind::Pvm {
        let mut cmd = lab_command();
        cmd.arg(isol_bin()).args(&full);
        return run_lab_retrying_lab_failures(&mut cmd, stdin);
    }
    run_with_stdin(Command::new(isol_bin()).args(&full), stdin)
}

/// `tests/lab/run.sh --`, to which the caller adds the command to run in the lab. One L1
/// boot for the whole suite: every command goes through a shared lab session
/// (scripts/test.sh stops it at the end; it also powers off when idle). A command still
/// running after 600 s fails with a report of its processes in the L1 (tests/lab/run.sh).
pub fn lab_command() -> Command {
    let lab = repo_root().join("tests/lab/run.sh");
    assert!(
        lab.exists(),
        "{} is missing: VM-mode tests on a PVM host need the nested lab",
        lab.display()
    );
    let mut cmd = Command::new(lab);
    cmd.arg("--");
    for (var, default) in [
        ("ISOL_LAB_SESSION", lab_session_dir().into_os_string()),
        ("ISOL_LAB_SESSION_IDLE", "180".into()),
        ("ISOL_LAB_TIMEOUT", "600".into()),
    ] {
        if std::env::var_os(var).is_none() {
            cmd.env(var, default);
        }
    }
    cmd
}

/// True when the nested lab itself broke: run.sh failed (125) and its L1 kernel reported a
/// soft lockup, an RCU stall, or panicked (seen: a page fault with the L2's GS base inside
/// KVM's world switch, recursing until the stack guard page), or the L1 was so wedged at
/// the deadline that its init could not even report the command's processes. Those are
/// the L1's KVM under QEMU's emulated SVM going wrong; no user-space program (isol
/// included) can cause them short of a KVM bug. A command that merely hangs is not one:
/// its hang report shows where, and the test fails.
pub fn lab_itself_failed(out: &Output) -> bool {
    let err = String::from_utf8_lossy(&out.stderr);
    out.status.code() == Some(125)
        && err.contains("tests/lab/run.sh:")
        && (err.contains("soft lockup")
            || err.contains("rcu_sched self-detected stall")
            || (err.contains("L1 ended") && err.contains("Kernel panic - not syncing"))
            || err.contains("no hang report from the L1"))
}

/// Runs a command through tests/lab/run.sh; when the lab itself broke (see
/// [`lab_itself_failed`]) it says so loudly and runs the command once more. Any other
/// failure, isol's included, is returned as it is.
pub fn run_lab_retrying_lab_failures(cmd: &mut Command, stdin: &[u8]) -> Output {
    let out = run_with_stdin(cmd, stdin);
    if !lab_itself_failed(&out) {
        return out;
    }
    eprintln!(
        "!!! the nested lab failed (L1 kernel soft lockup, RCU stall, panic or wedged), not the code under test; retrying once !!!\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    run_with_stdin(cmd, stdin)
}

/// The lab session directory shared by the test binaries of this build.
pub fn lab_session_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("lab-session")
}

/// Runs `cmd` with piped streams, feeding `stdin` from a thread (so a command that writes a
/// lot before reading cannot deadlock against us).
pub fn run_with_stdin(cmd: &mut Command, stdin: &[u8]) -> Output {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot spawn {cmd:?}: {e}"));
    let mut input = child.stdin.take().expect("stdin is piped");
    let data = stdin.to_vec();
    let writer = std::thread::spawn(move || {
        // The workload may exit without reading its stdin: a broken pipe is fine.
        let _ = input.write_all(&data);
    });
    let out = child
        .wait_with_output()
        .unwrap_or_else(|e| panic!("cannot wait for {cmd:?}: {e}"));
    let _ = writer.join();
    out
}

/// Asserts exit code, printing both streams when it differs.
pub fn assert_code(out: &Output, code: i32) {
    assert_eq!(
        out.status.code(),
        Some(code),
        "exit status {:?}, expected {code}\n--- stdout ---\n{}\n--- stderr ---\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// stdout as text.
pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// stderr as text.
pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Runs each named `fn NAME(mode: Mode)` of the calling test file as two tests,
/// `container::NAME` and `vm::NAME`: the contract was written for container mode, and VM
/// mode must pass it unchanged. Privileged tests fail loudly without root or KVM; only
/// `ISOL_SKIP_PRIVILEGED=1` skips them, with a notice.
#[macro_export]
macro_rules! in_both_modes {
    ($($name:ident),* $(,)?) => {
        mod container {
            $(#[test]
            fn $name() {
                if !$crate::support::skip_privileged(stringify!($name)) {
                    super::$name($crate::support::Mode::Container);
                }
            })*
        }
        mod vm {
            $(#[test]
            fn $name() {
                if !$crate::support::skip_privileged(stringify!($name)) {
                    super::$name($crate::support::Mode::Vm);
                }
            })*
        }
    };
}
