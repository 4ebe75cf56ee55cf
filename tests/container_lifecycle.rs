//! Black-box tests of a container run's lifecycle (root): timeout, signals to isol,
//! kill -9 of the workload, nothing left behind after 200 runs, SIGKILL of isol + gc.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns

mod support;

use std::fs;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use support::{assert_code, isol_bin, require_root, run_isol, run_raw, skip_privileged, Mode};

/// Starts `isol run --mode container ARGS` with piped stdout, waits for a "ready" line.
fn start_ready(args: &[&str]) -> (Child, BufReader<std::process::ChildStdout>) {
    require_root();
    let mut child = Command::new(isol_bin())
        .args(["run", "--mode", "container"])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn isol");
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    assert_eq!(line, "ready\n", "the workload did not start");
    (child, out)
}

fn wait_code(child: &mut Child, limit: Duration) -> Option<i32> {
    let t = Instant::now();
    while t.elapsed() < limit {
        if let Some(st) = child.try_wait().unwrap() {
            return st.code();
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let _ = child.kill();
    panic!("watchdog: isol did not exit within {limit:?} (a hang)");
}

/// Host pids whose argv equals `argv`.
fn pids_with_argv(argv: &[&str]) -> Vec<i32> {
    let want: Vec<u8> = argv.iter().flat_map(|a| a.bytes().chain([0])).collect();
    fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|p| fs::read(format!("/proc/{p}/cmdline")).is_ok_and(|c| c == want))
        .collect()
}

/// Every trace of run(s) of isol process `pid`: cgroups, mounts, run records, temp files.
fn traces_of(pid: u32) -> Vec<String> {
    let tag = format!("isol-{pid}-");
    let mut found = Vec::new();
    let mut stack = vec![Path::new("/sys/fs/cgroup").to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).into_iter().flatten().flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                if e.file_name().to_string_lossy().starts_with(&tag) {
                    found.push(e.path().display().to_string());
                }
                stack.push(e.path());
            }
        }
    }
    for l in fs::read_to_string("/proc/mounts").unwrap().lines() {
        if l.contains(&tag) {
            found.push(format!("mount {l}"));
        }
    }
    for dir in [
        isol_common::paths::run_dir().join("container"),
        std::env::temp_dir(),
    ] {
        for e in fs::read_dir(&dir).into_iter().flatten().flatten() {
            if e.file_name().to_string_lossy().contains(&tag) {
                found.push(e.path().display().to_string());
            }
        }
    }
    found
}

#[test]
fn test_container_timeout_124() {
    if skip_privileged("test_container_timeout_124") {
        return;
    }
    // Without a working timeout the run lasts 30 s and exits 0: the exit code and message
    // are the check (speed belongs to bench/).
    let out = run_isol(
        Mode::Container,
        &["--timeout", "0.5", "--", "sleep", "30"],
        b"",
    );
    assert_code(&out, 124);
    assert_eq!(
        support::stderr(&out),
        "isol: timeout expired; the workload was killed\n"
    );
}

#[test]
fn test_container_sigterm_to_isol_reaches_workload() {
    if skip_privileged("test_container_sigterm_to_isol_reaches_workload") {
        return;
    }
    // The trap proves the workload itself received SIGTERM (a 143 alone would not: isol
    // could kill it); then nothing of the run is left.
    let script = "trap 'echo got-term; exit 43' TERM; echo ready; while :; do sleep 0.05; done";
    let (mut child, mut out) = start_ready(&["--", "sh", "-c", script]);
    kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM).unwrap();
    assert_eq!(wait_code(&mut child, Duration::from_secs(120)), Some(43));
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    assert_eq!(line, "got-term\n");
    assert!(
        traces_of(child.id()).is_empty(),
        "{:?}",
        traces_of(child.id())
    );
}

#[test]
fn test_container_sigint_to_isol_reaches_trap() {
    if skip_privileged("test_container_sigint_to_isol_reaches_trap") {
        return;
    }
    let script = "trap 'echo got-int; exit 42' INT; echo ready; while :; do sleep 0.05; done";
    let (mut child, mut out) = start_ready(&["--", "sh", "-c", script]);
    kill(Pid::from_raw(child.id() as i32), Signal::SIGINT).unwrap();
    assert_eq!(wait_code(&mut child, Duration::from_secs(120)), Some(42));
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    assert_eq!(line, "got-int\n");
}

#[test]
fn test_container_kill9_of_workload_137() {
    if skip_privileged("test_container_kill9_of_workload_137") {
        return;
    }
    let (mut child, _out) = start_ready(&[
        "--memory",
        "64M",
        "--",
        "sh",
        "-c",
        "echo ready; exec sleep 1001.5",
    ]);
    let t = Instant::now();
    let pids = loop {
        let p = pids_with_argv(&["sleep", "1001.5"]);
        if !p.is_empty() || t.elapsed() > Duration::from_secs(120) {
            break p;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    assert_eq!(pids.len(), 1, "one workload process");
    kill(Pid::from_raw(pids[0]), Signal::SIGKILL).unwrap();
    assert_eq!(wait_code(&mut child, Duration::from_secs(120)), Some(137));
    assert!(
        traces_of(child.id()).is_empty(),
        "{:?}",
        traces_of(child.id())
    );
}

#[test]
fn test_container_200_runs_leave_nothing() {
    if skip_privileged("test_container_200_runs_leave_nothing") {
        return;
    }
    require_root();
    let mut pids = Vec::new();
    for i in 0..200 {
        let limits: &[&str] = if i % 2 == 0 {
            &["--memory", "64M", "--pids", "20", "--cpus", "1"]
        } else {
            &[]
        };
        let out = Command::new(isol_bin())
            .args(["run", "--mode", "container"])
            .args(limits)
            .args(["--", "sh", "-c", "echo x > /f; exit 3"])
            .stdin(Stdio::null())
            .output_with_pid();
        assert_eq!(out.1.status.code(), Some(3), "run {i}: {:?}", out.1);
        pids.push(out.0);
    }
    for p in pids {
        let tr = traces_of(p);
        assert!(tr.is_empty(), "run of isol pid {p} left {tr:?}");
    }
}

/// `Command::output` that also returns the child's pid.
trait OutputWithPid {
    fn output_with_pid(&mut self) -> (u32, std::process::Output);
}

impl OutputWithPid for Command {
    fn output_with_pid(&mut self) -> (u32, std::process::Output) {
        let child = self
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn isol");
        let pid = child.id();
        (pid, child.wait_with_output().unwrap())
    }
}

#[test]
fn test_container_sigkill_of_isol_then_gc_cleans_up() {
    if skip_privileged("test_container_sigkill_of_isol_then_gc_cleans_up") {
        return;
    }
    let (mut child, _out) = start_ready(&[
        "--memory",
        "64M",
        "--pids",
        "10",
        "--",
        "sh",
        "-c",
        "echo ready; exec sleep 1002.5",
    ]);
    let pid = child.id();
    assert!(
        !traces_of(pid).is_empty(),
        "a live run has a record and cgroups"
    );
    kill(Pid::from_raw(pid as i32), Signal::SIGKILL).unwrap();
    let _ = child.wait();
    // The init dies with isol (parent-death signal), and the workload with the namespace.
    let t = Instant::now();
    while !pids_with_argv(&["sleep", "1002.5"]).is_empty() {
        assert!(
            t.elapsed() < Duration::from_secs(120),
            "watchdog: the workload outlived isol by 120 s"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let out = run_raw(&["gc"], b"");
    assert_code(&out, 0);
    let tr = traces_of(pid);
    assert!(tr.is_empty(), "gc left {tr:?}");
}

#[test]
fn test_container_sigkill_of_isol_then_next_run_cleans_up() {
    if skip_privileged("test_container_sigkill_of_isol_then_next_run_cleans_up") {
        return;
    }
    let args = [
        "--pids",
        "10",
        "--",
        "sh",
        "-c",
        "echo ready; exec sleep 1004.5",
    ];
    let (mut child, _out) = start_ready(&args);
    let pid = child.id();
    kill(Pid::from_raw(pid as i32), Signal::SIGKILL).unwrap();
    let _ = child.wait();
    // Any later run collects orphans of dead isol processes before it starts.
    let out = run_isol(Mode::Container, &["--", "true"], b"");
    assert_code(&out, 0);
    let tr = traces_of(pid);
    assert!(tr.is_empty(), "the next run left {tr:?}");
}

#[test]
fn test_container_sigkill_of_isol_without_limits_kills_workload() {
    if skip_privileged("test_container_sigkill_of_isol_without_limits_kills_workload") {
        return;
    }
    let (mut child, _out) = start_ready(&["--", "sh", "-c", "echo ready; exec sleep 1003.5"]);
    kill(Pid::from_raw(child.id() as i32), Signal::SIGKILL).unwrap();
    let _ = child.wait();
    let t = Instant::now();
    while !pids_with_argv(&["sleep", "1003.5"]).is_empty() {
        assert!(
            t.elapsed() < Duration::from_secs(120),
            "watchdog: the workload outlived isol by 120 s"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    // Every run has a cgroup (the device allow-list): the next run collects it.
    assert_code(&run_isol(Mode::Container, &["--", "true"], b""), 0);
    assert!(
        traces_of(child.id()).is_empty(),
        "{:?}",
        traces_of(child.id())
    );
}

#[test]
fn test_container_failures_125_leave_nothing() {
    if skip_privileged("test_container_failures_125_leave_nothing") {
        return;
    }
    require_root();
    let too_many = (support::host_cpus() + 1).to_string();
    let cases: &[(&[&str], &str)] = &[
        (&["--memory", "lots", "--", "true"], "is not a size"),
        (&["--rootfs", "/nonexistent", "--", "true"], "--rootfs"),
        (
            &["--memory", "64M", "--cpus", &too_many, "--", "true"],
            "CPUs but only",
        ),
        (
            &["--memory", "64M", "--workdir", "/etc/passwd", "--", "true"],
            "working directory",
        ),
    ];
    for (args, msg) in cases {
        let (pid, out) = Command::new(isol_bin())
            .args(["run", "--mode", "container"])
            .args(*args)
            .stdin(Stdio::null())
            .output_with_pid();
        assert_eq!(out.status.code(), Some(125), "{args:?}: {out:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(msg), "{args:?}: {err}");
        assert!(
            traces_of(pid).is_empty(),
            "{args:?} left {:?}",
            traces_of(pid)
        );
    }
}
