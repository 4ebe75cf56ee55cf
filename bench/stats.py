"""Measurement primitives of the isol benchmark: timed child runs and summary statistics.

Python standard library only. A run is spawned with posix_spawn (vfork-like, so the
harness adds little), its exit is seen through a pidfd, and its stdout is read through a
pipe to time the first byte and count the bytes. Peak RSS is NOT taken from these runs:
a child spawned by this Python process inherits Python's own high-water RSS (about
14 MiB), so ru_maxrss would be wrong for small programs. RSS runs go through GNU time
(`/usr/bin/time -f %M`), a small C program whose children start from a small RSS.
"""

import math
import os
import select
import signal
import tempfile
import time
from dataclasses import dataclass, field

GNU_TIME = "/usr/bin/time"


@dataclass
class Sample:
    """One timed run."""

    exit_ms: float
    first_ms: float | None = None
    last_ms: float | None = None
    code: int = 0
    out_bytes: int = 0
    err: str = ""
    timed_out: bool = False
    tail: bytes = b""


@dataclass
class Summary:
    """Order statistics of a list of numbers."""

    n: int
    median: float
    p25: float
    p75: float
    lo: float
    hi: float
    mad: float
    values: list = field(default_factory=list, repr=False)


def percentile(sorted_vals, q):
    """Linear-interpolated percentile (q in 0..100) of an already sorted list."""
    if not sorted_vals:
        raise ValueError("percentile of an empty list")
    if len(sorted_vals) == 1:
        return float(sorted_vals[0])
    pos = (len(sorted_vals) - 1) * q / 100.0
    lo = math.floor(pos)
    hi = min(lo + 1, len(sorted_vals) - 1)
    frac = pos - lo
    return sorted_vals[lo] * (1 - frac) + sorted_vals[hi] * frac


def summarize(values):
    """Summary of values (None entries dropped); None when nothing is left."""
    vals = sorted(v for v in values if v is not None)
    if not vals:
        return None
    med = percentile(vals, 50)
    mad = percentile(sorted(abs(v - med) for v in vals), 50)
    return Summary(
        n=len(vals),
        median=med,
        p25=percentile(vals, 25),
        p75=percentile(vals, 75),
        lo=vals[0],
        hi=vals[-1],
        mad=mad,
        values=list(values),
    )


def ratio(a, b):
    """a / b, or None when either is missing or b is zero."""
    if a is None or b is None or b == 0:
        return None
    return a / b


def _kill_group(pid):
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            return
        time.sleep(0.2)


def _exit_code(status):
    if os.WIFEXITED(status):
        return os.WEXITSTATUS(status)
    if os.WIFSIGNALED(status):
        return 128 + os.WTERMSIG(status)
    return -1


def run_timed(argv, cwd=None, env=None, timeout=60.0, keep_tail=0, stdin_path=os.devnull):
    """Runs argv once with stdout on a pipe; returns a Sample.

    Times are ms from just before spawn: first stdout byte, last stdout byte, and exit
    (the pidfd becoming readable). stderr goes to a temp file, kept only on failure.
    The child gets its own session so a timeout kills everything it started.
    """
    env = os.environ.copy() if env is None else env
    rfd, wfd = os.pipe()
    errf = tempfile.TemporaryFile()
    infd = os.open(stdin_path, os.O_RDONLY)
    actions = [
        (os.POSIX_SPAWN_DUP2, infd, 0),
        (os.POSIX_SPAWN_DUP2, wfd, 1),
        (os.POSIX_SPAWN_DUP2, errf.fileno(), 2),
    ]
    old_cwd = None
    try:
        if cwd is not None:
            old_cwd = os.getcwd()
            os.chdir(cwd)
        t0 = time.perf_counter()
        pid = os.posix_spawnp(argv[0], argv, env, file_actions=actions, setsid=True)
    finally:
        if old_cwd is not None:
            os.chdir(old_cwd)
        os.close(wfd)
        os.close(infd)
    try:
        return _collect(pid, rfd, errf, t0, timeout, keep_tail)
    finally:
        os.close(rfd)
        errf.close()


def _collect(pid, rfd, errf, t0, timeout, keep_tail):
    pidfd = os.pidfd_open(pid)
    poller = select.poll()
    poller.register(rfd, select.POLLIN)
    poller.register(pidfd, select.POLLIN)
    buf = bytearray(1 << 20)
    view = memoryview(buf)
    first = last = exited = None
    nbytes = 0
    tail = b""
    pipe_open = True
    deadline = t0 + timeout
    timed_out = False
    try:
        while pipe_open or exited is None:
            left = deadline - time.perf_counter()
            if left <= 0:
                timed_out = True
                _kill_group(pid)
                break
            for fd, _ev in poller.poll(left * 1000):
                now = time.perf_counter()
                if fd == pidfd:
                    exited = now
                    poller.unregister(pidfd)
                    continue
                n = os.readv(rfd, [view])
                if n == 0:
                    pipe_open = False
                    poller.unregister(rfd)
                    continue
                if first is None:
                    first = now
                last = now
                nbytes += n
                if keep_tail:
                    tail = (tail + bytes(view[:n]))[-keep_tail:]
            if exited is not None and pipe_open and time.perf_counter() - exited > 2.0:
                break  # a descendant holds stdout open; do not wait for it forever
    finally:
        if exited is None and not timed_out:
            _kill_group(pid)  # interrupted (e.g. Ctrl-C): do not leave the run behind
        _, status, _ru = os.wait4(pid, 0)
        os.close(pidfd)
    code = _exit_code(status)
    err = ""
    if code != 0 or timed_out:
        errf.seek(0)
        err = errf.read()[-2000:].decode(errors="replace")
    exited = exited if exited is not None else time.perf_counter()

    def ms(t):
        return None if t is None else (t - t0) * 1000.0

    return Sample(
        exit_ms=ms(exited),
        first_ms=ms(first),
        last_ms=ms(last),
        code=code,
        out_bytes=nbytes,
        err=err,
        timed_out=timed_out,
        tail=tail,
    )


def run_rss_kib(argv, cwd=None, env=None, timeout=60.0):
    """Peak RSS (KiB) of argv and its waited-for descendants via GNU time, or None."""
    if not os.access(GNU_TIME, os.X_OK):
        return None
    with tempfile.NamedTemporaryFile(prefix="isol-bench-rss-") as out:
        s = run_timed(
            [GNU_TIME, "-f", "%M", "-o", out.name] + list(argv),
            cwd=cwd,
            env=env,
            timeout=timeout,
        )
        if s.code != 0 or s.timed_out:
            return None
        try:
            return int(out.read().decode().strip().splitlines()[-1])
        except (ValueError, IndexError):
            return None
