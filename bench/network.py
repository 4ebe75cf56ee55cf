#!/usr/bin/env python3
"""isol's network benchmark (container mode): TCP throughput and request latency between
a workload on the bridge and the host, against host loopback as the floor, plus the
start-to-exit cost of `--network bridge` against `--network none`.

Everything runs in network namespaces this script creates (a "host" namespace where isol
runs, its bridge and nft table): no packet reaches the machine's real network. Needs root,
a release build of isol, iperf3 (apt-get install iperf3), hyperfine (optional).

    python3 bench/network.py [--isol PATH] [--secs 5] [--requests 2000]

The workload runs iperf3 from a copy of isol's busybox rootfs plus the host's iperf3 and
its libraries (so both ends run the same iperf3). Request latency: 1-byte request, 1-byte
reply on one TCP connection (busybox `nc -l -e cat` as the echo server), timed by the
client in the host namespace; the median and p99 of the round trips.
"""

import argparse
import glob
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

HOST_NS = f"isolbench-{os.getpid()}"


def sh(cmd, **kw):
    return subprocess.run(cmd, shell=True, check=True, capture_output=True, text=True, **kw).stdout


def in_ns(cmd):
    return f"nsenter --net=/run/netns/{HOST_NS} {cmd}"


def rootfs_with_iperf3(tmp):
    src = sorted(p for p in glob.glob(os.path.expanduser("~/.cache/isol/rootfs/busybox-*"))
                 if os.path.exists(os.path.join(p, ".complete")))[-1]
    dst = os.path.join(tmp, "rootfs")
    shutil.copytree(src, dst, symlinks=True)
    os.makedirs(os.path.join(dst, "usr/local/bin"), exist_ok=True)
    shutil.copy2("/usr/bin/iperf3", os.path.join(dst, "usr/local/bin/iperf3"))
    for line in sh("ldd /usr/bin/iperf3").splitlines():
        parts = line.split()
        lib = parts[2] if "=>" in parts and len(parts) > 2 else parts[0]
        if lib.startswith("/"):
            target = os.path.join(dst, lib.lstrip("/"))
            os.makedirs(os.path.dirname(target), exist_ok=True)
            shutil.copy2(os.path.realpath(lib), target)
    return dst, src


def iperf(client_cmd, server_ip, secs, reverse=False):
    """Gbit/s of one iperf3 run against a server already listening on server_ip."""
    out = subprocess.run(client_cmd + ["-c", server_ip, "-t", str(secs), "-J"] + (["-R"] if reverse else []),
                         check=True, capture_output=True, text=True).stdout
    # isol may print nothing else on stdout; the JSON is the whole output.
    data = json.loads(out[out.index("{"):])
    return data["end"]["sum_received"]["bits_per_second"] / 1e9


def rtt(addr, port, n):
    """Median and p99 round trip (microseconds) of 1-byte request/reply, from this ns."""
    deadline = time.time() + 30
    while True:
        try:
            s = socket.create_connection((addr, port), timeout=5)
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            s.sendall(b"x")
            if s.recv(1) == b"x":
                break
        except OSError:
            if time.time() > deadline:
                raise
            time.sleep(0.05)
    times = []
    for _ in range(n):
        t = time.perf_counter_ns()
        s.sendall(b"x")
        s.recv(1)
        times.append((time.perf_counter_ns() - t) / 1000)
    s.close()
    times.sort()
    return statistics.median(times), times[int(len(times) * 0.99)]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--isol", default=os.environ.get("ISOL_BIN", "target/release/isol"))
    ap.add_argument("--secs", type=int, default=5)
    ap.add_argument("--requests", type=int, default=2000)
    ap.add_argument("--starts", type=int, default=30)
    a = ap.parse_args()
    isol = os.path.abspath(a.isol)
    if not shutil.which("iperf3"):
        sys.exit("iperf3 missing: apt-get install -y iperf3")
    tmp = tempfile.mkdtemp(prefix="isol-netbench-")
    os.environ["ISOL_RUN_DIR"] = os.path.join(tmp, "run")
    sh(f"ip netns add {HOST_NS}")
    procs = []
    try:
        sh(f"ip -n {HOST_NS} link set lo up")
        rootfs, busybox_root = rootfs_with_iperf3(tmp)
        bb = os.path.join(busybox_root, "bin/busybox")
        ns = ["nsenter", f"--net=/run/netns/{HOST_NS}"]
        run = ns + [isol, "run", "--mode", "container", "--network", "bridge", "--rootfs", rootfs]
        rows = []
        # Throughput. Server in the host namespace, on all its addresses.
        procs.append(subprocess.Popen(ns + ["iperf3", "-s"], stdout=subprocess.DEVNULL))
        time.sleep(0.5)
        lo = iperf(ns + ["iperf3"], "127.0.0.1", a.secs)
        up = iperf(run + ["--", "iperf3"], "10.88.0.1", a.secs)
        down = iperf(run + ["--", "iperf3"], "10.88.0.1", a.secs, reverse=True)
        rows.append(("TCP throughput, host loopback (floor)", f"{lo:.2f} Gbit/s"))
        rows.append(("TCP throughput, workload -> host (bridge)", f"{up:.2f} Gbit/s ({up / lo:.2f}x)"))
        rows.append(("TCP throughput, host -> workload (bridge)", f"{down:.2f} Gbit/s ({down / lo:.2f}x)"))
        # Latency: echo server on host loopback, in a workload (direct and published).
        procs.append(subprocess.Popen(ns + [bb, "nc", "-l", "-p", "7001", "-e", "/bin/cat"]))
        l_med, l_p99 = nsrtt(ns, "127.0.0.1", 7001, a.requests)
        procs.append(subprocess.Popen(run + ["--publish", "7002:7000", "--", "nc", "-l", "-p", "7000", "-e", "/bin/cat"]))
        w_med, w_p99 = nsrtt(ns, "10.88.0.2", 7000, a.requests)
        procs[-1].wait()
        procs.append(subprocess.Popen(run + ["--publish", "7002:7000", "--", "nc", "-l", "-p", "7000", "-e", "/bin/cat"]))
        p_med, p_p99 = nsrtt(ns, "127.0.0.1", 7002, a.requests)
        procs[-1].wait()
        rows.append(("1-byte request RTT, host loopback", f"median {l_med:.0f} us, p99 {l_p99:.0f} us"))
        rows.append(("1-byte request RTT, host -> workload address", f"median {w_med:.0f} us, p99 {w_p99:.0f} us"))
        rows.append(("1-byte request RTT, host 127.0.0.1 -> published port", f"median {p_med:.0f} us, p99 {p_p99:.0f} us"))
        # Start-to-exit.
        if shutil.which("hyperfine"):
            js = os.path.join(tmp, "hf.json")
            base = " ".join(ns) + f" {isol} run --mode container"
            subprocess.run(["hyperfine", "-N", "-w", "3", "-r", str(a.starts), "--export-json", js,
                            f"{base} --network none -- true", f"{base} --network bridge -- true"],
                           check=True, capture_output=True)
            res = json.load(open(js))["results"]
            none, bridge = (r["median"] * 1e3 for r in res)
            # With another bridge run alive, the bridge and table already exist.
            procs.append(subprocess.Popen(run + ["--", "sleep", "600"]))
            time.sleep(1)
            subprocess.run(["hyperfine", "-N", "-w", "3", "-r", str(a.starts), "--export-json", js,
                            f"{base} --network bridge -- true"], check=True, capture_output=True)
            warm = json.load(open(js))["results"][0]["median"] * 1e3
            rows.append(("start-to-exit `-- true`, --network none", f"median {none:.1f} ms"))
            rows.append(("start-to-exit `-- true`, --network bridge (creates + removes isol0)",
                         f"median {bridge:.1f} ms (+{bridge - none:.1f} ms)"))
            rows.append(("start-to-exit `-- true`, --network bridge (isol0 in use by another run)",
                         f"median {warm:.1f} ms (+{warm - none:.1f} ms)"))
        width = max(len(r[0]) for r in rows)
        print("isol network benchmark (container mode, in a test-made network namespace)")
        for name, val in rows:
            print(f"  {name:<{width}}  {val}")
    finally:
        for p in procs:
            p.kill()
            p.wait()
        subprocess.run(["ip", "netns", "del", HOST_NS])
        shutil.rmtree(tmp, ignore_errors=True)


def nsrtt(ns, addr, port, n):
    """rtt() run inside the host namespace (a child python in it)."""
    code = f"import sys; sys.path.insert(0, {os.path.dirname(os.path.abspath(__file__))!r}); " \
           f"import network; print(*network.rtt({addr!r}, {port}, {n}))"
    out = subprocess.run(ns + [sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    med, p99 = out.split()
    return float(med), float(p99)


if __name__ == "__main__":
    main()
