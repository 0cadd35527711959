"""Unit tests of summarize.py's table (python3 -m unittest discover -s benches/compare)."""

import argparse
import contextlib
import io
import json
import os
import tempfile
import unittest

from summarize import half_slowest_peak, probe_verdict, render_table, summarize


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


def write_runs(raw, runs):
    with open(os.path.join(raw, "runs.jsonl"), "w") as f:
        for r in runs:
            f.write(json.dumps(r) + "\n")


def run_summarize(raw, out, servers):
    args = argparse.Namespace(raw=raw, out=out, servers=servers, clk_tck=100, started=None, git="test",
                              command="test", root=".", variant=[], uws_bin=None)
    with contextlib.redirect_stdout(io.StringIO()):
        summarize(args)
    with open(os.path.join(out, "results.json")) as f:
        res = json.load(f)
    with open(os.path.join(out, "table.md")) as f:
        return res, f.read()


def metric(res, mid):
    return next(m for m in res["metrics"] if m["id"] == mid)


class UwsClient(unittest.TestCase):
    """The echo rows driven by uWS's C client: Msg/sec samples every 4 s, the first discarded."""

    def write(self, raw, server, lines, clean=1):
        run = f"uwsclient_500x512.{server}.1"
        with open(os.path.join(raw, run + ".csamples"), "w") as f:
            for line in lines:
                f.write(" ".join(str(x) for x in line) + "\n")
        return {"test": "uwsclient_500x512", "server": server, "rep": 1, "run": run, "clean": clean,
                "conns": 500, "size": 512}

    def test_median_of_samples_cpu_per_message_and_client_share(self):
        with tempfile.TemporaryDirectory() as raw, tempfile.TemporaryDirectory() as out:
            # time, server ticks, client ticks, busy ticks of both cores, Msg/sec
            a = self.write(raw, "corecast", [(0, 0, 0, 0, 5), (4, 400, 200, 600, 100000),
                                             (8, 800, 400, 1200, 120000), (12, 1200, 600, 1800, 110000)])
            b = self.write(raw, "uws", [(0, 0, 0, 0, 5), (4, 380, 300, 680, 100000),
                                        (8, 760, 600, 1360, 100000)], clean=0)
            c = self.write(raw, "fastwebsockets", [(0, 0, 0, 0, 5), (4, 380, 380, 760, 90000)])
            write_runs(raw, [a, b, c])
            res, table = run_summarize(raw, out, "corecast,uws,fastwebsockets")
        rate = metric(res, "uwsclient_500x512.msgs_per_s")
        self.assertEqual(rate["values"]["corecast"]["median"], 110000)
        self.assertEqual(rate["values"]["uws"]["median"], 100000)
        # 12 s of 100% CPU for (100k + 120k + 110k) x 4 messages
        cpu = metric(res, "uwsclient_500x512.cpu_us_per_msg")["values"]["corecast"]["median"]
        self.assertAlmostEqual(cpu, 12e6 / (330000 * 4))
        self.assertAlmostEqual(rate["values"]["corecast"]["aside"]["median"], 0.5)
        self.assertAlmostEqual(rate["values"]["uws"]["aside"]["median"], 0.75)
        line = next(l for l in table.splitlines() if l.startswith("| Echo throughput, uWS's client, 500 conns × 512 B"))
        self.assertIn("110.0 k/s · client 50%", line)
        self.assertIn("100.0 k/s (0.91×) · client 75% †", line)
        self.assertIn("90.0 k/s (0.82×) · client 95% ‡ |", line)  # the client may be the limit
        self.assertIn("‡ = the client used 90% or more", table)
        self.assertIn("client core busy", json.dumps([m["label"] for m in res["metrics"]]))

    def test_rows_are_ordered_by_size_then_connections(self):
        with tempfile.TemporaryDirectory() as raw, tempfile.TemporaryDirectory() as out:
            runs = []
            for case in ("500x16384", "100x512", "500x16", "100x16"):
                run = f"uwsclient_{case}.corecast.1"
                with open(os.path.join(raw, run + ".csamples"), "w") as f:
                    f.write("0 0 0 0 1\n4 400 100 500 1000\n")
                runs.append({"test": f"uwsclient_{case}", "server": "corecast", "rep": 1, "run": run, "clean": 1})
            write_runs(raw, runs)
            res, _ = run_summarize(raw, out, "corecast")
        ids = [m["test"] for m in res["metrics"] if m["key"] == "msgs_per_s"]
        self.assertEqual(ids, ["uwsclient_100x16", "uwsclient_500x16", "uwsclient_100x512", "uwsclient_500x16384"])


def bcast_report(members, publishes, p99_us, lost=0):
    return {"ok": lost == 0, "conns": members, "rate": {"offered": publishes, "received": members * publishes},
            "connections": {"established": members, "failed_total": 0},
            "messages": {"lost": lost, "unsent": 0, "duplicates": 0, "out_of_order": 0, "corrupt": 0,
                         "received": members * publishes * 10},
            "latency_us": {"p50": p99_us / 2, "p99": p99_us, "p99_9": p99_us},
            "warmup_s": 1, "duration_s": 10}


class BcastMax(unittest.TestCase):
    def test_verdict_needs_nothing_lost_and_p99_under_the_limit(self):
        ok, why = probe_verdict(bcast_report(1000, 150, 20_000), None, 100, 100)
        self.assertTrue(ok, why)
        ok, why = probe_verdict(bcast_report(1000, 150, 120_000), None, 100, 100)
        self.assertFalse(ok)
        self.assertIn("p99 120 ms", why)
        ok, why = probe_verdict(bcast_report(1000, 150, 20_000, lost=3), None, 100, 100)
        self.assertFalse(ok)
        self.assertIn("3 lost", why)
        self.assertEqual(probe_verdict(None, None, 100, 100)[0], False)

    def write(self, raw, server, best, best_client_ticks, above_client_ticks):
        runs = []
        for n, (publishes, p99, ticks) in enumerate([(best, 20_000, best_client_ticks),
                                                     (best * 2, 500_000, above_client_ticks)], 1):
            run = f"bcastprobe_1000.{server}.1.p{n}"
            with open(os.path.join(raw, run + ".json"), "w") as f:
                json.dump(bcast_report(1000, publishes, p99), f)
            with open(os.path.join(raw, run + ".samples"), "w") as f:
                f.write(f"0 0 0 0 0\n10 500 {ticks} {500 + ticks} {publishes * 10000}\n")
            runs.append({"test": "bcastprobe_1000", "server": server, "rep": 1, "run": run, "cpu_ticks": 600})
        runs.append({"test": "bcastmax_1000", "server": server, "rep": 1, "run": f"bcastprobe_1000.{server}.1.p1",
                     "max_deliveries": best * 1000, "failed_at": best * 2000, "probes": 2,
                     "above_run": f"bcastprobe_1000.{server}.1.p2", "p99_limit_ms": 100})
        return runs

    def test_highest_rate_row_with_loadgen_share_and_the_limit_mark(self):
        with tempfile.TemporaryDirectory() as raw, tempfile.TemporaryDirectory() as out:
            runs = self.write(raw, "corecast", 200, 400, 500) + self.write(raw, "uws", 150, 300, 980)
            write_runs(raw, runs)
            res, table = run_summarize(raw, out, "corecast,uws")
        m = metric(res, "bcastmax_1000.max_deliveries_per_s")
        self.assertEqual(m["values"]["corecast"]["median"], 200_000)
        self.assertAlmostEqual(m["ratio_to_baseline"]["uws"], 0.75)
        line = next(l for l in table.splitlines() if "highest deliveries/s with p99 < 100 ms" in l)
        self.assertIn("200.0 k/s · loadgen 40% |", line)
        self.assertIn("150.0 k/s (0.75×) · loadgen 30% ‡", line)  # 98% at the failing rate
        self.assertIn("‡ = the client used 90% or more", table)
        self.assertFalse([x for x in res["metrics"] if x["test"].startswith("bcastprobe_")])
        trail = res["bcast_max_trail"]
        self.assertEqual([(t["server"], t["passed"]) for t in trail],
                         [("corecast", True), ("corecast", False), ("uws", True), ("uws", False)])
        self.assertEqual(trail[0]["deliveries_offered"], 200_000)
        self.assertNotIn("≥", table)

    def test_a_search_that_never_failed_gives_a_lower_bound(self):
        with tempfile.TemporaryDirectory() as raw, tempfile.TemporaryDirectory() as out:
            runs = self.write(raw, "corecast", 200, 400, 500)
            runs[-1]["failed_at"], runs[-1]["above_run"] = 0, ""
            write_runs(raw, runs)
            _, table = run_summarize(raw, out, "corecast")
        line = next(l for l in table.splitlines() if "highest deliveries/s" in l)
        self.assertIn("| ≥ 200.0 k/s · loadgen 40% |", line)
        self.assertIn("≥ = every rate the search tried passed", table)


if __name__ == "__main__":
    unittest.main()
