//! Black-box tests of what is specific to `isol run --mode vm`: the channel cannot be
//! forged, SIGTERM reaches the workload, boot failures are explained, volumes, nothing is
//! left behind. Every behaviour of the CLI contract (streams, stdin, exit codes, limits,
//! env, ...) is checked in both modes by the parity suite, tests/parity.rs, so it is not
//! repeated here. On a PVM host these run inside the nested lab (tests/lab/run.sh); on
//! hardware KVM directly.

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
    if !in_lab() && kvm_kind() == KvmKind::Pvm {
        let mut c = Command::new(support::repo_root().join("tests/lab/run.sh"));
        c.arg("--")
            .arg("/bin/sh")
            .arg("-c")
            .arg(script)
            .arg("sh")
            .arg(isol);
        return support::run_lab_retrying_lab_failures(&mut c, b"");
    }
    let mut cmd = Command::new("/bin/sh");
    cmd.arg("-c").arg(script).arg("sh").arg(isol);
    cmd.output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"))
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
