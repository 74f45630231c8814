//! Server metrics: each sample, GET the Prometheus endpoints (a server's `/metrics`, a DCGM
//! exporter), parse the text format with a real parser (`prom_text_format_parser`), keep the
//! known series under common names and the plan's own by name, and turn counters into rates.
//!
//! Bad input never stops a run: an endpoint that cannot be reached is said once and tried again
//! with a growing pause; lines the parser cannot read are counted and skipped, and the rest of
//! the scrape is kept.

use std::collections::HashMap;
use std::time::Duration;

use futures_util::future::join_all;
use prom_text_format_parser::{ScrapeParseError, Type, ValueType, parse_scrape};
use stampede_common::proto::ServerSeries;
use stampede_common::server_metrics::{Combine, KNOWN};
use stampede_common::units::error_chain;
use tokio::time::Instant;

use super::Note;

/// One series of a scrape over all its label sets.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Family {
    pub sum: f64,
    pub max: f64,
    pub sets: u32,
    pub counter: bool,
}

impl Family {
    fn add(&mut self, v: f64) {
        self.sum += v;
        self.max = if self.sets == 0 { v } else { self.max.max(v) };
        self.sets += 1;
    }

    fn combined(&self, how: Combine) -> f64 {
        match how {
            Combine::Sum => self.sum,
            Combine::Mean => self.sum / f64::from(self.sets.max(1)),
            Combine::Max => self.max,
        }
    }
}

/// A scrape, parsed: each series by name, and how many lines were skipped.
#[derive(Debug, Default)]
pub struct Parsed {
    pub families: HashMap<String, Family>,
    pub malformed_lines: u32,
}

/// Parses Prometheus text. Plain series keep their name; a histogram or summary gives its
/// `_sum` and `_count` (both counters). Lines the parser cannot read are counted and skipped.
pub fn parse(text: &str) -> Parsed {
    let normalised;
    let text = if text.contains('\r') {
        normalised = text.replace("\r\n", "\n");
        normalised.as_str()
    } else {
        text
    };
    let mut parsed = Parsed::default();
    if text.trim().is_empty() {
        return parsed;
    }
    let (mut metrics, error) = parse_scrape(text);
    if matches!(error, Some(ScrapeParseError::Parse(_))) {
        // Keep the lines the parser reads on their own, and parse those again.
        let mut kept = String::with_capacity(text.len());
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            let one = format!("{line}\n");
            if matches!(parse_scrape(&one).1, Some(ScrapeParseError::Parse(_))) {
                parsed.malformed_lines += 1;
            } else {
                kept.push_str(&one);
            }
        }
        metrics = if kept.is_empty() {
            Vec::new()
        } else {
            match parse_scrape(&kept) {
                (_, Some(ScrapeParseError::Parse(_))) => {
                    parsed.malformed_lines = text.lines().count() as u32;
                    Vec::new()
                }
                (m, _) => m,
            }
        };
    }
    // Collect errors (a HELP or TYPE with no sample, as servers print for series not yet
    // observed) are not malformed text: nothing is lost.
    for m in metrics {
        for s in &m.samples {
            let Ok(v) = s.value.value.parse::<f64>() else {
                parsed.malformed_lines += 1;
                continue;
            };
            if !v.is_finite() {
                continue;
            }
            let (name, counter) = match (m.kind, s.value.value_type) {
                (Type::Histogram | Type::Summary, ValueType::Sum) => {
                    (format!("{}_sum", m.name), true)
                }
                (Type::Histogram | Type::Summary, ValueType::Count) => {
                    (format!("{}_count", m.name), true)
                }
                // Buckets and quantiles are not kept.
                (Type::Histogram | Type::Summary, ValueType::Sample) => continue,
                (Type::Counter, _) => (m.name.clone(), true),
                (_, _) => (m.name.clone(), m.name.ends_with("_total")),
            };
            parsed
                .families
                .entry(name)
                .or_insert(Family {
                    sum: 0.0,
                    max: 0.0,
                    sets: 0,
                    counter,
                })
                .add(v);
        }
    }
    parsed
}

/// Counters' last totals, to turn them into rates.
#[derive(Debug, Default)]
pub struct Rates {
    last: HashMap<String, (f64, Instant)>,
}

impl Rates {
    /// Increase per second of `key` since its last total; `None` the first time and after a
    /// reset (a restarted server starts its counters again from 0).
    pub fn rate(&mut self, key: &str, total: f64, now: Instant) -> Option<f64> {
        let previous = self.last.insert(key.to_string(), (total, now));
        let (before, at) = previous?;
        let secs = now.saturating_duration_since(at).as_secs_f64();
        (total >= before && secs > 0.0).then(|| (total - before) / secs)
    }
}

/// The series a sample keeps from a parsed scrape: the known ones under their common names,
/// then `extra` by their own names.
pub fn select(
    families: &HashMap<String, Family>,
    extra: &[String],
    rates: &mut Rates,
    now: Instant,
) -> Vec<ServerSeries> {
    let mut out: Vec<ServerSeries> = Vec::new();
    for k in KNOWN {
        if out.iter().any(|s| s.name == k.name) {
            continue;
        }
        let Some(f) = families.get(k.source) else {
            continue;
        };
        let value = f.combined(k.combine) * k.scale;
        out.push(ServerSeries {
            name: k.name.to_string(),
            source: k.source.to_string(),
            value,
            counter: k.counter,
            rate_per_s: if k.counter {
                rates.rate(k.name, value, now)
            } else {
                None
            },
        });
    }
    for name in extra {
        let Some(f) = families.get(name) else {
            continue;
        };
        out.push(ServerSeries {
            name: name.clone(),
            source: name.clone(),
            value: f.sum,
            counter: f.counter,
            rate_per_s: if f.counter {
                rates.rate(&format!("series {name}"), f.sum, now)
            } else {
                None
            },
        });
    }
    out
}

/// One endpoint and what was said about it.
struct Endpoint {
    url: String,
    failures: u32,
    retry_at: Option<Instant>,
}

/// What one round of scrapes gave.
#[derive(Debug, Default)]
pub struct ScrapeOutcome {
    pub series: Vec<ServerSeries>,
    pub failures: u32,
    pub malformed_lines: u32,
    pub notes: Vec<Note>,
}

/// Longest pause between tries of an endpoint that does not answer.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// Scrapes a share's endpoints; lives on the monitor thread.
pub struct Scraper {
    client: reqwest::Client,
    endpoints: Vec<Endpoint>,
    extra: Vec<String>,
    timeout: Duration,
    interval: Duration,
    rates: Rates,
}

impl Scraper {
    /// A scraper of `urls` every `interval`; each GET may take 40% of it (within 0.2..5 s), so
    /// a sample is seldom late for its interval's report.
    ///
    /// # Errors
    /// When the HTTP client cannot be built.
    pub fn new(urls: &[String], extra: &[String], interval: Duration) -> Result<Self, String> {
        let timeout = interval
            .mul_f64(0.4)
            .clamp(Duration::from_millis(200), Duration::from_secs(5));
        let client = reqwest::Client::builder()
            .connect_timeout(timeout)
            .timeout(timeout)
            // Scrapes stay on the endpoints named (and allowed): no redirect is followed.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| error_chain(&e))?;
        Ok(Scraper {
            client,
            endpoints: urls
                .iter()
                .map(|u| Endpoint {
                    url: u.clone(),
                    failures: 0,
                    retry_at: None,
                })
                .collect(),
            extra: extra.to_vec(),
            timeout,
            interval,
            rates: Rates::default(),
        })
    }

    /// Scrapes every endpoint that is not waiting out a failure.
    pub async fn scrape(&mut self) -> ScrapeOutcome {
        let now = Instant::now();
        let due: Vec<usize> = (0..self.endpoints.len())
            .filter(|&i| self.endpoints[i].retry_at.is_none_or(|t| t <= now))
            .collect();
        let client = &self.client;
        let timeout = self.timeout;
        let endpoints = &self.endpoints;
        let bodies = join_all(
            due.iter()
                .map(|&i| fetch(client, &endpoints[i].url, timeout)),
        )
        .await;
        let at = Instant::now();
        let mut outcome = ScrapeOutcome::default();
        let mut families: HashMap<String, Family> = HashMap::new();
        for (i, body) in due.into_iter().zip(bodies) {
            let e = &mut self.endpoints[i];
            match body {
                Ok(text) => {
                    if e.failures > 0 {
                        outcome.notes.push(Note::new(
                            format!("server metrics {} back", e.url),
                            format!("server metrics {}: answering again", e.url),
                        ));
                    }
                    e.failures = 0;
                    e.retry_at = None;
                    let parsed = parse(&text);
                    outcome.malformed_lines += parsed.malformed_lines;
                    for (name, f) in parsed.families {
                        families.entry(name).or_insert(f);
                    }
                }
                Err(why) => {
                    outcome.failures += 1;
                    if e.failures == 0 {
                        outcome.notes.push(Note::new(
                            format!("server metrics {} failing", e.url),
                            format!(
                                "server metrics {}: {why}; retrying with backoff while the run goes on (set [monitor] server_metrics = \"off\" to stop)",
                                e.url
                            ),
                        ));
                    }
                    e.failures += 1;
                    let pause = self
                        .interval
                        .saturating_mul(1 << (e.failures - 1).min(8))
                        .min(MAX_BACKOFF);
                    e.retry_at = Some(at + pause);
                }
            }
        }
        outcome.series = select(&families, &self.extra, &mut self.rates, at);
        outcome
    }
}

async fn fetch(client: &reqwest::Client, url: &str, timeout: Duration) -> Result<String, String> {
    let resp = client
        .get(url)
        .header("accept", "text/plain;version=0.0.4")
        .timeout(timeout)
        .send()
        .await
        .map_err(|e| format!("unreachable: {}", error_chain(&e)))?;
    let status = resp.status();
    if !status.is_success() {
        return Err(format!("answered {status}"));
    }
    resp.text()
        .await
        .map_err(|e| format!("the answer broke off: {}", error_chain(&e)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use stampede_common::server_metrics::MIB;

    const VLLM: &str = r#"# HELP vllm:num_requests_running Number of requests in model execution batches.
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{engine="0",model_name="m"} 3.0
vllm:num_requests_running{engine="1",model_name="m"} 2.0
# HELP vllm:num_requests_waiting Number of requests waiting to be processed.
# TYPE vllm:num_requests_waiting gauge
vllm:num_requests_waiting{engine="0",model_name="m"} 7.0
# HELP vllm:kv_cache_usage_perc KV-cache usage. 1 means 100 percent usage.
# TYPE vllm:kv_cache_usage_perc gauge
vllm:kv_cache_usage_perc{engine="0",model_name="m"} 0.5
vllm:kv_cache_usage_perc{engine="1",model_name="m"} 0.25
# HELP vllm:num_preemptions_total Cumulative number of preemptions from the engine.
# TYPE vllm:num_preemptions_total counter
vllm:num_preemptions_total{engine="0",model_name="m"} 4.0
# HELP vllm:request_success_total Count of successfully processed requests.
# TYPE vllm:request_success_total counter
# HELP vllm:time_to_first_token_seconds Histogram of time to first token in seconds.
# TYPE vllm:time_to_first_token_seconds histogram
vllm:time_to_first_token_seconds_bucket{le="0.1",model_name="m"} 2.0
vllm:time_to_first_token_seconds_bucket{le="+Inf",model_name="m"} 3.0
vllm:time_to_first_token_seconds_count{model_name="m"} 3.0
vllm:time_to_first_token_seconds_sum{model_name="m"} 0.42
# HELP DCGM_FI_DEV_FB_USED Framebuffer memory used (in MiB).
# TYPE DCGM_FI_DEV_FB_USED gauge
DCGM_FI_DEV_FB_USED{gpu="0",modelName="NVIDIA H100 80GB HBM3"} 1024
DCGM_FI_DEV_FB_USED{gpu="1",modelName="NVIDIA H100 80GB HBM3"} 1024
process_open_fds 12
"#;

    #[test]
    fn series_are_summed_over_label_sets_and_histograms_give_sum_and_count() {
        let p = parse(VLLM);
        assert_eq!(p.malformed_lines, 0);
        let f = |n: &str| p.families.get(n).copied().unwrap_or_else(|| panic!("{n}"));
        assert_eq!(
            (
                f("vllm:num_requests_running").sum,
                f("vllm:num_requests_running").sets
            ),
            (5.0, 2)
        );
        assert!(f("vllm:num_preemptions_total").counter);
        assert!(!f("vllm:num_requests_waiting").counter);
        assert_eq!(f("vllm:time_to_first_token_seconds_count").sum, 3.0);
        assert!(f("vllm:time_to_first_token_seconds_sum").counter);
        assert!(
            !p.families
                .contains_key("vllm:time_to_first_token_seconds_bucket")
        );
        // A TYPE with no sample is not malformed, and gives no series.
        assert!(!p.families.contains_key("vllm:request_success_total"));
        assert_eq!(f("process_open_fds").sum, 12.0);
    }

    #[test]
    fn known_series_take_their_common_names_and_units() {
        let p = parse(VLLM);
        let mut rates = Rates::default();
        let t0 = Instant::now();
        let extra = vec!["process_open_fds".to_string(), "absent_series".to_string()];
        let s = select(&p.families, &extra, &mut rates, t0);
        let get = |n: &str| {
            s.iter()
                .find(|x| x.name == n)
                .unwrap_or_else(|| panic!("{n}: {s:?}"))
        };
        assert_eq!(get("requests_running").value, 5.0);
        assert_eq!(get("requests_running").source, "vllm:num_requests_running");
        assert_eq!(get("requests_waiting").value, 7.0);
        assert_eq!(get("kv_cache_usage_pct").value, 37.5);
        assert_eq!(get("gpu_mem_used_bytes").value, 2048.0 * MIB);
        assert_eq!(get("process_open_fds").value, 12.0);
        assert!(s.iter().all(|x| x.name != "absent_series"));
        // The first scrape has no rate; the next has the increase per second.
        assert_eq!(get("preemptions").rate_per_s, None);
        let later = VLLM.replace(
            "vllm:num_preemptions_total{engine=\"0\",model_name=\"m\"} 4.0",
            "vllm:num_preemptions_total{engine=\"0\",model_name=\"m\"} 10.0",
        );
        let s2 = select(
            &parse(&later).families,
            &[],
            &mut rates,
            t0 + Duration::from_secs(2),
        );
        let p2 = s2.iter().find(|x| x.name == "preemptions").unwrap();
        assert_eq!(p2.rate_per_s, Some(3.0));
        // A reset gives no rate rather than a negative one.
        let s3 = select(
            &parse(VLLM).families,
            &[],
            &mut rates,
            t0 + Duration::from_secs(3),
        );
        assert_eq!(
            s3.iter()
                .find(|x| x.name == "preemptions")
                .unwrap()
                .rate_per_s,
            None
        );
    }

    #[test]
    fn malformed_lines_are_counted_and_the_rest_kept() {
        let text = format!(
            "{VLLM}this line is not a metric\nvllm:num_requests_waiting{{engine=\"2\" 9\n{{}} 5\n"
        );
        let p = parse(&text);
        assert_eq!(p.malformed_lines, 3);
        assert_eq!(p.families["vllm:num_requests_running"].sum, 5.0);
        let garbage = parse("<html>502 Bad Gateway</html>\n");
        assert_eq!(garbage.malformed_lines, 1);
        assert!(garbage.families.is_empty());
        assert!(parse("").families.is_empty());
        let crlf = parse("up 1\r\nother_total 2\r\n");
        assert_eq!(crlf.malformed_lines, 0);
        assert!(crlf.families["other_total"].counter);
    }

    #[tokio::test]
    async fn an_unreachable_endpoint_is_said_once_and_tried_again_later() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/metrics", listener.local_addr().unwrap());
        drop(listener);
        let mut s =
            Scraper::new(std::slice::from_ref(&url), &[], Duration::from_millis(100)).unwrap();
        let first = s.scrape().await;
        assert_eq!(first.failures, 1);
        assert_eq!(first.notes.len(), 1, "{:?}", first.notes);
        let note = &first.notes[0].text;
        assert!(
            note.contains(&url) && note.contains("unreachable"),
            "{note}"
        );
        // Within the backoff nothing is tried, and nothing more is said.
        let second = s.scrape().await;
        assert_eq!((second.failures, second.notes.len()), (0, 0));
        tokio::time::sleep(Duration::from_millis(120)).await;
        let third = s.scrape().await;
        assert_eq!((third.failures, third.notes.len()), (1, 0));
        // The pause doubles: 200 ms now.
        tokio::time::sleep(Duration::from_millis(120)).await;
        assert_eq!(s.scrape().await.failures, 0);
    }
}
