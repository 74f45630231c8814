//! Helpers shared by the simulator's integration tests: an in-process server on
//! 127.0.0.1:0, an SSE reader that timestamps events, and the Prometheus text check (the real
//! parser, then the promises of our writer).

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

/// Parses Prometheus text format 0.0.4 with the real parser (`prom_text_format_parser`), then
/// checks what it lets through and our writer promises: every family typed (a `# TYPE` before
/// its samples; the parser makes a sample without one an untyped family of its own), no family
/// twice, label values that unescape (`\\`, `\"`, `\n` only), and histograms whose buckets
/// are cumulative and end in a `+Inf` bucket equal to `_count`, for each series.
pub fn parse_prometheus(text: &str) -> Result<Vec<Sample>, String> {
    use prom_text_format_parser::{Scrape, Type, ValueType};
    let scrape = Scrape::parse(text).map_err(|e| format!("does not parse: {e:?}"))?;
    let mut samples = Vec::new();
    let mut families = std::collections::BTreeSet::new();
    for m in &scrape.metrics {
        if m.kind == Type::Untyped {
            return Err(format!("{}: samples without a TYPE before them", m.name));
        }
        if !families.insert(m.name.clone()) {
            return Err(format!("{}: the family is written twice", m.name));
        }
        let mut series = Vec::new();
        for s in &m.samples {
            let suffix = match (m.kind, s.value.value_type) {
                (Type::Histogram, ValueType::Sample) => "_bucket",
                (_, ValueType::Sum) => "_sum",
                (_, ValueType::Count) => "_count",
                _ => "",
            };
            let mut labels = BTreeMap::new();
            for l in s.labels.iter() {
                labels.insert(
                    l.key.clone(),
                    unescape(&l.value).map_err(|e| format!("{}: {e}", m.name))?,
                );
            }
            let raw = s.value.value.as_str();
            let value = raw
                .parse::<f64>()
                .map_err(|_| format!("{}: bad value {raw:?}", m.name))?;
            series.push(Sample {
                name: format!("{}{suffix}", m.name),
                labels,
                value,
            });
        }
        if m.kind == Type::Histogram {
            check_histogram(&m.name, &series)?;
        }
        samples.extend(series);
    }
    Ok(samples)
}

/// A label value as the text format escapes it, unescaped.
fn unescape(raw: &str) -> Result<String, String> {
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some('n') => out.push('\n'),
                Some('\\') => out.push('\\'),
                Some('"') => out.push('"'),
                other => return Err(format!("bad escape \\{other:?} in {raw:?}")),
            },
            '"' => return Err(format!("unescaped quote in {raw:?}")),
            c => out.push(c),
        }
    }
    Ok(out)
}

/// Each series of a histogram (its labels but `le`): buckets rising in `le` and cumulative,
/// the last one `+Inf`, equal to the series' `_count`.
fn check_histogram(family: &str, samples: &[Sample]) -> Result<(), String> {
    let key = |s: &Sample| {
        let mut l = s.labels.clone();
        l.remove("le");
        l
    };
    let bucket = format!("{family}_bucket");
    let count = format!("{family}_count");
    let mut series: Vec<BTreeMap<String, String>> = samples.iter().map(key).collect();
    series.dedup();
    for labels in series {
        let (mut last, mut last_le, mut inf) = (-1.0, f64::NEG_INFINITY, None);
        for s in samples
            .iter()
            .filter(|s| s.name == bucket && key(s) == labels)
        {
            let le: f64 = match s.labels.get("le").map(String::as_str) {
                Some("+Inf") => f64::INFINITY,
                Some(v) => v.parse().map_err(|_| format!("{family}: bad le {v}"))?,
                None => return Err(format!("{family}: bucket without le")),
            };
            if le <= last_le || s.value < last || inf.is_some() {
                return Err(format!("{family}{labels:?}: buckets not cumulative"));
            }
            (last_le, last) = (le, s.value);
            if le.is_infinite() {
                inf = Some(s.value);
            }
        }
        let n = (samples.iter())
            .find(|s| s.name == count && key(s) == labels)
            .map(|s| s.value);
        if inf.is_none() || inf != n {
            return Err(format!(
                "{family}{labels:?}: +Inf bucket {inf:?} != count {n:?}"
            ));
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
