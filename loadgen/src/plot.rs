//! The latency percentile plot: one line per run, latency against percentile, in a
//! self-contained SVG.
//!
//! It is the view HdrHistogram's plotter gives a percentile distribution: the x axis is
//! log10(1/(1-p)), so each decade is one more nine (90%, 99%, 99.9%, ...) and the tail gets as
//! much room as the median; the y axis is latency, linear from zero. The SVG is a handful of
//! lines, polylines and texts written by hand, so the file needs nothing else to display.

use std::fmt::Write as _;

use hdrhistogram::Histogram;

use crate::stats::{percentile_distribution, PercentileStep};

/// Canvas size and the margins around the plot area (SVG user units).
const WIDTH: f64 = 800.0;
const HEIGHT: f64 = 480.0;
const LEFT: f64 = 80.0;
const RIGHT: f64 = 24.0;
const TOP: f64 = 48.0;
const BOTTOM: f64 = 56.0;

/// Fewest and most nines the x axis spans: a short run still gets a readable axis, and points
/// deeper than the last nine sit at its right edge.
const MIN_NINES: u32 = 2;
const MAX_NINES: u32 = 7;

/// Line colours, one per series in turn (colour-blind safe, from the Okabe–Ito palette).
const COLOURS: [&str; 7] = [
    "#0072b2", "#d55e00", "#009e73", "#cc79a7", "#e69f00", "#56b4e9", "#000000",
];

/// One line of the plot.
#[derive(Debug, Clone)]
pub struct Series {
    /// Legend text.
    pub label: String,
    /// The distribution, in order of increasing quantile.
    pub steps: Vec<PercentileStep>,
}

impl Series {
    /// The line of a latency histogram (µs).
    pub fn of(label: impl Into<String>, hist: &Histogram<u64>) -> Series {
        Series {
            label: label.into(),
            steps: percentile_distribution(hist),
        }
    }
}

/// How data maps onto the canvas: fitted once to all series so they share one scale.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Axes {
    /// Decades on the x axis (2 reaches 99%, 3 reaches 99.9%, ...).
    nines: u32,
    /// Latency at the top of the y axis (µs), a whole number of `y_step_us`.
    y_max_us: u64,
    /// Distance between y ticks (µs): 1, 2 or 5 × a power of ten.
    y_step_us: u64,
}

impl Axes {
    /// Axes that hold every point of `series`.
    pub fn fit(series: &[Series]) -> Axes {
        let steps = || series.iter().flat_map(|s| &s.steps);
        let deepest = steps()
            .filter(|s| s.quantile < 1.0)
            .map(|s| nines_of(s.quantile))
            .fold(0.0, f64::max);
        // The tolerance keeps a quantile like 0.9999, inexact in binary, on its own nine.
        let nines = ((deepest - 1e-6).ceil() as u32).clamp(MIN_NINES, MAX_NINES);
        let max = steps().map(|s| s.value_us).max().unwrap_or(0).max(1);
        let y_step_us = nice_step(max.div_ceil(5));
        Axes {
            nines,
            y_max_us: max.div_ceil(y_step_us) * y_step_us,
            y_step_us,
        }
    }

    /// Horizontal position of `quantile` (0 to 1); 100% and anything deeper than the axis
    /// reaches sit at its right edge.
    pub fn x(&self, quantile: f64) -> f64 {
        let nines = if quantile >= 1.0 {
            self.nines as f64
        } else {
            nines_of(quantile).min(self.nines as f64)
        };
        LEFT + nines / self.nines as f64 * (WIDTH - LEFT - RIGHT)
    }

    /// Vertical position of a latency (µs): zero at the bottom of the plot area.
    pub fn y(&self, us: u64) -> f64 {
        let fraction = us.min(self.y_max_us) as f64 / self.y_max_us as f64;
        HEIGHT - BOTTOM - fraction * (HEIGHT - TOP - BOTTOM)
    }
}

/// log10(1/(1-q)): how many nines `q` has (0.9 → 1, 0.99 → 2).
fn nines_of(quantile: f64) -> f64 {
    -(1.0 - quantile).log10()
}

/// The smallest 1, 2 or 5 × 10^k that is at least `span` (and at least 1).
fn nice_step(span: u64) -> u64 {
    let mut unit = 1u64;
    loop {
        for m in [1, 2, 5] {
            if m * unit >= span {
                return m * unit;
            }
        }
        unit *= 10;
    }
}

/// The label of the percentile with `nines` nines: 0%, 90%, 99%, 99.9%, ...
fn percent_label(nines: u32) -> String {
    match nines {
        0 => "0%".to_string(),
        1 => "90%".to_string(),
        2 => "99%".to_string(),
        n => format!("99.{}%", "9".repeat(n as usize - 2)),
    }
}

/// The unit the y axis is labelled in, and µs per unit, for a top value of `max_us`.
fn y_unit(max_us: u64) -> (&'static str, f64) {
    match max_us {
        0..=999 => ("µs", 1.0),
        1_000..=999_999 => ("ms", 1e3),
        _ => ("s", 1e6),
    }
}

/// `text` with the characters XML reserves escaped.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            c => out.push(c),
        }
    }
    out
}

/// The SVG document: `title` on top, one polyline per series, a legend of the labels.
pub fn svg(title: &str, series: &[Series]) -> String {
    let axes = Axes::fit(series);
    let (left, right, top, bottom) = (LEFT, WIDTH - RIGHT, TOP, HEIGHT - BOTTOM);
    let mut out = String::new();
    // `write!` into a String cannot fail.
    let _ = writeln!(out, r#"<?xml version="1.0" encoding="UTF-8"?>"#);
    let _ = writeln!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(out, "<title>{}</title>", escape(title));
    let _ = writeln!(out, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        out,
        r#"<text x="{}" y="24" text-anchor="middle" font-size="14">{}</text>"#,
        WIDTH / 2.0,
        escape(title)
    );

    // Grid and tick labels: every nine (and the median) across, every y step up.
    let _ = writeln!(out, r##"<g stroke="#dddddd" stroke-width="1">"##);
    let mut x_ticks: Vec<(f64, String)> = (0..=axes.nines)
        .map(|n| (axes.x(1.0 - 10f64.powi(-(n as i32))), percent_label(n)))
        .collect();
    x_ticks.insert(1, (axes.x(0.5), "50%".to_string()));
    for (x, _) in &x_ticks {
        let _ = writeln!(
            out,
            r#"<line x1="{x:.1}" y1="{top}" x2="{x:.1}" y2="{bottom}"/>"#
        );
    }
    let (unit, per_unit) = y_unit(axes.y_max_us);
    let y_ticks: Vec<u64> = (0..=axes.y_max_us / axes.y_step_us)
        .map(|k| k * axes.y_step_us)
        .collect();
    for &us in &y_ticks {
        let y = axes.y(us);
        let _ = writeln!(
            out,
            r#"<line x1="{left}" y1="{y:.1}" x2="{right}" y2="{y:.1}"/>"#
        );
    }
    let _ = writeln!(out, "</g>");
    let _ = writeln!(out, r#"<g fill="black">"#);
    for (x, label) in &x_ticks {
        let _ = writeln!(
            out,
            r#"<text x="{x:.1}" y="{}" text-anchor="middle">{label}</text>"#,
            bottom + 18.0
        );
    }
    for &us in &y_ticks {
        let _ = writeln!(
            out,
            r#"<text x="{}" y="{:.1}" text-anchor="end">{}</text>"#,
            left - 8.0,
            axes.y(us) + 4.0,
            us as f64 / per_unit
        );
    }
    let _ = writeln!(
        out,
        r#"<text x="{}" y="{}" text-anchor="middle">percentile</text>"#,
        (left + right) / 2.0,
        HEIGHT - 12.0
    );
    let _ = writeln!(
        out,
        r#"<text x="20" y="{0}" text-anchor="middle" transform="rotate(-90 20 {0})">latency ({unit})</text>"#,
        (top + bottom) / 2.0
    );
    let _ = writeln!(out, "</g>");
    let _ = writeln!(
        out,
        r#"<rect x="{left}" y="{top}" width="{}" height="{}" fill="none" stroke="black"/>"#,
        right - left,
        bottom - top
    );

    // The lines, then the legend over the top left of the plot area.
    let _ = writeln!(out, r#"<g fill="none" stroke-width="2">"#);
    for (i, s) in series.iter().enumerate() {
        let points: Vec<String> = s
            .steps
            .iter()
            .map(|p| format!("{:.1},{:.1}", axes.x(p.quantile), axes.y(p.value_us)))
            .collect();
        let _ = writeln!(
            out,
            r#"<polyline stroke="{}" points="{}"><title>{}</title></polyline>"#,
            COLOURS[i % COLOURS.len()],
            points.join(" "),
            escape(&s.label)
        );
    }
    let _ = writeln!(out, "</g>");
    let _ = writeln!(out, "<g>");
    for (i, s) in series.iter().enumerate() {
        let y = top + 16.0 + 18.0 * i as f64;
        let _ = writeln!(
            out,
            r#"<rect x="{}" y="{:.1}" width="18" height="4" fill="{}"/>"#,
            left + 12.0,
            y - 6.0,
            COLOURS[i % COLOURS.len()]
        );
        let samples = s.steps.last().map_or(0, |p| p.count);
        let _ = writeln!(
            out,
            r#"<text x="{}" y="{y:.1}">{} ({samples} samples)</text>"#,
            left + 36.0,
            escape(&s.label)
        );
    }
    let _ = writeln!(out, "</g>");
    let _ = writeln!(out, "</svg>");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::{new_histogram, record};

    /// A series with one sample of each value (µs).
    fn series(label: &str, values: impl IntoIterator<Item = u64>) -> Series {
        let mut h = new_histogram();
        for v in values {
            record(&mut h, v);
        }
        Series::of(label, &h)
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9
    }

    #[test]
    fn each_nine_takes_an_equal_share_of_the_width() {
        let axes = Axes {
            nines: 4,
            y_max_us: 1000,
            y_step_us: 200,
        };
        let width = WIDTH - LEFT - RIGHT;
        assert!(close(axes.x(0.0), LEFT));
        assert!(close(axes.x(0.9), LEFT + width / 4.0));
        assert!(close(axes.x(0.99), LEFT + width / 2.0));
        assert!(close(axes.x(0.9999), WIDTH - RIGHT));
        assert!(close(axes.x(0.5), LEFT + width / 4.0 * 2f64.log10()));
        // 100%, and anything deeper than the axis, sit on its right edge.
        assert!(close(axes.x(1.0), WIDTH - RIGHT));
        assert!(close(axes.x(0.999999), WIDTH - RIGHT));
    }

    #[test]
    fn latency_is_linear_from_zero_at_the_bottom() {
        let axes = Axes {
            nines: 2,
            y_max_us: 1000,
            y_step_us: 200,
        };
        assert!(close(axes.y(0), HEIGHT - BOTTOM));
        assert!(close(axes.y(1000), TOP));
        assert!(close(axes.y(500), (TOP + HEIGHT - BOTTOM) / 2.0));
        assert!(close(axes.y(5000), TOP), "clamped to the top");
    }

    #[test]
    fn axes_fit_the_deepest_percentile_and_the_largest_value() {
        // 10,000 samples reach 99.99%; the largest is 1,234 µs.
        let a = series("a", (1..=10_000).map(|i| 1 + i % 1_234));
        let b = series("b", [10, 20]);
        let axes = Axes::fit(&[a, b.clone()]);
        assert_eq!(axes.nines, 4);
        assert_eq!((axes.y_step_us, axes.y_max_us), (500, 1500));
        // Two samples still get an axis to 99%; an empty series fits too.
        let empty = series("empty", []);
        assert_eq!(Axes::fit(&[b]).nines, MIN_NINES);
        assert_eq!(Axes::fit(&[empty]).y_max_us, 1);
    }

    #[test]
    fn ticks_are_round_and_labelled_in_nines() {
        assert_eq!(
            [1, 3, 7, 10, 11, 199, 201, 4_000]
                .iter()
                .map(|&s| nice_step(s))
                .collect::<Vec<_>>(),
            [1, 5, 10, 10, 20, 200, 500, 5_000]
        );
        let labels: Vec<String> = (0..5).map(percent_label).collect();
        assert_eq!(labels, ["0%", "90%", "99%", "99.9%", "99.99%"]);
    }

    /// Checks that every tag of `doc` is closed in order and every `&` starts an entity.
    fn assert_well_formed(doc: &str) {
        let mut open: Vec<&str> = Vec::new();
        let mut rest = doc;
        while let Some(start) = rest.find('<') {
            let end = start + rest[start..].find('>').expect("tag ends");
            let tag = &rest[start + 1..end];
            rest = &rest[end + 1..];
            if tag.starts_with('?') {
                continue;
            }
            let name = |t: &str| t.split_whitespace().next().unwrap_or("").to_string();
            if let Some(closing) = tag.strip_prefix('/') {
                assert_eq!(
                    open.pop(),
                    Some(closing),
                    "</{closing}> closes the last open tag"
                );
            } else if !tag.ends_with('/') {
                let n = name(tag);
                open.push(&tag[..n.len()]);
            }
        }
        assert!(open.is_empty(), "unclosed: {open:?}");
        for (i, _) in doc.match_indices('&') {
            let entity = &doc[i..doc.len().min(i + 6)];
            assert!(
                ["&amp;", "&lt;", "&gt;", "&quot;"]
                    .iter()
                    .any(|e| entity.starts_with(e)),
                "bare & at {i}"
            );
        }
    }

    #[test]
    fn one_polyline_per_series_in_a_well_formed_document() {
        let runs = [
            series("ws://127.0.0.1:9998/echo <a&b>", (1..=1000).map(|i| i * 3)),
            series("second", (1..=1000).map(|i| i * 5)),
        ];
        let doc = svg("echo, \"1000\" msg/s", &runs);
        assert!(doc.starts_with("<?xml"), "{doc}");
        assert_well_formed(&doc);
        assert_eq!(doc.matches("<polyline").count(), 2, "{doc}");
        assert!(doc.contains("&lt;a&amp;b&gt;") && doc.contains("&quot;1000&quot;"));
        // Every distribution step is a point of its line.
        let first = doc.lines().find(|l| l.starts_with("<polyline")).unwrap();
        let points = first.split("points=\"").nth(1).unwrap().split('"').next();
        assert_eq!(
            points.unwrap().split(' ').count(),
            runs[0].steps.len(),
            "{first}"
        );
        for label in ["50%", "90%", "99%", "99.9%", "latency (ms)"] {
            assert!(doc.contains(&format!(">{label}<")), "{label} in {doc}");
        }
    }
}
