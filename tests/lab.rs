//! Black-box tests of the nested KVM lab (tests/lab/run.sh): it boots a Linux VM under QEMU's
//! software emulator with emulated AMD SVM and runs a command there with a real kvm_amd
//! /dev/kvm. These run for real on every host of this project (root; the lab's inputs come
//! from tests/lab/setup.sh, which scripts/deps.sh runs): a missing input fails the test with
//! what is missing. `ISOL_SKIP_PRIVILEGED=1` is the one loud opt-out.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use support::{
    assert_code, repo_root, require_root, run_with_stdin, skip_privileged, stderr, stdout,
};

/// The lab script.
fn lab_script() -> PathBuf {
    repo_root().join("tests/lab/run.sh")
}

/// Runs `tests/lab/run.sh -- ARGS...` with `envs` added, feeding `stdin`.
fn run_lab(args: &[&str], stdin: &[u8], envs: &[(&str, &str)]) -> Output {
    run_with_stdin(
        Command::new(lab_script())
            .arg("--")
            .args(args)
            .envs(envs.iter().copied()),
        stdin,
    )
}

/// Common gate: root, or a loud skip.
fn privileged(test: &str) -> bool {
    if skip_privileged(test) {
        return false;
    }
    require_root();
    true
}

#[test]
fn test_lab_cmd_sees_svm_and_kvm_prints_lab_ok() {
    if !privileged("test_lab_cmd_sees_svm_and_kvm_prints_lab_ok") {
        return;
    }
    let script = "grep -qw svm /proc/cpuinfo && test -c /dev/kvm && echo LAB_OK";
    let out = run_lab(&["sh", "-c", script], b"", &[]);
    assert_code(&out, 0);
    assert_eq!(stdout(&out), "LAB_OK\n", "stderr: {}", stderr(&out));
}

#[test]
fn test_lab_exit_code_env_and_cwd_propagate() {
    if !privileged("test_lab_exit_code_env_and_cwd_propagate") {
        return;
    }
    let script = r#"echo "$ISOL_IN_LAB ${ISOL_LABTEST_VAR:-unset} ${LABTEST_PRIVATE:-unset} $(pwd)"; exit 3"#;
    let out = run_with_stdin(
        Command::new(lab_script())
            .args(["--", "sh", "-c", script])
            .current_dir(repo_root().join("tests"))
            .env("ISOL_LABTEST_VAR", "a b'c")
            .env("LABTEST_PRIVATE", "leak"),
        b"",
    );
    assert_code(&out, 3);
    let want = format!("1 a b'c unset {}\n", repo_root().join("tests").display());
    assert_eq!(stdout(&out), want);
}

#[test]
fn test_lab_streams_stay_separate_and_byte_exact() {
    if !privileged("test_lab_streams_stay_separate_and_byte_exact") {
        return;
    }
    let script = r"printf 'out\000\377\r\nend'; printf 'err\000\n' >&2; printf 'more' ";
    let out = run_lab(&["sh", "-c", script], b"", &[]);
    assert_code(&out, 0);
    assert_eq!(out.stdout, b"out\0\xff\r\nendmore");
    assert_eq!(out.stderr, b"err\0\n");
}

#[test]
fn test_lab_feeds_stdin_through_eof() {
    if !privileged("test_lab_feeds_stdin_through_eof") {
        return;
    }
    let input: Vec<u8> = (0..200_000u32).map(|i| (i * 7 % 256) as u8).collect();
    let out = run_lab(&["cat"], &input, &[]);
    assert_code(&out, 0);
    assert_eq!(out.stdout.len(), input.len());
    assert!(out.stdout == input, "stdin came back altered");
}

/// Builds tests/lab/kvmcheck (a stand-alone crate) and returns its binary.
fn kvmcheck_bin() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target"))
        .join("kvmcheck");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let manifest = repo_root().join("tests/lab/kvmcheck/Cargo.toml");
    let status = Command::new(cargo)
        .args(["build", "--quiet", "--manifest-path"])
        .arg(&manifest)
        .arg("--target-dir")
        .arg(&target)
        .status()
        .expect("run cargo build for kvmcheck");
    assert!(status.success(), "cannot build {}", manifest.display());
    target.join("debug/kvmcheck")
}

#[test]
fn test_lab_runs_a_kvm_guest_of_ours() {
    if !privileged("test_lab_runs_a_kvm_guest_of_ours") {
        return;
    }
    let bin = kvmcheck_bin();
    let out = run_lab(&[bin.to_str().expect("utf-8 path")], b"", &[]);
    assert_code(&out, 0);
    assert!(
        stdout(&out).starts_with("KVMCHECK_OK kvm=kvm_amd "),
        "stdout: {}\nstderr: {}",
        stdout(&out),
        stderr(&out)
    );
}

#[test]
fn test_kvmcheck_runs_on_this_hosts_kvm() {
    if !privileged("test_kvmcheck_runs_on_this_hosts_kvm") {
        return;
    }
    assert!(
        Path::new("/dev/kvm").exists(),
        "/dev/kvm is missing on this host"
    );
    let out = run_with_stdin(&mut Command::new(kvmcheck_bin()), b"");
    assert_code(&out, 0);
    assert!(
        stdout(&out).starts_with("KVMCHECK_OK kvm="),
        "{}",
        stdout(&out)
    );
}

#[test]
fn test_lab_without_inputs_refuses_with_setup_hint() {
    if !privileged("test_lab_without_inputs_refuses_with_setup_hint") {
        return;
    }
    let empty = tempfile::tempdir().expect("temp dir");
    let cache = empty.path().to_str().expect("utf-8 path");
    let out = run_lab(&["true"], b"", &[("ISOL_CACHE_DIR", cache)]);
    assert_code(&out, 125);
    assert!(
        stderr(&out).contains("tests/lab/setup.sh"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn test_lab_timeout_reports_the_hang_kills_l1_and_exits_125() {
    if !privileged("test_lab_timeout_reports_the_hang_kills_l1_and_exits_125") {
        return;
    }
    let status = tempfile::NamedTempFile::new().expect("temp file");
    let status_path = status.path().to_str().expect("utf-8 path");
    let out = run_lab(
        &["sleep", "600"],
        b"",
        &[
            ("ISOL_LAB_TIMEOUT", "20"),
            ("ISOL_LAB_FAILURE_FILE", status_path),
        ],
    );
    assert_code(&out, 125);
    let err = stderr(&out);
    assert!(err.contains("timed out"), "{err}");
    // The hang report: the command's process and its kernel stack, from inside the L1.
    assert!(
        err.contains("processes in the L1 at the deadline") && err.contains("sleep 600"),
        "{err}"
    );
    // A hang of the command in a responsive L1 is the command's failure, marked so: the
    // harness does not retry it.
    let marked = std::fs::read_to_string(status.path()).unwrap_or_default();
    assert!(
        marked.starts_with("isol-lab-failure v1\nkind=hang\nwhy=timed out after 20s"),
        "{marked}"
    );
}

#[test]
fn test_lab_boot_not_up_in_time_is_booted_again_then_fails() {
    if !privileged("test_lab_boot_not_up_in_time_is_booted_again_then_fails") {
        return;
    }
    // No L1 is up within 1 s: each boot counts as wedged, is killed and booted again, and
    // the third failure ends the run with 125 and where the L1's vCPUs were.
    let status = tempfile::NamedTempFile::new().expect("temp file");
    let status_path = status.path().to_str().expect("utf-8 path");
    let retries = tempfile::NamedTempFile::new().expect("temp file");
    let retries_path = retries.path().to_str().expect("utf-8 path");
    let out = run_lab(
        &["true"],
        b"",
        &[
            ("ISOL_LAB_BOOT_TIMEOUT", "1"),
            ("ISOL_LAB_FAILURE_FILE", status_path),
            ("ISOL_LAB_RETRY_LOG", retries_path),
        ],
    );
    assert_code(&out, 125);
    let err = stderr(&out);
    assert_eq!(err.matches("booting it again").count(), 2, "{err}");
    assert!(err.contains("not up within 1s, 3 times"), "{err}");
    // Where the L1's vCPUs were, when QEMU's monitor already answered (not always, at 1 s).
    assert!(err.contains("L1 vCPUs then:"), "{err}");
    // Marked as the lab's own failure (the harness may retry that), and each re-boot logged.
    let marked = std::fs::read_to_string(status.path()).unwrap_or_default();
    assert!(
        marked.starts_with(
            "isol-lab-failure v1\nkind=broke\nwhy=the L1 was not up within 1s, 3 times"
        ),
        "{marked}"
    );
    let logged = std::fs::read_to_string(retries.path()).unwrap_or_default();
    assert_eq!(logged.matches("L1-REBOOT ").count(), 2, "{logged}");
}

#[test]
fn test_lab_session_runs_commands_in_one_l1() {
    if !privileged("test_lab_session_runs_commands_in_one_l1") {
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let session = dir.path().join("s");
    let s = session.to_str().expect("utf-8 path");
    let envs = [("ISOL_LAB_SESSION", s), ("ISOL_LAB_SESSION_IDLE", "60")];
    let first = run_lab(
        &["sh", "-c", "cat /proc/sys/kernel/random/boot_id; exit 4"],
        b"",
        &envs,
    );
    let second = run_lab(
        &["sh", "-c", "cat; cat /proc/sys/kernel/random/boot_id"],
        b"in\n",
        &envs,
    );
    let qemu_pid = std::fs::read_to_string(session.join("qemu.pid")).unwrap_or_default();
    let stop = Command::new(repo_root().join("tests/lab/session.sh"))
        .args(["stop", s])
        .output()
        .expect("stop the session");
    assert_code(&first, 4);
    assert_code(&second, 0);
    let boot_id = stdout(&first);
    assert_eq!(
        stdout(&second),
        format!("in\n{boot_id}"),
        "both commands ran in one L1"
    );
    assert!(
        stop.status.success(),
        "{}",
        String::from_utf8_lossy(&stop.stderr)
    );
    let proc_dir = Path::new("/proc").join(qemu_pid.trim());
    let gone = (0..600).any(|_| {
        std::thread::sleep(Duration::from_millis(100));
        !proc_dir.exists()
    });
    assert!(
        !qemu_pid.trim().is_empty() && gone,
        "session QEMU {qemu_pid:?} still runs after stop"
    );
}

#[test]
fn test_lab_failure_words_printed_by_the_command_are_not_a_lab_failure() {
    if !privileged("test_lab_failure_words_printed_by_the_command_are_not_a_lab_failure") {
        return;
    }
    // Everything the old stderr classifier took for a broken lab, printed by the command
    // (as an isol guest's console tail could), with run.sh's own exit code: the command's
    // failure, never retried.
    let words = "tests/lab/run.sh: L1 ended; Kernel panic - not syncing; soft lockup; \
                 rcu_sched self-detected stall; no hang report from the L1";
    let script = format!("echo '{words}' >&2; exit 125");
    let mut cmd = support::lab_command();
    cmd.args(["sh", "-c", &script]);
    let (out, verdict) = support::run_lab_once(&mut cmd, b"");
    assert_code(&out, 125);
    assert_eq!(verdict, support::LabVerdict::Ran, "{}", stderr(&out));
    assert_eq!(stderr(&out), format!("{words}\n"));
}
