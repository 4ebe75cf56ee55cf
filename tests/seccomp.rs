//! The workload's seccomp filter, black-box, in both modes: the default profile (Docker's)
//! is installed (`Seccomp: 2`), denies what Docker denies with its errno, lets ordinary
//! workloads run; `--seccomp unconfined` installs nothing; a `--seccomp FILE` profile's
//! own errno is what the workload sees; a bad profile is isol's error (125, field named).
//!
//! Raw syscalls busybox cannot make come from a tiny static C program (`PROBE_C`, built
//! with `gcc -static` at test time into a copy of the default rootfs).

mod support;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use support::{assert_code, default_rootfs, run_isol, run_ok, stderr, stdout, Mode};

/// Makes each raw syscall and prints `name errno` (`ok` on success), one per line.
const PROBE_C: &str = r#"
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <sched.h>
#include <unistd.h>
#include <sys/syscall.h>

static const char *name(int e) {
    switch (e) {
    case EPERM: return "EPERM";
    case EACCES: return "EACCES";
    case ENOSYS: return "ENOSYS";
    case EFAULT: return "EFAULT";
    case EINVAL: return "EINVAL";
    case EOPNOTSUPP: return "EOPNOTSUPP";
    default: return "other";
    }
}

static void show(const char *what, long r) {
    if (r < 0) printf("%s %s\n", what, name(errno));
    else printf("%s ok\n", what);
}

int main(void) {
    show("keyctl", syscall(SYS_keyctl, 0 /* GET_KEYRING_ID */, -3 /* session */, 1));
    show("io_uring_setup", syscall(SYS_io_uring_setup, 1, (void *)0));
    show("perf_event_open", syscall(SYS_perf_event_open, (void *)0, 0, -1, -1, 0));
    show("bpf", syscall(SYS_bpf, 0 /* MAP_CREATE */, (void *)0, 0));
    show("kexec_load", syscall(SYS_kexec_load, 0, 0, (void *)0, 0));
    show("mount", syscall(SYS_mount, "none", "/mnt", "tmpfs", 0, (void *)0));
    show("unshare", syscall(SYS_unshare, CLONE_NEWUSER));
    show("clone3", syscall(SYS_clone3, (void *)0, 0));
    show("x32_getpid", syscall(SYS_getpid | 0x40000000));
    show("getpid", syscall(SYS_getpid));
    return 0;
}
"#;

/// The probe's output under the default profile.
const DEFAULT_EXPECTED: &str = "keyctl EPERM\nio_uring_setup EPERM\nperf_event_open EPERM\n\
bpf EPERM\nkexec_load EPERM\nmount EPERM\nunshare EPERM\nclone3 ENOSYS\nx32_getpid EPERM\n\
getpid ok\n";

/// A deny-list profile: everything allowed but the probe's calls, which get EOPNOTSUPP.
const DENY_LIST: &str = r#"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
  {"names": ["keyctl", "io_uring_setup", "perf_event_open", "bpf", "kexec_load", "mount",
             "unshare", "clone3"],
   "action": "SCMP_ACT_ERRNO", "errnoRet": 95},
  {"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13}]}"#;

/// Where test files go: under target/tmp, which the nested lab sees (its /tmp is its own).
fn scratch() -> PathBuf {
    let d = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("seccomp");
    std::fs::create_dir_all(&d).expect("create target/tmp/seccomp");
    d
}

fn write_profile(name: &str, text: &str) -> String {
    let p = scratch().join(name);
    std::fs::write(&p, text).expect("write the profile");
    p.to_str().expect("UTF-8 path").to_string()
}
/// A copy of the default rootfs with the probe at /bin/scprobe (built once per run).
fn probe_rootfs() -> &'static Path {
    static ROOT: OnceLock<PathBuf> = OnceLock::new();
    ROOT.get_or_init(|| {
        let dir = scratch().join("probe-rootfs");
        let _ = std::fs::remove_dir_all(&dir);
        run_ok(
            std::process::Command::new("cp")
                .arg("-a")
                .arg(default_rootfs())
                .arg(&dir),
        );
        let src = scratch().join("probe.c");
        std::fs::write(&src, PROBE_C).expect("write probe.c");
        // gcc is a build dependency of the guest kernel (scripts/setup.sh installs it).
        run_ok(
            std::process::Command::new("gcc")
                .args(["-static", "-O1", "-o"])
                .arg(dir.join("bin/scprobe"))
                .arg(&src),
        );
        dir
    })
}

fn probe(mode: Mode, extra: &[&str]) -> std::process::Output {
    let root = probe_rootfs().to_str().expect("UTF-8 path").to_string();
    let mut args = vec!["--rootfs", root.as_str()];
    args.extend_from_slice(extra);
    args.extend_from_slice(&["--", "/bin/scprobe"]);
    run_isol(mode, &args, b"")
}

fn status_filter_default(mode: Mode) {
    let out = run_isol(mode, &["--", "grep", "Seccomp", "/proc/self/status"], b"");
    assert_code(&out, 0);
    assert_eq!(stdout(&out), "Seccomp:\t2\nSeccomp_filters:\t1\n");
}

fn status_unconfined(mode: Mode) {
    let args = [
        "--seccomp",
        "unconfined",
        "--",
        "grep",
        "Seccomp",
        "/proc/self/status",
    ];
    let out = run_isol(mode, &args, b"");
    assert_code(&out, 0);
    assert_eq!(stdout(&out), "Seccomp:\t0\nSeccomp_filters:\t0\n");
}

fn spec_file_security_seccomp(mode: Mode) {
    let spec = scratch().join("unconfined.toml");
    std::fs::write(&spec, "[security]\nseccomp = \"unconfined\"\n").expect("write spec");
    let spec = spec.to_str().expect("UTF-8 path");
    let args = [
        "--spec",
        spec,
        "--",
        "grep",
        "Seccomp:",
        "/proc/self/status",
    ];
    let out = run_isol(mode, &args, b"");
    assert_code(&out, 0);
    assert_eq!(stdout(&out), "Seccomp:\t0\n");
}

fn unshare_user_denied(mode: Mode) {
    let out = run_isol(mode, &["--", "unshare", "-U", "true"], b"");
    assert_code(&out, 1);
    assert!(
        stderr(&out).contains("Operation not permitted"),
        "{}",
        stderr(&out)
    );
    // The control: without the filter the same command works (container mode only: the
    // guest kernel has no user namespaces, so there unshare -U fails either way).
    if mode == Mode::Container {
        let args = ["--seccomp", "unconfined", "--", "unshare", "-U", "true"];
        assert_code(&run_isol(mode, &args, b""), 0);
    }
}

fn mount_denied(mode: Mode) {
    let out = run_isol(mode, &["--", "mount", "-t", "tmpfs", "none", "/mnt"], b"");
    assert_code(&out, 1);
    assert!(
        stderr(&out).contains("permission denied"),
        "{}",
        stderr(&out)
    );
}

fn probe_default_profile(mode: Mode) {
    let out = probe(mode, &[]);
    assert_code(&out, 0);
    assert_eq!(stdout(&out), DEFAULT_EXPECTED);
}

fn probe_file_profile_errno(mode: Mode) {
    let p = write_profile("deny-list.json", DENY_LIST);
    let out = probe(mode, &["--seccomp", &p]);
    assert_code(&out, 0);
    // The profile's own errno: the filter answers, not the kernel's capability checks.
    // x32 stays EPERM: other ABIs are refused whatever the profile says.
    assert_eq!(
        stdout(&out),
        "keyctl EOPNOTSUPP\nio_uring_setup EOPNOTSUPP\nperf_event_open EOPNOTSUPP\n\
bpf EOPNOTSUPP\nkexec_load EOPNOTSUPP\nmount EOPNOTSUPP\nunshare EOPNOTSUPP\n\
clone3 EOPNOTSUPP\nx32_getpid EPERM\ngetpid ok\n"
    );
}

fn probe_unconfined_keyctl_works(mode: Mode) {
    let out = probe(mode, &["--seccomp", "unconfined"]);
    assert_code(&out, 0);
    let text = stdout(&out);
    assert!(text.starts_with("keyctl ok\n"), "{text}");
    // The kernel's own answer, not the filter's (the guest kernel has no io_uring).
    assert!(text.contains("\nperf_event_open EFAULT\n"), "{text}");
}

fn file_profile_mkdir_eacces(mode: Mode) {
    let p = write_profile("deny-list.json", DENY_LIST);
    let out = run_isol(mode, &["--seccomp", &p, "--", "mkdir", "/tmp/x"], b"");
    assert_code(&out, 1);
    assert!(
        stderr(&out).contains("Permission denied"),
        "{}",
        stderr(&out)
    );
    let out = run_isol(mode, &["--seccomp", &p, "--", "sh", "-c", "echo ok"], b"");
    assert_code(&out, 0);
    assert_eq!(stdout(&out), "ok\n");
}

fn invalid_file_is_isol_error(mode: Mode) {
    let bad = r#"{"defaultAction": "SCMP_ACT_ALLOW",
                 "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_EPERM"}]}"#;
    let p = write_profile("bad-action.json", bad);
    let out = run_isol(mode, &["--seccomp", &p, "--", "true"], b"");
    assert_code(&out, 125);
    let err = stderr(&out);
    assert!(err.contains("syscalls[0].action"), "{err}");
    assert!(err.contains("SCMP_ACT_EPERM"), "{err}");
    let out = run_isol(
        mode,
        &["--seccomp", "/nonexistent/p.json", "--", "true"],
        b"",
    );
    assert_code(&out, 125);
    assert!(stderr(&out).contains("--seccomp"), "{}", stderr(&out));
}

fn ordinary_busybox_workload(mode: Mode) {
    let script = "ls / >/dev/null && cat /proc/self/stat >/dev/null && \
                  (sleep 0 & wait) && echo a | sort | wc -l && id -u";
    let out = run_isol(mode, &["--", "sh", "-c", script], b"");
    assert_code(&out, 0);
    assert_eq!(stdout(&out), "1\n0\n");
}

in_both_modes!(
    status_filter_default,
    status_unconfined,
    spec_file_security_seccomp,
    unshare_user_denied,
    mount_denied,
    probe_default_profile,
    probe_file_profile_errno,
    probe_unconfined_keyctl_works,
    file_profile_mkdir_eacces,
    invalid_file_is_isol_error,
    ordinary_busybox_workload,
);
