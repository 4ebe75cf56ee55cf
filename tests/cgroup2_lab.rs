//! Container mode on a pure cgroup v2 host, for real: the nested lab's L1 mounts cgroup2
//! alone at /sys/fs/cgroup (tests/lab/init.sh). One lab command runs a script that
//! checks, in a row: the limits are written (memory.max, pids.max, cpu.max) and the
//! memory limit is enforced (exit 137); the device allow-list (a BPF_CGROUP_DEVICE
//! program) refuses a host process put into the run's cgroup /dev/kvm and a disk node
//! with EPERM while /dev/null works; after a SIGKILL of isol the workload dies and the
//! next run removes the cgroup and the run record; nothing is left behind at the end.

mod support;

use std::process::Command;

use support::{assert_code, in_lab, require_root, stderr, stdout};

/// Runs in the L1 as `sh -c SCRIPT sh ISOL`. Prints `key=value` lines for the test.
const SCRIPT: &str = r#"
isol=$1
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
echo "cgroup_mounts=$(grep -c ' - cgroup' /proc/self/mountinfo) v2=$(grep -c ' - cgroup2 ' /proc/self/mountinfo)"
echo "limits=$("$isol" run --mode container --memory 64M --pids 10 --cpus 0.5 -- \
  sh -c 'cat /sys/fs/cgroup/memory.max /sys/fs/cgroup/pids.max /sys/fs/cgroup/cpu.max' | tr '\n' ,)"
"$isol" run --mode container --memory 32M -- sh -c 'dd if=/dev/zero of=/dev/null bs=200M count=1 2>/dev/null'
echo "oom=$?"

"$isol" run --mode container --memory 64M --verbose -- sh -c 'echo ready; exec sleep 1007.5' \
  >"$tmp/out" 2>"$tmp/err" &
pid=$!
# Watchdog loop (no timing assertion): wait for the workload, at most ~60 s.
i=0; while ! grep -q ready "$tmp/out" 2>/dev/null && [ $i -lt 600 ]; do sleep 0.1; i=$((i+1)); done
cg=$(sed -n 's/.*cgroups \["\([^"]*\)".*/\1/p' "$tmp/err")
echo "cgroup=$cg"
# Nodes on the L1's devtmpfs (its /tmp is a 9P share, which has no device nodes).
nodes=/dev/isol-cgroup2-lab-$$
mkdir "$nodes"; trap 'rm -rf "$tmp" "$nodes"' EXIT
mknod "$nodes/disk" b 7 0; mknod "$nodes/kvm" c 10 232
for dev in /dev/kvm "$nodes/kvm" "$nodes/disk" /dev/null; do
  r=$(sh -c "echo \$\$ > $cg/cgroup.procs && head -c1 $dev >/dev/null" 2>&1 && echo ok)
  case "$r" in *"not permitted"*) r=EPERM;; esac
  echo "open $dev=$r" | sed "s|$nodes|NODES|"
done

kill -9 $pid; wait $pid 2>/dev/null
i=0; while pgrep -f '^sleep 1007.5$' >/dev/null && [ $i -lt 600 ]; do sleep 0.1; i=$((i+1)); done
echo "workload_after_kill=$(pgrep -f '^sleep 1007.5$' | wc -l)"
echo "left_after_kill=$(ls -d /sys/fs/cgroup/isol/isol-$pid-* /run/isol/container/isol-$pid-* 2>/dev/null | wc -l)"
"$isol" run --mode container -- true
echo "next_run=$?"
echo "left_after_gc=$(ls -d /sys/fs/cgroup/isol/isol-$pid-* /run/isol/container/isol-$pid-* 2>/dev/null | wc -l)"
echo "cgroups_left=$(ls -d /sys/fs/cgroup/isol/isol-* 2>/dev/null | wc -l)"
"#;

#[test]
fn container_mode_on_pure_cgroup2_limits_devices_and_cleanup() {
    if support::skip_privileged("container_mode_on_pure_cgroup2_limits_devices_and_cleanup") {
        return;
    }
    require_root();
    let isol = support::isol_bin();
    let mut cmd = if in_lab() {
        Command::new("sh")
    } else {
        let mut c = support::lab_command();
        c.arg("sh");
        c
    };
    cmd.arg("-c").arg(SCRIPT).arg("sh").arg(&isol);
    let out = support::run_lab_retrying_lab_failures(&mut cmd, b"");
    assert_code(&out, 0);
    let s = stdout(&out);
    let want = [
        "cgroup_mounts=1 v2=1",
        "limits=67108864,11,50000 100000,",
        "oom=137",
        "open /dev/kvm=EPERM",
        "open NODES/kvm=EPERM",
        "open NODES/disk=EPERM",
        "open /dev/null=ok",
        "workload_after_kill=0",
        "left_after_kill=2",
        "next_run=0",
        "left_after_gc=0",
        "cgroups_left=0",
    ];
    for w in want {
        assert!(
            s.lines().any(|l| l == w),
            "missing {w:?} in\n{s}\nstderr:\n{}",
            stderr(&out)
        );
    }
    assert!(
        s.lines()
            .any(|l| l.starts_with("cgroup=/sys/fs/cgroup/isol/isol-")),
        "{s}"
    );
}
