"""What the benchmark runs against: isol's binary and cache, an OCI bundle for runc/crun,
an initramfs for QEMU, the tiny hello guest. Python standard library only; nothing is
downloaded or installed here.
"""

import glob
import json
import os
import shutil
import stat
import subprocess
import tempfile

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Debian package that provides each external tool (all installed by scripts/deps.sh).
PACKAGES = {
    "unshare": "util-linux",
    "bwrap": "bubblewrap",
    "runc": "runc",
    "crun": "crun",
    "qemu-system-x86_64": "qemu-system-x86",
    "time": "time",
    "as": "binutils",
    "ld": "binutils",
    "busybox": "busybox-static",
}


def missing_tool(name):
    """None when `name` is on PATH, else a line saying which package provides it."""
    if shutil.which(name) or (name == "time" and os.access("/usr/bin/time", os.X_OK)):
        return None
    pkg = PACKAGES.get(name, name)
    return f"{name} not found: install Debian package {pkg} (scripts/deps.sh installs it)"


def cache_dir():
    """isol's cache dir, resolved the way common/src/paths.rs does."""
    for var, suffix in (("ISOL_CACHE_DIR", ""), ("XDG_CACHE_HOME", "isol"), ("HOME", ".cache/isol")):
        v = os.environ.get(var)
        if v:
            return os.path.join(v, suffix) if suffix else v
    return "/var/cache/isol"


def find_isol(explicit=None):
    """The isol binary: --isol, $ISOL_BIN, then target*/release/isol, then PATH."""
    if explicit:
        return os.path.abspath(explicit)
    if os.environ.get("ISOL_BIN"):
        return os.environ["ISOL_BIN"]
    cands = [os.path.join(REPO, "target/release/isol")]
    cands += sorted(glob.glob(os.path.join(REPO, "target-*/release/isol")), key=os.path.getmtime, reverse=True)
    for c in cands:
        if os.access(c, os.X_OK):
            return c
    return shutil.which("isol")


def find_rootfs(isol=None):
    """isol's default busybox rootfs in the cache; asks isol to build it if absent."""

    def look():
        done = glob.glob(os.path.join(cache_dir(), "rootfs/busybox-*/.complete"))
        return os.path.dirname(max(done, key=os.path.getmtime)) if done else None

    found = look()
    if found is None and isol:
        # `isol run` builds the default rootfs before it starts the workload.
        subprocess.run([isol, "run", "--", "true"], stdin=subprocess.DEVNULL,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=60)
        found = look()
    return found


def private_rootfs(tmp):
    """A busybox rootfs like isol's (common/src/rootfs.rs), built in tmp for the baselines
    when isol's cache has none (e.g. isol cannot build it). None without busybox."""
    bb = "/bin/busybox"
    if not os.access(bb, os.X_OK):
        return None
    root = os.path.join(tmp, "rootfs")
    for d in ("bin", "sbin", "usr/bin", "usr/sbin", "etc", "proc", "sys", "dev", "tmp", "root",
              "home", "var/tmp", "run", "mnt"):
        os.makedirs(os.path.join(root, d), exist_ok=True)
    shutil.copy2(bb, os.path.join(root, "bin/busybox"))
    with open(os.path.join(root, "etc/passwd"), "w") as f:
        f.write("root:x:0:0:root:/root:/bin/sh\n")
    out = subprocess.run([bb, "--list-full"], stdout=subprocess.PIPE, check=True).stdout.decode()
    for applet in out.split():
        link = os.path.join(root, applet)
        if applet != "bin/busybox" and ".." not in applet and not os.path.lexists(link):
            os.symlink("/bin/busybox", link)
    return root


def find_kernel():
    """The guest kernel isol uses: $ISOL_KERNEL, then <cache>/kernels/default/vmlinux."""
    k = os.environ.get("ISOL_KERNEL")
    if k and os.path.isfile(k):
        return k
    k = os.path.join(cache_dir(), "kernels/default/vmlinux")
    return os.path.realpath(k) if os.path.isfile(k) else None


def find_lab():
    """tests/lab/run.sh of this checkout (or $ISOL_LAB)."""
    p = os.environ.get("ISOL_LAB") or os.path.join(REPO, "tests/lab/run.sh")
    return p if os.access(p, os.X_OK) else None


def is_pvm_host():
    return os.path.isdir("/sys/module/kvm_pvm")


def in_lab():
    return os.environ.get("ISOL_IN_LAB") == "1"


class Bundle:
    """An OCI bundle in a temp dir: a copy of the rootfs and a config.json from `runc spec`."""

    def __init__(self, rootfs, args, tmp):
        self.dir = os.path.join(tmp, "bundle")
        os.makedirs(self.dir)
        shutil.copytree(rootfs, os.path.join(self.dir, "rootfs"), symlinks=True)
        subprocess.run(["runc", "spec"], cwd=self.dir, check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        path = os.path.join(self.dir, "config.json")
        with open(path) as f:
            cfg = json.load(f)
        cfg["process"]["args"] = list(args)
        cfg["process"]["terminal"] = False
        cfg["root"] = {"path": "rootfs", "readonly": True}
        cfg["hostname"] = "bench"
        with open(path, "w") as f:
            json.dump(cfg, f, indent=1)


def cpio_newc(entries):
    """Bytes of a newc cpio archive. entries: (name, mode, data, rdev_major, rdev_minor)."""
    out = bytearray()
    ino = 1000

    def pad4():
        out.extend(b"\0" * (-len(out) % 4))

    for name, mode, data, rmaj, rmin in list(entries) + [("TRAILER!!!", 0, b"", 0, 0)]:
        ino += 1
        nlink = 2 if stat.S_ISDIR(mode) else 1
        fields = [ino, mode, 0, 0, nlink, 0, len(data), 0, 0, rmaj, rmin, len(name) + 1, 0]
        out.extend(b"070701" + b"".join(b"%08x" % f for f in fields))
        out.extend(name.encode() + b"\0")
        pad4()
        out.extend(data)
        pad4()
    return bytes(out)


def rootfs_entries(rootfs):
    """(name, mode, data, 0, 0) for every directory, file and symlink under rootfs."""
    entries = []
    for dirpath, dirnames, filenames in os.walk(rootfs):
        dirnames.sort()
        rel_dir = os.path.relpath(dirpath, rootfs)
        for name in sorted(dirnames) + sorted(filenames):
            full = os.path.join(dirpath, name)
            rel = name if rel_dir == "." else os.path.join(rel_dir, name)
            if rel == ".complete":
                continue
            st = os.lstat(full)
            if stat.S_ISLNK(st.st_mode):
                data = os.readlink(full).encode()
            elif stat.S_ISREG(st.st_mode):
                with open(full, "rb") as f:
                    data = f.read()
            else:
                data = b""
            entries.append((rel, st.st_mode, data, 0, 0))
    return entries


INIT_SCRIPT = b"#!/bin/sh\ntrue\nexec reboot -f\n"


def build_initramfs(rootfs, path, init=INIT_SCRIPT):
    """An uncompressed initramfs: the rootfs, /dev/console and /init running `true` then
    rebooting (the kernel command line says reboot=t, so the reboot is a triple fault,
    which makes QEMU -no-reboot exit)."""
    entries = [e for e in rootfs_entries(rootfs) if e[0] != "init"]
    entries.append(("init", stat.S_IFREG | 0o755, init, 0, 0))
    if not any(e[0] == "dev" for e in entries):
        entries.append(("dev", stat.S_IFDIR | 0o755, b"", 0, 0))
    entries.append(("dev/console", stat.S_IFCHR | 0o600, b"", 5, 1))
    with open(path, "wb") as f:
        f.write(cpio_newc(entries))
    return path


def make_tmp():
    return tempfile.mkdtemp(prefix="isol-bench-")


GUESTS = os.path.join(REPO, "vmm/tests/guests")


def hello_guest(explicit, tmp):
    """(path, description) of the tiny PVH hello guest, assembled by
    vmm/tests/guests/build.sh into tmp; (None, why) when it cannot be."""
    if explicit:
        return (os.path.abspath(explicit), f"{explicit} (--guest)") if os.path.isfile(explicit) \
            else (None, f"--guest {explicit}: no such file")
    script = os.path.join(GUESTS, "build.sh")
    if not os.path.isfile(script):
        return None, f"{script} not found (the VMM's tiny guests)"
    for tool in ("as", "ld"):
        m = missing_tool(tool)
        if m:
            return None, m
    out = os.path.join(tmp, "guests")
    p = subprocess.run(["sh", script, out], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    elf = os.path.join(out, "hello-pvh")
    if p.returncode != 0 or not os.path.isfile(elf):
        return None, f"{script} {out} failed: {p.stdout.decode(errors='replace').strip()[-300:]}"
    return elf, f"vmm/tests/guests/hello-pvh.s (assembled by vmm/tests/guests/build.sh), " \
                f"{os.path.getsize(elf)} bytes"
