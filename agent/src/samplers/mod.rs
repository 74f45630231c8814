//! The samplers: what an agent reads beside its load, on one thread of their own, so a slow
//! driver call or scrape never delays a request.
//!
//! - [`gpu`]: each GPU through NVML, loaded once per agent ([`MonitorEnv`]).
//! - [`host`]: the host's CPU (all cores, each core), memory and network bytes.
//! - [`process`]: one process's CPU and memory: the agent itself, the target's server.
//! - [`prometheus`]: the server's Prometheus metrics, parsed, mapped and turned into rates.
//!
//! A share's monitor thread takes one [`ResourceSample`] in the middle of every sampling
//! interval (aligned to the share's start, so each interval report usually carries exactly
//! one) and hands it to the recorder through a bounded channel that the recorder drains once
//! per interval. The request path never touches either. The thread stops at the end of the
//! step, on a stop, or when the recorder is gone.

pub mod gpu;
pub mod host;
pub mod process;
pub mod prometheus;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use stampede_common::proto::{MonitorConfig, ResourceSample};
use stampede_common::units::micros;
use sysinfo::System;
use tokio::sync::mpsc;
use tokio::sync::mpsc::error::TrySendError;
use tokio::time::{Instant, sleep_until};
use tokio_util::sync::CancellationToken;

use self::gpu::Gpus;
use self::host::HostSampler;
use self::process::{ProcessSpec, ProcessWatch};
use self::prometheus::Scraper;

/// Samples buffered between the monitor thread and the recorder.
pub const SAMPLE_QUEUE: usize = 256;

/// Shortest time between samples.
pub const MIN_SAMPLE_INTERVAL: Duration = Duration::from_millis(50);

/// Something worth saying once per run: an endpoint that cannot be reached, a process that
/// exited. Notes with the same key are said once per run, however many steps meet them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    /// What the note is about and which way (`server metrics URL failing`).
    pub key: String,
    pub text: String,
}

impl Note {
    pub fn new(key: String, text: String) -> Self {
        Note { key, text }
    }
}

/// Runs whose notes are remembered; the oldest is forgotten past this.
const REMEMBERED_RUNS: usize = 16;

/// The note keys already said in one run.
type SaidNotes = Arc<Mutex<HashSet<String>>>;

/// The note keys said in each recent run, with the runs in the order they came.
#[derive(Debug, Default)]
struct RunNotes {
    runs: HashMap<String, SaidNotes>,
    order: Vec<String>,
}

/// What the agent's samplers share across shares: NVML, loaded once, and what was said.
#[derive(Debug, Clone, Default)]
pub struct MonitorEnv {
    pub gpus: Option<Arc<Gpus>>,
    /// Why there is no GPU, when there is none.
    pub gpu_unavailable: Option<String>,
    /// What was said in each recent run.
    said: Arc<Mutex<RunNotes>>,
}

impl MonitorEnv {
    /// Loads NVML and lists this host's GPUs, or keeps the reason there are none.
    pub fn detect() -> Self {
        match Gpus::detect() {
            Ok(g) => {
                tracing::info!(gpus = g.inventory().len(), "NVML loaded");
                MonitorEnv {
                    gpus: Some(Arc::new(g)),
                    ..MonitorEnv::default()
                }
            }
            Err(why) => {
                tracing::info!("GPU: not available: {why}");
                MonitorEnv {
                    gpu_unavailable: Some(why),
                    ..MonitorEnv::default()
                }
            }
        }
    }

    /// The notes already said in run `run_id`, shared by its shares' monitor threads.
    fn said(&self, run_id: &str) -> SaidNotes {
        let mut notes = self.said.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(s) = notes.runs.get(run_id) {
            return Arc::clone(s);
        }
        if notes.order.len() >= REMEMBERED_RUNS {
            let oldest = notes.order.remove(0);
            notes.runs.remove(&oldest);
        }
        notes.order.push(run_id.to_string());
        let s = SaidNotes::default();
        notes.runs.insert(run_id.to_string(), Arc::clone(&s));
        s
    }
}

/// What a share asks the agent to sample, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct MonitorSettings {
    pub gpu: bool,
    pub server_metrics_urls: Vec<String>,
    pub series: Vec<String>,
    pub target: Option<ProcessSpec>,
    pub interval: Duration,
}

impl MonitorSettings {
    /// The settings of a share whose reports come every `share_interval`. With no config, the
    /// host and the agent itself are sampled once per report.
    ///
    /// # Errors
    /// The field and what is wrong with it.
    pub fn from_proto(
        cfg: Option<&MonitorConfig>,
        share_interval: Duration,
    ) -> Result<Self, (&'static str, String)> {
        let Some(cfg) = cfg else {
            return Ok(MonitorSettings {
                gpu: false,
                server_metrics_urls: Vec::new(),
                series: Vec::new(),
                target: None,
                interval: share_interval,
            });
        };
        for url in &cfg.server_metrics_urls {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err((
                    "monitor.server_metrics_urls",
                    format!("expected an http:// or https:// URL, got {url:?}"),
                ));
            }
        }
        let interval = if cfg.sample_interval_us == 0 {
            share_interval
        } else {
            Duration::from_micros(cfg.sample_interval_us)
        };
        if interval < MIN_SAMPLE_INTERVAL {
            return Err((
                "monitor.sample_interval_us",
                format!("must be at least {}", micros(MIN_SAMPLE_INTERVAL)),
            ));
        }
        let target = match (cfg.target_pid, cfg.target_process_name.trim()) {
            (0, "") => None,
            (0, name) => Some(ProcessSpec::Name(name.to_string())),
            (pid, _) => Some(ProcessSpec::Pid(pid)),
        };
        Ok(MonitorSettings {
            gpu: cfg.gpu,
            server_metrics_urls: cfg.server_metrics_urls.clone(),
            series: cfg.series.clone(),
            target,
            interval,
        })
    }
}

/// The sampling window of a share: samples fall in the middle of each interval from `start`
/// until `stop_at` (or `stop`).
#[derive(Debug, Clone)]
pub struct Window {
    pub start: Instant,
    pub stop_at: Instant,
    pub stop: CancellationToken,
}

/// Starts a share's monitor thread. It takes its baseline readings at once, so start it a
/// few hundred milliseconds before the share does.
///
/// # Errors
/// When the thread cannot be started.
fn spawn(
    settings: MonitorSettings,
    env: MonitorEnv,
    said: SaidNotes,
    window: Window,
    tx: mpsc::Sender<ResourceSample>,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name("monitor".into())
        .spawn(move || {
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    tracing::warn!("monitor: cannot start its runtime: {e}");
                    return;
                }
            };
            let mut sampling = Sampling::new(&settings, &env, said, window.start);
            runtime.block_on(sampling.run(settings.interval, window, tx));
        })
}

/// A share's monitor, ready to start with the share; its samples go to the recorder.
pub struct MonitorStart {
    settings: MonitorSettings,
    env: MonitorEnv,
    run_id: String,
    tx: mpsc::Sender<ResourceSample>,
}

impl MonitorStart {
    /// A monitor for a share of run `run_id`, and the receiver the recorder drains.
    pub fn new(
        settings: MonitorSettings,
        env: MonitorEnv,
        run_id: &str,
    ) -> (Self, mpsc::Receiver<ResourceSample>) {
        let (tx, rx) = mpsc::channel(SAMPLE_QUEUE);
        let run_id = run_id.to_string();
        (
            MonitorStart {
                settings,
                env,
                run_id,
                tx,
            },
            rx,
        )
    }

    /// Starts the thread over `window`. A thread that cannot start is logged: the share runs
    /// on without samples.
    pub fn start(self, window: Window) {
        let said = self.env.said(&self.run_id);
        if let Err(e) = spawn(self.settings, self.env, said, window, self.tx) {
            tracing::warn!("monitor: cannot start its thread: {e}; the share runs unsampled");
        }
    }
}

/// Everything one monitor thread reads, and the notes not yet sent.
struct Sampling {
    sys: Option<System>,
    host: Option<HostSampler>,
    agent: Option<ProcessWatch>,
    target: Option<ProcessWatch>,
    gpus: Option<Arc<Gpus>>,
    scraper: Option<Scraper>,
    notes: Vec<Note>,
    /// Note keys said in this run, by any share.
    said: SaidNotes,
    start: Instant,
}

impl Sampling {
    fn new(settings: &MonitorSettings, env: &MonitorEnv, said: SaidNotes, start: Instant) -> Self {
        let mut notes = Vec::new();
        let mut sys = match System::new() {
            Ok(s) => Some(s),
            Err(e) => {
                notes.push(Note::new(
                    "host".into(),
                    format!("host: cannot be sampled: {e}"),
                ));
                None
            }
        };
        let host = sys.as_mut().map(HostSampler::new);
        let agent = sys
            .as_mut()
            .map(|s| ProcessWatch::new(ProcessSpec::Pid(std::process::id()), "agent", s));
        let target = match (&settings.target, sys.as_mut()) {
            (Some(spec), Some(s)) => Some(ProcessWatch::new(spec.clone(), "target process", s)),
            _ => None,
        };
        let scraper = if settings.server_metrics_urls.is_empty() {
            None
        } else {
            match Scraper::new(
                &settings.server_metrics_urls,
                &settings.series,
                settings.interval,
            ) {
                Ok(s) => Some(s),
                Err(e) => {
                    notes.push(Note::new(
                        "scraper".into(),
                        format!("server metrics: cannot be scraped: {e}"),
                    ));
                    None
                }
            }
        };
        Sampling {
            sys,
            host,
            agent,
            target,
            gpus: if settings.gpu { env.gpus.clone() } else { None },
            scraper,
            notes,
            said,
            start,
        }
    }

    async fn run(&mut self, interval: Duration, window: Window, tx: mpsc::Sender<ResourceSample>) {
        let mut k: u32 = 0;
        loop {
            let due = self.start + interval.mul_f64(f64::from(k) + 0.5);
            if due >= window.stop_at {
                break;
            }
            tokio::select! {
                () = sleep_until(due) => {}
                () = window.stop.cancelled() => break,
                () = tx.closed() => break,
            }
            let sample = self.sample().await;
            match tx.try_send(sample) {
                Ok(()) => {}
                // The recorder drains every interval; a full queue means it is gone or stuck,
                // and a sample is worth less than the request path.
                Err(TrySendError::Full(_)) => tracing::debug!("monitor: sample queue full"),
                Err(TrySendError::Closed(_)) => break,
            }
            // Ticks missed while sampling (a slow scrape) are skipped, not caught up.
            let elapsed = Instant::now().saturating_duration_since(self.start);
            let next = (elapsed.as_secs_f64() / interval.as_secs_f64() - 0.5).ceil();
            k = (k + 1).max(next.clamp(0.0, f64::from(u32::MAX)) as u32);
        }
    }

    async fn sample(&mut self) -> ResourceSample {
        let offset_us = micros(Instant::now().saturating_duration_since(self.start));
        let mut s = ResourceSample {
            offset_us,
            ..ResourceSample::default()
        };
        if let Some(sys) = &mut self.sys {
            s.host = self.host.as_mut().map(|h| h.sample(sys));
            s.agent = self
                .agent
                .as_mut()
                .and_then(|w| w.sample(sys, &mut self.notes));
            s.target = self
                .target
                .as_mut()
                .and_then(|w| w.sample(sys, &mut self.notes));
        }
        if let Some(g) = &self.gpus {
            s.gpus = g.sample();
        }
        if let Some(scraper) = &mut self.scraper {
            let o = scraper.scrape().await;
            s.server = o.series;
            s.scrape_failures = o.failures;
            s.malformed_lines = o.malformed_lines;
            self.notes.extend(o.notes);
        }
        let mut said = self.said.lock().unwrap_or_else(|p| p.into_inner());
        for note in self.notes.drain(..) {
            if said.insert(note.key) {
                tracing::info!("monitor: {}", note.text);
                s.notes.push(note.text);
            }
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_default_to_the_host_once_per_report() {
        let s = MonitorSettings::from_proto(None, Duration::from_secs(1)).unwrap();
        assert!(!s.gpu && s.server_metrics_urls.is_empty() && s.target.is_none());
        assert_eq!(s.interval, Duration::from_secs(1));
        let cfg = MonitorConfig {
            gpu: true,
            server_metrics_urls: vec!["http://127.0.0.1:1/metrics".into()],
            target_process_name: "vllm".into(),
            sample_interval_us: 250_000,
            ..Default::default()
        };
        let s = MonitorSettings::from_proto(Some(&cfg), Duration::from_secs(1)).unwrap();
        assert_eq!(s.target, Some(ProcessSpec::Name("vllm".into())));
        assert_eq!(s.interval, Duration::from_millis(250));
        let bad = MonitorConfig {
            server_metrics_urls: vec!["localhost:8000".into()],
            ..Default::default()
        };
        let err = MonitorSettings::from_proto(Some(&bad), Duration::from_secs(1)).unwrap_err();
        assert_eq!(err.0, "monitor.server_metrics_urls");
    }

    /// The thread samples in the middle of each interval, carries the host and the agent, and
    /// stops at the end of the window.
    #[tokio::test]
    async fn the_monitor_thread_samples_mid_interval_until_the_window_ends() {
        let settings = MonitorSettings {
            gpu: true,
            server_metrics_urls: Vec::new(),
            series: Vec::new(),
            target: None,
            interval: Duration::from_millis(200),
        };
        let start = Instant::now() + Duration::from_millis(300);
        let (tx, mut rx) = mpsc::channel(SAMPLE_QUEUE);
        let window = Window {
            start,
            stop_at: start + Duration::from_millis(1000),
            stop: CancellationToken::new(),
        };
        let thread = spawn(
            settings,
            MonitorEnv::detect(),
            SaidNotes::default(),
            window,
            tx,
        )
        .unwrap();
        let mut samples = Vec::new();
        while let Some(s) = rx.recv().await {
            samples.push(s);
        }
        thread.join().unwrap();
        // Due at 100, 300, 500, 700 and 900 ms (a loaded machine may skip one).
        assert!((4..=5).contains(&samples.len()), "{}", samples.len());
        for (i, s) in samples.iter().enumerate() {
            let host = s.host.as_ref().expect("host");
            assert!(host.mem_total_bytes > 0);
            let agent = s.agent.as_ref().expect("agent");
            assert_eq!(agent.pid, std::process::id());
            assert!(agent.running && agent.rss_bytes > 0);
            assert!(
                (100_000..1_000_000).contains(&s.offset_us),
                "sample {i} at {} us",
                s.offset_us
            );
        }
        assert!(samples.windows(2).all(|w| w[0].offset_us < w[1].offset_us));
    }
}
