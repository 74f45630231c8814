//! End to end: the error behind a failure. A real HTTP server lists its model but answers every
//! completion with 401 and an OpenAI-style JSON error that echoes the key it refused; the run
//! must say why (the server's message, redacted), keep it in summary.json, and stop early with
//! exit 1 instead of firing for the whole stage.

mod util;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};

use util::*;

/// The key the plan sends and the server echoes: it must appear in no results file.
const KEY: &str = "sk-e2e-0123456789abcdef";

/// Serves until the test process ends: `GET .../models` lists model `m`; anything else is 401.
fn start_refusing_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("address");
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            std::thread::spawn(move || serve(conn));
        }
    });
    addr
}

/// Answers the requests of one keep-alive connection.
fn serve(conn: TcpStream) {
    let mut reader = BufReader::new(conn.try_clone().expect("clone"));
    let mut out = conn;
    loop {
        let mut request_line = String::new();
        if reader.read_line(&mut request_line).unwrap_or(0) == 0 {
            return;
        }
        let mut length = 0usize;
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            if let Some((name, value)) = line.split_once(':')
                && name.eq_ignore_ascii_case("content-length")
            {
                length = value.trim().parse().unwrap_or(0);
            }
        }
        let mut body = vec![0; length];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        let (status, json) = if request_line.starts_with("GET") && request_line.contains("/models")
        {
            (
                "200 OK",
                r#"{"object":"list","data":[{"id":"m","object":"model"}]}"#.to_string(),
            )
        } else {
            (
                "401 Unauthorized",
                format!(
                    r#"{{"error":{{"message":"Incorrect API key provided: {KEY}. You can find your API key in your account settings.","type":"invalid_request_error","param":null,"code":"invalid_api_key"}}}}"#
                ),
            )
        };
        let response = format!(
            "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{json}",
            json.len()
        );
        if out.write_all(response.as_bytes()).is_err() {
            return;
        }
    }
}

#[test]
fn a_server_refusing_every_request_stops_the_run_with_its_message() {
    let addr = start_refusing_server();
    let ws = Workspace::new();
    let path = ws.write_plan(&format!(
        r#"name = "denied"
[target]
base_url = "http://{addr}/v1"
model = "m"
api_key = "{KEY}"

[workload]
input_tokens = 16
output_tokens = 8

[[stage]]
name = "a"
qps = 20
duration = "20s"

[[stage]]
name = "b"
qps = 20
duration = "20s"
"#
    ));
    let out = ws.run(&path, &[]);
    let said = text(&out);
    assert_eq!(out.status.code(), Some(1), "{said}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    // The console says why it stopped, and the step's failures with the server's words.
    assert!(
        stdout.contains("aborting: the first ") && stdout.contains("all failed with http_4xx 401"),
        "{said}"
    );
    assert!(
        stdout.contains("requests failed with http_4xx 401: HTTP 401 Unauthorized Incorrect API key provided: sk-[redacted]"),
        "{said}"
    );
    assert!(!said.contains(KEY), "the key is printed: {said}");

    let summary = ws.summary();
    assert_eq!(summary["status"], "aborted", "{summary}");
    let stages = summary["stages"].as_array().expect("stages");
    assert_eq!(stages.len(), 1, "stage b never runs: {summary}");
    let a = &stages[0];
    let messages = a["error_messages"].as_array().expect("error_messages");
    assert_eq!(messages.len(), 1, "{a}");
    assert_eq!(messages[0]["class"], "http_4xx");
    assert_eq!(messages[0]["http_status"], 401);
    assert_eq!(messages[0]["count"], a["requests"]["failed"]);
    let message = messages[0]["message"].as_str().expect("message");
    assert!(
        message.starts_with("HTTP 401 Unauthorized Incorrect API key provided: sk-[redacted]"),
        "{message}"
    );
    // Stopped early: far fewer requests than the stage's 400 were sent.
    let sent = a["requests"]["sent"].as_u64().expect("sent");
    assert!((10..200).contains(&sent), "sent {sent}");

    // No results file holds the key; the report's errors table shows the message.
    let dir = ws.results_dir();
    for entry in std::fs::read_dir(&dir).expect("results").flatten() {
        if entry.path().is_file() {
            let bytes = std::fs::read(entry.path()).expect("read");
            assert!(
                !String::from_utf8_lossy(&bytes).contains(KEY),
                "{} holds the key",
                entry.path().display()
            );
        }
    }
    let md = std::fs::read_to_string(dir.join("report.md")).expect("report.md");
    assert!(
        md.contains("| http_4xx 401 |") && md.contains("Incorrect API key provided: sk-[redacted]"),
        "{md}"
    );
}
