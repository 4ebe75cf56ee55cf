"""Printing the results: one table per section, then the targets of issue 6."""

LABEL_W = 62


def fmt_ms(v):
    if v is None:
        return "-"
    if v >= 10000:
        return f"{v / 1000:.2f} s"
    if v >= 100:
        return f"{v:.0f} ms"
    return f"{v:.2f} ms"


def fmt_num(v, unit):
    if v is None:
        return "-"
    if unit == "ms":
        return fmt_ms(v)
    return f"{v:.0f}" if v >= 10 else f"{v:.3g}"


def fmt_kib(k):
    return "-" if k is None else f"{k / 1024:.1f} MiB"


def _med(row, metric):
    s = row.get(metric) if row else None
    return s["median"] if s else None


def _ratio(a, b):
    return None if a is None or b in (None, 0) else a / b


def table(sec, metric, title, ref, unit="ms", show_rss=True):
    """Lines of one metric's table; ratio column = ref row / this row's median."""
    rows, lines = sec["rows"], []
    ref_med = _med(rows.get(ref), metric)
    rname = "isol/x" if unit == "ms" else "isol/x"
    head = f"  {title:<{LABEL_W}} {'median':>9} {'p25':>9} {'p75':>9} {'min':>9} {'max':>9} {'MAD':>8} {rname:>7}"
    lines.append(head + (f" {'peak RSS':>9}" if show_rss else ""))
    for key in sec["order"]:
        row = rows.get(key)
        if row is None:
            continue
        s = row.get(metric)
        label = row["label"][:LABEL_W]
        if s is None:
            why = row["errors"][0] if row["errors"] else "no samples"
            lines.append(f"  {label:<{LABEL_W}} FAILED ({row['failures']} failed runs): {why[:200]}")
            continue
        r = _ratio(ref_med, s["median"]) if key != ref else None
        cols = [fmt_num(s[k], unit) for k in ("median", "p25", "p75", "min", "max")]
        mad = fmt_num(s["mad"], unit)
        rs = "-" if r is None else f"{r:.2f}"
        line = f"  {label:<{LABEL_W}} " + " ".join(f"{c:>9}" for c in cols) + f" {mad:>8} {rs:>7}"
        if show_rss:
            line += f" {fmt_kib(_med(row, 'rss_kib')):>9}"
        lines.append(line)
        if row["failures"]:
            lines.append(f"  {'':<{LABEL_W}}   ({row['failures']} failed runs: {row['errors'][0][:160]})")
    return lines


def section_lines(num, sec):
    plan = sec.get("plan")
    how = f"{plan['runs']} runs + {plan['warmup']} warm-up each, interleaved" if plan else "not run"
    if plan and sec.get("kind") != "pipe":
        how += f"; peak RSS: median of {plan['rss_runs']} runs under GNU time"
    load = f"; load average before: {' '.join(sec['loadavg'])}" if sec.get("loadavg") else ""
    out = [f"== {num}. {sec['title']}", f"   venue: {sec['venue']}; {how}{load}"]
    out += [f"   note: {n}" for n in sec["notes"]]
    out += [f"   MISSING: {m}" for m in sec["missing"]]
    if not sec["rows"]:
        return out + [""]
    kind = sec.get("kind")
    if kind == "vmm":
        out += table(sec, "first_ms", "time to first output byte", "isol", show_rss=False)
        out += table(sec, "exit_ms", "time to exit", "isol")
        if sec.get("guest_mib"):
            out.append(f"   guest memory: {sec['guest_mib']} MiB in both (mapped lazily; peak RSS counts "
                       "only the guest pages touched)")
    elif kind == "pipe":
        ref = next((k for k in sec["order"] if k.startswith("isol")), "isol")
        out += table(sec, "mbps", "MB/s (spawn to exit; ratio: isol/x)", ref, unit="MB/s", show_rss=False)
        out += table(sec, "stream_mbps", "stream MB/s (first to last byte)", ref, unit="MB/s", show_rss=False)
        out += table(sec, "exit_ms", "time to exit", ref, show_rss=False)
    else:
        out += table(sec, "exit_ms", "start to exit", "isol")
        if sec.get("guest_mib"):
            out.append(f"   guest memory: {sec['guest_mib']} MiB in both (mapped lazily)")
    return out + [""]


def _target(ok_when_below, value, limit, what, detail):
    if value is None or limit is None:
        return f"  NOT MEASURED  {what}: {detail}"
    if value < limit:
        return f"  met           {what}: {detail}"
    return f"  MISSED        {what}: {detail}; over the target by {value / limit:.2f}x"


def targets(sections):
    """Lines for issue 6's targets."""
    lines = ["== Targets (issue 6)"]
    if "container" in sections:
        lines += _container_targets(sections)
    if "vmm" in sections:
        lines += _vmm_targets(sections)
    return lines + [""]


def _container_targets(sections):
    lines = []
    c = sections.get("container", {}).get("rows", {})
    isol = _med(c.get("isol"), "exit_ms")
    crun_key = next((k for k in ("crun_net", "crun", "crun_wrapped") if k in c), "crun")
    crun = _med(c.get(crun_key), "exit_ms")
    uns = _med(c.get("unshare"), "exit_ms")
    lines.append(_target(True, isol, None if crun is None else crun / 2,
                         "container start < 0.5x crun's",
                         f"isol {fmt_ms(isol)} vs {crun_key} {fmt_ms(crun)} = {_fr(isol, crun)}"))
    lines.append(_target(True, isol, None if uns is None else uns * 1.5,
                         "container start < 1.5x bare unshare's",
                         f"isol {fmt_ms(isol)} vs unshare {fmt_ms(uns)} = {_fr(isol, uns)}"))
    return lines


def _vmm_targets(sections):
    lines = []
    v = sections.get("vmm", {}).get("rows", {})
    vi, vq = _med(v.get("isol"), "exit_ms"), _med(v.get("qemu"), "exit_ms")
    lines.append(_target(True, vi, None if vq is None else vq / 4,
                         "VMM start-to-exit < 0.25x QEMU microvm's (stands in for 0.7x Firecracker's)",
                         f"isol boot {fmt_ms(vi)} vs QEMU {fmt_ms(vq)} = {_fr(vi, vq)}"))
    rss = _med(v.get("isol"), "rss_kib")
    lines.append(_target(True, rss, 3 * 1024, "VMM peak RSS apart from guest memory < 3 MiB",
                         f"isol boot peak RSS {fmt_kib(rss)} (includes the few guest pages the tiny "
                         f"guest touches; QEMU: {fmt_kib(_med(v.get('qemu'), 'rss_kib'))})"))
    return lines


def _fr(a, b):
    r = _ratio(a, b)
    return "-" if r is None else f"{r:.2f}x"
