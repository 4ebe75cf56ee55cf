"""Sections that need a real guest kernel (VM mode) and the throughput section.

On a PVM host, ordinary guest kernels cannot boot, so `vm-real` and the VM half of
`throughput` run inside the nested lab (tests/lab/run.sh): bench.py re-runs itself there
with `--only vm-real,throughput-vm --lab-inner` and reads the JSON it prints.
"""

import os

import fixtures
import runner
import sections as S

MIB = 1024 * 1024


def _guest_ram_mib(initramfs_bytes):
    """Guest RAM for the QEMU baseline: isol's formula with no --memory
    (vmm/src/backend/plan.rs guest_ram) applied to QEMU's initramfs: 512 MiB workload +
    96 MiB overhead + 2 x initramfs, rounded up to 2 MiB. (isol's own initramfs holds only
    its init, the rootfs being served over virtio-9p, so isol's VM is a few MiB smaller.)"""
    raw = 512 * MIB + 96 * MIB + 2 * initramfs_bytes
    return -(-raw // (2 * MIB)) * 2


# vmm/src/backend/plan.rs cmdline(), plus the marker-printing /init of our initramfs.
QEMU_VM_CMDLINE = ("console=ttyS0 quiet reboot=k panic=-1 pci=off nomodule i8042.noaux i8042.nomux "
                   "i8042.nopnp i8042.dumbkbd tsc=reliable no_timer_check rdinit=/init")
QEMU_INIT = b"#!/bin/sh\n/bin/true\necho BENCH_INIT_OK\nexec reboot -f\n"


def vm_real(ctx):
    """3. `isol run --mode vm -- true` vs QEMU microvm, same kernel, busybox initramfs."""
    sec = S._section("VM mode with the real guest kernel: `true`", S._venue(ctx))
    if ctx.pvm and not ctx.lab:
        sec["missing"].append("PVM host: runs in the nested lab (see the lab section below)")
        return sec
    kernel = fixtures.find_kernel()
    rootfs = ctx.get_rootfs()
    cands = []
    if ctx.isol:
        cands.append(runner.Cand("isol", "isol run --mode vm -- true",
                                 S._isol(ctx, "run", "--mode", "vm", "--", "true"), timeout=300))
    if kernel is None:
        sec["missing"].append("no guest kernel ($ISOL_KERNEL or <cache>/kernels/default/vmlinux): "
                              "kernels/build.sh builds it; QEMU baseline skipped")
    elif rootfs is None:
        sec["missing"].append("no busybox rootfs in isol's cache: QEMU baseline skipped")
    elif S._tools(sec, ["qemu-system-x86_64"]):
        initrd = fixtures.build_initramfs(rootfs, os.path.join(ctx.tmp, "qemu-initramfs.cpio"), QEMU_INIT)
        mib = _guest_ram_mib(os.path.getsize(initrd))
        argv = S.QEMU_BASE + ["-m", f"{mib}M", "-smp", "1", "-device", "i8042", "-kernel", kernel,
                              "-initrd", initrd, "-append", QEMU_VM_CMDLINE]
        cands.append(runner.Cand("qemu", f"qemu-system-x86_64 -M microvm (same kernel, {mib} MiB)",
                                 lambda i: argv, timeout=300, keep_tail=4096,
                                 check=S._has(S.INIT_MARK)))
        sec["guest_mib"] = mib
        sec["notes"].append(f"kernel: {kernel}")
        sec["notes"].append(f"QEMU initramfs: busybox rootfs + /init (true; echo BENCH_INIT_OK; reboot -f), "
                            f"uncompressed, {os.path.getsize(initrd) // 1024} KiB, built by the bench")
        sec["notes"].append("QEMU: " + " ".join(S.QEMU_BASE + ["-m", f"{mib}M", "-smp", "1", "-device", "i8042",
                                                          "-kernel", "K", "-initrd", "I", "-append",
                                                          repr(QEMU_VM_CMDLINE)]))
    plan = ctx.plan(8, 1, rss_runs=2) if ctx.lab else ctx.plan(20, 2)
    S._run_and_fill(ctx, sec, "vm-real", cands, plan, S.EXIT_METRICS)
    return sec


def _mbps(s):
    return s.out_bytes / 1e6 / (s.exit_ms / 1000.0) if s.exit_ms else None


def _stream_mbps(s):
    if s.first_ms is None or s.last_ms is None or s.last_ms <= s.first_ms:
        return None
    return s.out_bytes / 1e6 / ((s.last_ms - s.first_ms) / 1000.0)


PIPE_METRICS = {"exit_ms": lambda s: s.exit_ms, "mbps": _mbps, "stream_mbps": _stream_mbps}


def _pipe_cands(ctx, sec, modes, nbytes):
    cmd = f"head -c {nbytes} /dev/zero"

    def all_bytes(s):
        return None if s.out_bytes == nbytes else f"got {s.out_bytes} bytes, expected {nbytes}"

    cands = []
    if ctx.isol:
        for mode in modes:
            cands.append(runner.Cand(f"isol_{mode}", f"isol run --mode {mode} -- sh -c '{cmd}'",
                                     S._isol(ctx, "run", "--mode", mode, "--", "sh", "-c", cmd),
                                     check=all_bytes, timeout=600, rss=False))
    if S._tools(sec, ["unshare", "busybox"]):
        # The same static busybox isol's rootfs holds, run by the host (its /dev/zero).
        bb = "/bin/busybox"
        cands.append(runner.Cand("unshare", f"unshare ... busybox sh -c '{cmd}' (floor)",
                                 lambda i: S.TRUE_NS + [bb, "sh", "-c", f"{bb} {cmd}"],
                                 check=all_bytes, timeout=600, rss=False))
    return cands


def throughput(ctx):
    """4. 50 MiB of zeros from the workload to a pipe read by the bench."""
    sec = S._section(f"Throughput: sh -c '{S.PIPE_CMD}' to a pipe", S._venue(ctx))
    sec["kind"] = "pipe"
    modes = ["container"] if ctx.pvm and not ctx.lab else ["container", "vm"]
    if ctx.pvm and not ctx.lab:
        sec["notes"].append("VM mode on this PVM host: measured in the nested lab (section below)")
    sec["notes"].append("50 MiB = 52428800 bytes (busybox head has no M suffix); MB/s = 52.4 MB / "
                        "(spawn to exit); stream MB/s = bytes / (first to last byte)")
    _run_and_fill(ctx, sec, "throughput", _pipe_cands(ctx, sec, modes, S.PIPE_BYTES), ctx.plan(15, 2))
    return sec


# The lab's payload: the full 50 MiB since the channel's shared-buffer transport (64 KiB per
# VM exit) made it take seconds; with one exit per page it took hours (every exit of the L2
# guest goes through QEMU's emulation of SVM). Lower it here if that ever comes back.
LAB_PIPE_BYTES = S.PIPE_BYTES


def throughput_vm(ctx):
    """4b. The VM half of throughput, with its own floor, where VM mode can run."""
    nbytes = LAB_PIPE_BYTES if ctx.lab else S.PIPE_BYTES
    sec = S._section(f"Throughput, VM mode: sh -c 'head -c {nbytes} /dev/zero' to a pipe", S._venue(ctx))
    sec["kind"] = "pipe"
    sec["notes"].append("the unshare floor is measured here too, on the same (emulated) CPU")
    if ctx.lab and nbytes != S.PIPE_BYTES:
        sec["notes"].append(f"{nbytes // 1024} KiB instead of 50 MiB in the lab")
    if ctx.lab:
        sec["notes"].append("MB/s over spawn-to-exit include the guest's boot (seconds in the lab)")
    plan = runner.Plan(runs=ctx.args.lab_runs or 3, warmup=0) if ctx.lab else ctx.plan(15, 2)
    _run_and_fill(ctx, sec, "throughput-vm", _pipe_cands(ctx, sec, ["vm"], nbytes), plan)
    return sec


def _run_and_fill(ctx, sec, name, cands, plan):
    S._run_and_fill(ctx, sec, name, cands, plan, PIPE_METRICS)
