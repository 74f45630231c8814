//! The engine model: a pure, clock-injected state machine of vLLM's iteration-level scheduler.
//!
//! # The model
//!
//! The engine runs in *steps* (iterations). At the start of each step it plans a batch, exactly
//! as vLLM V1's scheduler does with chunked prefill on:
//!
//! 1. Running sequences first, in admission order. Each asks for all of its pending tokens (a
//!    whole prompt, or one token when decoding), capped by what is left of the per-step token
//!    budget (`max_num_batched_tokens`): a long prompt is prefilled in chunks over several steps.
//!    A sequence whose KV cache must grow and finds no free block preempts the most recently
//!    admitted sequence (recompute mode: its KV is freed and it goes back to the front of the
//!    queue, to prefill its prompt and the tokens it already produced when readmitted).
//! 2. Then, if nothing was preempted, waiting sequences in arrival order (first come, first
//!    served, no overtaking) while fewer than `max_num_seqs` run and budget is left. A sequence
//!    is admitted only when the KV cache has free blocks for all its tokens so far (its prompt):
//!    while the cache is full, admission waits.
//!
//! The step lasts `step_base + batched_tokens / prefill_tokens_per_s + context_tokens x
//! context_token_cost`, where `context_tokens` is the KV held by the scheduled sequences: a
//! decode step grows with the batch (compute per token) and with the context it attends over
//! (KV reads). Every sequence whose pending tokens were all computed samples one token at the
//! end of the step: the first when its prefill completes, then one per step.
//!
//! So TTFT = queueing + prefill steps, the gap between tokens is the step time of the batch the
//! sequence is in, and throughput saturates at [`EngineConfig::saturation`].
//!
//! The engine never reads a clock: the caller passes each step's start and learns its end, so
//! tests drive it through hours of simulated load in milliseconds.

use std::collections::VecDeque;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use crate::duration::serde_duration;

/// The engine's figures; see the module docs for how each enters the model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EngineConfig {
    /// Most sequences running (in the batch) at once; vLLM's `max_num_seqs`.
    pub max_num_seqs: u32,
    /// Token budget of one step, prefill and decode together; vLLM's `max_num_batched_tokens`.
    pub max_num_batched_tokens: u32,
    /// KV-cache capacity in tokens.
    pub kv_cache_tokens: u64,
    /// Tokens per KV-cache block; the cache is handed out in whole blocks.
    pub kv_block_tokens: u32,
    /// Tokens computed per second (prefill and decode tokens cost the same compute).
    pub prefill_tokens_per_s: f64,
    /// Fixed cost of a step: reading the weights once, kernel launches, sampling.
    #[serde(with = "serde_duration")]
    pub step_base: Duration,
    /// Cost per step of each token of context (KV) held by the scheduled sequences.
    #[serde(with = "serde_duration")]
    pub context_token_cost: Duration,
}

/// The steady state of a saturated engine for one workload shape.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Capacity {
    /// Sequences in each step.
    pub batch: u32,
    /// Duration of each step: the gap between tokens.
    pub step_time: Duration,
    /// Output tokens per second.
    pub output_tokens_per_s: f64,
    /// Completed requests per second.
    pub requests_per_s: f64,
}

impl EngineConfig {
    /// Appends a line to `problems` for every out-of-range figure.
    pub fn check(&self, problems: &mut Vec<String>) {
        if self.max_num_seqs == 0 {
            problems.push("engine.max_num_seqs must be at least 1".to_owned());
        }
        if self.max_num_batched_tokens == 0 {
            problems.push("engine.max_num_batched_tokens must be at least 1".to_owned());
        }
        if self.kv_block_tokens == 0 {
            problems.push("engine.kv_block_tokens must be at least 1".to_owned());
        } else if self.kv_cache_tokens < u64::from(self.kv_block_tokens) {
            problems.push(format!(
                "engine.kv_cache_tokens {} holds less than one block of {} tokens",
                self.kv_cache_tokens, self.kv_block_tokens
            ));
        }
        if !(self.prefill_tokens_per_s.is_finite() && self.prefill_tokens_per_s >= 1.0) {
            problems.push("engine.prefill_tokens_per_s must be at least 1".to_owned());
        }
        if self.step_base > Duration::from_secs(10) {
            problems.push("engine.step_base is over the 10s limit".to_owned());
        }
        if self.context_token_cost > Duration::from_millis(1) {
            problems.push("engine.context_token_cost is over the 1ms limit".to_owned());
        }
        if self.step_base.is_zero() && self.context_token_cost.is_zero() {
            // A step must take time, or a busy engine would spin without the clock moving.
            problems.push("engine.step_base must be above 0".to_owned());
        }
    }

    /// Checks that a request of this size can ever be served: at least one token each way,
    /// and prompt plus completion within the KV cache (or it would wait forever).
    ///
    /// # Errors
    /// The [`SubmitError`] that [`Engine::submit`] would return.
    pub fn admissible(&self, prompt_tokens: u32, max_tokens: u32) -> Result<(), SubmitError> {
        if prompt_tokens == 0 || max_tokens == 0 {
            return Err(SubmitError::Empty);
        }
        let needed = u64::from(prompt_tokens) + u64::from(max_tokens);
        if self.blocks_for(needed) > self.kv_blocks() {
            return Err(SubmitError::TooLong {
                needed,
                capacity: self.kv_cache_tokens,
            });
        }
        Ok(())
    }

    /// KV-cache capacity in blocks.
    pub fn kv_blocks(&self) -> u64 {
        self.kv_cache_tokens / u64::from(self.kv_block_tokens.max(1))
    }

    fn blocks_for(&self, tokens: u64) -> u64 {
        tokens.div_ceil(u64::from(self.kv_block_tokens.max(1)))
    }

    /// Duration of a step that computes `batched_tokens` while its sequences hold
    /// `context_tokens` of KV.
    pub fn step_time(&self, batched_tokens: u64, context_tokens: u64) -> Duration {
        // try_: an unvalidated config must not make a step panic.
        let compute =
            Duration::try_from_secs_f64(batched_tokens as f64 / self.prefill_tokens_per_s)
                .unwrap_or(Duration::MAX);
        let ctx_nanos = self.context_token_cost.as_nanos() * u128::from(context_tokens);
        let ctx = Duration::from_nanos(u64::try_from(ctx_nanos).unwrap_or(u64::MAX));
        self.step_base.saturating_add(compute).saturating_add(ctx)
    }

    /// The documented capacity: throughput of the engine kept full by requests of `input`
    /// prompt tokens and `output` completion tokens.
    ///
    /// The batch is the smallest of `max_num_seqs`, the sequences whose whole length fits in
    /// the KV cache, and the step budget. In steady state each step carries one token for every
    /// sequence plus the prefill of the requests replacing those that finish (batch x input /
    /// output tokens), and the sequences hold on average `input + output / 2` tokens of context.
    pub fn saturation(&self, input: u32, output: u32) -> Capacity {
        let output = output.max(1);
        let per_seq_blocks = self.blocks_for(u64::from(input) + u64::from(output)).max(1);
        let by_kv = self.kv_blocks() / per_seq_blocks;
        let batch = u64::from(self.max_num_seqs)
            .min(by_kv)
            .min(u64::from(self.max_num_batched_tokens))
            .max(1);
        let b = batch as f64;
        let prefill = b * f64::from(input) / f64::from(output);
        let batched = (b + prefill).round() as u64;
        let context = (b * (f64::from(input) + f64::from(output) / 2.0)).round() as u64;
        let step_time = self.step_time(batched, context);
        let output_tokens_per_s = b / step_time.as_secs_f64();
        Capacity {
            batch: u32::try_from(batch).unwrap_or(u32::MAX),
            step_time,
            output_tokens_per_s,
            requests_per_s: output_tokens_per_s / f64::from(output),
        }
    }
}

/// Identifies a sequence; the caller chooses it and keeps it unique.
pub type SeqId = u64;

/// Why a sequence stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FinishReason {
    /// It produced `max_tokens`.
    Length,
    /// It produced an end-of-sequence token.
    Stop,
}

impl FinishReason {
    /// The OpenAI API's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Length => "length",
            Self::Stop => "stop",
        }
    }
}

/// A request for the engine.
#[derive(Debug, Clone, PartialEq)]
pub struct SeqRequest {
    /// Its id.
    pub id: SeqId,
    /// When it arrived; it cannot be admitted to a step starting earlier.
    pub arrival: Instant,
    /// Prompt length in tokens (at least 1).
    pub prompt_tokens: u32,
    /// Completion length limit (at least 1).
    pub max_tokens: u32,
    /// Where the model emits end-of-sequence: the completion stops after this many tokens
    /// with finish reason `stop`, if that is before `max_tokens`.
    pub stop_after: Option<u32>,
}

/// A request the engine refuses.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SubmitError {
    /// It could never fit the KV cache, so it would wait forever.
    #[error(
        "the request needs {needed} tokens of KV cache but the simulated server has {capacity}"
    )]
    TooLong {
        /// Prompt plus completion tokens.
        needed: u64,
        /// KV-cache capacity in tokens.
        capacity: u64,
    },
    /// Zero prompt or completion tokens.
    #[error("prompt and completion must have at least one token each")]
    Empty,
}

/// One token sampled at the end of a step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Emitted {
    /// The sequence.
    pub id: SeqId,
    /// Its 0-based position in the completion.
    pub index: u32,
    /// Set on the sequence's last token.
    pub finish: Option<FinishReason>,
}

/// What one step did; its tokens are due at `end`.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    /// When it started.
    pub start: Instant,
    /// When it ends: its tokens are produced then, and the next step may start.
    pub end: Instant,
    /// The tokens sampled at the end.
    pub emitted: Vec<Emitted>,
    /// Sequences in the batch.
    pub batch_size: u32,
    /// Prompt (or recomputed) tokens computed.
    pub prefill_tokens: u64,
    /// Decode tokens computed.
    pub decode_tokens: u64,
    /// KV held by the batch's sequences at the end of the step.
    pub context_tokens: u64,
    /// Sequences preempted while planning it.
    pub preempted: Vec<SeqId>,
}

/// Occupancy, for gauges.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct EngineStats {
    /// Sequences in the batch.
    pub running: u32,
    /// Sequences queued (new or preempted).
    pub waiting: u32,
    /// KV-cache blocks in use.
    pub kv_used_blocks: u64,
    /// KV-cache blocks in all.
    pub kv_total_blocks: u64,
    /// Preemptions since start.
    pub preemptions: u64,
}

impl EngineStats {
    /// Fraction of the KV cache in use, 0..=1.
    pub fn kv_usage(&self) -> f64 {
        if self.kv_total_blocks == 0 {
            0.0
        } else {
            self.kv_used_blocks as f64 / self.kv_total_blocks as f64
        }
    }
}

#[derive(Debug)]
struct Seq {
    req: SeqRequest,
    /// Tokens whose KV is in the cache.
    computed: u64,
    /// Completion tokens produced so far.
    generated: u32,
    /// KV blocks held.
    blocks: u64,
}

impl Seq {
    /// Prompt plus produced tokens: everything that must be in the KV before the next sample.
    fn num_tokens(&self) -> u64 {
        u64::from(self.req.prompt_tokens) + u64::from(self.generated)
    }
}

/// The engine's state: the queue, the batch and the KV cache.
#[derive(Debug)]
pub struct Engine {
    config: EngineConfig,
    waiting: VecDeque<Seq>,
    running: Vec<Seq>,
    total_blocks: u64,
    free_blocks: u64,
    preemptions: u64,
}

impl Engine {
    /// An idle engine with an empty cache.
    pub fn new(config: EngineConfig) -> Self {
        let total_blocks = config.kv_blocks();
        Self {
            config,
            waiting: VecDeque::new(),
            running: Vec::new(),
            total_blocks,
            free_blocks: total_blocks,
            preemptions: 0,
        }
    }

    /// Its configuration.
    pub fn config(&self) -> &EngineConfig {
        &self.config
    }

    /// Queues a request; it is admitted at the first step starting at or after its arrival
    /// that has room for it.
    ///
    /// # Errors
    /// [`SubmitError`] when the request could never be served.
    pub fn submit(&mut self, req: SeqRequest) -> Result<(), SubmitError> {
        self.config.admissible(req.prompt_tokens, req.max_tokens)?;
        self.waiting.push_back(Seq {
            req,
            computed: 0,
            generated: 0,
            blocks: 0,
        });
        Ok(())
    }

    /// Drops a sequence (its client left), freeing its KV; false if it is unknown or done.
    pub fn cancel(&mut self, id: SeqId) -> bool {
        if let Some(i) = self.running.iter().position(|s| s.req.id == id) {
            let seq = self.running.remove(i);
            self.free_blocks += seq.blocks;
            return true;
        }
        if let Some(i) = self.waiting.iter().position(|s| s.req.id == id) {
            self.waiting.remove(i);
            return true;
        }
        false
    }

    /// True when no sequence is queued or running.
    pub fn is_idle(&self) -> bool {
        self.waiting.is_empty() && self.running.is_empty()
    }

    /// Current occupancy.
    pub fn stats(&self) -> EngineStats {
        EngineStats {
            running: u32::try_from(self.running.len()).unwrap_or(u32::MAX),
            waiting: u32::try_from(self.waiting.len()).unwrap_or(u32::MAX),
            kv_used_blocks: self.total_blocks - self.free_blocks,
            kv_total_blocks: self.total_blocks,
            preemptions: self.preemptions,
        }
    }

    /// Plans and runs one step starting at `start`; `None` when there is nothing it can run
    /// (idle, or every queued request arrives after `start`).
    pub fn step(&mut self, start: Instant) -> Option<Step> {
        let mut budget = u64::from(self.config.max_num_batched_tokens);
        // (index into running, tokens to compute this step)
        let mut scheduled: Vec<(usize, u64)> = Vec::with_capacity(self.running.len() + 8);
        let mut preempted = Vec::new();

        let mut i = 0;
        while i < self.running.len() && budget > 0 {
            let seq = &self.running[i];
            let n = (seq.num_tokens() - seq.computed).min(budget);
            let need = self.config.blocks_for(seq.computed + n);
            let mut self_preempted = false;
            while need > self.running[i].blocks + self.free_blocks {
                // The newest sequence gives way, as in vLLM; when that is this one, it waits.
                let last = self.running.len() - 1;
                self_preempted = last == i;
                self.preempt_last(&mut preempted);
                if self_preempted {
                    break;
                }
            }
            if self_preempted {
                continue;
            }
            let seq = &mut self.running[i];
            self.free_blocks -= need.saturating_sub(seq.blocks);
            seq.blocks = seq.blocks.max(need);
            scheduled.push((i, n));
            budget -= n;
            i += 1;
        }

        // vLLM admits no one in a step that had to preempt, unless the batch emptied.
        if preempted.is_empty() || scheduled.is_empty() {
            while self.running.len() < self.config.max_num_seqs as usize && budget > 0 {
                let Some(front) = self.waiting.front() else {
                    break;
                };
                if front.req.arrival > start {
                    break;
                }
                let need = self.config.blocks_for(front.num_tokens());
                if need > self.free_blocks {
                    break;
                }
                let Some(mut seq) = self.waiting.pop_front() else {
                    break;
                };
                self.free_blocks -= need;
                seq.blocks = need;
                seq.computed = 0;
                let n = seq.num_tokens().min(budget);
                budget -= n;
                self.running.push(seq);
                scheduled.push((self.running.len() - 1, n));
            }
        }

        if scheduled.is_empty() {
            return None;
        }

        let mut emitted = Vec::with_capacity(scheduled.len());
        let (mut prefill, mut decode, mut context) = (0u64, 0u64, 0u64);
        for &(idx, n) in &scheduled {
            let seq = &mut self.running[idx];
            if seq.computed >= u64::from(seq.req.prompt_tokens) && n == 1 && seq.generated > 0 {
                decode += 1;
            } else {
                prefill += n;
            }
            seq.computed += n;
            context += seq.computed;
            if seq.computed == seq.num_tokens() {
                let index = seq.generated;
                seq.generated += 1;
                let finish = if seq.req.stop_after.is_some_and(|s| seq.generated >= s) {
                    Some(FinishReason::Stop)
                } else if seq.generated >= seq.req.max_tokens {
                    Some(FinishReason::Length)
                } else {
                    None
                };
                emitted.push(Emitted {
                    id: seq.req.id,
                    index,
                    finish,
                });
            }
        }
        let step = self
            .config
            .step_time(prefill + decode, context)
            .min(Duration::from_secs(86_400));
        let end = start + step;

        let batch_size = u32::try_from(scheduled.len()).unwrap_or(u32::MAX);
        if emitted.iter().any(|e| e.finish.is_some()) {
            let free = &mut self.free_blocks;
            self.running.retain(|s| {
                let done = s.req.stop_after.is_some_and(|x| s.generated >= x)
                    || s.generated >= s.req.max_tokens;
                if done {
                    *free += s.blocks;
                }
                !done
            });
        }

        Some(Step {
            start,
            end,
            emitted,
            batch_size,
            prefill_tokens: prefill,
            decode_tokens: decode,
            context_tokens: context,
            preempted,
        })
    }

    fn preempt_last(&mut self, preempted: &mut Vec<SeqId>) {
        if let Some(mut victim) = self.running.pop() {
            self.free_blocks += victim.blocks;
            victim.blocks = 0;
            victim.computed = 0;
            preempted.push(victim.req.id);
            self.preemptions += 1;
            self.waiting.push_front(victim);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn cfg() -> EngineConfig {
        EngineConfig {
            max_num_seqs: 64,
            max_num_batched_tokens: 2048,
            kv_cache_tokens: 1_000_000,
            kv_block_tokens: 16,
            prefill_tokens_per_s: 10_000.0,
            step_base: Duration::from_millis(10),
            context_token_cost: Duration::ZERO,
        }
    }

    fn req(id: SeqId, arrival: Instant, prompt: u32, max: u32) -> SeqRequest {
        SeqRequest {
            id,
            arrival,
            prompt_tokens: prompt,
            max_tokens: max,
            stop_after: None,
        }
    }

    /// What a request saw: its token times and finish.
    #[derive(Debug, Default, Clone)]
    struct Seen {
        arrival: Option<Instant>,
        tokens: Vec<Instant>,
        finish: Option<FinishReason>,
    }

    /// Drives the engine as the server's driver does, on a simulated clock: each step starts
    /// when the previous ends, or at the next arrival when idle.
    struct Harness {
        engine: Engine,
        now: Instant,
        t0: Instant,
        pending: VecDeque<SeqRequest>,
        seen: HashMap<SeqId, Seen>,
        steps: Vec<Step>,
        max_running: u32,
    }

    impl Harness {
        fn new(config: EngineConfig) -> Self {
            let t0 = Instant::now();
            Self {
                engine: Engine::new(config),
                now: t0,
                t0,
                pending: VecDeque::new(),
                seen: HashMap::new(),
                steps: Vec::new(),
                max_running: 0,
            }
        }

        fn at(&self, offset: Duration) -> Instant {
            self.t0 + offset
        }

        fn arrive(&mut self, r: SeqRequest) {
            self.seen.entry(r.id).or_default().arrival = Some(r.arrival);
            self.pending.push_back(r);
        }

        /// Runs until `horizon` after the start, or until everything is done.
        fn run(&mut self, horizon: Duration) {
            let end = self.t0 + horizon;
            while self.now < end {
                while self.pending.front().is_some_and(|r| r.arrival <= self.now) {
                    let r = self.pending.pop_front().expect("checked");
                    self.engine.submit(r).expect("fits");
                }
                match self.engine.step(self.now) {
                    Some(step) => {
                        self.max_running = self.max_running.max(self.engine.stats().running);
                        for e in &step.emitted {
                            let s = self.seen.entry(e.id).or_default();
                            assert_eq!(s.tokens.len() as u32, e.index, "tokens in order");
                            s.tokens.push(step.end);
                            s.finish = e.finish;
                        }
                        self.now = step.end;
                        self.steps.push(step);
                    }
                    None => match self.pending.front() {
                        Some(r) => self.now = self.now.max(r.arrival),
                        None => break,
                    },
                }
            }
        }
    }

    #[test]
    fn a_lone_request_prefills_then_decodes_one_token_per_step() {
        let c = cfg();
        let mut h = Harness::new(c.clone());
        h.arrive(req(1, h.at(Duration::ZERO), 1000, 5));
        h.run(Duration::from_secs(10));
        let s = &h.seen[&1];
        assert_eq!(s.tokens.len(), 5);
        assert_eq!(s.finish, Some(FinishReason::Length));
        // TTFT: one step computing the 1000-token prompt.
        assert_eq!(s.tokens[0] - h.t0, c.step_time(1000, 1000));
        for w in s.tokens.windows(2) {
            assert_eq!(w[1] - w[0], c.step_time(1, 0));
        }
        assert!(h.engine.is_idle());
        assert_eq!(h.engine.stats().kv_used_blocks, 0, "KV freed when done");
    }

    #[test]
    fn long_prompts_are_prefilled_in_chunks_of_the_step_budget() {
        let mut h = Harness::new(cfg());
        h.arrive(req(1, h.at(Duration::ZERO), 5000, 2));
        h.run(Duration::from_secs(10));
        // 2048 + 2048 + 904: the first token comes at the end of the third step.
        let prefills: Vec<u64> = h.steps.iter().map(|s| s.prefill_tokens).collect();
        assert_eq!(prefills, [2048, 2048, 904, 0]);
        assert_eq!(h.seen[&1].tokens[0], h.steps[2].end);
    }

    #[test]
    fn gap_between_tokens_follows_the_batch_size() {
        let c = EngineConfig {
            prefill_tokens_per_s: 1000.0, // 1 ms per token in the batch
            ..cfg()
        };
        let gap_with = |n: u64| {
            let mut h = Harness::new(c.clone());
            for id in 0..n {
                h.arrive(req(id, h.at(Duration::ZERO), 10, 20));
            }
            h.run(Duration::from_secs(60));
            let t = &h.seen[&0].tokens;
            t[10] - t[9]
        };
        assert_eq!(gap_with(1), Duration::from_millis(11));
        assert_eq!(gap_with(32), Duration::from_millis(42));
    }

    #[test]
    fn the_running_limit_queues_the_rest() {
        let c = EngineConfig {
            max_num_seqs: 4,
            ..cfg()
        };
        let mut h = Harness::new(c);
        for id in 0..10 {
            h.arrive(req(id, h.at(Duration::ZERO), 10, 10));
        }
        h.run(Duration::from_secs(60));
        assert_eq!(h.max_running, 4);
        let last_of_first = h.seen[&0].tokens[9];
        assert!(h.seen[&4].tokens[0] > last_of_first);
        assert!(h.seen.values().all(|s| s.tokens.len() == 10));
    }

    #[test]
    fn a_full_kv_cache_holds_back_admission() {
        // Three 300-token prompts (+10 tokens each) fit 1008 tokens of cache; a fourth does not.
        let c = EngineConfig {
            kv_cache_tokens: 1008,
            ..cfg()
        };
        let mut h = Harness::new(c);
        for id in 0..6 {
            h.arrive(req(id, h.at(Duration::ZERO), 300, 10));
        }
        h.run(Duration::from_secs(60));
        assert_eq!(h.max_running, 3);
        assert_eq!(h.engine.stats().preemptions, 0);
        let first_done = h.seen[&0].tokens[9];
        assert!(h.seen[&3].tokens[0] > first_done, "the 4th waits for KV");
        assert!(h.seen.values().all(|s| s.tokens.len() == 10));
    }

    #[test]
    fn growth_past_the_cache_preempts_and_recomputes_without_losing_tokens() {
        let c = EngineConfig {
            kv_cache_tokens: 128,
            ..cfg()
        };
        let mut h = Harness::new(c);
        for id in 0..4 {
            h.arrive(req(id, h.at(Duration::ZERO), 16, 60));
        }
        h.run(Duration::from_secs(600));
        assert!(h.engine.stats().preemptions > 0);
        for s in h.seen.values() {
            assert_eq!(s.tokens.len(), 60);
            assert_eq!(s.finish, Some(FinishReason::Length));
        }
        assert_eq!(h.engine.stats().kv_used_blocks, 0);
    }

    #[test]
    fn end_of_sequence_stops_early() {
        let mut h = Harness::new(cfg());
        let mut r = req(1, h.at(Duration::ZERO), 10, 50);
        r.stop_after = Some(7);
        h.arrive(r);
        h.run(Duration::from_secs(10));
        assert_eq!(h.seen[&1].tokens.len(), 7);
        assert_eq!(h.seen[&1].finish, Some(FinishReason::Stop));
    }

    #[test]
    fn cancel_frees_the_cache_and_the_slot() {
        let mut e = Engine::new(cfg());
        let t = Instant::now();
        e.submit(req(1, t, 100, 100)).expect("fits");
        e.submit(req(2, t, 100, 100)).expect("fits");
        e.step(t).expect("runs");
        assert_eq!(e.stats().running, 2);
        assert!(e.cancel(1));
        assert!(!e.cancel(1));
        assert_eq!(e.stats().running, 1);
        assert!(e.cancel(2));
        assert_eq!(e.stats().kv_used_blocks, 0);
        assert!(e.is_idle());
    }

    #[test]
    fn requests_that_can_never_fit_are_refused() {
        let mut e = Engine::new(EngineConfig {
            kv_cache_tokens: 100,
            ..cfg()
        });
        let t = Instant::now();
        assert!(matches!(
            e.submit(req(1, t, 90, 20)),
            Err(SubmitError::TooLong { .. })
        ));
        assert_eq!(e.submit(req(2, t, 0, 20)), Err(SubmitError::Empty));
    }

    #[test]
    fn no_admission_before_arrival() {
        let mut e = Engine::new(cfg());
        let t = Instant::now();
        e.submit(req(1, t + Duration::from_secs(1), 10, 10))
            .expect("fits");
        assert!(e.step(t).is_none());
        assert!(e.step(t + Duration::from_secs(1)).is_some());
    }

    /// Offered load at `factor` x capacity for 60 s of simulated time.
    fn offered(c: &EngineConfig, factor: f64) -> (f64, Duration) {
        let (input, output) = (200u32, 100u32);
        let cap = c.saturation(input, output);
        let rate = cap.requests_per_s * factor;
        let mut h = Harness::new(c.clone());
        let horizon = Duration::from_secs(60);
        let n = (rate * horizon.as_secs_f64()) as u64;
        for id in 0..n {
            let at = Duration::from_secs_f64(id as f64 / rate);
            h.arrive(req(id, h.at(at), input, output));
        }
        h.run(horizon);
        // Output tokens/s over the second half, once the queue has formed.
        let half = h.t0 + horizon / 2;
        let tokens = h
            .seen
            .values()
            .flat_map(|s| s.tokens.iter())
            .filter(|&&t| t >= half)
            .count();
        let tput = tokens as f64 / (horizon / 2).as_secs_f64();
        // Median TTFT of requests that got a first token in the second half.
        let mut ttfts: Vec<Duration> = h
            .seen
            .values()
            .filter_map(|s| Some((*s.tokens.first()?, s.arrival?)))
            .filter(|(first, _)| *first >= half)
            .map(|(first, arrival)| first - arrival)
            .collect();
        ttfts.sort();
        (tput, ttfts[ttfts.len() / 2])
    }

    #[test]
    fn throughput_levels_off_at_the_documented_capacity_and_ttft_climbs_past_it() {
        let c = EngineConfig {
            max_num_seqs: 16,
            max_num_batched_tokens: 4096,
            kv_cache_tokens: 100_000,
            kv_block_tokens: 16,
            prefill_tokens_per_s: 20_000.0,
            step_base: Duration::from_millis(8),
            context_token_cost: Duration::from_micros(1),
        };
        let cap = c.saturation(200, 100).output_tokens_per_s;
        let (t_half, ttft_half) = offered(&c, 0.5);
        let (t_2x, ttft_2x) = offered(&c, 2.0);
        let (t_4x, ttft_4x) = offered(&c, 4.0);
        assert!(
            (t_half / (cap * 0.5) - 1.0).abs() < 0.1,
            "{t_half} vs {cap}"
        );
        assert!((t_2x / cap - 1.0).abs() < 0.1, "{t_2x} vs {cap}");
        assert!((t_4x / cap - 1.0).abs() < 0.1, "{t_4x} vs {cap}");
        assert!(ttft_2x > ttft_half * 10, "{ttft_half:?} {ttft_2x:?}");
        assert!(ttft_4x > ttft_2x, "{ttft_2x:?} {ttft_4x:?}");
    }

    #[test]
    fn saturation_is_bounded_by_the_kv_cache() {
        let c = EngineConfig {
            max_num_seqs: 1000,
            kv_cache_tokens: 16 * 100,
            ..cfg()
        };
        // 160 + 16 tokens = 11 blocks each: 9 sequences fit.
        assert_eq!(c.saturation(160, 16).batch, 9);
    }
}
