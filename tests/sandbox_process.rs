//! The workload process's sandbox, black-box (issue 11): its own session (no controlling
//! terminal of the caller's, so TIOCSTI cannot inject into the caller's terminal), a fresh
//! session keyring (keys of the caller's session are not readable), and the process
//! attributes set from the spec, identical in both modes (rlimits, capability sets,
//! no_new_privs, seccomp).
//!
//! The CVE-2019-5736 class: whatever process performs the workload's execve is never a
//! host binary (it is isol-sandbox's exec stub, from a sealed memfd), so a
//! `#!/proc/self/exe` interpreter cannot re-execute isol inside, and the init is
//! non-dumpable, so its `/proc/1/exe` (isol in container mode) is out of reach.
//!
//! The raw calls come from a tiny static C program (`PROBE_C`, built with `gcc -static`
//! at test time into a copy of the default rootfs). TIOCSTI and the keyring need the
//! caller's terminal and keyring, which only exist on this side of the lab: those two
//! run in container mode (the microVM shares neither with the host by construction).

#[allow(unused_imports)] // gate::skip_privileged is for the in_both_modes macro.
mod support;

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use support::{
    assert_code, default_rootfs, isol_bin, require_root, run_isol, run_ok, stderr, stdout, Mode,
};

/// `probe tiocsti`: pushes "x" into the input of the terminal on fd 0 (TIOCSTI).
/// `probe key`: reads the user key "isol-probe-key" from the session keyring.
const PROBE_C: &str = r#"
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>

static const char *name(int e) {
    switch (e) {
    case EPERM: return "EPERM";
    case EACCES: return "EACCES";
    case ENOKEY: return "ENOKEY";
    case ENOTTY: return "ENOTTY";
    case EIO: return "EIO";
    default: return "other";
    }
}

int main(int argc, char **argv) {
    if (argc > 1 && strcmp(argv[1], "tiocsti") == 0) {
        char c = 'x';
        if (ioctl(0, TIOCSTI, &c) < 0) printf("tiocsti %s\n", name(errno));
        else printf("tiocsti ok\n");
        return 0;
    }
    if (argc > 1 && strcmp(argv[1], "key") == 0) {
        /* KEYCTL_SEARCH = 10 in KEY_SPEC_SESSION_KEYRING = -3, then KEYCTL_READ = 11. */
        long id = syscall(SYS_keyctl, 10, -3, "user", "isol-probe-key", 0);
        if (id < 0) { printf("key %s\n", name(errno)); return 0; }
        char buf[64] = {0};
        long n = syscall(SYS_keyctl, 11, id, buf, sizeof buf - 1);
        if (n < 0) printf("key read %s\n", name(errno));
        else printf("key read %s\n", buf);
        return 0;
    }
    return 2;
}
"#;

/// Where test files go: under target/tmp, which the nested lab sees (its /tmp is its own).
fn scratch() -> PathBuf {
    let d = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("sandbox_process");
    std::fs::create_dir_all(&d).expect("create target/tmp/sandbox_process");
    d
}
/// A copy of the default rootfs with the probe at /bin/probe (built once per run).
fn probe_rootfs() -> &'static Path {
    static ROOT: OnceLock<PathBuf> = OnceLock::new();
    ROOT.get_or_init(|| {
        let dir = scratch().join("probe-rootfs");
        let _ = std::fs::remove_dir_all(&dir);
        run_ok(Command::new("cp").arg("-a").arg(default_rootfs()).arg(&dir));
        let src = scratch().join("probe.c");
        std::fs::write(&src, PROBE_C).expect("write probe.c");
        // gcc is a build dependency of the guest kernel (scripts/setup.sh installs it).
        // Re-executes "whatever /proc/self/exe is" at the workload's own execve.
        let reexec = dir.join("bin/reexec");
        std::fs::write(&reexec, "#!/proc/self/exe --version\n").expect("write bin/reexec");
        run_ok(Command::new("chmod").arg("755").arg(&reexec));
        run_ok(
            Command::new("gcc")
                .args(["-static", "-O1", "-o"])
                .arg(dir.join("bin/probe"))
                .arg(&src),
        );
        dir
    })
}

fn root_arg() -> String {
    probe_rootfs().to_str().expect("UTF-8 path").to_string()
}

/// A pty pair (master, slave), the slave in raw mode so one injected byte is readable.
fn openpty() -> (OwnedFd, OwnedFd) {
    let (mut m, mut s) = (-1, -1);
    // SAFETY: openpty writes two fds into the live locals; name/termios/winsize are null.
    let rc = unsafe {
        libc::openpty(
            &mut m,
            &mut s,
            std::ptr::null_mut(),
            std::ptr::null(),
            std::ptr::null(),
        )
    };
    assert_eq!(rc, 0, "openpty: {}", std::io::Error::last_os_error());
    // SAFETY: openpty just returned these fds; nothing else owns them.
    let (m, s) = unsafe { (OwnedFd::from_raw_fd(m), OwnedFd::from_raw_fd(s)) };
    // SAFETY: `t` is a live termios that tcgetattr fills and tcsetattr reads.
    unsafe {
        let mut t: libc::termios = std::mem::zeroed();
        assert_eq!(libc::tcgetattr(s.as_raw_fd(), &mut t), 0);
        libc::cfmakeraw(&mut t);
        assert_eq!(libc::tcsetattr(s.as_raw_fd(), libc::TCSANOW, &t), 0);
    }
    (m, s)
}

/// What is waiting in the terminal's input queue (bytes a reader of the slave would get).
fn pending_input(slave: &OwnedFd) -> Vec<u8> {
    let mut n: libc::c_int = 0;
    // SAFETY: FIONREAD writes one int into the live local.
    let rc = unsafe { libc::ioctl(slave.as_raw_fd(), libc::FIONREAD, &mut n) };
    assert_eq!(rc, 0, "FIONREAD: {}", std::io::Error::last_os_error());
    let mut buf = vec![0u8; usize::try_from(n).unwrap_or(0)];
    if !buf.is_empty() {
        // SAFETY: `buf` is writable for its length.
        let got = unsafe { libc::read(slave.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        buf.truncate(usize::try_from(got).unwrap_or(0));
    }
    buf
}

/// The workload gets isol's terminal as stdin, with that terminal as isol's controlling
/// terminal (as from an interactive shell); TIOCSTI on it must fail and inject nothing.
#[test]
fn tiocsti_cannot_inject_into_the_callers_terminal() {
    require_root();
    let root = root_arg();
    let (_master, slave) = openpty();
    let stdin = slave.try_clone().expect("dup the pty slave");
    let mut cmd = Command::new(isol_bin());
    cmd.args([
        "run",
        "--mode",
        "container",
        "--rootfs",
        &root,
        "--",
        "/bin/probe",
        "tiocsti",
    ])
    .stdin(Stdio::from(stdin))
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    // SAFETY: the closure only makes async-signal-safe system calls (setsid, ioctl).
    unsafe {
        cmd.pre_exec(|| {
            if libc::setsid() < 0 || libc::ioctl(0, libc::TIOCSCTTY, 0) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let out = cmd.output().expect("run isol");
    assert_code(&out, 0);
    let injected = pending_input(&slave);
    assert!(
        injected.is_empty(),
        "the workload injected {injected:?} into the caller's terminal; probe said {:?}",
        stdout(&out)
    );
    assert_eq!(stdout(&out), "tiocsti EPERM\n", "{}", stderr(&out));
}

/// A key host root adds to isol's session keyring is not readable by the workload, even
/// without seccomp (which denies keyctl by default and would hide the keyring itself).
#[test]
fn callers_session_keyring_not_shared() {
    require_root();
    let root = root_arg();
    let mut cmd = Command::new(isol_bin());
    cmd.args([
        "run",
        "--mode",
        "container",
        "--seccomp",
        "unconfined",
        "--rootfs",
        &root,
        "--",
        "/bin/probe",
        "key",
    ]);
    // SAFETY: the closure only makes system calls on static C strings: a new session
    // keyring for isol alone (so the test leaves none behind), then a key in it.
    unsafe {
        cmd.pre_exec(|| {
            let r = libc::syscall(
                libc::SYS_keyctl,
                libc::KEYCTL_JOIN_SESSION_KEYRING,
                std::ptr::null::<libc::c_char>(),
            );
            let k = libc::syscall(
                libc::SYS_add_key,
                c"user".as_ptr(),
                c"isol-probe-key".as_ptr(),
                c"secret".as_ptr(),
                6usize,
                libc::KEY_SPEC_SESSION_KEYRING,
            );
            if r < 0 || k < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let out = cmd.output().expect("run isol");
    assert_code(&out, 0);
    assert_eq!(stdout(&out), "key ENOKEY\n", "{}", stderr(&out));
}

/// The issue's parity check: capability sets, no_new_privs, seccomp and `ulimit -n`
/// print the same bytes in both modes (inheritable and ambient empty, NOFILE 1024).
#[test]
fn process_attributes_same_bytes_in_both_modes() {
    let cmd = r#"grep -E "Seccomp|NoNewPrivs|CapInh|CapAmb" /proc/self/status; ulimit -n"#;
    let want = "CapInh:\t0000000000000000\nCapAmb:\t0000000000000000\nNoNewPrivs:\t1\n\
                Seccomp:\t2\nSeccomp_filters:\t1\n1024\n";
    let c = run_isol(Mode::Container, &["--", "sh", "-c", cmd], b"");
    let v = run_isol(Mode::Vm, &["--", "sh", "-c", cmd], b"");
    assert_code(&c, 0);
    assert_code(&v, 0);
    assert_eq!(stdout(&c), want, "container");
    assert_eq!(stdout(&v), want, "vm");
}

/// `--ulimit` and `--oom-score-adj` reach the workload, the same in both modes, and the
/// default is never the caller's: the workload sees 1024:1024 open files.
#[test]
fn ulimit_and_oom_score_adj_from_flags_in_both_modes() {
    let cmd = "ulimit -Sn; ulimit -Hn; ulimit -c; cat /proc/self/oom_score_adj";
    let args = [
        "--ulimit",
        "nofile=64:128",
        "--ulimit",
        "core=0",
        "--oom-score-adj",
        "300",
        "--",
        "sh",
        "-c",
        cmd,
    ];
    for mode in [Mode::Container, Mode::Vm] {
        let out = run_isol(mode, &args, b"");
        assert_code(&out, 0);
        assert_eq!(
            stdout(&out),
            "64\n128\n0\n300\n",
            "{mode:?}: {}",
            stderr(&out)
        );
    }
}

/// A hard limit above isol's own cannot be given without CAP_SYS_RESOURCE (which root
/// lacks on this machine): a clear error naming the limit, exit 125, nothing started.
/// Container mode only: inside the lab, isol's own limits and capabilities differ.
#[test]
fn hard_limit_above_callers_is_isol_error() {
    require_root();
    let mut own = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes the live local.
    assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut own) }, 0);
    assert_ne!(
        own.rlim_max,
        libc::RLIM_INFINITY,
        "test needs a finite NOFILE hard limit"
    );
    let status = std::fs::read_to_string("/proc/self/status").expect("read status");
    let eff = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|h| u64::from_str_radix(h.trim(), 16).ok())
        .expect("CapEff");
    assert_eq!(
        eff & (1 << 24),
        0,
        "test needs a root without CAP_SYS_RESOURCE"
    );
    let flag = format!("nofile=1:{}", own.rlim_max + 1);
    let out = run_isol(Mode::Container, &["--ulimit", &flag, "--", "true"], b"");
    assert_code(&out, 125);
    let e = stderr(&out);
    assert!(e.contains("RLIMIT_NOFILE: hard limit"), "{e}");
    assert!(e.contains("CAP_SYS_RESOURCE"), "{e}");
}

/// A `#!/proc/self/exe` interpreter line at the workload's own execve runs the exec stub
/// again (which has nothing to run: 127), never isol (`isol --version`) or the guest init.
fn proc_self_exe_interpreter_is_not_a_host_binary(mode: Mode) {
    let root = root_arg();
    let out = run_isol(mode, &["--rootfs", &root, "--", "/bin/reexec"], b"");
    assert!(
        !stdout(&out).contains("isol"),
        "{mode:?}: the workload re-executed isol: {:?}",
        stdout(&out)
    );
    assert_code(&out, 127);
    assert_eq!(stdout(&out), "", "{mode:?}");
}

#[test]
fn proc_self_exe_interpreter_container() {
    proc_self_exe_interpreter_is_not_a_host_binary(Mode::Container);
}

#[test]
fn proc_self_exe_interpreter_vm() {
    proc_self_exe_interpreter_is_not_a_host_binary(Mode::Vm);
}

/// The workload cannot reach its init's executable through /proc/1/exe (isol itself in
/// container mode): chmod through it fails and the binary keeps its mode. Runs a copy of
/// isol, so that the old behaviour (chmod 4755 succeeds) cannot harm the binary under test.
#[test]
fn init_exe_unreachable_from_the_workload() {
    require_root();
    let copy = scratch().join("isol-copy");
    let _ = std::fs::remove_file(&copy);
    std::fs::copy(isol_bin(), &copy).expect("copy isol");
    run_ok(Command::new("chmod").arg("755").arg(&copy));
    let out = Command::new(&copy)
        .args(["run", "--mode", "container", "--", "sh", "-c"])
        .arg("chmod 4755 /proc/1/exe 2>/dev/null; echo chmod=$?; cat /proc/1/exe >/dev/null 2>&1; echo read=$?")
        .output()
        .expect("run the isol copy");
    assert_code(&out, 0);
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&copy)
        .expect("stat the copy")
        .permissions()
        .mode();
    assert_eq!(mode & 0o7777, 0o755, "the workload changed isol's mode");
    assert_eq!(stdout(&out), "chmod=1\nread=1\n");
}

/// The same from inside the microVM: its namespace init (the guest init) is out of reach.
#[test]
fn init_exe_unreachable_from_the_workload_vm() {
    let cmd = "chmod 4755 /proc/1/exe 2>/dev/null; echo chmod=$?; cat /proc/1/exe >/dev/null 2>&1; echo read=$?";
    let out = run_isol(Mode::Vm, &["--", "sh", "-c", cmd], b"");
    assert_code(&out, 0);
    assert_eq!(stdout(&out), "chmod=1\nread=1\n");
}

/// Lowering oom_score_adj below isol's own needs CAP_SYS_RESOURCE too: refused up front.
#[test]
fn oom_score_adj_below_callers_is_isol_error() {
    require_root();
    let own: i32 = std::fs::read_to_string("/proc/self/oom_score_adj")
        .expect("read oom_score_adj")
        .trim()
        .parse()
        .expect("a number");
    let want = (own - 1).to_string();
    let out = run_isol(
        Mode::Container,
        &["--oom-score-adj", &want, "--", "true"],
        b"",
    );
    assert_code(&out, 125);
    let e = stderr(&out);
    assert!(
        e.contains(&format!("oom_score_adj {want} is below isol's own")),
        "{e}"
    );
}
