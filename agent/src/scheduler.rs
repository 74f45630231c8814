//! Drivers of load: open loop (arrivals on a schedule, whatever the server does) and closed
//! loop (N users, each sending its next request when its last one ends).
//!
//! Open loop builds each request before waiting for its due time, so prompt building never
//! delays a send, and spawns one task per request, so a slow response never delays the next
//! arrival. The intended send time travels with the request: lateness becomes schedule lag, and
//! the corrected TTFT counts it, which is how coordinated omission is kept out of the results.
//! Due times are waited for on the [`pacer`](crate::pacer), not tokio's millisecond timer, so
//! that lag is the client's own and not the timer wheel's.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use stampede_common::schedule::{ArrivalKind, ArrivalSchedule};
use tokio::sync::{mpsc, watch};
use tokio::time::{Instant, sleep, sleep_until};
use tokio_util::sync::CancellationToken;

use crate::client::OpenAiClient;
use crate::pacer::ArrivalClock;
use crate::recorder::ShareCounters;
use crate::workload::{RequestBuilder, Turn};
use stampede_common::timeline::RequestTimeline;

/// What the drivers of one share need.
pub struct ShareContext {
    pub client: OpenAiClient,
    pub builder: RequestBuilder,
    pub start: Instant,
    /// No request is sent at or after this instant.
    pub stop_at: Instant,
    /// Fires to stop sending early (Stop, or the controller went away).
    pub soft_stop: CancellationToken,
    /// Fires to cancel requests still in flight.
    pub hard_stop: CancellationToken,
    pub counters: Arc<ShareCounters>,
    /// Next request id of a closed loop, shared by its users.
    pub next_id: AtomicU64,
    /// Factor on the planned open-loop rate, set while the share runs.
    pub rate_scale: watch::Receiver<f64>,
}

/// Settings of an open-loop share.
#[derive(Debug, Clone, Copy)]
pub struct OpenLoopConfig {
    pub qps: f64,
    pub arrival: ArrivalKind,
    pub phase: Duration,
    pub seed: u64,
    /// 0: no cap.
    pub max_in_flight: u32,
}

/// Sends requests on the arrival schedule until the stop instant.
pub async fn open_loop(
    ctx: Arc<ShareContext>,
    cfg: OpenLoopConfig,
    rec: mpsc::Sender<RequestTimeline>,
) {
    let mut rate = ctx.rate_scale.clone();
    let mut scale = *rate.borrow_and_update();
    // A rate change restarts the schedule at the instant of the change, at the new rate, so
    // arrivals before it keep their times and the ones after follow the new rate exactly.
    let mut origin = ctx.start;
    let mut schedule = scaled_schedule(&cfg, scale, cfg.phase, 0);
    let mut id = 0u64;
    let mut req = ctx.builder.build(id);
    // A scale of 0 pauses: no arrival is due until the scale is set again, when the schedule
    // restarts from that instant.
    let mut paused = false;
    let clock = ArrivalClock::global();
    while let Some(offset) = schedule.next() {
        let intended = origin + offset;
        if intended >= ctx.stop_at && !paused {
            break;
        }
        tokio::select! {
            biased;
            () = ctx.soft_stop.cancelled() => break,
            changed = rate.changed() => {
                if changed.is_err() {
                    continue;
                }
                let new_scale = *rate.borrow_and_update();
                if new_scale == 0.0 {
                    paused = true;
                } else if new_scale.is_finite() && new_scale > 0.0 && (new_scale != scale || paused) {
                    paused = false;
                    scale = new_scale;
                    origin = Instant::now();
                    schedule = scaled_schedule(&cfg, scale, Duration::ZERO, id);
                }
                continue;
            }
            () = sleep_until(ctx.stop_at), if paused => break,
            () = clock.sleep_until(intended), if !paused => {}
        }
        dispatch(&ctx, req, intended, cfg.max_in_flight, &rec);
        id += 1;
        req = ctx.builder.build(id);
    }
}

/// The arrival schedule of an open loop at `scale` times its planned rate. Ramps keep their
/// shape: both ends scale.
fn scaled_schedule(
    cfg: &OpenLoopConfig,
    scale: f64,
    phase: Duration,
    salt: u64,
) -> ArrivalSchedule {
    let arrival = match cfg.arrival {
        ArrivalKind::Ramp { to_qps, over } => ArrivalKind::Ramp {
            to_qps: to_qps * scale,
            over,
        },
        other => other,
    };
    ArrivalSchedule::new(
        arrival,
        cfg.qps * scale,
        phase,
        cfg.seed ^ salt.wrapping_mul(0x2545_F491_4F6C_DD1D),
    )
}

/// Replays a trace: each entry is sent at its offset with its own lengths, until the stop
/// instant. Bodies are built before their due time, like open loop.
pub async fn trace_loop(
    ctx: Arc<ShareContext>,
    entries: Vec<stampede_common::proto::TraceEntry>,
    max_in_flight: u32,
    rec: mpsc::Sender<RequestTimeline>,
) {
    for (id, entry) in (0u64..).zip(entries) {
        let intended = ctx.start + Duration::from_micros(entry.offset_us);
        if intended >= ctx.stop_at {
            break;
        }
        let req = ctx
            .builder
            .build_sized(id, entry.input_tokens, entry.output_tokens);
        if !wait_until_due(&ctx, intended).await {
            break;
        }
        dispatch(&ctx, req, intended, max_in_flight, &rec);
    }
}

/// Waits for a request's due time; false when the share was stopped first.
async fn wait_until_due(ctx: &ShareContext, intended: Instant) -> bool {
    tokio::select! {
        biased;
        () = ctx.soft_stop.cancelled() => false,
        () = ArrivalClock::global().sleep_until(intended) => true,
    }
}

/// Sends a due request (and the rest of its session) on its own task, or counts it dropped
/// when the in-flight cap is reached.
fn dispatch(
    ctx: &Arc<ShareContext>,
    req: Turn,
    intended: Instant,
    max_in_flight: u32,
    rec: &mpsc::Sender<RequestTimeline>,
) {
    let in_flight = ctx.counters.in_flight.load(Ordering::Relaxed);
    if max_in_flight > 0 && in_flight >= u64::from(max_in_flight) {
        ctx.counters.count_dropped(req.req.class);
        return;
    }
    ctx.counters.in_flight.fetch_add(1, Ordering::Relaxed);
    ctx.counters.count_sent(req.req.class);
    tokio::spawn(send_one(Arc::clone(ctx), req, intended, rec.clone()));
}

/// Runs `concurrency` users until the stop instant. Each request's intended time is its actual
/// send time: a closed loop has no schedule to fall behind.
pub async fn closed_loop(
    ctx: Arc<ShareContext>,
    concurrency: u32,
    think_time: Duration,
    rec: mpsc::Sender<RequestTimeline>,
) {
    let mut users = Vec::with_capacity(concurrency as usize);
    for user in 0..u64::from(concurrency) {
        let ctx = Arc::clone(&ctx);
        let rec = rec.clone();
        users.push(tokio::spawn(async move {
            // Users start spread over the first 10 ms so their first requests do not collide.
            let stagger = Duration::from_micros(10_000 * user / u64::from(concurrency.max(1)));
            let mut next = ctx
                .builder
                .build(ctx.next_id.fetch_add(1, Ordering::Relaxed));
            sleep_until(ctx.start + stagger).await;
            loop {
                let req = next;
                let now = Instant::now();
                if now >= ctx.stop_at || ctx.soft_stop.is_cancelled() {
                    break;
                }
                ctx.counters.in_flight.fetch_add(1, Ordering::Relaxed);
                ctx.counters.count_sent(req.req.class);
                let sending = tokio::spawn(send_one(Arc::clone(&ctx), req, now, rec.clone()));
                // The user's next request is built while this one is in flight, so building
                // never delays a send.
                next = ctx
                    .builder
                    .build(ctx.next_id.fetch_add(1, Ordering::Relaxed));
                let _ = sending.await;
                if !think_time.is_zero() {
                    tokio::select! {
                        () = ctx.soft_stop.cancelled() => break,
                        () = sleep(think_time) => {}
                    }
                }
            }
        }));
    }
    for u in users {
        let _ = u.await;
    }
}

/// Sends a request and, when it opens a multi-turn session, the session's later turns: each
/// after the answer to the one before and the class's think time, built during that pause.
/// A later turn's intended time is when its think time ends. A failed turn ends its session.
async fn send_one(
    ctx: Arc<ShareContext>,
    turn: Turn,
    intended: Instant,
    rec: mpsc::Sender<RequestTimeline>,
) {
    let Turn {
        mut req,
        mut session,
    } = turn;
    let mut intended = intended;
    loop {
        let mut t = ctx.client.execute(&req, intended, &ctx.hard_stop).await;
        ctx.counters.in_flight.fetch_sub(1, Ordering::Relaxed);
        let answer = t.response_text.take();
        let succeeded = t.succeeded();
        if rec.try_send(t).is_err() {
            ctx.counters.overflow.fetch_add(1, Ordering::Relaxed);
        }
        let Some(s) = session.as_mut() else { break };
        if !succeeded {
            break;
        }
        let due = Instant::now() + s.think_time();
        let Some(next) = ctx.builder.next_turn(s, &answer.unwrap_or_default()) else {
            break;
        };
        if due >= ctx.stop_at || !wait_until_due(&ctx, due).await {
            break;
        }
        ctx.counters.in_flight.fetch_add(1, Ordering::Relaxed);
        ctx.counters.count_sent(next.class);
        intended = due;
        req = next;
    }
}
