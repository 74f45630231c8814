//! The streaming OpenAI client: sends one prepared request and fills its [`RequestTimeline`].
//!
//! A failed request is data, not an `Err`: every way a request can go wrong ends as an
//! [`ErrorClass`] on the timeline. Each response chunk is timestamped when its bytes arrive,
//! before any parsing, so decoding cost never shifts a measured instant.

pub mod decode;
pub mod sse;

use std::time::Duration;

use futures_util::StreamExt;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderValue};
use stampede_common::plan::ApiKind;
use stampede_common::timeline::{ChunkArrival, ErrorClass, RequestTimeline};
use stampede_common::units::error_chain;
use tokio::time::{Instant, Sleep, sleep_until, timeout_at};
use tokio_util::sync::CancellationToken;

use self::decode::{Decoded, decode, decode_into};
use self::sse::SseParser;

/// Settings of a client for one target.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// Base URL such as `http://127.0.0.1:8000/v1`.
    pub base_url: String,
    pub api: ApiKind,
    pub api_key: Option<String>,
    pub stream: bool,
    pub connect_timeout: Duration,
    pub first_token_timeout: Duration,
    /// Longest gap between chunks once content flows.
    pub idle_timeout: Option<Duration>,
    pub total_timeout: Duration,
}

pub use stampede_workload::PreparedRequest;

/// A client could not be built from its configuration.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    #[error("the API key cannot be sent as an HTTP header")]
    BadApiKey,
    #[error("cannot build the HTTP client: {0}")]
    Build(#[from] reqwest::Error),
}

/// An OpenAI-compatible HTTP client, cheap to clone (the connection pool is shared).
#[derive(Debug, Clone)]
pub struct OpenAiClient {
    http: reqwest::Client,
    url: String,
    /// `url`, parsed once: parsing it for every request (host, IDNA) costs more than a clone.
    parsed_url: Option<reqwest::Url>,
    auth: Option<HeaderValue>,
    config: ClientConfig,
}

/// A connection pool for measuring: no total timeout (each phase has its own), no Nagle delay,
/// and idle connections kept so that steady load reuses them.
///
/// # Errors
/// When TLS cannot be initialised.
pub fn http_pool(connect_timeout: Duration) -> Result<reqwest::Client, ClientError> {
    Ok(reqwest::Client::builder()
        .connect_timeout(connect_timeout)
        // A redirect is the server's answer, counted as such: following it would measure
        // another endpoint, and could lead the agent past its allow-list.
        .redirect(reqwest::redirect::Policy::none())
        .tcp_nodelay(true)
        .pool_max_idle_per_host(usize::MAX)
        .pool_idle_timeout(Duration::from_secs(90))
        .build()?)
}

/// Most chunk entries reserved up front for one response.
const MAX_CHUNKS_RESERVED: u32 = 256;

/// Longest error body kept for the record.
const MAX_ERROR_DETAIL: usize = 300;

impl OpenAiClient {
    /// Builds a client with its own connection pool.
    ///
    /// # Errors
    /// When the API key is not a valid header value or TLS cannot be initialised.
    pub fn try_new(config: ClientConfig) -> Result<Self, ClientError> {
        let http = http_pool(config.connect_timeout)?;
        Self::with_http(http, config)
    }

    /// Builds a client over an existing connection pool, so connections outlive one step.
    ///
    /// # Errors
    /// When the API key is not a valid header value.
    pub fn with_http(http: reqwest::Client, config: ClientConfig) -> Result<Self, ClientError> {
        let endpoint = match config.api {
            ApiKind::Chat => "chat/completions",
            ApiKind::Completions => "completions",
        };
        let url = format!("{}/{endpoint}", config.base_url.trim_end_matches('/'));
        let auth = match &config.api_key {
            Some(key) if !key.is_empty() => {
                let mut v = HeaderValue::from_str(&format!("Bearer {key}"))
                    .map_err(|_| ClientError::BadApiKey)?;
                v.set_sensitive(true);
                Some(v)
            }
            _ => None,
        };
        let parsed_url = reqwest::Url::parse(&url).ok();
        Ok(OpenAiClient {
            http,
            parsed_url,
            url,
            auth,
            config,
        })
    }

    /// The endpoint requests go to.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Sends `req`, intended at `intended`, and measures it until it ends or `cancel` fires.
    pub async fn execute(
        &self,
        req: &PreparedRequest,
        intended: Instant,
        cancel: &CancellationToken,
    ) -> RequestTimeline {
        let builder = match &self.parsed_url {
            Some(url) => self.http.post(url.clone()),
            // Not a valid URL: reqwest reports the error when the request is sent.
            None => self.http.post(&self.url),
        };
        let mut builder = builder
            .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
            .body(req.body.clone());
        if let Some(auth) = &self.auth {
            builder = builder.header(AUTHORIZATION, auth.clone());
        }
        let sent = Instant::now();
        let mut t = RequestTimeline::new(req.id, intended, sent, req.input_tokens);
        t.requested_output_tokens = req.max_tokens;
        t.ignore_eos = req.ignore_eos;
        t.class = req.class;
        // One entry per content chunk: reserving for the usual answer avoids regrowing the
        // vector while tokens arrive (capped, so a large max_tokens costs no memory up front).
        t.chunks
            .reserve(req.max_tokens.min(MAX_CHUNKS_RESERVED) as usize);
        if req.capture_text {
            t.response_text = Some(String::new());
        }
        let deadline = sent + self.config.total_timeout;
        let first_deadline = (sent + self.config.first_token_timeout).min(deadline);
        tokio::select! {
            biased;
            () = cancel.cancelled() => fail(&mut t, ErrorClass::Cancelled, "stopped by Stampede"),
            () = self.run(builder, &mut t, first_deadline, deadline) => {}
        }
        if t.finished.is_none() {
            t.finished = Some(Instant::now());
        }
        t
    }

    async fn run(
        &self,
        builder: reqwest::RequestBuilder,
        t: &mut RequestTimeline,
        first_deadline: Instant,
        deadline: Instant,
    ) {
        // One timer for the whole request, re-armed only when it fires early or must fire
        // sooner: creating a timeout per chunk would insert and remove a timer-wheel entry for
        // every token.
        let timer = sleep_until(first_deadline);
        tokio::pin!(timer);
        let response = tokio::select! {
            biased;
            r = builder.send() => match r {
                Err(e) => return fail(t, transport_class(&e), &error_chain(&e)),
                Ok(r) => r,
            },
            () = &mut timer => return timed_out(t, first_deadline, deadline),
        };
        let status = response.status();
        t.http_status = Some(status.as_u16());
        if !status.is_success() {
            let detail = match timeout_at(deadline, response.bytes()).await {
                Ok(Ok(body)) => summarize_error_body(&body),
                _ => String::new(),
            };
            return fail(
                t,
                ErrorClass::from_status(status.as_u16()),
                &format!("HTTP {status} {detail}"),
            );
        }
        let mut body = response.bytes_stream();
        let mut parser = SseParser::new();
        let mut raw: Vec<u8> = Vec::new();
        let mut done = false;
        loop {
            let next = match next_within(
                &mut body,
                timer.as_mut(),
                t,
                &self.config,
                first_deadline,
                deadline,
            )
            .await
            {
                Err(limit) => return timed_out(t, limit, deadline),
                Ok(next) => next,
            };
            let at = Instant::now();
            let bytes = match next {
                None => break,
                Some(Ok(b)) => b,
                Some(Err(e)) => return fail(t, ErrorClass::StreamBroken, &error_chain(&e)),
            };
            if !self.config.stream {
                // A non-streamed body may arrive in several reads; it is parsed once whole.
                if raw.len() + bytes.len() > sse::MAX_LINE {
                    return fail(t, ErrorClass::Malformed, "the response body is too large");
                }
                raw.extend_from_slice(&bytes);
                continue;
            }
            let mut outcome = Ok(());
            let fed = parser.feed(&bytes, |ev| {
                if outcome.is_ok() && !done {
                    outcome = on_event(t, at, ev.event, ev.data, &mut done);
                }
            });
            if let Err(e) = fed {
                return fail(t, ErrorClass::Malformed, &e.to_string());
            }
            if let Err((class, detail)) = outcome {
                return fail(t, class, &detail);
            }
            if done {
                break;
            }
        }
        let at = Instant::now();
        if !self.config.stream {
            return finish_unstreamed(t, &raw, at);
        }
        if !done {
            let mut outcome = Ok(());
            let _ = parser.finish(|ev| {
                if outcome.is_ok() && !done {
                    outcome = on_event(t, at, ev.event, ev.data, &mut done);
                }
            });
            if let Err((class, detail)) = outcome {
                return fail(t, class, &detail);
            }
        }
        // A stream that ends without [DONE] and without a finish reason was cut off.
        if !done && t.finish_reason.is_none() {
            return fail(
                t,
                ErrorClass::StreamBroken,
                "the stream ended before [DONE]",
            );
        }
        t.finished = Some(at);
        t.classify_completion();
    }
}

/// The instant by which the next chunk must come: the first-token deadline before any content,
/// then the idle timeout after the last chunk (when set), never past the total deadline.
fn chunk_limit(
    t: &RequestTimeline,
    config: &ClientConfig,
    first_deadline: Instant,
    deadline: Instant,
) -> Instant {
    match (t.chunks.last(), config.idle_timeout) {
        (None, _) => first_deadline,
        (Some(last), Some(idle)) => (last.at + idle).min(deadline),
        (Some(_), None) => deadline,
    }
}

/// The next piece of the body, or `Err(limit)` when the limit of [`chunk_limit`] passed first.
/// `timer` stays armed across calls: it is moved only when the limit is earlier than its
/// deadline, and when it fires before the (since moved) limit it is re-armed, so a stream
/// costs a timer update per limit change that matters, not one per chunk.
async fn next_within<S: futures_util::Stream + Unpin>(
    body: &mut S,
    mut timer: std::pin::Pin<&mut Sleep>,
    t: &RequestTimeline,
    config: &ClientConfig,
    first_deadline: Instant,
    deadline: Instant,
) -> Result<Option<S::Item>, Instant> {
    let limit = chunk_limit(t, config, first_deadline, deadline);
    if limit < timer.deadline() {
        timer.as_mut().reset(limit);
    }
    loop {
        tokio::select! {
            biased;
            next = body.next() => return Ok(next),
            () = &mut timer => {
                if timer.deadline() >= limit {
                    return Err(limit);
                }
                timer.as_mut().reset(limit);
            }
        }
    }
}

/// Handles one SSE event: content, usage, finish, `[DONE]`, or an error event.
fn on_event(
    t: &mut RequestTimeline,
    at: Instant,
    event: Option<&str>,
    data: &str,
    done: &mut bool,
) -> Result<(), (ErrorClass, String)> {
    if data.trim() == "[DONE]" {
        *done = true;
        return Ok(());
    }
    let decoded = decode_into(data, t.response_text.as_mut())
        .map_err(|e| (ErrorClass::Malformed, truncate(&e.to_string())))?;
    if let Some(message) = decoded.error {
        return Err((
            ErrorClass::Malformed,
            truncate(&format!("error event: {message}")),
        ));
    }
    if event == Some("error") {
        return Err((
            ErrorClass::Malformed,
            truncate(&format!("error event: {data}")),
        ));
    }
    apply(t, at, &decoded);
    Ok(())
}

fn apply(t: &mut RequestTimeline, at: Instant, d: &Decoded) {
    if d.content_bytes > 0 {
        t.chunks.push(ChunkArrival { at, tokens: 1 });
    }
    if let Some(reason) = &d.finish_reason {
        t.finish_reason = Some(reason.clone());
    }
    if d.prompt_tokens.is_some() {
        t.server_input_tokens = d.prompt_tokens;
    }
    if d.completion_tokens.is_some() {
        t.server_output_tokens = d.completion_tokens;
    }
}

fn finish_unstreamed(t: &mut RequestTimeline, raw: &[u8], at: Instant) {
    let text = match std::str::from_utf8(raw) {
        Ok(s) => s,
        Err(_) => return fail(t, ErrorClass::Malformed, "the response body is not UTF-8"),
    };
    match decode_into(text, t.response_text.as_mut()) {
        Err(e) => fail(t, ErrorClass::Malformed, &truncate(&e.to_string())),
        Ok(d) if d.error.is_some() => fail(
            t,
            ErrorClass::Malformed,
            &truncate(&d.error.unwrap_or_default()),
        ),
        Ok(d) => {
            // The whole answer arrives at once: its tokens are counted as one chunk.
            if d.content_bytes > 0 {
                let tokens = d.completion_tokens.unwrap_or(1).max(1);
                t.chunks.push(ChunkArrival { at, tokens });
            }
            apply_usage_only(t, &d);
            t.finished = Some(at);
            t.classify_completion();
        }
    }
}

fn apply_usage_only(t: &mut RequestTimeline, d: &Decoded) {
    t.finish_reason = d.finish_reason.clone();
    t.server_input_tokens = d.prompt_tokens;
    t.server_output_tokens = d.completion_tokens;
}

fn timed_out(t: &mut RequestTimeline, limit: Instant, deadline: Instant) {
    if limit >= deadline {
        fail(
            t,
            ErrorClass::TimeoutTotal,
            "the response did not finish within the timeout",
        );
    } else if t.chunks.is_empty() {
        fail(
            t,
            ErrorClass::TimeoutFirstToken,
            "no content before the first-token timeout",
        );
    } else {
        fail(
            t,
            ErrorClass::TimeoutIdle,
            "content stopped flowing for longer than the idle timeout",
        );
    }
}

fn fail(t: &mut RequestTimeline, class: ErrorClass, detail: &str) {
    t.error = Some(class);
    t.error_detail = Some(truncate(detail));
    t.finished = Some(Instant::now());
}

/// Classifies an error from reqwest before a response arrived.
fn transport_class(e: &reqwest::Error) -> ErrorClass {
    if e.is_connect() {
        ErrorClass::Connect
    } else if e.is_timeout() {
        ErrorClass::TimeoutFirstToken
    } else {
        // Sent, then the connection closed or reset before the headers came back.
        ErrorClass::StreamBroken
    }
}

fn summarize_error_body(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    match decode(&text) {
        Ok(Decoded {
            error: Some(message),
            ..
        }) => truncate(&message),
        _ => truncate(text.trim()),
    }
}

fn truncate(s: &str) -> String {
    if s.len() <= MAX_ERROR_DETAIL {
        return s.to_string();
    }
    let mut end = MAX_ERROR_DETAIL;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &s[..end])
}
