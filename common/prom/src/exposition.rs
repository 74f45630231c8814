//! The writer: metric families opened by their `# HELP` and `# TYPE` lines, then samples with
//! their labels in the order given.

use std::fmt::{self, Write as _};

use crate::escape::{escape_help, escape_label_value};

/// The type of a metric family, as its `# TYPE` line names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum MetricKind {
    /// A total that only goes up (or back to zero when the process restarts).
    Counter,
    /// A value that goes up and down.
    Gauge,
    /// Cumulative buckets with `_sum` and `_count`.
    Histogram,
    /// Quantiles with `_sum` and `_count`.
    Summary,
    /// A value of no declared type.
    Untyped,
}

impl MetricKind {
    /// The name the `# TYPE` line uses.
    pub fn name(self) -> &'static str {
        match self {
            Self::Counter => "counter",
            Self::Gauge => "gauge",
            Self::Histogram => "histogram",
            Self::Summary => "summary",
            Self::Untyped => "untyped",
        }
    }
}

impl fmt::Display for MetricKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A text exposition being written: call [`family`](Self::family) once per family, then
/// [`sample`](Self::sample) (or [`histogram`](Self::histogram)) for each of its series.
///
/// Names are the caller's: they are written as given, so they must be valid metric and label
/// names (they are constants in Stampede). Label values and help text are escaped here.
#[derive(Debug, Default, Clone)]
pub struct Exposition {
    out: String,
}

impl Exposition {
    /// An empty exposition.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty exposition with room for `bytes` of text.
    pub fn with_capacity(bytes: usize) -> Self {
        Self {
            out: String::with_capacity(bytes),
        }
    }

    /// Opens the family `name`: its `# HELP` and `# TYPE` lines.
    pub fn family(&mut self, name: &str, kind: MetricKind, help: &str) {
        // Writing into a String cannot fail.
        let _ = writeln!(self.out, "# HELP {name} {}", escape_help(help));
        let _ = writeln!(self.out, "# TYPE {name} {kind}");
    }

    /// One sample of `name` with `labels`; a value that is not finite (NaN, infinite) is left
    /// out, since a missing series says "unknown" where NaN would chart as a number.
    pub fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        if !value.is_finite() {
            return;
        }
        self.sample_line(name, labels, None, value);
    }

    /// Writes `name{labels[,extra]} value`; `extra` is a last label (a bucket's `le`).
    pub(crate) fn sample_line(
        &mut self,
        name: &str,
        labels: &[(&str, &str)],
        extra: Option<(&str, &str)>,
        value: impl fmt::Display,
    ) {
        self.out.push_str(name);
        let mut all = labels.iter().copied().chain(extra).peekable();
        if all.peek().is_some() {
            self.out.push('{');
            for (i, (k, v)) in all.enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                let _ = write!(self.out, "{k}=\"{}\"", escape_label_value(v));
            }
            self.out.push('}');
        }
        let _ = writeln!(self.out, " {value}");
    }

    /// The text written so far.
    pub fn as_str(&self) -> &str {
        &self.out
    }

    /// The text, ready to serve with [`CONTENT_TYPE`](crate::CONTENT_TYPE).
    pub fn into_string(self) -> String {
        self.out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prom_text_format_parser::{Scrape, Type};

    #[test]
    fn families_and_samples_are_written_in_order() {
        let mut e = Exposition::new();
        e.family("up", MetricKind::Gauge, "Whether it is up.");
        e.sample("up", &[], 1.0);
        e.family("hits_total", MetricKind::Counter, "Hits.");
        e.sample("hits_total", &[("path", "/a"), ("code", "200")], 42.0);
        assert_eq!(
            e.as_str(),
            "# HELP up Whether it is up.\n# TYPE up gauge\nup 1\n\
             # HELP hits_total Hits.\n# TYPE hits_total counter\n\
             hits_total{path=\"/a\",code=\"200\"} 42\n"
        );
    }

    #[test]
    fn values_that_are_not_finite_are_left_out() {
        let mut e = Exposition::new();
        e.family("x", MetricKind::Gauge, "x");
        e.sample("x", &[("a", "1")], f64::NAN);
        e.sample("x", &[("a", "2")], f64::INFINITY);
        e.sample("x", &[("a", "3")], 0.25);
        assert_eq!(e.as_str(), "# HELP x x\n# TYPE x gauge\nx{a=\"3\"} 0.25\n");
    }

    #[test]
    fn escaped_labels_parse_back() {
        let mut e = Exposition::new();
        e.family(
            "info",
            MetricKind::Gauge,
            "A \"quoted\" help \\ with a\nnewline.",
        );
        e.sample("info", &[("plan", "a \"quoted\" plan\\x\ny")], 1.0);
        let text = e.into_string();
        assert!(
            text.contains("info{plan=\"a \\\"quoted\\\" plan\\\\x\\ny\"} 1\n"),
            "{text}"
        );
        let scrape = Scrape::parse(&text).unwrap_or_else(|err| panic!("{err:?}\n{text}"));
        assert_eq!(scrape.metrics.len(), 1);
        let m = &scrape.metrics[0];
        assert_eq!(m.kind, Type::Gauge);
        assert_eq!(m.samples[0].labels[0].key, "plan");
        // The parser keeps values as written (still escaped).
        assert_eq!(
            m.samples[0].labels[0].value,
            "a \\\"quoted\\\" plan\\\\x\\ny"
        );
    }

    #[test]
    fn kinds_are_named_as_type_lines_name_them() {
        let names: Vec<_> = [
            MetricKind::Counter,
            MetricKind::Gauge,
            MetricKind::Histogram,
            MetricKind::Summary,
            MetricKind::Untyped,
        ]
        .iter()
        .map(|k| k.to_string())
        .collect();
        assert_eq!(
            names,
            ["counter", "gauge", "histogram", "summary", "untyped"]
        );
    }
}
