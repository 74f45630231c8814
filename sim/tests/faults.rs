//! Every fault, over real HTTP: what the client sees, at the configured rate or time.

mod common;

use std::time::Duration;

use common::*;
use serde_json::Value;
use stampede_sim::{FaultKind, FaultSpec, SimConfig};

fn with_faults(faults: Vec<FaultSpec>) -> SimConfig {
    SimConfig {
        ttft: Duration::from_millis(5),
        itl: Duration::from_millis(2),
        faults,
        ..SimConfig::default()
    }
}

fn spec(s: &str) -> FaultSpec {
    s.parse().expect("valid spec")
}

async fn one_stream(fault: &str) -> Result<Streamed, reqwest::Error> {
    let sim = TestSim::start(with_faults(vec![spec(fault)])).await;
    let r = stream(
        &client(),
        &sim.url("/v1/chat/completions"),
        &chat_body(5, 8, true, true),
    )
    .await;
    assert_eq!(
        sim.metrics.faults_injected(spec(fault).kind),
        1,
        "{fault} counted"
    );
    r
}

#[tokio::test]
async fn http_errors_carry_openai_bodies_and_retry_after() {
    for (fault, status, retry) in [
        ("http_500:rate=1", 500, None),
        ("http_503:rate=1", 503, Some("1")),
        ("http_429:rate=1,retry_after=1500ms", 429, Some("2")),
    ] {
        let sim = TestSim::start(with_faults(vec![spec(fault)])).await;
        let resp = client()
            .post(sim.url("/v1/chat/completions"))
            .json(&chat_body(5, 8, true, false))
            .send()
            .await
            .expect("response");
        assert_eq!(resp.status().as_u16(), status, "{fault}");
        assert_eq!(
            resp.headers()
                .get("retry-after")
                .map(|v| v.to_str().expect("ascii")),
            retry,
            "{fault}"
        );
        let v: Value = resp.json().await.expect("json");
        assert!(v["error"]["message"].is_string(), "{v}");
    }
}

#[tokio::test]
async fn resets_before_and_after_headers() {
    let r = one_stream("reset_before_headers:rate=1").await;
    let err = r.expect_err("no response at all");
    assert!(!err.is_status(), "{err:?}");

    let s = one_stream("reset_after_headers:rate=1")
        .await
        .expect("headers arrive");
    assert_eq!(s.status, 200);
    assert!(s.broken, "the body breaks");
    assert!(s.events.is_empty(), "{:?}", s.events);
}

#[tokio::test]
async fn disconnect_cuts_after_the_given_tokens() {
    let s = one_stream("disconnect:rate=1,after_tokens=4")
        .await
        .expect("headers");
    assert!(s.broken && !s.done());
    assert_eq!(s.contents().len(), 4);
}

#[tokio::test]
async fn stall_pauses_then_finishes() {
    let s = one_stream("stall:rate=1,after_tokens=3,stall=300ms")
        .await
        .expect("headers");
    assert!(s.done() && !s.broken);
    assert_eq!(s.contents().len(), 8);
    let gaps = s.gaps();
    // The stall is 300 ms on the server's clock; a late read of the token before it can shorten
    // the gap the client sees by a scheduling delay, never by more than tens of milliseconds.
    assert!(gaps[2] >= Duration::from_millis(250), "{gaps:?}");
    assert!(gaps[1] < Duration::from_millis(200), "{gaps:?}");
}

#[tokio::test]
async fn slow_first_token_delays_the_first_token() {
    let s = one_stream("slow_first_token:rate=1,delay=300ms")
        .await
        .expect("headers");
    assert!(s.done());
    assert!(s.ttft().expect("ttft") >= Duration::from_millis(305));
    assert!(s.gaps().iter().all(|g| *g < Duration::from_millis(200)));
}

#[tokio::test]
async fn malformed_sse_sends_one_unparseable_event() {
    let s = one_stream("malformed_sse:rate=1,after_tokens=2")
        .await
        .expect("headers");
    assert!(s.done());
    let bad: Vec<_> = s
        .events
        .iter()
        .filter(|e| !e.is_done() && e.json().is_none())
        .collect();
    assert_eq!(bad.len(), 1, "{:?}", s.events);
    assert_eq!(s.contents().len(), 8);

    let sim = TestSim::start(with_faults(vec![spec("malformed_sse:rate=1")])).await;
    let text = client()
        .post(sim.url("/v1/completions"))
        .json(&completion_body(3, 4, false, false))
        .send()
        .await
        .expect("response")
        .text()
        .await
        .expect("body");
    assert!(serde_json::from_str::<Value>(&text).is_err(), "{text}");
}

#[tokio::test]
async fn empty_completion_has_no_content() {
    let s = one_stream("empty:rate=1").await.expect("headers");
    assert!(s.done() && !s.broken);
    assert!(s.contents().is_empty(), "{:?}", s.events);
    assert_eq!(s.finish_reason().as_deref(), Some("stop"));
    assert_eq!(s.usage().expect("usage")["completion_tokens"], 0);

    let sim = TestSim::start(with_faults(vec![spec("empty:rate=1")])).await;
    let v: Value = client()
        .post(sim.url("/v1/chat/completions"))
        .json(&chat_body(3, 4, false, false))
        .send()
        .await
        .expect("response")
        .json()
        .await
        .expect("json");
    assert_eq!(v["choices"][0]["message"]["content"], "");
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    assert_eq!(v["usage"]["completion_tokens"], 0);
}

/// What one request ended as, from the client's side.
#[derive(Debug, PartialEq, Eq, Clone, Copy)]
enum Outcome {
    Ok,
    Http(u16),
    Broken,
    Empty,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faults_hit_at_their_configured_rates() {
    let rates = [
        (FaultKind::Http500, 0.1),
        (FaultKind::Http429, 0.1),
        (FaultKind::Disconnect, 0.1),
        (FaultKind::Empty, 0.1),
    ];
    let sim = TestSim::start(SimConfig {
        seed: 3,
        ..with_faults(
            rates
                .iter()
                .map(|&(k, r)| FaultSpec::with_rate(k, r))
                .collect(),
        )
    })
    .await;
    let c = client();
    let url = sim.url("/v1/chat/completions");
    let n = 400u32;
    let mut outcomes = Vec::new();
    for _ in 0..n / 25 {
        let mut handles = Vec::new();
        for _ in 0..25 {
            let (c, url) = (c.clone(), url.clone());
            handles.push(tokio::spawn(async move {
                let s = stream(&c, &url, &chat_body(3, 6, true, true))
                    .await
                    .expect("a response");
                if s.status != 200 {
                    Outcome::Http(s.status)
                } else if s.broken || !s.done() {
                    Outcome::Broken
                } else if s.contents().is_empty() {
                    Outcome::Empty
                } else {
                    assert_eq!(s.contents().len(), 6);
                    Outcome::Ok
                }
            }));
        }
        for h in handles {
            outcomes.push(h.await.expect("joined"));
        }
    }
    let count = |o: Outcome| outcomes.iter().filter(|&&x| x == o).count() as u64;
    // Specs are tried in order, so each takes its rate of what the earlier ones left.
    let mut left = 1.0;
    for ((kind, rate), outcome) in rates.iter().zip([
        Outcome::Http(500),
        Outcome::Http(429),
        Outcome::Broken,
        Outcome::Empty,
    ]) {
        let seen = count(outcome);
        let expected = f64::from(n) * left * rate;
        left *= 1.0 - rate;
        assert!(
            (seen as f64 - expected).abs() < 0.5 * expected,
            "{kind}: {seen} seen, {expected} expected"
        );
        assert_eq!(sim.metrics.faults_injected(*kind), seen, "{kind} counted");
    }
    assert_eq!(
        count(Outcome::Ok)
            + count(Outcome::Http(500))
            + count(Outcome::Http(429))
            + count(Outcome::Broken)
            + count(Outcome::Empty),
        u64::from(n)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fault_window_opens_and_closes_on_schedule() {
    let sim = TestSim::start(with_faults(vec![spec("http_503:at=300ms,duration=300ms")])).await;
    let c = client();
    let url = sim.url("/v1/completions");
    let status = || async {
        c.post(&url)
            .json(&completion_body(2, 1, false, false))
            .send()
            .await
            .expect("response")
            .status()
            .as_u16()
    };
    assert_eq!(status().await, 200);
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(status().await, 503);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(status().await, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scheduled_outage_cuts_everything_then_recovers() {
    let sim = TestSim::start(SimConfig {
        itl: Duration::from_millis(10),
        ..with_faults(vec![spec("outage:at=300ms,duration=400ms")])
    })
    .await;
    let c = client();
    let url = sim.url("/v1/chat/completions");
    let long = tokio::spawn({
        let (c, url) = (c.clone(), url.clone());
        async move { stream(&c, &url, &chat_body(1, 200, true, false)).await }
    });
    let s = long
        .await
        .expect("joined")
        .expect("started before the outage");
    assert!(s.broken && !s.done(), "cut by the outage");
    let cut_at = s.events.last().expect("some tokens").at - s.sent;
    assert!(cut_at < Duration::from_millis(400), "{cut_at:?}");

    // During the window: a fresh client cannot get an answer.
    let fresh = client();
    let r = stream(&fresh, &url, &chat_body(1, 2, true, false)).await;
    assert!(
        r.is_err() || r.as_ref().is_ok_and(|s| s.broken),
        "served during the outage: {r:?}"
    );
    // The metrics endpoint is down too.
    assert!(fresh.get(sim.url("/metrics")).send().await.is_err());

    tokio::time::sleep(Duration::from_millis(450)).await;
    let s = stream(&client(), &url, &chat_body(1, 2, true, false))
        .await
        .expect("back up");
    assert!(s.done());
}
