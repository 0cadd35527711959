#!/usr/bin/env python3
"""Turns the raw runs of benches/compare.sh into results.json and a Markdown table.

    summarize.py summarize RAW OUT --servers a,b,c --clk-tck 100 [--started T] [--command C]
    summarize.py half-slowest-peak RAW TEST     half the lowest median msgs/s of TEST, or nothing
    summarize.py probe-verdict RAW RUN --p99-ms MS --clk-tck 100
                                                whether a bcast-max run passed (exit 0) or not
                                                (exit 1), and a line saying why

RAW holds runs.jsonl (one line per measurement: test, server, rep, run, and what the runner read
from /proc) and loadgen's JSON report of each run (RAW/<run>.json), or for the uws-client test
the samples the runner took at each of uWS's client's Msg/sec lines (RAW/<run>.csamples).
Every figure is the median of the repetitions; ratios are a server's median divided by the baseline's (the first server).
With two or more repetitions the table also gives the range of the per-repetition ratios (the
servers take turns within a repetition, so each pair met the same phase of the machine), and
prints the ratio in bold when every repetition puts the server on the same side of the
baseline.
Python 3 standard library only.
"""

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys


def load_runs(raw):
    runs = []
    path = os.path.join(raw, "runs.jsonl")
    if not os.path.exists(path):
        return runs
    with open(path) as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            r = json.loads(line)
            report = os.path.join(raw, r["run"] + ".json")
            r["report"] = None
            if os.path.exists(report):
                with open(report) as rf:
                    r["report"] = json.load(rf)
            r["window"] = traffic_window(os.path.join(raw, r["run"] + ".samples"))
            r["csamples"] = client_samples(os.path.join(raw, r["run"] + ".csamples"))
            r["syscalls"] = syscall_counts(os.path.join(raw, r["run"] + ".syscalls"))
            runs.append(r)
    return runs


SYSCALL_GROUPS = {
    "reads": ("read", "readv", "recvfrom", "recvmsg"),
    "writes": ("write", "writev", "sendto", "sendmsg"),
    "polls": ("epoll_wait", "epoll_pwait", "epoll_pwait2"),
    "epoll_ctl": ("epoll_ctl",),
}


def syscall_counts(path):
    """perf stat -x, output of compare.sh --syscalls, grouped; None without one."""
    if not os.path.exists(path):
        return None
    counts = {}
    with open(path) as f:
        for line in f:
            parts = line.strip().split(",")
            if len(parts) > 2 and parts[2].startswith("syscalls:sys_enter_") and parts[0].isdigit():
                counts[parts[2][len("syscalls:sys_enter_"):]] = int(parts[0])
    if not counts:
        return None
    return {g: sum(counts.get(n, 0) for n in names) for g, names in SYSCALL_GROUPS.items()}


def per_message_syscalls(group):
    """Syscalls of `group` per message loadgen received, over the whole run."""
    def extract(run):
        sc, rep = run.get("syscalls"), run["report"]
        if not sc or not rep or not rep["messages"]["received"]:
            return None
        return sc[group] / rep["messages"]["received"]
    return extract


def read_samples(path):
    """The runner's samples file: one row a line, "time server_ticks client_ticks cores_busy
    N" (N: messages received so far, or uWS's client's Msg/sec), or None without the file."""
    if not os.path.exists(path):
        return None
    rows = []
    with open(path) as f:
        for line in f:
            parts = line.split()
            if len(parts) == 5:
                rows.append([float(parts[0]), int(parts[1]), int(parts[2]), int(parts[3]), float(parts[4])])
    return rows


def traffic_window(path):
    """Differences between the first and last sample the runner took at loadgen's progress
    lines during the traffic phase (see watch_traffic in compare.sh), or None."""
    rows = read_samples(path)
    if not rows or len(rows) < 2:
        return None
    a, b = rows[0], rows[-1]
    w = {"seconds": b[0] - a[0], "server_ticks": b[1] - a[1], "client_ticks": b[2] - a[2],
         "cores_ticks": b[3] - a[3], "received": int(b[4] - a[4])}
    return w if w["seconds"] > 0 and w["received"] > 0 else None


# uWS's load_test prints "Msg/sec: N" every LIBUS_TIMEOUT_GRANULARITY (4) seconds, N being the
# replies of those seconds divided by 4.
UWSC_INTERVAL_S = 4


def client_samples(path):
    """The intervals between consecutive Msg/sec lines of uWS's client (compare.sh's uwsc_once):
    one dict per line after the first (which only opens the window), or None."""
    rows = read_samples(path) or []
    out = []
    for a, b in zip(rows, rows[1:]):
        out.append({"seconds": b[0] - a[0], "server_ticks": b[1] - a[1], "client_ticks": b[2] - a[2],
                    "cores_ticks": b[3] - a[3], "msgs_per_s": b[4], "messages": b[4] * UWSC_INTERVAL_S})
    return out or None


def csamples_total(run):
    """The uws-client samples of a run summed, or None."""
    cs = run.get("csamples")
    if not cs:
        return None
    total = {k: sum(c[k] for c in cs) for k in ("seconds", "server_ticks", "client_ticks", "cores_ticks", "messages")}
    return total if total["seconds"] > 0 and total["messages"] > 0 else None


def uwsc_rate(run):
    """Median of the run's 4-second Msg/sec samples."""
    cs = run.get("csamples")
    return statistics.median(c["msgs_per_s"] for c in cs) if cs else None


def uwsc_cpu_us(clk_tck):
    """Server CPU µs per message over the samples: CPU ticks / messages replied."""
    def extract(run):
        t = csamples_total(run)
        return t["server_ticks"] * 1e6 / clk_tck / t["messages"] if t else None
    return extract


def uwsc_busy(key, clk_tck):
    """Share of one core the server (key server_ticks) or the client (client_ticks) used."""
    def extract(run):
        t = csamples_total(run)
        return t[key] / clk_tck / t["seconds"] if t else None
    return extract


def cpu_us(run, clk_tck):
    if "cpu_ticks" not in run:
        return None
    return run["cpu_ticks"] * 1e6 / clk_tck


def per_message(run, clk_tck):
    """Server CPU µs per message received by loadgen: over the traffic window when the runner
    sampled one, else over the whole loadgen run (ramp and closes included)."""
    w = run.get("window")
    if w:
        return w["server_ticks"] * 1e6 / clk_tck / w["received"]
    rep = run["report"]
    us = cpu_us(run, clk_tck)
    if rep is None or us is None or rep["messages"]["received"] == 0:
        return None
    return us / rep["messages"]["received"]


def busy(run, clk_tck):
    """Share of one core the server used during the traffic window (else the whole run)."""
    w = run.get("window")
    if w:
        return w["server_ticks"] / clk_tck / w["seconds"]
    us = cpu_us(run, clk_tck)
    return us / 1e6 / run["wall_s"] if us is not None and run.get("wall_s") else None


def client_busy(run, clk_tck):
    """Share of one core loadgen used during the traffic window (else its whole run)."""
    w = run.get("window")
    if w:
        return w["client_ticks"] / clk_tck / w["seconds"]
    return run["client_cpu_s"] / run["wall_s"] if run.get("wall_s") and "client_cpu_s" in run else None


def interference(run, clk_tck):
    """Share of the two measured cores (of 2 cores' worth of time) used by anything other than
    the server and loadgen during the run: other people's work on a shared machine."""
    w = run.get("window") or csamples_total(run)
    if w:
        other = (w["cores_ticks"] - w["server_ticks"] - w["client_ticks"]) / clk_tck
        return max(0.0, other) / (2 * w["seconds"])
    if "cores_ticks" not in run or not run.get("wall_s"):
        return None
    other = run["cores_ticks"] / clk_tck - run["cpu_ticks"] / clk_tck - run["client_cpu_s"]
    return max(0.0, other) / (2 * run["wall_s"])


def sustained(run):
    """Deliveries per second over the time they really took: every delivery of the run divided
    by (warmup + duration + the latest delivery's lateness). Equals the offered rate when the
    server keeps up, and shows the rate it really managed when it falls behind (loadgen's own
    rate.received counts late deliveries as if they had arrived in the window)."""
    rep = run["report"]
    if rep is None:
        return None
    span = rep["warmup_s"] + rep["duration_s"] + rep["latency_us"]["max"] / 1e6
    return rep["messages"]["received"] / span


def fmt_ratio(n):
    return "–" if n is None else f"{n:.3f}"


def fmt_pct(n):
    return "–" if n is None else f"{n * 100:.0f}%"


def fmt_bytes(n):
    if n is None:
        return "–"
    if abs(n) >= 10 * 1024:
        return f"{n / 1024:,.0f} KiB"
    if abs(n) >= 1024:
        return f"{n / 1024:,.1f} KiB"
    return f"{n:,.0f} B"


def fmt_us(n):
    if n is None:
        return "–"
    if n >= 10_000:
        return f"{n / 1000:,.0f} ms"
    if n >= 1000:
        return f"{n / 1000:,.2f} ms"
    return f"{n:,.0f} µs"


def fmt_rate(n):
    if n is None:
        return "–"
    if n >= 1e6:
        return f"{n / 1e6:,.2f} M/s"
    if n >= 1e3:
        return f"{n / 1e3:,.1f} k/s"
    return f"{n:,.0f} /s"


def fmt_cpu(n):
    return "–" if n is None else f"{n:,.2f} µs"


FORMATS = {"rate": fmt_rate, "us": fmt_us, "bytes": fmt_bytes, "cpu": fmt_cpu, "pct": fmt_pct, "ratio": fmt_ratio}


class Metric:
    """One row of the table: how to read a value out of one run. `aside` (name, extract) is a
    share of a core printed beside the figure (the client's, for throughput); `flag` marks the
    figure when the aside reaches it; `needs_report` is False for runs without a loadgen
    report (the uws-client test)."""

    def __init__(self, test, key, label, unit, fmt, better, extract, headline=True,
                 aside=None, flag=None, needs_report=True, lower_bound=None):
        self.test, self.key, self.label, self.unit = test, key, label, unit
        self.fmt, self.better, self.extract, self.headline = fmt, better, extract, headline
        self.aside, self.flag, self.needs_report = aside, flag, needs_report
        # run -> True when the run's figure is only a lower bound (printed "≥").
        self.lower_bound = lower_bound

    @property
    def id(self):
        return f"{self.test}.{self.key}"


def metrics_for(tests, runs, clk_tck):
    """The metrics of the tests present in this run, in table order."""
    ms = []
    # A bcast-max search's single runs are its trail (results.json), not rows of their own.
    tests = [t for t in tests if not t.startswith("bcastprobe_")]
    rate_of = lambda r: r["report"] and r["report"]["rate"]["received"]
    lat = lambda q: (lambda r: r["report"] and r["report"]["latency_us"][q])
    pm = lambda r: per_message(r, clk_tck)

    def offered(test):
        rates = [
            r["report"]["rate"]["offered"]
            for r in runs
            if r["test"] == test and r["report"] and r["report"]["rate"]["offered"]
        ]
        return f"{statistics.median(rates):,.0f} msg/s" if rates else "?"

    def echo_case(t):
        """echo_100x512 -> (100, 512, 1); echo_100x512_if8 -> (100, 512, 8)."""
        spec, _, inflight = t[len("echo_"):].partition("_if")
        conns, size = spec.split("x")
        return int(conns), int(size), int(inflight or 1)

    def echo_key(t):
        conns, size, inflight = echo_case(t)
        return (inflight, size, conns)

    def echo_name(t):
        conns, size, inflight = echo_case(t)
        more = f", {inflight} in flight" if inflight > 1 else ""
        return f"{conns} × {fmt_bytes(size)}{more}"

    echoes = sorted((t for t in tests if t.startswith("echo_")), key=echo_key)
    for t in echoes:
        ms.append(Metric(t, "msgs_per_s", f"Echo throughput, {echo_name(t).replace(' × ', ' conns × ', 1)}",
                         "msg/s", "rate", "higher", rate_of))
    for t in echoes:
        ms.append(Metric(t, "cpu_us_per_msg", f"Server CPU per msg at saturation, {echo_name(t)}",
                         "µs", "cpu", "lower", pm, headline=False))
    for t in echoes:
        ms.append(Metric(t, "server_busy", f"Server core busy, {echo_name(t)} (CPU s / wall s)",
                         "", "pct", "none", lambda r: busy(r, clk_tck), headline=False))
        ms.append(Metric(t, "client_busy", f"loadgen core busy, {echo_name(t)} (CPU s / wall s)",
                         "", "pct", "none", lambda r: client_busy(r, clk_tck), headline=False))
    def uwsc_case(t):
        conns, size = t[len("uwsclient_"):].split("x")
        return int(conns), int(size)

    uwscs = sorted((t for t in tests if t.startswith("uwsclient_")),
                   key=lambda t: (uwsc_case(t)[1], uwsc_case(t)[0]))
    client = ("client", uwsc_busy("client_ticks", clk_tck))
    for t in uwscs:
        conns, size = uwsc_case(t)
        ms.append(Metric(t, "msgs_per_s", f"Echo throughput, uWS's client, {conns} conns × {fmt_bytes(size)}",
                         "msg/s", "rate", "higher", uwsc_rate, aside=client, flag=LOADGEN_LIMIT,
                         needs_report=False))
    for t in uwscs:
        conns, size = uwsc_case(t)
        ms.append(Metric(t, "cpu_us_per_msg", f"Server CPU per msg, uWS's client, {conns} × {fmt_bytes(size)}",
                         "µs", "cpu", "lower", uwsc_cpu_us(clk_tck), needs_report=False))
    for t in uwscs:
        conns, size = uwsc_case(t)
        ms.append(Metric(t, "server_busy", f"Server core busy, uWS's client, {conns} × {fmt_bytes(size)}",
                         "", "pct", "none", uwsc_busy("server_ticks", clk_tck), headline=False,
                         needs_report=False))
        ms.append(Metric(t, "client_busy", f"uWS's client core busy, {conns} × {fmt_bytes(size)}",
                         "", "pct", "none", client[1], headline=False, needs_report=False))
    if "cpu" in tests:
        ms.append(Metric("cpu", "cpu_us_per_msg",
                         f"Server CPU per echoed msg at {offered('cpu')} (100 × 512 B)",
                         "µs", "cpu", "lower", pm))
    if "latency" in tests:
        at = offered("latency")
        for q, name in (("p50", "p50"), ("p99", "p99"), ("p99_9", "p99.9")):
            ms.append(Metric("latency", q, f"Echo latency {name} at {at} (100 × 512 B)",
                             "µs", "us", "lower", lat(q)))
        ms.append(Metric("latency", "cpu_us_per_msg", f"Server CPU per msg at {at}",
                         "µs", "cpu", "lower", pm, headline=False))
    if "idle" in tests:
        def conns(r):
            return r["report"]["connections"]["established"] if r["report"] else 0

        def rss(r):
            n = conns(r)
            return (r["rss_kb"] - r["rss_base_kb"]) * 1024 / n if n and "rss_kb" in r else None

        def sock(r):
            n = conns(r)
            return (r["sock_pages"] - r["sock_pages_base"]) * r["page"] / n if n and "sock_pages" in r else None

        def slab(r):
            n = conns(r)
            return (r["slab_kb"] - r["slab_base_kb"]) * 1024 / n if n and "slab_kb" in r else None

        n = max((conns(r) for r in runs if r["test"] == "idle"), default=0)
        ms.append(Metric("idle", "rss_per_conn", f"Idle server RSS per connection ({n:,} conns)",
                         "B", "bytes", "lower", rss))
        ms.append(Metric("idle", "kernel_sock_per_pair",
                         "Kernel TCP buffer memory per idle pair (sockstat, both ends)",
                         "B", "bytes", "lower", sock))
        ms.append(Metric("idle", "kernel_slab_per_pair",
                         "Kernel slab per idle pair (/proc/meminfo Slab, both ends, machine-wide)",
                         "B", "bytes", "lower", slab, headline=False))
    def bcast_case(t):
        """bcast_1000 -> (1000, None); bcast_1000_at_150000 -> (1000, 150000)."""
        members, _, deliveries = t[len("bcast_"):].partition("_at_")
        return int(members), int(deliveries) if deliveries else None

    for t in sorted((t for t in tests if t.startswith("bcast_")),
                    key=lambda t: (bcast_case(t)[0], bcast_case(t)[1] or 0)):
        members, deliveries = bcast_case(t)
        at = offered(t)
        room = f"room of {members:,}" + (f" at {deliveries:,} deliveries/s" if deliveries else "")
        ms.append(Metric(t, "deliveries_per_s", f"Broadcast, room of {members:,}, 1 publisher at {at}: deliveries",
                         "deliveries/s", "rate", "higher", sustained))
        ms.append(Metric(t, "p50", f"Broadcast, {room}: fan-out latency p50",
                         "µs", "us", "lower", lat("p50"), headline=False))
        ms.append(Metric(t, "p99", f"Broadcast, {room}: fan-out latency p99",
                         "µs", "us", "lower", lat("p99")))
        ms.append(Metric(t, "cpu_us_per_delivery", f"Broadcast, {room}: server CPU per delivery",
                         "µs", "cpu", "lower", pm))
        ms.append(Metric(t, "client_busy", f"Broadcast, {room}: loadgen core busy",
                         "", "pct", "none", lambda r: client_busy(r, clk_tck), headline=False))
    for t in sorted((t for t in tests if t.startswith("bcastmax_")), key=lambda t: int(t[len("bcastmax_"):])):
        members = int(t[len("bcastmax_"):])
        limit = max((r.get("p99_limit_ms", 0) for r in runs if r["test"] == t), default=0)
        at = f"room of {members:,}, at the highest rate"
        ms.append(Metric(t, "max_deliveries_per_s",
                         f"Broadcast, room of {members:,}: highest deliveries/s with p99 < {limit:g} ms and 0 lost",
                         "deliveries/s", "rate", "higher", lambda r: r.get("max_deliveries"),
                         aside=("loadgen", lambda r: client_busy(r, clk_tck) if r["report"] else None),
                         flag=LOADGEN_LIMIT, needs_report=False,
                         # every rate tried passed: the search stopped at --bcast-probes
                         lower_bound=lambda r: r.get("failed_at") == 0 and r.get("max_deliveries", 0) > 0))
        ms.append(Metric(t, "p99", f"Broadcast, {at}: fan-out latency p99",
                         "µs", "us", "lower", lat("p99"), headline=False))
        ms.append(Metric(t, "cpu_us_per_delivery", f"Broadcast, {at}: server CPU per delivery",
                         "µs", "cpu", "lower", pm))
        ms.append(Metric(t, "client_busy", f"Broadcast, {at}: loadgen core busy",
                         "", "pct", "none", lambda r: client_busy(r, clk_tck), headline=False))
    if any(r.get("syscalls") for r in runs):
        for t in tests:
            if t == "idle":
                continue
            for g in SYSCALL_GROUPS:
                ms.append(Metric(t, f"{g}_per_msg", f"{t}: {g} syscalls per message",
                                 "", "ratio", "lower", per_message_syscalls(g), headline=False))
    for t in tests:
        if t == "idle":
            continue
        ms.append(Metric(t, "interference", f"{t}: other work on the two measured cores",
                         "", "pct", "none", lambda r: interference(r, clk_tck), headline=False,
                         needs_report=not t.startswith("uwsclient_")))
    return ms


def run_ok(r):
    if r.get("failed"):
        return False
    if "clean" in r:  # uws-client runs: no loadgen report
        return r["clean"] == 1 and bool(r.get("csamples"))
    if r["test"].startswith("bcastmax_"):  # the passing run of a search, if any
        return r.get("max_deliveries", 0) > 0
    return bool(r["report"]) and r["report"]["ok"]


# A client (uWS's, or loadgen in a bcast-max run) at or above this share of its core may be what
# limited the figure.
LOADGEN_LIMIT = 0.9


def summarize(args):
    runs = load_runs(args.raw)
    servers = args.servers.split(",")
    base = servers[0]
    tests = sorted({r["test"] for r in runs})
    ms = metrics_for(tests, runs, args.clk_tck)
    out_metrics = []
    for m in ms:
        values = {}
        for s in servers:
            rs = sorted((r for r in runs if r["test"] == m.test and r["server"] == s), key=lambda r: r["rep"])
            if not rs:
                continue
            vals = [safe(m.extract, r) if r["report"] or not m.needs_report else None for r in rs]
            good = [v for v in vals if v is not None]
            values[s] = {
                "median": statistics.median(good) if good else None,
                "runs": vals,
                "clean": all(run_ok(r) for r in rs),
            }
            if m.lower_bound and any(m.lower_bound(r) for r in rs):
                values[s]["lower_bound"] = True
            if m.aside:
                asides = [safe(m.aside[1], r) for r in rs]
                values[s]["aside"] = {
                    "name": m.aside[0],
                    "median": median_or_none(asides),
                    "runs": asides,
                    # Flagged when any repetition reached the limit, at the rate found or at
                    # the first rate that failed (a bcast-max search's above_run).
                    "flagged": bool(m.flag) and any(
                        a is not None and a >= m.flag
                        for a in asides + [safe(m.aside[1], above) for above in above_runs(rs, runs)]),
                }
        b = values.get(base, {}).get("median")
        ratios = {
            s: (v["median"] / b if b and v["median"] is not None else None) for s, v in values.items()
        }
        out_metrics.append({
            "id": m.id, "test": m.test, "key": m.key, "label": m.label, "unit": m.unit,
            "format": m.fmt, "better": m.better, "headline": m.headline,
            "values": values, "ratio_to_baseline": ratios,
        })

    trail = bcast_trail(runs, args.clk_tck)
    if trail:
        results_extra = {"bcast_max_trail": trail}
    else:
        results_extra = {}

    def sh(cmd):
        try:
            return subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.strip()
        except (OSError, subprocess.CalledProcessError):
            return None

    model = None
    for line in (sh(["lscpu"]) or "").splitlines():
        if line.startswith("Model name:"):
            model = line.split(":", 1)[1].strip()
    with open("/proc/loadavg") as f:
        loadavg = f.read().split()[:3]
    results = {
        "started": args.started,
        "command": args.command,
        # What was measured is what was built when the run started, not HEAD at its end.
        "git": args.git or sh(["git", "-C", args.root, "describe", "--always", "--dirty"]),
        "machine": {
            "nproc": os.cpu_count(),
            "cpu_model": model,
            "kernel": platform.release(),
            "loadavg_at_end": loadavg,
        },
        "servers": servers,
        "baseline": base,
        "variants": dict(v.split("=", 1) for v in args.variant),
        "clk_tck": args.clk_tck,
        "uws": uws_info(args.uws_bin),
        "metrics": out_metrics,
        **results_extra,
    }
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "results.json"), "w") as f:
        json.dump(results, f, indent=1)
        f.write("\n")
    table = render_table(results)
    with open(os.path.join(args.out, "table.md"), "w") as f:
        f.write(table)
    print(table, end="")


def safe(extract, run):
    try:
        return extract(run)
    except (KeyError, TypeError, ZeroDivisionError):
        return None


def median_or_none(vals):
    good = [v for v in vals if v is not None]
    return statistics.median(good) if good else None


def above_runs(rs, runs):
    """The first failing runs of the bcast-max searches among rs (their above_run)."""
    names = {r.get("above_run") for r in rs if r.get("above_run")}
    return [r for r in runs if r["run"] in names]


def uws_info(uws_bin):
    """Where the uWebSockets binaries came from (their SOURCE file), or None."""
    if not uws_bin:
        return None
    info = {"bin": uws_bin}
    try:
        with open(os.path.join(uws_bin, "SOURCE")) as f:
            info["source"] = f.read().strip().splitlines()
    except OSError:
        pass
    return info


def probe_verdict(report, window, p99_limit_ms, clk_tck):
    """(passed, why) for one bcast-max run: every member connected, nothing lost, unsent,
    duplicated, reordered or corrupt, and fan-out p99 under the limit."""
    if report is None:
        return False, "no loadgen report"
    why = []
    conns = report["connections"]
    if conns["established"] < report["conns"] or conns["failed_total"]:
        why.append(f"{conns['established']:,} of {report['conns']:,} members connected")
    m = report["messages"]
    for k in ("lost", "unsent", "duplicates", "out_of_order", "corrupt"):
        if m.get(k):
            why.append(f"{m[k]:,} {k.replace('_', ' ')}")
    if not report["ok"] and not why:
        why.append("loadgen says not ok")
    p99 = report["latency_us"]["p99"]
    if p99 is None or p99 >= p99_limit_ms * 1000:
        why.append(f"p99 {fmt_us(p99)} ≥ {p99_limit_ms:g} ms")
    offered = (report["rate"]["offered"] or 0) * report["conns"]
    busy = (window["client_ticks"] / clk_tck / window["seconds"]) if window else None
    facts = (f"offered {fmt_rate(offered)} deliveries, received {fmt_rate(report['rate']['received'])}, "
             f"p99 {fmt_us(p99)}, loadgen {fmt_pct(busy)} of its core")
    if why:
        return False, "fails: " + "; ".join(why) + f" ({facts})"
    return True, "passes: " + facts


def bcast_trail(runs, clk_tck):
    """Every run of the bcast-max searches, in order: server, room, rate, verdict."""
    trail = []
    for r in runs:
        if not r["test"].startswith("bcastprobe_"):
            continue
        rep = r["report"]
        limit = next((x.get("p99_limit_ms") for x in runs if x["test"] == "bcastmax_" + r["test"][len("bcastprobe_"):]
                      and x["server"] == r["server"] and x["rep"] == r["rep"]), 100)
        ok, why = probe_verdict(rep, r.get("window"), limit, clk_tck)
        trail.append({
            "server": r["server"], "members": int(r["test"][len("bcastprobe_"):]), "rep": r["rep"],
            "run": r["run"],
            "deliveries_offered": rep and (rep["rate"]["offered"] or 0) * rep["conns"],
            "passed": ok, "verdict": why,
            "p99_us": rep and rep["latency_us"]["p99"],
            "lost": rep and rep["messages"]["lost"],
            "loadgen_busy": client_busy(r, clk_tck) if rep else None,
        })
    return trail


def paired_ratios(values, server, base):
    """The server's figure over the baseline's, repetition by repetition (the two ran within
    seconds of each other, so each pair met the same phase of a noisy machine)."""
    mine = values.get(server, {}).get("runs", [])
    theirs = values.get(base, {}).get("runs", [])
    return [a / b for a, b in zip(mine, theirs) if a is not None and b]


def fmt_ratio_cell(r, paired):
    """`(1.08×)`, or with repetitions `(1.08×; 0.94–1.25)`, bold when every repetition
    agrees on the side of 1."""
    if len(paired) < 2:
        return f" ({r:.2f}×)"
    lo, hi = min(paired), max(paired)
    ratio = f"{r:.2f}×"
    # Judged at the precision shown, so "1.00–1.00" is never bold.
    if round(lo, 2) > 1 or round(hi, 2) < 1:
        ratio = f"**{ratio}**"
    return f" ({ratio}; {lo:.2f}–{hi:.2f})"


def render_table(results, headline_only=False):
    servers = results["servers"]
    base = results["baseline"]
    flagged = bounded = False
    lines = [
        "| measurement | " + " | ".join(servers) + " |",
        "|---|" + "---:|" * len(servers),
    ]
    for m in results["metrics"]:
        if headline_only and not m["headline"]:
            continue
        fmt = FORMATS[m["format"]]
        cells = []
        for s in servers:
            v = m["values"].get(s)
            if v is None:
                cells.append("")
                continue
            text = fmt(v["median"])
            if v.get("lower_bound"):
                text = "≥ " + text
                bounded = True
            r = m["ratio_to_baseline"].get(s)
            if s != base and r is not None and m["better"] != "none":
                text += fmt_ratio_cell(r, paired_ratios(m["values"], s, base))
            aside = v.get("aside")
            if aside and aside["median"] is not None:
                text += f" · {aside['name']} {fmt_pct(aside['median'])}"
                if aside.get("flagged"):
                    text += " ‡"
                    flagged = True
            if not v["clean"]:
                text += " †"
            cells.append(text)
        lines.append(f"| {m['label']} | " + " | ".join(cells) + " |")
    lines.append("")
    lines.append(f"Medians of {max_reps(results)} repetition(s); (n×) = the server's figure divided "
                 f"by {base}'s; (n×; lo–hi) = also the range of that ratio repetition by repetition, "
                 f"**n×** when every repetition is on the same side of {base}; † = at least one "
                 "repetition lost messages or connections (see raw/).")
    if any(v.get("aside") for m in results["metrics"] for v in m["values"].values()):
        lines.append("")
        lines.append("· client / · loadgen n% = the share of its core the client used meanwhile "
                     "(median): a figure measures the server only while that is well below 100%.")
    if bounded:
        lines.append("")
        lines.append("≥ = every rate the search tried passed (it stopped at --bcast-probes): the "
                     "limit is higher; start higher (--bcast-start) or allow more rates.")
    if flagged:
        lines.append("")
        lines.append(f"‡ = the client used {LOADGEN_LIMIT:.0%} or more of its core in a repetition (in "
                     "bcast-max: at the rate found or at the first rate that failed): the client may "
                     "be the limit there, not the server.")
    return "\n".join(lines) + "\n"


def max_reps(results):
    return max((len(v["runs"]) for m in results["metrics"] for v in m["values"].values()), default=0)


def half_slowest_peak(args):
    # The ceiling is an instrument, not a server: "the slowest server" means a real one.
    runs = [r for r in load_runs(args.raw)
            if r["test"] == args.test and r["report"] and not r["server"].startswith("ceiling-")]
    by_server = {}
    for r in runs:
        by_server.setdefault(r["server"], []).append(r["report"]["rate"]["received"])
    if not by_server:
        return 1
    slowest = min(statistics.median(v) for v in by_server.values())
    if slowest <= 0:
        return 1
    print(int(slowest / 2))
    return 0


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("summarize")
    s.add_argument("raw")
    s.add_argument("out")
    s.add_argument("--servers", required=True)
    s.add_argument("--clk-tck", type=int, required=True)
    s.add_argument("--started")
    s.add_argument("--git", help="commit the run measured (default: the checkout's now)")
    s.add_argument("--command")
    s.add_argument("--root", default=".")
    s.add_argument("--variant", action="append", default=[])
    s.add_argument("--uws-bin", help="where the uWebSockets binaries were (their SOURCE file)")
    h = sub.add_parser("half-slowest-peak")
    h.add_argument("raw")
    h.add_argument("test")
    v = sub.add_parser("probe-verdict", help="whether one bcast-max run passed")
    v.add_argument("raw")
    v.add_argument("run")
    v.add_argument("--p99-ms", type=float, required=True)
    v.add_argument("--clk-tck", type=int, required=True)
    t = sub.add_parser("table", help="print the table of an existing results.json")
    t.add_argument("results")
    t.add_argument("--headline", action="store_true", help="only the headline rows")
    args = p.parse_args()
    if args.cmd == "summarize":
        summarize(args)
        return 0
    if args.cmd == "probe-verdict":
        report = None
        path = os.path.join(args.raw, args.run + ".json")
        if os.path.exists(path):
            with open(path) as f:
                report = json.load(f)
        window = traffic_window(os.path.join(args.raw, args.run + ".samples"))
        ok, why = probe_verdict(report, window, args.p99_ms, args.clk_tck)
        print(why)
        return 0 if ok else 1
    if args.cmd == "table":
        with open(args.results) as f:
            print(render_table(json.load(f), args.headline), end="")
        return 0
    return half_slowest_peak(args)


if __name__ == "__main__":
    sys.exit(main())
