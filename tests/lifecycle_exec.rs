//! Black-box tests of `isol exec` into detached container runs (root), many runs at
//! once, and the control socket's permissions (issue 12). Helpers: tests/lifecycle/runs.rs.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns

#[path = "lifecycle/runs.rs"]
mod runs;
mod support;

use std::fs;
use std::path::Path;
use std::process::Command;

use runs::{assert_no_trace, Runs};
use support::{assert_code, skip_privileged};

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
