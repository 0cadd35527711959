"""Unit tests of summarize.py's table (python3 -m unittest discover -s benches/compare)."""

import argparse
import contextlib
import io
import json
import os
import tempfile
import unittest

from summarize import half_slowest_peak, render_table


def results(base_runs, peer_runs, better="higher"):
    def value(runs):
        good = sorted(r for r in runs if r is not None)
        return {"median": good[len(good) // 2], "runs": runs, "clean": True}

    return {
        "servers": ["a", "b"],
        "baseline": "a",
        "metrics": [{
            "id": "echo.rate", "test": "echo", "key": "rate", "label": "Rate", "unit": "/s",
            "format": "rate", "better": better, "headline": True,
            "values": {"a": value(base_runs), "b": value(peer_runs)},
            "ratio_to_baseline": {"a": 1.0, "b": value(peer_runs)["median"] / value(base_runs)["median"]},
        }],
    }


def row(table):
    return table.splitlines()[2]


class PairedRatios(unittest.TestCase):
    def test_every_repetition_on_one_side_is_bold_with_its_range(self):
        table = render_table(results([100, 200, 300], [110, 230, 320]))
        self.assertIn("(**1.15×**; 1.07–1.15)", row(table))

    def test_repetitions_on_both_sides_are_not_bold(self):
        table = render_table(results([100, 200, 300], [90, 230, 320]))
        self.assertIn("(1.15×; 0.90–1.15)", row(table))
        self.assertNotIn("**", row(table))

    def test_a_difference_below_the_shown_precision_is_not_bold(self):
        table = render_table(results([1000, 2000], [999, 1999]))
        self.assertNotIn("**", row(table))

    def test_missing_repetitions_are_skipped_and_one_pair_gives_no_range(self):
        table = render_table(results([100, None, 300], [110, 230, None]))
        self.assertRegex(row(table), r"\(\d\.\d\d×\) \|$")


class LatencyRate(unittest.TestCase):
    def test_half_the_slowest_real_server_never_the_ceiling(self):
        with tempfile.TemporaryDirectory() as raw:
            with open(os.path.join(raw, "runs.jsonl"), "w") as runs:
                for server, rate in [("corecast", 140000), ("tokio-tungstenite", 100000),
                                     ("ceiling-uring", 60000)]:
                    run = f"echo_100x512.{server}.1"
                    runs.write(json.dumps({"test": "echo_100x512", "server": server, "rep": 1,
                                           "run": run}) + "\n")
                    with open(os.path.join(raw, run + ".json"), "w") as report:
                        json.dump({"ok": True, "rate": {"received": rate}}, report)
            out = io.StringIO()
            with contextlib.redirect_stdout(out):
                half_slowest_peak(argparse.Namespace(raw=raw, test="echo_100x512"))
            self.assertEqual(out.getvalue().strip(), "50000")


if __name__ == "__main__":
    unittest.main()
