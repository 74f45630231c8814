//! The workload end to end: specs in, request bodies out, lengths counted with the tokenizer.

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;
use serde_json::{Map, Value};
use stampede_common::workload::{
    ClassSpec, DatasetRow, Fit, LengthDist, MultiTurnSpec, PrefixSpec, SourceSpec, WorkloadSpec,
};

use super::*;

fn class(name: &str, weight: f64, input: LengthDist) -> ClassSpec {
    let mut c = WorkloadSpec::fixed(1, 16, true).classes.remove(0);
    c.name = name.into();
    c.weight = weight;
    c.input_tokens = input;
    c
}

fn spec(tokenizer: &str, classes: Vec<ClassSpec>) -> WorkloadSpec {
    WorkloadSpec {
        tokenizer: tokenizer.into(),
        tokenizer_json: None,
        classes,
    }
}

fn engine(s: &WorkloadSpec) -> Arc<WorkloadEngine> {
    Arc::new(WorkloadEngine::try_new(s, "test".into()).unwrap())
}

fn builder(
    e: &Arc<WorkloadEngine>,
    api: ApiKind,
    seed: u64,
    agent: u32,
    agents: u32,
) -> RequestBuilder {
    RequestBuilder::new(
        Arc::clone(e),
        BuilderConfig {
            api,
            model: "m".into(),
            stream: true,
            seed,
            stage: 3,
            agent_index: agent,
            agent_count: agents,
            input_tokens: None,
            output_tokens: None,
        },
    )
}

fn json(req: &PreparedRequest) -> Value {
    serde_json::from_slice(&req.body).unwrap()
}

/// The prompt's length as the tokenizer counts it: the sum of the messages' contents.
fn counted(e: &WorkloadEngine, req: &PreparedRequest) -> usize {
    let v = json(req);
    match v.get("messages") {
        Some(m) => m
            .as_array()
            .unwrap()
            .iter()
            .map(|m| e.tokenizer().count(m["content"].as_str().unwrap()))
            .sum(),
        None => e.tokenizer().count(v["prompt"].as_str().unwrap()),
    }
}

fn first_message(req: &PreparedRequest) -> String {
    let v = json(req);
    v["messages"].as_array().unwrap().last().unwrap()["content"]
        .as_str()
        .unwrap()
        .to_string()
}

#[test]
fn lengths_are_exact_for_each_tokenizer_and_distribution() {
    let dists = [
        LengthDist::Fixed(1000),
        LengthDist::Uniform {
            min: 1000,
            max: 4096,
        },
        LengthDist::Normal {
            mean: 2048.0,
            stddev: 512.0,
            min: 1,
            max: 4096,
        },
        LengthDist::Choices(vec![1, 2, 3, 17, 333]),
    ];
    for tokenizer in ["cl100k_base", "o200k_base"] {
        for dist in &dists {
            let e = engine(&spec(tokenizer, vec![class("c", 1.0, dist.clone())]));
            for api in [ApiKind::Chat, ApiKind::Completions] {
                let b = builder(&e, api, 7, 0, 1);
                for id in 0..6 {
                    let req = b.build(id).req;
                    assert_eq!(
                        counted(&e, &req),
                        req.input_tokens as usize,
                        "{tokenizer} {dist:?}"
                    );
                    assert!(req.input_tokens >= dist.min() && req.input_tokens <= dist.max());
                }
            }
        }
    }
}

#[test]
fn the_extremes_one_and_128k_tokens_are_exact() {
    let e = engine(&spec(
        "cl100k_base",
        vec![class("c", 1.0, LengthDist::Choices(vec![1, 131_072]))],
    ));
    let b = builder(&e, ApiKind::Chat, 1, 0, 1);
    let mut seen = BTreeSet::new();
    for id in 0..8 {
        let req = b.build(id).req;
        assert_eq!(counted(&e, &req), req.input_tokens as usize);
        seen.insert(req.input_tokens);
    }
    assert_eq!(seen, BTreeSet::from([1, 131_072]));
}

#[test]
fn prompts_are_unique_per_request_unless_asked_otherwise() {
    let e = engine(&spec(
        "cl100k_base",
        vec![class("c", 1.0, LengthDist::Fixed(200))],
    ));
    let b = builder(&e, ApiKind::Chat, 7, 0, 1);
    let firsts: BTreeSet<String> = (0..50)
        .map(|id| {
            let p = first_message(&b.build(id).req);
            p.split(' ').take(4).collect::<Vec<_>>().join(" ")
        })
        .collect();
    assert_eq!(
        firsts.len(),
        50,
        "the first four words differ between requests"
    );
    let mut c = class("c", 1.0, LengthDist::Fixed(200));
    c.unique = false;
    let e = engine(&spec("cl100k_base", vec![c]));
    let b = builder(&e, ApiKind::Chat, 7, 0, 1);
    assert_eq!(
        first_message(&b.build(0).req),
        first_message(&b.build(9).req)
    );
}

#[test]
fn the_same_seed_sends_the_same_requests_split_across_agents() {
    let s = spec(
        "cl100k_base",
        vec![
            class("a", 1.0, LengthDist::Uniform { min: 10, max: 90 }),
            class("b", 2.0, LengthDist::Fixed(50)),
        ],
    );
    let (e1, e2) = (engine(&s), engine(&s));
    let bodies = |e: &Arc<WorkloadEngine>, seed: u64| -> Vec<Bytes> {
        let b = builder(e, ApiKind::Chat, seed, 0, 1);
        (0..20).map(|id| b.build(id).req.body).collect()
    };
    assert_eq!(bodies(&e1, 5), bodies(&e2, 5));
    assert_ne!(bodies(&e1, 5), bodies(&e1, 6));
    // Two agents send the one-agent sequence between them: agent a's request i is number
    // 2i + a of the run.
    let one = bodies(&e1, 5);
    let a0 = builder(&e1, ApiKind::Chat, 5, 0, 2);
    let a1 = builder(&e1, ApiKind::Chat, 5, 1, 2);
    for i in 0..10u64 {
        assert_eq!(a0.build(i).req.body, one[2 * i as usize]);
        assert_eq!(a1.build(i).req.body, one[2 * i as usize + 1]);
    }
}

#[test]
fn classes_are_drawn_by_weight() {
    let e = engine(&spec(
        "cl100k_base",
        vec![
            class("chat", 70.0, LengthDist::Fixed(20)),
            class("summary", 30.0, LengthDist::Fixed(300)),
        ],
    ));
    let b = builder(&e, ApiKind::Chat, 1, 0, 1);
    let mut n = BTreeMap::new();
    for id in 0..2000 {
        let req = b.build(id).req;
        let expect = if req.class == 0 { 20 } else { 300 };
        assert_eq!(req.input_tokens, expect);
        *n.entry(req.class).or_insert(0u32) += 1;
    }
    let share = f64::from(n[&0]) / 2000.0;
    assert!((share - 0.7).abs() < 0.04, "{n:?}");
    assert_eq!(e.class_names(), vec!["chat", "summary"]);
}

#[test]
fn shared_prefixes_go_to_the_asked_fraction_and_count_in_the_length() {
    let mut c = class("c", 1.0, LengthDist::Fixed(600));
    c.shared_prefix = Some(PrefixSpec {
        count: 3,
        tokens: 400,
        fraction: 0.25,
    });
    let e = engine(&spec("cl100k_base", vec![c]));
    for api in [ApiKind::Chat, ApiKind::Completions] {
        let b = builder(&e, api, 1, 0, 1);
        let mut with = 0;
        let mut prefixes = BTreeSet::new();
        for id in 0..400 {
            let req = b.build(id).req;
            assert_eq!(counted(&e, &req), 600);
            let v = json(&req);
            let prefix = match api {
                ApiKind::Chat => {
                    let m = v["messages"].as_array().unwrap();
                    (m.len() == 2).then(|| m[0]["content"].as_str().unwrap().to_string())
                }
                ApiKind::Completions => {
                    let p = v["prompt"].as_str().unwrap();
                    p.split_once("\n\n").map(|(a, _)| a.to_string())
                }
            };
            if let Some(p) = prefix {
                with += 1;
                assert_eq!(e.tokenizer().count(&p), 400);
                prefixes.insert(p);
            }
        }
        assert_eq!(with, 100, "{api:?}: a quarter of the requests");
        assert_eq!(prefixes.len(), 3, "{api:?}: three prompts shared");
    }
    // Every agent and every step shares the same prefixes: they depend on the seed alone.
    let other = builder(&e, ApiKind::Chat, 1, 1, 2);
    assert_eq!(other.prefixes, builder(&e, ApiKind::Chat, 1, 0, 1).prefixes);
}

#[test]
fn a_session_carries_every_earlier_turn_and_answer() {
    let mut c = class("c", 1.0, LengthDist::Fixed(30));
    c.multi_turn = Some(MultiTurnSpec {
        turns: 3,
        think_time_us: 1000,
    });
    let e = engine(&spec("cl100k_base", vec![c]));
    let b = builder(&e, ApiKind::Chat, 1, 0, 1);
    let Turn { req, session } = b.build(4);
    let mut s = session.unwrap();
    assert!(req.capture_text);
    assert_eq!(req.input_tokens, 30);
    let answer1 = "the answer is forty two";
    let req2 = b.next_turn(&mut s, answer1).unwrap();
    let v = json(&req2);
    let m = v["messages"].as_array().unwrap();
    assert_eq!(m.len(), 3);
    assert_eq!(
        (m[1]["role"].as_str(), m[1]["content"].as_str()),
        (Some("assistant"), Some(answer1))
    );
    assert_eq!(req2.input_tokens, 30 + 5 + 30);
    assert_eq!(counted(&e, &req2), req2.input_tokens as usize);
    assert!(req2.capture_text);
    let req3 = b.next_turn(&mut s, "and more").unwrap();
    assert_eq!(req3.input_tokens, 65 + 2 + 30);
    assert_eq!(json(&req3)["messages"].as_array().unwrap().len(), 5);
    assert!(!req3.capture_text, "the last answer is not needed");
    assert_ne!((req.id, req2.id), (req3.id, req3.id));
    assert!(s.done());
    assert!(b.next_turn(&mut s, "x").is_none());
    assert_eq!(s.think_time(), std::time::Duration::from_millis(1));
}

#[test]
fn templates_and_datasets_build_to_length() {
    let mut t = class("t", 1.0, LengthDist::Uniform { min: 100, max: 500 });
    t.source = SourceSpec::Template {
        name: "t.j2".into(),
        text: "Summarize this for {{ who }}:\n{{ fill() }}".into(),
        vars: Map::from_iter([("who".to_string(), Value::from("a child"))]),
        rows: Vec::new(),
        rows_file: None,
    };
    let mut d = class("d", 1.0, LengthDist::Fixed(64));
    d.source = SourceSpec::Dataset {
        name: "d.txt".into(),
        rows: vec![DatasetRow {
            line: 1,
            messages: vec![stampede_common::workload::ChatMessage {
                role: "user".into(),
                content: "Why is the sky blue?".into(),
            }],
        }],
        fit: Fit::Pad,
    };
    let e = engine(&spec("cl100k_base", vec![t, d]));
    let b = builder(&e, ApiKind::Chat, 2, 0, 1);
    for id in 0..20 {
        let req = b.build(id).req;
        assert_eq!(counted(&e, &req), req.input_tokens as usize);
        let text = first_message(&req);
        if req.class == 0 {
            assert!(text.starts_with("Summarize this for a child:\n"));
        } else {
            assert_eq!(req.input_tokens, 64);
            assert!(text.starts_with("Why is the sky blue?"));
        }
    }
}

#[test]
fn bad_specs_are_refused_before_the_run() {
    let mut t = class("t", 1.0, LengthDist::Fixed(5));
    t.source = SourceSpec::Template {
        name: "t.j2".into(),
        text: "A long preamble that is already well over five tokens: {{ fill() }}".into(),
        vars: Map::new(),
        rows: Vec::new(),
        rows_file: None,
    };
    let e = WorkloadEngine::try_new(&spec("cl100k_base", vec![t]), "x".into()).unwrap_err();
    assert!(e.to_string().contains("a prompt of 5 tokens"), "{e}");
    let e = WorkloadEngine::try_new(
        &spec("gpt-9", vec![class("c", 1.0, LengthDist::Fixed(5))]),
        "x".into(),
    )
    .unwrap_err();
    assert!(e.to_string().starts_with("workload.tokenizer"), "{e}");
    let e = WorkloadEngine::try_new(
        &spec(
            "cl100k_base",
            vec![class("c", 1.0, LengthDist::Choices(vec![]))],
        ),
        "x".into(),
    )
    .unwrap_err();
    assert!(e.to_string().contains("input_tokens"), "{e}");
}

#[test]
fn loaded_workloads_are_found_by_id() {
    let s = spec("cl100k_base", vec![class("c", 1.0, LengthDist::Fixed(5))]);
    let json = s.to_json().unwrap();
    let e = load(&json).unwrap();
    assert_eq!(e.id(), WorkloadSpec::id_of(&json));
    assert!(Arc::ptr_eq(&e, &lookup(e.id()).unwrap()));
    assert!(Arc::ptr_eq(&e, &load(&json).unwrap()), "built once");
    assert_eq!(e.tokenizer_name(), "cl100k_base");
    // A spec of another wire version is refused, saying so.
    let old = serde_json::to_vec(&s).unwrap();
    let err = load(&old).unwrap_err().to_string();
    assert!(
        err.contains("version 0") && err.contains("same Stampede version"),
        "{err}"
    );
}

/// A word-level tokenizer.json: each word of its vocabulary is one token.
#[cfg(feature = "hf-tokenizers")]
fn word_level_json() -> String {
    let words = "the of and to in is that for it as was with be by on not he this are or his from at which but have an had they you were their one all we can her has there been if more when";
    let mut vocab = serde_json::Map::new();
    vocab.insert("[UNK]".into(), 0.into());
    for (i, w) in words.split(' ').enumerate() {
        vocab.insert(w.into(), (i + 1).into());
    }
    serde_json::json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": [],
        "normalizer": null,
        "pre_tokenizer": { "type": "Whitespace" },
        "post_processor": null,
        "decoder": null,
        "model": { "type": "WordLevel", "vocab": vocab, "unk_token": "[UNK]" }
    })
    .to_string()
}

#[cfg(feature = "hf-tokenizers")]
#[test]
fn a_tokenizer_json_gives_exact_lengths_for_its_model() {
    let mut s = spec(
        "models/tiny/tokenizer.json",
        vec![class("c", 1.0, LengthDist::Uniform { min: 1, max: 3000 })],
    );
    s.tokenizer_json = Some(word_level_json());
    let e = engine(&s);
    assert_eq!(e.tokenizer_name(), "models/tiny/tokenizer.json");
    let b = builder(&e, ApiKind::Chat, 3, 0, 1);
    for id in 0..10 {
        let req = b.build(id).req;
        assert_eq!(counted(&e, &req), req.input_tokens as usize);
    }
    s.tokenizer_json = Some("{ not json".into());
    let err = WorkloadEngine::try_new(&s, "x".into()).unwrap_err();
    assert!(
        err.to_string().contains("not a usable tokenizer.json"),
        "{err}"
    );
}
