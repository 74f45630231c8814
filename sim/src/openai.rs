//! The OpenAI wire format: request parsing and validation, response and SSE chunk formatting
//! exactly as vLLM emits them, and OpenAI-style error bodies.

use std::fmt::Write as _;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

use crate::config::ResolvedConfig;
use crate::engine::FinishReason;

/// Which endpoint a request came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Api {
    /// `POST /v1/chat/completions`
    Chat,
    /// `POST /v1/completions`
    Completions,
}

#[derive(Debug, Deserialize)]
struct ChatRequest {
    model: Option<String>,
    messages: Option<Vec<ChatMessage>>,
    max_tokens: Option<u32>,
    max_completion_tokens: Option<u32>,
    #[serde(flatten)]
    common: Common,
}

#[derive(Debug, Deserialize)]
struct CompletionRequest {
    model: Option<String>,
    prompt: Option<Prompt>,
    max_tokens: Option<u32>,
    #[serde(flatten)]
    common: Common,
}

/// Fields both endpoints share; anything else in the request is ignored, as servers do.
#[derive(Debug, Deserialize)]
struct Common {
    stream: Option<bool>,
    stream_options: Option<StreamOptions>,
    ignore_eos: Option<bool>,
    min_tokens: Option<u32>,
    n: Option<u32>,
}

#[derive(Debug, Deserialize)]
struct StreamOptions {
    include_usage: Option<bool>,
}

#[derive(Debug, Deserialize)]
struct ChatMessage {
    content: Option<Content>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Content {
    Text(String),
    Parts(Vec<ContentPart>),
}

#[derive(Debug, Deserialize)]
struct ContentPart {
    text: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Prompt {
    Text(String),
    Texts(Vec<String>),
    Ids(Vec<u32>),
    IdLists(Vec<Vec<u32>>),
}

/// A validated completion request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Job {
    pub(crate) api: Api,
    pub(crate) prompt_tokens: u32,
    pub(crate) max_tokens: u32,
    pub(crate) min_tokens: u32,
    pub(crate) ignore_eos: bool,
    pub(crate) stream: bool,
    pub(crate) include_usage: bool,
}

/// An OpenAI-style error response.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ApiError {
    pub(crate) status: StatusCode,
    pub(crate) message: String,
    pub(crate) kind: &'static str,
    pub(crate) param: Option<&'static str>,
    pub(crate) code: Option<&'static str>,
    pub(crate) retry_after_s: Option<u64>,
}

impl ApiError {
    pub(crate) fn bad_request(
        message: impl Into<String>,
        param: Option<&'static str>,
        code: &'static str,
    ) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            message: message.into(),
            kind: "invalid_request_error",
            param,
            code: Some(code),
            retry_after_s: None,
        }
    }

    pub(crate) fn not_found(message: impl Into<String>, param: Option<&'static str>) -> Self {
        Self {
            status: StatusCode::NOT_FOUND,
            message: message.into(),
            kind: "invalid_request_error",
            param,
            code: Some(if param.is_some() {
                "model_not_found"
            } else {
                "not_found"
            }),
            retry_after_s: None,
        }
    }

    /// A simulated server-side failure.
    pub(crate) fn injected(status: u16, retry_after_s: Option<u64>) -> Self {
        let (status, message, kind, code) = match status {
            429 => (
                StatusCode::TOO_MANY_REQUESTS,
                "Rate limit reached (simulated fault)",
                "rate_limit_error",
                "rate_limit_exceeded",
            ),
            503 => (
                StatusCode::SERVICE_UNAVAILABLE,
                "The server is overloaded or not ready yet (simulated fault)",
                "server_error",
                "service_unavailable",
            ),
            _ => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "The server had an error while processing your request (simulated fault)",
                "server_error",
                "internal_error",
            ),
        };
        Self {
            status,
            message: message.to_owned(),
            kind,
            param: None,
            code: Some(code),
            retry_after_s,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({
            "error": {
                "message": self.message,
                "type": self.kind,
                "param": self.param,
                "code": self.code,
            }
        });
        let mut resp = (self.status, axum::Json(body)).into_response();
        if let Some(s) = self.retry_after_s {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(s));
        }
        resp
    }
}

/// Parses and validates a request body for `api` against the served model.
pub(crate) fn parse_job(api: Api, body: &[u8], cfg: &ResolvedConfig) -> Result<Job, ApiError> {
    let invalid_json = |e: serde_json::Error| {
        ApiError::bad_request(
            format!("Invalid request body: {e}"),
            None,
            "invalid_request_body",
        )
    };
    let (model, prompt_tokens, max_tokens, common) = match api {
        Api::Chat => {
            let r: ChatRequest = serde_json::from_slice(body).map_err(invalid_json)?;
            let messages = r.messages.ok_or_else(|| {
                ApiError::bad_request(
                    "Missing required parameter: 'messages'.",
                    Some("messages"),
                    "missing_required_parameter",
                )
            })?;
            let tokens = messages
                .iter()
                .fold(crate::tokens::count_chat([]), |acc, m| {
                    let words = match &m.content {
                        Some(Content::Text(t)) => crate::tokens::count_text(t),
                        Some(Content::Parts(parts)) => parts
                            .iter()
                            .filter_map(|p| p.text.as_deref())
                            .map(crate::tokens::count_text)
                            .fold(0u32, u32::saturating_add),
                        None => 0,
                    };
                    acc.saturating_add(crate::tokens::CHAT_TOKENS_PER_MESSAGE)
                        .saturating_add(words)
                });
            let max = r.max_completion_tokens.or(r.max_tokens);
            (r.model, tokens, max, r.common)
        }
        Api::Completions => {
            let r: CompletionRequest = serde_json::from_slice(body).map_err(invalid_json)?;
            let count = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
            let tokens = match r.prompt {
                None => {
                    return Err(ApiError::bad_request(
                        "Missing required parameter: 'prompt'.",
                        Some("prompt"),
                        "missing_required_parameter",
                    ));
                }
                Some(Prompt::Text(t)) => crate::tokens::count_text(&t),
                Some(Prompt::Ids(ids)) => count(ids.len()),
                Some(Prompt::Texts(t)) if t.len() == 1 => crate::tokens::count_text(&t[0]),
                Some(Prompt::IdLists(l)) if l.len() == 1 => count(l[0].len()),
                Some(_) => {
                    return Err(ApiError::bad_request(
                        "The simulator serves one prompt per request; send a string or a \
                         one-element array.",
                        Some("prompt"),
                        "unsupported_parameter",
                    ));
                }
            };
            if tokens == 0 {
                return Err(ApiError::bad_request(
                    "The prompt must not be empty.",
                    Some("prompt"),
                    "invalid_prompt",
                ));
            }
            (r.model, tokens, r.max_tokens, r.common)
        }
    };

    match model.as_deref() {
        Some(m) if m == cfg.model => {}
        Some(m) => {
            return Err(ApiError::not_found(
                format!("The model `{m}` does not exist."),
                Some("model"),
            ));
        }
        None => {
            return Err(ApiError::bad_request(
                "Missing required parameter: 'model'.",
                Some("model"),
                "missing_required_parameter",
            ));
        }
    }
    if common.n.is_some_and(|n| n != 1) {
        return Err(ApiError::bad_request(
            "The simulator serves n = 1 only.",
            Some("n"),
            "unsupported_parameter",
        ));
    }
    if max_tokens == Some(0) {
        return Err(ApiError::bad_request(
            "max_tokens must be at least 1, got 0.",
            Some("max_tokens"),
            "invalid_value",
        ));
    }
    let room = cfg.max_model_len.saturating_sub(prompt_tokens);
    let max_tokens_given = max_tokens.is_some();
    let max_tokens = max_tokens.unwrap_or(cfg.default_max_tokens.min(room));
    let total = u64::from(prompt_tokens) + u64::from(max_tokens);
    if room == 0 || total > u64::from(cfg.max_model_len) {
        let asked = if max_tokens_given {
            format!(
                "However, you requested {total} tokens ({prompt_tokens} in the messages, \
                 {max_tokens} in the completion)."
            )
        } else {
            format!("However, your messages resulted in {prompt_tokens} tokens.")
        };
        return Err(ApiError::bad_request(
            format!(
                "This model's maximum context length is {} tokens. {asked} Please reduce the \
                 length of the messages or completion.",
                cfg.max_model_len
            ),
            Some(if api == Api::Chat {
                "messages"
            } else {
                "prompt"
            }),
            "context_length_exceeded",
        ));
    }
    let min_tokens = common.min_tokens.unwrap_or(0);
    if min_tokens > max_tokens {
        return Err(ApiError::bad_request(
            format!(
                "min_tokens ({min_tokens}) must be less than or equal to max_tokens ({max_tokens})."
            ),
            Some("min_tokens"),
            "invalid_value",
        ));
    }
    let stream = common.stream.unwrap_or(false);
    Ok(Job {
        api,
        prompt_tokens,
        max_tokens,
        min_tokens,
        ignore_eos: common.ignore_eos.unwrap_or(false),
        stream,
        include_usage: stream
            && common
                .stream_options
                .and_then(|o| o.include_usage)
                .unwrap_or(false),
    })
}

/// Formats one response's SSE events, with the invariant parts rendered once.
#[derive(Debug)]
pub(crate) struct ChunkFormat {
    api: Api,
    /// `data: {"id":...,"object":...,"created":...,"model":...,"choices":[`
    head: String,
}

/// Response id, object name and creation time of one response.
#[derive(Debug, Clone)]
pub(crate) struct ResponseMeta {
    pub(crate) id: String,
    pub(crate) created: u64,
    /// The model id as a JSON string, quotes included.
    pub(crate) model_json: String,
}

impl ResponseMeta {
    pub(crate) fn new(api: Api, serial: u64, created: u64, model_json: &str) -> Self {
        let prefix = match api {
            Api::Chat => "chatcmpl-",
            Api::Completions => "cmpl-",
        };
        // Random-looking like vLLM's uuid hex, yet a pure function of the serial and seed.
        let (hi, lo) = (splitmix64(serial), splitmix64(serial ^ 0x0005_EED0_F1D5));
        Self {
            id: format!("{prefix}{hi:016x}{lo:016x}"),
            created,
            model_json: model_json.to_owned(),
        }
    }
}

fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

const DONE: &[u8] = b"data: [DONE]\n\n";

impl ChunkFormat {
    pub(crate) fn new(api: Api, meta: &ResponseMeta) -> Self {
        let object = match api {
            Api::Chat => "chat.completion.chunk",
            Api::Completions => "text_completion",
        };
        let mut head = String::with_capacity(160);
        let _ = write!(
            head,
            "data: {{\"id\":\"{}\",\"object\":\"{object}\",\"created\":{},\"model\":{},\"choices\":[",
            meta.id, meta.created, meta.model_json
        );
        Self { api, head }
    }

    /// vLLM's first chat chunk: the role, with empty content.
    pub(crate) fn role(&self, out: &mut Vec<u8>) {
        if self.api == Api::Chat {
            out.extend_from_slice(self.head.as_bytes());
            out.extend_from_slice(
                b"{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"},\"logprobs\":null,\"finish_reason\":null}]}\n\n",
            );
        }
    }

    /// One token's chunk; `text` must need no JSON escaping (the vocabulary's words do not).
    pub(crate) fn token(&self, out: &mut Vec<u8>, text: &str, finish: Option<FinishReason>) {
        out.extend_from_slice(self.head.as_bytes());
        match self.api {
            Api::Chat => {
                out.extend_from_slice(b"{\"index\":0,\"delta\":{\"content\":\"");
                out.extend_from_slice(text.as_bytes());
                out.extend_from_slice(b"\"},\"logprobs\":null,\"finish_reason\":");
            }
            Api::Completions => {
                out.extend_from_slice(b"{\"index\":0,\"text\":\"");
                out.extend_from_slice(text.as_bytes());
                out.extend_from_slice(b"\",\"logprobs\":null,\"finish_reason\":");
            }
        }
        match finish {
            None => out.extend_from_slice(b"null}]}\n\n"),
            Some(f) => {
                out.push(b'"');
                out.extend_from_slice(f.as_str().as_bytes());
                out.extend_from_slice(b"\",\"stop_reason\":null}]}\n\n");
            }
        }
    }

    /// The usage chunk sent last when `stream_options.include_usage` is set.
    pub(crate) fn usage(&self, out: &mut Vec<u8>, prompt: u32, completion: u32) {
        out.extend_from_slice(self.head.as_bytes());
        let total = u64::from(prompt) + u64::from(completion);
        let _ = write!(
            VecWriter(out),
            "],\"usage\":{{\"prompt_tokens\":{prompt},\"total_tokens\":{total},\"completion_tokens\":{completion}}}}}\n\n"
        );
    }

    /// The stream's terminator.
    pub(crate) fn done(out: &mut Vec<u8>) {
        out.extend_from_slice(DONE);
    }

    /// An event whose JSON is cut short: the malformed-SSE fault.
    pub(crate) fn malformed(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self.head.as_bytes());
        out.extend_from_slice(b"{\"index\":0,\"delta\":{\"content\":\n\n");
    }
}

/// `fmt::Write` into a byte vector, for `write!` on the streaming path.
struct VecWriter<'a>(&'a mut Vec<u8>);

impl std::fmt::Write for VecWriter<'_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.0.extend_from_slice(s.as_bytes());
        Ok(())
    }
}

/// The non-streaming response body.
pub(crate) fn full_response(
    api: Api,
    meta: &ResponseMeta,
    model: &str,
    text: &str,
    finish: FinishReason,
    prompt: u32,
    completion: u32,
) -> serde_json::Value {
    let usage = json!({
        "prompt_tokens": prompt,
        "total_tokens": u64::from(prompt) + u64::from(completion),
        "completion_tokens": completion,
    });
    match api {
        Api::Chat => json!({
            "id": meta.id,
            "object": "chat.completion",
            "created": meta.created,
            "model": model,
            "choices": [{
                "index": 0,
                "message": {"role": "assistant", "content": text, "tool_calls": []},
                "logprobs": null,
                "finish_reason": finish.as_str(),
                "stop_reason": null,
            }],
            "usage": usage,
            "prompt_logprobs": null,
        }),
        Api::Completions => json!({
            "id": meta.id,
            "object": "text_completion",
            "created": meta.created,
            "model": model,
            "choices": [{
                "index": 0,
                "text": text,
                "logprobs": null,
                "finish_reason": finish.as_str(),
                "stop_reason": null,
                "prompt_logprobs": null,
            }],
            "usage": usage,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::SimConfig;
    use serde_json::Value;

    fn cfg() -> ResolvedConfig {
        SimConfig {
            max_model_len: Some(100),
            ..SimConfig::default()
        }
        .resolve()
        .expect("valid")
    }

    fn events(bytes: &[u8]) -> Vec<Value> {
        let text = std::str::from_utf8(bytes).expect("utf8");
        text.split("\n\n")
            .filter(|e| !e.is_empty())
            .map(|e| {
                let data = e.strip_prefix("data: ").expect("data line");
                serde_json::from_str(data).expect("json")
            })
            .collect()
    }

    #[test]
    fn chunks_are_vllm_shaped_json() {
        let meta = ResponseMeta::new(Api::Chat, 7, 1_700_000_000, "\"m\"");
        let f = ChunkFormat::new(Api::Chat, &meta);
        let mut out = Vec::new();
        f.role(&mut out);
        f.token(&mut out, " the", None);
        f.token(&mut out, " end", Some(FinishReason::Length));
        f.usage(&mut out, 10, 2);
        let ev = events(&out);
        assert_eq!(ev[0]["choices"][0]["delta"]["role"], "assistant");
        let id = ev[0]["id"].as_str().expect("id");
        assert!(id.starts_with("chatcmpl-") && id.len() == 9 + 32, "{id}");
        assert!(ev.iter().all(|e| e["id"] == id), "one id per response");
        assert_eq!(ev[1]["object"], "chat.completion.chunk");
        assert_eq!(ev[1]["choices"][0]["delta"]["content"], " the");
        assert_eq!(ev[1]["choices"][0]["finish_reason"], Value::Null);
        assert_eq!(ev[2]["choices"][0]["finish_reason"], "length");
        assert_eq!(ev[3]["choices"], json!([]));
        assert_eq!(ev[3]["usage"]["total_tokens"], 12);

        let meta = ResponseMeta::new(Api::Completions, 7, 1, "\"m\"");
        let f = ChunkFormat::new(Api::Completions, &meta);
        let mut out = Vec::new();
        f.role(&mut out);
        f.token(&mut out, " a", Some(FinishReason::Stop));
        let ev = events(&out);
        assert_eq!(ev.len(), 1, "no role chunk for completions");
        assert_eq!(ev[0]["object"], "text_completion");
        assert_eq!(ev[0]["choices"][0]["text"], " a");
        assert_eq!(ev[0]["choices"][0]["finish_reason"], "stop");
    }

    #[test]
    fn malformed_chunk_does_not_parse() {
        let meta = ResponseMeta::new(Api::Chat, 1, 1, "\"m\"");
        let mut out = Vec::new();
        ChunkFormat::new(Api::Chat, &meta).malformed(&mut out);
        let text = String::from_utf8(out).expect("utf8");
        let data = text.trim_end().strip_prefix("data: ").expect("data");
        assert!(serde_json::from_str::<Value>(data).is_err());
    }

    #[test]
    fn requests_validate() {
        let c = cfg();
        let chat = |body: &str| parse_job(Api::Chat, body.as_bytes(), &c);
        let job = chat(r#"{"model":"sim-llama-3.1-8b","messages":[{"role":"user","content":"a b c"}],"max_completion_tokens":5,"stream":true,"stream_options":{"include_usage":true},"temperature":0.7}"#).expect("valid");
        assert_eq!(job.prompt_tokens, 3 + 4 + 3);
        assert_eq!(job.max_tokens, 5);
        assert!(job.stream && job.include_usage);
        let job = chat(r#"{"model":"sim-llama-3.1-8b","messages":[{"role":"user","content":[{"type":"text","text":"a b"}]}]}"#).expect("valid");
        assert_eq!(job.max_tokens, 16);
        assert!(!job.include_usage);

        let status = |r: Result<Job, ApiError>| r.expect_err("invalid").status.as_u16();
        assert_eq!(status(chat("{not json")), 400);
        assert_eq!(status(chat(r#"{"model":"sim-llama-3.1-8b"}"#)), 400);
        assert_eq!(status(chat(r#"{"model":"x","messages":[]}"#)), 404);
        assert_eq!(
            status(chat(
                r#"{"model":"sim-llama-3.1-8b","messages":[],"max_tokens":"many"}"#
            )),
            400
        );
        assert_eq!(
            status(chat(
                r#"{"model":"sim-llama-3.1-8b","messages":[],"max_tokens":98}"#
            )),
            400,
            "3 + 98 > 100"
        );
        assert_eq!(
            status(chat(
                r#"{"model":"sim-llama-3.1-8b","messages":[],"max_tokens":4,"min_tokens":5}"#
            )),
            400
        );

        let comp = |body: &str| parse_job(Api::Completions, body.as_bytes(), &c);
        assert_eq!(
            comp(r#"{"model":"sim-llama-3.1-8b","prompt":["x y"]}"#)
                .expect("valid")
                .prompt_tokens,
            2
        );
        assert_eq!(
            comp(r#"{"model":"sim-llama-3.1-8b","prompt":[1,2,3]}"#)
                .expect("valid")
                .prompt_tokens,
            3
        );
        assert_eq!(status(comp(r#"{"model":"sim-llama-3.1-8b"}"#)), 400);
        assert_eq!(
            status(comp(r#"{"model":"sim-llama-3.1-8b","prompt":""}"#)),
            400
        );
        let long = format!(
            r#"{{"model":"sim-llama-3.1-8b","prompt":"{}"}}"#,
            "w ".repeat(100)
        );
        let err = comp(&long).expect_err("too long");
        assert_eq!(err.code, Some("context_length_exceeded"));
    }

    #[test]
    fn error_bodies_are_openai_shaped() {
        let resp = ApiError::injected(429, Some(2)).into_response();
        assert_eq!(resp.status(), 429);
        assert_eq!(resp.headers()[header::RETRY_AFTER], "2");
    }
}
