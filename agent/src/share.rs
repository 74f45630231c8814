//! One share of one step: checks what the controller asked for, waits for the common start
//! instant, runs the load driver and the recorder, and enforces the stop deadlines.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use stampede_common::plan::ApiKind;
use stampede_common::proto::{Api, StageShare, stage_share};
use tokio::sync::{mpsc, watch};
use tokio::time::{Instant, sleep_until};
use tokio_util::sync::CancellationToken;
use tonic::Status;

use crate::client::{ClientConfig, OpenAiClient};
use crate::recorder::{EventSender, GoodputLimits, Recorder, ShareCounters, WindowEnd};
use crate::samplers::{MonitorEnv, MonitorSettings, MonitorStart, Window};
use crate::scheduler::{OpenLoopConfig, ShareContext, closed_loop, open_loop, trace_loop};
use crate::workload::{BuilderConfig, RequestBuilder};

/// Requests a worker can hand the recorder before it must count an overflow.
const RECORDER_QUEUE: usize = 65_536;

/// The two stop signals of a running share.
#[derive(Debug, Clone)]
pub struct ShareStops {
    pub soft: CancellationToken,
    pub hard: CancellationToken,
    pub grace: Duration,
    /// Factor on the planned rate, changed while the share runs (open loop only).
    pub rate_scale: Arc<watch::Sender<f64>>,
}

impl ShareStops {
    /// Fresh signals: running, at the planned rate.
    pub fn new(grace: Duration) -> Self {
        ShareStops {
            soft: CancellationToken::new(),
            hard: CancellationToken::new(),
            grace,
            rate_scale: Arc::new(watch::channel(1.0).0),
        }
    }

    /// Stops sending now and cancels what is still in flight after the grace period.
    pub fn stop(&self) {
        self.soft.cancel();
        let hard = self.hard.clone();
        let grace = self.grace;
        tokio::spawn(async move {
            tokio::time::sleep(grace).await;
            hard.cancel();
        });
    }
}

enum LoadPlan {
    Trace {
        entries: Vec<stampede_common::proto::TraceEntry>,
        max_in_flight: u32,
    },
    Open(OpenLoopConfig),
    Closed {
        concurrency: u32,
        think_time: Duration,
    },
}

/// A share checked and ready to start.
pub struct PreparedShare {
    ctx: Arc<ShareContext>,
    load: LoadPlan,
    recorder: Recorder,
    rec_tx: mpsc::Sender<stampede_common::timeline::RequestTimeline>,
    stops: ShareStops,
    grace: Duration,
    monitor: MonitorStart,
}

fn invalid(field: &str, why: &str) -> Status {
    Status::invalid_argument(format!("stage share field {field}: {why}"))
}

/// Checks a share and builds what runs it. `http` is the agent's shared connection pool;
/// `monitor` what its samplers share.
///
/// # Errors
/// `INVALID_ARGUMENT` naming the field that is missing or out of range.
pub fn prepare(
    share: &StageShare,
    http: reqwest::Client,
    out: EventSender,
    monitor: &MonitorEnv,
) -> Result<PreparedShare, Status> {
    let target = share
        .target
        .as_ref()
        .ok_or_else(|| invalid("target", "missing"))?;
    if !(target.base_url.starts_with("http://") || target.base_url.starts_with("https://")) {
        return Err(invalid(
            "target.base_url",
            "expected an http:// or https:// URL",
        ));
    }
    let workload = share
        .workload
        .as_ref()
        .ok_or_else(|| invalid("workload", "missing"))?;
    let engine = if workload.workload_id.is_empty() {
        if workload.input_tokens == 0 || workload.output_tokens == 0 {
            return Err(invalid(
                "workload",
                "input_tokens and output_tokens must be at least 1",
            ));
        }
        crate::workload::fixed(
            workload.input_tokens,
            workload.output_tokens,
            workload.ignore_eos,
        )
        .map_err(|e| invalid("workload", &e.to_string()))?
    } else {
        crate::workload::lookup(&workload.workload_id).ok_or_else(|| {
            Status::failed_precondition(format!(
                "workload {} is not loaded on this agent (LoadWorkload comes before the first step)",
                workload.workload_id
            ))
        })?
    };
    if share.duration_us == 0 {
        return Err(invalid("duration_us", "must be above 0"));
    }
    if share.interval_us < 10_000 {
        return Err(invalid("interval_us", "must be at least 10000"));
    }
    let timeout = |us: u64, default: Duration| {
        if us == 0 {
            default
        } else {
            Duration::from_micros(us)
        }
    };
    let total_timeout = timeout(target.timeout_us, Duration::from_secs(120));
    let api = match Api::try_from(target.api) {
        Ok(Api::Chat) => ApiKind::Chat,
        Ok(Api::Completions) => ApiKind::Completions,
        Err(_) => return Err(invalid("target.api", "unknown API")),
    };
    let config = ClientConfig {
        base_url: target.base_url.clone(),
        api,
        api_key: (!target.api_key.is_empty()).then(|| target.api_key.clone()),
        stream: target.stream,
        connect_timeout: timeout(target.connect_timeout_us, Duration::from_secs(10)),
        first_token_timeout: timeout(target.first_token_timeout_us, total_timeout),
        idle_timeout: (target.idle_timeout_us > 0)
            .then(|| Duration::from_micros(target.idle_timeout_us)),
        total_timeout,
    };
    let client = OpenAiClient::with_http(http, config)
        .map_err(|e| invalid("target.api_key", &e.to_string()))?;
    let load = match &share.load {
        Some(stage_share::Load::OpenLoop(o)) => match o
            .arrival_kind()
            .map_err(|why| invalid("open_loop.arrival", why))?
        {
            None => {
                if o.trace.windows(2).any(|w| w[1].offset_us < w[0].offset_us) {
                    return Err(invalid(
                        "open_loop.trace",
                        "offsets must not go back in time",
                    ));
                }
                if o.trace
                    .iter()
                    .any(|e| e.input_tokens == 0 || e.output_tokens == 0)
                {
                    return Err(invalid(
                        "open_loop.trace",
                        "token counts must be at least 1",
                    ));
                }
                LoadPlan::Trace {
                    entries: o.trace.clone(),
                    max_in_flight: o.max_in_flight,
                }
            }
            Some(arrival) => {
                if !(o.qps.is_finite() && o.qps > 0.0) {
                    return Err(invalid("open_loop.qps", "must be a positive rate"));
                }
                LoadPlan::Open(OpenLoopConfig {
                    qps: o.qps,
                    arrival,
                    phase: Duration::from_micros(o.phase_us),
                    seed: share.seed
                        ^ (u64::from(share.agent_index) << 32)
                        ^ u64::from(share.stage_index),
                    max_in_flight: o.max_in_flight,
                })
            }
        },
        Some(stage_share::Load::ClosedLoop(c)) => {
            if c.concurrency == 0 {
                return Err(invalid("closed_loop.concurrency", "must be at least 1"));
            }
            LoadPlan::Closed {
                concurrency: c.concurrency,
                think_time: Duration::from_micros(c.think_time_us),
            }
        }
        None => return Err(invalid("load", "missing: open_loop or closed_loop")),
    };
    let start = start_instant(share.start_at_unix_us);
    let stop_at = start + Duration::from_micros(share.duration_us);
    let grace = Duration::from_micros(share.grace_us);
    let stops = ShareStops::new(grace);
    let rate_rx = stops.rate_scale.subscribe();
    let settings = MonitorSettings::from_proto(
        share.monitor.as_ref(),
        Duration::from_micros(share.interval_us),
    )
    .map_err(|(field, why)| invalid(field, &why))?;
    let (monitor, samples) = MonitorStart::new(settings, monitor.clone(), &share.run_id);
    let counters = Arc::new(ShareCounters::with_classes(&engine.class_names()));
    let (rec_tx, rec_rx) = mpsc::channel(RECORDER_QUEUE);
    let slo = share.slo.unwrap_or_default();
    let limit = |us: u64| (us > 0).then(|| Duration::from_micros(us));
    let recorder = Recorder {
        rx: rec_rx,
        out,
        counters: Arc::clone(&counters),
        start,
        interval: Duration::from_micros(share.interval_us),
        goodput: GoodputLimits {
            ttft: limit(slo.ttft_us),
            tpot: limit(slo.tpot_us),
            e2e: limit(slo.e2e_us),
        },
        record_every: share.record_every,
        samples: Some(samples),
        window: Some(WindowEnd {
            at: stop_at,
            stop: stops.soft.clone(),
        }),
    };
    let builder = RequestBuilder::new(
        engine,
        BuilderConfig {
            api,
            model: target.model.clone(),
            stream: target.stream,
            seed: share.seed,
            stage: share.stage_index,
            agent_index: share.agent_index,
            agent_count: share.agent_count.max(1),
            input_tokens: (workload.input_tokens > 0).then_some(workload.input_tokens),
            output_tokens: (workload.output_tokens > 0).then_some(workload.output_tokens),
        },
    );
    let ctx = Arc::new(ShareContext {
        client,
        builder,
        start,
        stop_at,
        soft_stop: stops.soft.clone(),
        hard_stop: stops.hard.clone(),
        counters,
        next_id: AtomicU64::new(0),
        rate_scale: rate_rx,
    });
    Ok(PreparedShare {
        ctx,
        load,
        recorder,
        rec_tx,
        stops,
        grace,
        monitor,
    })
}

impl PreparedShare {
    /// The share's stop signals.
    pub fn stops(&self) -> ShareStops {
        self.stops.clone()
    }

    /// Runs the share to its end: the driver until the stop instant, then in-flight requests
    /// until they finish or the grace period ends, then the recorder's last reports.
    pub async fn run(self) {
        let PreparedShare {
            ctx,
            load,
            recorder,
            rec_tx,
            stops,
            grace,
            monitor,
        } = self;
        let out = recorder.out.clone();
        // Dead man's switch: when the controller's stream goes away, stop sending at once.
        let watch = {
            let stops = stops.clone();
            tokio::spawn(async move {
                out.closed().await;
                stops.soft.cancel();
                stops.hard.cancel();
            })
        };
        let recording = tokio::spawn(recorder.run());
        // Samples cover the step itself: the next step's monitor takes over at its end.
        monitor.start(Window {
            start: ctx.start,
            stop_at: ctx.stop_at,
            stop: stops.soft.clone(),
        });
        sleep_until(ctx.start).await;
        match load {
            LoadPlan::Open(cfg) => open_loop(Arc::clone(&ctx), cfg, rec_tx).await,
            LoadPlan::Trace {
                entries,
                max_in_flight,
            } => {
                trace_loop(Arc::clone(&ctx), entries, max_in_flight, rec_tx).await;
            }
            LoadPlan::Closed {
                concurrency,
                think_time,
            } => {
                closed_loop(Arc::clone(&ctx), concurrency, think_time, rec_tx).await;
            }
        }
        // Sending is over; what is still in flight gets the grace period, counted from the end
        // of the step (or from now, when stopped early).
        let hard_at = Instant::now() + grace;
        let hard = stops.hard.clone();
        let deadline = tokio::spawn(async move {
            tokio::select! {
                () = sleep_until(hard_at) => hard.cancel(),
                () = hard.cancelled() => {}
            }
        });
        drop(ctx);
        let _ = recording.await;
        deadline.abort();
        watch.abort();
    }
}

/// Converts the controller's start time (already on this agent's clock) to a monotonic instant.
/// A start in the past starts now.
pub(crate) fn start_instant(start_at_unix_us: i64) -> Instant {
    let now_us = crate::security::agent_clock_us();
    let ahead = start_at_unix_us
        .saturating_sub(now_us)
        .clamp(0, 3_600_000_000);
    Instant::now() + Duration::from_micros(ahead.unsigned_abs())
}
