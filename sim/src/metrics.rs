//! What the simulator served, rendered as Prometheus text on `GET /metrics`.
//!
//! Three families of series:
//!
//! - vLLM's names (`vllm:num_requests_running`, `vllm:kv_cache_usage_perc`,
//!   `vllm:prompt_tokens_total`, `vllm:time_to_first_token_seconds`, ...) with its bucket
//!   layouts, so dashboards and Stampede's server-metrics sampler read the simulator as they
//!   read vLLM. Token counters count what was *served* (sent to the client), so they agree with
//!   the `usage` of the responses.
//! - DCGM exporter's names (`DCGM_FI_DEV_GPU_UTIL`, `DCGM_FI_DEV_FB_USED`, `DCGM_FI_DEV_FB_FREE`,
//!   `DCGM_FI_DEV_POWER_USAGE`) for the simulated GPUs, labelled `simulated="true"`: utilisation
//!   is the fraction of time the engine was stepping since the previous scrape, power rises
//!   with it and with the batch's fill, and framebuffer use is constant as vLLM reserves it all
//!   at start-up.
//! - The simulator's own health (`stampede_sim_*`): how late tokens left against their due
//!   time, so a client's error can be told from the simulator's, and the faults injected.
//!
//! Every update is a relaxed atomic operation: nothing on the token path takes a lock.

use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use stampede_prom::{Buckets, Exposition, MetricKind};
use tokio::time::Instant;

use crate::config::GpuConfig;
use crate::engine::FinishReason;
use crate::faults::FaultKind;

/// vLLM's `vllm:time_to_first_token_seconds` buckets.
const TTFT_BUCKETS: &[f64] = &[
    0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
    20.0, 40.0, 80.0, 160.0, 640.0, 2560.0,
];
/// vLLM's `vllm:inter_token_latency_seconds` buckets.
const ITL_BUCKETS: &[f64] = &[
    0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0,
    40.0, 80.0,
];
/// vLLM's `vllm:e2e_request_latency_seconds` buckets.
const E2E_BUCKETS: &[f64] = &[
    0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0, 120.0, 240.0,
    480.0, 960.0, 1920.0, 7680.0,
];
/// Token lateness buckets: fine below a millisecond, where the simulator's promise lies.
const LATENESS_BUCKETS: &[f64] = &[
    0.000_01, 0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025,
    0.1, 1.0,
];

/// A Prometheus histogram with fixed bounds and atomic buckets.
#[derive(Debug)]
struct Histogram {
    bounds: &'static [f64],
    /// One per bound, then +Inf; not cumulative (summed when rendered).
    counts: Box<[AtomicU64]>,
    sum_nanos: AtomicU64,
}

impl Histogram {
    fn new(bounds: &'static [f64]) -> Self {
        Self {
            bounds,
            counts: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum_nanos: AtomicU64::new(0),
        }
    }

    fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        let i = self.bounds.partition_point(|&b| b < secs);
        self.counts[i].fetch_add(1, Relaxed);
        let nanos = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        self.sum_nanos.fetch_add(nanos, Relaxed);
    }

    fn render(&self, out: &mut Exposition, name: &str, help: &str, labels: &[(&str, &str)]) {
        let counts: Vec<u64> = self.counts.iter().map(|c| c.load(Relaxed)).collect();
        out.family(name, MetricKind::Histogram, help);
        out.histogram(
            name,
            labels,
            &Buckets {
                bounds: self.bounds,
                counts: &counts,
                sum: self.sum_nanos.load(Relaxed) as f64 / 1e9,
            },
        );
    }
}

/// Log-linear histogram of microseconds for exact-enough quantiles: 1 us steps below 256 us,
/// then 128 steps per power of two (0.8 % wide).
#[derive(Debug)]
struct FineHistogram {
    counts: Box<[AtomicU64]>,
    max_nanos: AtomicU64,
}

const FINE_LINEAR: u64 = 256;
const FINE_SUB: u64 = 128;
const FINE_BUCKETS: usize = (FINE_LINEAR + 40 * FINE_SUB) as usize;

impl FineHistogram {
    fn new() -> Self {
        Self {
            counts: (0..FINE_BUCKETS).map(|_| AtomicU64::new(0)).collect(),
            max_nanos: AtomicU64::new(0),
        }
    }

    fn index(us: u64) -> usize {
        if us < FINE_LINEAR {
            return us as usize;
        }
        // us >= 256: its top 8 bits pick the bucket within its power of two.
        let e = 63 - u64::from(us.leading_zeros()) - 7; // >= 1
        let idx = FINE_LINEAR + (e - 1) * FINE_SUB + ((us >> e) - FINE_SUB);
        (idx as usize).min(FINE_BUCKETS - 1)
    }

    /// The largest value that lands in bucket `i`, in microseconds.
    fn upper(i: usize) -> u64 {
        let i = i as u64;
        if i < FINE_LINEAR {
            return i;
        }
        let e = (i - FINE_LINEAR) / FINE_SUB + 1;
        let sub = (i - FINE_LINEAR) % FINE_SUB + FINE_SUB;
        ((sub + 1) << e) - 1
    }

    fn observe(&self, d: Duration) {
        let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        self.counts[Self::index(us)].fetch_add(1, Relaxed);
        let nanos = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        self.max_nanos.fetch_max(nanos, Relaxed);
    }

    fn snapshot(&self) -> LatenessSnapshot {
        LatenessSnapshot {
            counts: self.counts.iter().map(|c| c.load(Relaxed)).collect(),
        }
    }

    fn summary(&self) -> LatencySummary {
        let mut s = self.snapshot().summary_since(None);
        s.max = Duration::from_nanos(self.max_nanos.load(Relaxed));
        s
    }
}

/// The token-lateness distribution at one moment, to summarise a stretch of time between
/// two snapshots.
#[derive(Debug, Clone)]
pub struct LatenessSnapshot {
    counts: Vec<u64>,
}

impl LatenessSnapshot {
    /// The distribution of the tokens sent after `earlier` and up to this snapshot (all of
    /// them with `None`); `max` is the upper bound of the highest bucket used.
    pub fn summary_since(&self, earlier: Option<&LatenessSnapshot>) -> LatencySummary {
        let counts: Vec<u64> = match earlier {
            Some(e) => self
                .counts
                .iter()
                .zip(e.counts.iter().chain(std::iter::repeat(&0)))
                .map(|(a, b)| a.saturating_sub(*b))
                .collect(),
            None => self.counts.clone(),
        };
        let total: u64 = counts.iter().sum();
        let quantile = |q: f64| {
            if total == 0 {
                return Duration::ZERO;
            }
            let rank = ((q * total as f64).ceil() as u64).clamp(1, total);
            let mut seen = 0;
            for (i, c) in counts.iter().enumerate() {
                seen += c;
                if seen >= rank {
                    return Duration::from_micros(FineHistogram::upper(i));
                }
            }
            Duration::ZERO
        };
        let max = counts
            .iter()
            .rposition(|&c| c > 0)
            .map_or(Duration::ZERO, |i| {
                Duration::from_micros(FineHistogram::upper(i))
            });
        LatencySummary {
            count: total,
            p50: quantile(0.5),
            p90: quantile(0.9),
            p99: quantile(0.99),
            p999: quantile(0.999),
            max,
        }
    }
}

/// Quantiles of a latency distribution (each an upper bound, within 1 us below 256 us and
/// 0.8 % above).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LatencySummary {
    /// Observations.
    pub count: u64,
    /// Median.
    pub p50: Duration,
    /// 90th percentile.
    pub p90: Duration,
    /// 99th percentile.
    pub p99: Duration,
    /// 99.9th percentile.
    pub p999: Duration,
    /// Largest, exact.
    pub max: Duration,
}

/// The simulator's counters, gauges and histograms, shared by every request.
#[derive(Debug)]
pub struct Metrics {
    model: String,
    gpu: GpuConfig,
    start: Instant,
    running: AtomicI64,
    waiting: AtomicI64,
    /// KV usage in millionths.
    kv_usage_ppm: AtomicU64,
    /// Fraction of the batch slots in use, in millionths (drives simulated power).
    batch_fill_ppm: AtomicU64,
    prompt_tokens: AtomicU64,
    generation_tokens: AtomicU64,
    preemptions: AtomicU64,
    finished_length: AtomicU64,
    finished_stop: AtomicU64,
    requests_received: AtomicU64,
    ttft: Histogram,
    itl: Histogram,
    e2e: Histogram,
    lateness: Histogram,
    lateness_fine: FineHistogram,
    faults: Box<[AtomicU64]>,
    /// Time the simulated GPU was busy, in nanoseconds.
    busy_nanos: AtomicU64,
    /// Busy since this instant when the deterministic preset has streams in flight.
    util: Mutex<UtilWindow>,
}

#[derive(Debug)]
struct UtilWindow {
    at: Instant,
    busy_nanos: u64,
    /// Last computed utilisation, 0..=1.
    value: f64,
    /// Deterministic preset: since when at least one request is in flight.
    busy_since: Option<Instant>,
}

/// Rendered when a scrape comes sooner than this after the previous one, the utilisation is
/// carried over, so two quick scrapes do not read a noisy sliver of time.
const UTIL_MIN_WINDOW: Duration = Duration::from_millis(100);

impl Metrics {
    /// Empty metrics for this model and its GPUs.
    pub fn new(model: &str, gpu: GpuConfig) -> Self {
        let now = Instant::now();
        Self {
            model: model.to_owned(),
            gpu,
            start: now,
            running: AtomicI64::new(0),
            waiting: AtomicI64::new(0),
            kv_usage_ppm: AtomicU64::new(0),
            batch_fill_ppm: AtomicU64::new(0),
            prompt_tokens: AtomicU64::new(0),
            generation_tokens: AtomicU64::new(0),
            preemptions: AtomicU64::new(0),
            finished_length: AtomicU64::new(0),
            finished_stop: AtomicU64::new(0),
            requests_received: AtomicU64::new(0),
            ttft: Histogram::new(TTFT_BUCKETS),
            itl: Histogram::new(ITL_BUCKETS),
            e2e: Histogram::new(E2E_BUCKETS),
            lateness: Histogram::new(LATENESS_BUCKETS),
            lateness_fine: FineHistogram::new(),
            faults: FaultKind::ALL.iter().map(|_| AtomicU64::new(0)).collect(),
            busy_nanos: AtomicU64::new(0),
            util: Mutex::new(UtilWindow {
                at: now,
                busy_nanos: 0,
                value: 0.0,
                busy_since: None,
            }),
        }
    }

    /// A completion request was accepted (valid and not failed by a fault).
    pub(crate) fn request_received(&self) {
        self.requests_received.fetch_add(1, Relaxed);
    }

    /// A request's prompt was served (its first token went out).
    pub(crate) fn prompt_served(&self, tokens: u32) {
        self.prompt_tokens.fetch_add(u64::from(tokens), Relaxed);
    }

    /// A token went out at `now`, due at `due`; `prev` is when the request's previous token
    /// went out, `received` when the request came in.
    pub(crate) fn token_sent(
        &self,
        now: Instant,
        due: Instant,
        prev: Option<Instant>,
        received: Instant,
    ) {
        self.generation_tokens.fetch_add(1, Relaxed);
        let late = now.saturating_duration_since(due);
        self.lateness.observe(late);
        self.lateness_fine.observe(late);
        match prev {
            None => self.ttft.observe(now.saturating_duration_since(received)),
            Some(p) => self.itl.observe(now.saturating_duration_since(p)),
        }
    }

    /// A request finished normally.
    pub(crate) fn request_finished(&self, reason: FinishReason, e2e: Duration) {
        match reason {
            FinishReason::Length => &self.finished_length,
            FinishReason::Stop => &self.finished_stop,
        }
        .fetch_add(1, Relaxed);
        self.e2e.observe(e2e);
    }

    /// A fault was injected.
    pub(crate) fn fault_injected(&self, kind: FaultKind) {
        if let Some(c) = self.faults.get(kind as usize) {
            c.fetch_add(1, Relaxed);
        }
    }

    /// Engine occupancy after a step.
    pub(crate) fn set_occupancy(&self, running: u32, waiting: u32, kv_usage: f64, fill: f64) {
        self.running.store(i64::from(running), Relaxed);
        self.waiting.store(i64::from(waiting), Relaxed);
        self.kv_usage_ppm
            .store((kv_usage.clamp(0.0, 1.0) * 1e6) as u64, Relaxed);
        self.batch_fill_ppm
            .store((fill.clamp(0.0, 1.0) * 1e6) as u64, Relaxed);
    }

    /// The engine stepped for `d`.
    pub(crate) fn add_busy(&self, d: Duration) {
        let nanos = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        self.busy_nanos.fetch_add(nanos, Relaxed);
    }

    /// The engine preempted sequences.
    pub(crate) fn add_preemptions(&self, n: u64) {
        self.preemptions.fetch_add(n, Relaxed);
    }

    /// Deterministic preset: a stream started (+1) or ended (-1). The GPU counts as busy while
    /// any stream is in flight.
    pub(crate) fn stream_delta(&self, delta: i64) {
        let before = self.running.fetch_add(delta, Relaxed);
        let after = before + delta;
        if (before == 0) != (after == 0) {
            let now = Instant::now();
            let mut w = self
                .util
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if after > 0 {
                w.busy_since = Some(now);
            } else if let Some(since) = w.busy_since.take() {
                self.add_busy(now - since);
            }
        }
    }

    /// How late tokens left against their due time, since start.
    pub fn token_lateness(&self) -> LatencySummary {
        self.lateness_fine.summary()
    }

    /// The token-lateness distribution now, for [`LatenessSnapshot::summary_since`].
    pub fn token_lateness_snapshot(&self) -> LatenessSnapshot {
        self.lateness_fine.snapshot()
    }

    /// Output tokens served since start.
    pub fn generation_tokens(&self) -> u64 {
        self.generation_tokens.load(Relaxed)
    }

    /// Prompt tokens served since start.
    pub fn prompt_tokens(&self) -> u64 {
        self.prompt_tokens.load(Relaxed)
    }

    /// Faults injected of this kind since start.
    pub fn faults_injected(&self, kind: FaultKind) -> u64 {
        self.faults
            .get(kind as usize)
            .map_or(0, |c| c.load(Relaxed))
    }

    fn utilisation(&self, now: Instant) -> f64 {
        let mut w = self
            .util
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut busy = self.busy_nanos.load(Relaxed);
        if let Some(since) = w.busy_since {
            // Count the stretch in flight so far, without closing it.
            busy += u64::try_from((now - since).as_nanos()).unwrap_or(0);
            if now - w.at >= UTIL_MIN_WINDOW {
                self.add_busy(now - since);
                w.busy_since = Some(now);
            }
        }
        let window = now - w.at;
        if window >= UTIL_MIN_WINDOW {
            let used = busy.saturating_sub(w.busy_nanos) as f64;
            w.value = (used / window.as_nanos() as f64).clamp(0.0, 1.0);
            w.at = now;
            w.busy_nanos = self.busy_nanos.load(Relaxed);
        }
        w.value
    }

    /// Renders every series in Prometheus text format 0.0.4, through the one writer
    /// (`stampede-prom`), which escapes label values and makes histogram buckets cumulative.
    pub fn render(&self) -> String {
        let now = Instant::now();
        let mut out = Exposition::with_capacity(16 * 1024);
        let labels: &[(&str, &str)] = &[("engine", "0"), ("model_name", &self.model)];
        let one = |out: &mut Exposition, name: &str, kind: MetricKind, help: &str, v: f64| {
            out.family(name, kind, help);
            out.sample(name, labels, v);
        };
        let gauge = |out: &mut Exposition, name: &str, help: &str, v: f64| {
            one(out, name, MetricKind::Gauge, help, v);
        };
        let counter = |out: &mut Exposition, name: &str, help: &str, v: u64| {
            one(out, name, MetricKind::Counter, help, v as f64);
        };
        let running = self.running.load(Relaxed).max(0) as f64;
        let kv = self.kv_usage_ppm.load(Relaxed) as f64 / 1e6;
        gauge(
            &mut out,
            "vllm:num_requests_running",
            "Number of requests in model execution batches.",
            running,
        );
        gauge(
            &mut out,
            "vllm:num_requests_waiting",
            "Number of requests waiting to be processed.",
            self.waiting.load(Relaxed).max(0) as f64,
        );
        gauge(
            &mut out,
            "vllm:kv_cache_usage_perc",
            "KV-cache usage. 1 means 100 percent usage.",
            kv,
        );
        gauge(
            &mut out,
            "vllm:gpu_cache_usage_perc",
            "GPU KV-cache usage. 1 means 100 percent usage (the name before vLLM 0.10).",
            kv,
        );
        counter(
            &mut out,
            "vllm:prompt_tokens_total",
            "Number of prefill tokens processed.",
            self.prompt_tokens(),
        );
        counter(
            &mut out,
            "vllm:generation_tokens_total",
            "Number of generation tokens processed.",
            self.generation_tokens(),
        );
        counter(
            &mut out,
            "vllm:num_preemptions_total",
            "Cumulative number of preemptions from the engine.",
            self.preemptions.load(Relaxed),
        );
        out.family(
            "vllm:request_success_total",
            MetricKind::Counter,
            "Count of successfully processed requests.",
        );
        for (reason, c) in [
            ("length", &self.finished_length),
            ("stop", &self.finished_stop),
        ] {
            let with_reason = [labels[0], labels[1], ("finished_reason", reason)];
            out.sample(
                "vllm:request_success_total",
                &with_reason,
                c.load(Relaxed) as f64,
            );
        }
        self.ttft.render(
            &mut out,
            "vllm:time_to_first_token_seconds",
            "Histogram of time to first token in seconds.",
            labels,
        );
        self.itl.render(
            &mut out,
            "vllm:inter_token_latency_seconds",
            "Histogram of inter-token latency in seconds.",
            labels,
        );
        self.e2e.render(
            &mut out,
            "vllm:e2e_request_latency_seconds",
            "Histogram of end to end request latency in seconds.",
            labels,
        );

        self.render_gpus(&mut out, now);

        let sim: &[(&str, &str)] = &[("model_name", &self.model)];
        self.lateness.render(
            &mut out,
            "stampede_sim_token_lateness_seconds",
            "How late each token left the simulator against its due time.",
            sim,
        );
        out.family(
            "stampede_sim_requests_total",
            MetricKind::Counter,
            "Completion requests accepted.",
        );
        out.sample(
            "stampede_sim_requests_total",
            sim,
            self.requests_received.load(Relaxed) as f64,
        );
        out.family(
            "stampede_sim_faults_injected_total",
            MetricKind::Counter,
            "Faults injected, by kind.",
        );
        for kind in FaultKind::ALL {
            out.sample(
                "stampede_sim_faults_injected_total",
                &[sim[0], ("kind", kind.name())],
                self.faults_injected(kind) as f64,
            );
        }
        out.family(
            "stampede_sim_uptime_seconds",
            MetricKind::Gauge,
            "Seconds since the simulator started.",
        );
        out.sample(
            "stampede_sim_uptime_seconds",
            sim,
            (now - self.start).as_secs_f64(),
        );
        out.into_string()
    }

    fn render_gpus(&self, out: &mut Exposition, now: Instant) {
        let util = self.utilisation(now);
        let fill = self.batch_fill_ppm.load(Relaxed) as f64 / 1e6;
        let g = &self.gpu;
        // A busy GPU draws from about 60 % of its headroom with a tiny batch to all of it
        // with a full one; idle draws the idle figure.
        let power = g.power_idle_w + (g.power_max_w - g.power_idle_w) * util * (0.6 + 0.4 * fill);
        let free = g.memory_mib.saturating_sub(g.used_mib);
        let series: [(&str, &str, f64); 4] = [
            (
                "DCGM_FI_DEV_GPU_UTIL",
                "GPU utilization (in %). Simulated by stampede sim.",
                (util * 100.0).round(),
            ),
            (
                "DCGM_FI_DEV_FB_USED",
                "Framebuffer memory used (in MiB). Simulated by stampede sim.",
                g.used_mib as f64,
            ),
            (
                "DCGM_FI_DEV_FB_FREE",
                "Framebuffer memory free (in MiB). Simulated by stampede sim.",
                free as f64,
            ),
            (
                "DCGM_FI_DEV_POWER_USAGE",
                "Power draw (in W). Simulated by stampede sim.",
                (power * 1000.0).round() / 1000.0,
            ),
        ];
        // The labels DCGM's exporter puts on each GPU's series.
        let gpus: Vec<[String; 3]> = (0..g.count)
            .map(|i| {
                [
                    i.to_string(),
                    format!("GPU-5153e000-0000-4000-8000-{i:012}"),
                    format!("nvidia{i}"),
                ]
            })
            .collect();
        for (name, help, value) in series {
            out.family(name, MetricKind::Gauge, help);
            for [gpu, uuid, device] in &gpus {
                let labels = [
                    ("gpu", gpu.as_str()),
                    ("UUID", uuid.as_str()),
                    ("device", device.as_str()),
                    ("modelName", g.name.as_str()),
                    ("Hostname", "stampede-sim"),
                    ("simulated", "true"),
                ];
                out.sample(name, &labels, value);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fine_histogram_buckets_are_contiguous_and_tight() {
        let mut prev_upper = None;
        for i in 0..FINE_BUCKETS - 1 {
            let up = FineHistogram::upper(i);
            assert_eq!(FineHistogram::index(up), i, "bucket {i}");
            assert_eq!(FineHistogram::index(up + 1), i + 1, "bucket {i}");
            if let Some(p) = prev_upper {
                assert!(up > p);
            }
            prev_upper = Some(up);
        }
        assert_eq!(FineHistogram::index(u64::MAX), FINE_BUCKETS - 1);
    }

    #[test]
    fn quantiles_come_out_of_the_fine_histogram() {
        let h = FineHistogram::new();
        for us in 1..=1000u64 {
            h.observe(Duration::from_micros(us));
        }
        let s = h.summary();
        assert_eq!(s.count, 1000);
        assert!((500..=504).contains(&s.p50.as_micros()), "{s:?}");
        let p99 = s.p99.as_micros() as f64;
        assert!((990.0..=1000.0 * 1.008).contains(&p99), "{s:?}");
        assert_eq!(s.max, Duration::from_micros(1000));
    }

    #[test]
    fn histogram_renders_cumulative_buckets() {
        let h = Histogram::new(&[0.1, 1.0]);
        h.observe(Duration::from_millis(50));
        h.observe(Duration::from_millis(100)); // le is inclusive
        h.observe(Duration::from_secs(5));
        let mut e = Exposition::new();
        h.render(&mut e, "x", "help", &[("a", "b")]);
        let out = e.into_string();
        assert!(out.contains("x_bucket{a=\"b\",le=\"0.1\"} 2\n"), "{out}");
        assert!(out.contains("x_bucket{a=\"b\",le=\"1\"} 2\n"), "{out}");
        assert!(out.contains("x_bucket{a=\"b\",le=\"+Inf\"} 3\n"), "{out}");
        assert!(out.contains("x_count{a=\"b\"} 3\n"), "{out}");
        assert!(out.contains("x_sum{a=\"b\"} 5.15\n"), "{out}");
    }

    #[test]
    fn the_exposition_parses_with_every_family_typed_once_and_labels_escaped() {
        use prom_text_format_parser::{Scrape, Type};
        let gpu = GpuConfig {
            name: "H100 \\ SXM".into(),
            count: 2,
            memory_mib: 81_559,
            used_mib: 72_000,
            power_idle_w: 70.0,
            power_max_w: 700.0,
        };
        let m = Metrics::new("a \"quoted\" model", gpu);
        m.request_finished(FinishReason::Stop, Duration::from_millis(700));
        let text = m.render();
        assert!(
            text.contains(
                "vllm:request_success_total{engine=\"0\",model_name=\"a \\\"quoted\\\" model\",finished_reason=\"stop\"} 1\n"
            ),
            "{text}"
        );
        assert!(
            text.contains("vllm:e2e_request_latency_seconds_bucket{engine=\"0\",model_name=\"a \\\"quoted\\\" model\",le=\"0.8\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains(
                "modelName=\"H100 \\\\ SXM\",Hostname=\"stampede-sim\",simulated=\"true\"} 72000\n"
            ),
            "{text}"
        );
        let scrape = Scrape::parse(&text).unwrap_or_else(|e| panic!("{e:?}\n{text}"));
        let mut names: Vec<&str> = scrape.metrics.iter().map(|f| f.name.as_str()).collect();
        assert!(scrape.metrics.iter().all(|f| f.kind != Type::Untyped));
        let n = names.len();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), n, "a family is written twice");
    }
}
