"""The measurement loop: candidates run round-robin in shuffled order (so machine noise
hits all of them alike), warm-up rounds discarded, then a few runs under GNU time for
peak RSS. Results are plain dicts so they serialize to JSON and cross the nested lab.
"""

import random
import sys
from dataclasses import dataclass, field
from typing import Callable, Optional

import stats


@dataclass
class Cand:
    """One thing to measure."""

    key: str
    label: str
    argv: Callable[[int], list]  # run index -> argv
    cwd: Optional[str] = None
    cleanup: Optional[Callable[[int], None]] = None  # after a failed run
    check: Optional[Callable[[stats.Sample], Optional[str]]] = None  # -> error or None
    expect: int = 0
    timeout: float = 60.0
    rss: bool = True
    note: str = ""
    keep_tail: int = 0
    extra: dict = field(default_factory=dict)


@dataclass
class Plan:
    """How many runs."""

    runs: int
    warmup: int
    rss_runs: int = 5


def _failure(c, s):
    if s.timed_out:
        return f"timed out after {c.timeout:.0f}s; stderr: {s.err.strip()[-300:]}"
    if s.code != c.expect:
        return f"exit {s.code} (expected {c.expect}); stderr: {s.err.strip()[-300:]}"
    if c.check:
        return c.check(s)
    return None


def measure(section, cands, plan, progress=True):
    """Runs every candidate plan.warmup + plan.runs times, interleaved. Returns
    {key: {"label", "samples": [Sample...], "errors": [...], "rss_kib": [...], ...}}."""
    res = {c.key: {"label": c.label, "note": c.note, "samples": [], "errors": [], "rss_kib": [],
                   "extra": dict(c.extra)} for c in cands}
    active = list(cands)
    fails = {c.key: 0 for c in cands}
    rng = random.Random(section)
    total = plan.warmup + plan.runs
    idx = 0
    for rnd in range(total):
        if progress:
            print(f"\r  [{section}] round {rnd + 1}/{total}   ", end="", file=sys.stderr, flush=True)
        order = active[:]
        rng.shuffle(order)
        for c in order:
            idx += 1
            s = stats.run_timed(c.argv(idx), cwd=c.cwd, timeout=c.timeout, keep_tail=c.keep_tail)
            err = _failure(c, s)
            if err:
                if c.cleanup:
                    c.cleanup(idx)
                res[c.key]["errors"].append(err)
                fails[c.key] += 1
                # Three failures before any success: it does not work here; stop trying.
                if fails[c.key] >= 3 and not res[c.key]["samples"]:
                    active.remove(c)
                continue
            if rnd >= plan.warmup:
                res[c.key]["samples"].append(s)
    if progress:
        print(f"\r  [{section}] peak RSS runs (GNU time)       ", end="", file=sys.stderr, flush=True)
    for c in active:
        if not c.rss or not res[c.key]["samples"]:
            continue
        for _ in range(plan.rss_runs):
            idx += 1
            kib = stats.run_rss_kib(c.argv(idx), cwd=c.cwd, timeout=c.timeout)
            if kib is None and c.cleanup:
                c.cleanup(idx)
            res[c.key]["rss_kib"].append(kib)
    if progress:
        print("\r" + " " * 60 + "\r", end="", file=sys.stderr, flush=True)
    return res


def summary_dict(values):
    """stats.summarize as a JSON-able dict (or None)."""
    s = stats.summarize(values)
    if s is None:
        return None
    return {"n": s.n, "median": s.median, "p25": s.p25, "p75": s.p75, "min": s.lo,
            "max": s.hi, "mad": s.mad}


def finish(res, metrics):
    """Turns raw samples into JSON-able rows. metrics: {name: Sample -> float|None}."""
    rows = {}
    for key, r in res.items():
        row = {"label": r["label"], "note": r["note"], "runs_ok": len(r["samples"]),
               "errors": r["errors"][:3], "failures": len(r["errors"]), "extra": r["extra"]}
        for name, fn in metrics.items():
            row[name] = summary_dict([fn(s) for s in r["samples"]])
        rss = [k for k in r["rss_kib"] if k is not None]
        row["rss_kib"] = summary_dict(rss)
        rows[key] = row
    return rows
