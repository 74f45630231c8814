//! The measurements on the wire: histogram bundles as V2-encoded bytes, and the interval
//! counters, which add up.

use hdrhistogram::Histogram;
use hdrhistogram::serialization::{Deserializer, Serializer, V2Serializer};

use super::{Counts, Histograms};
use crate::metrics::{HistogramBundle, MetricsError, Tally, new_histogram};
use crate::timeline::{ErrorClass, RequestTimeline};

impl HistogramBundle {
    /// Encodes every histogram in the V2 format.
    ///
    /// # Errors
    /// When serialization fails (it does not for this layout, but it is a library call).
    pub fn encode(&self) -> Result<Histograms, MetricsError> {
        let mut ser = V2Serializer::new();
        let mut enc = |metric: &'static str, h: &Histogram<u64>| {
            let mut buf = Vec::new();
            ser.serialize(h, &mut buf)
                .map_err(|e| MetricsError::Encode {
                    metric,
                    detail: format!("{e:?}"),
                })?;
            Ok::<_, MetricsError>(buf)
        };
        Ok(Histograms {
            ttft_us: enc("ttft", &self.ttft)?,
            ttft_corrected_us: enc("ttft_corrected", &self.ttft_corrected)?,
            chunk_gap_us: enc("chunk_gap", &self.chunk_gap)?,
            itl_us: enc("itl", &self.itl)?,
            tpot_us: enc("tpot", &self.tpot)?,
            e2e_us: enc("e2e", &self.e2e)?,
            schedule_lag_us: enc("schedule_lag", &self.schedule_lag)?,
        })
    }

    /// Decodes a peer's histograms; an empty field is an empty histogram.
    ///
    /// # Errors
    /// When a field is not a valid V2 histogram or does not fit this layout.
    pub fn decode(p: &Histograms) -> Result<Self, MetricsError> {
        let mut de = Deserializer::new();
        let mut dec =
            |metric: &'static str, bytes: &[u8]| -> Result<Histogram<u64>, MetricsError> {
                let mut out = new_histogram();
                if bytes.is_empty() {
                    return Ok(out);
                }
                let h: Histogram<u64> =
                    de.deserialize(&mut &bytes[..])
                        .map_err(|e| MetricsError::Decode {
                            metric,
                            detail: format!("{e:?}"),
                        })?;
                out.add(&h).map_err(|e| MetricsError::Decode {
                    metric,
                    detail: format!("{e:?}"),
                })?;
                Ok(out)
            };
        Ok(HistogramBundle {
            ttft: dec("ttft", &p.ttft_us)?,
            ttft_corrected: dec("ttft_corrected", &p.ttft_corrected_us)?,
            chunk_gap: dec("chunk_gap", &p.chunk_gap_us)?,
            itl: dec("itl", &p.itl_us)?,
            tpot: dec("tpot", &p.tpot_us)?,
            e2e: dec("e2e", &p.e2e_us)?,
            schedule_lag: dec("schedule_lag", &p.schedule_lag_us)?,
        })
    }
}

/// Adds a finished request to interval counters. `sent` is counted apart, when it is sent.
pub fn count_outcome(c: &mut Counts, t: &RequestTimeline, good: bool) {
    c.input_tokens += u64::from(t.input_tokens);
    if let Some(server) = t.server_input_tokens {
        c.server_input_tokens += u64::from(server);
        c.server_input_requests += 1;
    }
    c.content_chunks += u64::from(t.content_chunks());
    match t.error {
        None => {
            c.completed += 1;
            c.output_tokens += u64::from(t.output_tokens());
            if good {
                c.good += 1;
            }
        }
        Some(ErrorClass::Cancelled) => {
            c.cancelled += 1;
            *c.errors
                .entry(ErrorClass::Cancelled.as_str().to_string())
                .or_default() += 1;
        }
        Some(class) => {
            c.failed += 1;
            if class.is_timeout() {
                c.timeouts += 1;
            }
            if class.is_abnormal() {
                c.abnormal += 1;
            }
            *c.errors.entry(class.as_str().to_string()).or_default() += 1;
        }
    }
}

impl std::ops::AddAssign<&Counts> for Counts {
    fn add_assign(&mut self, o: &Counts) {
        self.sent += o.sent;
        self.completed += o.completed;
        self.failed += o.failed;
        self.timeouts += o.timeouts;
        self.abnormal += o.abnormal;
        self.dropped += o.dropped;
        self.cancelled += o.cancelled;
        self.good += o.good;
        self.input_tokens += o.input_tokens;
        self.output_tokens += o.output_tokens;
        self.server_input_tokens += o.server_input_tokens;
        self.server_input_requests += o.server_input_requests;
        self.content_chunks += o.content_chunks;
        for (class, n) in &o.errors {
            *self.errors.entry(class.clone()).or_default() += n;
        }
    }
}

impl From<&Counts> for Tally {
    fn from(c: &Counts) -> Self {
        Tally {
            sent: c.sent,
            completed: c.completed,
            failed: c.failed,
            timeouts: c.timeouts,
            abnormal: c.abnormal,
            dropped: c.dropped,
            cancelled: c.cancelled,
            good: c.good,
            input_tokens: c.input_tokens,
            output_tokens: c.output_tokens,
            server_input_tokens: c.server_input_tokens,
            server_input_requests: c.server_input_requests,
            content_chunks: c.content_chunks,
            errors: c.errors.iter().map(|(k, v)| (k.clone(), *v)).collect(),
        }
    }
}

impl From<&Tally> for Counts {
    fn from(t: &Tally) -> Self {
        Counts {
            sent: t.sent,
            completed: t.completed,
            failed: t.failed,
            timeouts: t.timeouts,
            abnormal: t.abnormal,
            dropped: t.dropped,
            cancelled: t.cancelled,
            good: t.good,
            input_tokens: t.input_tokens,
            output_tokens: t.output_tokens,
            server_input_tokens: t.server_input_tokens,
            server_input_requests: t.server_input_requests,
            content_chunks: t.content_chunks,
            errors: t.errors.iter().map(|(k, v)| (k.clone(), *v)).collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_tally_convert_both_ways_without_loss() {
        let mut c = Counts {
            sent: 1,
            completed: 2,
            failed: 3,
            timeouts: 4,
            abnormal: 5,
            dropped: 6,
            cancelled: 7,
            good: 8,
            input_tokens: 9,
            output_tokens: 10,
            server_input_tokens: 11,
            server_input_requests: 12,
            content_chunks: 13,
            ..Default::default()
        };
        c.errors.insert("http_5xx".into(), 14);
        c.errors.insert("timeout".into(), 15);
        let t = Tally::from(&c);
        assert_eq!(t.errors["timeout"], 15);
        assert_eq!(Counts::from(&t), c);
    }
}
