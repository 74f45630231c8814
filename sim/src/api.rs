//! The HTTP routes: `/v1/models`, `/v1/chat/completions`, `/v1/completions`, `/metrics`,
//! `/health`; and the shared state behind them.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, DefaultBodyLimit, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use futures_util::StreamExt as _;
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use serde_json::json;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::config::{ResolvedConfig, Timing};
use crate::conn::ConnHandle;
use crate::driver::EngineHandle;
use crate::engine::FinishReason;
use crate::faults::{Fault, FaultInjector};
use crate::metrics::Metrics;
use crate::openai::{self, Api, ApiError, ChunkFormat, ResponseMeta};
use crate::pacer::Pacer;
use crate::stream::{GenEvent, Generation, GenerationParts, InFlight, SseBody, TokenSource};

/// Largest request body accepted: a 128k-token prompt is under 1 MiB of words.
const BODY_LIMIT: usize = 64 * 1024 * 1024;

/// How a request's tokens are produced.
#[derive(Debug)]
enum Backend {
    Deterministic { ttft: Duration, itl: Duration },
    Engine(EngineHandle),
}

/// State shared by every request.
#[derive(Debug)]
pub(crate) struct AppState {
    cfg: ResolvedConfig,
    model_json: String,
    metrics: Arc<Metrics>,
    faults: Arc<FaultInjector>,
    pacer: Pacer,
    backend: Backend,
    /// Cancelled to cut every stream in flight (outage start, end of the shutdown grace);
    /// replaced by a fresh token for the requests after it.
    epoch: Mutex<CancellationToken>,
    serial: AtomicU64,
    eos_rng: Mutex<StdRng>,
    start: Instant,
    start_unix: u64,
}

impl AppState {
    /// Must be called on a tokio runtime (the engine preset spawns its driver).
    pub(crate) fn new(
        cfg: ResolvedConfig,
        metrics: Arc<Metrics>,
        faults: Arc<FaultInjector>,
        pacer: Pacer,
        start: Instant,
        start_unix: u64,
    ) -> Self {
        let backend = match &cfg.timing {
            Timing::Deterministic { ttft, itl } => Backend::Deterministic {
                ttft: *ttft,
                itl: *itl,
            },
            Timing::Engine(e) => Backend::Engine(EngineHandle::spawn(
                e.clone(),
                pacer.clone(),
                metrics.clone(),
            )),
        };
        let model_json = serde_json::to_string(&cfg.model).unwrap_or_else(|_| "\"sim\"".to_owned());
        let seed = cfg.seed;
        Self {
            cfg,
            model_json,
            metrics,
            faults,
            pacer,
            backend,
            epoch: Mutex::new(CancellationToken::new()),
            serial: AtomicU64::new(0),
            eos_rng: Mutex::new(StdRng::seed_from_u64(seed ^ 0xE05)),
            start,
            start_unix,
        }
    }

    /// Cuts every stream in flight now; later requests are unaffected.
    pub(crate) fn cut_all(&self) {
        let mut epoch = self.epoch.lock().unwrap_or_else(PoisonError::into_inner);
        epoch.cancel();
        *epoch = CancellationToken::new();
    }

    fn epoch(&self) -> CancellationToken {
        self.epoch
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn created(&self, now: Instant) -> u64 {
        self.start_unix + (now - self.start).as_secs()
    }

    /// Where the model would emit end-of-sequence, if it is allowed to.
    fn stop_after(&self, min_tokens: u32, max_tokens: u32, ignore_eos: bool) -> Option<u32> {
        let p = self.cfg.eos_probability;
        if ignore_eos || p <= 0.0 {
            return None;
        }
        let mut rng = self.eos_rng.lock().unwrap_or_else(PoisonError::into_inner);
        // Geometric: each token from min_tokens on is the last with probability p.
        let u: f64 = rng.random();
        let extra = if p >= 1.0 {
            0.0
        } else {
            ((1.0 - u).ln() / (1.0 - p).ln()).floor()
        };
        let n = f64::from(min_tokens.max(1)) + extra;
        (n <= f64::from(max_tokens)).then_some(n as u32)
    }
}

/// The router over shared state.
pub(crate) fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/v1/models", get(models))
        .route("/v1/chat/completions", post(chat))
        .route("/v1/completions", post(completions))
        .route("/metrics", get(metrics))
        .route("/health", get(health))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(middleware::from_fn_with_state(state.clone(), outage_guard))
        .with_state(state)
}

/// During a scheduled outage every request, on any route and any open connection, is reset.
async fn outage_guard(State(s): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    if s.faults.in_outage(Instant::now())
        && let Some(ConnectInfo(conn)) = req.extensions().get::<ConnectInfo<ConnHandle>>()
    {
        return cut_response(conn);
    }
    next.run(req).await
}

async fn models(State(s): State<Arc<AppState>>) -> Response {
    let created = s.created(Instant::now());
    axum::Json(json!({
        "object": "list",
        "data": [{
            "id": s.cfg.model,
            "object": "model",
            "created": created,
            "owned_by": "stampede-sim",
            "root": s.cfg.model,
            "parent": null,
            "max_model_len": s.cfg.max_model_len,
            "permission": [],
        }],
    }))
    .into_response()
}

async fn metrics(State(s): State<Arc<AppState>>) -> Response {
    let mut resp = s.metrics.render().into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(stampede_prom::CONTENT_TYPE),
    );
    resp
}

async fn health() -> StatusCode {
    StatusCode::OK
}

async fn not_found() -> Response {
    ApiError::not_found("Not found.", None).into_response()
}

async fn chat(
    State(s): State<Arc<AppState>>,
    ConnectInfo(conn): ConnectInfo<ConnHandle>,
    body: Bytes,
) -> Response {
    complete(&s, conn, Api::Chat, &body).await
}

async fn completions(
    State(s): State<Arc<AppState>>,
    ConnectInfo(conn): ConnectInfo<ConnHandle>,
    body: Bytes,
) -> Response {
    complete(&s, conn, Api::Completions, &body).await
}

/// A response whose connection has been killed: nothing reaches the client but a reset.
fn cut_response(conn: &ConnHandle) -> Response {
    conn.kill();
    let body = futures_util::stream::once(async { Err::<Bytes, _>(crate::stream::StreamCut) });
    Response::new(Body::from_stream(body))
}

async fn complete(s: &Arc<AppState>, conn: ConnHandle, api: Api, body: &[u8]) -> Response {
    // When the request reached the host, not when this thread got to it.
    let received = conn.request_arrival(Instant::now());
    let job = match openai::parse_job(api, body, &s.cfg) {
        Ok(job) => job,
        Err(e) => return e.into_response(),
    };
    let fault = s.faults.choose(received, job.max_tokens);
    if let Some(f) = fault {
        s.metrics.fault_injected(f.kind());
        match f {
            Fault::Http {
                status,
                retry_after,
                ..
            } => {
                let secs = retry_after.map(|d| d.as_secs() + u64::from(d.subsec_nanos() > 0));
                return ApiError::injected(status, secs).into_response();
            }
            Fault::ResetBeforeHeaders => return cut_response(&conn),
            _ => {}
        }
    }
    // An empty answer still costs a prefill; it ends where the first token would have come.
    let max_tokens = if fault == Some(Fault::Empty) {
        1
    } else {
        job.max_tokens
    };
    let stop_after = s.stop_after(job.min_tokens, max_tokens, job.ignore_eos);
    let (source, in_flight) = match &s.backend {
        Backend::Deterministic { ttft, itl } => {
            let count = stop_after.map_or(max_tokens, |n| n.min(max_tokens));
            let finish = if stop_after.is_some_and(|n| n <= max_tokens) {
                FinishReason::Stop
            } else {
                FinishReason::Length
            };
            (
                TokenSource::Fixed {
                    first: received + *ttft,
                    itl: *itl,
                    count,
                    finish,
                    next: 0,
                },
                Some(InFlight::start(s.metrics.clone())),
            )
        }
        Backend::Engine(engine) => {
            match engine.submit(received, job.prompt_tokens, max_tokens, stop_after) {
                Ok(rx) => (TokenSource::Engine(rx), None),
                Err(e) => {
                    return ApiError::bad_request(
                        e.to_string(),
                        Some(if api == Api::Chat {
                            "messages"
                        } else {
                            "prompt"
                        }),
                        "context_length_exceeded",
                    )
                    .into_response();
                }
            }
        }
    };
    s.metrics.request_received();
    let serial = s.serial.fetch_add(1, Ordering::Relaxed);
    let meta = ResponseMeta::new(
        api,
        serial ^ s.cfg.seed.rotate_left(17),
        s.created(received),
        &s.model_json,
    );
    let generation = Generation::new(
        source,
        GenerationParts {
            pacer: s.pacer.clone(),
            metrics: s.metrics.clone(),
            conn: conn.clone(),
            cut: s.epoch().cancelled_owned(),
            received,
            prompt_tokens: job.prompt_tokens,
            words: serial,
            fault,
            in_flight,
        },
    );
    if job.stream {
        let body = SseBody::new(generation, ChunkFormat::new(api, &meta), job.include_usage);
        let mut resp = Response::new(Body::from_stream(body));
        let h = resp.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/event-stream; charset=utf-8"),
        );
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        return resp;
    }
    respond_whole(s, conn, api, &meta, job.prompt_tokens, generation, fault).await
}

/// The non-streaming answer: every token is waited for, then one JSON body goes out.
async fn respond_whole(
    s: &Arc<AppState>,
    conn: ConnHandle,
    api: Api,
    meta: &ResponseMeta,
    prompt_tokens: u32,
    mut generation: Generation,
    fault: Option<Fault>,
) -> Response {
    let mut text = String::new();
    let mut finish = FinishReason::Length;
    while let Some(event) = generation.next().await {
        match event {
            GenEvent::Cut => return cut_response(&conn),
            GenEvent::Empty => {
                finish = FinishReason::Stop;
                break;
            }
            GenEvent::Token {
                text: word,
                finish: f,
                ..
            } => {
                text.push_str(word);
                if let Some(f) = f {
                    finish = f;
                }
            }
        }
    }
    let completion = generation.sent();
    let body = openai::full_response(
        api,
        meta,
        &s.cfg.model,
        &text,
        finish,
        prompt_tokens,
        completion,
    );
    if matches!(fault, Some(Fault::Malformed { .. })) {
        // Cut the JSON short: the client must see a body that does not parse.
        let mut full = body.to_string().into_bytes();
        full.truncate(full.len() / 2);
        let mut resp = full.into_response();
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        return resp;
    }
    axum::Json(body).into_response()
}
