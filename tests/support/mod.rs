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

mod gate;
pub mod guests;
pub mod tmux;
pub use gate::{report, skip_privileged, target_tmp_file, RETRY_LOG};

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
    lab_env(&mut cmd);
    cmd
}

/// Sets the lab variables the suite shares (one session, its idle time and command limit,
/// the retry log) on `cmd`, unless the caller's environment sets them: for tests/lab/run.sh,
/// and for isol commands that start the lab themselves (`isol compare` on a PVM host).
pub fn lab_env(cmd: &mut Command) {
    for (var, default) in [
        ("ISOL_LAB_SESSION", lab_session_dir().into_os_string()),
        ("ISOL_LAB_SESSION_IDLE", "180".into()),
        ("ISOL_LAB_TIMEOUT", "600".into()),
        (
            "ISOL_LAB_RETRY_LOG",
            target_tmp_file(RETRY_LOG).into_os_string(),
        ),
    ] {
        if std::env::var_os(var).is_none() {
            cmd.env(var, default);
        }
    }
}

/// What tests/lab/run.sh said about a failed run, from the status file only it writes
/// (`ISOL_LAB_FAILURE_FILE`, a path under the target dir: the L1 sees that read-only and
/// the command never learns it, as run.sh passes no `ISOL_LAB_*` variable on). Nothing
/// isol or a guest prints can make a run count as a lab failure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LabVerdict {
    /// run.sh wrote no failure: the command ran and its output is its own.
    Ran,
    /// The L1 itself broke (kernel panic, soft lockup, RCU stall, wedged, died): the
    /// command may be run once more.
    Broke(String),
    /// The lab failed in a way a retry cannot help (the command hung with a responsive L1,
    /// missing inputs): the test fails.
    Failed(String),
}

/// Reads run.sh's status file (see [`LabVerdict`]) for a run that exited `code`.
pub fn lab_verdict(status_file: &Path, code: Option<i32>) -> LabVerdict {
    let Ok(text) = std::fs::read_to_string(status_file) else {
        return LabVerdict::Ran;
    };
    let field = |k: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(k))
            .unwrap_or("?")
            .to_string()
    };
    let why = field("why=");
    let marked = text.lines().next() == Some("isol-lab-failure v1");
    match (marked, code, field("kind=").as_str()) {
        (true, Some(125), "broke") => LabVerdict::Broke(why),
        (true, Some(125), _) => LabVerdict::Failed(why),
        _ => panic!(
            "malformed lab status file {} (exit {code:?}):\n{text}",
            status_file.display()
        ),
    }
}

/// Runs a command through tests/lab/run.sh once, with a fresh status file; returns its
/// output and what run.sh said about the lab.
pub fn run_lab_once(cmd: &mut Command, stdin: &[u8]) -> (Output, LabVerdict) {
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = target_tmp_file("lab-status");
    std::fs::create_dir_all(&dir).expect("the target's tmp dir is writable");
    let status = dir.join(format!("{}-{n}", std::process::id()));
    let _ = std::fs::remove_file(&status);
    cmd.env("ISOL_LAB_FAILURE_FILE", &status);
    let out = run_with_stdin(cmd, stdin);
    let verdict = lab_verdict(&status, out.status.code());
    let _ = std::fs::remove_file(&status);
    (out, verdict)
}

/// Runs a command through tests/lab/run.sh; when run.sh marked the lab itself as broken
/// (see [`LabVerdict::Broke`]) the retry is reported (uncaptured, and logged to
/// `<target>/tmp/isol-lab-retries.log`, which scripts/test.sh prints, counts and fails on
/// past a few) and the command runs once more. Any other result is returned as it is.
pub fn run_lab_retrying_lab_failures(cmd: &mut Command, stdin: &[u8]) -> Output {
    let (out, verdict) = run_lab_once(cmd, stdin);
    let LabVerdict::Broke(why) = verdict else {
        return out;
    };
    let test = std::thread::current().name().unwrap_or("?").to_string();
    report(
        RETRY_LOG,
        &format!("RETRY test={test} why={why:?} cmd={cmd:?}"),
    );
    let err = String::from_utf8_lossy(&out.stderr);
    let _ = writeln!(
        std::io::stderr().lock(),
        "!!! the nested lab itself failed ({why}); running the command once more !!!\n{err}"
    );
    run_lab_once(cmd, stdin).0
}

/// The lab session directory shared by the test binaries of this build.
pub fn lab_session_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("lab-session")
}

/// Seconds after which [`run_with_stdin`] kills a command and fails the test: a watchdog
/// for hangs, far above any honest run (the lab's own limit is 600 s), never a speed check.
pub const WATCHDOG_SECS: u64 = 1200;

/// Runs `cmd` with piped streams, feeding `stdin` from a thread (so a command that writes a
/// lot before reading cannot deadlock against us). A command still running after
/// [`WATCHDOG_SECS`] is killed and the test fails saying so.
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
    let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
    let pid = child.id();
    let watchdog = std::thread::spawn(move || {
        let fired = done_rx
            .recv_timeout(std::time::Duration::from_secs(WATCHDOG_SECS))
            .is_err();
        if fired {
            // SAFETY: kill(2) has no memory effects; `pid` is our unreaped child (the
            // parent has not been told it ended), so it names no other process.
            unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
        }
        fired
    });
    let out = child
        .wait_with_output()
        .unwrap_or_else(|e| panic!("cannot wait for {cmd:?}: {e}"));
    let _ = done_tx.send(());
    let fired = watchdog.join().unwrap_or(false);
    let _ = writer.join();
    assert!(
        !fired,
        "watchdog: {cmd:?} still ran after {WATCHDOG_SECS} s and was killed (a hang)\n--- stderr ---\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Runs ARGV where MODE's workloads run: on this host for container mode (and VM mode on
/// hardware KVM), inside the nested lab for VM mode on a PVM host (retrying only what
/// run.sh marks as a broken lab).
pub fn run_where_mode_runs(mode: Mode, argv: &[&std::ffi::OsStr], stdin: &[u8]) -> Output {
    require_root();
    if mode == Mode::Vm && !in_lab() && kvm_kind() == KvmKind::Pvm {
        let mut cmd = lab_command();
        cmd.args(argv);
        return run_lab_retrying_lab_failures(&mut cmd, stdin);
    }
    run_with_stdin(Command::new(argv[0]).args(&argv[1..]), stdin)
}

/// Runs `isol run --mode MODE ARGS...` and sends it SIGNAL (a name: "HUP") once the
/// workload printed its first line, which must be exactly "ready" (the readiness
/// handshake: the workload prints it after installing its trap). Output: isol's stdout
/// (from "ready\n" on) and stderr, and its exit status. tests/support/signal_after_ready.py
/// does the handshake, with a watchdog that fails with exit 99 and a message.
pub fn signal_after_ready(mode: Mode, signal: &str, args: &[&str]) -> Output {
    let driver = repo_root().join("tests/support/signal_after_ready.py");
    let isol = isol_bin();
    let watchdog = "600";
    let mut argv: Vec<&std::ffi::OsStr> = vec![
        "python3".as_ref(),
        driver.as_os_str(),
        signal.as_ref(),
        watchdog.as_ref(),
        isol.as_os_str(),
        "run".as_ref(),
        "--mode".as_ref(),
        mode.as_str().as_ref(),
    ];
    argv.extend(args.iter().map(|a| std::ffi::OsStr::new(*a)));
    run_where_mode_runs(mode, &argv, b"")
}

/// Runs `isol run --mode MODE ARGS...` with its stdin on /dev/null (not an empty pipe),
/// where MODE's workloads run.
pub fn run_isol_stdin_null(mode: Mode, args: &[&str]) -> Output {
    let isol = isol_bin();
    let mut argv: Vec<&std::ffi::OsStr> = vec![
        "sh".as_ref(),
        "-c".as_ref(),
        r#"exec "$0" "$@" </dev/null"#.as_ref(),
        isol.as_os_str(),
        "run".as_ref(),
        "--mode".as_ref(),
        mode.as_str().as_ref(),
    ];
    argv.extend(args.iter().map(|a| std::ffi::OsStr::new(*a)));
    run_where_mode_runs(mode, &argv, b"")
}

/// The host's CPU count as isol counts it (the CPUs this process may use).
pub fn host_cpus() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .expect("the host's CPU count")
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

/// The default rootfs isol built (running any workload builds it): the newest complete
/// directory in the rootfs cache.
pub fn default_rootfs() -> PathBuf {
    assert_code(&run_isol(Mode::Container, &["--", "true"], b""), 0);
    let cache = std::env::var_os("ISOL_CACHE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").expect("HOME is set")).join(".cache/isol")
        });
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(cache.join("rootfs"))
        .expect("the rootfs cache exists after a run")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.join(".complete").exists())
        .collect();
    dirs.sort();
    dirs.pop().expect("the default rootfs exists after a run")
}

/// Runs a helper command (a compiler, a copy, `ip`) that must succeed; its stdout.
pub fn run_ok(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}
