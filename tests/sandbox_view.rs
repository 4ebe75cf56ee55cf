//! Black-box escape attempts against the workload's view (isol-sandbox `view`), as root
//! with real containers and, where it applies, the same body in VM mode:
//! - a rootfs whose /proc, /sys, /dev or /tmp is a symlink (to an absolute path of the
//!   host, e.g. isol's own predictable overlay mount point) or not a directory is refused
//!   with exit 125 and a message naming it, instead of isol mounting procfs elsewhere and
//!   skipping the masks (which left /proc/sys/kernel/core_pattern writable);
//! - device nodes the workload makes cannot be opened (root, /dev, /tmp are `nodev`), and
//!   the run's device cgroup refuses every device but the allow-list with EPERM: checked
//!   from the host by a process put into the run's cgroup that opens /dev/kvm and a disk
//!   node on the host's devtmpfs;
//! - volumes are `nosuid,nodev` in both modes.

mod support;

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use support::{assert_code, require_root, run_isol, stderr, stdout, Mode};

/// Where test files go: under target/tmp, which the nested lab sees.
fn scratch(name: &str) -> PathBuf {
    let d = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join("sandbox-view")
        .join(name);
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(d.parent().expect("a parent")).expect("create target/tmp/sandbox-view");
    d
}

/// A copy of the default rootfs at `dst`.
fn rootfs_copy(dst: &Path) {
    let src = isol_common::rootfs::default_rootfs()
        .expect("default rootfs (apt-get install busybox-static)");
    let st = Command::new("cp")
        .arg("-a")
        .arg(&src)
        .arg(dst)
        .status()
        .expect("cp runs");
    assert!(st.success(), "cp -a {} {}", src.display(), dst.display());
}

/// What a hostile rootfs can put where a mount point belongs.
fn replace(root: &Path, dir: &str, with: &str) {
    let p = root.join(dir);
    let _ = std::fs::remove_dir_all(&p);
    let _ = std::fs::remove_file(&p);
    match with {
        "file" => std::fs::write(&p, b"not a directory").expect("write a file"),
        target => std::os::unix::fs::symlink(target, &p).expect("make a symlink"),
    }
}

fn hostile_mount_points_refused(mode: Mode) {
    // Absolute host paths isol itself uses (container mode's records/overlay dir; the
    // guest init's overlay upper layer), a relative link, and a plain file.
    let cases = [
        ("proc", "/run/isol/container"),
        ("proc", "/isol/rw"),
        ("sys", "/proc"),
        ("dev", "../../dev"),
        ("tmp", "/etc"),
        ("tmp", "file"),
    ];
    // VM mode boots a guest per case: three of them cover a symlink to an absolute path,
    // a relative one and a file.
    let cases: Vec<_> = match mode {
        Mode::Container => cases.to_vec(),
        Mode::Vm => vec![cases[1], cases[3], cases[5]],
    };
    for (i, (dir, with)) in cases.iter().enumerate() {
        let root = scratch(&format!("hostile-{}-{i}", mode.as_str()));
        rootfs_copy(&root);
        replace(&root, dir, with);
        let r = root.to_str().expect("UTF-8 path");
        let out = run_isol(
            mode,
            &[
                "--rootfs",
                r,
                "--",
                "sh",
                "-c",
                "echo ran; cat /proc/sys/kernel/core_pattern",
            ],
            b"",
        );
        let err = stderr(&out);
        assert_eq!(
            out.status.code(),
            Some(125),
            "/{dir} -> {with}: must be refused\nstdout: {}\nstderr: {err}",
            stdout(&out)
        );
        assert!(
            !stdout(&out).contains("ran"),
            "the workload must not run: {err}"
        );
        assert!(
            err.contains(&format!("/{dir}")) && err.contains("must be directories"),
            "the message names the path and says what is wanted: {err}"
        );
        let _ = std::fs::remove_dir_all(&root);
    }
}

/// mknod then open inside the workload: every node it makes is unusable; the allowed
/// devices work.
const DEVICE_SCRIPT: &str = r#"
for d in /dev /tmp /; do
  mknod $d/kvm-probe c 10 232 && { head -c1 $d/kvm-probe >/dev/null 2>&1 && echo "$d kvm=opened" || echo "$d kvm=refused"; }
  mknod $d/disk-probe b 7 0 && { head -c1 $d/disk-probe >/dev/null 2>&1 && echo "$d disk=opened" || echo "$d disk=refused"; }
  mknod $d/null-probe c 1 3 && { echo x > $d/null-probe 2>/dev/null && echo "$d null=opened" || echo "$d null=refused"; }
done
echo hi > /dev/null && head -c1 /dev/zero | wc -c && head -c4 /dev/urandom | wc -c && echo devices-ok
awk '$5 == "/" || $5 == "/dev" || $5 == "/tmp"' /proc/self/mountinfo
"#;

fn devices_made_by_the_workload_cannot_be_opened(mode: Mode) {
    let out = run_isol(mode, &["--", "sh", "-c", DEVICE_SCRIPT], b"");
    let s = stdout(&out);
    assert_code(&out, 0);
    assert!(
        !s.contains("=opened"),
        "a node the workload made could be opened:\n{s}"
    );
    assert!(s.contains("/dev kvm=refused"), "{s}");
    assert!(
        s.contains("1\n4\ndevices-ok"),
        "the allowed devices work:\n{s}"
    );
    let mounts: Vec<&str> = s.lines().filter(|l| l.contains(" - ")).collect();
    assert_eq!(mounts.len(), 3, "/, /dev and /tmp:\n{s}");
    for line in mounts {
        let opts = line.split(' ').nth(5).unwrap_or("");
        assert!(opts.split(',').any(|o| o == "nodev"), "not nodev: {line}");
    }
}

/// The run's cgroups, from `isol --verbose`'s "cgroups [...]" line.
fn cgroup_paths(line: &str) -> Vec<PathBuf> {
    let list = line
        .split("cgroups [")
        .nth(1)
        .unwrap_or("")
        .trim()
        .trim_end_matches(']');
    list.split(", ")
        .map(|p| PathBuf::from(p.trim_matches('"')))
        .filter(|p| !p.as_os_str().is_empty())
        .collect()
}

/// Runs `sh -c SCRIPT` on the host inside cgroup `dir` (written to its cgroup.procs).
fn in_cgroup(dir: &Path, script: &str) -> String {
    let procs = dir.join("cgroup.procs");
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!("echo $$ > {} && {script}", procs.display()))
        .output()
        .expect("sh runs");
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn container_device_cgroup_refuses_all_but_the_allow_list() {
    if support::skip_privileged("container_device_cgroup_refuses_all_but_the_allow_list") {
        return;
    }
    require_root();
    let mut child = Command::new(support::isol_bin())
        .args([
            "run",
            "--mode",
            "container",
            "--verbose",
            "--",
            "sh",
            "-c",
            "echo ready; read x",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("isol starts");
    let mut err = BufReader::new(child.stderr.take().expect("piped"));
    let mut line = String::new();
    while !line.contains("cgroups [") {
        line.clear();
        assert!(
            err.read_line(&mut line).expect("read isol's stderr") > 0,
            "no cgroups line"
        );
    }
    let mut ready = String::new();
    BufReader::new(child.stdout.take().expect("piped"))
        .read_line(&mut ready)
        .expect("read the workload's stdout");
    assert_eq!(ready, "ready\n");
    let paths = cgroup_paths(&line);
    let dir = paths
        .iter()
        .find(|p| p.starts_with("/sys/fs/cgroup/devices") || p.join("cgroup.controllers").exists())
        .unwrap_or_else(|| panic!("no device cgroup among {paths:?}"))
        .clone();
    let node = scratch("devnodes");
    std::fs::create_dir_all(&node).expect("mkdir");
    let script = format!(
        "mknod {n}/disk b 7 0; mknod {n}/kvm c 10 232; \
         head -c1 {n}/kvm; head -c1 {n}/disk; head -c1 /dev/kvm; \
         echo x > /dev/null && echo null-ok; head -c1 /dev/zero | wc -c",
        n = node.display()
    );
    let got = in_cgroup(&dir, &script);
    child
        .stdin
        .take()
        .expect("piped")
        .write_all(b"\n")
        .expect("end the workload");
    let status = child.wait().expect("isol ends");
    assert!(status.success(), "{status:?}");
    assert_eq!(
        got.matches("Operation not permitted").count(),
        3,
        "kvm (made), the disk node and the host's /dev/kvm must all give EPERM:\n{got}"
    );
    assert!(got.contains("null-ok\n1\n"), "allowed devices work:\n{got}");
    let _ = std::fs::remove_dir_all(&node);
}

fn volumes_are_nosuid_nodev(mode: Mode) {
    let vol = scratch(&format!("vol-{}", mode.as_str()));
    std::fs::create_dir_all(&vol).expect("mkdir");
    let v = format!("{}:/data", vol.display());
    let script = "grep ' /data ' /proc/self/mountinfo; \
        mknod /data/null c 1 3 2>/dev/null && { echo x > /data/null 2>/dev/null && echo null=opened || echo null=refused; }; true";
    let out = run_isol(mode, &["--volume", &v, "--", "sh", "-c", script], b"");
    assert_code(&out, 0);
    let s = stdout(&out);
    let line = s.lines().next().unwrap_or("");
    let opts: Vec<&str> = line.split(' ').nth(5).unwrap_or("").split(',').collect();
    assert!(opts.contains(&"nosuid") && opts.contains(&"nodev"), "{s}");
    assert!(!s.contains("null=opened"), "{s}");
    let _ = std::fs::remove_dir_all(&vol);
}

in_both_modes!(
    hostile_mount_points_refused,
    devices_made_by_the_workload_cannot_be_opened,
    volumes_are_nosuid_nodev,
);
