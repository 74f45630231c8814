//! How many prompts one core builds per second: 4096-token chat requests, body included, for
//! synthetic text, a template filled to length, and a multi-class workload.
//!
//!   cargo run --release -p stampede-agent --example prompt_bench [-- TOKENIZER [SECONDS]]
// std's Instant on purpose: a benchmark times real work on the real clock, which paused time cannot stand in for.
#![allow(clippy::disallowed_types)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Map;
use stampede_agent::workload::{BuilderConfig, RequestBuilder, WorkloadEngine};
use stampede_common::plan::ApiKind;
use stampede_common::workload::{LengthDist, SourceSpec, WorkloadSpec};

fn builder(spec: &WorkloadSpec) -> RequestBuilder {
    let engine = WorkloadEngine::try_new(spec, "bench".into()).expect("the workload builds");
    RequestBuilder::new(
        Arc::new(engine),
        BuilderConfig {
            api: ApiKind::Chat,
            model: "bench".into(),
            stream: true,
            seed: 1,
            stage: 0,
            agent_index: 0,
            agent_count: 1,
            input_tokens: None,
            output_tokens: None,
        },
    )
}

/// Builds requests for `secs` on this thread; returns requests per second and body bytes.
fn run(b: &RequestBuilder, secs: f64) -> (f64, usize) {
    let start = Instant::now();
    let (mut n, mut bytes) = (0u64, 0usize);
    while start.elapsed() < Duration::from_secs_f64(secs) {
        for _ in 0..16 {
            let t = b.build(n);
            bytes = t.req.body.len();
            n += 1;
        }
    }
    (n as f64 / start.elapsed().as_secs_f64(), bytes)
}

fn main() {
    let mut args = std::env::args().skip(1);
    let tokenizer = args.next().unwrap_or_else(|| "cl100k_base".into());
    let secs: f64 = args.next().and_then(|s| s.parse().ok()).unwrap_or(3.0);
    let mut synthetic = WorkloadSpec::fixed(4096, 256, true);
    synthetic.tokenizer = tokenizer.clone();
    let mut templated = synthetic.clone();
    templated.classes[0].source = SourceSpec::Template {
        name: "bench.j2".into(),
        text: "Summarize report {{ index }} for {{ who }}:\n{{ fill() }}\nSummary:".into(),
        vars: Map::from_iter([("who".to_string(), "an executive".into())]),
        rows: Vec::new(),
        rows_file: None,
    };
    let mut mixed = synthetic.clone();
    let mut short = mixed.classes[0].clone();
    short.name = "chat".into();
    short.weight = 0.7;
    short.input_tokens = LengthDist::Uniform { min: 50, max: 300 };
    mixed.classes[0].weight = 0.3;
    mixed.classes.insert(0, short);
    println!("prompt building on one core, tokenizer {tokenizer}, {secs} s each");
    for (name, spec) in [
        ("synthetic 4096-token prompts", &synthetic),
        ("template filled to 4096 tokens", &templated),
        ("mixed: 70% 50-300 tokens, 30% 4096", &mixed),
    ] {
        let b = builder(spec);
        let (rate, bytes) = run(&b, secs);
        println!("{name:<38} {rate:>10.0} requests/s  ({bytes} bytes per body)");
    }
}
