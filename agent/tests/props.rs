//! Property tests for what a server sends: the SSE parser, the OpenAI decoder and the
//! Prometheus text parser.
//!
//! cargo-fuzz needs a nightly toolchain, so these run as `proptest` properties on stable, with
//! bounded case counts (a few seconds in all). Inputs that once broke a parser stay below as
//! plain regression tests.

use proptest::prelude::*;
use stampede_agent::client::decode::{decode, decode_into};
use stampede_agent::client::sse::{SseEvent, SseParser};
use stampede_agent::samplers::prometheus;

type Events = Vec<(Option<String>, String)>;

/// Feeds `input` cut at `cuts`, returning the events and the first error.
fn parse_split(input: &[u8], cuts: &[usize]) -> (Events, Option<String>) {
    let mut p = SseParser::new();
    let mut out = Vec::new();
    let mut push = |e: SseEvent<'_>| out.push((e.event.map(str::to_string), e.data.to_string()));
    let mut last = 0;
    for &cut in cuts {
        let cut = cut.clamp(last, input.len());
        if let Err(e) = p.feed(&input[last..cut], &mut push) {
            return (out, Some(e.to_string()));
        }
        last = cut;
    }
    if let Err(e) = p.feed(&input[last..], &mut push) {
        return (out, Some(e.to_string()));
    }
    let err = p.finish(&mut push).err().map(|e| e.to_string());
    (out, err)
}

/// Bytes that make an event stream interesting, beside arbitrary ones.
fn stream_bytes() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(
        prop_oneof![
            4 => prop::sample::select(b"data: \r\n:event{}\"x".to_vec()),
            1 => any::<u8>(),
        ],
        0..400,
    )
}

/// Cases per property: bounded for the test-suite, more with `PROPTEST_CASES=N` for a longer
/// search.
fn cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases(512)))]

    #[test]
    fn any_split_of_any_bytes_gives_the_same_events(
        input in stream_bytes(),
        mut cuts in prop::collection::vec(0..400usize, 0..12),
    ) {
        cuts.sort_unstable();
        let whole = parse_split(&input, &[]);
        let split = parse_split(&input, &cuts);
        match (&whole.1, &split.1) {
            // Without an error, the events are the same however the bytes arrived.
            (None, None) => prop_assert_eq!(&whole.0, &split.0),
            // A malformed stream is malformed either way.
            (Some(_), Some(_)) => {}
            _ => prop_assert!(false, "whole {:?} split {:?}", whole.1, split.1),
        }
    }

    #[test]
    fn any_text_is_decoded_or_refused(text in any::<String>()) {
        let mut content = String::new();
        let _ = decode(&text);
        let _ = decode_into(&text, Some(&mut content));
    }

    #[test]
    fn any_json_like_chunk_is_decoded_or_refused(
        parts in prop::collection::vec(
            prop::sample::select(vec![
                "{", "}", "[", "]", ",", ":", "\"choices\"", "\"delta\"", "\"message\"",
                "\"content\"", "\"text\"", "\"usage\"", "\"completion_tokens\"",
                "\"prompt_tokens\"", "\"error\"", "\"message\"", "\"finish_reason\"", "null",
                "\"x\"", "1", "-1", "4294967296", "1e999", "true", "\"\\ud800\"",
                "\"reasoning_content\"",
            ]),
            0..40,
        )
    ) {
        let text = parts.concat();
        let mut content = String::new();
        if let Ok(d) = decode_into(&text, Some(&mut content)) {
            prop_assert!(d.content_bytes >= content.len() || content.is_empty());
        }
    }

    #[test]
    fn any_scrape_is_parsed_without_panic(
        lines in prop::collection::vec(
            prop_oneof![
                Just("# TYPE vllm:num_requests_running gauge".to_string()),
                Just("# HELP x y".to_string()),
                Just("vllm:num_requests_running{model=\"m\"} 3".to_string()),
                Just("x_bucket{le=\"+Inf\"} 5".to_string()),
                Just("x_sum 1.5\nx_count 2".to_string()),
                Just("y NaN".to_string()),
                Just("y +Inf 1700000000000".to_string()),
                any::<String>(),
                prop::collection::vec(
                    prop::sample::select(vec!['{', '}', '"', '=', ' ', '#', 'a', '1', '.', '\\', ',', '\r']),
                    0..30,
                ).prop_map(|c| c.into_iter().collect::<String>()),
            ],
            0..12,
        )
    ) {
        let text = lines.join("\n");
        let parsed = prometheus::parse(&text);
        prop_assert!(parsed.malformed_lines as usize <= text.lines().count() + 1);
    }
}

/// Regression cases: inputs kept from the properties above.
#[test]
fn sse_regressions() {
    for (input, cuts) in [
        (&b"\r"[..], &[0usize][..]),
        (b"data\r\r\n", &[5, 6]),
        (b"data: a\r", &[8]),
        (b":\xff\n\ndata: b\n\n", &[1]),
        (b"data: \xff", &[6]),
        (b"event\ndata\n\n", &[]),
    ] {
        let whole = parse_split(input, &[]);
        let split = parse_split(input, cuts);
        assert_eq!(whole.1.is_some(), split.1.is_some(), "{input:?}");
        if whole.1.is_none() {
            assert_eq!(whole.0, split.0, "{input:?}");
        }
    }
}

#[test]
fn decoder_regressions() {
    for text in [
        "",
        "null",
        "[]",
        "{\"choices\":null}",
        "{\"choices\":[null]}",
        "{\"choices\":[{\"delta\":{\"content\":\"\\ud800\"}}]}",
        "{\"usage\":{\"completion_tokens\":-1}}",
        "{\"usage\":{\"completion_tokens\":1e999}}",
        "{\"error\":null}",
        "{\"error\":7}",
    ] {
        let mut content = String::new();
        let _ = decode_into(text, Some(&mut content));
    }
}

#[test]
fn prometheus_regressions() {
    for text in [
        "\r",
        "{",
        "a{",
        "a{b=\"",
        "a 1\r\nb",
        "# TYPE\n",
        "a{} \u{0}",
        "\\",
    ] {
        let _ = prometheus::parse(text);
    }
}
