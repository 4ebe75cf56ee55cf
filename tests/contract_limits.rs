//! Black-box tests of limits (root), each run in both modes: memory (OOM kill -> 137),
//! pids (fork fails past the limit), cpus (nproc = ceil(cpus), CFS quota).

#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns

mod support;

use support::{assert_code, run_isol, stderr, stdout, Mode};

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
    // sh + 2 background sleeps = 3 processes; the third sleep cannot fork (EAGAIN), and
    // busybox sh gives up on the script with status 2 before "three".
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
    assert_code(&out, 2);
    assert_eq!(stdout(&out), "two\n");
    assert_eq!(
        stderr(&out),
        "sh: can't fork: Resource temporarily unavailable\n"
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

/// Prints the workload's CFS quota and period as "QUOTA PERIOD" (cgroup2's cpu.max, or
/// v1's cpu.cfs_quota_us and cpu.cfs_period_us), then nproc.
const SHOW_QUOTA: &str = "cat /sys/fs/cgroup/cpu.max 2>/dev/null || \
    echo $(cat /sys/fs/cgroup/cpu/cpu.cfs_quota_us) $(cat /sys/fs/cgroup/cpu/cpu.cfs_period_us); nproc";

fn cpus_nproc_and_quota(mode: Mode) {
    let out = run(mode, &["--cpus", "1", "--", "nproc"]);
    assert_code(&out, 0);
    assert_eq!(stdout(&out), "1\n");
    // The quota actually written, as the workload sees it: 0.5 CPU of a 100 ms period.
    let out = run(mode, &["--cpus", "0.5", "--", "sh", "-c", SHOW_QUOTA]);
    assert_code(&out, 0);
    assert_eq!(stdout(&out), "50000 100000\n1\n");
    let out = run(mode, &["--cpus", "1.5", "--", "sh", "-c", SHOW_QUOTA]);
    if support::host_cpus() >= 2 {
        assert_code(&out, 0);
        assert_eq!(stdout(&out), "150000 100000\n2\n");
    } else {
        // A 1-CPU host cannot give 2 CPUs: refused, not silently shrunk.
        assert_code(&out, 125);
        assert!(stderr(&out).contains("CPUs but only"), "{}", stderr(&out));
    }
}

fn quota_throttles_cpu(mode: Mode) {
    // A busy loop for 1 s of wall time under a 0.2 CPU quota runs past its 20 ms per 100 ms
    // period, so the kernel throttles the cgroup: its cpu.stat counts throttled periods.
    // (No CPU-time bound: how much CPU a loop gets is a speed, and speed is bench/'s.)
    let script = "timeout 1 sh -c 'while :; do :; done' 2>/dev/null; \
                  cat /sys/fs/cgroup/cpu.stat 2>/dev/null || cat /sys/fs/cgroup/cpu/cpu.stat 2>/dev/null \
                  || echo no-cpu-controller";
    let out = run(mode, &["--cpus", "0.2", "--", "sh", "-c", script]);
    assert_code(&out, 0);
    let text = stdout(&out);
    let throttled: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix("nr_throttled "))
        .unwrap_or_else(|| panic!("no nr_throttled in cpu.stat:\n{text}"))
        .parse()
        .expect("nr_throttled is a number");
    assert!(
        throttled > 0,
        "never throttled under a 0.2 CPU quota:\n{text}"
    );
    // Without --cpus there is no quota: the same loop is never throttled (container mode
    // does not even join a cpu cgroup then; VM mode's cgroup, there for the device
    // allow-list, has no cpu controller: cpu.stat without throttling lines).
    let out = run(mode, &["--", "sh", "-c", script]);
    assert_code(&out, 0);
    let text = stdout(&out);
    assert!(
        !text
            .lines()
            .any(|l| l.starts_with("nr_throttled ") && l != "nr_throttled 0"),
        "throttled without a quota:\n{text}"
    );
}

fn sees_its_own_cgroup_limits_read_only(mode: Mode) {
    // v1 hierarchies under /sys/fs/cgroup/<controller>, or cgroup2 at /sys/fs/cgroup; the
    // write fails with EROFS (not EACCES, not a missing file).
    let script = "if [ -e /sys/fs/cgroup/memory/cgroup.procs ]; then d=/sys/fs/cgroup/memory; \
                  cat $d/memory.limit_in_bytes; else d=/sys/fs/cgroup; cat $d/memory.max; fi; \
                  echo 1 > $d/cgroup.procs; echo rc=$?";
    let out = run(mode, &["--memory", "64M", "--", "sh", "-c", script]);
    assert_code(&out, 0);
    assert_eq!(stdout(&out), "67108864\nrc=1\n");
    let err = stderr(&out);
    assert!(
        err.ends_with("cgroup.procs: Read-only file system\n") && err.lines().count() == 1,
        "{err}"
    );
}

in_both_modes!(
    memory_limit_kills_200m_allocation,
    memory_limit_allows_32m_allocation,
    pids_limit_fork_fails_past_it,
    cpus_nproc_and_quota,
    quota_throttles_cpu,
    sees_its_own_cgroup_limits_read_only,
);
