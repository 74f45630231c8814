//! Line charts drawn as SVG text: axes with round ticks (linear, log, or the percentile scale of
//! HdrHistogram plots), one `<polyline>` per series, a legend, vertical markers (the knee) and
//! shaded bands (steps over time). No fonts or files are needed: text is `<text>`, styled by the
//! page, so the same chart reads in English or Chinese.

use std::fmt::Write as _;

/// Series colours: distinguishable, and readable on light and dark backgrounds.
pub const PALETTE: [&str; 10] = [
    "#2563eb", "#dc2626", "#16a34a", "#d97706", "#7c3aed", "#0891b2", "#db2777", "#65a30d",
    "#9333ea", "#475569",
];

const WIDTH: f64 = 760.0;
const HEIGHT: f64 = 360.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 20.0;
const BOTTOM: f64 = 52.0;
const LEGEND_ROW: f64 = 18.0;

/// How an axis maps values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scale {
    Linear,
    /// Base-10 logarithm; values at or below zero are left out.
    Log,
    /// Percentiles 0..100 spread as -log10(1 - p/100): 90, 99, 99.9 ... equally apart.
    Percentile,
}

/// One line.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    pub name: String,
    pub points: Vec<(f64, f64)>,
    /// Draw a dot at each point (with its value on hover): for a few points, such as steps.
    pub dots: bool,
    pub dashed: bool,
}

impl Series {
    /// A series with dots at its points.
    pub fn dotted(name: impl Into<String>, points: Vec<(f64, f64)>) -> Self {
        Series {
            name: name.into(),
            points,
            dots: true,
            dashed: false,
        }
    }

    /// A plain line.
    pub fn line(name: impl Into<String>, points: Vec<(f64, f64)>) -> Self {
        Series {
            name: name.into(),
            points,
            dots: false,
            dashed: false,
        }
    }
}

/// A vertical line at `x` with a label.
#[derive(Debug, Clone, PartialEq)]
pub struct Marker {
    pub x: f64,
    pub label: String,
}

/// A shaded span of x with a label: a step over time.
#[derive(Debug, Clone, PartialEq)]
pub struct Band {
    pub from: f64,
    pub to: f64,
    pub label: String,
}

/// A line chart.
#[derive(Debug, Clone, PartialEq)]
pub struct Chart {
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    pub x_scale: Scale,
    pub y_scale: Scale,
    pub series: Vec<Series>,
    pub markers: Vec<Marker>,
    pub bands: Vec<Band>,
}

impl Chart {
    /// An empty linear chart.
    pub fn new(
        title: impl Into<String>,
        x_label: impl Into<String>,
        y_label: impl Into<String>,
    ) -> Self {
        Chart {
            title: title.into(),
            x_label: x_label.into(),
            y_label: y_label.into(),
            x_scale: Scale::Linear,
            y_scale: Scale::Linear,
            series: Vec::new(),
            markers: Vec::new(),
            bands: Vec::new(),
        }
    }

    /// True when no series has a point to draw.
    pub fn is_empty(&self) -> bool {
        self.series.iter().all(|s| s.points.is_empty())
    }

    /// The chart as an `<svg>` element, sized by its viewBox so it scales with the page.
    pub fn to_svg(&self) -> String {
        let keep = |scale: Scale, v: f64| {
            v.is_finite()
                && match scale {
                    Scale::Linear => true,
                    Scale::Log => v > 0.0,
                    Scale::Percentile => (0.0..=100.0).contains(&v),
                }
        };
        let series: Vec<Placed<'_>> = self
            .series
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let pts = s
                    .points
                    .iter()
                    .copied()
                    .filter(|&(x, y)| keep(self.x_scale, x) && keep(self.y_scale, y))
                    .collect();
                (i, s, pts)
            })
            .collect();
        let xs = series
            .iter()
            .flat_map(|s| s.2.iter().map(|p| p.0))
            .chain(self.markers.iter().map(|m| m.x))
            .chain(self.bands.iter().flat_map(|b| [b.from, b.to]))
            .filter(|&x| keep(self.x_scale, x));
        let ys = series.iter().flat_map(|s| s.2.iter().map(|p| p.1));
        let x_axis = Axis::fit(self.x_scale, xs, false);
        let y_axis = Axis::fit(self.y_scale, ys, true);

        // Legend rows above the plot, wrapped by an estimate of the text width.
        let mut legend = Vec::new();
        let (mut lx, mut row) = (LEFT, 0usize);
        for (i, s, _) in &series {
            let w = 26.0 + text_width(&s.name, 12.0) + 16.0;
            if lx + w > WIDTH - RIGHT && lx > LEFT {
                lx = LEFT;
                row += 1;
            }
            legend.push((*i, lx, row, s));
            lx += w;
        }
        let rows = if series.is_empty() { 0 } else { row + 1 };
        let top = 34.0 + rows as f64 * LEGEND_ROW + 6.0;
        let plot = Plot {
            x0: LEFT,
            x1: WIDTH - RIGHT,
            y0: top,
            y1: HEIGHT - BOTTOM,
        };

        let mut s = String::with_capacity(4096);
        let _ = write!(
            s,
            r#"<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" width="100%" role="img" aria-label="{}">"#,
            esc(&self.title)
        );
        let _ = write!(s, "<title>{}</title>", esc(&self.title));
        let _ = write!(
            s,
            r#"<text class="title" x="{LEFT}" y="20" font-size="15" font-weight="600">{}</text>"#,
            esc(&self.title)
        );
        for (i, x, row, se) in &legend {
            let y = 34.0 + *row as f64 * LEGEND_ROW;
            let c = PALETTE[i % PALETTE.len()];
            let dash = if se.dashed {
                r#" stroke-dasharray="5 3""#
            } else {
                ""
            };
            let _ = write!(
                s,
                r#"<g class="legend"><line x1="{x}" y1="{y}" x2="{}" y2="{y}" stroke="{c}" stroke-width="2.5"{dash}/><text x="{}" y="{}" font-size="12">{}</text></g>"#,
                x + 20.0,
                x + 26.0,
                y + 4.0,
                esc(&se.name)
            );
        }
        for (k, b) in self.bands.iter().enumerate() {
            let (a, z) = (plot.x(&x_axis, b.from), plot.x(&x_axis, b.to));
            // Alternate shades tell neighbouring steps apart; a label only where it fits.
            let opacity = if k % 2 == 0 { 0.07 } else { 0.03 };
            let label = if z - a > text_width(&b.label, 9.0) + 6.0 {
                format!(
                    r#"<text x="{:.1}" y="{:.1}" font-size="9" class="muted">{}</text>"#,
                    a + 3.0,
                    plot.y0 + 10.0,
                    esc(&b.label)
                )
            } else {
                String::new()
            };
            let _ = write!(
                s,
                r#"<g class="band"><rect x="{a:.1}" y="{:.1}" width="{:.1}" height="{:.1}" fill-opacity="{opacity}"><title>{}</title></rect>{label}</g>"#,
                plot.y0,
                (z - a).max(0.0),
                plot.y1 - plot.y0,
                esc(&b.label)
            );
        }
        // Grid and ticks.
        for t in &y_axis.ticks {
            let y = plot.y(&y_axis, t.0);
            let _ = write!(
                s,
                r##"<line class="grid" x1="{}" y1="{y:.1}" x2="{}" y2="{y:.1}" stroke="#e5e7eb"/><text x="{}" y="{:.1}" font-size="11" text-anchor="end">{}</text>"##,
                plot.x0,
                plot.x1,
                plot.x0 - 6.0,
                y + 3.5,
                esc(&t.1)
            );
        }
        for t in &x_axis.ticks {
            let x = plot.x(&x_axis, t.0);
            let _ = write!(
                s,
                r##"<line class="grid" x1="{x:.1}" y1="{}" x2="{x:.1}" y2="{}" stroke="#e5e7eb"/><text x="{x:.1}" y="{}" font-size="11" text-anchor="middle">{}</text>"##,
                plot.y0,
                plot.y1,
                plot.y1 + 15.0,
                esc(&t.1)
            );
        }
        let _ = write!(
            s,
            r##"<rect class="frame" x="{}" y="{}" width="{}" height="{}" fill="none" stroke="#9ca3af"/>"##,
            plot.x0,
            plot.y0,
            plot.x1 - plot.x0,
            plot.y1 - plot.y0
        );
        let _ = write!(
            s,
            r#"<text class="axis-label x-label" x="{:.1}" y="{}" font-size="12" text-anchor="middle">{}</text>"#,
            (plot.x0 + plot.x1) / 2.0,
            HEIGHT - 12.0,
            esc(&self.x_label)
        );
        let _ = write!(
            s,
            r#"<text class="axis-label y-label" transform="translate(16 {:.1}) rotate(-90)" font-size="12" text-anchor="middle">{}</text>"#,
            (plot.y0 + plot.y1) / 2.0,
            esc(&self.y_label)
        );
        for m in &self.markers {
            if !keep(self.x_scale, m.x) {
                continue;
            }
            let x = plot.x(&x_axis, m.x);
            let _ = write!(
                s,
                r##"<g class="marker"><line x1="{x:.1}" y1="{}" x2="{x:.1}" y2="{}" stroke="#b91c1c" stroke-width="1.5" stroke-dasharray="6 4"/><text x="{:.1}" y="{}" font-size="11" fill="#b91c1c">{}</text></g>"##,
                plot.y0,
                plot.y1,
                x + 4.0,
                plot.y1 - 6.0,
                esc(&m.label)
            );
        }
        for (i, se, pts) in &series {
            let c = PALETTE[i % PALETTE.len()];
            let dash = if se.dashed {
                r#" stroke-dasharray="5 3""#
            } else {
                ""
            };
            let mut coords = String::new();
            for &(x, y) in &decimate(pts, MAX_LINE_POINTS) {
                let _ = write!(
                    coords,
                    "{:.1},{:.1} ",
                    plot.x(&x_axis, x),
                    plot.y(&y_axis, y)
                );
            }
            let _ = write!(
                s,
                r#"<polyline class="series" data-series="{}" fill="none" stroke="{c}" stroke-width="2" stroke-linejoin="round"{dash} points="{}"/>"#,
                esc(&se.name),
                coords.trim_end()
            );
            if se.dots {
                for &(x, y) in pts {
                    let _ = write!(
                        s,
                        r#"<circle cx="{:.1}" cy="{:.1}" r="3" fill="{c}"><title>{}: {}, {}</title></circle>"#,
                        plot.x(&x_axis, x),
                        plot.y(&y_axis, y),
                        esc(&se.name),
                        fmt_tick(x),
                        fmt_tick(y)
                    );
                }
            }
        }
        s.push_str("</svg>");
        s
    }
}

/// Above this many points a line is thinned (a day at one point a second would make a page of
/// megabytes); the plot is 690 pixels wide, so nothing visible is lost.
const MAX_LINE_POINTS: usize = 1500;

/// Thins a line to about `max` points, keeping the lowest and highest of each stretch in their
/// order, so spikes survive.
fn decimate(pts: &[(f64, f64)], max: usize) -> Vec<(f64, f64)> {
    if pts.len() <= max || max < 4 {
        return pts.to_vec();
    }
    let per = pts.len().div_ceil(max / 2);
    let mut out = Vec::with_capacity(max + 2);
    for chunk in pts.chunks(per) {
        let lo = chunk
            .iter()
            .enumerate()
            .min_by(|a, b| a.1.1.total_cmp(&b.1.1));
        let hi = chunk
            .iter()
            .enumerate()
            .max_by(|a, b| a.1.1.total_cmp(&b.1.1));
        if let (Some((i, &l)), Some((j, &h))) = (lo, hi) {
            match i.cmp(&j) {
                std::cmp::Ordering::Less => out.extend([l, h]),
                std::cmp::Ordering::Greater => out.extend([h, l]),
                std::cmp::Ordering::Equal => out.push(l),
            }
        }
    }
    out
}

/// A series with its index (for its colour) and the points its axes can place.
type Placed<'a> = (usize, &'a Series, Vec<(f64, f64)>);

struct Plot {
    x0: f64,
    x1: f64,
    y0: f64,
    y1: f64,
}

impl Plot {
    fn x(&self, a: &Axis, v: f64) -> f64 {
        self.x0 + a.frac(v) * (self.x1 - self.x0)
    }

    fn y(&self, a: &Axis, v: f64) -> f64 {
        self.y1 - a.frac(v) * (self.y1 - self.y0)
    }
}

/// An axis: its scale, its range in transformed units, and its ticks (value, label).
struct Axis {
    scale: Scale,
    lo: f64,
    hi: f64,
    ticks: Vec<(f64, String)>,
}

fn transform(scale: Scale, v: f64) -> f64 {
    match scale {
        Scale::Linear => v,
        Scale::Log => v.log10(),
        // p = 100 is infinitely far; cap at 99.9999%, past every plotted point but the max.
        Scale::Percentile => -(1.0 - (v / 100.0).min(0.999_999)).log10(),
    }
}

impl Axis {
    fn frac(&self, v: f64) -> f64 {
        let t = transform(self.scale, v);
        if self.hi > self.lo {
            ((t - self.lo) / (self.hi - self.lo)).clamp(0.0, 1.0)
        } else {
            0.5
        }
    }

    /// An axis that holds `values`. A value axis (`from_zero`) starts at zero and ends on a
    /// round tick; the other axis spans the values with a little room, so points do not sit on
    /// the frame and no empty stretch follows the last one.
    fn fit(scale: Scale, values: impl Iterator<Item = f64>, from_zero: bool) -> Axis {
        let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
        for v in values {
            lo = lo.min(v);
            hi = hi.max(v);
        }
        if !lo.is_finite() {
            (lo, hi) = match scale {
                Scale::Log => (1.0, 10.0),
                Scale::Percentile => (0.0, 99.0),
                Scale::Linear => (0.0, 1.0),
            };
        }
        match scale {
            Scale::Linear => {
                if from_zero && lo > 0.0 {
                    lo = 0.0;
                }
                if hi <= lo {
                    hi = lo + if lo == 0.0 { 1.0 } else { lo.abs() * 0.1 };
                }
                let (a, b, step) = if from_zero {
                    let step = nice_step((hi - lo) / 5.0);
                    ((lo / step).floor() * step, (hi / step).ceil() * step, step)
                } else {
                    let pad = (hi - lo) * 0.03;
                    let (a, b) = (
                        if lo >= 0.0 {
                            (lo - pad).max(0.0)
                        } else {
                            lo - pad
                        },
                        hi + pad,
                    );
                    (a, b, nice_step((b - a) / 6.0))
                };
                let mut ticks = Vec::new();
                let mut t = (a / step).ceil() * step;
                while t <= b + step * 1e-9 {
                    ticks.push((t, fmt_tick(t)));
                    t += step;
                }
                Axis {
                    scale,
                    lo: a,
                    hi: b,
                    ticks,
                }
            }
            Scale::Log => {
                let (a, b) = (
                    lo.log10().floor(),
                    hi.log10().ceil().max(lo.log10().floor() + 1.0),
                );
                let decades = (b - a) as i32;
                let mut ticks = Vec::new();
                for d in a as i32..=b as i32 {
                    for m in [1.0, 2.0, 5.0] {
                        // Few decades: 1-2-5 ticks; many: only the powers of ten.
                        if m > 1.0 && decades > 3 {
                            continue;
                        }
                        let v = m * 10f64.powi(d);
                        if v.log10() <= b + 1e-9 {
                            ticks.push((v, fmt_tick(v)));
                        }
                    }
                }
                Axis {
                    scale,
                    lo: a,
                    hi: b,
                    ticks,
                }
            }
            Scale::Percentile => {
                let top = transform(Scale::Percentile, hi).ceil().clamp(1.0, 6.0);
                // 0%, 90%, 99%, 99.9%, ...: k nines, written with as many decimals as they need.
                let ticks = (0..=top as i32)
                    .map(|k| {
                        let p = 100.0 * (1.0 - 10f64.powi(-k));
                        let decimals = usize::try_from(k - 2).unwrap_or(0);
                        (p, format!("{p:.decimals$}%"))
                    })
                    .collect();
                Axis {
                    scale,
                    lo: 0.0,
                    hi: top,
                    ticks,
                }
            }
        }
    }
}

/// A round step near `raw`: 1, 2, 2.5 or 5 times a power of ten.
fn nice_step(raw: f64) -> f64 {
    if raw <= 0.0 || !raw.is_finite() {
        return 1.0;
    }
    let p = 10f64.powf(raw.log10().floor());
    let f = raw / p;
    let m = if f <= 1.0 {
        1.0
    } else if f <= 2.0 {
        2.0
    } else if f <= 2.5 {
        2.5
    } else if f <= 5.0 {
        5.0
    } else {
        10.0
    };
    m * p
}

/// A tick label: short, without float noise.
fn fmt_tick(v: f64) -> String {
    let a = v.abs();
    if a >= 1e6 {
        format!("{}M", trim(v / 1e6, 2))
    } else if a >= 1e4 {
        format!("{}k", trim(v / 1e3, 1))
    } else {
        trim(
            v,
            if a >= 100.0 {
                0
            } else if a >= 1.0 {
                2
            } else {
                4
            },
        )
    }
}

fn trim(v: f64, decimals: usize) -> String {
    let s = format!("{v:.decimals$}");
    let s = if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    };
    if s == "-0" { "0".into() } else { s }
}

/// Rough width of text in pixels: CJK characters are about twice as wide as Latin ones.
fn text_width(s: &str, size: f64) -> f64 {
    s.chars()
        .map(|c| if c.is_ascii() { 0.58 } else { 1.0 })
        .sum::<f64>()
        * size
}

/// Escapes text for XML and HTML.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn count(h: &str, needle: &str) -> usize {
        h.matches(needle).count()
    }

    #[test]
    fn one_polyline_per_series_with_labels_and_markers() {
        let mut c = Chart::new("TTFT <p99>", "offered QPS", "latency (ms)");
        c.series.push(Series::dotted(
            "p50",
            vec![(4.0, 50.0), (8.0, 55.0), (16.0, 400.0)],
        ));
        c.series.push(Series::dotted(
            "p99",
            vec![(4.0, 80.0), (8.0, 90.0), (16.0, 2400.0)],
        ));
        c.markers.push(Marker {
            x: 8.0,
            label: "knee".into(),
        });
        let svg = c.to_svg();
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>"));
        assert_eq!(count(&svg, "<polyline"), 2);
        assert_eq!(count(&svg, "<circle"), 6);
        assert!(svg.contains("TTFT &lt;p99&gt;"), "title is escaped");
        assert!(svg.contains(">offered QPS</text>") && svg.contains(">latency (ms)</text>"));
        assert!(svg.contains(r#"class="marker""#) && svg.contains(">knee</text>"));
        assert!(!svg.contains("NaN") && !svg.contains("inf"));
        assert!(
            !svg.contains("http"),
            "no namespace or link inside the page"
        );
    }

    #[test]
    fn log_and_percentile_axes_drop_what_they_cannot_place() {
        let mut c = Chart::new("dist", "percentile", "ms");
        c.x_scale = Scale::Percentile;
        c.y_scale = Scale::Log;
        c.series.push(Series::line(
            "e2e",
            vec![
                (0.0, 10.0),
                (50.0, 20.0),
                (99.0, 0.0),
                (99.9, 300.0),
                (100.0, 500.0),
            ],
        ));
        let svg = c.to_svg();
        assert_eq!(count(&svg, "<polyline"), 1);
        let pts = svg
            .split("points=\"")
            .nth(1)
            .unwrap()
            .split('"')
            .next()
            .unwrap();
        assert_eq!(
            pts.split(' ').count(),
            4,
            "the zero is left out on a log axis: {pts}"
        );
        assert!(
            svg.contains(">99.9%</text>") && svg.contains(">90%</text>"),
            "{svg}"
        );
        assert!(svg.contains(">100</text>") || svg.contains(">1000</text>"));
    }

    #[test]
    fn an_empty_chart_still_draws_its_axes() {
        let c = Chart::new("empty", "x", "y");
        assert!(c.is_empty());
        let svg = c.to_svg();
        assert_eq!(count(&svg, "<polyline"), 0);
        assert!(svg.contains(">x</text>"));
    }

    #[test]
    fn long_lines_are_thinned_keeping_their_spikes() {
        let pts: Vec<(f64, f64)> = (0..100_000)
            .map(|i| (f64::from(i), if i == 77_777 { 500.0 } else { 1.0 }))
            .collect();
        let thin = decimate(&pts, 1000);
        assert!(thin.len() <= 1002, "{}", thin.len());
        assert!(thin.contains(&(77_777.0, 500.0)));
        assert!(thin.windows(2).all(|w| w[0].0 < w[1].0), "x stays in order");
        let mut c = Chart::new("day", "s", "ms");
        c.series.push(Series::line("e2e", pts));
        assert!(c.to_svg().len() < 40_000);
    }

    #[test]
    fn ticks_are_round() {
        assert_eq!(nice_step(3.7), 5.0);
        assert_eq!(nice_step(0.013), 0.02);
        assert_eq!(nice_step(240.0), 250.0);
        assert_eq!(fmt_tick(25000.0), "25k");
        assert_eq!(fmt_tick(0.1 + 0.2), "0.3");
        assert_eq!(fmt_tick(1_500_000.0), "1.5M");
    }
}
