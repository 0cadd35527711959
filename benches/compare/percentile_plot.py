#!/usr/bin/env python3
"""Overlays the latency percentile distributions of several servers in one SVG.

    percentile_plot.py RAW OUT.svg --servers corecast,fastwebsockets [--test latency]

RAW is compare.sh's raw directory: for every server it holds `TEST.SERVER.REP.hgrm` (loadgen's
--hgrm, milliseconds) and `TEST.SERVER.REP.json` (its report). Each server is drawn from its
repetition with the median p99, so one lucky or unlucky run does not stand for it. The plot is
the view HdrHistogram's plotter and `loadgen --plot` give: latency against percentile, x on a
log scale of 1/(1-p) (each decade one more nine), y linear from zero. Standard library only.
"""

import argparse
import glob
import json
import math
import os
import sys
from xml.sax.saxutils import escape

WIDTH, HEIGHT = 800, 480
LEFT, RIGHT, TOP, BOTTOM = 80, 24, 48, 56
MIN_NINES, MAX_NINES = 2, 7
# Colour-blind safe (Okabe-Ito), one per server in turn.
COLOURS = ["#0072b2", "#d55e00", "#009e73", "#cc79a7", "#e69f00", "#56b4e9", "#000000"]


def read_hgrm(text):
    """(percentile 0..1, value ms) pairs of an .hgrm percentile distribution."""
    points = []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) < 3 or line.startswith("#"):
            continue
        try:
            value, percentile = float(fields[0]), float(fields[1])
        except ValueError:
            continue  # the header
        points.append((percentile, value))
    return points


def nines(p):
    """log10(1/(1-p)): 0.9 -> 1, 0.99 -> 2."""
    return -math.log10(1.0 - p)


def nice_step(span):
    """The smallest 1, 2 or 5 x 10^k at least `span`."""
    unit = 10.0 ** math.floor(math.log10(span)) if span > 0 else 1.0
    for m in (1, 2, 5, 10):
        if m * unit >= span * (1 - 1e-9):
            return m * unit
    return 10 * unit


class Axes:
    """Maps (percentile, ms) onto the canvas, fitted once to every series."""

    def __init__(self, series):
        finite = [p for _, pts in series for p, _ in pts if p < 1.0]
        deepest = max((nines(p) for p in finite), default=0.0)
        # The tolerance keeps a percentile like 0.9999, inexact in binary, on its own nine.
        self.nines = min(max(math.ceil(deepest - 1e-6), MIN_NINES), MAX_NINES)
        top = max((v for _, pts in series for _, v in pts), default=0.0) or 1.0
        self.y_step = nice_step(top / 5)
        self.y_max = math.ceil(top / self.y_step - 1e-9) * self.y_step

    def x(self, p):
        n = self.nines if p >= 1.0 else min(nines(p), self.nines)
        return LEFT + n / self.nines * (WIDTH - LEFT - RIGHT)

    def y(self, ms):
        return HEIGHT - BOTTOM - min(ms, self.y_max) / self.y_max * (HEIGHT - TOP - BOTTOM)


def percent_label(n):
    return {0: "0%", 1: "90%", 2: "99%"}.get(n) or "99." + "9" * (n - 2) + "%"


def render(title, series):
    """The SVG document: one polyline per (label, points) series, and a legend."""
    axes = Axes(series)
    right, bottom = WIDTH - RIGHT, HEIGHT - BOTTOM
    out = ['<?xml version="1.0" encoding="UTF-8"?>',
           f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" '
           f'viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif" font-size="12">',
           f"<title>{escape(title)}</title>",
           '<rect width="100%" height="100%" fill="white"/>',
           f'<text x="{WIDTH / 2}" y="24" text-anchor="middle" font-size="14">{escape(title)}</text>']
    x_ticks = [(axes.x(1 - 10.0 ** -n), percent_label(n)) for n in range(axes.nines + 1)]
    x_ticks.insert(1, (axes.x(0.5), "50%"))
    y_ticks = [k * axes.y_step for k in range(round(axes.y_max / axes.y_step) + 1)]
    out.append('<g stroke="#dddddd" stroke-width="1">')
    out += [f'<line x1="{x:.1f}" y1="{TOP}" x2="{x:.1f}" y2="{bottom}"/>' for x, _ in x_ticks]
    out += [f'<line x1="{LEFT}" y1="{axes.y(v):.1f}" x2="{right}" y2="{axes.y(v):.1f}"/>'
            for v in y_ticks]
    out.append("</g>")
    out.append('<g fill="black">')
    out += [f'<text x="{x:.1f}" y="{bottom + 18}" text-anchor="middle">{label}</text>'
            for x, label in x_ticks]
    out += [f'<text x="{LEFT - 8}" y="{axes.y(v) + 4:.1f}" text-anchor="end">{v:g}</text>'
            for v in y_ticks]
    out.append(f'<text x="{(LEFT + right) / 2}" y="{HEIGHT - 12}" text-anchor="middle">'
               "percentile</text>")
    mid = (TOP + bottom) / 2
    out.append(f'<text x="20" y="{mid}" text-anchor="middle" transform="rotate(-90 20 {mid})">'
               "latency (ms)</text>")
    out.append("</g>")
    out.append(f'<rect x="{LEFT}" y="{TOP}" width="{right - LEFT}" height="{bottom - TOP}" '
               'fill="none" stroke="black"/>')
    out.append('<g fill="none" stroke-width="2">')
    for i, (label, pts) in enumerate(series):
        coords = " ".join(f"{axes.x(p):.1f},{axes.y(v):.1f}" for p, v in pts)
        out.append(f'<polyline stroke="{COLOURS[i % len(COLOURS)]}" points="{coords}">'
                   f"<title>{escape(label)}</title></polyline>")
    out.append("</g>")
    out.append("<g>")
    for i, (label, _) in enumerate(series):
        y = TOP + 16 + 18 * i
        out.append(f'<rect x="{LEFT + 12}" y="{y - 6}" width="18" height="4" '
                   f'fill="{COLOURS[i % len(COLOURS)]}"/>')
        out.append(f'<text x="{LEFT + 36}" y="{y}">{escape(label)}</text>')
    out.append("</g>")
    out.append("</svg>")
    return "\n".join(out) + "\n"


def median_run(raw, test, server):
    """The run name (TEST.SERVER.REP) of the server's repetition with the median p99 among
    those that wrote an .hgrm, and how many there were; (None, 0) without any."""
    runs = []
    for path in sorted(glob.glob(os.path.join(raw, f"{test}.{server}.*.hgrm"))):
        run = os.path.basename(path)[:-len(".hgrm")]
        try:
            with open(os.path.join(raw, run + ".json")) as f:
                p99 = json.load(f)["latency_us"]["p99"]
        except (OSError, ValueError, KeyError):
            continue
        runs.append((p99, run))
    if not runs:
        return None, 0
    runs.sort()
    return runs[(len(runs) - 1) // 2][1], len(runs)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("raw")
    ap.add_argument("out")
    ap.add_argument("--servers", required=True, help="comma-separated, in legend order")
    ap.add_argument("--test", default="latency")
    ap.add_argument("--title", default="Echo latency by percentile (from intended send time)")
    args = ap.parse_args(argv)
    series = []
    for server in args.servers.split(","):
        run, reps = median_run(args.raw, args.test, server)
        if run is None:
            print(f"percentile_plot: no {args.test} .hgrm for {server}", file=sys.stderr)
            continue
        with open(os.path.join(args.raw, run + ".hgrm")) as f:
            points = read_hgrm(f.read())
        label = server if reps == 1 else f"{server} (median p99 of {reps} runs)"
        series.append((label, points))
    if not series:
        print("percentile_plot: nothing to plot", file=sys.stderr)
        return 1
    with open(args.out, "w") as f:
        f.write(render(args.title, series))
    return 0


if __name__ == "__main__":
    sys.exit(main())
