#!/usr/bin/env python3
"""Where a command waits: off-CPU time of its threads, by kernel call chain.

    python3 bench/offcpu.py [--runs N] [--top K] -- CMD [ARG...]

Records sched:sched_switch and sched_process_fork system-wide with call graphs (`perf
record -a -g`; root and the linux-perf package), runs CMD N times, and sums, for every
thread descending from that run (and named like --comm), the time from being switched
out to being switched back in, grouped by the first telling kernel
functions of the stack where it blocked. "preempted" is time spent runnable, waiting for
a CPU (noise from other work on the machine). Python standard library only.
"""

import argparse
import collections
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile

HEAD = re.compile(r"^\s*(\S.*?)\s+(\d+)\s+(?:\[\d+\]\s+)?([\d.]+):\s+sched:(sched_switch|sched_process_fork):\s+(.*)$")
FIELDS = re.compile(r"(\w+)=(\S+)")
GENERIC = ("__schedule", "schedule", "schedule_timeout", "schedule_hrtimeout_range_clock",
           "wait_for_completion", "wait_for_completion_killable", "wait_for_completion_io_timeout",
           "__wait_for_common", "io_schedule", "io_schedule_timeout", "preempt_schedule",
           "exit_to_user_mode_loop", "do_syscall_64", "entry_SYSCALL_64_after_hwframe",
           "irqentry_exit_to_user_mode", "__cond_resched", "futex_do_wait", "__futex_wait",
           "futex_wait", "do_futex", "poll_schedule_timeout.constprop.0", "finish_task_switch.isra.0",
           "schedule_preempt_disabled", "rwsem_down_write_slowpath", "__wait_for_common")


def parse(text, tree):
    """Yields (time, prev_tid, prev_comm, prev_state, next_tid, frames) per switch; fork
    events add the child to tree (a set of tids) when the parent is in it."""
    event = None
    for line in text.splitlines():
        m = HEAD.match(line)
        if m:
            if event:
                yield event
                event = None
            f = dict(FIELDS.findall(m.group(5)))
            if m.group(4) == "sched_process_fork":
                if int(f.get("pid", f.get("parent_pid", -1))) in tree:
                    tree.add(int(f.get("child_pid", -1)))
                continue
            event = (float(m.group(3)), int(f.get("prev_pid", -1)), f.get("prev_comm", "?"),
                     f.get("prev_state", "?"), int(f.get("next_pid", -1)), [])
        elif event and line.strip():
            parts = line.split()
            if len(parts) >= 2:
                event[5].append(parts[1].split("+")[0])
    if event:
        yield event


def label(state, frames):
    if state.startswith("R"):
        return "preempted (runnable, waiting for a CPU)"
    telling = [f for f in frames if f not in GENERIC and not f.startswith("[unknown")]
    return " < ".join(telling[:4]) or "?"


def summarize(events, comms, tree):
    """{label: [total_ms, count]} over threads of tree whose comm starts with one of comms."""
    off = {}
    acc = collections.defaultdict(lambda: [0.0, 0])
    first = last = None
    for t, prev, comm, state, nxt, frames in events:
        if nxt in off:
            t0, lab = off.pop(nxt)
            acc[lab][0] += (t - t0) * 1000
            acc[lab][1] += 1
        if prev in tree and any(comm.startswith(c) for c in comms):
            off[prev] = (t, label(state, frames))
            first = t if first is None else first
            last = t
    return acc, first, last


def main(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", type=int, default=10)
    p.add_argument("--top", type=int, default=15)
    p.add_argument("--comm", action="append", help="thread names to follow (default: CMD's basename "
                   "and its threads' prefixes)")
    p.add_argument("cmd", nargs=argparse.REMAINDER)
    a = p.parse_args(argv)
    cmd = a.cmd[1:] if a.cmd and a.cmd[0] == "--" else a.cmd
    if not cmd:
        p.error("give CMD after --")
    if not shutil.which("perf"):
        print("perf not found: install Debian package linux-perf", file=sys.stderr)
        return 0
    comms = a.comm or [os.path.basename(cmd[0])[:15]]
    with tempfile.TemporaryDirectory(prefix="isol-offcpu-") as d:
        data = os.path.join(d, "perf.data")
        pidfile = os.path.join(d, "pid")
        loop = " ".join([f"echo $$ > {pidfile};", "for i in $(seq %d); do" % a.runs] +
                        [" ".join(shlex.quote(c) for c in cmd)] + [">/dev/null 2>&1; done"])
        subprocess.run(["perf", "record", "-q", "-a", "-g", "-e", "sched:sched_switch", "-e",
                        "sched:sched_process_fork", "-o", data, "--", "sh", "-c", loop],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        with open(pidfile) as f:
            tree = {int(f.read().strip())}
        out = subprocess.run(["perf", "script", "-i", data, "-F", "comm,tid,time,event,trace,ip,sym"],
                             stdout=subprocess.PIPE, stderr=subprocess.DEVNULL).stdout.decode(errors="replace")
    acc, first, last = summarize(parse(out, tree), comms, tree)
    total = sum(v[0] for v in acc.values())
    print(f"off-CPU time of {', '.join(comms)} threads over {a.runs} runs of: {' '.join(cmd)}")
    print(f"  total {total:.1f} ms ({total / a.runs:.2f} ms per run)")
    for lab, (ms, n) in sorted(acc.items(), key=lambda kv: -kv[1][0])[:a.top]:
        print(f"  {ms / a.runs:8.2f} ms/run {n / a.runs:6.1f} waits/run  {lab}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
