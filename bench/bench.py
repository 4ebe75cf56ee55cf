#!/usr/bin/env python3
"""isol's benchmark: isol against the tools its users would pick instead, measured side by
side in one invocation. See bench/README.md. Python 3 standard library only; installs
nothing (scripts/deps.sh does). Prints; never fails a test suite: exit 0 unless the
benchmark itself is broken.
"""

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import fixtures  # noqa: E402
import report  # noqa: E402
import sections  # noqa: E402
import sections_vm  # noqa: E402

SECTIONS = {
    "container": sections.container,
    "vmm": sections.vmm,
    "vm-real": sections_vm.vm_real,
    "throughput": sections_vm.throughput,
    "throughput-vm": sections_vm.throughput_vm,  # the VM half; run in the lab on PVM hosts
}
PUBLIC = ["container", "vmm", "vm-real", "throughput"]
LAB_SECTIONS = ["vm-real", "throughput-vm"]
JSON_BEGIN, JSON_END = "@@ISOL-BENCH-JSON-BEGIN@@", "@@ISOL-BENCH-JSON-END@@"


def parse_args(argv):
    p = argparse.ArgumentParser(prog="bench/run.sh", description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="few runs: a smoke check, not a measurement")
    p.add_argument("--only", metavar="SECTION[,SECTION]",
                   help=f"run only these sections: {', '.join(PUBLIC)} (and throughput-vm)")
    p.add_argument("--runs", type=int, metavar="N", help="timed runs per candidate (default: per section)")
    p.add_argument("--lab-runs", type=int, metavar="N",
                   help="timed runs per candidate inside the nested lab (default: 8 boots, 4 pipes)")
    p.add_argument("--json", metavar="FILE", help="also write the results as JSON to FILE")
    p.add_argument("--isol", metavar="PATH", help="isol binary (default: $ISOL_BIN, target/release/isol)")
    p.add_argument("--guest", metavar="ELF", help="tiny PVH guest for the VMM section "
                   "(default: assemble vmm/tests/guests/hello-pvh.s)")
    p.add_argument("--no-lab", action="store_true", help="on a PVM host, skip the nested-lab sections")
    p.add_argument("--no-progress", action="store_true", help="no progress lines on stderr")
    p.add_argument("--lab-inner", action="store_true", help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    chosen = a.only.split(",") if a.only else list(PUBLIC)
    bad = [s for s in chosen if s not in SECTIONS]
    if bad:
        p.error(f"--only: unknown section {', '.join(bad)}; choose from {', '.join(PUBLIC)}")
    a.sections = chosen
    return a


def _version(argv):
    try:
        out = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=10)
        return out.stdout.decode(errors="replace").strip().splitlines()[0]
    except (OSError, subprocess.SubprocessError, IndexError):
        return "not found"


def meta(isol):
    cpu = "?"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), "?")
    except OSError:
        pass
    build = "?"
    if isol:
        build = "release" if "/release/" in isol else ("debug (NOT representative)" if "/debug/" in isol else "?")
    return {
        "date": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
        "host": f"{platform.node()} {platform.release()}, {os.cpu_count()} CPUs, {cpu}",
        "kvm": "PVM (kvm_pvm)" if fixtures.is_pvm_host() else
               ("kvm_amd" if os.path.isdir("/sys/module/kvm_amd") else
                "kvm_intel" if os.path.isdir("/sys/module/kvm_intel") else "none"),
        "loadavg_start": open("/proc/loadavg").read().split()[:3],
        "isol": f"{isol} ({build})" if isol else "not found",
        "kernel": os.environ.get("ISOL_KERNEL") or "not found",
        "versions": {t: _version(v) for t, v in {
            "runc": ["runc", "--version"], "crun": ["crun", "--version"], "bwrap": ["bwrap", "--version"],
            "qemu": ["qemu-system-x86_64", "--version"], "unshare": ["unshare", "--version"]}.items()},
    }


def run_lab(args, isol):
    """Runs the lab sections inside the nested lab in one lab boot; returns their dicts."""
    lab = fixtures.find_lab()
    if lab is None:
        return {"error": "the nested lab (tests/lab/run.sh) was not found or is not executable; "
                         "scripts/deps.sh prepares it (tests/lab/setup.sh)"}
    argv = [lab, "--", sys.executable or "python3", os.path.abspath(__file__), "--lab-inner",
            "--no-progress", "--only", ",".join(LAB_SECTIONS)]
    if isol:
        argv += ["--isol", isol]
    if args.quick:
        argv.append("--quick")
    if args.lab_runs:
        argv += ["--runs", str(args.lab_runs)]
    print("  [lab] booting the nested lab for VM mode (PVM host); output comes when it ends...",
          file=sys.stderr, flush=True)
    t0 = time.monotonic()
    env = dict(os.environ)
    env.setdefault("ISOL_LAB_TIMEOUT", "3000")  # the lab's own default (900 s) is too short
    p = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       env=env)
    took = time.monotonic() - t0
    out = p.stdout.decode(errors="replace")
    if JSON_BEGIN not in out or JSON_END not in out:
        tail = "\n".join(p.stderr.decode(errors="replace").strip().splitlines()[-8:])
        return {"error": f"the lab run failed (exit {p.returncode}, {took:.0f}s): {tail}"}
    inner = json.loads(out.split(JSON_BEGIN, 1)[1].split(JSON_END, 1)[0])
    inner["lab_seconds"] = took
    return inner


def main(argv):
    args = parse_args(argv)
    isol = fixtures.find_isol(args.isol)
    kernel = fixtures.find_kernel()
    if kernel and not os.environ.get("ISOL_KERNEL"):
        # isol and the QEMU baseline boot the same kernel; the lab passes ISOL_* through.
        os.environ["ISOL_KERNEL"] = kernel
    tmp = fixtures.make_tmp()
    results = {"meta": meta(isol), "sections": {}}
    ctx = sections.Ctx(args, isol, tmp)
    broken = []
    try:
        for name in args.sections:
            if not args.lab_inner:
                print(f"  [{name}] measuring...", file=sys.stderr, flush=True)
            load = open("/proc/loadavg").read().split()[:3]
            try:
                results["sections"][name] = SECTIONS[name](ctx)
            except Exception:  # a bench bug: report it, measure the rest, exit 1 at the end
                broken.append(f"section {name}:\n{traceback.format_exc()}")
                continue
            results["sections"][name]["loadavg"] = load
        want_lab = [s for s in args.sections if s in ("vm-real", "throughput")]
        if ctx.pvm and not ctx.lab and want_lab and not args.no_lab:
            results["lab"] = run_lab(args, isol)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    results["meta"]["loadavg_end"] = open("/proc/loadavg").read().split()[:3]
    results["broken"] = broken
    if args.lab_inner:
        print(JSON_BEGIN + json.dumps(results) + JSON_END)
        return 1 if broken else 0
    print_all(results)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
        print(f"JSON written to {args.json}")
    for b in broken + results.get("lab", {}).get("broken", []):
        print(f"BENCH BUG (please report): {b}", file=sys.stderr)
    return 1 if broken else 0


def print_all(results):
    m = results["meta"]
    print(f"isol benchmark, {m['date']}")
    print(f"  host: {m['host']}; /dev/kvm: {m['kvm']}")
    print(f"  load average at start: {' '.join(m['loadavg_start'])}, at end: {' '.join(m['loadavg_end'])}")
    print(f"  isol: {m['isol']}; guest kernel (ISOL_KERNEL): {m['kernel']}")
    print("  " + "; ".join(f"{k}: {v}" for k, v in m["versions"].items()))
    print("  times: median and spread (p25/p75, min/max, MAD) of start-to-exit, measured from spawn to "
          "the child's exit (pidfd)")
    print()
    secs = dict(results["sections"])
    lab = results.get("lab")
    num = 0
    for name in ["container", "vmm", "vm-real", "throughput"]:
        if name in secs:
            num += 1
            print("\n".join(report.section_lines(num, secs[name])))
    if lab is not None:
        num += 1
        if "error" in lab:
            print(f"== {num}. VM mode in the nested lab: NOT MEASURED: {lab['error']}\n")
        else:
            print(f"== {num}. In the nested lab (one lab boot, {lab['lab_seconds']:.0f} s; QEMU TCG with "
                  "emulated SVM; NOT representative of hardware KVM)")
            print(f"   lab host: {lab['meta']['host']}; /dev/kvm: {lab['meta']['kvm']}\n")
            for sub, name in enumerate(LAB_SECTIONS, 1):
                if name in lab["sections"]:
                    print("\n".join(report.section_lines(f"{num}.{sub}", lab["sections"][name])))
    print("\n".join(report.targets(secs)))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
