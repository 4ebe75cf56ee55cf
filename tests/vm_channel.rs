//! Black-box tests of VM mode's host side with tiny guests that speak the isol channel
//! (tests/vm_guests/*.s, assembled here with binutils' `as`/`ld`): stdout/stderr routing,
//! binary stdin with EOF, exit mapping, the workload timeout, the boot watchdog and a
//! guest that ends without a report. Tiny guests run on any /dev/kvm, PVM included
//! (`ISOL_VM_ALLOW_PVM=1`), so these run directly, without the nested lab.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use support::{assert_code, require_root, stderr, stdout};

fn skip(name: &str) -> bool {
    support::skip_privileged(name)
}

/// The raw guest tests/vm_guests/NAME-raw.s, assembled.
fn guest(name: &str) -> PathBuf {
    support::guests::channel_guest("vm-guests", name)
}

/// A private, empty run directory so the test can check nothing is left in it.
fn run_dir(tag: &str) -> PathBuf {
    let d = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("vm-run-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

fn isol_vm(
    kernel: &Path,
    run_dir: &Path,
    env: &[(&str, &str)],
    args: &[&str],
    stdin: &[u8],
) -> Output {
    require_root();
    support::kvm_kind(); // fails loudly without /dev/kvm
    let mut cmd = Command::new(support::isol_bin());
    cmd.args(["run", "--mode", "vm", "--kernel"])
        .arg(kernel)
        .args(args);
    cmd.env("ISOL_VM_ALLOW_PVM", "1")
        .env("ISOL_RUN_DIR", run_dir);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot spawn {cmd:?}: {e}"));
    let mut input = child.stdin.take().expect("stdin is piped");
    let data = stdin.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = std::io::Write::write_all(&mut input, &data);
    });
    let out = child
        .wait_with_output()
        .unwrap_or_else(|e| panic!("cannot wait for {cmd:?}: {e}"));
    let _ = writer.join();
    out
}

/// Asserts the run used `d` (isol made `d/vm`) and left nothing in it: a missing directory
/// fails too, as it would mean the check looked in the wrong place.
fn assert_empty_run_dir(d: &Path) {
    let vm = d.join("vm");
    let left: Vec<_> = std::fs::read_dir(&vm)
        .unwrap_or_else(|e| panic!("{}: {e}: the run did not use this run dir", vm.display()))
        .flatten()
        .map(|e| e.path())
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");
    let _ = std::fs::remove_dir_all(d);
}

/// Asserts a run refused before it started made nothing at all in its run dir `d`.
fn assert_run_dir_untouched(d: &Path) {
    assert!(!d.exists(), "a refused run wrote {}", d.display());
}

#[test]
fn vm_channel_streams_stdin_eof_and_exit_code() {
    if skip("vm_channel_streams_stdin_eof_and_exit_code") {
        return;
    }
    let rd = run_dir("echo");
    let mut input: Vec<u8> = (0..=255u8).collect();
    input.extend_from_slice(b"\r\n\0end");
    input.extend(std::iter::repeat_n(b'x', 70_000)); // more than the 64 KiB stdin buffer
    let o = isol_vm(&guest("echo"), &rd, &[], &["--", "true"], &input);
    assert_code(&o, 7);
    assert_eq!(&o.stdout[..4], b"out\n");
    assert!(
        o.stdout[4..] == input[..],
        "stdin did not come back byte-exact ({} bytes)",
        o.stdout.len() - 4
    );
    assert_eq!(stderr(&o), "err\n");
    assert_empty_run_dir(&rd);
}

#[test]
fn vm_channel_timeout_counts_from_start_and_exits_124() {
    if skip("vm_channel_timeout_counts_from_start_and_exits_124") {
        return;
    }
    let rd = run_dir("spin");
    let o = isol_vm(
        &guest("spin"),
        &rd,
        &[],
        &["--timeout", "1", "--", "true"],
        b"",
    );
    assert_code(&o, 124);
    assert_eq!(stdout(&o), "started\n");
    assert_eq!(
        stderr(&o),
        "isol: timeout expired; the workload was killed\n"
    );
    assert_empty_run_dir(&rd);
}

#[test]
fn vm_channel_guest_without_report_is_125_with_console_tail() {
    if skip("vm_channel_guest_without_report_is_125_with_console_tail") {
        return;
    }
    // A guest that prints on the console and resets without ever using the channel.
    let src = support::repo_root().join("vmm/tests/guests");
    let out = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("vmm-guests-{}", std::process::id()));
    let st = Command::new(src.join("build.sh"))
        .arg(&out)
        .status()
        .unwrap();
    assert!(st.success(), "vmm/tests/guests/build.sh failed");
    let rd = run_dir("reset");
    let o = isol_vm(&out.join("hello-raw.bin"), &rd, &[], &["--", "true"], b"");
    assert_code(&o, 125);
    let err = stderr(&o);
    assert!(
        err.contains("without reporting") && err.contains("the guest reset"),
        "{err}"
    );
    assert!(
        err.contains("Hello from isol tiny guest"),
        "no console tail: {err}"
    );
    assert!(o.stdout.is_empty(), "the console leaked to stdout");
    // A guest that never reports at all: the boot watchdog ends it.
    let o = isol_vm(
        &out.join("spin"),
        &rd,
        &[("ISOL_VM_BOOT_TIMEOUT", "1")],
        &["--", "true"],
        b"",
    );
    assert_code(&o, 125);
    assert!(
        stderr(&o).contains("did not start within 1 s"),
        "{}",
        stderr(&o)
    );
    assert_empty_run_dir(&rd);
    let _ = std::fs::remove_dir_all(&out);
}

#[test]
fn vm_channel_too_many_volumes_refused_before_boot() {
    if skip("vm_channel_too_many_volumes_refused_before_boot") {
        return;
    }
    let rd = run_dir("vols");
    let vol = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    let specs: Vec<String> = (0..14)
        .map(|i| format!("{}:/v{i}:ro", vol.display()))
        .collect();
    let mut args: Vec<&str> = Vec::new();
    for v in &specs {
        args.extend(["--volume", v.as_str()]);
    }
    args.extend(["--", "true"]);
    let o = isol_vm(&guest("echo"), &rd, &[], &args, b"");
    assert_code(&o, 125);
    assert!(stderr(&o).contains("at most 13 volumes"), "{}", stderr(&o));
    assert_run_dir_untouched(&rd);
}

#[test]
fn vm_channel_missing_guest_init_is_explained() {
    if skip("vm_channel_missing_guest_init_is_explained") {
        return;
    }
    let rd = run_dir("noinit");
    let o = isol_vm(
        &guest("echo"),
        &rd,
        &[("ISOL_GUEST_INIT", "/nonexistent/init")],
        &["--", "true"],
        b"",
    );
    assert_code(&o, 125);
    assert!(
        stderr(&o).contains("No static guest init"),
        "{}",
        stderr(&o)
    );
    assert_run_dir_untouched(&rd);
}
