//! The engine preset over real HTTP, and /metrics against what was served.

mod common;

use std::time::Duration;

use common::*;
use serde_json::Value;
use stampede_sim::{EngineOverrides, SimConfig};

/// A small engine: 10 ms per step plus 2 ms per token in the batch, 4 sequences at most.
fn small_engine(kv_cache_tokens: u64) -> SimConfig {
    SimConfig {
        preset: "llama-3.1-8b-h100".into(),
        engine: EngineOverrides {
            max_num_seqs: Some(4),
            max_num_batched_tokens: Some(4096),
            kv_cache_tokens: Some(kv_cache_tokens),
            kv_block_tokens: Some(16),
            prefill_tokens_per_s: Some(500.0),
            step_base: Some(Duration::from_millis(10)),
            context_token_cost: Some(Duration::ZERO),
        },
        ..SimConfig::default()
    }
}

async fn concurrent(sim: &TestSim, n: usize, max_tokens: u32) -> Vec<Streamed> {
    concurrent_words(sim, n, 1, max_tokens).await
}

/// `n` concurrent chat streams of `words` + 7 prompt tokens.
async fn concurrent_words(sim: &TestSim, n: usize, words: usize, max_tokens: u32) -> Vec<Streamed> {
    let c = client();
    let url = sim.url("/v1/chat/completions");
    let mut handles = Vec::new();
    for _ in 0..n {
        let (c, url) = (c.clone(), url.clone());
        handles.push(tokio::spawn(async move {
            stream(&c, &url, &chat_body(words, max_tokens, true, true)).await
        }));
    }
    let mut out = Vec::new();
    for h in handles {
        let s = h.await.expect("joined").expect("response");
        assert!(s.done(), "{:?}", s.events.last());
        assert_eq!(s.contents().len(), max_tokens as usize);
        out.push(s);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ttft_grows_past_capacity_while_the_gap_follows_the_batch() {
    let sim = TestSim::start(small_engine(100_000)).await;
    let alone = concurrent(&sim, 1, 20).await;
    let gap_1 = median(alone[0].gaps());
    let ttft_1 = alone[0].ttft().expect("ttft");
    // Decode step of one sequence: 10 ms + 2 ms.
    assert!(
        gap_1 >= Duration::from_millis(11) && gap_1 <= Duration::from_millis(15),
        "{gap_1:?}"
    );
    // Prefill of 8 tokens: 10 ms + 16 ms.
    assert!(ttft_1 >= Duration::from_millis(25), "{ttft_1:?}");

    let full = concurrent(&sim, 4, 20).await;
    let gap_4 = median(full.iter().flat_map(Streamed::gaps).collect());
    // Four decoding: 10 ms + 8 ms.
    assert!(
        gap_4 >= Duration::from_millis(17) && gap_4 <= Duration::from_millis(22),
        "{gap_4:?}"
    );

    let over = concurrent(&sim, 12, 20).await;
    let mut ttfts: Vec<Duration> = over.iter().filter_map(Streamed::ttft).collect();
    ttfts.sort();
    // The last four wait for two batches of 20 steps to finish.
    assert!(ttfts[11] > Duration::from_millis(600), "{ttfts:?}");
    assert!(ttfts[0] < Duration::from_millis(200), "{ttfts:?}");
    let gap_over = median(over.iter().flat_map(Streamed::gaps).collect());
    assert!(
        gap_over <= gap_4 + Duration::from_millis(3),
        "batch stays at 4"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_kv_cache_holds_back_admission() {
    // Admission reserves a request's prompt: 47 tokens = 3 blocks of the 8 there are, so two
    // run and the rest wait; growing to 55 tokens (4 blocks) each, the two never preempt.
    let sim = TestSim::start(small_engine(128)).await;
    let c = client();
    let watcher = {
        let (c, url) = (c.clone(), sim.url("/metrics"));
        tokio::spawn(async move {
            let (mut max_running, mut max_waiting, mut max_kv) = (0.0f64, 0.0f64, 0.0f64);
            for _ in 0..40 {
                let text = c
                    .get(&url)
                    .send()
                    .await
                    .expect("scrape")
                    .text()
                    .await
                    .expect("body");
                let m = parse_prometheus(&text).expect("parses");
                max_running =
                    max_running.max(value(&m, "vllm:num_requests_running", &[]).expect("running"));
                max_waiting =
                    max_waiting.max(value(&m, "vllm:num_requests_waiting", &[]).expect("waiting"));
                max_kv = max_kv.max(value(&m, "vllm:kv_cache_usage_perc", &[]).expect("kv"));
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            (max_running, max_waiting, max_kv)
        })
    };
    let done = concurrent_words(&sim, 6, 40, 8).await;
    let (max_running, max_waiting, max_kv) = watcher.await.expect("joined");
    assert!(max_running <= 2.0, "{max_running}");
    assert!(max_waiting >= 1.0, "{max_waiting}");
    assert!(max_kv > 0.5 && max_kv <= 1.0, "{max_kv}");
    let mut ttfts: Vec<Duration> = done.iter().filter_map(Streamed::ttft).collect();
    ttfts.sort();
    // Third pair starts after two full generations.
    assert!(
        ttfts[5] > ttfts[0] + Duration::from_millis(400),
        "{ttfts:?}"
    );
}

#[tokio::test]
async fn an_engine_request_too_big_for_the_cache_is_refused() {
    let sim = TestSim::start(small_engine(64)).await;
    let resp = client()
        .post(sim.url("/v1/chat/completions"))
        .json(&chat_body(60, 24, true, false))
        .send()
        .await
        .expect("response");
    assert_eq!(resp.status(), 400);
    let v: Value = resp.json().await.expect("json");
    assert_eq!(v["error"]["code"], "context_length_exceeded");
}

async fn metrics_agree_with_served(config: SimConfig) {
    let sim = TestSim::start(config).await;
    let c = client();
    let before = scrape(&c, &sim).await;
    assert_eq!(value(&before, "vllm:prompt_tokens_total", &[]), Some(0.0));
    let (mut prompt, mut completion, mut n) = (0.0, 0.0, 0.0);
    for i in 0..12u32 {
        let words = 3 + i as usize;
        let max = 2 + i;
        let usage = if i % 3 == 0 {
            let v: Value = c
                .post(sim.url("/v1/completions"))
                .json(&completion_body(words, max, false, false))
                .send()
                .await
                .expect("response")
                .json()
                .await
                .expect("json");
            v["usage"].clone()
        } else {
            stream(
                &c,
                &sim.url("/v1/chat/completions"),
                &chat_body(words, max, true, true),
            )
            .await
            .expect("response")
            .usage()
            .expect("usage")
        };
        prompt += usage["prompt_tokens"].as_f64().expect("n");
        completion += usage["completion_tokens"].as_f64().expect("n");
        n += 1.0;
    }
    tokio::time::sleep(Duration::from_millis(150)).await;
    let m = scrape(&c, &sim).await;
    assert_eq!(value(&m, "vllm:prompt_tokens_total", &[]), Some(prompt));
    assert_eq!(
        value(&m, "vllm:generation_tokens_total", &[]),
        Some(completion)
    );
    assert_eq!(
        value(
            &m,
            "vllm:request_success_total",
            &[("finished_reason", "length")]
        ),
        Some(n)
    );
    assert_eq!(
        value(&m, "vllm:time_to_first_token_seconds_count", &[]),
        Some(n)
    );
    assert_eq!(
        value(&m, "vllm:e2e_request_latency_seconds_count", &[]),
        Some(n)
    );
    assert_eq!(
        value(&m, "vllm:inter_token_latency_seconds_count", &[]),
        Some(completion - n)
    );
    assert_eq!(
        value(&m, "stampede_sim_token_lateness_seconds_count", &[]),
        Some(completion)
    );
    assert_eq!(value(&m, "stampede_sim_requests_total", &[]), Some(n));
    assert_eq!(value(&m, "vllm:num_requests_running", &[]), Some(0.0));
    for name in [
        "DCGM_FI_DEV_GPU_UTIL",
        "DCGM_FI_DEV_FB_USED",
        "DCGM_FI_DEV_FB_FREE",
        "DCGM_FI_DEV_POWER_USAGE",
    ] {
        let v = value(&m, name, &[("gpu", "0"), ("simulated", "true")]);
        assert!(v.is_some(), "{name}");
    }
    let util = value(&m, "DCGM_FI_DEV_GPU_UTIL", &[]).expect("util");
    assert!(util > 0.0 && util <= 100.0, "{util}");
    let power = value(&m, "DCGM_FI_DEV_POWER_USAGE", &[]).expect("power");
    assert!(power > 70.0, "{power}");
    let used = value(&m, "DCGM_FI_DEV_FB_USED", &[]).expect("used");
    let free = value(&m, "DCGM_FI_DEV_FB_FREE", &[]).expect("free");
    assert_eq!(used + free, 81_559.0);
}

#[tokio::test]
async fn metrics_parse_and_agree_with_what_was_served_deterministic() {
    metrics_agree_with_served(SimConfig {
        ttft: Duration::from_millis(5),
        itl: Duration::from_millis(2),
        ..SimConfig::default()
    })
    .await;
}

#[tokio::test]
async fn metrics_parse_and_agree_with_what_was_served_engine() {
    metrics_agree_with_served(small_engine(100_000)).await;
}

#[tokio::test]
async fn the_70b_preset_reports_eight_gpus() {
    let sim = TestSim::start(SimConfig {
        preset: "llama-3.1-70b-8xh100".into(),
        ..SimConfig::default()
    })
    .await;
    let c = client();
    let models: Value = c
        .get(sim.url("/v1/models"))
        .send()
        .await
        .expect("models")
        .json()
        .await
        .expect("json");
    assert_eq!(models["data"][0]["id"], "sim-llama-3.1-70b");
    let m = scrape(&c, &sim).await;
    let gpus = m
        .iter()
        .filter(|s| s.name == "DCGM_FI_DEV_GPU_UTIL")
        .count();
    assert_eq!(gpus, 8);
}

#[test]
fn the_test_parser_rejects_malformed_exposition() {
    for bad in [
        "no_type 1\n",
        "# TYPE x gauge\nx{a=b} 1\n",
        "# TYPE x gauge\nx{a=\"b} 1\n",
        "# TYPE x gauge\nx one\n",
        "# TYPE x gauge\n1x 1\n",
        "# TYPE h histogram\nh_bucket{le=\"1\"} 2\nh_bucket{le=\"+Inf\"} 1\nh_count 1\nh_sum 0\n",
        // +Inf is not the count.
        "# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_bucket{le=\"+Inf\"} 2\nh_sum 0\nh_count 3\n",
        // No +Inf bucket.
        "# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_sum 0\nh_count 1\n",
        // A sample before its TYPE, and a family written twice.
        "x 1\n# TYPE x gauge\nx 2\n",
        "# TYPE x gauge\nx 1\n# TYPE y gauge\ny 1\n# TYPE x gauge\nx 2\n",
        // An escape the format does not have.
        "# TYPE x gauge\nx{a=\"\\t\"} 1\n",
    ] {
        assert!(parse_prometheus(bad).is_err(), "{bad}");
    }
    let ok = "# TYPE x gauge\nx{a=\"q\\\"\\n\",b=\"é\"} 1.5\n";
    let s = parse_prometheus(ok).expect("valid");
    assert_eq!(s[0].labels["a"], "q\"\n");
}
