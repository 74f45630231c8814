//! Helpers shared by the simulator's integration tests: an in-process server on
//! 127.0.0.1:0, an SSE reader that timestamps events, and a small Prometheus text parser.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use serde_json::{Value, json};
use stampede_sim::{Metrics, Sim, SimConfig, SimError};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio::time::Instant;

pub const MODEL: &str = "sim-llama-3.1-8b";

/// A simulator serving in this process; stopped on drop.
pub struct TestSim {
    pub base: String,
    pub metrics: Arc<Metrics>,
    stop: Option<oneshot::Sender<()>>,
    handle: Option<JoinHandle<Result<(), SimError>>>,
}

impl TestSim {
    pub async fn start(config: SimConfig) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let sim = Sim::try_new(&config).expect("valid config");
        let metrics = sim.metrics();
        let (tx, rx) = oneshot::channel::<()>();
        let handle = tokio::spawn(sim.serve(listener, async {
            let _ = rx.await;
        }));
        Self {
            base: format!("http://{addr}"),
            metrics,
            stop: Some(tx),
            handle: Some(handle),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Stops the server and waits for `serve` to return.
    pub async fn stop(mut self) -> Result<(), SimError> {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        let handle = self.handle.take().expect("running");
        tokio::time::timeout(Duration::from_secs(10), handle)
            .await
            .expect("serve returns after shutdown")
            .expect("joined")
    }
}

impl Drop for TestSim {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .pool_max_idle_per_host(64)
        .build()
        .expect("client")
}

pub fn chat_body(words: usize, max_tokens: u32, stream: bool, usage: bool) -> Value {
    let content = vec!["hello"; words].join(" ");
    json!({
        "model": MODEL,
        "messages": [{"role": "user", "content": content}],
        "max_tokens": max_tokens,
        "stream": stream,
        "stream_options": {"include_usage": usage},
        "ignore_eos": true,
    })
}

pub fn completion_body(words: usize, max_tokens: u32, stream: bool, usage: bool) -> Value {
    let mut body = json!({
        "model": MODEL,
        "prompt": vec!["hello"; words].join(" "),
        "max_tokens": max_tokens,
        "stream": stream,
    });
    if usage {
        body["stream_options"] = json!({"include_usage": true});
    }
    body
}

/// One SSE event as the client saw it.
#[derive(Debug, Clone)]
pub struct Event {
    pub at: Instant,
    pub data: String,
}

impl Event {
    pub fn json(&self) -> Option<Value> {
        serde_json::from_str(&self.data).ok()
    }

    pub fn is_done(&self) -> bool {
        self.data == "[DONE]"
    }

    /// The token text this event carries, if any (chat delta or completion text).
    pub fn content(&self) -> Option<String> {
        let v = self.json()?;
        let choice = v.get("choices")?.get(0)?;
        let text = choice
            .get("delta")
            .and_then(|d| d.get("content"))
            .or_else(|| choice.get("text"))?
            .as_str()?;
        (!text.is_empty()).then(|| text.to_owned())
    }
}

/// What a streamed response delivered.
#[derive(Debug)]
pub struct Streamed {
    pub sent: Instant,
    pub status: u16,
    pub events: Vec<Event>,
    /// The body ended with an error (reset, truncated chunked encoding).
    pub broken: bool,
}

impl Streamed {
    pub fn contents(&self) -> Vec<&Event> {
        self.events
            .iter()
            .filter(|e| e.content().is_some())
            .collect()
    }

    pub fn done(&self) -> bool {
        self.events.last().is_some_and(Event::is_done)
    }

    pub fn usage(&self) -> Option<Value> {
        self.events
            .iter()
            .filter_map(Event::json)
            .find_map(|v| v.get("usage").filter(|u| !u.is_null()).cloned())
    }

    pub fn finish_reason(&self) -> Option<String> {
        self.events.iter().filter_map(Event::json).find_map(|v| {
            v["choices"]
                .get(0)?
                .get("finish_reason")?
                .as_str()
                .map(str::to_owned)
        })
    }

    pub fn ttft(&self) -> Option<Duration> {
        Some(self.contents().first()?.at - self.sent)
    }

    pub fn gaps(&self) -> Vec<Duration> {
        self.contents()
            .windows(2)
            .map(|w| w[1].at - w[0].at)
            .collect()
    }
}

/// Sends a streaming request and reads it to the end, timestamping each event on arrival.
/// `Err` when the request failed before a response (connection reset, refused).
pub async fn stream(
    client: &reqwest::Client,
    url: &str,
    body: &Value,
) -> Result<Streamed, reqwest::Error> {
    let sent = Instant::now();
    let resp = client.post(url).json(body).send().await?;
    let status = resp.status().as_u16();
    let mut events = Vec::new();
    let mut buf: Vec<u8> = Vec::new();
    let mut broken = false;
    let mut body = resp.bytes_stream();
    while let Some(chunk) = body.next().await {
        let Ok(chunk) = chunk else {
            broken = true;
            break;
        };
        let at = Instant::now();
        buf.extend_from_slice(&chunk);
        while let Some(pos) = buf.windows(2).position(|w| w == b"\n\n") {
            let event: Vec<u8> = buf.drain(..pos + 2).collect();
            let text = String::from_utf8_lossy(&event[..pos]).into_owned();
            let data = text.strip_prefix("data: ").unwrap_or(&text).to_owned();
            events.push(Event { at, data });
        }
    }
    Ok(Streamed {
        sent,
        status,
        events,
        broken,
    })
}

pub fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// One sample of a Prometheus text exposition.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// Parses Prometheus text format 0.0.4 strictly enough to catch malformed output: metric and
/// label names, quoted and escaped label values, numeric values, a TYPE before each family's
/// samples, and histograms whose buckets are cumulative and agree with `_count`.
pub fn parse_prometheus(text: &str) -> Result<Vec<Sample>, String> {
    let mut samples = Vec::new();
    let mut types: BTreeMap<String, String> = BTreeMap::new();
    for (n, line) in text.lines().enumerate() {
        let err = |m: &str| Err(format!("line {}: {m}: {line:?}", n + 1));
        if line.is_empty() {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# ") {
            let mut parts = rest.splitn(3, ' ');
            match (parts.next(), parts.next(), parts.next()) {
                (Some("TYPE"), Some(name), Some(kind)) => {
                    if !["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind) {
                        return err("unknown type");
                    }
                    if types.insert(name.to_owned(), kind.to_owned()).is_some() {
                        return err("duplicate TYPE");
                    }
                }
                (Some("HELP"), Some(_), _) => {}
                _ => return err("bad comment"),
            }
            continue;
        }
        let name_end = line.find(['{', ' ']).ok_or("no value")?;
        let name = &line[..name_end];
        if !valid_name(name) {
            return err("bad metric name");
        }
        let mut labels = BTreeMap::new();
        let mut rest = &line[name_end..];
        if let Some(inner) = rest.strip_prefix('{') {
            let b = inner.as_bytes();
            let mut i = 0;
            loop {
                if b.get(i) == Some(&b'}') {
                    i += 1;
                    break;
                }
                let eq = inner[i..].find('=').ok_or("label without =")? + i;
                let lname = &inner[i..eq];
                if !valid_name(lname) || lname.contains(':') {
                    return err("bad label name");
                }
                if b.get(eq + 1) != Some(&b'"') {
                    return err("unquoted label value");
                }
                let mut value = String::new();
                i = eq + 2;
                loop {
                    match b.get(i) {
                        None => return err("unterminated label value"),
                        Some(b'\\') => {
                            match b.get(i + 1) {
                                Some(b'n') => value.push('\n'),
                                Some(b'\\') => value.push('\\'),
                                Some(b'"') => value.push('"'),
                                _ => return err("bad escape"),
                            }
                            i += 2;
                        }
                        Some(b'"') => break,
                        Some(_) => {
                            let c = inner[i..].chars().next().ok_or("utf8")?;
                            value.push(c);
                            i += c.len_utf8();
                        }
                    }
                }
                labels.insert(lname.to_owned(), value);
                i += 1;
                match b.get(i) {
                    Some(b',') => i += 1,
                    Some(b'}') => {
                        i += 1;
                        break;
                    }
                    _ => return err("expected , or }"),
                }
            }
            rest = &inner[i..];
        }
        let value_text = rest.trim();
        let value: f64 = match value_text {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            "NaN" => f64::NAN,
            v => v
                .parse()
                .map_err(|_| format!("line {}: bad value {v:?}", n + 1))?,
        };
        let family = family_of(name, &types);
        if family.is_none() {
            return err("sample before its TYPE");
        }
        samples.push(Sample {
            name: name.to_owned(),
            labels,
            value,
        });
    }
    check_histograms(&samples, &types)?;
    Ok(samples)
}

fn valid_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

fn family_of<'a>(name: &'a str, types: &BTreeMap<String, String>) -> Option<&'a str> {
    if types.contains_key(name) {
        return Some(name);
    }
    for suffix in ["_bucket", "_sum", "_count"] {
        if let Some(base) = name.strip_suffix(suffix)
            && types
                .get(base)
                .is_some_and(|t| t == "histogram" || t == "summary")
        {
            return Some(base);
        }
    }
    None
}

fn check_histograms(samples: &[Sample], types: &BTreeMap<String, String>) -> Result<(), String> {
    for (family, _) in types.iter().filter(|(_, t)| *t == "histogram") {
        let bucket = format!("{family}_bucket");
        let mut last = -1.0;
        let mut last_le = f64::NEG_INFINITY;
        let mut inf = None;
        for s in samples.iter().filter(|s| s.name == bucket) {
            let le: f64 = match s.labels.get("le").map(String::as_str) {
                Some("+Inf") => f64::INFINITY,
                Some(v) => v.parse().map_err(|_| format!("{family}: bad le {v}"))?,
                None => return Err(format!("{family}: bucket without le")),
            };
            if le <= last_le || s.value < last {
                return Err(format!("{family}: buckets not cumulative"));
            }
            last_le = le;
            last = s.value;
            if le.is_infinite() {
                inf = Some(s.value);
            }
        }
        let count = samples
            .iter()
            .find(|s| s.name == format!("{family}_count"))
            .map(|s| s.value);
        if inf.is_none() || inf != count {
            return Err(format!("{family}: +Inf bucket {inf:?} != count {count:?}"));
        }
    }
    Ok(())
}

/// The value of the first sample named `name` whose labels include `labels`.
pub fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    samples
        .iter()
        .find(|s| {
            s.name == name
                && labels
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).is_some_and(|x| x == v))
        })
        .map(|s| s.value)
}

pub async fn scrape(client: &reqwest::Client, sim: &TestSim) -> Vec<Sample> {
    let text = client
        .get(sim.url("/metrics"))
        .send()
        .await
        .expect("scrape")
        .text()
        .await
        .expect("body");
    parse_prometheus(&text).unwrap_or_else(|e| panic!("{e}\n{text}"))
}
