//! The measurements on the wire: histogram bundles as V2-encoded bytes, and the interval
//! counters, which add up.

use hdrhistogram::Histogram;
use hdrhistogram::serialization::{Deserializer, Serializer, V2Serializer};

use super::{Counts, ErrorSample, Histograms};
use crate::error_sample::{self, redact_message, sample_key};
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

/// Keeps the first message of a failed request's class and HTTP status: counts every failure,
/// and redacts the message only for the first of its key (once per class per interval).
/// `sent_offset_us` is when it was sent, since the share's start. Cancellations say nothing
/// about the server and are left out.
pub fn note_error(c: &mut Counts, t: &RequestTimeline, sent_offset_us: u64) {
    let Some(class) = t.error.filter(|e| *e != ErrorClass::Cancelled) else {
        return;
    };
    let status = t.http_status.filter(|_| class.is_http());
    let key = sample_key(class.as_str(), status);
    let sample = c.error_samples.entry(key).or_insert_with(|| ErrorSample {
        class: class.as_str().to_string(),
        http_status: status.map_or(0, u32::from),
        count: 0,
        first_sent_offset_us: sent_offset_us,
        message: redact_message(t.error_detail.as_deref().unwrap_or_default()),
    });
    sample.count += 1;
    if sent_offset_us < sample.first_sent_offset_us {
        sample.first_sent_offset_us = sent_offset_us;
        sample.message = redact_message(t.error_detail.as_deref().unwrap_or_default());
    }
}

/// Merges `other` into `mine`: the counts add, and the earlier first failure's message wins
/// (on a tie, the smaller message, so a merge gives one answer in any order).
fn merge_sample(mine: &mut ErrorSample, other: &ErrorSample) {
    mine.count += other.count;
    let earlier =
        (other.first_sent_offset_us, &other.message) < (mine.first_sent_offset_us, &mine.message);
    if earlier {
        mine.first_sent_offset_us = other.first_sent_offset_us;
        mine.message.clone_from(&other.message);
    }
}

impl From<&ErrorSample> for error_sample::ErrorSample {
    fn from(s: &ErrorSample) -> Self {
        error_sample::ErrorSample {
            class: s.class.clone(),
            http_status: u16::try_from(s.http_status).ok().filter(|&h| h > 0),
            count: s.count,
            message: s.message.clone(),
        }
    }
}

impl From<&error_sample::ErrorSample> for ErrorSample {
    /// A merged sample on the wire again (the live view): its instant is no longer kept.
    fn from(s: &error_sample::ErrorSample) -> Self {
        ErrorSample {
            class: s.class.clone(),
            http_status: s.http_status.map_or(0, u32::from),
            count: s.count,
            first_sent_offset_us: 0,
            message: s.message.clone(),
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
        for (key, sample) in &o.error_samples {
            match self.error_samples.get_mut(key) {
                Some(mine) => merge_sample(mine, sample),
                None => {
                    self.error_samples.insert(key.clone(), sample.clone());
                }
            }
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
            // The wire's map has no order; the tally's list is in key order.
            error_samples: c
                .error_samples
                .iter()
                .collect::<std::collections::BTreeMap<_, _>>()
                .into_values()
                .map(Into::into)
                .collect(),
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
            error_samples: t
                .error_samples
                .iter()
                .map(|s| (s.label(), ErrorSample::from(s)))
                .collect(),
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
        c.error_samples.insert(
            "http_5xx 503".to_string(),
            sample("http_5xx", 503, 14, 0, "busy"),
        );
        c.error_samples
            .insert("connect".to_string(), sample("connect", 0, 1, 0, "refused"));
        let t = Tally::from(&c);
        assert_eq!(t.errors["timeout"], 15);
        let labels: Vec<String> = t.error_samples.iter().map(|s| s.label()).collect();
        assert_eq!(labels, ["connect", "http_5xx 503"]);
        assert_eq!(t.error_samples[1].http_status, Some(503));
        assert_eq!(t.error_samples[0].http_status, None);
        assert_eq!(Counts::from(&t), c);
    }

    fn sample(class: &str, status: u32, count: u64, at_us: u64, message: &str) -> ErrorSample {
        ErrorSample {
            class: class.into(),
            http_status: status,
            count,
            first_sent_offset_us: at_us,
            message: message.into(),
        }
    }

    fn failure(
        t0: tokio::time::Instant,
        class: ErrorClass,
        status: Option<u16>,
        detail: &str,
    ) -> RequestTimeline {
        let mut t = RequestTimeline::new(0, t0, t0, 10);
        t.error = Some(class);
        t.http_status = status;
        t.error_detail = Some(detail.into());
        t
    }

    #[test]
    fn the_first_failure_of_each_class_and_status_is_kept_redacted_with_its_count() {
        let t0 = tokio::time::Instant::now();
        let mut c = Counts::default();
        let key_401 = "HTTP 401 Unauthorized Incorrect API key provided: sk-live1234abcd";
        let cases = [
            (
                ErrorClass::Http4xx,
                Some(401),
                "HTTP 401 Unauthorized second",
                500,
            ),
            (ErrorClass::Http4xx, Some(401), key_401, 100),
            (
                ErrorClass::Http4xx,
                Some(404),
                "HTTP 404 Not Found no model",
                200,
            ),
            (
                ErrorClass::Http4xx,
                Some(401),
                "HTTP 401 Unauthorized later",
                900,
            ),
            (ErrorClass::Connect, None, "connection refused", 300),
            (ErrorClass::Cancelled, None, "cancelled", 50),
            // A status on a class that is not an HTTP one is not part of its key.
            (ErrorClass::Malformed, Some(200), "bad SSE", 400),
        ];
        for (class, status, detail, at) in cases {
            note_error(&mut c, &failure(t0, class, status, detail), at);
        }
        let got: std::collections::BTreeMap<String, ErrorSample> =
            c.error_samples.into_iter().collect();
        let redacted = "HTTP 401 Unauthorized Incorrect API key provided: sk-[redacted]";
        let want: std::collections::BTreeMap<String, ErrorSample> = [
            (
                "connect".to_string(),
                sample("connect", 0, 1, 300, "connection refused"),
            ),
            (
                "http_4xx 401".to_string(),
                sample("http_4xx", 401, 3, 100, redacted),
            ),
            (
                "http_4xx 404".to_string(),
                sample("http_4xx", 404, 1, 200, "HTTP 404 Not Found no model"),
            ),
            (
                "malformed".to_string(),
                sample("malformed", 0, 1, 400, "bad SSE"),
            ),
        ]
        .into();
        assert_eq!(got, want);
    }

    #[test]
    fn merging_adds_counts_and_keeps_the_earliest_message_in_any_order() {
        let a = Counts {
            error_samples: [
                (
                    "http_4xx 401".to_string(),
                    sample("http_4xx", 401, 3, 2_000, "from a"),
                ),
                (
                    "connect".to_string(),
                    sample("connect", 0, 1, 10, "refused"),
                ),
            ]
            .into(),
            ..Default::default()
        };
        let b = Counts {
            error_samples: [
                (
                    "http_4xx 401".to_string(),
                    sample("http_4xx", 401, 2, 1_000, "from b"),
                ),
                (
                    "http_5xx 500".to_string(),
                    sample("http_5xx", 500, 4, 5, "boom"),
                ),
            ]
            .into(),
            ..Default::default()
        };
        let want: std::collections::HashMap<String, ErrorSample> = [
            (
                "http_4xx 401".to_string(),
                sample("http_4xx", 401, 5, 1_000, "from b"),
            ),
            (
                "connect".to_string(),
                sample("connect", 0, 1, 10, "refused"),
            ),
            (
                "http_5xx 500".to_string(),
                sample("http_5xx", 500, 4, 5, "boom"),
            ),
        ]
        .into();
        let mut ab = a.clone();
        ab += &b;
        let mut ba = b.clone();
        ba += &a;
        assert_eq!(ab.error_samples, want);
        assert_eq!(ba.error_samples, want);
        // A tie on the instant goes to the smaller message, whichever side it is on.
        let tie = |m: &str| Counts {
            error_samples: [("empty".to_string(), sample("empty", 0, 1, 7, m))].into(),
            ..Default::default()
        };
        for (x, y) in [("a", "b"), ("b", "a")] {
            let mut m = tie(x);
            m += &tie(y);
            assert_eq!(m.error_samples["empty"], sample("empty", 0, 2, 7, "a"));
        }
    }
}
