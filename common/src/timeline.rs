//! One request's instants, and the metrics DESIGN.md defines as pure functions of them.
//!
//! The agent fills a [`RequestTimeline`] while the request runs; everything reported about the
//! request (TTFT, chunk gaps, ITL, TPOT, E2E, schedule lag) is derived here, so the definitions
//! live in one place and are tested with made-up instants.

use std::time::Duration;

use tokio::time::Instant;

use crate::metrics::clamp_us;

/// Why a request did not count as a clean completion. DESIGN.md's error classes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum ErrorClass {
    /// The TCP or TLS connection could not be made.
    Connect,
    /// No content arrived within the first-token timeout.
    TimeoutFirstToken,
    /// The whole response did not finish within the total timeout.
    TimeoutTotal,
    /// Content stopped flowing: the gap between two chunks passed the idle timeout.
    TimeoutIdle,
    /// The server said 429 Too Many Requests.
    Http429,
    /// Any other 4xx status.
    Http4xx,
    /// A 5xx status.
    Http5xx,
    /// The connection broke or closed before the response ended.
    StreamBroken,
    /// The response could not be decoded (bad SSE, bad JSON, an error event).
    Malformed,
    /// The response completed with no content.
    Empty,
    /// Fewer output tokens than asked for although `ignore_eos` was set.
    Short,
    /// Stopped by Stampede itself (the run ended or was interrupted).
    Cancelled,
}

impl ErrorClass {
    /// Every class, in report order.
    pub const ALL: [ErrorClass; 12] = [
        ErrorClass::Connect,
        ErrorClass::TimeoutFirstToken,
        ErrorClass::TimeoutTotal,
        ErrorClass::TimeoutIdle,
        ErrorClass::Http429,
        ErrorClass::Http4xx,
        ErrorClass::Http5xx,
        ErrorClass::StreamBroken,
        ErrorClass::Malformed,
        ErrorClass::Empty,
        ErrorClass::Short,
        ErrorClass::Cancelled,
    ];

    /// The name used in results files and summary.json.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorClass::Connect => "connect",
            ErrorClass::TimeoutFirstToken => "timeout_first_token",
            ErrorClass::TimeoutTotal => "timeout_total",
            ErrorClass::TimeoutIdle => "timeout_idle",
            ErrorClass::Http429 => "http_429",
            ErrorClass::Http4xx => "http_4xx",
            ErrorClass::Http5xx => "http_5xx",
            ErrorClass::StreamBroken => "stream_broken",
            ErrorClass::Malformed => "malformed",
            ErrorClass::Empty => "empty",
            ErrorClass::Short => "short",
            ErrorClass::Cancelled => "cancelled",
        }
    }

    /// The class for a non-success HTTP status.
    pub fn from_status(status: u16) -> ErrorClass {
        match status {
            429 => ErrorClass::Http429,
            500..=599 => ErrorClass::Http5xx,
            _ => ErrorClass::Http4xx,
        }
    }

    /// Timeouts are counted apart from other failures (DESIGN.md: the timeout rate).
    pub fn is_timeout(self) -> bool {
        matches!(
            self,
            ErrorClass::TimeoutFirstToken | ErrorClass::TimeoutTotal | ErrorClass::TimeoutIdle
        )
    }

    /// Classes a non-success HTTP status decides (their status tells them apart further).
    pub fn is_http(self) -> bool {
        matches!(
            self,
            ErrorClass::Http429 | ErrorClass::Http4xx | ErrorClass::Http5xx
        )
    }

    /// Abnormal responses: the server answered, but not with what was asked for.
    pub fn is_abnormal(self) -> bool {
        matches!(
            self,
            ErrorClass::Empty | ErrorClass::Short | ErrorClass::Malformed
        )
    }
}

impl std::fmt::Display for ErrorClass {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A content-bearing SSE event (or a non-streamed body) and when its bytes arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkArrival {
    pub at: Instant,
    /// Tokens the chunk carried, as far as the client can tell (at least 1).
    pub tokens: u32,
}

/// Everything measured about one request. Instants come from one monotonic clock.
#[derive(Debug, Clone)]
pub struct RequestTimeline {
    /// Position of the request in its share's sequence.
    pub id: u64,
    /// When the arrival process scheduled it (open loop); equals `sent` for closed loop.
    pub intended: Instant,
    /// When the client started sending it.
    pub sent: Instant,
    /// Content-bearing chunks in arrival order.
    pub chunks: Vec<ChunkArrival>,
    /// When the last byte of the response arrived (or the request ended in an error).
    pub finished: Option<Instant>,
    /// Prompt tokens counted by the workload's tokenizer.
    pub input_tokens: u32,
    /// `usage.prompt_tokens`, when the server reported it.
    pub server_input_tokens: Option<u32>,
    /// `usage.completion_tokens`, when the server reported it.
    pub server_output_tokens: Option<u32>,
    /// Tokens asked for (`max_tokens`).
    pub requested_output_tokens: u32,
    pub ignore_eos: bool,
    pub http_status: Option<u16>,
    pub finish_reason: Option<String>,
    pub error: Option<ErrorClass>,
    /// A short, human description of the error (the server's message, the I/O error).
    pub error_detail: Option<String>,
    /// The workload's request class (0 when the workload has one).
    pub class: u32,
    /// The answer's text, kept only when asked for (a multi-turn session's next turn needs it).
    pub response_text: Option<String>,
}

impl RequestTimeline {
    /// A request about to be sent.
    pub fn new(id: u64, intended: Instant, sent: Instant, input_tokens: u32) -> Self {
        RequestTimeline {
            id,
            intended,
            sent,
            chunks: Vec::new(),
            finished: None,
            input_tokens,
            server_input_tokens: None,
            server_output_tokens: None,
            requested_output_tokens: 0,
            ignore_eos: false,
            http_status: None,
            finish_reason: None,
            error: None,
            error_detail: None,
            class: 0,
            response_text: None,
        }
    }

    /// Actual send minus intended send: the client's own delay.
    pub fn schedule_lag(&self) -> Duration {
        self.sent.saturating_duration_since(self.intended)
    }

    /// First content chunk minus actual send.
    pub fn ttft(&self) -> Option<Duration> {
        Some(self.chunks.first()?.at.saturating_duration_since(self.sent))
    }

    /// First content chunk minus intended send: free of coordinated omission.
    pub fn ttft_corrected(&self) -> Option<Duration> {
        Some(
            self.chunks
                .first()?
                .at
                .saturating_duration_since(self.intended),
        )
    }

    /// Last byte minus actual send.
    pub fn e2e(&self) -> Option<Duration> {
        Some(self.finished?.saturating_duration_since(self.sent))
    }

    /// Output tokens: the server's count when reported, else the client's.
    pub fn output_tokens(&self) -> u32 {
        self.server_output_tokens
            .unwrap_or_else(|| self.chunks.iter().map(|c| c.tokens).sum())
    }

    /// Gaps between consecutive content chunks (what vLLM and SGLang call ITL).
    pub fn chunk_gaps(&self) -> impl Iterator<Item = Duration> + '_ {
        self.chunks
            .windows(2)
            .map(|w| w[1].at.saturating_duration_since(w[0].at))
    }

    /// Per-token latencies: each chunk gap spread evenly over the tokens that chunk carried, as
    /// `(latency per token, tokens)` pairs.
    ///
    /// When the server reports more completion tokens than the client counted in its chunks
    /// (tokens coalesced into chunks without a tokenizer to tell), every gap is spread over the
    /// average number of tokens per chunk instead.
    pub fn itl(&self) -> impl Iterator<Item = (Duration, u32)> + '_ {
        let counted: u32 = self.chunks.iter().map(|c| c.tokens).sum();
        let reported = self.server_output_tokens.unwrap_or(counted);
        let scale = if counted > 0 && reported > counted {
            f64::from(reported) / f64::from(counted)
        } else {
            1.0
        };
        self.chunks.windows(2).map(move |w| {
            let gap = w[1].at.saturating_duration_since(w[0].at);
            let tokens = f64::from(w[1].tokens.max(1)) * scale;
            (gap.div_f64(tokens), tokens.round().max(1.0) as u32)
        })
    }

    /// `(E2E - TTFT) / (output tokens - 1)`, for requests with at least two output tokens.
    pub fn tpot(&self) -> Option<Duration> {
        let tokens = self.output_tokens();
        if tokens < 2 {
            return None;
        }
        let decode = self.e2e()?.checked_sub(self.ttft()?)?;
        Some(decode / (tokens - 1))
    }

    /// Content chunks received.
    pub fn content_chunks(&self) -> u32 {
        u32::try_from(self.chunks.len()).unwrap_or(u32::MAX)
    }

    /// Decides the outcome of a response that ended without a transport or HTTP error: empty
    /// when no content came, short when `ignore_eos` asked for more tokens than arrived.
    pub fn classify_completion(&mut self) {
        if self.error.is_some() {
            return;
        }
        if self.chunks.is_empty() {
            self.error = Some(ErrorClass::Empty);
        } else if self.ignore_eos
            && self.requested_output_tokens > 0
            && self.output_tokens() < self.requested_output_tokens
        {
            self.error = Some(ErrorClass::Short);
            self.error_detail = Some(format!(
                "{} of {} output tokens with ignore_eos",
                self.output_tokens(),
                self.requested_output_tokens
            ));
        }
    }

    /// True when the request completed with the content asked for.
    pub fn succeeded(&self) -> bool {
        self.error.is_none() && self.finished.is_some()
    }
}

/// Recording a finished request: here, beside the definitions it records, so that the
/// histogram bundle itself needs no async runtime.
impl crate::metrics::HistogramBundle {
    /// Records what a finished request measured. Latencies of failed requests are not recorded
    /// (they would mix error paths into service latency); their schedule lag is, since it is
    /// the client's health whatever the outcome.
    pub fn record(&mut self, t: &RequestTimeline) {
        // Values are clamped into range first, so `record` cannot fail.
        self.schedule_lag
            .saturating_record(clamp_us(t.schedule_lag()));
        if !t.succeeded() {
            return;
        }
        if let Some(v) = t.ttft() {
            self.ttft.saturating_record(clamp_us(v));
        }
        if let Some(v) = t.ttft_corrected() {
            self.ttft_corrected.saturating_record(clamp_us(v));
        }
        for gap in t.chunk_gaps() {
            self.chunk_gap.saturating_record(clamp_us(gap));
        }
        for (per_token, tokens) in t.itl() {
            let _ = self.itl.record_n(clamp_us(per_token), u64::from(tokens));
        }
        if let Some(v) = t.tpot() {
            self.tpot.saturating_record(clamp_us(v));
        }
        if let Some(v) = t.e2e() {
            self.e2e.saturating_record(clamp_us(v));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_plan_knows_every_class_but_cancelled() {
        let names: Vec<&str> = ErrorClass::ALL
            .iter()
            .filter(|c| **c != ErrorClass::Cancelled)
            .map(|c| c.as_str())
            .collect();
        assert_eq!(names, crate::error_sample::ERROR_CLASSES);
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// A response of `tokens` one-token chunks: first at `ttft` after send, then every `gap`.
    fn streamed(lag: u64, ttft: u64, gap: u64, tokens: u32) -> RequestTimeline {
        let t0 = Instant::now();
        let sent = t0 + ms(lag);
        let mut t = RequestTimeline::new(1, t0, sent, 100);
        for i in 0..u64::from(tokens) {
            t.chunks.push(ChunkArrival {
                at: sent + ms(ttft + i * gap),
                tokens: 1,
            });
        }
        t.finished = Some(sent + ms(ttft + u64::from(tokens - 1) * gap + 1));
        t
    }

    #[test]
    fn latencies_follow_the_definitions() {
        let t = streamed(3, 50, 10, 5);
        assert_eq!(t.schedule_lag(), ms(3));
        assert_eq!(t.ttft(), Some(ms(50)));
        assert_eq!(t.ttft_corrected(), Some(ms(53)));
        assert_eq!(t.e2e(), Some(ms(91)));
        assert_eq!(t.chunk_gaps().collect::<Vec<_>>(), vec![ms(10); 4]);
        assert_eq!(t.itl().collect::<Vec<_>>(), vec![(ms(10), 1); 4]);
        // (91 - 50) / (5 - 1)
        assert_eq!(t.tpot(), Some(Duration::from_micros(10_250)));
    }

    #[test]
    fn coalesced_chunks_spread_their_gap_over_their_tokens() {
        let mut t = streamed(0, 50, 30, 3);
        t.chunks[1].tokens = 3;
        t.chunks[2].tokens = 3;
        assert_eq!(t.itl().collect::<Vec<_>>(), vec![(ms(10), 3), (ms(10), 3)]);
        assert_eq!(t.output_tokens(), 7);
    }

    #[test]
    fn server_token_count_rescales_uncounted_coalescing() {
        // 3 chunks seen, server says 9 tokens: each chunk held 3 tokens on average.
        let mut t = streamed(0, 50, 21, 3);
        t.server_output_tokens = Some(9);
        let itl: Vec<_> = t.itl().collect();
        assert_eq!(itl, vec![(ms(7), 3), (ms(7), 3)]);
        assert_eq!(t.output_tokens(), 9);
    }

    #[test]
    fn tpot_needs_two_tokens() {
        let t = streamed(0, 50, 10, 1);
        assert_eq!(t.tpot(), None);
        assert_eq!(t.chunk_gaps().count(), 0);
    }

    #[test]
    fn completion_is_empty_or_short_when_content_is_missing() {
        let mut empty = RequestTimeline::new(1, Instant::now(), Instant::now(), 10);
        empty.finished = Some(Instant::now());
        empty.classify_completion();
        assert_eq!(empty.error, Some(ErrorClass::Empty));

        let mut short = streamed(0, 5, 1, 3);
        short.ignore_eos = true;
        short.requested_output_tokens = 8;
        short.classify_completion();
        assert_eq!(short.error, Some(ErrorClass::Short));

        let mut full = streamed(0, 5, 1, 8);
        full.ignore_eos = true;
        full.requested_output_tokens = 8;
        full.classify_completion();
        assert!(full.succeeded());
    }

    #[test]
    fn status_codes_map_to_classes() {
        assert_eq!(ErrorClass::from_status(429), ErrorClass::Http429);
        assert_eq!(ErrorClass::from_status(404), ErrorClass::Http4xx);
        assert_eq!(ErrorClass::from_status(503), ErrorClass::Http5xx);
        assert!(ErrorClass::TimeoutTotal.is_timeout());
        assert!(ErrorClass::TimeoutIdle.is_timeout());
        assert!(ErrorClass::Short.is_abnormal());
        assert!(!ErrorClass::Http5xx.is_abnormal());
    }
}
