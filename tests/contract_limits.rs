//! Black-box tests of limits (root), each run in both modes: memory (OOM kill -> 137),
//! pids (fork fails past the limit), cpus (nproc = ceil(cpus), CFS quota).

#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns

mod support;

use support::{assert_code, run_isol, stdout, Mode};

fn run(mode: Mode, args: &[&str]) -> std::process::Output {
    run_isol(mode, args, b"")
}

fn memory_limit_kills_200m_allocation(mode: Mode) {
    // dd allocates a buffer of bs bytes and fills it from /dev/zero.
    let out = run(
        mode,
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
    );
    assert_code(&out, 137);
}

fn memory_limit_allows_32m_allocation(mode: Mode) {
    let out = run(
        mode,
        &[
            "--memory",
            "64M",
            "--",
            "dd",
            "if=/dev/zero",
            "of=/dev/null",
            "bs=32M",
            "count=1",
        ],
    );
    assert_code(&out, 0);
}

fn pids_limit_fork_fails_past_it(mode: Mode) {
    // sh + 2 background sleeps = 3 processes; the third sleep cannot fork.
    let out = run(
        mode,
        &[
            "--pids",
            "3",
            "--",
            "sh",
            "-c",
            "sleep 1 & sleep 1 & echo two; sleep 1 & echo three",
        ],
    );
    assert!(stdout(&out).starts_with("two\n"), "{}", stdout(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("can't fork"),
        "{:?}",
        out
    );
    let ok = run(
        mode,
        &[
            "--pids",
            "4",
            "--",
            "sh",
            "-c",
            "sleep 0.1 & sleep 0.1 & sleep 0.1 & wait; echo fine",
        ],
    );
    assert_code(&ok, 0);
    assert_eq!(stdout(&ok), "fine\n");
}

fn cpus_nproc_and_quota(mode: Mode) {
    let out = run(mode, &["--cpus", "1", "--", "nproc"]);
    assert_code(&out, 0);
    assert_eq!(stdout(&out), "1\n");
    let out = run(
        mode,
        &[
            "--cpus",
            "0.5",
            "--",
            "sh",
            "-c",
            "nproc; cat /proc/self/cgroup | grep -c ':/$'",
        ],
    );
    assert_code(&out, 0);
    assert!(stdout(&out).starts_with("1\n"), "{}", stdout(&out));
    let host = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    if host >= 2 {
        let out = run(mode, &["--cpus", "1.5", "--", "nproc"]);
        assert_eq!(stdout(&out), "2\n");
    }
}

fn quota_throttles_cpu(mode: Mode) {
    // A busy loop runs for 1 s of wall time; with a 0.2 CPU quota it gets about 0.2 s of
    // CPU (20 ticks of 10 ms), far below the 1 s it would burn unthrottled.
    let script = "timeout 1 sh -c 'while :; do :; done'; cut -d' ' -f16 /proc/$$/stat";
    let out = run(mode, &["--cpus", "0.2", "--", "sh", "-c", script]);
    assert_code(&out, 0);
    let ticks: u64 = stdout(&out).trim().parse().expect("cutime ticks");
    assert!(
        ticks <= 30,
        "busy loop got {ticks} ticks of CPU under a 0.2 CPU quota"
    );
}

fn sees_its_own_cgroup_limits_read_only(mode: Mode) {
    // v1 hierarchies under /sys/fs/cgroup/<controller>, or cgroup2 at /sys/fs/cgroup.
    let script = "cat /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null || cat /sys/fs/cgroup/memory.max; \
                  echo 1 > /sys/fs/cgroup/cgroup.procs 2>/dev/null || echo read-only";
    let out = run(mode, &["--memory", "64M", "--", "sh", "-c", script]);
    assert_code(&out, 0);
    assert_eq!(stdout(&out), "67108864\nread-only\n");
}

in_both_modes!(
    memory_limit_kills_200m_allocation,
    memory_limit_allows_32m_allocation,
    pids_limit_fork_fails_past_it,
    cpus_nproc_and_quota,
    quota_throttles_cpu,
    sees_its_own_cgroup_limits_read_only,
);
