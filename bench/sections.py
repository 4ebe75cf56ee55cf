"""The benchmark's sections: what is compared against what, and how each is checked.

Each section function takes a Ctx and returns a JSON-able dict:
{"title", "venue", "notes": [...], "missing": [...], "rows": {key: row}, "order": [...]}.
"""

import os
import subprocess

import fixtures
import runner

TRUE_NS = ["unshare", "--fork", "--pid", "--mount", "--uts", "--ipc", "--net"]
# 50M as bytes: busybox's head (the rootfs's) knows only lowercase suffixes; `-c 50M` fails.
PIPE_CMD = "head -c 52428800 /dev/zero"
PIPE_BYTES = 50 * 1024 * 1024
HELLO_MARK = b"hello"
INIT_MARK = b"BENCH_INIT_OK"
QEMU_MACHINE = ("microvm,isa-serial=on,pit=off,pic=off,rtc=off,acpi=off,pcie=off,usb=off,"
                "x-option-roms=off,auto-kernel-cmdline=off,graphics=off")
# -cpu host fails on PVM ("failed to set MSR 0x10a": IA32_ARCH_CAPABILITIES); dropping that
# one feature works on PVM and on hardware KVM alike.
QEMU_BASE = ["qemu-system-x86_64", "-M", QEMU_MACHINE, "-accel", "kvm", "-cpu",
             "host,-arch-capabilities", "-nodefaults", "-no-user-config", "-nographic",
             "-no-reboot", "-serial", "stdio"]
QEMU_GUEST_MIB = 128
VM_GUEST_KERNEL_ARGS = "console=ttyS0 quiet reboot=t panic=-1"


class Ctx:
    """Everything the sections share."""

    def __init__(self, args, isol, tmp):
        self.args = args
        self.isol = isol
        self.tmp = tmp
        self.rootfs = None
        self.rootfs_note = None
        self.pvm = fixtures.is_pvm_host()
        self.lab = fixtures.in_lab() or args.lab_inner
        self.progress = not args.no_progress

    def plan(self, default_runs, default_warmup, rss_runs=5):
        if self.args.runs:
            runs = self.args.runs
        elif self.args.quick:
            runs = min(5, default_runs)
        else:
            runs = default_runs
        warmup = 1 if self.args.quick else default_warmup
        return runner.Plan(runs=runs, warmup=warmup, rss_runs=2 if self.args.quick else rss_runs)

    def get_rootfs(self):
        """isol's default rootfs, else a private copy built the same way (noted once)."""
        if self.rootfs is None:
            self.rootfs = fixtures.find_rootfs(self.isol) or ""
            if not self.rootfs:
                self.rootfs = fixtures.private_rootfs(self.tmp) or ""
                self.rootfs_note = ("isol's cache has no busybox rootfs (isol could not build it): "
                                    "the baselines use a private busybox rootfs built the same way")
        return self.rootfs or None


def _section(title, venue):
    return {"title": title, "venue": venue, "notes": [], "missing": [], "rows": {}, "order": []}


def _venue(ctx):
    if ctx.lab:
        return "nested lab (TCG): not representative of hardware KVM"
    return "this host, directly" + (" (PVM /dev/kvm)" if ctx.pvm else "")


def _tools(sec, names):
    ok = True
    for n in names:
        m = fixtures.missing_tool(n)
        if m:
            sec["missing"].append(m)
            ok = False
    return ok


def _isol(ctx, *args):
    return lambda i: [ctx.isol, *args]


def _run_and_fill(ctx, sec, name, cands, plan, metrics):
    res = runner.measure(name, cands, plan, progress=ctx.progress)
    sec["rows"] = runner.finish(res, metrics)
    sec["order"] = [c.key for c in cands]
    sec["plan"] = {"runs": plan.runs, "warmup": plan.warmup, "rss_runs": plan.rss_runs}


EXIT_METRICS = {"exit_ms": lambda s: s.exit_ms}


def container(ctx):
    """1. Container start-to-exit of `true`."""
    sec = _section("Container start-to-exit of `true`", _venue(ctx))
    cands = []
    if ctx.isol:
        cands.append(runner.Cand("isol", "isol run --mode container -- true",
                                 _isol(ctx, "run", "--mode", "container", "--", "true")))
    else:
        sec["missing"].append("isol binary not found: build it (scripts/build.sh --release) or pass --isol")
    cands.append(runner.Cand("exec", "fork+exec /bin/true (no isolation)", lambda i: ["/bin/true"],
                             rss=True))
    if _tools(sec, ["unshare"]):
        cands.append(runner.Cand("unshare", "unshare --fork --pid --mount --uts --ipc --net true",
                                 lambda i: TRUE_NS + ["true"]))
    rootfs = ctx.get_rootfs()
    if not rootfs:
        sec["missing"].append("no busybox rootfs in isol's cache (isol run builds it; needs busybox-static): "
                              "bwrap, runc, crun skipped")
    else:
        sec["notes"].append(f"rootfs: {rootfs}")
        if ctx.rootfs_note:
            sec["notes"].append(ctx.rootfs_note)
        cands += _container_peers(ctx, sec, rootfs)
    _run_and_fill(ctx, sec, "container", cands, ctx.plan(40, 5), EXIT_METRICS)
    _crun_net(sec)
    return sec


def _container_peers(ctx, sec, rootfs):
    cands = []
    if _tools(sec, ["bwrap"]):
        cands.append(runner.Cand(
            "bwrap", "bwrap --unshare-all --die-with-parent (busybox rootfs) true",
            lambda i: ["bwrap", "--unshare-all", "--die-with-parent", "--ro-bind", rootfs, "/",
                       "--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp", "true"]))
    have_runc = _tools(sec, ["runc"])
    have_crun = _tools(sec, ["crun"])
    if not (have_runc or have_crun):
        return cands
    if not have_runc:
        sec["missing"].append("the OCI bundle's config.json comes from `runc spec`: crun skipped too")
        return cands
    bundle = fixtures.Bundle(rootfs, ["true"], ctx.tmp)
    pid = os.getpid()

    def rid(tool, i):
        return f"isol-bench-{tool}-{pid}-{i}"

    cands.append(runner.Cand(
        "runc", "runc run (OCI bundle, busybox rootfs) true",
        lambda i: ["runc", "run", "--bundle", bundle.dir, rid("runc", i)],
        cleanup=lambda i: _quiet(["runc", "delete", "--force", rid("runc", i)])))
    if not have_crun:
        return cands
    if os.path.ismount("/sys/fs/cgroup/unified"):
        # Hybrid cgroups: crun 1.8 refuses them; ENVIRONMENT.md's workaround hides cgroup2.
        wrap = ["unshare", "-m", "--propagation", "private", "sh", "-c"]
        cands.append(runner.Cand(
            "crun_wrapped", "crun run, in unshare -m + sh + umount cgroup2 (workaround)",
            lambda i: wrap + [f"umount /sys/fs/cgroup/unified && exec crun run --bundle {bundle.dir} "
                              f"{rid('crun', i)}"],
            cleanup=lambda i: _quiet(wrap + [f"umount /sys/fs/cgroup/unified; crun delete -f {rid('crun', i)}"])))
        cands.append(runner.Cand(
            "crun_wrapper", "  the workaround alone: unshare -m + sh + umount, exec /bin/true",
            lambda i: wrap + ["umount /sys/fs/cgroup/unified && exec true"]))
        sec["notes"].append("crun 1.8 refuses hybrid cgroup hosts: it runs inside ENVIRONMENT.md's workaround; "
                            "'crun (net)' = median(wrapped) - median(workaround alone)")
    else:
        cands.append(runner.Cand(
            "crun", "crun run (OCI bundle, busybox rootfs) true",
            lambda i: ["crun", "run", "--bundle", bundle.dir, rid("crun", i)],
            cleanup=lambda i: _quiet(["crun", "delete", "-f", rid("crun", i)])))
    return cands


def _crun_net(sec):
    """crun's own cost: median(wrapped) - median(workaround alone). Noise can make it
    meaningless (<= 0); then it is left out and the targets use the wrapped figure."""
    rows = sec["rows"]
    w, a = rows.get("crun_wrapped"), rows.get("crun_wrapper")
    if not (w and a and w["exit_ms"] and a["exit_ms"]):
        return
    net = w["exit_ms"]["median"] - a["exit_ms"]["median"]
    net_min = w["exit_ms"]["min"] - a["exit_ms"]["min"]
    if net <= 0:
        sec["notes"].append(f"crun (net) not computed: the workaround alone ({a['exit_ms']['median']:.2f} ms) "
                            f"was not faster than crun in it ({w['exit_ms']['median']:.2f} ms): too noisy")
        return
    rows["crun_net"] = {"label": f"crun (net: wrapped - workaround; minima give {net_min:.2f} ms)",
                        "note": "", "runs_ok": w["runs_ok"],
                        "errors": [], "failures": 0, "extra": {"derived": True, "net_min": net_min},
                        "exit_ms": {"n": w["exit_ms"]["n"], "median": net, "p25": None, "p75": None,
                                    "min": None, "max": None, "mad": None},
                        "rss_kib": w["rss_kib"]}
    sec["order"].append("crun_net")


def _quiet(argv):
    try:
        subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, timeout=20)
    except (OSError, subprocess.SubprocessError):
        pass


def _has(mark):
    """Check that the output's tail holds mark (case-insensitive)."""
    return lambda s: None if mark.lower() in s.tail.lower() else f"output lacks {mark!r}: {s.tail[-200:]!r}"


def vmm(ctx):
    """2. The bare VMM on the tiny hello guest vs QEMU microvm, same guest file."""
    sec = _section("VMM cost: tiny hello guest (prints one line, resets)", _venue(ctx))
    sec["kind"] = "vmm"
    guest, how = fixtures.hello_guest(ctx.args.guest, ctx.tmp)
    if guest is None:
        sec["missing"].append(f"hello guest: {how}")
        return sec
    sec["notes"].append(f"guest: {how}")
    mem = f"{QEMU_GUEST_MIB}M"
    sec["guest_mib"] = QEMU_GUEST_MIB
    cands = []
    if ctx.isol:
        cands.append(runner.Cand(
            "isol", f"isol boot --allow-pvm --memory {mem}",
            _isol(ctx, "boot", "--kernel", guest, "--allow-pvm", "--memory", mem, "--timeout", "20"),
            check=_has(HELLO_MARK), keep_tail=256, timeout=30))
    if _tools(sec, ["qemu-system-x86_64"]):
        cands.append(runner.Cand(
            "qemu", f"qemu-system-x86_64 -M microvm -device i8042 -m {mem}",
            lambda i: QEMU_BASE + ["-m", mem, "-device", "i8042", "-kernel", guest],
            check=_has(HELLO_MARK), keep_tail=256, timeout=30))
        sec["notes"].append("QEMU: " + " ".join(QEMU_BASE + ["-m", mem, "-device", "i8042", "-kernel", "GUEST"]))
        sec["notes"].append("QEMU microvm has no i8042 of its own: -device i8042 adds one so the guest's "
                            "i8042 reset ends QEMU (-no-reboot) as it ends isol; without it PVM fails "
                            "the guest's triple-fault fallback with KVM_EXIT_INTERNAL_ERROR and QEMU hangs")
    _run_and_fill(ctx, sec, "vmm", cands, ctx.plan(30, 3),
                  {"exit_ms": lambda s: s.exit_ms, "first_ms": lambda s: s.first_ms})
    return sec
