//! The engine's driver: one task that owns the [`Engine`], feeds it arrivals, runs its steps
//! on the real clock and sends each sampled token to its request's channel.
//!
//! Steps follow each other on an absolute schedule: the next starts at the previous one's end,
//! not when the driver happens to wake, so the driver's own wake-up lateness never stretches
//! the simulated timeline. Tokens are sent as soon as a step is planned, tagged with the step's
//! end as their due time; the response body holds each until then. A request whose client has
//! gone (its receiver dropped) is cancelled, freeing its KV cache.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::engine::{Engine, EngineConfig, SeqId, SeqRequest, SubmitError};
use crate::metrics::Metrics;
use crate::pacer::Pacer;
use crate::stream::TokenDue;

/// If the driver wakes this late for a step boundary, the engine has been starved of CPU;
/// rather than replay the missed time in a burst, the schedule restarts from now.
const RESYNC_AFTER: Duration = Duration::from_millis(50);

struct Submission {
    req: SeqRequest,
    out: mpsc::UnboundedSender<TokenDue>,
}

/// Submits requests to the engine task; cloning shares the same engine.
#[derive(Debug, Clone)]
pub(crate) struct EngineHandle {
    tx: mpsc::UnboundedSender<Submission>,
    config: Arc<EngineConfig>,
    ids: Arc<AtomicU64>,
}

impl std::fmt::Debug for Submission {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Submission")
            .field("req", &self.req)
            .finish()
    }
}

impl EngineHandle {
    /// Starts the driver task on the current runtime.
    pub(crate) fn spawn(config: EngineConfig, pacer: Pacer, metrics: Arc<Metrics>) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        let handle = Self {
            tx,
            config: Arc::new(config.clone()),
            ids: Arc::new(AtomicU64::new(0)),
        };
        tokio::spawn(run(Engine::new(config), rx, pacer, metrics));
        handle
    }

    /// Queues a request that arrived at `arrival`; its tokens come on the returned channel.
    ///
    /// # Errors
    /// [`SubmitError`] when it could never be served; checked here so the client gets a 400.
    pub(crate) fn submit(
        &self,
        arrival: Instant,
        prompt_tokens: u32,
        max_tokens: u32,
        stop_after: Option<u32>,
    ) -> Result<mpsc::UnboundedReceiver<TokenDue>, SubmitError> {
        // Engine::submit's check, answered here so the client gets a 400 at once.
        self.config.admissible(prompt_tokens, max_tokens)?;
        let req = SeqRequest {
            id: self.ids.fetch_add(1, Ordering::Relaxed),
            arrival,
            prompt_tokens,
            max_tokens,
            stop_after,
        };
        let (out, rx) = mpsc::unbounded_channel();
        // If the driver is gone the server is shutting down; the receiver then ends at once
        // and the response is cut.
        let _ = self.tx.send(Submission { req, out });
        Ok(rx)
    }
}

async fn run(
    mut engine: Engine,
    mut rx: mpsc::UnboundedReceiver<Submission>,
    pacer: Pacer,
    metrics: Arc<Metrics>,
) {
    let mut outputs: HashMap<SeqId, mpsc::UnboundedSender<TokenDue>> = HashMap::new();
    let mut prev_end: Option<Instant> = None;
    let max_seqs = f64::from(engine.config().max_num_seqs.max(1));
    loop {
        if engine.is_idle() {
            metrics.set_occupancy(0, 0, 0.0, 0.0);
            prev_end = None;
            match rx.recv().await {
                Some(s) => accept(&mut engine, &mut outputs, s),
                None => return,
            }
        }
        while let Ok(s) = rx.try_recv() {
            accept(&mut engine, &mut outputs, s);
        }
        outputs.retain(|&id, tx| {
            let gone = tx.is_closed();
            if gone {
                engine.cancel(id);
            }
            !gone
        });

        let now = Instant::now();
        let start = match prev_end {
            Some(end) if now.saturating_duration_since(end) < RESYNC_AFTER => end,
            _ => now,
        };
        let Some(step) = engine.step(start) else {
            // Nothing runnable at `start`: the queued requests arrived after it. Retry from
            // now; if still nothing (cannot happen with validated requests), wait for news.
            if prev_end.take().is_none() && !engine.is_idle() {
                match rx.recv().await {
                    Some(s) => accept(&mut engine, &mut outputs, s),
                    None => return,
                }
            }
            continue;
        };
        for e in &step.emitted {
            let token = TokenDue {
                due: step.end,
                finish: e.finish,
            };
            let delivered = outputs.get(&e.id).is_some_and(|tx| tx.send(token).is_ok());
            if e.finish.is_some() || !delivered {
                outputs.remove(&e.id);
                if !delivered {
                    engine.cancel(e.id);
                }
            }
        }
        let stats = engine.stats();
        metrics.set_occupancy(
            stats.running,
            stats.waiting,
            stats.kv_usage(),
            f64::from(step.batch_size) / max_seqs,
        );
        metrics.add_busy(step.end - step.start);
        if !step.preempted.is_empty() {
            metrics.add_preemptions(step.preempted.len() as u64);
        }
        prev_end = Some(step.end);
        pacer.sleep_until(step.end).await;
    }
}

fn accept(
    engine: &mut Engine,
    outputs: &mut HashMap<SeqId, mpsc::UnboundedSender<TokenDue>>,
    s: Submission,
) {
    let id = s.req.id;
    // Checked by EngineHandle::submit already; a refusal here just ends the response.
    if engine.submit(s.req).is_ok() {
        outputs.insert(id, s.out);
    }
}
