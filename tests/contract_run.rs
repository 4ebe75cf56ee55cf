//! Black-box tests of `isol run` (root), each run in both modes: streams, stdin, env, cwd,
//! hostname, user, rootfs protection, read-only root, volumes, network, exec failures,
//! bad input.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns

mod support;

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use support::{assert_code, run_isol, stderr, stdout, Mode};

fn run(mode: Mode, args: &[&str]) -> std::process::Output {
    run_isol(mode, args, b"")
}

fn streams_separate_and_exit_code(mode: Mode) {
    let out = run(mode, &["--", "sh", "-c", "echo out; echo err >&2; exit 7"]);
    assert_code(&out, 7);
    assert_eq!(out.stdout, b"out\n");
    assert_eq!(out.stderr, b"err\n");
}

fn binary_stdin_stdout_round_trip(mode: Mode) {
    let data: Vec<u8> = (0..=255u8).cycle().take(300_000).collect();
    let out = run_isol(mode, &["--", "cat"], &data);
    assert_code(&out, 0);
    assert!(
        out.stdout == data,
        "stdout differs from stdin ({} vs {} bytes)",
        out.stdout.len(),
        data.len()
    );
    assert!(out.stderr.is_empty(), "{}", stderr(&out));
}

fn env_is_exactly_effective_env(mode: Mode) {
    let out = run(
        mode,
        &[
            "-e", "EMPTY=", "-e", "EQ=a=b=c", "-e", "HOME=/h", "--", "env",
        ],
    );
    assert_code(&out, 0);
    let text = stdout(&out);
    let mut lines: Vec<&str> = text.lines().collect();
    lines.sort_unstable();
    assert_eq!(
        lines,
        [
            "EMPTY=",
            "EQ=a=b=c",
            "HOME=/h",
            "HOSTNAME=isol",
            "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        ]
    );
}

fn cwd_hostname_and_user(mode: Mode) {
    let out = run(
        mode,
        &[
            "--workdir",
            "/var/tmp",
            "--hostname",
            "box.test",
            "--user",
            "1000:100",
            "--",
            "sh",
            "-c",
            "pwd; hostname; id -u; id -g; id -G; echo $HOME",
        ],
    );
    assert_code(&out, 0);
    assert_eq!(stdout(&out), "/var/tmp\nbox.test\n1000\n100\n100\n/\n");
}

fn capabilities_and_no_new_privs(mode: Mode) {
    let out = run(
        mode,
        &[
            "--",
            "sh",
            "-c",
            "grep -E '^(Cap|NoNewPrivs)' /proc/self/status",
        ],
    );
    assert_code(&out, 0);
    let s = stdout(&out);
    for want in [
        "CapBnd:\t00000000a80425fb",
        "CapEff:\t00000000a80425fb",
        "CapAmb:\t0000000000000000",
        "NoNewPrivs:\t1",
    ] {
        assert!(s.contains(want), "missing {want:?} in\n{s}");
    }
}

fn proc_sys_dev_tmp(mode: Mode) {
    let out = run(mode, &["--", "sh", "-c", "echo $$; ls /dev | tr '\\n' ' '; echo; cat /proc/mounts; echo x > /sys/kernel/x 2>/dev/null || echo sysro; echo acpi=$(ls -A /proc/acpi 2>/dev/null | wc -l) keys=$(cat /proc/keys 2>/dev/null | wc -c); echo t > /tmp/t && cat /tmp/t"]);
    assert_code(&out, 0);
    let s = stdout(&out);
    let mut lines = s.lines();
    // PID 1 is the container's init (signal forwarding, reaping); the workload is PID 2.
    assert_eq!(lines.next(), Some("2"), "{s}");
    // Exactly these device nodes, nothing more.
    let devs = "fd full mqueue null ptmx pts random shm stderr stdin stdout tty urandom zero ";
    assert_eq!(lines.next(), Some(devs), "{s}");
    assert!(s.contains(" /proc proc "), "{s}");
    assert!(s.contains(" /sys sysfs ro,"), "{s}");
    assert!(s.contains(" /tmp tmpfs "), "{s}");
    assert!(s.contains("/dev/pts devpts"), "{s}");
    assert!(s.contains(" /proc/sys proc ro,"), "{s}");
    // Masked paths: empty or absent (the guest kernel has no ACPI and no keyrings).
    assert!(s.contains("acpi=0 keys=0"), "masked: {s}");
    assert!(s.contains(" /sys/firmware tmpfs ro,"), "masked dir: {s}");
    assert!(s.contains(" /proc/timer_list "), "masked file: {s}");
    assert!(s.contains("sysro"), "{s}");
    assert!(s.ends_with("t\n"), "{s}");
}

/// A copy of the default rootfs this test owns, so it can check it byte for byte.
fn private_rootfs(tmp: &Path) -> PathBuf {
    let src = isol_common::rootfs::default_rootfs()
        .expect("default rootfs (apt-get install busybox-static)");
    let dst = tmp.join("rootfs");
    let st = std::process::Command::new("cp")
        .arg("-a")
        .arg(&src)
        .arg(&dst)
        .status()
        .unwrap();
    assert!(st.success());
    dst
}

/// Path -> (mode, uid, gid, size, mtime, content or link target) for every entry.
/// (mode, uid, gid, size, mtime, content or link target) of one entry.
type Entry = (u32, u32, u32, u64, i64, Vec<u8>);

fn manifest(root: &Path) -> BTreeMap<PathBuf, Entry> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(p) = stack.pop() {
        let m = fs::symlink_metadata(&p).unwrap();
        let content = if m.file_type().is_symlink() {
            fs::read_link(&p)
                .unwrap()
                .into_os_string()
                .into_encoded_bytes()
        } else if m.is_file() {
            fs::read(&p).unwrap()
        } else {
            for e in fs::read_dir(&p).unwrap() {
                stack.push(e.unwrap().path());
            }
            Vec::new()
        };
        out.insert(
            p.strip_prefix(root).unwrap().to_path_buf(),
            (m.mode(), m.uid(), m.gid(), m.size(), m.mtime(), content),
        );
    }
    out
}

fn rootfs_byte_identical_after_writes(mode: Mode) {
    let tmp = tempfile::tempdir().unwrap();
    let rootfs = private_rootfs(tmp.path());
    let before = manifest(&rootfs);
    let script = "echo new > /new; echo more >> /etc/passwd; rm /bin/ls; mkdir -p /a/b; chmod 700 /etc; touch /bin/sh; cat /new";
    let out = run(
        mode,
        &[
            "--rootfs",
            rootfs.to_str().unwrap(),
            "--",
            "sh",
            "-c",
            script,
        ],
    );
    assert_code(&out, 0);
    assert_eq!(stdout(&out), "new\n");
    assert!(manifest(&rootfs) == before, "the rootfs directory changed");
    // The next run starts from the pristine rootfs again.
    let out = run(
        mode,
        &[
            "--rootfs",
            rootfs.to_str().unwrap(),
            "--",
            "sh",
            "-c",
            "test ! -e /new && test -e /bin/ls",
        ],
    );
    assert_code(&out, 0);
}

fn read_only_root_tmp_writable(mode: Mode) {
    let tmp = tempfile::tempdir().unwrap();
    let rootfs = private_rootfs(tmp.path());
    let before = manifest(&rootfs);
    let out = run(
        mode,
        &[
            "--read-only",
            "--rootfs",
            rootfs.to_str().unwrap(),
            "--",
            "sh",
            "-c",
            "echo x > /x; echo rc=$?; echo y > /tmp/y && cat /tmp/y",
        ],
    );
    assert_code(&out, 0);
    assert_eq!(stdout(&out), "rc=1\ny\n");
    assert!(
        stderr(&out).contains("Read-only file system"),
        "{}",
        stderr(&out)
    );
    assert!(manifest(&rootfs) == before);
}

fn volumes_ro_and_rw(mode: Mode) {
    let tmp = tempfile::tempdir().unwrap();
    let (ro, rw) = (tmp.path().join("ro"), tmp.path().join("rw"));
    fs::create_dir_all(&ro).unwrap();
    fs::create_dir_all(&rw).unwrap();
    fs::write(ro.join("in"), "hello\n").unwrap();
    let v1 = format!("{}:/data/ro:ro", ro.display());
    let v2 = format!("{}:/rw", rw.display());
    let out = run(
        mode,
        &[
            "-v",
            &v1,
            "-v",
            &v2,
            "--",
            "sh",
            "-c",
            "cat /data/ro/in; echo no > /data/ro/x || echo ro-refused; echo out > /rw/out",
        ],
    );
    assert_code(&out, 0);
    assert_eq!(stdout(&out), "hello\nro-refused\n");
    assert_eq!(fs::read_to_string(rw.join("out")).unwrap(), "out\n");
    assert!(!ro.join("x").exists());
    // Read-only root with a volume whose mount point the rootfs lacks.
    let out = run(
        mode,
        &["--read-only", "-v", &v2, "--", "sh", "-c", "cat /rw/out"],
    );
    assert_code(&out, 0);
    assert_eq!(stdout(&out), "out\n");
}

fn network_loopback_only(mode: Mode) {
    let out = run(mode, &["--", "sh", "-c", "ls /sys/class/net; cat /sys/class/net/lo/operstate /sys/class/net/lo/flags; cat /proc/net/route | wc -l; ping -c1 -W1 127.0.0.1 >/dev/null && echo lo-ok; ping -c1 -W1 1.1.1.1 >/dev/null 2>&1 || echo no-route"]);
    assert_code(&out, 0);
    // Only lo, UP|LOOPBACK (0x9), no route besides /proc/net/route's header line.
    assert_eq!(stdout(&out), "lo\nunknown\n0x9\n1\nlo-ok\nno-route\n");
}

fn missing_command_127(mode: Mode) {
    let out = run(mode, &["--", "no-such-command"]);
    assert_code(&out, 127);
    assert!(
        stderr(&out).contains("no-such-command: command not found"),
        "{}",
        stderr(&out)
    );
}

fn not_executable_126(mode: Mode) {
    let out = run(mode, &["--", "/etc/passwd"]);
    assert_code(&out, 126);
    assert!(stderr(&out).contains("cannot execute"), "{}", stderr(&out));
}

fn path_lookup_uses_workload_path(mode: Mode) {
    // `env` is in /usr/bin of the busybox rootfs: found with the default PATH, not with PATH=/bin.
    assert_code(&run(mode, &["--", "env"]), 0);
    assert_code(&run(mode, &["-e", "PATH=/bin", "--", "env"]), 127);
}

fn bad_memory_125(mode: Mode) {
    let out = run(mode, &["--memory", "12 parsecs", "--", "true"]);
    assert_code(&out, 125);
    assert!(
        stderr(&out).contains("--memory") && stderr(&out).contains("is not a size"),
        "{}",
        stderr(&out)
    );
}

fn missing_rootfs_125(mode: Mode) {
    let out = run(mode, &["--rootfs", "/nonexistent/rootfs", "--", "true"]);
    assert_code(&out, 125);
    assert!(stderr(&out).contains("--rootfs"), "{}", stderr(&out));
}

/// A `--cpus` value above what isol may use wherever MODE runs: this host's CPUs, and the
/// nested lab's L1 vCPUs (`ISOL_LAB_CPUS`, 2 by default) for VM mode on a PVM host.
fn too_many_cpus(mode: Mode) -> String {
    let lab: usize = std::env::var("ISOL_LAB_CPUS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2);
    let most = match mode {
        Mode::Container => support::host_cpus(),
        Mode::Vm => support::host_cpus().max(lab),
    };
    (most + 1).to_string()
}

fn too_many_cpus_125_clear_message(mode: Mode) {
    let n = too_many_cpus(mode);
    let out = run(mode, &["--cpus", &n, "--", "true"]);
    assert_code(&out, 125);
    assert!(stderr(&out).contains("CPUs but only"), "{}", stderr(&out));
}

in_both_modes!(
    streams_separate_and_exit_code,
    binary_stdin_stdout_round_trip,
    env_is_exactly_effective_env,
    cwd_hostname_and_user,
    capabilities_and_no_new_privs,
    proc_sys_dev_tmp,
    rootfs_byte_identical_after_writes,
    read_only_root_tmp_writable,
    volumes_ro_and_rw,
    network_loopback_only,
    missing_command_127,
    not_executable_126,
    path_lookup_uses_workload_path,
    bad_memory_125,
    missing_rootfs_125,
    too_many_cpus_125_clear_message,
);
