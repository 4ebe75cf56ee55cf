//! Black-box tests of `isol run --mode vm`: issue 4's "Done when" list and what is
//! specific to VM mode (the channel cannot be forged, boot failures are explained, nothing
//! is left behind). On a PVM host they run inside the nested lab (tests/lab/run.sh); on
//! hardware KVM directly. The parity suite (tests/parity.rs) compares both modes.

mod support;

use std::path::PathBuf;
use std::process::{Command, Output};

use support::{
    assert_code, in_lab, kvm_kind, require_root, run_isol, stderr, stdout, KvmKind, Mode,
};

fn skip(name: &str) -> bool {
    support::skip_privileged(name)
}

fn vm(args: &[&str], stdin: &[u8]) -> Output {
    run_isol(Mode::Vm, args, stdin)
}

/// Runs `sh -c SCRIPT sh ISOL` where VM mode works (inside the lab on a PVM host), for
/// tests that need more than one isol invocation or to signal isol.
fn script(script: &str) -> Output {
    require_root();
    let isol = support::isol_bin();
    let mut cmd = if !in_lab() && kvm_kind() == KvmKind::Pvm {
        let mut c = Command::new(support::repo_root().join("tests/lab/run.sh"));
        c.arg("--").arg("/bin/sh");
        c
    } else {
        Command::new("/bin/sh")
    };
    cmd.arg("-c").arg(script).arg("sh").arg(isol);
    cmd.output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"))
}

#[test]
fn vm_streams_separate_and_exit_code() {
    if skip("vm_streams_separate_and_exit_code") {
        return;
    }
    let o = vm(&["--", "sh", "-c", "echo out; echo err >&2; exit 7"], b"");
    assert_code(&o, 7);
    assert_eq!(stdout(&o), "out\n");
    assert_eq!(stderr(&o), "err\n");
}

#[test]
fn vm_binary_stdin_keeps_nul_and_eof() {
    if skip("vm_binary_stdin_keeps_nul_and_eof") {
        return;
    }
    let o = vm(&["--", "cat"], b"a\0b");
    assert_code(&o, 0);
    assert_eq!(o.stdout, b"a\0b");
}

#[test]
fn vm_memory_limit_kills_over_and_allows_under() {
    if skip("vm_memory_limit_kills_over_and_allows_under") {
        return;
    }
    let over = vm(
        &[
            "--memory",
            "64M",
            "--",
            "dd",
            "if=/dev/zero",
            "of=/dev/null",
            "bs=200M",
            "count=1",
        ],
        b"",
    );
    assert_code(&over, 137);
    let under = vm(
        &[
            "--memory",
            "64M",
            "--",
            "sh",
            "-c",
            "dd if=/dev/zero of=/dev/null bs=32M count=1 2>/dev/null && echo ok",
        ],
        b"",
    );
    assert_code(&under, 0);
    assert_eq!(stdout(&under), "ok\n");
}

#[test]
fn vm_cpus_gives_vcpus() {
    if skip("vm_cpus_gives_vcpus") {
        return;
    }
    let o = vm(&["--cpus", "2", "--", "nproc"], b"");
    assert_code(&o, 0);
    assert_eq!(stdout(&o), "2\n");
}

#[test]
fn vm_env_exact() {
    if skip("vm_env_exact") {
        return;
    }
    let o = vm(
        &[
            "--env",
            "A=x y",
            "--env",
            "EMPTY=",
            "--hostname",
            "box",
            "--user",
            "1000",
            "--",
            "env",
        ],
        b"",
    );
    assert_code(&o, 0);
    let mut lines: Vec<String> = stdout(&o).lines().map(str::to_string).collect();
    lines.sort();
    let expect = [
        "A=x y",
        "EMPTY=",
        "HOME=/",
        "HOSTNAME=box",
        "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    ];
    assert_eq!(lines, expect);
}

#[test]
fn vm_cwd_hostname_user() {
    if skip("vm_cwd_hostname_user") {
        return;
    }
    let args = [
        "--workdir",
        "/tmp",
        "--hostname",
        "box",
        "--user",
        "1000:1001",
        "--",
        "sh",
        "-c",
        "pwd; hostname; id -u; id -g; id -G",
    ];
    let o = vm(&args, b"");
    assert_code(&o, 0);
    assert_eq!(stdout(&o), "/tmp\nbox\n1000\n1001\n1001\n");
}

#[test]
fn vm_read_only_root_keeps_tmp_writable() {
    if skip("vm_read_only_root_keeps_tmp_writable") {
        return;
    }
    let s = "touch /x 2>/dev/null && echo rw || echo ro; echo hi > /tmp/y && cat /tmp/y";
    let o = vm(&["--read-only", "--", "sh", "-c", s], b"");
    assert_code(&o, 0);
    assert_eq!(stdout(&o), "ro\nhi\n");
}

#[test]
fn vm_timeout_124_after_output() {
    if skip("vm_timeout_124_after_output") {
        return;
    }
    let o = vm(
        &["--timeout", "2", "--", "sh", "-c", "echo started; sleep 60"],
        b"",
    );
    assert_code(&o, 124);
    assert_eq!(stdout(&o), "started\n");
    assert_eq!(
        stderr(&o),
        "isol: timeout expired; the workload was killed\n"
    );
}

#[test]
fn vm_exec_failures_127_and_126() {
    if skip("vm_exec_failures_127_and_126") {
        return;
    }
    let nf = vm(&["--", "no-such-command"], b"");
    assert_code(&nf, 127);
    assert_eq!(
        stderr(&nf),
        "isol: no-such-command: command not found in the root filesystem\n"
    );
    let ne = vm(&["--", "/etc/passwd"], b"");
    assert_code(&ne, 126);
    assert_eq!(
        stderr(&ne),
        "isol: /etc/passwd: cannot execute (errno 13)\n"
    );
}

#[test]
fn vm_workload_cannot_forge_status_or_reach_ports() {
    if skip("vm_workload_cannot_forge_status_or_reach_ports") {
        return;
    }
    // Text that looks like a report changes nothing; CAP_SYS_RAWIO (bit 17) is gone, so
    // the workload cannot ioperm the channel; exit 3 is what isol returns.
    let s = "printf 'ISOL-EXIT Exited(0) 0x1000000\\n'; grep -E '^Cap(Bnd|Eff)' /proc/self/status; exit 3";
    let o = vm(&["--", "sh", "-c", s], b"");
    assert_code(&o, 3);
    assert_eq!(
        stdout(&o),
        "ISOL-EXIT Exited(0) 0x1000000\nCapEff:\t00000000a80425fb\nCapBnd:\t00000000a80425fb\n"
    );
}

#[test]
fn vm_sigterm_reaches_workload() {
    if skip("vm_sigterm_reaches_workload") {
        return;
    }
    let s = r#"out=$(mktemp); "$1" run --mode vm -- sh -c 'trap "echo got-term; exit 42" TERM; echo ready; while :; do sleep 0.1; done' >"$out" &
pid=$!; i=0; until grep -q ready "$out"; do sleep 0.2; i=$((i+1)); [ $i -gt 1500 ] && break; done
kill -TERM $pid; wait $pid; echo "rc=$?"; cat "$out"; rm -f "$out""#;
    let o = script(s);
    assert_eq!(
        stdout(&o),
        "rc=42\nready\ngot-term\n",
        "stderr: {}",
        stderr(&o)
    );
}

#[test]
fn vm_boot_failure_is_explained_with_console_tail() {
    if skip("vm_boot_failure_is_explained_with_console_tail") {
        return;
    }
    // busybox as /init never talks to the channel: the watchdog gives up with 125.
    let s = r#"ISOL_GUEST_INIT=/bin/busybox ISOL_VM_BOOT_TIMEOUT=30 "$1" run --mode vm -- true; echo "rc=$?""#;
    let o = script(s);
    assert_eq!(stdout(&o), "rc=125\n");
    let err = stderr(&o);
    assert!(
        err.contains("did not start within 30 s") && err.contains("console"),
        "{err}"
    );
}

#[test]
fn vm_volumes_read_only_shipped_read_write_refused() {
    if skip("vm_volumes_read_only_shipped_read_write_refused") {
        return;
    }
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("vm-volume-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("f"), b"volume data\n").unwrap();
    let ro = format!("{}:/data:ro", dir.display());
    let o = vm(
        &[
            "--volume",
            &ro,
            "--",
            "sh",
            "-c",
            "cat /data/f; touch /data/g 2>/dev/null || echo ro",
        ],
        b"",
    );
    assert_code(&o, 0);
    assert_eq!(stdout(&o), "volume data\nro\n");
    let rw = format!("{}:/data", dir.display());
    let o = vm(&["--volume", &rw, "--", "true"], b"");
    assert_code(&o, 125);
    assert!(stderr(&o).contains("read-only volumes"), "{}", stderr(&o));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn vm_runs_leave_nothing_behind() {
    if skip("vm_runs_leave_nothing_behind") {
        return;
    }
    // A private run directory: other tests may run VMs in the same lab at the same time.
    let s = r#"ISOL_RUN_DIR=$(mktemp -d); export ISOL_RUN_DIR; "$1" run --mode vm -- true; "$1" run --mode vm -- no-such-cmd 2>/dev/null; "$1" run --mode vm --timeout 1 -- sleep 9 2>/dev/null
ls -A "$ISOL_RUN_DIR/vm" 2>/dev/null | wc -l; rm -rf "$ISOL_RUN_DIR""#;
    let o = script(s);
    assert_eq!(stdout(&o).trim(), "0", "stderr: {}", stderr(&o));
}
