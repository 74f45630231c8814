//! The OpenAI API of the deterministic preset, over real HTTP: formats, counts, timing,
//! errors, and the disconnect fault.

mod common;

use std::time::Duration;

use common::*;
use serde_json::{Value, json};
use stampede_sim::{FaultKind, FaultSpec, SimConfig};

fn deterministic(ttft_ms: u64, itl_ms: u64) -> SimConfig {
    SimConfig {
        ttft: Duration::from_millis(ttft_ms),
        itl: Duration::from_millis(itl_ms),
        ..SimConfig::default()
    }
}

#[tokio::test]
async fn models_lists_the_served_model() {
    let sim = TestSim::start(SimConfig::default()).await;
    let v: Value = client()
        .get(sim.url("/v1/models"))
        .send()
        .await
        .expect("sent")
        .json()
        .await
        .expect("json");
    assert_eq!(v["object"], "list");
    assert_eq!(v["data"][0]["id"], MODEL);
    assert_eq!(v["data"][0]["object"], "model");
    assert_eq!(v["data"][0]["max_model_len"], 131_072);
    sim.stop().await.expect("clean stop");
}

#[tokio::test]
async fn non_streaming_answers_parse_and_count() {
    let sim = TestSim::start(deterministic(5, 1)).await;
    let c = client();
    let v: Value = c
        .post(sim.url("/v1/chat/completions"))
        .json(&chat_body(10, 7, false, false))
        .send()
        .await
        .expect("sent")
        .json()
        .await
        .expect("json");
    assert_eq!(v["object"], "chat.completion");
    assert!(v["id"].as_str().expect("id").starts_with("chatcmpl-"));
    assert_eq!(v["model"], MODEL);
    assert_eq!(v["choices"][0]["message"]["role"], "assistant");
    assert_eq!(v["choices"][0]["finish_reason"], "length");
    let content = v["choices"][0]["message"]["content"]
        .as_str()
        .expect("text");
    assert_eq!(content.split_whitespace().count(), 7);
    assert_eq!(v["usage"]["completion_tokens"], 7);
    assert_eq!(v["usage"]["prompt_tokens"], 10 + 4 + 3);
    assert_eq!(v["usage"]["total_tokens"], 24);

    let v: Value = c
        .post(sim.url("/v1/completions"))
        .json(&completion_body(12, 5, false, false))
        .send()
        .await
        .expect("sent")
        .json()
        .await
        .expect("json");
    assert_eq!(v["object"], "text_completion");
    assert!(v["id"].as_str().expect("id").starts_with("cmpl-"));
    assert_eq!(
        v["choices"][0]["text"]
            .as_str()
            .expect("text")
            .split_whitespace()
            .count(),
        5
    );
    assert_eq!(v["usage"]["prompt_tokens"], 12);
    assert_eq!(v["usage"]["completion_tokens"], 5);
}

#[tokio::test]
async fn chat_streams_one_event_per_token_in_vllms_format() {
    let sim = TestSim::start(deterministic(5, 1)).await;
    let c = client();
    let s = stream(
        &c,
        &sim.url("/v1/chat/completions"),
        &chat_body(20, 12, true, true),
    )
    .await
    .expect("response");
    assert_eq!(s.status, 200);
    assert!(!s.broken && s.done(), "{:?}", s.events);
    assert_eq!(s.contents().len(), 12);
    let first = s.events[0].json().expect("json");
    assert_eq!(first["object"], "chat.completion.chunk");
    assert_eq!(
        first["choices"][0]["delta"],
        json!({"role": "assistant", "content": ""})
    );
    assert_eq!(first["choices"][0]["logprobs"], Value::Null);
    for e in s.contents() {
        let v = e.json().expect("json");
        let text = e.content().expect("content");
        assert!(
            text.starts_with(' ') && text.split_whitespace().count() == 1,
            "{text:?}"
        );
        assert_eq!(v["model"], MODEL);
    }
    let last_token = s.contents().last().expect("tokens").json().expect("json");
    assert_eq!(last_token["choices"][0]["finish_reason"], "length");
    // usage chunk: empty choices, then [DONE]
    let usage_event = &s.events[s.events.len() - 2];
    let u = usage_event.json().expect("json");
    assert_eq!(u["choices"], json!([]));
    assert_eq!(u["usage"]["completion_tokens"], 12);
    assert_eq!(u["usage"]["prompt_tokens"], 20 + 4 + 3);
    assert_eq!(u["usage"]["total_tokens"], 12 + 27);
}

#[tokio::test]
async fn completions_stream_and_usage_only_when_asked() {
    let sim = TestSim::start(deterministic(5, 1)).await;
    let c = client();
    let url = sim.url("/v1/completions");
    let s = stream(&c, &url, &completion_body(8, 9, true, false))
        .await
        .expect("response");
    assert!(s.done());
    assert_eq!(s.contents().len(), 9);
    assert!(s.usage().is_none(), "no usage unless include_usage");
    let first = s.events[0].json().expect("json");
    assert_eq!(first["object"], "text_completion");
    assert!(first["choices"][0].get("delta").is_none());
    assert_eq!(s.finish_reason().as_deref(), Some("length"));
    // Every event but [DONE] is JSON.
    assert!(s.events.iter().all(|e| e.is_done() || e.json().is_some()));

    let s = stream(&c, &url, &completion_body(8, 9, true, true))
        .await
        .expect("response");
    let u = s.usage().expect("usage");
    assert_eq!(u["prompt_tokens"], 8);
    assert_eq!(u["completion_tokens"], 9);

    // Chat without stream_options: no usage either.
    let mut body = chat_body(3, 4, true, false);
    body.as_object_mut()
        .expect("object")
        .remove("stream_options");
    let s = stream(&c, &sim.url("/v1/chat/completions"), &body)
        .await
        .expect("response");
    assert!(s.done() && s.usage().is_none());
    assert_eq!(s.contents().len(), 4);
}

#[tokio::test]
async fn max_tokens_defaults_to_16_and_max_completion_tokens_wins() {
    let sim = TestSim::start(deterministic(1, 1)).await;
    let c = client();
    let url = sim.url("/v1/chat/completions");
    let body =
        json!({"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "stream": true});
    let s = stream(&c, &url, &body).await.expect("response");
    assert_eq!(s.contents().len(), 16);
    let body = json!({"model": MODEL, "messages": [{"role": "user", "content": "hi"}],
        "stream": true, "max_tokens": 50, "max_completion_tokens": 3, "unknown_field": {"x": 1}});
    let s = stream(&c, &url, &body).await.expect("response");
    assert_eq!(s.contents().len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deterministic_timing_follows_ttft_and_itl() {
    check_timing(deterministic(50, 10)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deterministic_timing_with_the_inline_pacer() {
    check_timing(SimConfig {
        pacer: stampede_sim::PacerMode::Inline,
        ..deterministic(50, 10)
    })
    .await;
}

/// Streams from a 50 ms / 10 ms deterministic simulator and checks the timing.
async fn check_timing(config: SimConfig) {
    let (ttft, itl) = (Duration::from_millis(50), Duration::from_millis(10));
    let sim = TestSim::start(config).await;
    let c = client();
    let url = sim.url("/v1/chat/completions");
    // Warm the connection so the measured request pays no connect.
    let _ = stream(&c, &url, &chat_body(1, 1, true, false)).await;
    let mut gaps = Vec::new();
    let mut handles = Vec::new();
    for _ in 0..4 {
        let (c, url) = (c.clone(), url.clone());
        handles.push(tokio::spawn(async move {
            stream(&c, &url, &chat_body(10, 30, true, false)).await
        }));
    }
    for h in handles {
        let s = h.await.expect("joined").expect("response");
        assert_eq!(s.contents().len(), 30);
        let t = s.ttft().expect("ttft");
        // The server counts from when it has the request, the client from before sending.
        assert!(t >= ttft - Duration::from_millis(1), "ttft {t:?}");
        assert!(t < ttft + Duration::from_millis(500), "ttft {t:?}");
        // Absolute schedule: token i is never out before ttft + i * itl. (A token late through
        // CPU contention makes the next gap short, so single gaps are not asserted on.)
        for (i, e) in s.contents().iter().enumerate() {
            let due = ttft + itl * u32::try_from(i).expect("small");
            assert!(
                e.at - s.sent >= due - Duration::from_millis(1),
                "token {i} at {:?}, due {due:?}",
                e.at - s.sent
            );
        }
        gaps.extend(s.gaps());
    }
    let med = median(gaps);
    assert!(
        med >= itl - Duration::from_millis(1) && med <= itl + Duration::from_millis(2),
        "median gap {med:?}"
    );
    let late = sim.metrics.token_lateness();
    assert!(late.count >= 120);
}

#[tokio::test]
async fn bad_input_gets_openai_error_bodies() {
    let sim = TestSim::start(SimConfig {
        max_model_len: Some(64),
        ..SimConfig::default()
    })
    .await;
    let c = client();
    let chat = sim.url("/v1/chat/completions");
    let cases: Vec<(&str, String, u16, Option<&str>)> = vec![
        (&chat, "{not json".into(), 400, None),
        (
            &chat,
            json!({"model": MODEL}).to_string(),
            400,
            Some("messages"),
        ),
        (
            &chat,
            json!({"model": "gpt-17", "messages": []}).to_string(),
            404,
            Some("model"),
        ),
        (
            &chat,
            chat_body(100, 4, true, false).to_string(),
            400,
            Some("messages"),
        ),
        (
            &chat,
            json!({"model": MODEL, "messages": "hi"}).to_string(),
            400,
            None,
        ),
    ];
    let comp = sim.url("/v1/completions");
    let more: Vec<(&str, String, u16, Option<&str>)> = vec![
        (
            &comp,
            json!({"model": MODEL}).to_string(),
            400,
            Some("prompt"),
        ),
        (
            &comp,
            json!({"model": MODEL, "prompt": 5}).to_string(),
            400,
            None,
        ),
        (
            &comp,
            json!({"model": MODEL, "prompt": "a", "max_tokens": -1}).to_string(),
            400,
            None,
        ),
        (&comp, "".into(), 400, None),
        (&comp, "\u{0}\u{1}".into(), 400, None),
        (&comp, "[]".into(), 400, None),
    ];
    for (url, body, status, param) in cases.into_iter().chain(more) {
        let resp = c
            .post(url)
            .header("content-type", "application/json")
            .body(body.clone())
            .send()
            .await
            .expect("sent");
        assert_eq!(resp.status().as_u16(), status, "{body}");
        let v: Value = resp.json().await.expect("json error body");
        let e = &v["error"];
        assert!(e["message"].as_str().is_some_and(|m| !m.is_empty()), "{v}");
        assert!(e["type"].is_string(), "{v}");
        assert!(e.get("param").is_some() && e.get("code").is_some(), "{v}");
        if let Some(p) = param {
            assert_eq!(e["param"], p, "{body}");
        }
    }
    let resp = c.get(sim.url("/v1/nothing")).send().await.expect("sent");
    assert_eq!(resp.status(), 404);
    // Still serving after all that.
    let s = stream(&c, &chat, &chat_body(1, 2, true, false))
        .await
        .expect("ok");
    assert!(s.done());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disconnect_fault_breaks_about_its_rate_of_streams() {
    let rate = 0.3;
    let sim = TestSim::start(SimConfig {
        ttft: Duration::from_millis(2),
        itl: Duration::from_millis(1),
        seed: 42,
        faults: vec![FaultSpec::with_rate(FaultKind::Disconnect, rate)],
        ..SimConfig::default()
    })
    .await;
    let c = client();
    let url = sim.url("/v1/chat/completions");
    let n = 200;
    let mut broken = 0u32;
    for batch in 0..(n / 20) {
        let mut handles = Vec::new();
        for _ in 0..20 {
            let (c, url) = (c.clone(), url.clone());
            handles.push(tokio::spawn(async move {
                stream(&c, &url, &chat_body(5, 10, true, true)).await
            }));
        }
        for h in handles {
            let s = h.await.expect("joined").expect("headers arrive");
            if s.broken || !s.done() {
                broken += 1;
                // Mid-stream: never [DONE], fewer tokens than asked.
                assert!(!s.done(), "batch {batch}");
                assert!(s.contents().len() < 10);
            } else {
                assert_eq!(s.contents().len(), 10);
            }
        }
    }
    let frac = f64::from(broken) / f64::from(n);
    assert!((frac - rate).abs() < 0.1, "{broken} of {n} broken");
    assert_eq!(
        sim.metrics.faults_injected(FaultKind::Disconnect),
        u64::from(broken)
    );
}

#[tokio::test]
async fn shutdown_cuts_streams_after_the_grace_period() {
    let sim = TestSim::start(SimConfig {
        itl: Duration::from_millis(50),
        shutdown_grace: Duration::from_millis(200),
        ..SimConfig::default()
    })
    .await;
    let c = client();
    let url = sim.url("/v1/chat/completions");
    let long = tokio::spawn({
        let (c, url) = (c.clone(), url.clone());
        async move { stream(&c, &url, &chat_body(1, 1000, true, false)).await }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let t = tokio::time::Instant::now();
    sim.stop().await.expect("clean stop");
    assert!(t.elapsed() < Duration::from_secs(3));
    let s = long.await.expect("joined").expect("response");
    assert!(!s.done() && s.contents().len() < 1000);
}

#[tokio::test]
async fn end_of_sequence_honours_ignore_eos_and_min_tokens() {
    let sim = TestSim::start(SimConfig {
        ttft: Duration::from_millis(1),
        itl: Duration::from_micros(200),
        eos_probability: 0.2,
        seed: 5,
        ..SimConfig::default()
    })
    .await;
    let c = client();
    let url = sim.url("/v1/chat/completions");
    let (mut stopped, mut min_seen) = (0, u32::MAX);
    for _ in 0..40 {
        let mut body = chat_body(2, 30, true, true);
        body["ignore_eos"] = json!(false);
        body["min_tokens"] = json!(5);
        let s = stream(&c, &url, &body).await.expect("response");
        let n = u32::try_from(s.contents().len()).expect("small");
        assert_eq!(s.usage().expect("usage")["completion_tokens"], n);
        match s.finish_reason().as_deref() {
            Some("stop") => {
                stopped += 1;
                assert!(n <= 30);
            }
            Some("length") => assert_eq!(n, 30),
            other => panic!("{other:?}"),
        }
        min_seen = min_seen.min(n);
    }
    assert!(stopped > 30, "most answers end early at p = 0.2: {stopped}");
    assert!(min_seen >= 5, "min_tokens holds: {min_seen}");
    for _ in 0..10 {
        let s = stream(&c, &url, &chat_body(2, 30, true, false))
            .await
            .expect("response");
        assert_eq!(s.contents().len(), 30, "ignore_eos runs to max_tokens");
        assert_eq!(s.finish_reason().as_deref(), Some("length"));
    }
}
