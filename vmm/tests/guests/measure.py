#!/usr/bin/env python3
"""Start-to-first-output, start-to-exit and peak RSS of `isol boot` on the tiny hello guests,
beside QEMU microvm booting the same PVH file, interleaved so both see the same noise.

    vmm/tests/guests/build.sh /tmp/guests
    python3 vmm/tests/guests/measure.py ISOL_BINARY /tmp/guests [RUNS]

Needs /usr/bin/time (apt-get install time); QEMU rows are skipped when qemu-system-x86_64
is missing. Peak RSS includes the few guest pages the hello guest touches (~30 KiB).
"""
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time


def commands(isol, guests):
    cmds = {
        "isol hello-pvh": [isol, "boot", "--kernel", f"{guests}/hello-pvh", "--allow-pvm"],
        "isol hello-raw": [isol, "boot", "--kernel", f"{guests}/hello-raw.bin", "--allow-pvm"],
    }
    if shutil.which("qemu-system-x86_64"):
        cmds["qemu microvm hello-pvh"] = [
            "qemu-system-x86_64", "-M", "microvm,x-option-roms=off,rtc=off", "-accel", "kvm",
            "-m", "128", "-nodefaults", "-no-user-config", "-nographic", "-serial", "stdio",
            "-kernel", f"{guests}/hello-pvh", "-no-reboot"]
    return cmds


def once(cmd, rss_file):
    t0 = time.perf_counter()
    p = subprocess.Popen(["/usr/bin/time", "-f", "%M", "-o", rss_file] + cmd,
                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    first = p.stdout.read(1)
    t1 = time.perf_counter()
    rest = p.stdout.read()
    p.wait()
    t2 = time.perf_counter()
    if not (first + rest).startswith(b"Hello from isol tiny guest"):
        sys.exit(f"unexpected output from {cmd}: {first + rest!r}")
    with open(rss_file) as f:
        rss_kib = int(f.read().split()[-1])
    return (t1 - t0) * 1000, (t2 - t0) * 1000, rss_kib


def main():
    isol, guests = sys.argv[1], sys.argv[2]
    runs = int(sys.argv[3]) if len(sys.argv) > 3 else 20
    cmds = commands(isol, guests)
    res = {k: [] for k in cmds}
    with tempfile.TemporaryDirectory() as tmp:
        rss_file = os.path.join(tmp, "rss")
        for _ in range(runs):
            for name, cmd in cmds.items():
                res[name].append(once(cmd, rss_file))
    for name, rows in res.items():
        first, exit_, rss = zip(*rows)
        q = statistics.quantiles(exit_, n=4)
        print(f"{name:24s} first output {statistics.median(first):6.1f} ms   exit {statistics.median(exit_):6.1f} ms "
              f"(IQR {q[0]:.1f}-{q[2]:.1f}, min {min(exit_):.1f})   peak RSS {statistics.median(rss) / 1024:.2f} MiB")


if __name__ == "__main__":
    main()
