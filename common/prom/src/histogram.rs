//! A histogram's samples: per-bucket counts summed into cumulative `_bucket` lines, one per
//! upper bound (`le`, inclusive) and `+Inf`, then `_sum` and `_count`.

use crate::exposition::Exposition;

/// A histogram at one moment: its upper bounds, the count of each bucket (not cumulative)
/// and the sum of the observations.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Buckets<'a> {
    /// Upper bounds in ascending order, without `+Inf`.
    pub bounds: &'a [f64],
    /// One count per bound, then the count above the last bound. A missing count is zero;
    /// counts past that one go to `+Inf` too.
    pub counts: &'a [u64],
    /// The sum of the observations.
    pub sum: f64,
}

impl Exposition {
    /// The samples of histogram `name` with `labels` (the family opened before with
    /// [`MetricKind::Histogram`](crate::MetricKind::Histogram)); `le` is added as the last
    /// label of each bucket. A sum that is not finite is left out, as [`sample`](Self::sample)
    /// leaves out any such value.
    pub fn histogram(&mut self, name: &str, labels: &[(&str, &str)], buckets: &Buckets<'_>) {
        let bucket = format!("{name}_bucket");
        let mut cumulative = 0u64;
        for (i, bound) in buckets.bounds.iter().enumerate() {
            cumulative += buckets.counts.get(i).copied().unwrap_or(0);
            let le = bound.to_string();
            self.sample_line(&bucket, labels, Some(("le", &le)), cumulative);
        }
        let above = buckets.counts.iter().skip(buckets.bounds.len());
        cumulative += above.sum::<u64>();
        self.sample_line(&bucket, labels, Some(("le", "+Inf")), cumulative);
        self.sample(&format!("{name}_sum"), labels, buckets.sum);
        self.sample_line(&format!("{name}_count"), labels, None, cumulative);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MetricKind;
    use prom_text_format_parser::{Scrape, Type, ValueType};

    fn rendered(buckets: &Buckets<'_>) -> String {
        let mut e = Exposition::new();
        e.family("x", MetricKind::Histogram, "help");
        e.histogram("x", &[("a", "b")], buckets);
        e.into_string()
    }

    #[test]
    fn buckets_are_cumulative_and_end_at_the_count() {
        let text = rendered(&Buckets {
            bounds: &[0.1, 1.0],
            counts: &[2, 0, 1],
            sum: 5.15,
        });
        assert_eq!(
            text,
            "# HELP x help\n# TYPE x histogram\n\
             x_bucket{a=\"b\",le=\"0.1\"} 2\n\
             x_bucket{a=\"b\",le=\"1\"} 2\n\
             x_bucket{a=\"b\",le=\"+Inf\"} 3\n\
             x_sum{a=\"b\"} 5.15\n\
             x_count{a=\"b\"} 3\n"
        );
    }

    #[test]
    fn short_counts_are_zero_and_extra_ones_go_above_the_last_bound() {
        let short = rendered(&Buckets {
            bounds: &[1.0, 2.0],
            counts: &[4],
            sum: 1.0,
        });
        assert!(short.contains("x_bucket{a=\"b\",le=\"2\"} 4\n"), "{short}");
        assert!(short.contains("x_count{a=\"b\"} 4\n"), "{short}");
        let long = rendered(&Buckets {
            bounds: &[1.0],
            counts: &[1, 2, 3],
            sum: 1.0,
        });
        assert!(long.contains("x_bucket{a=\"b\",le=\"+Inf\"} 6\n"), "{long}");
    }

    #[test]
    fn small_bounds_are_written_without_an_exponent() {
        let text = rendered(&Buckets {
            bounds: &[0.000_01, 2560.0],
            counts: &[],
            sum: 0.0,
        });
        assert!(text.contains("le=\"0.00001\""), "{text}");
        assert!(text.contains("le=\"2560\""), "{text}");
    }

    #[test]
    fn a_histogram_parses_as_one_family() {
        let text = rendered(&Buckets {
            bounds: &[0.5, 1.0, 2.5],
            counts: &[1, 2, 3, 4],
            sum: 12.5,
        });
        let scrape = Scrape::parse(&text).unwrap_or_else(|e| panic!("{e:?}\n{text}"));
        assert_eq!(scrape.metrics.len(), 1);
        let m = &scrape.metrics[0];
        assert_eq!((m.kind, m.name.as_str()), (Type::Histogram, "x"));
        let of = |t: ValueType| {
            m.samples
                .iter()
                .filter(|s| s.value.value_type == t)
                .map(|s| s.value.value.as_f64())
                .collect::<Vec<_>>()
        };
        assert_eq!(of(ValueType::Sample), [1.0, 3.0, 6.0, 10.0]);
        assert_eq!(of(ValueType::Sum), [12.5]);
        assert_eq!(of(ValueType::Count), [10.0]);
    }
}
