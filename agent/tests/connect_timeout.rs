//! The connect timeout, the one timeout kind the end-to-end tests cannot reach (the controller's
//! preflight refuses a target it cannot connect to before any stage): a listener whose accept
//! queue is full leaves new connections hanging in their handshake, as a blackholed server does,
//! but on loopback.

use std::time::Duration;

use bytes::Bytes;
use stampede_agent::client::{ClientConfig, OpenAiClient, PreparedRequest};
use stampede_common::plan::ApiKind;
use stampede_common::timeline::ErrorClass;
use tokio::net::{TcpSocket, TcpStream};
use tokio::time::{Instant, timeout};
use tokio_util::sync::CancellationToken;

#[tokio::test]
async fn a_server_that_never_accepts_is_a_classified_connect_timeout() {
    let socket = TcpSocket::new_v4().expect("socket");
    socket.bind("127.0.0.1:0".parse().unwrap()).expect("bind");
    let addr = socket.local_addr().expect("address");
    // Never accepted: once its queue is full, the kernel drops the SYNs that follow.
    let _listener = socket.listen(0).expect("listen");
    let mut held = Vec::new();
    let mut full = false;
    for _ in 0..64 {
        match timeout(Duration::from_millis(300), TcpStream::connect(addr)).await {
            Ok(Ok(s)) => held.push(s),
            _ => {
                full = true;
                break;
            }
        }
    }
    if !full {
        eprintln!("skipped: this kernel accepts connections past a full backlog");
        return;
    }
    let client = OpenAiClient::try_new(ClientConfig {
        base_url: format!("http://{addr}/v1"),
        api: ApiKind::Chat,
        api_key: None,
        stream: true,
        connect_timeout: Duration::from_millis(400),
        first_token_timeout: Duration::from_secs(10),
        idle_timeout: Some(Duration::from_secs(10)),
        total_timeout: Duration::from_secs(20),
    })
    .expect("client");
    let req = PreparedRequest {
        id: 1,
        body: Bytes::from_static(b"{}"),
        input_tokens: 1,
        max_tokens: 1,
        ignore_eos: false,
        class: 0,
        capture_text: false,
    };
    let start = Instant::now();
    let t = client.execute(&req, start, &CancellationToken::new()).await;
    let took = start.elapsed();
    assert_eq!(t.error, Some(ErrorClass::Connect), "{:?}", t.error_detail);
    assert!(
        (Duration::from_millis(350)..Duration::from_secs(5)).contains(&took),
        "ended by the connect timeout, not another: {took:?}"
    );
    drop(held);
}
