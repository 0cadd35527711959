#!/usr/bin/env python3
"""Draws results.json of benches/compare.sh as an SVG bar chart (Python 3 standard library only).

    python3 benches/chart.py target/compare/results.json docs/benchmarks.svg [--all]

One block per headline measurement (--all: every measurement), one bar per server. Bars are
scaled to the largest median in their block, so each block reads on its own; the label on a bar
is the absolute median and its ratio to the baseline server. Each block says whether higher or
lower is better.
"""

import argparse
import json
import sys
from xml.sax.saxutils import escape

COLORS = ["#d1495b", "#00798c", "#edae49", "#30638e", "#66a182", "#8d6a9f", "#2e4057"]

WIDTH = 980
LEFT = 150          # server names end here
BAR_X = 160         # bars start here
BAR_MAX = 560       # longest bar
BAR_H = 13
BAR_GAP = 3
TITLE_H = 20
BLOCK_GAP = 12
TOP = 64


def fmt(value, kind):
    if value is None:
        return "no data"
    if kind == "rate":
        if value >= 1e6:
            return f"{value / 1e6:,.2f} M/s"
        if value >= 1e3:
            return f"{value / 1e3:,.1f} k/s"
        return f"{value:,.0f} /s"
    if kind == "us":
        if value >= 10_000:
            return f"{value / 1000:,.0f} ms"
        if value >= 1000:
            return f"{value / 1000:,.2f} ms"
        return f"{value:,.0f} µs"
    if kind == "bytes":
        if abs(value) >= 10 * 1024:
            return f"{value / 1024:,.0f} KiB"
        if abs(value) >= 1024:
            return f"{value / 1024:,.1f} KiB"
        return f"{value:,.0f} B"
    if kind == "cpu":
        return f"{value:,.2f} µs"
    if kind == "ratio":
        return f"{value:.3f}"
    if kind == "pct":
        return f"{value * 100:.0f}%"
    return f"{value:g}"


def text(x, y, s, size=12, anchor="start", weight="normal", fill="#222"):
    return (f'<text x="{x}" y="{y}" font-size="{size}" text-anchor="{anchor}" '
            f'font-weight="{weight}" fill="{fill}">{escape(s)}</text>')


def render(results, everything=False):
    servers = results["servers"]
    base = results["baseline"]
    color = {s: COLORS[i % len(COLORS)] for i, s in enumerate(servers)}
    metrics = [m for m in results["metrics"] if everything or m["headline"]]
    body = []
    y = TOP
    for m in metrics:
        shown = [s for s in servers if s in m["values"]]
        better = {"higher": "higher is better", "lower": "lower is better"}.get(m["better"], "")
        body.append(text(10, y + 14, m["label"], 13, weight="bold"))
        body.append(text(WIDTH - 10, y + 14, better, 11, anchor="end", fill="#666"))
        y += TITLE_H
        top = max((abs(m["values"][s]["median"] or 0) for s in shown), default=0) or 1
        for s in shown:
            v = m["values"][s]["median"]
            w = 0 if v is None else max(1.0, abs(v) / top * BAR_MAX)
            body.append(text(LEFT, y + BAR_H - 2, s, 11, anchor="end"))
            body.append(f'<rect x="{BAR_X}" y="{y}" width="{w:.1f}" height="{BAR_H}" '
                        f'fill="{color[s]}"><title>{escape(s)}: {escape(fmt(v, m["format"]))}</title></rect>')
            label = fmt(v, m["format"])
            r = m["ratio_to_baseline"].get(s)
            if s != base and r is not None and m["better"] != "none":
                label += f"  ({r:.2f}× {base})"
            if not m["values"][s]["clean"]:
                label += "  †"
            body.append(text(f"{BAR_X + w + 6:.1f}", y + BAR_H - 2, label, 11))
            y += BAR_H + BAR_GAP
        y += BLOCK_GAP
    machine = results.get("machine", {})
    subtitle = (f"{machine.get('cpu_model') or '?'}, {machine.get('nproc', '?')} cores, "
                f"Linux {machine.get('kernel', '?')}; servers pinned to one core, loadgen to another; "
                f"medians; {results.get('started') or ''}")
    head = [
        text(10, 24, "corecast and its peers, side by side (benches/compare.sh)", 16, weight="bold"),
        text(10, 44, subtitle, 11, fill="#555"),
    ]
    foot = text(10, y + 10, "† at least one repetition lost messages or connections", 10, fill="#666")
    height = y + 24
    return "\n".join([
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" '
        f'viewBox="0 0 {WIDTH} {height}" font-family="Helvetica, Arial, sans-serif">',
        f'<rect width="{WIDTH}" height="{height}" fill="white"/>',
        *head, *body, foot, "</svg>", "",
    ])


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("results")
    p.add_argument("svg")
    p.add_argument("--all", action="store_true", help="every measurement, not only the headline ones")
    args = p.parse_args()
    with open(args.results) as f:
        results = json.load(f)
    with open(args.svg, "w") as f:
        f.write(render(results, args.all))
    return 0


if __name__ == "__main__":
    sys.exit(main())
