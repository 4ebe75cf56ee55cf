//! Black-box tests that no guest action wedges the host or exhausts it: a VM without
//! `--timeout` runs as long as its workload, a reader of isol's stdout that never reads
//! cannot keep `--timeout` or a signal from ending the run, and an endless console writer
//! leaves a capped console log.
//!
//! Two kinds of guests. Tiny guests (tests/vm_guests/*-raw.s, assembled here) speak the
//! isol channel or spam the console from real mode; they run on any /dev/kvm, PVM
//! included, so those tests run directly. Real Linux workloads run where VM mode works:
//! directly on hardware KVM, inside the nested lab on a PVM host. No speed is asserted:
//! each run has a generous watchdog of its own (a wedged run is killed and fails).

mod support;

use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use support::{assert_code, in_lab, kvm_kind, require_root, stderr, stdout, KvmKind};

/// How long any one run may take before the test calls it wedged.
const WATCHDOG: Duration = Duration::from_secs(120);

fn skip(name: &str) -> bool {
    support::skip_privileged(name)
}

/// The raw guest tests/vm_guests/NAME-raw.s, assembled.
fn guest(name: &str) -> PathBuf {
    support::guests::channel_guest("vm-wedge-guests", name)
}

/// A private, empty run directory.
fn run_dir(tag: &str) -> PathBuf {
    let d = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("vm-wedge-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

/// `isol run --mode vm --kernel GUEST ARGS -- true` for a tiny guest, not yet waited for.
fn tiny(kernel: &Path, rd: &Path, env: &[(&str, &str)], args: &[&str]) -> Command {
    require_root();
    kvm_kind(); // fails loudly without /dev/kvm
    let mut cmd = Command::new(support::isol_bin());
    cmd.args(["run", "--mode", "vm", "--kernel"])
        .arg(kernel)
        .args(args)
        .args(["--", "true"]);
    cmd.env("ISOL_VM_ALLOW_PVM", "1").env("ISOL_RUN_DIR", rd);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd
}

/// A pipe whose read end the caller holds and never reads: a stalled reader.
fn stalled_pipe() -> (OwnedFd, OwnedFd) {
    nix::unistd::pipe().expect("pipe")
}

/// Waits for `child` up to [`WATCHDOG`]; a run still going then is killed and fails.
fn wait_or_kill(mut child: Child, what: &str) -> std::process::ExitStatus {
    let deadline = Instant::now() + WATCHDOG;
    loop {
        if let Some(st) = child.try_wait().expect("try_wait") {
            return st;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what}: still running after {WATCHDOG:?}: wedged");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The largest console.log under `rd` right now (0 if none).
fn console_log_size(rd: &Path) -> u64 {
    let Ok(runs) = std::fs::read_dir(rd.join("vm")) else {
        return 0;
    };
    runs.flatten()
        .filter_map(|e| std::fs::metadata(e.path().join("console.log")).ok())
        .map(|m| m.len())
        .max()
        .unwrap_or(0)
}

#[test]
fn vm_wedge_no_timeout_runs_past_the_boot_watchdog() {
    if skip("vm_wedge_no_timeout_runs_past_the_boot_watchdog") {
        return;
    }
    // The echo guest copies stdin until EOF, then exits 7. Its stdin stays open for longer
    // than boot timeout (1 s) + the old backstop margin (30 s): the VM must keep running
    // (it once ended 125 "ran past its deadline" at 31 s).
    let rd = run_dir("long");
    let mut cmd = tiny(&guest("echo"), &rd, &[("ISOL_VM_BOOT_TIMEOUT", "1")], &[]);
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn isol");
    let mut input = child.stdin.take().expect("piped");
    let writer = std::thread::spawn(move || {
        std::io::Write::write_all(&mut input, b"late\n").expect("write stdin");
        std::thread::sleep(Duration::from_secs(36));
        drop(input);
    });
    let o = child.wait_with_output().expect("wait");
    writer.join().expect("stdin writer");
    assert_code(&o, 7);
    assert_eq!(stdout(&o), "out\nlate\n");
    let _ = std::fs::remove_dir_all(&rd);
}

#[test]
fn vm_wedge_stalled_stdout_reader_cannot_outlast_the_timeout() {
    if skip("vm_wedge_stalled_stdout_reader_cannot_outlast_the_timeout") {
        return;
    }
    let rd = run_dir("stall");
    let (_reader, writer) = stalled_pipe();
    let child = tiny(&guest("flood"), &rd, &[], &["--timeout", "2"])
        .stdin(Stdio::null())
        .stdout(Stdio::from(writer))
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn isol");
    let st = wait_or_kill(child, "isol --timeout 2 with a stalled stdout");
    assert_eq!(st.code(), Some(124), "{st:?}");
    let _ = std::fs::remove_dir_all(&rd);
}

#[test]
fn vm_wedge_stalled_stdout_reader_cannot_outlast_a_signal() {
    if skip("vm_wedge_stalled_stdout_reader_cannot_outlast_a_signal") {
        return;
    }
    // No --timeout: SIGTERM to isol must still end the run, with the workload's own
    // status (the flood guest reports "killed by the signal" once it can read it).
    let rd = run_dir("sig");
    let (reader, writer) = stalled_pipe();
    let child = tiny(&guest("flood"), &rd, &[], &[])
        .stdin(Stdio::null())
        .stdout(Stdio::from(writer))
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn isol");
    // Wait until the pipe is full (the guest is flooding and the reader stalled), and
    // then some, so isol's own buffer fills too.
    // SAFETY: F_GETPIPE_SZ only reads the pipe's size; the fd is open.
    let size = unsafe { libc::fcntl(reader.as_raw_fd(), libc::F_GETPIPE_SZ) };
    assert!(size > 0, "F_GETPIPE_SZ");
    let deadline = Instant::now() + WATCHDOG;
    while pipe_bytes(&reader) < size {
        assert!(Instant::now() < deadline, "the pipe never filled");
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_secs(3));
    let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id()).expect("pid"));
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).expect("kill");
    let st = wait_or_kill(child, "isol with a stalled stdout after SIGTERM");
    assert_eq!(st.code(), Some(128 + 15), "{st:?}");
    let _ = std::fs::remove_dir_all(&rd);
}

/// Bytes waiting in the pipe of `reader` (FIONREAD).
fn pipe_bytes(reader: &OwnedFd) -> i32 {
    let mut n: libc::c_int = 0;
    // SAFETY: FIONREAD writes one int to `n`, which lives across the call; the fd is open.
    let r = unsafe { libc::ioctl(reader.as_raw_fd(), libc::FIONREAD, &mut n) };
    if r == 0 {
        n
    } else {
        0
    }
}

#[test]
fn vm_wedge_endless_console_writer_leaves_a_capped_log() {
    if skip("vm_wedge_endless_console_writer_leaves_a_capped_log") {
        return;
    }
    // The console guest writes to COM1 forever. The log (in the run directory, a tmpfs
    // on most hosts) and the --verbose copy on stderr must stay within the cap: a burst
    // of 256 KiB, then 16 KiB/s.
    let secs = 10;
    let cap = |elapsed: Duration| (256 << 10) + (16 << 10) * (elapsed.as_secs() + 2) + (8 << 10);
    let rd = run_dir("console");
    let timeout = secs.to_string();
    let start = Instant::now();
    let mut child = tiny(&guest("console"), &rd, &[], &["--timeout", &timeout])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn isol");
    let mut biggest = 0;
    let deadline = start + WATCHDOG;
    while child.try_wait().expect("try_wait").is_none() {
        assert!(Instant::now() < deadline, "the console writer wedged isol");
        biggest = biggest.max(console_log_size(&rd));
        std::thread::sleep(Duration::from_millis(20));
    }
    let o = child.wait_with_output().expect("wait");
    assert_code(&o, 124);
    assert!(biggest > 0, "no console log seen");
    let limit = cap(start.elapsed());
    assert!(
        biggest <= limit,
        "console log reached {biggest} bytes (cap {limit})"
    );
    // --verbose copies the console to stderr: capped the same way.
    let start = Instant::now();
    let o = run_to_end(
        tiny(
            &guest("console"),
            &rd,
            &[],
            &["--verbose", "--timeout", &timeout],
        ),
        "isol --verbose with an endless console writer",
    );
    assert_code(&o, 124);
    let limit = cap(start.elapsed());
    assert!(
        (o.stderr.len() as u64) <= limit,
        "{} bytes of console on stderr (cap {limit})",
        o.stderr.len()
    );
    let _ = std::fs::remove_dir_all(&rd);
}

/// Runs `cmd` with piped streams under [`WATCHDOG`].
fn run_to_end(mut cmd: Command, what: &str) -> Output {
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn isol");
    let pid = child.id();
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let d2 = done.clone();
    let what2 = what.to_string();
    let dog = std::thread::spawn(move || {
        let deadline = Instant::now() + WATCHDOG;
        while !d2.load(std::sync::atomic::Ordering::SeqCst) {
            if Instant::now() > deadline {
                let p = nix::unistd::Pid::from_raw(i32::try_from(pid).expect("pid"));
                let _ = nix::sys::signal::kill(p, nix::sys::signal::Signal::SIGKILL);
                return Some(what2);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        None
    });
    let o = child.wait_with_output().expect("wait");
    done.store(true, std::sync::atomic::Ordering::SeqCst);
    if let Some(w) = dog.join().expect("watchdog") {
        panic!("{w}: still running after {WATCHDOG:?}: wedged");
    }
    o
}

/// Runs `sh -c SCRIPT sh ISOL` where VM mode boots real Linux guests: inside the lab on a
/// PVM host, directly on hardware KVM.
fn script(script: &str) -> Output {
    require_root();
    let isol = support::isol_bin();
    if !in_lab() && kvm_kind() == KvmKind::Pvm {
        let mut c = support::lab_command();
        c.arg("/bin/sh").arg("-c").arg(script).arg("sh").arg(isol);
        return support::run_lab_retrying_lab_failures(&mut c, b"");
    }
    let mut cmd = Command::new("/bin/sh");
    cmd.arg("-c").arg(script).arg("sh").arg(isol);
    cmd.output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"))
}

#[test]
fn vm_wedge_linux_no_timeout_outlives_boot_timeout_and_margin() {
    if skip("vm_wedge_linux_no_timeout_outlives_boot_timeout_and_margin") {
        return;
    }
    // Boot watchdog 60 s; the workload sleeps past 60 + 30 s (the old backstop).
    let s = r#"ISOL_VM_BOOT_TIMEOUT=60 "$1" run --mode vm -- sh -c 'sleep 95; echo slept; exit 7'; echo "rc=$?""#;
    let o = script(s);
    assert_eq!(stdout(&o), "slept\nrc=7\n", "stderr: {}", stderr(&o));
}

#[test]
fn vm_wedge_linux_stalled_fifo_reader_cannot_outlast_the_timeout() {
    if skip("vm_wedge_linux_stalled_fifo_reader_cannot_outlast_the_timeout") {
        return;
    }
    // The reproduction of the issue: `yes` into a FIFO whose reader never reads. The
    // run must end by itself with 124; `timeout -s KILL` is only the test's watchdog
    // (137 = wedged).
    let s = r#"d=$(mktemp -d); mkfifo "$d/f"; sleep 1000 <"$d/f" & r=$!
timeout -s KILL 120 "$1" run --mode vm --timeout 5 -- yes >"$d/f"; echo "rc=$?"
kill $r; rm -rf "$d""#;
    let o = script(s);
    assert_eq!(stdout(&o), "rc=124\n", "stderr: {}", stderr(&o));
}

#[test]
fn vm_wedge_linux_console_writer_under_timeout_ends_124() {
    if skip("vm_wedge_linux_console_writer_under_timeout_ends_124") {
        return;
    }
    // A workload writing the kernel log in a loop (with printk.devkmsg=on and
    // loglevel=8 every line goes to the console), under --timeout 5, with --verbose so
    // the console reaches stderr: the run ends with 124 and stderr stays within the cap.
    let s = r#"ISOL_VM_CMDLINE_EXTRA='printk.devkmsg=on loglevel=8' timeout -s KILL 120 "$1" run --mode vm --verbose --timeout 5 -- sh -c 'while :; do echo "<1>spam spam spam spam spam spam spam spam spam spam" >/dev/kmsg || exit 3; done' 2>"${TMPDIR:-/tmp}/wedge-console.$$"; echo "rc=$?"; wc -c <"${TMPDIR:-/tmp}/wedge-console.$$"; rm -f "${TMPDIR:-/tmp}/wedge-console.$$""#;
    let o = script(s);
    let out = stdout(&o);
    let mut lines = out.lines();
    assert_eq!(
        lines.next(),
        Some("rc=124"),
        "{out}\nstderr: {}",
        stderr(&o)
    );
    let bytes: u64 = lines
        .next()
        .and_then(|l| l.trim().parse().ok())
        .unwrap_or_else(|| panic!("no byte count: {out}"));
    // Burst + rate over the whole run (boot included, generously 300 s under emulation).
    assert!(
        bytes <= (256 << 10) + (16 << 10) * 300,
        "{bytes} bytes of console"
    );
}
