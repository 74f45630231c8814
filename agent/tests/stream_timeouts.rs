//! Which timeout ends a stream that stalls: the client keeps one timer per request and re-arms
//! it as the limit moves (first token, then idle, never past the total), so each limit is
//! checked against a server that sends some chunks and then goes quiet. Only the class is
//! asserted, never how long anything took.

use std::time::Duration;

use bytes::Bytes;
use stampede_agent::client::{ClientConfig, OpenAiClient, PreparedRequest};
use stampede_common::plan::ApiKind;
use stampede_common::timeline::{ErrorClass, RequestTimeline};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

const CONTENT: &str = "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"x\"}}]}\n\n";
const ROLE: &str = "data: {\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\"}}]}\n\n";

/// Serves one request: headers, then each event as its own HTTP chunk `gap` apart, then holds
/// the connection open without a word until the client gives up.
async fn stalling_server(events: Vec<&'static str>, gap: Duration) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("address");
    tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.expect("accept");
        let mut buf = vec![0u8; 64 << 10];
        let mut got = Vec::new();
        // The request's headers and its small body arrive together on loopback.
        while !got.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = s.read(&mut buf).await.expect("read");
            if n == 0 {
                return;
            }
            got.extend_from_slice(&buf[..n]);
        }
        let head = "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n";
        s.write_all(head.as_bytes()).await.expect("write");
        for e in events {
            tokio::time::sleep(gap).await;
            let chunk = format!("{:x}\r\n{e}\r\n", e.len());
            if s.write_all(chunk.as_bytes()).await.is_err() {
                return;
            }
        }
        // Quiet until the client closes.
        while matches!(s.read(&mut buf).await, Ok(n) if n > 0) {}
    });
    format!("http://{addr}/v1")
}

async fn run(
    base_url: String,
    first_token: Duration,
    idle: Option<Duration>,
    total: Duration,
) -> RequestTimeline {
    let client = OpenAiClient::try_new(ClientConfig {
        base_url,
        api: ApiKind::Chat,
        api_key: None,
        stream: true,
        connect_timeout: Duration::from_secs(5),
        first_token_timeout: first_token,
        idle_timeout: idle,
        total_timeout: total,
    })
    .expect("client");
    let req = PreparedRequest {
        id: 1,
        body: Bytes::from_static(b"{}"),
        input_tokens: 1,
        max_tokens: 8,
        ignore_eos: false,
        class: 0,
        capture_text: false,
    };
    client
        .execute(&req, Instant::now(), &CancellationToken::new())
        .await
}

#[tokio::test]
async fn no_content_before_the_first_token_timeout() {
    let url = stalling_server(vec![ROLE], Duration::from_millis(5)).await;
    let t = run(
        url,
        Duration::from_millis(200),
        Some(Duration::from_secs(30)),
        Duration::from_secs(60),
    )
    .await;
    assert_eq!(t.error, Some(ErrorClass::TimeoutFirstToken), "{t:?}");
    assert!(t.chunks.is_empty());
}

#[tokio::test]
async fn content_then_silence_is_an_idle_timeout_sooner_than_the_first_token_one() {
    // The idle limit after the content (1 s) comes long before the first-token deadline
    // the timer was armed with (30 s): it must be moved earlier.
    let url = stalling_server(vec![CONTENT, CONTENT, CONTENT], Duration::from_millis(20)).await;
    let t = run(
        url,
        Duration::from_secs(30),
        Some(Duration::from_secs(1)),
        Duration::from_secs(60),
    )
    .await;
    assert_eq!(t.error, Some(ErrorClass::TimeoutIdle), "{t:?}");
    assert_eq!(t.chunks.len(), 3);
}

#[tokio::test]
async fn content_after_the_first_token_deadline_passes_keeps_the_stream_to_its_total_timeout() {
    // Without an idle timeout, content clears the first-token deadline: when the timer armed
    // for it fires, it must be re-armed for the total deadline, not end the stream.
    let url = stalling_server(vec![CONTENT, CONTENT], Duration::from_millis(10)).await;
    let t = run(url, Duration::from_secs(1), None, Duration::from_secs(3)).await;
    assert_eq!(t.error, Some(ErrorClass::TimeoutTotal), "{t:?}");
    assert_eq!(t.chunks.len(), 2);
}

#[tokio::test]
async fn each_chunk_moves_the_idle_limit() {
    // Ten chunks 200 ms apart under a 1.5 s idle timeout: every gap is well within it, though
    // the stream outlasts the first idle limit; only the silence after the last one ends it.
    let url = stalling_server(vec![CONTENT; 10], Duration::from_millis(200)).await;
    let t = run(
        url,
        Duration::from_secs(30),
        Some(Duration::from_millis(1500)),
        Duration::from_secs(60),
    )
    .await;
    assert_eq!(t.error, Some(ErrorClass::TimeoutIdle), "{t:?}");
    assert_eq!(t.chunks.len(), 10);
}
