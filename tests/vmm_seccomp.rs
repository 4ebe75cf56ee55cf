//! The VMM's per-thread seccomp filters, black-box: every thread of a running `isol`
//! (the bare VMM on a tiny guest, directly on any /dev/kvm; a real VM through `isol run
//! --mode vm`, in the nested lab on PVM hosts) shows `Seccomp: 2` in
//! `/proc/<pid>/task/<tid>/status`, guest-driven work (every kind of 9P operation on a
//! volume) stays inside the filters, and `--vmm-seccomp off` leaves the threads unconfined
//! with a loud warning.

mod support;

use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use support::{
    assert_code, in_lab, kvm_kind, lab_command, run_isol, skip_privileged, stderr, stdout, KvmKind,
    Mode,
};

fn guest(name: &str) -> String {
    let path = support::guests::vmm_guest("vmm-seccomp-guests", name);
    path.to_string_lossy().into_owned()
}

use support::guests::vmm_of;

/// `comm Seccomp` for every thread of `pid`.
fn thread_lines(pid: u32) -> Vec<(String, String)> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    let mut all = Vec::new();
    for t in tasks.flatten() {
        let comm = std::fs::read_to_string(t.path().join("comm")).unwrap_or_default();
        let status = std::fs::read_to_string(t.path().join("status")).unwrap_or_default();
        let seccomp = status
            .lines()
            .find_map(|l| l.strip_prefix("Seccomp:"))
            .map(|v| v.trim().to_string())
            .unwrap_or_default();
        all.push((comm.trim().to_string(), seccomp));
    }
    all
}

/// Starts `isol boot` on the halting tiny guest with 2 vCPUs and `extra` flags; waits
/// until its VMM threads exist and `settled` holds for them (or 20 s), returns what
/// /proc showed, then ends it with SIGTERM and returns its output.
fn boot_and_look(
    extra: &[&str],
    settled: fn(&[(String, String)]) -> bool,
) -> (Vec<(String, String)>, Output) {
    let _ = kvm_kind();
    let kernel = guest("halt");
    let mut args = vec!["boot", "--allow-pvm", "--cpus", "2", "--timeout", "60"];
    args.extend_from_slice(extra);
    args.extend_from_slice(&["--kernel", &kernel]);
    let child: Child = Command::new(support::isol_bin())
        .args(&args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn isol boot");
    let until = Instant::now() + Duration::from_secs(20);
    let mut seen = Vec::new();
    while Instant::now() < until {
        seen = thread_lines(vmm_of(child.id()));
        let names: Vec<&str> = seen.iter().map(|t| t.0.as_str()).collect();
        let started = ["isol-vcpu0", "isol-vcpu1", "isol-signals"]
            .iter()
            .all(|n| names.contains(n));
        if started && settled(&seen) {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    // SAFETY: kill(2) on our own child's pid; no memory is involved.
    unsafe { libc::kill(i32::try_from(child.id()).expect("pid"), libc::SIGTERM) };
    let out = child.wait_with_output().expect("wait for isol boot");
    (seen, out)
}

#[test]
fn test_boot_every_vmm_thread_runs_under_seccomp() {
    if skip_privileged("test_boot_every_vmm_thread_runs_under_seccomp") {
        return;
    }
    let (seen, out) = boot_and_look(&[], |t| t.iter().all(|t| t.1 == "2"));
    assert_code(&out, 128 + libc::SIGTERM);
    assert!(
        seen.iter().any(|t| t.0 == "isol"),
        "no main thread: {seen:?}"
    );
    assert!(seen.len() >= 4, "main, signals and two vCPUs: {seen:?}");
    for (comm, seccomp) in &seen {
        assert_eq!(
            seccomp, "2",
            "thread {comm} is not under its filter: {seen:?}"
        );
    }
    assert_eq!(stderr(&out), "", "no seccomp report, no warning");
}

#[test]
fn test_boot_vmm_seccomp_off_warns_and_leaves_threads_unconfined() {
    if skip_privileged("test_boot_vmm_seccomp_off_warns_and_leaves_threads_unconfined") {
        return;
    }
    let (seen, out) = boot_and_look(&["--vmm-seccomp", "off"], |_| true);
    assert_code(&out, 128 + libc::SIGTERM);
    assert!(
        stderr(&out).contains("WARNING: --vmm-seccomp off"),
        "{}",
        stderr(&out)
    );
    let vmm: Vec<_> = seen.iter().filter(|t| t.0.starts_with("isol")).collect();
    assert!(vmm.len() >= 4, "{seen:?}");
    assert!(vmm.iter().all(|t| t.1 == "0"), "{seen:?}");
}

#[test]
fn test_boot_refuses_an_unknown_vmm_seccomp_value() {
    let out = support::run_raw(
        &["boot", "--vmm-seccomp", "maybe", "--kernel", "/nonexistent"],
        b"",
    );
    assert_ne!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stderr(&out).contains("maybe"), "{}", stderr(&out));
}

/// Runs in the lab's L1 (or directly on hardware KVM): starts `isol run --mode vm` with a
/// stdin that stays open (a FIFO on the L1's own tmpfs: the 9p-shared /tmp has none),
/// waits for the workload's first line, prints every thread's comm and Seccomp line of the
/// VMM process (isol's jailed child; isol itself without the jail) (one
/// grep each: spawning a process per thread is slow under emulation), then sends isol
/// SIGTERM (forwarded to the workload) and prints `EXIT code`.
const LOOK: &str = r#"
set -u
isol=$1; d=$(mktemp -d -p /dev/shm)
mkfifo "$d/in"; exec 3<>"$d/in"
"$isol" run --mode vm -- sh -c 'echo started; exec sleep 600' <"$d/in" >"$d/out" 2>"$d/err" &
p=$!
i=0
while ! grep -q started "$d/out" 2>/dev/null && [ $i -lt 3000 ]; do sleep 0.2; i=$((i+1)); done
v=$(cat /proc/$p/task/$p/children | cut -d' ' -f1); [ -n "$v" ] || v=$p
grep -H '' /proc/$v/task/*/comm
grep -H '^Seccomp:' /proc/$v/task/*/status
kill -TERM $p
wait $p; echo "EXIT $?"
exec 3>&-
cat "$d/out"; cat "$d/err" >&2; rm -rf "$d"
"#;

/// `(comm, Seccomp)` per thread from LOOK's two greps
/// (`/proc/P/task/T/comm:NAME`, `/proc/P/task/T/status:Seccomp:\tN`).
fn parse_look(text: &str) -> Vec<(String, String)> {
    let tid = |l: &str| l.split('/').nth(4).map(str::to_string);
    let mut comm = std::collections::BTreeMap::new();
    let mut seccomp = std::collections::BTreeMap::new();
    for l in text.lines().filter(|l| l.starts_with("/proc/")) {
        if let (Some(t), Some((_, v))) = (tid(l), l.split_once("/comm:")) {
            comm.insert(t, v.to_string());
        } else if let (Some(t), Some((_, v))) = (tid(l), l.split_once("Seccomp:")) {
            seccomp.insert(t, v.trim().to_string());
        }
    }
    comm.into_iter()
        .map(|(t, c)| (c, seccomp.get(&t).cloned().unwrap_or_default()))
        .collect()
}

#[test]
fn test_vm_every_vmm_thread_runs_under_seccomp() {
    if skip_privileged("test_vm_every_vmm_thread_runs_under_seccomp") {
        return;
    }
    let isol = support::isol_bin();
    let mut cmd = if !in_lab() && kvm_kind() == KvmKind::Pvm {
        lab_command()
    } else {
        Command::new("env")
    };
    cmd.args(["sh", "-c", LOOK, "look"]).arg(&isol);
    let out = support::run_lab_retrying_lab_failures(&mut cmd, b"");
    assert_code(&out, 0);
    let text = stdout(&out);
    // SIGTERM reached the workload: 128 + 15.
    assert!(
        text.contains("EXIT 143\nstarted\n"),
        "{text}\n{}",
        stderr(&out)
    );
    let threads = parse_look(&text);
    for name in [
        "isol",
        "isol-vcpu0",
        "isol-virtio0",
        "isol-stdin",
        "isol-signals",
        "isol-watchdog",
    ] {
        assert!(
            threads.iter().any(|t| t.0 == name),
            "no {name} thread: {threads:?}"
        );
    }
    for (comm, seccomp) in &threads {
        assert_eq!(seccomp, "2", "{comm} is not under its filter: {threads:?}");
    }
}

/// Every kind of 9P request the guest's v9fs sends on a read-write volume: walk, create,
/// read, write, readdir, rename, link, symlink, readlink, setattr (mode, owner, size,
/// times), mknod (a FIFO: whether the server grants it is not this test's business),
/// statfs, fsync, unlink, rmdir.
const NINE_P_OPS: &str =
    "set -e; cd /v; mkdir -p d/e; echo hello > d/f; cat d/f; ls -la d >/dev/null; \
    mv d/f d/g; ln d/g d/h; ln -s g d/s; readlink d/s; chmod 600 d/g; chown 1:1 d/g; \
    truncate -s 100 d/g; dd if=/dev/zero of=d/big bs=64k count=20 2>/dev/null; \
    { mkfifo d/p 2>/dev/null || true; }; \
    stat d/g >/dev/null; df /v >/dev/null; sync d/g; touch -d 2020-01-01 d/g; \
    rm -f d/h d/s d/big d/p; mv d/e d/e2; rmdir d/e2; ls -l d; exit 3";

#[test]
fn test_vm_9p_operations_of_every_kind_pass_the_filters() {
    if skip_privileged("test_vm_9p_operations_of_every_kind_pass_the_filters") {
        return;
    }
    let dir = tempfile::tempdir_in("/tmp").expect("temp dir");
    let vol = format!("{}:/v", dir.path().display());
    let out = run_isol(
        Mode::Vm,
        &["--volume", &vol, "--", "sh", "-c", NINE_P_OPS],
        b"",
    );
    assert_code(&out, 3);
    assert!(!stderr(&out).contains("seccomp"), "{}", stderr(&out));
    assert!(stdout(&out).starts_with("hello\ng\n"), "{}", stdout(&out));
    let g = std::fs::metadata(dir.path().join("d/g")).expect("d/g on the host");
    assert_eq!(g.len(), 100);
}
