//! Mergeable measurements: a bundle of HdrHistograms (one per latency metric) and counters.
//!
//! Every histogram uses one layout (1 us .. 1 h, 3 significant digits), so merges take
//! hdrhistogram's fast path and never fail for range. Percentiles over several agents or
//! intervals come from merged histograms, never from averaged percentiles.

use std::time::Duration;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use crate::units::micros;

/// Smallest value a histogram tracks, in microseconds.
pub const LOWEST_US: u64 = 1;
/// Largest value a histogram tracks, in microseconds (one hour); larger values are clamped.
pub const HIGHEST_US: u64 = 3_600_000_000;
/// Significant decimal digits kept.
pub const SIGNIFICANT_DIGITS: u8 = 3;

/// A failure to decode or merge histograms from a peer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MetricsError {
    #[error("histogram {metric} could not be decoded: {detail}")]
    Decode {
        metric: &'static str,
        detail: String,
    },
    #[error("histogram {metric} could not be encoded: {detail}")]
    Encode {
        metric: &'static str,
        detail: String,
    },
    #[error("histogram {metric} could not be merged: {detail}")]
    Merge {
        metric: &'static str,
        detail: String,
    },
}

/// An empty histogram of the one layout used everywhere.
pub fn new_histogram() -> Histogram<u64> {
    // The bounds are constants that hdrhistogram accepts; this cannot fail.
    Histogram::new_with_bounds(LOWEST_US, HIGHEST_US, SIGNIFICANT_DIGITS)
        .expect("constant histogram bounds are valid")
}

/// A duration in microseconds, clamped into the histograms' range.
pub fn clamp_us(d: Duration) -> u64 {
    micros(d).clamp(LOWEST_US, HIGHEST_US)
}

/// The latency metrics of DESIGN.md, one histogram each, values in microseconds.
#[derive(Debug, Clone)]
pub struct HistogramBundle {
    pub ttft: Histogram<u64>,
    pub ttft_corrected: Histogram<u64>,
    pub chunk_gap: Histogram<u64>,
    pub itl: Histogram<u64>,
    pub tpot: Histogram<u64>,
    pub e2e: Histogram<u64>,
    pub schedule_lag: Histogram<u64>,
}

/// The metric names, in the order of [`HistogramBundle::each`].
pub const METRIC_NAMES: [&str; 7] = [
    "ttft",
    "ttft_corrected",
    "chunk_gap",
    "itl",
    "tpot",
    "e2e",
    "schedule_lag",
];

impl Default for HistogramBundle {
    fn default() -> Self {
        Self::new()
    }
}

/// A bundle's recorded buckets: (metric index, a value of the bucket, its count).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SparseBundle(Vec<(u8, u64, u64)>);

impl HistogramBundle {
    /// An empty bundle.
    pub fn new() -> Self {
        HistogramBundle {
            ttft: new_histogram(),
            ttft_corrected: new_histogram(),
            chunk_gap: new_histogram(),
            itl: new_histogram(),
            tpot: new_histogram(),
            e2e: new_histogram(),
            schedule_lag: new_histogram(),
        }
    }

    /// The histograms with their names, in [`METRIC_NAMES`] order.
    pub fn each(&self) -> [(&'static str, &Histogram<u64>); 7] {
        [
            ("ttft", &self.ttft),
            ("ttft_corrected", &self.ttft_corrected),
            ("chunk_gap", &self.chunk_gap),
            ("itl", &self.itl),
            ("tpot", &self.tpot),
            ("e2e", &self.e2e),
            ("schedule_lag", &self.schedule_lag),
        ]
    }

    fn each_mut(&mut self) -> [(&'static str, &mut Histogram<u64>); 7] {
        [
            ("ttft", &mut self.ttft),
            ("ttft_corrected", &mut self.ttft_corrected),
            ("chunk_gap", &mut self.chunk_gap),
            ("itl", &mut self.itl),
            ("tpot", &mut self.tpot),
            ("e2e", &mut self.e2e),
            ("schedule_lag", &mut self.schedule_lag),
        ]
    }

    /// Adds another bundle's samples to this one.
    ///
    /// # Errors
    /// Only if `other` has values beyond this layout, which a peer with another layout could send.
    pub fn merge(&mut self, other: &HistogramBundle) -> Result<(), MetricsError> {
        for ((metric, mine), (_, theirs)) in self.each_mut().into_iter().zip(other.each()) {
            mine.add(theirs).map_err(|e| MetricsError::Merge {
                metric,
                detail: format!("{e:?}"),
            })?;
        }
        Ok(())
    }

    /// The recorded buckets only: a few KB where the bundle holds about 1.3 MB, for keeping many
    /// intervals (a rolling window) without keeping their whole histograms.
    pub fn sparse(&self) -> SparseBundle {
        let mut buckets = Vec::new();
        for (i, (_, h)) in self.each().iter().enumerate() {
            buckets.extend(
                h.iter_recorded()
                    .map(|v| (i as u8, v.value_iterated_to(), v.count_at_value())),
            );
        }
        SparseBundle(buckets)
    }

    /// Adds what `sparse` holds: each bucket lands where it was recorded, so percentiles are
    /// those of the bundle it came from.
    pub fn add_sparse(&mut self, sparse: &SparseBundle) {
        let mut hs = self.each_mut();
        for &(i, value, count) in &sparse.0 {
            if let Some((_, h)) = hs.get_mut(usize::from(i)) {
                let _ = h.record_n(value, count);
            }
        }
    }

    /// Empties every histogram, keeping the allocation.
    pub fn reset(&mut self) {
        for (_, h) in self.each_mut() {
            h.reset();
        }
    }
}

/// What happened to a step's requests, counted: the domain twin of the wire's `Counts`
/// (converted in [`crate::proto`]), so that summaries are computed without the gRPC code.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tally {
    pub sent: u64,
    pub completed: u64,
    pub failed: u64,
    pub timeouts: u64,
    pub abnormal: u64,
    pub dropped: u64,
    pub cancelled: u64,
    pub good: u64,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub server_input_tokens: u64,
    /// Requests whose server-reported prompt tokens are known (for the input-token gap).
    pub server_input_requests: u64,
    pub content_chunks: u64,
    /// Failures and cancellations by error class.
    pub errors: std::collections::BTreeMap<String, u64>,
    /// The first message of each error class and HTTP status, with its count, in key order
    /// ([`crate::error_sample::sample_key`]).
    pub error_samples: Vec<crate::error_sample::ErrorSample>,
}

/// A latency distribution summarised in milliseconds, as summary.json reports it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
pub struct LatencySummary {
    pub count: u64,
    pub mean: f64,
    pub p50: f64,
    pub p90: f64,
    pub p95: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
}

impl LatencySummary {
    /// Summarises a histogram of microseconds; all zeros when it is empty.
    pub fn of(h: &Histogram<u64>) -> Self {
        if h.is_empty() {
            return LatencySummary::default();
        }
        let ms = |us: u64| us as f64 / 1000.0;
        LatencySummary {
            count: h.len(),
            mean: h.mean() / 1000.0,
            p50: ms(h.value_at_quantile(0.50)),
            p90: ms(h.value_at_quantile(0.90)),
            p95: ms(h.value_at_quantile(0.95)),
            p99: ms(h.value_at_quantile(0.99)),
            p999: ms(h.value_at_quantile(0.999)),
            max: ms(h.max()),
        }
    }

    /// A statistic by name (`mean`, `p50`, `p90`, `p95`, `p99`, `p999`, `max`).
    pub fn get(&self, stat: &str) -> Option<f64> {
        Some(match stat {
            "mean" => self.mean,
            "p50" => self.p50,
            "p90" => self.p90,
            "p95" => self.p95,
            "p99" => self.p99,
            "p999" => self.p999,
            "max" => self.max,
            _ => return None,
        })
    }
}

#[cfg(all(test, feature = "wire"))]
mod tests {
    use super::*;
    use crate::proto::{self, count_outcome};
    use crate::timeline::ChunkArrival;
    use crate::timeline::{ErrorClass, RequestTimeline};
    use tokio::time::Instant;

    fn request(ttft_ms: u64, gap_ms: u64, tokens: u32) -> RequestTimeline {
        let t0 = Instant::now();
        let mut t = RequestTimeline::new(0, t0, t0, 10);
        for i in 0..u64::from(tokens) {
            t.chunks.push(ChunkArrival {
                at: t0 + Duration::from_millis(ttft_ms + i * gap_ms),
                tokens: 1,
            });
        }
        t.finished = t.chunks.last().map(|c| c.at);
        t
    }

    #[test]
    fn merged_bundles_equal_one_bundle_of_all_samples() {
        let (mut a, mut b, mut all) = (
            HistogramBundle::new(),
            HistogramBundle::new(),
            HistogramBundle::new(),
        );
        for i in 0..200u64 {
            let r = request(20 + i, 5 + i % 7, 4);
            if i % 3 == 0 { &mut a } else { &mut b }.record(&r);
            all.record(&r);
        }
        a.merge(&b).unwrap();
        for ((name, merged), (_, single)) in a.each().into_iter().zip(all.each()) {
            assert_eq!(merged.len(), single.len(), "{name}");
            assert_eq!(
                LatencySummary::of(merged),
                LatencySummary::of(single),
                "{name}"
            );
        }
    }

    #[test]
    fn a_sparse_copy_adds_up_to_the_same_distribution() {
        let mut b = HistogramBundle::new();
        for i in 0..300u64 {
            b.record(&request(20 + i * 37 % 5000, 3 + i % 11, 5));
        }
        let sparse = b.sparse();
        let mut rebuilt = HistogramBundle::new();
        rebuilt.add_sparse(&sparse);
        rebuilt.add_sparse(&sparse);
        let mut twice = b.clone();
        twice.merge(&b).unwrap();
        for ((name, got), (_, want)) in rebuilt.each().into_iter().zip(twice.each()) {
            assert_eq!(got, want, "{name}");
        }
        assert!(sparse.0.len() < 2000, "{} buckets", sparse.0.len());
    }

    #[test]
    fn encode_decode_round_trips() {
        let mut b = HistogramBundle::new();
        for i in 1..50 {
            b.record(&request(i * 3, 2, 3));
        }
        let decoded = HistogramBundle::decode(&b.encode().unwrap()).unwrap();
        assert_eq!(
            LatencySummary::of(&decoded.ttft),
            LatencySummary::of(&b.ttft)
        );
        assert_eq!(decoded.itl.len(), b.itl.len());
        let empty = HistogramBundle::decode(&proto::Histograms::default()).unwrap();
        assert!(empty.e2e.is_empty());
    }

    #[test]
    fn garbage_from_a_peer_is_an_error_not_a_panic() {
        let bad = proto::Histograms {
            ttft_us: vec![1, 2, 3, 4, 5],
            ..Default::default()
        };
        let err = HistogramBundle::decode(&bad).unwrap_err();
        assert!(err.to_string().contains("ttft"), "{err}");
    }

    #[test]
    fn failed_requests_count_by_class_and_keep_only_their_lag() {
        let mut c = proto::Counts::default();
        let mut ok = request(10, 1, 3);
        ok.server_input_tokens = Some(12);
        let mut broken = request(10, 1, 2);
        broken.error = Some(ErrorClass::StreamBroken);
        let mut slow = request(10, 1, 0);
        slow.error = Some(ErrorClass::TimeoutFirstToken);
        for (t, good) in [(&ok, true), (&broken, false), (&slow, false)] {
            count_outcome(&mut c, t, good);
        }
        assert_eq!((c.completed, c.failed, c.timeouts, c.good), (1, 2, 1, 1));
        assert_eq!(c.errors["stream_broken"], 1);
        assert_eq!(c.output_tokens, 3);
        assert_eq!((c.server_input_tokens, c.server_input_requests), (12, 1));

        let mut b = HistogramBundle::new();
        b.record(&broken);
        assert_eq!((b.schedule_lag.len(), b.ttft.len()), (1, 0));

        let mut total = proto::Counts::default();
        total += &c;
        total += &c;
        assert_eq!(total.errors["stream_broken"], 2);
        assert_eq!(total.completed, 2);
    }

    #[test]
    fn summary_reports_milliseconds() {
        let mut h = new_histogram();
        for v in 1..=1000u64 {
            h.record(v * 1000).unwrap();
        }
        let s = LatencySummary::of(&h);
        assert!((s.p50 - 500.0).abs() < 1.0, "{s:?}");
        assert!((s.p99 - 990.0).abs() < 1.0, "{s:?}");
        assert_eq!(s.count, 1000);
        assert_eq!(s.get("p99"), Some(s.p99));
        assert_eq!(
            LatencySummary::of(&new_histogram()),
            LatencySummary::default()
        );
    }
}
