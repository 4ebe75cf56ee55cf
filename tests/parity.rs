//! The parity suite: every behaviour of the CLI contract, one test body run in both
//! modes, asserting the expected result AND identical results across modes.
//!
//! VM mode runs directly on hardware KVM and inside the nested lab on PVM hosts (see
//! tests/support). Both modes are always run; nothing is skipped silently.
//!
//! # Intentional differences between the modes (the one documented list)
//! - The kernel the workload sees: the host's in container mode, isol's guest kernel in VM
//!   mode (`uname -r`, /proc/version, /proc/cpuinfo flags, /proc/meminfo totals).
//! - CPUs when `--cpus` is not given: the container sees all of the host's, the microVM
//!   gets one vCPU (with `--cpus N` both see `ceil(N)`, which the suite checks).
//! - Volumes and the rootfs in VM mode are served over 9P: creating device nodes in
//!   volumes is refused, file locks taken in the guest are not seen by host processes, and
//!   extended attributes (file capabilities among them) are not served.
//! - Timing: VM mode boots a kernel first, so start-up latency differs (see `isol compare`).
//! - Resource limits named neither by isol's defaults (`RLIMIT_NOFILE` 1024:1024) nor by the
//!   spec are isol's own (its caller's) in both modes: the CLI reads them on the host and
//!   both modes set them (no difference; the guest kernel's defaults never show). The
//!   process side of the sandbox (session,
//!   keyring, capabilities, no_new_privs, rlimits, oom_score_adj, umask, signals, fds,
//!   seccomp, exec lookup) is one implementation (isol-sandbox) and does not differ.
//! - The refusal of a hard rlimit above isol's own is decided by isol on the host side,
//!   from isol's own limits and capabilities, so it is the same rule in both modes.
//! - The host's terminal and session keyring exist only on the host: a VM-mode workload
//!   never shares them (container mode gets its own session and keyring instead).
//!
//! Anything else that differs is a bug, and a test here should catch it.

mod support;

use std::path::{Path, PathBuf};
use std::process::Output;

use support::{assert_code, run_isol, signal_after_ready, Mode};

/// Runs the same arguments and stdin in both modes.
fn both(args: &[&str], stdin: &[u8]) -> [(Mode, Output); 2] {
    [Mode::Container, Mode::Vm].map(|m| (m, run_isol(m, args, stdin)))
}

/// Asserts that both modes gave byte-identical stdout, stderr and exit status.
fn assert_same(outs: &[(Mode, Output); 2]) {
    let [(_, c), (_, v)] = outs;
    assert_eq!(
        c.status.code(),
        v.status.code(),
        "exit status differs: container {:?}, vm {:?}\nvm stderr: {}",
        c.status,
        v.status,
        String::from_utf8_lossy(&v.stderr)
    );
    assert!(
        c.stdout == v.stdout,
        "stdout differs ({} vs {} bytes)\ncontainer: {:?}\nvm: {:?}",
        c.stdout.len(),
        v.stdout.len(),
        trunc(&c.stdout),
        trunc(&v.stdout)
    );
    assert!(
        c.stderr == v.stderr,
        "stderr differs\ncontainer: {:?}\nvm: {:?}",
        trunc(&c.stderr),
        trunc(&v.stderr)
    );
}

fn trunc(b: &[u8]) -> String {
    String::from_utf8_lossy(&b[..b.len().min(600)]).into_owned()
}

fn check(outs: &[(Mode, Output); 2], code: i32, stdout: &[u8], stderr: &[u8]) {
    for (mode, o) in outs {
        assert_code(o, code);
        assert!(
            o.stdout == stdout,
            "{mode:?}: stdout {:?}, expected {:?}",
            trunc(&o.stdout),
            trunc(stdout)
        );
        assert!(
            o.stderr == stderr,
            "{mode:?}: stderr {:?}, expected {:?}",
            trunc(&o.stderr),
            trunc(stderr)
        );
    }
    assert_same(outs);
}

fn skip(name: &str) -> bool {
    support::skip_privileged(name)
}

#[test]
fn parity_streams_separate_and_exit_code() {
    if skip("parity_streams_separate_and_exit_code") {
        return;
    }
    let outs = both(&["--", "sh", "-c", "echo out; echo err >&2; exit 7"], b"");
    check(&outs, 7, b"out\n", b"err\n");
}

#[test]
fn parity_binary_stdin_round_trip_with_eof() {
    if skip("parity_binary_stdin_round_trip_with_eof") {
        return;
    }
    let mut data: Vec<u8> = (0..=255u8).collect();
    data.extend_from_slice(b"\r\n\0\r\r\n\x1b[0m\x04\x03 end");
    // `cat` returns only after EOF: this also proves EOF is delivered.
    let outs = both(
        &["--", "sh", "-c", "cat; cat /dev/null >&2; echo done >&2"],
        &data,
    );
    check(&outs, 0, &data, b"done\n");
}

#[test]
fn parity_large_output_both_streams() {
    if skip("parity_large_output_both_streams") {
        return;
    }
    // About 6.9 MB on stdout and 1.1 MB on stderr, interleaved by the workload.
    let outs = both(&["--", "sh", "-c", "seq 1 1000000; seq 1 200000 >&2"], b"");
    let expect: Vec<u8> = (1..=1_000_000)
        .flat_map(|i| format!("{i}\n").into_bytes())
        .collect();
    let expect_err: Vec<u8> = (1..=200_000)
        .flat_map(|i| format!("{i}\n").into_bytes())
        .collect();
    check(&outs, 0, &expect, &expect_err);
}

#[test]
fn parity_large_stdin_counted() {
    if skip("parity_large_stdin_counted") {
        return;
    }
    let data: Vec<u8> = (0..3_000_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    let outs = both(&["--", "wc", "-c"], &data);
    for (mode, o) in &outs {
        assert_code(o, 0);
        assert_eq!(
            String::from_utf8_lossy(&o.stdout).trim(),
            "3000000",
            "{mode:?}"
        );
    }
    assert_same(&outs);
}

#[test]
fn parity_exit_codes() {
    if skip("parity_exit_codes") {
        return;
    }
    for code in [0, 1, 2, 42, 125, 128, 200, 255] {
        let script = format!("exit {code}");
        let outs = both(&["--", "sh", "-c", &script], b"");
        check(&outs, code, b"", b"");
    }
}

#[test]
fn parity_death_by_signal() {
    if skip("parity_death_by_signal") {
        return;
    }
    for (sig, num) in [("TERM", 15), ("KILL", 9), ("SEGV", 11), ("INT", 2)] {
        let script = format!("kill -{sig} $$");
        let outs = both(&["--", "sh", "-c", &script], b"");
        check(&outs, 128 + num, b"", b"");
    }
}

#[test]
fn parity_timeout_124() {
    if skip("parity_timeout_124") {
        return;
    }
    let outs = both(
        &["--timeout", "2", "--", "sh", "-c", "echo started; sleep 60"],
        b"",
    );
    check(
        &outs,
        124,
        b"started\n",
        b"isol: timeout expired; the workload was killed\n",
    );
}

#[test]
fn parity_env_exact() {
    if skip("parity_env_exact") {
        return;
    }
    let outs = both(
        &[
            "--env", "A=1", "--env", "EMPTY=", "--env", "EQ=a=b=c", "--env", "SP=x y", "--", "env",
        ],
        b"",
    );
    for (mode, o) in &outs {
        assert_code(o, 0);
        let mut lines: Vec<&str> = std::str::from_utf8(&o.stdout)
            .expect("env prints text")
            .lines()
            .collect();
        lines.sort_unstable();
        let expect = [
            "A=1",
            "EMPTY=",
            "EQ=a=b=c",
            "HOME=/root",
            "HOSTNAME=isol",
            "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "SP=x y",
        ];
        // The shell-free `env` prints exactly the environment it got: nothing may leak in.
        assert_eq!(lines, expect, "{mode:?}");
    }
    assert_same(&outs);
}

#[test]
fn parity_cwd_hostname_user() {
    if skip("parity_cwd_hostname_user") {
        return;
    }
    let outs = both(
        &[
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
        ],
        b"",
    );
    check(&outs, 0, b"/tmp\nbox\n1000\n1001\n1001\n", b"");
}

#[test]
fn parity_read_only_root_tmp_writable() {
    if skip("parity_read_only_root_tmp_writable") {
        return;
    }
    let script = "touch /x 2>/dev/null && echo root-writable || echo root-ro; echo hi > /tmp/y && cat /tmp/y";
    let outs = both(&["--read-only", "--", "sh", "-c", script], b"");
    check(&outs, 0, b"root-ro\nhi\n", b"");
    let outs = both(&["--", "sh", "-c", script], b"");
    check(&outs, 0, b"root-writable\nhi\n", b"");
}

/// A private copy of the default rootfs where the lab can see it (not under /tmp, which
/// the lab replaces with its own tmpfs).
fn rootfs_copy(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("parity-rootfs-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let src = support::default_rootfs();
    let st = std::process::Command::new("cp")
        .arg("-a")
        .arg(&src)
        .arg(&dir)
        .status()
        .expect("cp runs");
    assert!(
        st.success(),
        "cannot copy {} to {}",
        src.display(),
        dir.display()
    );
    dir
}
/// Every path with its type, mode, size and content hash (or link target).
fn tree_digest(root: &Path) -> Vec<String> {
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg("cd \"$1\" && find . -printf '%p %y %m %s %l\\n' | sort && find . -type f -print0 | sort -z | xargs -0 sha256sum")
        .arg("sh")
        .arg(root)
        .output()
        .expect("sh runs");
    assert!(out.status.success());
    String::from_utf8(out.stdout)
        .expect("find and sha256sum print text")
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn parity_rootfs_untouched_by_writes() {
    if skip("parity_rootfs_untouched_by_writes") {
        return;
    }
    let root = rootfs_copy("untouched");
    let before = tree_digest(&root);
    let script = "echo new > /etc/new && echo more >> /etc/passwd && rm /bin/ls && mkdir /newdir && cat /etc/new";
    let outs = both(
        &[
            "--rootfs",
            root.to_str().expect("UTF-8 path"),
            "--",
            "sh",
            "-c",
            script,
        ],
        b"",
    );
    check(&outs, 0, b"new\n", b"");
    assert_eq!(before, tree_digest(&root), "the rootfs directory changed");
    let _ = std::fs::remove_dir_all(&root);
}

#[test]
fn parity_memory_limit() {
    if skip("parity_memory_limit") {
        return;
    }
    // busybox dd allocates its block size and fills it.
    let over = both(
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
    for (mode, o) in &over {
        assert_code(o, 137);
        assert!(o.stdout.is_empty(), "{mode:?}");
    }
    assert_same(&over);
    let under = both(
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
    check(&under, 0, b"ok\n", b"");
}

/// Limits the spec does not name are isol's own in both modes (the VM's guest kernel
/// defaults, 8192 KiB for both of these, never show): the caller lowers two soft limits
/// before it runs isol, and both modes' workloads see them, NOFILE still isol's 1024.
#[test]
fn parity_unnamed_rlimits_are_isols_own() {
    if skip("parity_unnamed_rlimits_are_isols_own") {
        return;
    }
    let isol = support::isol_bin();
    let outs = [Mode::Container, Mode::Vm].map(|m| {
        let argv: Vec<&std::ffi::OsStr> = [
            "sh".as_ref(),
            "-c".as_ref(),
            r#"ulimit -S -s 4321 && ulimit -S -l 77 && exec "$0" "$@""#.as_ref(),
            isol.as_os_str(),
            "run".as_ref(),
            "--mode".as_ref(),
            m.as_str().as_ref(),
        ]
        .into_iter()
        .chain(
            ["--", "sh", "-c", "ulimit -S -s; ulimit -S -l; ulimit -n"].map(std::ffi::OsStr::new),
        )
        .collect();
        (m, support::run_where_mode_runs(m, &argv, b""))
    });
    check(&outs, 0, b"4321\n77\n1024\n", b"");
}

#[test]
fn parity_pids_limit() {
    if skip("parity_pids_limit") {
        return;
    }
    // Ten background sleepers cannot all start under a limit of 6.
    let script = "for i in 1 2 3 4 5 6 7 8 9 10; do sleep 5 & done 2>/dev/null; echo all-started";
    // The failed fork ends busybox sh with status 2 (its message goes to /dev/null with the
    // loop's stderr): exactly that in both modes, not merely "some failure".
    let outs = both(
        &["--pids", "6", "--timeout", "30", "--", "sh", "-c", script],
        b"",
    );
    check(&outs, 2, b"", b"");
    let ok = both(
        &[
            "--pids",
            "20",
            "--",
            "sh",
            "-c",
            script.replace("sleep 5", "sleep 0").as_str(),
        ],
        b"",
    );
    check(&ok, 0, b"all-started\n", b"");
}

#[test]
fn parity_cpus_visible() {
    if skip("parity_cpus_visible") {
        return;
    }
    let outs = both(&["--cpus", "1", "--", "nproc"], b"");
    check(&outs, 0, b"1\n", b"");
    let outs = both(&["--cpus", "2", "--", "nproc"], b"");
    check(&outs, 0, b"2\n", b"");
    let outs = both(&["--cpus", "0.5", "--", "nproc"], b"");
    check(&outs, 0, b"1\n", b"");
}

#[test]
fn parity_loopback_only_network() {
    if skip("parity_loopback_only_network") {
        return;
    }
    let script = "ls /sys/class/net; cat /sys/class/net/lo/operstate; \
        ip route | wc -l; ping -c 1 -W 2 127.0.0.1 >/dev/null && echo loopback-ok";
    let outs = both(&["--", "sh", "-c", script], b"");
    check(&outs, 0, b"lo\nunknown\n0\nloopback-ok\n", b"");
}

#[test]
fn parity_command_not_found_127() {
    if skip("parity_command_not_found_127") {
        return;
    }
    let outs = both(&["--", "no-such-command"], b"");
    check(
        &outs,
        127,
        b"",
        b"isol: no-such-command: command not found in the root filesystem\n",
    );
}

#[test]
fn parity_not_executable_126() {
    if skip("parity_not_executable_126") {
        return;
    }
    let outs = both(&["--", "/etc/passwd"], b"");
    check(
        &outs,
        126,
        b"",
        b"isol: /etc/passwd: cannot execute (errno 13)\n",
    );
}

#[test]
fn parity_bad_spec_125_same_message() {
    if skip("parity_bad_spec_125_same_message") {
        return;
    }
    let outs = both(&["--memory", "12 parsecs", "--", "true"], b"");
    check(
        &outs,
        125,
        b"",
        b"isol: --memory: \"12 parsecs\" is not a size; use 64M, 1G or bytes\n",
    );
    let outs = both(&["--rootfs", "/nonexistent/rootfs", "--", "true"], b"");
    for (_, o) in &outs {
        assert_code(o, 125);
        assert!(String::from_utf8_lossy(&o.stderr).contains("--rootfs"));
    }
    assert_same(&outs);
}

#[test]
fn parity_signals_to_isol_reach_the_workloads_trap() {
    if skip("parity_signals_to_isol_reach_the_workloads_trap") {
        return;
    }
    // Each forwarded signal reaches the workload's trap, which names it and exits with its
    // own code: same output and status in both modes.
    for (sig, code) in [("TERM", 43), ("INT", 44), ("HUP", 45), ("QUIT", 46)] {
        let script = format!(
            "trap 'echo got-{sig}; exit {code}' {sig}; echo ready; while :; do sleep 0.05; done"
        );
        let outs = [Mode::Container, Mode::Vm]
            .map(|m| (m, signal_after_ready(m, sig, &["--", "sh", "-c", &script])));
        check(&outs, code, format!("ready\ngot-{sig}\n").as_bytes(), b"");
    }
}
