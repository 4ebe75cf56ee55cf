//! Black-box tests of detached runs in container mode (root): `isol run -d`, ps, logs,
//! exec, kill, stop, wait, rm, inspect, gc (issue 12). Every test has its own state
//! directory (`--root`), so tests and concurrent suites never see each other's runs.
//! No timed assertions: waits are watchdogs that fail the test when they fire.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns

mod support;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use support::{assert_code, isol_bin, require_root, run_with_stdin, skip_privileged};

/// Watchdog of the polling helpers.
const WATCHDOG: Duration = Duration::from_secs(120);

/// A private state directory for detached runs.
struct Runs {
    root: tempfile::TempDir,
}

impl Runs {
    fn new() -> Runs {
        require_root();
        let base = support::target_tmp_file("lifecycle");
        fs::create_dir_all(&base).unwrap();
        Runs {
            root: tempfile::tempdir_in(base).unwrap(),
        }
    }

    fn root(&self) -> &Path {
        self.root.path()
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(isol_bin());
        c.arg("--root").arg(self.root()).args(args);
        c
    }

    /// `isol --root DIR ARGS...` with `stdin`.
    fn isol_in(&self, args: &[&str], stdin: &[u8]) -> Output {
        run_with_stdin(&mut self.cmd(args), stdin)
    }

    fn isol(&self, args: &[&str]) -> Output {
        self.isol_in(args, b"")
    }

    /// `isol run -d ARGS...`: the id it printed.
    fn start(&self, args: &[&str]) -> String {
        let mut full = vec!["run", "--mode", "container", "-d"];
        full.extend_from_slice(args);
        let out = self.isol(&full);
        assert_code(&out, 0);
        let id = support::stdout(&out).trim().to_string();
        assert_eq!(id.len(), 32, "run -d prints the id: {id:?}");
        id
    }

    /// The run's record (`inspect --json`).
    fn inspect(&self, key: &str) -> serde_json::Value {
        let out = self.isol(&["inspect", "--json", key]);
        assert_code(&out, 0);
        serde_json::from_slice(&out.stdout).unwrap()
    }

    /// Polls `isol logs --stdout` until `done` holds for it.
    fn logs_until(&self, key: &str, done: impl Fn(&[u8]) -> bool) -> Vec<u8> {
        let t = Instant::now();
        loop {
            let out = self.isol(&["logs", "--stdout", key]);
            assert_code(&out, 0);
            if done(&out.stdout) {
                return out.stdout;
            }
            assert!(
                t.elapsed() < WATCHDOG,
                "watchdog: logs never matched: {out:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

fn int(v: &serde_json::Value, k: &str) -> i32 {
    v[k].as_i64()
        .unwrap_or_else(|| panic!("{k} in {v}"))
        .try_into()
        .unwrap()
}

fn pid_exists(pid: i32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// Every trace a run may leave: its supervisor and init processes, its cgroups (the
/// recorded ones and any `isol-<supervisor pid>-*`), mounts naming it, the container
/// backend's record, and its state directory (logs, socket).
fn traces(runs: &Runs, rec: &serde_json::Value) -> Vec<String> {
    let mut found = Vec::new();
    let sup = int(rec, "supervisor_pid");
    if isol_container::record::alive(sup, rec["supervisor_start"].as_u64().unwrap()) {
        found.push(format!("supervisor {sup} alive"));
    }
    if let Some(pid) = rec["pid"].as_i64() {
        let pid = i32::try_from(pid).unwrap();
        if pid_exists(pid)
            && fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| {
                String::from_utf8_lossy(&c).contains(&runs.root().to_string_lossy().to_string())
            })
        {
            found.push(format!("init {pid} alive"));
        }
    }
    for cg in rec["cgroups"].as_array().unwrap() {
        let p = PathBuf::from(cg.as_str().unwrap());
        if p.exists() {
            found.push(format!("cgroup {}", p.display()));
        }
    }
    let tag = format!("isol-{sup}-");
    for l in fs::read_to_string("/proc/mounts").unwrap().lines() {
        if l.contains(&tag) || l.contains(rec["id"].as_str().unwrap()) {
            found.push(format!("mount {l}"));
        }
    }
    let records = isol_common::paths::run_dir().join("container");
    for e in fs::read_dir(records).into_iter().flatten().flatten() {
        if e.file_name().to_string_lossy().starts_with(&tag) {
            found.push(format!("record {}", e.path().display()));
        }
    }
    let dir = runs.root().join(rec["id"].as_str().unwrap());
    if dir.exists() {
        found.push(format!("state dir {}", dir.display()));
    }
    found
}

/// Asserts nothing of the run is left (`rm` returns only once its supervisor is gone,
/// so this looks once, without waiting).
fn assert_no_trace(runs: &Runs, rec: &serde_json::Value) {
    let t = traces(runs, rec);
    assert!(t.is_empty(), "left behind: {t:#?}");
}

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
fn test_exec_has_the_workloads_sandbox_own_streams_and_codes() {
    if skip_privileged("test_exec_has_the_workloads_sandbox_own_streams_and_codes") {
        return;
    }
    let runs = Runs::new();
    let probe = "grep -E '^(Seccomp|Seccomp_filters|NoNewPrivs|Cap[A-Za-z]+):' /proc/self/status; \
                 ulimit -n; ulimit -Hn; cat /proc/self/oom_score_adj; id";
    let script = format!("{probe}; echo END; exec sleep 1000");
    let id = runs.start(&[
        "--ulimit",
        "nofile=100:200",
        "--oom-score-adj",
        "7",
        "--user",
        "1000:1000",
        "--",
        "sh",
        "-c",
        &script,
    ]);
    let logs = runs.logs_until(&id, |o| o.ends_with(b"END\n"));
    let workload = String::from_utf8(logs).unwrap().replace("END\n", "");
    let exec = runs.isol(&["exec", &id, "--", "sh", "-c", probe]);
    assert_code(&exec, 0);
    assert_eq!(
        support::stdout(&exec),
        workload,
        "exec's sandbox is the workload's"
    );
    assert!(workload.contains("Seccomp:\t2"), "{workload}");
    // Own streams and exit code; 127/126; -i passes stdin, without it stdin is empty.
    let out = runs.isol(&["exec", &id, "--", "sh", "-c", "echo o; echo e >&2; exit 3"]);
    assert_code(&out, 3);
    assert_eq!(
        (support::stdout(&out), support::stderr(&out)),
        ("o\n".into(), "e\n".into())
    );
    assert_code(&runs.isol(&["exec", &id, "--", "no-such-command"]), 127);
    assert_code(&runs.isol(&["exec", &id, "--", "/etc/passwd"]), 126);
    let cat = runs.isol_in(&["exec", "-i", &id, "--", "cat"], b"in\0put");
    assert_code(&cat, 0);
    assert_eq!(cat.stdout, b"in\0put");
    let cat = runs.isol_in(&["exec", &id, "--", "cat"], b"not read");
    assert_code(&cat, 0);
    assert!(cat.stdout.is_empty());
    let who = runs.isol(&[
        "exec",
        "--user",
        "0",
        "--workdir",
        "/tmp",
        "--env",
        "K=v",
        &id,
        "--",
        "sh",
        "-c",
        "id -u; pwd; echo $K",
    ]);
    assert_code(&who, 0);
    assert_eq!(support::stdout(&who), "0\n/tmp\nv\n");
    // The exec'd process is in the run's pid namespace and cgroup.
    let ps = runs.isol(&["exec", &id, "--", "sh", "-c", "ls /proc"]);
    assert!(support::stdout(&ps).lines().any(|l| l == "2"), "{ps:?}");
    let rec = runs.inspect(&id);
    assert_code(&runs.isol(&["kill", &id, "TERM"]), 0);
    let wait = runs.isol(&["wait", &id]);
    assert_code(&wait, 143);
    let late = runs.isol(&["exec", &id, "--", "true"]);
    assert_code(&late, 125);
    assert!(support::stderr(&late).contains("not running"), "{late:?}");
    assert_code(&runs.isol(&["kill", &id]), 125);
    assert_code(&runs.isol(&["rm", &id]), 0);
    assert_no_trace(&runs, &rec);
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
    let names: Vec<_> = fs::read_dir(runs.root())
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .filter(|n| n != ".lock")
        .collect();
    assert!(names.is_empty(), "{names:?}");
}

#[test]
fn test_fifty_detached_runs_exec_stop_rm_leave_nothing() {
    if skip_privileged("test_fifty_detached_runs_exec_stop_rm_leave_nothing") {
        return;
    }
    let runs = Runs::new();
    let ids: Vec<String> = (0..50)
        .map(|i| runs.start(&["--name", &format!("n{i}"), "--", "sleep", "1000"]))
        .collect();
    let recs: Vec<_> = ids.iter().map(|id| runs.inspect(id)).collect();
    let ps = runs.isol(&["ps", "--json"]);
    let list: serde_json::Value = serde_json::from_slice(&ps.stdout).unwrap();
    assert_eq!(list.as_array().unwrap().len(), 50);
    for (i, id) in ids.iter().enumerate() {
        let out = runs.isol(&["exec", &format!("n{i}"), "--", "sh", "-c", "echo $$"]);
        assert_code(&out, 0);
        assert_ne!(support::stdout(&out), "1\n");
        if i % 2 == 0 {
            assert_code(&runs.isol(&["stop", "--time", "5", id]), 0);
            assert_code(&runs.isol(&["rm", id]), 0);
        } else {
            assert_code(&runs.isol(&["rm", "-f", id]), 0);
        }
    }
    for rec in &recs {
        assert_no_trace(&runs, rec);
    }
    let ps = runs.isol(&["ps", "-a", "--json"]);
    assert_eq!(support::stdout(&ps).trim(), "[]");
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

#[test]
fn test_control_socket_is_owner_only() {
    if skip_privileged("test_control_socket_is_owner_only") {
        return;
    }
    use std::os::unix::fs::PermissionsExt;
    let runs = Runs::new();
    let id = runs.start(&["--", "sleep", "1000"]);
    let dir = runs.root().join(&id);
    let sock = dir.join("control.sock");
    let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&dir), 0o700);
    assert_eq!(mode(&sock), 0o600);
    for f in ["state.json", "stdout.log", "stderr.log", "run-args.json"] {
        assert_eq!(mode(&dir.join(f)) & 0o077, 0, "{f}");
    }
    // The owner gets answers; another uid cannot even connect.
    let ask = |uid: u32| {
        let script = "import os,socket,sys\n\
                      os.setgid(int(sys.argv[1])); os.setuid(int(sys.argv[1]))\n\
                      s=socket.socket(socket.AF_UNIX)\n\
                      try:\n  s.connect(sys.argv[2])\n\
                      except OSError as e:\n  print('refused', e.errno); sys.exit(0)\n\
                      s.sendall(b'{\"op\":\"state\"}\\n'); print(s.makefile().readline())";
        let out = Command::new("python3")
            .args(["-c", script, &uid.to_string()])
            .arg(&sock)
            .output()
            .unwrap();
        assert_code(&out, 0);
        support::stdout(&out)
    };
    let answer: serde_json::Value = serde_json::from_str(&ask(0)).unwrap();
    assert_eq!(answer["ok"], true);
    assert_eq!(answer["state"]["state"], "running");
    assert_eq!(ask(1000).trim(), format!("refused {}", libc::EACCES));
    assert_code(&runs.isol(&["rm", "-f", &id]), 0);
}
