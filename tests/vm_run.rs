//! Black-box tests of what is specific to `isol run --mode vm`: the channel cannot be
//! forged, SIGTERM and SIGINT reach the workload, a SIGKILLed isol leaves only what
//! `isol gc` removes, boot failures are explained, volumes served over virtio-9p stay
//! confined to their directory, nothing is left behind. The CLI contract itself (streams,
//! stdin, exit codes, limits, env, ...) is checked in both modes by tests/contract_*.rs and
//! tests/parity.rs, so it is not repeated here. On a PVM host these run inside the nested
//! lab (tests/lab/run.sh); on hardware KVM directly.

mod support;

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
        let mut c = support::lab_command();
        c.arg("/bin/sh").arg("-c").arg(script).arg("sh").arg(isol);
        return support::run_lab_retrying_lab_failures(&mut c, b"");
    }
    let mut cmd = Command::new("/bin/sh");
    cmd.arg("-c").arg(script).arg("sh").arg(isol);
    cmd.output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"))
}

/// Builds tests/vm_guests/ioperm-probe.c (static) into a fresh directory under /tmp (the lab
/// shares /tmp with the host), to be mounted as a volume.
fn ioperm_probe() -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix("isol-probe")
        .tempdir_in("/tmp")
        .expect("a temp dir under /tmp");
    let src = support::repo_root().join("tests/vm_guests/ioperm-probe.c");
    let st = Command::new("cc")
        .args(["-static", "-O2", "-o"])
        .arg(dir.path().join("ioperm-probe"))
        .arg(&src)
        .status()
        .unwrap_or_else(|e| panic!("cannot run cc (apt-get install build-essential): {e}"));
    assert!(st.success(), "cannot build {}", src.display());
    std::fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .expect("chmod the probe dir");
    dir
}

#[test]
fn vm_workload_cannot_forge_status_or_reach_ports() {
    if skip("vm_workload_cannot_forge_status_or_reach_ports") {
        return;
    }
    // Text that looks like a report changes nothing; CAP_SYS_RAWIO (bit 17) is gone, so
    // the workload's ioperm() of the channel's ports and iopl() fail with EPERM; exit 3 is
    // what isol returns.
    let probe = ioperm_probe();
    let vol = format!("{}:/probe:ro", probe.path().display());
    let s =
        "printf 'ISOL-EXIT Exited(0) 0x1000000\\n'; grep -E '^Cap(Bnd|Eff)' /proc/self/status; \
             /probe/ioperm-probe; exit 3";
    let o = vm(&["--volume", &vol, "--", "sh", "-c", s], b"");
    assert_code(&o, 3);
    assert_eq!(
        stdout(&o),
        "ISOL-EXIT Exited(0) 0x1000000\nCapEff:\t00000000a80425fb\nCapBnd:\t00000000a80425fb\n\
         ioperm=-1 Operation not permitted\niopl=-1 Operation not permitted\n"
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
    assert_eq!(stdout(&o), "rc=125\n", "stderr: {}", stderr(&o));
    let err = stderr(&o);
    // The console's last lines are there, with what busybox's init printed on it (not just
    // the words of isol's message).
    assert!(
        err.contains("did not start within 30 s") && err.contains("last console lines:"),
        "{err}"
    );
    assert!(
        err.contains("  | Please press Enter to activate this console."),
        "no console tail from the guest: {err}"
    );
}

#[test]
fn vm_volumes_served_over_9p_stay_confined() {
    if skip("vm_volumes_served_over_9p_stay_confined") {
        return;
    }
    // Under /tmp: the nested lab shares /tmp with the host read-write (not the target dir).
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    // World-writable, so uid 1000 may create a file below (tempdir makes it 0700).
    std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
    // Host-side traps: a symlink out of the volume, and a FIFO.
    std::os::unix::fs::symlink("/etc", dir.join("escape")).unwrap();
    let fifo = std::ffi::CString::new(dir.join("fifo").to_str().unwrap()).unwrap();
    // SAFETY: mkfifo with a valid C string.
    assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o644) }, 0);
    let rw = format!("{}:/data", dir.display());
    // The symlink resolves inside the guest (the rootfs's /etc has no apt/); the FIFO is a
    // pipe inside the guest (the server never opens it on the host); no device nodes are
    // made on the host; a 5 MB file round-trips intact; and a file made by uid 1000
    // belongs to uid 1000 on the host.
    let script = "readlink /data/escape; grep ^ID= /data/escape/os-release; ls /data/escape/ | grep -c '^apt$'; \
                  (echo through-fifo > /data/fifo &); timeout 5 cat /data/fifo; \
                  mknod /data/null c 1 3 2>/dev/null || echo mknod-refused; \
                  head -c 5000000 /dev/urandom > /tmp/r; cp /tmp/r /data/big; cmp /tmp/r /data/big && echo same; \
                  md5sum < /data/big";
    let o = vm(&["--volume", &rw, "--", "sh", "-c", script], b"");
    assert_code(&o, 0);
    let out = stdout(&o);
    let lines: Vec<&str> = out.lines().collect();
    // The link is served as a link and resolves to the rootfs's /etc (busybox's os-release,
    // no apt/), never the host's.
    assert_eq!(
        &lines[..6],
        [
            "/etc",
            "ID=isol-busybox",
            "0",
            "through-fifo",
            "mknod-refused",
            "same"
        ],
        "{out}"
    );
    let host_sum = Command::new("md5sum")
        .stdin(std::fs::File::open(dir.join("big")).unwrap())
        .output()
        .unwrap();
    assert_eq!(
        lines[6],
        String::from_utf8_lossy(&host_sum.stdout).trim_end()
    );
    let o = vm(
        &[
            "--volume",
            &rw,
            "--user",
            "1000:100",
            "--",
            "sh",
            "-c",
            "echo u > /data/u",
        ],
        b"",
    );
    assert_code(&o, 0);
    let meta = std::fs::metadata(dir.join("u")).unwrap();
    use std::os::unix::fs::MetadataExt;
    assert_eq!((meta.uid(), meta.gid()), (1000, 100));
    assert!(!dir.join("null").exists() && std::fs::read_link(dir.join("escape")).is_ok());
}

#[test]
fn vm_rootfs_served_over_9p_larger_than_guest_ram_left_untouched() {
    if skip("vm_rootfs_served_over_9p_larger_than_guest_ram_left_untouched") {
        return;
    }
    // A rootfs with a 3 GiB (sparse) file, far more than the guest's RAM at --memory 64M:
    // served over virtio-9p, never packed. Hard links stay one file; writes (also to a file
    // of the rootfs) go to the tmpfs over it and are gone after the run. Writing one name
    // of a hard link copies that name up and leaves the other as it was: overlayfs does
    // that in container mode too.
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    std::fs::create_dir_all(root.join("bin")).unwrap();
    std::fs::copy("/bin/busybox", root.join("bin/busybox")).unwrap();
    for applet in ["sh", "stat", "tail", "od", "cat", "echo"] {
        std::os::unix::fs::symlink("busybox", root.join("bin").join(applet)).unwrap();
    }
    std::fs::write(root.join("a"), b"orig\n").unwrap();
    std::fs::hard_link(root.join("a"), root.join("b")).unwrap();
    let big = std::fs::File::create(root.join("big")).unwrap();
    big.set_len(3 << 30).unwrap();
    drop(big);
    std::fs::OpenOptions::new()
        .append(true)
        .open(root.join("big"))
        .and_then(|mut f| std::io::Write::write_all(&mut f, b"end"))
        .unwrap();
    let script = "stat -c %s /big; tail -c 3 /big; echo; \
                  [ $(stat -c %i /a) = $(stat -c %i /b) ] && echo linked; \
                  echo changed > /a; cat /b; echo new > /new; cat /new";
    let rootfs = root.to_str().unwrap();
    let o = vm(
        &[
            "--rootfs", rootfs, "--memory", "64M", "--", "/bin/sh", "-c", script,
        ],
        b"",
    );
    assert_code(&o, 0);
    assert_eq!(
        stdout(&o),
        "3221225475\nend\nlinked\norig\nnew\n",
        "stderr: {}",
        stderr(&o)
    );
    assert_eq!(std::fs::read(root.join("a")).unwrap(), b"orig\n");
    assert!(!root.join("new").exists());
}

#[test]
fn vm_thirteen_volumes_each_served_on_its_own_irq() {
    if skip("vm_thirteen_volumes_each_served_on_its_own_irq") {
        return;
    }
    // The most VM mode takes: with the rootfs, 14 virtio-mmio devices, the last eight on
    // IOAPIC pins 16-23 (above the legacy IRQs; the MP table routes them).
    let tmp = tempfile::tempdir().unwrap();
    let dirs: Vec<String> = (0..13)
        .map(|i| {
            let d = tmp.path().join(format!("d{i}"));
            std::fs::create_dir(&d).unwrap();
            std::fs::write(d.join("f"), format!("{i}\n")).unwrap();
            format!("{}:/v{i}:ro", d.display())
        })
        .collect();
    let mut args: Vec<&str> = Vec::new();
    for d in &dirs {
        args.extend(["--volume", d.as_str()]);
    }
    args.extend(["--", "sh", "-c", "cat /v*/f | sort -n | tr '\\n' ' '"]);
    let o = vm(&args, b"");
    assert_code(&o, 0);
    assert_eq!(stdout(&o), "0 1 2 3 4 5 6 7 8 9 10 11 12 ");
}

#[test]
fn vm_runs_leave_nothing_behind() {
    if skip("vm_runs_leave_nothing_behind") {
        return;
    }
    // A private run directory: other tests may run VMs in the same lab at the same time.
    // Each run ends as it should, the run directory was used (isol made vm/ in it), and it
    // is empty afterwards.
    let s = r#"ISOL_RUN_DIR=$(mktemp -d); export ISOL_RUN_DIR; "$1" run --mode vm -- true; echo "rc=$?"
"$1" run --mode vm -- no-such-cmd 2>/dev/null; echo "rc=$?"
"$1" run --mode vm --timeout 1 -- sleep 9 2>/dev/null; echo "rc=$?"
[ -d "$ISOL_RUN_DIR/vm" ] && echo vm-dir-made; ls -A "$ISOL_RUN_DIR/vm" | wc -l; rm -rf "$ISOL_RUN_DIR""#;
    let o = script(s);
    assert_eq!(
        stdout(&o),
        "rc=0\nrc=127\nrc=124\nvm-dir-made\n0\n",
        "stderr: {}",
        stderr(&o)
    );
}

#[test]
fn vm_sigint_reaches_trap_and_sigkill_of_isol_leaves_nothing() {
    if skip("vm_sigint_reaches_trap_and_sigkill_of_isol_leaves_nothing") {
        return;
    }
    // SIGINT to isol reaches the workload's trap (exit 42). Then a SIGKILLed isol takes its
    // VM with it (the vCPUs are its threads); `isol gc` removes the run directory it left.
    let s = r#"ISOL_RUN_DIR=$(mktemp -d); export ISOL_RUN_DIR; out=$(mktemp)
wait_ready() { i=0; until grep -q ready "$out"; do sleep 0.2; i=$((i+1)); [ $i -gt 1500 ] && break; done; }
"$1" run --mode vm -- sh -c 'trap "echo got-int; exit 42" INT; echo ready; while :; do sleep 0.1; done' >"$out" &
pid=$!; wait_ready; kill -INT $pid; wait $pid; echo "rc=$?"; cat "$out"; : >"$out"
"$1" run --mode vm -- sh -c 'echo ready; exec sleep 1000' >"$out" &
pid=$!; wait_ready; kill -KILL $pid; wait $pid; echo "rc=$?"
ls -A "$ISOL_RUN_DIR/vm" | wc -l; "$1" gc >/dev/null; ls -A "$ISOL_RUN_DIR/vm" | wc -l
rm -rf "$ISOL_RUN_DIR" "$out""#;
    let o = script(s);
    assert_eq!(
        stdout(&o),
        "rc=42\nready\ngot-int\nrc=137\n1\n0\n",
        "stderr: {}",
        stderr(&o)
    );
}
