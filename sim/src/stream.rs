//! One response's tokens on their way out: when each is due, the faults that bend the stream,
//! and the SSE body that hyper writes.
//!
//! A [`Generation`] turns a [`TokenSource`] (a fixed schedule for the deterministic preset, or
//! the engine's per-request channel) into [`GenEvent`]s released by the pacer at their due
//! time. Each event is timed and counted in [`Metrics`] at the moment it is handed to hyper,
//! so the recorded lateness is the simulator's own. [`SseBody`] formats the events as vLLM's
//! chunks; the non-streaming handler collects them into one JSON answer.

use std::future::Future as _;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use futures_util::Stream;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::WaitForCancellationFutureOwned;

use crate::conn::ConnHandle;
use crate::engine::FinishReason;
use crate::faults::Fault;
use crate::metrics::Metrics;
use crate::openai::ChunkFormat;
use crate::pacer::{PacedSleep, Pacer};
use crate::tokens;

/// A token and when it is due to leave.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TokenDue {
    pub(crate) due: Instant,
    pub(crate) finish: Option<FinishReason>,
}

/// Where a response's tokens come from.
#[derive(Debug)]
pub(crate) enum TokenSource {
    /// The deterministic preset: token `i` is due at `first + i * itl`, an absolute schedule
    /// that never drifts.
    Fixed {
        first: Instant,
        itl: Duration,
        count: u32,
        finish: FinishReason,
        next: u32,
    },
    /// The engine driver sends each token ahead of its due time.
    Engine(mpsc::UnboundedReceiver<TokenDue>),
}

impl TokenSource {
    fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Option<TokenDue>> {
        match self {
            Self::Fixed {
                first,
                itl,
                count,
                finish,
                next,
            } => {
                if *next >= *count {
                    return Poll::Ready(None);
                }
                // Bounded: itl is at most 1h and max_tokens fits u32, so no overflow.
                let due = *first + itl.saturating_mul(*next);
                *next += 1;
                let finish = (*next == *count).then_some(*finish);
                Poll::Ready(Some(TokenDue { due, finish }))
            }
            Self::Engine(rx) => rx.poll_recv(cx),
        }
    }
}

/// What a generation yields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum GenEvent {
    /// Token number `index` is out now.
    Token {
        index: u32,
        text: &'static str,
        finish: Option<FinishReason>,
        /// The malformed-SSE fault fires just before this token.
        malformed_before: bool,
    },
    /// The empty-completion fault: the answer ends now with no content.
    Empty,
    /// The connection must be cut (a fault, an outage, or shutdown); it has been killed.
    Cut,
}

/// Keeps the deterministic preset's in-flight count, for the running gauge and GPU busy time.
#[derive(Debug)]
pub(crate) struct InFlight(pub(crate) Arc<Metrics>);

impl InFlight {
    pub(crate) fn start(metrics: Arc<Metrics>) -> Self {
        metrics.stream_delta(1);
        Self(metrics)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.stream_delta(-1);
    }
}

/// One response's token release; see the module docs.
pub(crate) struct Generation {
    source: TokenSource,
    pacer: Pacer,
    metrics: Arc<Metrics>,
    conn: ConnHandle,
    cut: Pin<Box<WaitForCancellationFutureOwned>>,
    received: Instant,
    prompt_tokens: u32,
    words: u64,
    fault: Option<Fault>,
    /// Added to every due time from the stall on.
    shift: Duration,
    pending: Option<TokenDue>,
    sleep: Option<PacedSleep>,
    sent: u32,
    last_sent: Option<Instant>,
    /// A cut is under way: the bytes already handed to hyper are being flushed first.
    cutting: bool,
    done: bool,
    _in_flight: Option<InFlight>,
}

/// Everything a generation needs besides its source.
pub(crate) struct GenerationParts {
    pub(crate) pacer: Pacer,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) conn: ConnHandle,
    pub(crate) cut: WaitForCancellationFutureOwned,
    pub(crate) received: Instant,
    pub(crate) prompt_tokens: u32,
    pub(crate) words: u64,
    pub(crate) fault: Option<Fault>,
    pub(crate) in_flight: Option<InFlight>,
}

impl Generation {
    pub(crate) fn new(source: TokenSource, p: GenerationParts) -> Self {
        Self {
            source,
            pacer: p.pacer,
            metrics: p.metrics,
            conn: p.conn,
            cut: Box::pin(p.cut),
            received: p.received,
            prompt_tokens: p.prompt_tokens,
            words: p.words,
            fault: p.fault,
            shift: Duration::ZERO,
            pending: None,
            sleep: None,
            sent: 0,
            last_sent: None,
            cutting: false,
            done: false,
            _in_flight: p.in_flight,
        }
    }

    /// Tokens sent so far.
    pub(crate) fn sent(&self) -> u32 {
        self.sent
    }

    /// Cuts the connection in two polls: the first returns `Pending` (and wakes itself) so
    /// hyper flushes what it holds (headers, earlier tokens, which a late task may have
    /// produced in one go), the second kills the connection. Killing at once would drop those
    /// bytes too, and a mid-stream disconnect would look like a reset before the headers.
    fn cut_now(&mut self, cx: &mut Context<'_>) -> Poll<Option<GenEvent>> {
        if !self.cutting {
            self.cutting = true;
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        self.conn.kill();
        self.done = true;
        Poll::Ready(Some(GenEvent::Cut))
    }
}

impl Stream for Generation {
    type Item = GenEvent;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<GenEvent>> {
        let this = self.get_mut();
        if this.done {
            return Poll::Ready(None);
        }
        if this.cutting || this.cut.as_mut().poll(cx).is_ready() {
            return this.cut_now(cx);
        }
        let token = match this.pending {
            Some(t) => t,
            None => match ready!(this.source.poll_next(cx)) {
                Some(t) => {
                    this.pending = Some(t);
                    if let Some(Fault::Stall { after, for_, .. }) = this.fault
                        && after == this.sent
                    {
                        this.shift += for_;
                    }
                    t
                }
                // The engine went away (shutdown) before finishing this answer.
                None => return this.cut_now(cx),
            },
        };
        let due = token.due + this.shift;
        if Instant::now() < due {
            let sleep = match &mut this.sleep {
                Some(s) if s.due() == due => s,
                slot => slot.insert(this.pacer.sleep_until(due)),
            };
            ready!(Pin::new(sleep).poll(cx));
        }
        this.sleep = None;
        this.pending = None;
        let now = Instant::now();
        match this.fault {
            Some(Fault::Disconnect { after }) if after == this.sent => return this.cut_now(cx),
            Some(Fault::ResetAfterHeaders) => return this.cut_now(cx),
            Some(Fault::Empty) => {
                this.done = true;
                this.metrics.prompt_served(this.prompt_tokens);
                this.metrics
                    .request_finished(FinishReason::Stop, now - this.received);
                return Poll::Ready(Some(GenEvent::Empty));
            }
            _ => {}
        }
        let malformed_before =
            matches!(this.fault, Some(Fault::Malformed { after }) if after == this.sent);
        if this.sent == 0 {
            this.metrics.prompt_served(this.prompt_tokens);
        }
        this.metrics
            .token_sent(now, due, this.last_sent, this.received);
        let index = this.sent;
        this.sent += 1;
        this.last_sent = Some(now);
        if let Some(reason) = token.finish {
            this.done = true;
            this.metrics.request_finished(reason, now - this.received);
        }
        Poll::Ready(Some(GenEvent::Token {
            index,
            text: tokens::word(this.words, index),
            finish: token.finish,
            malformed_before,
        }))
    }
}

/// Error that ends a cut stream; hyper then drops the (killed) connection.
#[derive(Debug, thiserror::Error)]
#[error("stream cut by the simulator")]
pub(crate) struct StreamCut;

/// The SSE body of a streaming response.
pub(crate) struct SseBody {
    generation: Generation,
    format: ChunkFormat,
    include_usage: bool,
    finished: bool,
}

impl SseBody {
    pub(crate) fn new(generation: Generation, format: ChunkFormat, include_usage: bool) -> Self {
        Self {
            generation,
            format,
            include_usage,
            finished: false,
        }
    }
}

impl Stream for SseBody {
    type Item = Result<Bytes, StreamCut>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if this.finished {
            return Poll::Ready(None);
        }
        let Some(event) = ready!(Pin::new(&mut this.generation).poll_next(cx)) else {
            this.finished = true;
            return Poll::Ready(None);
        };
        let mut out = Vec::with_capacity(512);
        let prompt = this.generation.prompt_tokens;
        match event {
            GenEvent::Cut => {
                this.finished = true;
                return Poll::Ready(Some(Err(StreamCut)));
            }
            GenEvent::Empty => {
                this.format.role(&mut out);
                this.format.token(&mut out, "", Some(FinishReason::Stop));
                if this.include_usage {
                    this.format.usage(&mut out, prompt, 0);
                }
                ChunkFormat::done(&mut out);
                this.finished = true;
            }
            GenEvent::Token {
                index,
                text,
                finish,
                malformed_before,
            } => {
                if malformed_before {
                    this.format.malformed(&mut out);
                }
                // vLLM sends the role chunk with the first output; send both in one write.
                if index == 0 {
                    this.format.role(&mut out);
                }
                this.format.token(&mut out, text, finish);
                if finish.is_some() {
                    if this.include_usage {
                        this.format.usage(&mut out, prompt, this.generation.sent());
                    }
                    ChunkFormat::done(&mut out);
                    this.finished = true;
                }
            }
        }
        Poll::Ready(Some(Ok(Bytes::from(out))))
    }
}
