"""Unit tests of percentile_plot.py (python3 -m unittest discover -s benches/compare)."""

import json
import os
import tempfile
import unittest
import xml.etree.ElementTree as ET

from percentile_plot import BOTTOM, HEIGHT, LEFT, RIGHT, TOP, WIDTH, Axes, main, read_hgrm, render

SVG = "{http://www.w3.org/2000/svg}"

# The head and tail of an .hgrm as loadgen writes it (milliseconds).
HGRM = """       Value     Percentile TotalCount 1/(1-Percentile)

       0.050 0.000000000000          1           1.00
       0.100 0.500000000000        500           2.00
       0.200 0.900000000000        900          10.00
       0.400 0.990000000000        990         100.00
       0.800 0.999000000000        999        1000.00
       1.200 1.000000000000       1000
#[Mean    =        0.120, StdDeviation   =        0.050]
#[Max     =        1.200, Total count    =         1000]
#[Buckets =           22, SubBuckets     =         2048]
"""


class Hgrm(unittest.TestCase):
    def test_every_data_line_and_nothing_else(self):
        points = read_hgrm(HGRM)
        self.assertEqual(points[0], (0.0, 0.05))
        self.assertEqual(points[-1], (1.0, 1.2))
        self.assertEqual(len(points), 6)


class Coordinates(unittest.TestCase):
    def setUp(self):
        self.axes = Axes([("a", read_hgrm(HGRM))])
        self.width = WIDTH - LEFT - RIGHT

    def test_the_axis_reaches_the_deepest_nine_and_the_largest_value(self):
        self.assertEqual(self.axes.nines, 3)
        self.assertEqual((self.axes.y_step, self.axes.y_max), (0.5, 1.5))

    def test_each_nine_takes_an_equal_share_of_the_width(self):
        self.assertAlmostEqual(self.axes.x(0.0), LEFT)
        self.assertAlmostEqual(self.axes.x(0.9), LEFT + self.width / 3)
        self.assertAlmostEqual(self.axes.x(0.99), LEFT + 2 * self.width / 3)
        self.assertAlmostEqual(self.axes.x(0.5), LEFT + self.width / 3 * 0.30103, places=3)
        self.assertAlmostEqual(self.axes.x(1.0), WIDTH - RIGHT)
        self.assertAlmostEqual(self.axes.x(0.99999), WIDTH - RIGHT)

    def test_latency_is_linear_from_zero_at_the_bottom(self):
        self.assertAlmostEqual(self.axes.y(0), HEIGHT - BOTTOM)
        self.assertAlmostEqual(self.axes.y(1.5), TOP)
        self.assertAlmostEqual(self.axes.y(0.75), (TOP + HEIGHT - BOTTOM) / 2)


class Overlay(unittest.TestCase):
    def test_one_polyline_per_server_with_a_point_per_line_of_its_hgrm(self):
        with tempfile.TemporaryDirectory() as raw:
            # corecast's three repetitions: the one with the median p99 is drawn.
            for rep, p99, scale in [(1, 900, 3.0), (2, 400, 1.0), (3, 100, 0.5)]:
                self.write_run(raw, "corecast", rep, p99, scale)
            self.write_run(raw, "a&b", 1, 300, 2.0)
            out = os.path.join(raw, "latency.svg")
            self.assertEqual(main([raw, out, "--servers", "corecast,a&b,missing"]), 0)
            root = ET.parse(out).getroot()
        lines = root.findall(f".//{SVG}polyline")
        self.assertEqual([l.find(f"{SVG}title").text for l in lines],
                         ["corecast (median p99 of 3 runs)", "a&b"])
        points = lines[0].get("points").split()
        self.assertEqual(len(points), 6)
        axes = Axes([("corecast", read_hgrm(HGRM)), ("a&b", self.scaled(2.0))])
        # The median repetition (unscaled) is drawn: its p99 point is at 0.4 ms.
        x, y = map(float, points[3].split(","))
        self.assertAlmostEqual(x, axes.x(0.99), places=1)
        self.assertAlmostEqual(y, axes.y(0.4), places=1)

    def test_nothing_to_plot_is_an_error(self):
        with tempfile.TemporaryDirectory() as raw:
            self.assertEqual(main([raw, os.path.join(raw, "x.svg"), "--servers", "a"]), 1)

    def test_render_escapes_labels(self):
        doc = render("t <1>", [("x<y", read_hgrm(HGRM))])
        root = ET.fromstring(doc.split("\n", 1)[1])
        self.assertEqual(root.find(f"{SVG}title").text, "t <1>")

    @staticmethod
    def scaled(scale):
        return [(p, v * scale) for p, v in read_hgrm(HGRM)]

    def write_run(self, raw, server, rep, p99, scale):
        run = os.path.join(raw, f"latency.{server}.{rep}")
        with open(run + ".json", "w") as f:
            json.dump({"latency_us": {"p99": p99}}, f)
        lines = [f"{v:12.3f} {p:.12f} 1 1" for p, v in self.scaled(scale)]
        with open(run + ".hgrm", "w") as f:
            f.write("Value Percentile TotalCount 1/(1-Percentile)\n\n" + "\n".join(lines) + "\n")


if __name__ == "__main__":
    unittest.main()
