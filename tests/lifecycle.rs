//! Black-box tests of detached runs in container mode (root): `isol run -d`, ps, logs,
//! kill, stop, wait, rm, inspect, gc (issue 12); exec in tests/lifecycle_exec.rs. Every
//! test has its own state directory (`--root`), so tests and concurrent suites never see
//! each other's runs. No timed assertions: waits are watchdogs that fail the test.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns

#[path = "lifecycle/runs.rs"]
mod runs;
mod support;

use std::fs;
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use runs::{assert_no_trace, int, Runs, WATCHDOG};
use support::{assert_code, skip_privileged};

#[test]
fn test_detached_web_flow_ps_logs_exec_stop_wait_rm() {
    if skip_privileged("test_detached_web_flow_ps_logs_exec_stop_wait_rm") {
        return;
    }
    let runs = Runs::new();
    let script = "while true; do date; sleep 1; done";
    runs.start(&["--name", "web", "--", "sh", "-c", script]);
    let ps = runs.isol(&["ps"]);
    assert_code(&ps, 0);
    let line = support::stdout(&ps)
        .lines()
        .find(|l| l.contains(" web "))
        .map(str::to_string)
        .unwrap_or_else(|| panic!("ps does not show web: {ps:?}"));
    assert!(line.contains(" running "), "{line}");
    let logs = runs.logs_until("web", |o| o.iter().filter(|&&b| b == b'\n').count() >= 2);
    let text = String::from_utf8(logs).unwrap();
    assert!(text.lines().all(|l| l.contains("UTC")), "dates: {text}");
    // PID 1 of the run is its init (a copy of isol, whose argv it shows).
    let out = runs.isol(&["exec", "web", "--", "cat", "/proc/1/cmdline"]);
    assert_code(&out, 0);
    assert!(support::stdout(&out).contains("run\0"), "{out:?}");
    let rec = runs.inspect("web");
    let stop = runs.isol(&["stop", "--time", "10", "web"]);
    assert_code(&stop, 0);
    let wait = runs.isol(&["wait", "web"]);
    let code = wait.status.code();
    assert!(matches!(code, Some(143 | 137)), "{wait:?}");
    let ps = runs.isol(&["ps", "-a", "--json"]);
    let list: serde_json::Value = serde_json::from_slice(&ps.stdout).unwrap();
    assert_eq!(list[0]["status"], "exited", "{list}");
    assert_eq!(list[0]["exit_code"].as_i64(), code.map(i64::from));
    assert_code(&runs.isol(&["rm", "web"]), 0);
    assert_no_trace(&runs, &rec);
    assert_code(&runs.isol(&["inspect", "web"]), 125);
}

#[test]
fn test_detached_streams_apart_byte_exact_and_exit_code() {
    if skip_privileged("test_detached_streams_apart_byte_exact_and_exit_code") {
        return;
    }
    let runs = Runs::new();
    let script = r"printf 'out\000\377\r\nno newline'; printf 'err\001\n' >&2; exit 7";
    let id = runs.start(&["--", "sh", "-c", script]);
    let wait = runs.isol(&["wait", &id[..8]]);
    assert_code(&wait, 7);
    let out = runs.isol(&["logs", "--stdout", &id]);
    assert_eq!(out.stdout, b"out\0\xff\r\nno newline");
    assert!(out.stderr.is_empty(), "{out:?}");
    let err = runs.isol(&["logs", "--stderr", &id]);
    assert_eq!(err.stderr, b"err\x01\n");
    assert!(err.stdout.is_empty());
    let both = runs.isol(&["logs", &id]);
    assert_eq!(both.stdout, out.stdout);
    assert_eq!(both.stderr, err.stderr);
    // -f on an ended run prints everything and ends.
    let f = runs.isol(&["logs", "-f", &id]);
    assert_eq!(f.stdout, out.stdout);
    let rec = runs.inspect(&id);
    assert_code(&runs.isol(&["rm", &id]), 0);
    assert_no_trace(&runs, &rec);
}

#[test]
fn test_supervisor_sigkill_reported_unknown_cleaned_by_rm_and_gc() {
    if skip_privileged("test_supervisor_sigkill_reported_unknown_cleaned_by_rm_and_gc") {
        return;
    }
    let runs = Runs::new();
    for cleaner in ["rm", "gc"] {
        let id = runs.start(&["--", "sleep", "1000"]);
        let rec = runs.inspect(&id);
        let sup = int(&rec, "supervisor_pid");
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(sup), nix::sys::signal::SIGKILL).unwrap();
        let t = Instant::now();
        while runs.inspect(&id)["status"] != "unknown" {
            assert!(
                t.elapsed() < WATCHDOG,
                "watchdog: still {}",
                runs.inspect(&id)
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        let ps = runs.isol(&["ps", "--json"]);
        let list: serde_json::Value = serde_json::from_slice(&ps.stdout).unwrap();
        assert_eq!(list[0]["status"], "unknown", "ps tells the truth: {list}");
        let wait = runs.isol(&["wait", &id]);
        assert_code(&wait, 125);
        assert!(support::stderr(&wait).contains("supervisor"), "{wait:?}");
        let exec = runs.isol(&["exec", &id, "--", "true"]);
        assert_code(&exec, 125);
        if cleaner == "rm" {
            assert_code(&runs.isol(&["rm", &id]), 0);
        } else {
            let gc = runs.isol(&["gc"]);
            assert_code(&gc, 0);
            assert!(support::stdout(&gc).contains(&id), "{gc:?}");
        }
        assert_no_trace(&runs, &rec);
    }
}

#[test]
fn test_duplicate_name_refused_also_when_concurrent() {
    if skip_privileged("test_duplicate_name_refused_also_when_concurrent") {
        return;
    }
    let runs = Runs::new();
    let children: Vec<_> = (0..6)
        .map(|_| {
            runs.cmd(&["run", "-d", "--name", "same", "--", "sleep", "1000"])
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let outs: Vec<Output> = children
        .into_iter()
        .map(|c| c.wait_with_output().unwrap())
        .collect();
    let won: Vec<_> = outs.iter().filter(|o| o.status.success()).collect();
    assert_eq!(won.len(), 1, "exactly one run gets the name: {outs:#?}");
    for o in outs.iter().filter(|o| !o.status.success()) {
        assert_code(o, 125);
        assert!(support::stderr(o).contains("already used"), "{o:?}");
    }
    let again = runs.isol(&["run", "-d", "--name", "same", "--", "true"]);
    assert_code(&again, 125);
    let list = runs.isol(&["ps", "-a", "--json"]);
    let list: serde_json::Value = serde_json::from_slice(&list.stdout).unwrap();
    assert_eq!(
        list.as_array().unwrap().len(),
        1,
        "refused runs leave nothing: {list}"
    );
    let rec = runs.inspect("same");
    assert_code(&runs.isol(&["rm", "same"]), 125);
    assert_code(&runs.isol(&["rm", "-f", "same"]), 0);
    assert_no_trace(&runs, &rec);
    assert_code(
        &runs.isol(&["run", "-d", "--name", "bad/name", "--", "true"]),
        125,
    );
    assert_code(&runs.isol(&["run", "--name", "x", "--", "true"]), 125);
}

#[test]
fn test_unknown_run_is_exit_125_for_every_command() {
    if skip_privileged("test_unknown_run_is_exit_125_for_every_command") {
        return;
    }
    let runs = Runs::new();
    for args in [
        &["logs", "nope"][..],
        &["logs", "-f", "nope"],
        &["exec", "nope", "--", "true"],
        &["kill", "nope"],
        &["stop", "nope"],
        &["wait", "nope"],
        &["rm", "nope"],
        &["rm", "-f", "nope"],
        &["inspect", "nope"],
    ] {
        let out = runs.isol(args);
        assert_code(&out, 125);
        assert!(
            support::stderr(&out).contains("No such run: \"nope\""),
            "{args:?}: {out:?}"
        );
    }
    assert_code(&runs.isol(&["ps"]), 0);
}

#[test]
fn test_detached_timeout_and_preparation_failure() {
    if skip_privileged("test_detached_timeout_and_preparation_failure") {
        return;
    }
    let runs = Runs::new();
    let id = runs.start(&["--timeout", "0.5", "--", "sleep", "30"]);
    let wait = runs.isol(&["wait", &id]);
    assert_code(&wait, 124);
    assert!(support::stderr(&wait).contains("timeout"), "{wait:?}");
    assert_code(&runs.isol(&["rm", &id]), 0);
    // Bad input is refused before anything exists.
    let bad = runs.isol(&["run", "-d", "--volume", "/nonexistent-dir:/x", "--", "true"]);
    assert_code(&bad, 125);
    assert!(support::stderr(&bad).contains("--volume"), "{bad:?}");
    // -t with -d: no terminal to attach to (and nothing is made).
    let dt = runs.isol(&["run", "-d", "-t", "--", "sh"]);
    assert_code(&dt, 125);
    assert!(support::stderr(&dt).contains("--detach"), "{dt:?}");
    assert!(dt.stdout.is_empty(), "{dt:?}");
    // So is a root the container cannot set up (found inside it, before the start).
    let bad_root = runs.root().join("bad-rootfs");
    fs::create_dir(&bad_root).unwrap();
    std::os::unix::fs::symlink("/etc", bad_root.join("proc")).unwrap();
    let bad = runs.isol(&[
        "run",
        "-d",
        "--rootfs",
        bad_root.to_str().unwrap(),
        "--",
        "true",
    ]);
    assert_code(&bad, 125);
    assert!(support::stderr(&bad).contains("/proc"), "{bad:?}");
    assert!(
        bad.stdout.is_empty(),
        "no id for a run that never started: {bad:?}"
    );
    fs::remove_dir_all(&bad_root).unwrap();
    let names: Vec<_> = fs::read_dir(runs.root())
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .filter(|n| n != ".lock")
        .collect();
    assert!(names.is_empty(), "{names:?}");
}

#[test]
fn test_kill_signals_stop_escalates_workload_sigkill_is_137() {
    if skip_privileged("test_kill_signals_stop_escalates_workload_sigkill_is_137") {
        return;
    }
    let runs = Runs::new();
    // kill USR1 reaches the workload (its trap prints), then stop: TERM is ignored, so
    // KILL follows after --time: 137.
    let script = "trap 'echo usr1' USR1; trap '' TERM; echo ready; while :; do sleep 0.1; done";
    let id = runs.start(&["--", "sh", "-c", script]);
    runs.logs_until(&id, |o| o == b"ready\n");
    assert_code(&runs.isol(&["kill", &id, "USR1"]), 0);
    runs.logs_until(&id, |o| o == b"ready\nusr1\n");
    assert_code(&runs.isol(&["kill", &id, "NOSUCHSIG"]), 125);
    assert_code(&runs.isol(&["stop", "--time", "0.5", &id]), 0);
    assert_code(&runs.isol(&["wait", &id]), 137);
    assert_code(&runs.isol(&["stop", &id]), 0);
    let rec = runs.inspect(&id);
    assert_code(&runs.isol(&["rm", &id]), 0);
    assert_no_trace(&runs, &rec);
    // SIGKILL of the workload's init from outside: recorded truthfully as 137.
    let id = runs.start(&["--", "sleep", "1000"]);
    let rec = runs.inspect(&id);
    let init = nix::unistd::Pid::from_raw(int(&rec, "pid"));
    nix::sys::signal::kill(init, nix::sys::signal::SIGKILL).unwrap();
    assert_code(&runs.isol(&["wait", &id]), 137);
    assert_eq!(runs.inspect(&id)["status"], "exited");
    assert_code(&runs.isol(&["rm", &id]), 0);
    assert_no_trace(&runs, &rec);
}

#[test]
fn test_logs_follow_streams_until_the_end() {
    if skip_privileged("test_logs_follow_streams_until_the_end") {
        return;
    }
    let runs = Runs::new();
    let id = runs.start(&[
        "--",
        "sh",
        "-c",
        "for i in 1 2 3; do echo $i; sleep 0.2; done; echo e >&2",
    ]);
    // -f started while the run lives returns once it has ended, with everything.
    let f = runs.isol(&["logs", "-f", &id]);
    assert_code(&f, 0);
    assert_eq!(support::stdout(&f), "1\n2\n3\n");
    assert_eq!(support::stderr(&f), "e\n");
    assert_code(&runs.isol(&["wait", &id]), 0);
    assert_code(&runs.isol(&["rm", &id]), 0);
}
