//! The VMM's jail, black-box: the process that runs the machine (the bare VMM of `isol
//! boot` on a tiny guest, directly on /dev/kvm; a real VM through `isol run --mode vm`,
//! in the nested lab on PVM hosts) is a child of isol whose `/proc/<pid>/root` is its
//! empty jail (not `/`), in its own mount, pid, ipc, uts and net namespaces, seeing no
//! host process, with no_new_privs, an unprivileged uid and the capabilities the design
//! keeps (none for the bare VMM; CHOWN, DAC_OVERRIDE, FOWNER when it serves shares), in
//! its own cgroup, every thread still under its seccomp filter; nothing of it is left
//! after the run ends, after a SIGKILL of the VMM, or after a SIGKILL of isol and `isol
//! gc`. `--vmm-jail off` runs the VMM in isol's own process with a loud warning.

mod support;

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use support::{
    assert_code, in_lab, kvm_kind, lab_command, skip_privileged, stderr, stdout, KvmKind,
};

/// The jails' uid range (vmm/src/jail.rs JAIL_ID_BASE).
const JAIL_ID_BASE: u64 = 0x7000_0000;

fn guest(name: &str) -> String {
    let path = support::guests::vmm_guest("vmm-jail-guests", name);
    path.to_string_lossy().into_owned()
}

fn read(p: impl AsRef<Path>) -> String {
    std::fs::read_to_string(p).unwrap_or_default()
}

use support::guests::vmm_of;

/// `(comm, Seccomp)` of every thread of `pid`.
fn threads(pid: u32) -> Vec<(String, String)> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    tasks
        .flatten()
        .map(|t| {
            let comm = read(t.path().join("comm")).trim().to_string();
            let status = read(t.path().join("status"));
            let sc = field(&status, "Seccomp");
            (comm, sc)
        })
        .collect()
}

fn field(status: &str, name: &str) -> String {
    status
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{name}:")))
        .map(|v| v.trim().to_string())
        .unwrap_or_default()
}

/// A running `isol boot` of the halting tiny guest (2 vCPUs) and its VMM process, once
/// all VMM threads exist and are under their filters (watchdog: 30 s, then the test
/// fails on what it saw).
struct Booted {
    child: Child,
    vmm: u32,
}

fn boot(extra: &[&str]) -> Booted {
    let _ = kvm_kind();
    let kernel = guest("halt");
    let mut args = vec!["boot", "--allow-pvm", "--cpus", "2", "--timeout", "120"];
    args.extend_from_slice(extra);
    args.extend_from_slice(&["--kernel", &kernel]);
    let child = Command::new(support::isol_bin())
        .args(&args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn isol boot");
    let until = Instant::now() + Duration::from_secs(30);
    let mut vmm = child.id();
    while Instant::now() < until {
        vmm = vmm_of(child.id());
        let seen = threads(vmm);
        let names: Vec<&str> = seen.iter().map(|t| t.0.as_str()).collect();
        let started = ["isol-vcpu0", "isol-vcpu1", "isol-signals"]
            .iter()
            .all(|n| names.contains(n));
        if started && seen.iter().all(|t| t.1 == "2") {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Booted { child, vmm }
}

fn signal(pid: u32, sig: i32) {
    // SAFETY: kill(2) of a pid this test started (or its child); no memory involved.
    unsafe { libc::kill(i32::try_from(pid).expect("pid"), sig) };
}

/// Waits (watchdog: 30 s) until `pid` is gone; whether it went.
fn gone(pid: u32) -> bool {
    let until = Instant::now() + Duration::from_secs(30);
    while Instant::now() < until {
        let state = field(&read(format!("/proc/{pid}/status")), "State");
        // A zombie leader is gone once its other threads (vCPUs tearing the VM down,
        // still in the VMM's cgroup) have exited too.
        let threads = std::fs::read_dir(format!("/proc/{pid}/task")).map_or(0, |d| d.count());
        if state.is_empty() || (state.starts_with('Z') && threads <= 1) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

/// The run's name (`<isol pid>-<nanos>`) from the VMM's cgroup path `.../isol-vmm/NAME`.
fn run_name(vmm: u32) -> Option<String> {
    read(format!("/proc/{vmm}/cgroup")).lines().find_map(|l| {
        l.split_once("/isol-vmm/")
            .map(|(_, n)| n.trim().to_string())
    })
}

/// Everything of run `name` that exists: its run directory and cgroup directories.
fn leftovers(name: &str) -> Vec<PathBuf> {
    let run_dir =
        std::env::var_os("ISOL_RUN_DIR").map_or_else(|| "/run/isol".into(), PathBuf::from);
    let mut found = vec![run_dir.join("vm").join(name)];
    let out = Command::new("find")
        .args([
            "/sys/fs/cgroup",
            "-maxdepth",
            "6",
            "-type",
            "d",
            "-name",
            name,
        ])
        .output()
        .expect("find");
    found.extend(stdout(&out).lines().map(PathBuf::from));
    found.into_iter().filter(|p| p.exists()).collect()
}

#[test]
fn test_boot_vmm_runs_jailed_without_privileges() {
    if skip_privileged("test_boot_vmm_runs_jailed_without_privileges") {
        return;
    }
    let b = boot(&[]);
    let (isol, vmm) = (b.child.id(), b.vmm);
    let status = read(format!("/proc/{vmm}/status"));
    let mut root: Vec<String> = std::fs::read_dir(format!("/proc/{vmm}/root"))
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    root.sort();
    let root_meta = std::fs::metadata(format!("/proc/{vmm}/root")).expect("root");
    let host_meta = std::fs::metadata("/").expect("/");
    let pids: Vec<String> = std::fs::read_dir(format!("/proc/{vmm}/root/proc"))
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.chars().all(|c| c.is_ascii_digit()))
                .collect()
        })
        .unwrap_or_default();
    let ns: BTreeMap<&str, bool> = ["mnt", "pid", "ipc", "uts", "net"]
        .into_iter()
        .map(|n| {
            let theirs = std::fs::read_link(format!("/proc/{vmm}/ns/{n}")).ok();
            let ours = std::fs::read_link(format!("/proc/self/ns/{n}")).ok();
            (n, theirs.is_some() && theirs != ours)
        })
        .collect();
    let seen = threads(vmm);
    let name = run_name(vmm);
    signal(isol, libc::SIGTERM);
    let out = b.child.wait_with_output().expect("wait for isol boot");

    assert_ne!(vmm, isol, "the VMM runs in a process of its own");
    assert_eq!(root, ["dev", "kernel", "proc"], "the VMM's / is its jail");
    assert_ne!(
        (root_meta.dev(), root_meta.ino()),
        (host_meta.dev(), host_meta.ino()),
        "/proc/{vmm}/root is not the host's /"
    );
    assert_eq!(pids, ["1"], "the VMM sees no host process");
    assert_eq!(field(&status, "NSpid"), format!("{vmm}\t1"), "{status}");
    assert!(ns.values().all(|&own| own), "own namespaces: {ns:?}");
    for cap in ["CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"] {
        assert_eq!(field(&status, cap), "0000000000000000", "{cap}: {status}");
    }
    assert_eq!(field(&status, "NoNewPrivs"), "1", "{status}");
    let uid: Vec<u64> = field(&status, "Uid")
        .split_whitespace()
        .map(|u| u.parse().unwrap())
        .collect();
    assert!(
        uid.iter().all(|&u| u >= JAIL_ID_BASE),
        "unprivileged: {status}"
    );
    assert_eq!(field(&status, "Groups"), "", "{status}");
    assert!(seen.len() >= 4, "main, signals and two vCPUs: {seen:?}");
    assert!(
        seen.iter().all(|t| t.1 == "2"),
        "all under seccomp: {seen:?}"
    );
    let name = name.expect("the VMM is in its own isol-vmm cgroup");
    assert_code(&out, 128 + libc::SIGTERM);
    assert_eq!(stderr(&out), "");
    assert_eq!(leftovers(&name), Vec::<PathBuf>::new(), "nothing left");
}

#[test]
fn test_boot_sigkill_of_isol_kills_the_vmm_and_gc_removes_the_rest() {
    if skip_privileged("test_boot_sigkill_of_isol_kills_the_vmm_and_gc_removes_the_rest") {
        return;
    }
    let mut b = boot(&[]);
    let (isol, vmm) = (b.child.id(), b.vmm);
    assert_ne!(vmm, isol, "the VMM runs in a process of its own");
    let name = run_name(vmm).expect("the VMM's cgroup");
    signal(isol, libc::SIGKILL);
    let _ = b.child.wait();
    assert!(gone(vmm), "the VMM dies with isol");
    assert!(
        !leftovers(&name).is_empty(),
        "a killed isol leaves its run behind"
    );
    let gc = support::run_raw(&["gc"], b"");
    assert_code(&gc, 0);
    assert!(stdout(&gc).contains(&name), "{}", stdout(&gc));
    assert_eq!(
        leftovers(&name),
        Vec::<PathBuf>::new(),
        "isol gc removed all"
    );
}

#[test]
fn test_boot_sigkill_of_the_vmm_is_an_error_and_leaves_nothing() {
    if skip_privileged("test_boot_sigkill_of_the_vmm_is_an_error_and_leaves_nothing") {
        return;
    }
    let b = boot(&[]);
    let (isol, vmm) = (b.child.id(), b.vmm);
    assert_ne!(vmm, isol, "the VMM runs in a process of its own");
    let name = run_name(vmm).expect("the VMM's cgroup");
    signal(vmm, libc::SIGKILL);
    let out = b.child.wait_with_output().expect("wait for isol boot");
    assert_code(&out, 125);
    assert!(
        stderr(&out).contains("was killed by signal 9 (SIGKILL)"),
        "{}",
        stderr(&out)
    );
    assert_eq!(leftovers(&name), Vec::<PathBuf>::new(), "nothing left");
}

#[test]
fn test_boot_vmm_jail_off_warns_and_runs_in_isol() {
    if skip_privileged("test_boot_vmm_jail_off_warns_and_runs_in_isol") {
        return;
    }
    let b = boot(&["--vmm-jail", "off"]);
    let (isol, vmm) = (b.child.id(), b.vmm);
    let root = std::fs::read_link(format!("/proc/{vmm}/root")).ok();
    signal(isol, libc::SIGTERM);
    let out = b.child.wait_with_output().expect("wait for isol boot");
    assert_eq!(vmm, isol, "no jailed child");
    assert_eq!(root.as_deref(), Some(Path::new("/")));
    assert!(
        stderr(&out).contains("WARNING: --vmm-jail off"),
        "{}",
        stderr(&out)
    );
    assert_code(&out, 128 + libc::SIGTERM);
}

/// Runs where VMs run (the lab's L1 on PVM hosts): `isol run --mode vm` with a volume,
/// waits for the workload's first line, prints what /proc shows of the VMM (isol's child,
/// or isol itself), SIGKILLs isol, waits for the VMM to go, then `isol gc`, and lists
/// what is left of the run.
const LOOK: &str = r#"
set -u
isol=$1; d=$(mktemp -d -p /dev/shm); mkdir "$d/vol"
mkfifo "$d/in"; exec 3<>"$d/in"
"$isol" run --mode vm --volume "$d/vol:/v" -- sh -c 'echo hi > /v/f; chown 1234:99 /v/f; echo started; exec sleep 600' <"$d/in" >"$d/out" 2>"$d/err" &
p=$!
i=0
while ! grep -q started "$d/out" 2>/dev/null && kill -0 $p 2>/dev/null && [ $i -lt 2000 ]; do sleep 0.2; i=$((i+1)); done
grep -q started "$d/out" || { echo "NOT-STARTED"; cat "$d/out" "$d/err"; }
v=$(cat /proc/$p/task/$p/children | cut -d' ' -f1); [ -n "$v" ] || v=$p
echo "VMM $v ISOL $p"
echo "ROOT $(ls /proc/$v/root | tr '\n' ' ')"
echo "SHARES $(ls /proc/$v/root/shares | tr '\n' ' ')"
echo "VMM-SEES $(ls -A /proc/$v/root/shares/0 /proc/$v/root/shares/1 | grep -v '^/proc' | grep . | wc -l)"
echo "PIDS $(ls /proc/$v/root/proc | grep -E '^[0-9]+$' | tr '\n' ' ')"
for n in mnt pid ipc uts net; do [ "$(readlink /proc/$v/ns/$n)" != "$(readlink /proc/self/ns/$n)" ] && echo "OWNNS $n"; done
grep -E '^(Uid|Cap|NoNewPrivs|NSpid)' /proc/$v/status
f=$(cat /proc/$v/task/$v/children | cut -d' ' -f1)
echo "FS $f"
[ -n "$f" ] && grep -E '^(Uid|Cap|NoNewPrivs|NSpid|Seccomp)' /proc/$f/status | sed 's/^/FS-/'
[ -n "$f" ] && echo "FS-SEES $(ls /proc/$f/root/shares/1 | tr '\n' ' ')"
[ -n "$f" ] && echo "FS-FDS $(ls -l /proc/$f/fd | grep -c -E 'kvm|anon_inode')"
echo "FILE $(stat -c '%u:%g' "$d/vol/f")"
name=$(sed -n 's|.*/isol-vmm/||p' /proc/$v/cgroup | head -1); echo "NAME $name"
grep -H '^Seccomp:' /proc/$v/task/*/status
kill -KILL $p; wait $p
i=0; while [ -d /proc/$v ] && [ $i -lt 300 ]; do sleep 0.1; i=$((i+1)); done
[ -d /proc/$v ] && echo "VMM-ALIVE"
echo "BEFORE-GC $(ls -d ${ISOL_RUN_DIR:-/run/isol}/vm/$name 2>/dev/null)"
"$isol" gc
echo "AFTER-GC $(ls -d ${ISOL_RUN_DIR:-/run/isol}/vm/$name 2>/dev/null) $(find /sys/fs/cgroup -maxdepth 6 -type d -name "$name" 2>/dev/null | tr '\n' ' ')"
exec 3>&-
cat "$d/err" >&2; rm -rf "$d"
"#;

fn line<'a>(text: &'a str, key: &str) -> &'a str {
    text.lines()
        .find_map(|l| l.strip_prefix(key))
        .unwrap_or_else(|| panic!("no {key:?} line in:\n{text}"))
        .trim()
}

#[test]
fn test_vm_vmm_runs_jailed_and_nothing_survives_a_killed_isol() {
    if skip_privileged("test_vm_vmm_runs_jailed_and_nothing_survives_a_killed_isol") {
        return;
    }
    let isol = support::isol_bin();
    let mut cmd = if !in_lab() && kvm_kind() == KvmKind::Pvm {
        lab_command()
    } else {
        Command::new("env")
    };
    cmd.args(["sh", "-c", LOOK, "look"]).arg(&isol);
    let out: Output = support::run_lab_retrying_lab_failures(&mut cmd, b"");
    let text = stdout(&out);
    let ctx = format!("{text}\n{}", stderr(&out));
    let ids = line(&text, "VMM ");
    let (vmm, isol_pid) = ids.split_once(" ISOL ").expect("ids");
    assert_ne!(vmm, isol_pid, "the VMM runs in a process of its own: {ctx}");
    assert_eq!(
        line(&text, "ROOT "),
        "dev initramfs kernel proc shares",
        "{ctx}"
    );
    assert_eq!(line(&text, "SHARES "), "0 1", "{ctx}");
    // The shares are the file server's: unmounted from the VMM's own mount namespace.
    assert_eq!(line(&text, "VMM-SEES "), "0", "{ctx}");
    // Itself and its file server, no host process.
    assert_eq!(line(&text, "PIDS "), "1 2", "sees no host process: {ctx}");
    let own: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("OWNNS "))
        .collect();
    assert_eq!(own, ["mnt", "pid", "ipc", "uts", "net"], "{ctx}");
    // The VMM holds no capability at all, in any set.
    for cap in ["CapInh:", "CapPrm:", "CapEff:", "CapBnd:", "CapAmb:"] {
        assert_eq!(line(&text, cap), "0000000000000000", "{cap} {ctx}");
    }
    assert_eq!(line(&text, "NoNewPrivs:"), "1", "{ctx}");
    let uid_of = |key: &str| -> u64 {
        let uids: Vec<u64> = line(&text, key)
            .split_whitespace()
            .map(|u| u.parse().unwrap())
            .collect();
        assert!(uids.iter().all(|&u| u == uids[0]), "{key} {ctx}");
        uids[0]
    };
    let uid = uid_of("Uid:");
    assert!(uid >= JAIL_ID_BASE, "unprivileged uid: {ctx}");
    // Its file server: serving shares keeps CHOWN, DAC_OVERRIDE and FOWNER, nothing
    // else, under another unprivileged uid, its own seccomp filter, no KVM fd.
    assert!(
        !line(&text, "FS ").is_empty(),
        "a file server process: {ctx}"
    );
    for cap in ["FS-CapPrm:", "FS-CapEff:", "FS-CapBnd:"] {
        assert_eq!(line(&text, cap), "000000000000000b", "{cap} {ctx}");
    }
    assert_eq!(line(&text, "FS-CapAmb:"), "0000000000000000", "{ctx}");
    assert_eq!(line(&text, "FS-NoNewPrivs:"), "1", "{ctx}");
    assert_eq!(line(&text, "FS-Seccomp:"), "2", "{ctx}");
    let fs_uid = uid_of("FS-Uid:");
    assert!(fs_uid >= JAIL_ID_BASE && fs_uid != uid, "{ctx}");
    assert_eq!(line(&text, "FS-SEES "), "f", "{ctx}");
    assert_eq!(line(&text, "FS-FDS "), "0", "no KVM or guest fd: {ctx}");
    assert!(
        line(&text, "NSpid:").ends_with("\t1"),
        "pid 1 of its own: {ctx}"
    );
    // The 9P server still creates files and chowns them for the guest.
    assert_eq!(line(&text, "FILE "), "1234:99", "{ctx}");
    assert!(!line(&text, "NAME ").is_empty(), "its own cgroup: {ctx}");
    let seccomp: Vec<&str> = text.lines().filter(|l| l.contains("Seccomp:")).collect();
    assert!(seccomp.len() >= 5, "{ctx}");
    assert!(seccomp.iter().all(|l| l.ends_with("\t2")), "{ctx}");
    assert!(!text.contains("VMM-ALIVE"), "the VMM dies with isol: {ctx}");
    assert!(!line(&text, "BEFORE-GC").is_empty(), "{ctx}");
    assert_eq!(line(&text, "AFTER-GC"), "", "isol gc removed all: {ctx}");
}
