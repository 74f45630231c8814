//! The error behind a failure: the first message of each error class (and HTTP status), with
//! how many requests failed so, and the redaction that makes a server's message safe to show.
//!
//! A server's answer to a bad request says why ("Invalid API key"); the counts by class alone
//! (`http_4xx 9`) do not. The agent keeps the first message of each class per interval, the
//! controller merges them keeping the earliest, and summary.json, the console, the live view and
//! the report show them. Messages are redacted before they leave the agent: a server may echo
//! the key it refused.

use serde::{Deserialize, Serialize};

/// Longest message kept, in characters: enough for any server's sentence, short for a table.
pub const MAX_MESSAGE_CHARS: usize = 200;

/// Every error class a server or the network can cause, as results name them (the wire's
/// `ErrorClass` without `cancelled`, which is Stampede's own doing).
pub const ERROR_CLASSES: [&str; 11] = [
    "connect",
    "timeout_first_token",
    "timeout_total",
    "timeout_idle",
    "http_429",
    "http_4xx",
    "http_5xx",
    "stream_broken",
    "malformed",
    "empty",
    "short",
];

/// What replaces a secret in a message.
const REDACTED: &str = "[redacted]";

/// The first failure of one error class and HTTP status in a step, and how many failed so.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorSample {
    /// The error class (`http_4xx`, `connect`, `timeout_first_token`, ...).
    pub class: String,
    /// The HTTP status, for failures that got one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_status: Option<u16>,
    /// Requests that failed with this class and status.
    pub count: u64,
    /// The first of them's message, redacted and truncated.
    pub message: String,
}

impl ErrorSample {
    /// The class as the tables show it: `http_4xx 401`, or the class alone.
    pub fn label(&self) -> String {
        sample_key(&self.class, self.http_status)
    }
}

/// The key that tells error samples apart: the class, and the HTTP status when there is one
/// (`http_4xx 401`, `connect`).
pub fn sample_key(class: &str, http_status: Option<u16>) -> String {
    match http_status {
        Some(status) => format!("{class} {status}"),
        None => class.to_string(),
    }
}

/// A server's or a transport's message made safe to show and store: bearer tokens, `sk-` keys
/// and the values of key-like query parameters replaced by `[redacted]`, whitespace runs
/// folded to one space, and the result cut to [`MAX_MESSAGE_CHARS`] characters (with `...`).
pub fn redact_message(message: &str) -> String {
    let folded = message.split_whitespace().collect::<Vec<_>>().join(" ");
    let clean = redact_query_values(&redact_sk_keys(&redact_bearer(&folded)));
    truncate_chars(&clean, MAX_MESSAGE_CHARS)
}

/// Cuts `s` to `max` characters, marking the cut with `...`.
fn truncate_chars(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        None => s.to_string(),
        Some((end, _)) => format!("{}...", &s[..end]),
    }
}

/// Characters a token, key or query value is made of (stops at spaces, quotes, `&`, `,`).
fn is_token_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '~' | '+' | '/' | '=' | '*')
}

/// True when `s[..at]` does not end in a word character: a match starts a word there.
fn starts_word(s: &str, at: usize) -> bool {
    s[..at]
        .chars()
        .next_back()
        .is_none_or(|c| !(c.is_ascii_alphanumeric() || c == '_'))
}

/// The end of the token that starts at `from`.
fn token_end(s: &str, from: usize) -> usize {
    s[from..]
        .char_indices()
        .find(|&(_, c)| !is_token_char(c))
        .map_or(s.len(), |(i, _)| from + i)
}

/// `Bearer <token>` (any case) becomes `Bearer [redacted]`.
fn redact_bearer(s: &str) -> String {
    replace_after(s, &["bearer "], |rest| token_end(rest, 0))
}

/// The values of `api_key=`, `api-key=`, `apikey=`, `key=`, `access_token=` and `token=`.
fn redact_query_values(s: &str) -> String {
    const NAMES: [&str; 6] = [
        "api_key=",
        "api-key=",
        "apikey=",
        "access_token=",
        "token=",
        "key=",
    ];
    replace_after(s, &NAMES, |rest| {
        rest.char_indices()
            .find(|&(_, c)| c == '&' || c == '#' || c == '"' || c == '\'' || c.is_whitespace())
            .map_or(rest.len(), |(i, _)| i)
    })
}

/// `sk-...` keys (OpenAI's, `sk-proj-...` and the like) become `sk-[redacted]`.
fn redact_sk_keys(s: &str) -> String {
    replace_after(s, &["sk-"], |rest| {
        let end = token_end(rest, 0);
        // "sk-" followed by a word is not a key; a key has at least a few characters.
        if end >= 4 { end } else { 0 }
    })
}

/// Replaces what follows each of `prefixes` (matched case-insensitively at the start of a
/// word) up to `len(rest)` bytes with [`REDACTED`]; a length of 0 keeps the text.
fn replace_after(s: &str, prefixes: &[&str], len: impl Fn(&str) -> usize) -> String {
    let lower = s.to_ascii_lowercase();
    let mut out = String::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        let hit = prefixes
            .iter()
            .find(|p| lower[i..].starts_with(**p) && starts_word(s, i));
        if let Some(p) = hit {
            let value_at = i + p.len();
            let n = len(&s[value_at..]);
            if n > 0 {
                out.push_str(&s[i..value_at]);
                out.push_str(REDACTED);
                i = value_at + n;
                continue;
            }
        }
        let Some(c) = s[i..].chars().next() else {
            break;
        };
        out.push(c);
        i += c.len_utf8();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_redacted_and_the_rest_kept() {
        let cases = [
            ("Invalid API key", "Invalid API key"),
            (
                "HTTP 401 Unauthorized Incorrect API key provided: sk-proj-AbC123xyz_9.",
                "HTTP 401 Unauthorized Incorrect API key provided: sk-[redacted]",
            ),
            (
                "rejected header Authorization: Bearer eyJhbGciOi.J9.x-y_z sent",
                "rejected header Authorization: Bearer [redacted] sent",
            ),
            (
                "authorization: BEARER abc",
                "authorization: BEARER [redacted]",
            ),
            (
                "GET /v1/chat?api_key=s3cr3t&model=m failed",
                "GET /v1/chat?api_key=[redacted]&model=m failed",
            ),
            (
                "url http://h/v1?key=abc#frag and apikey=zzz",
                "url http://h/v1?key=[redacted]#frag and apikey=[redacted]",
            ),
            ("see access_token=t0k'", "see access_token=[redacted]'"),
            // Words that only look like a prefix stay.
            (
                "the task-force ask-me monkey=1",
                "the task-force ask-me monkey=1",
            ),
            ("a disk-io problem, sk-1", "a disk-io problem, sk-1"),
            ("  two\n lines\t here ", "two lines here"),
            ("Bearer", "Bearer"),
            ("", ""),
        ];
        for (input, want) in cases {
            assert_eq!(redact_message(input), want, "{input:?}");
        }
    }

    #[test]
    fn long_messages_are_cut_at_the_limit_on_a_character_boundary() {
        let long = "é".repeat(MAX_MESSAGE_CHARS + 5);
        let cut = redact_message(&long);
        assert_eq!(cut, format!("{}...", "é".repeat(MAX_MESSAGE_CHARS)));
        let exact = "x".repeat(MAX_MESSAGE_CHARS);
        assert_eq!(redact_message(&exact), exact);
        // A secret past the cut is redacted before the cut, never half shown.
        let tail = format!("{} sk-abcdefgh", "y".repeat(MAX_MESSAGE_CHARS - 6));
        assert_eq!(
            redact_message(&tail),
            format!("{} sk-[r...", "y".repeat(MAX_MESSAGE_CHARS - 6))
        );
    }

    #[test]
    fn labels_name_the_status_when_there_is_one() {
        assert_eq!(sample_key("http_4xx", Some(401)), "http_4xx 401");
        assert_eq!(sample_key("connect", None), "connect");
        let s = ErrorSample {
            class: "http_5xx".into(),
            http_status: Some(503),
            count: 2,
            message: "busy".into(),
        };
        assert_eq!(s.label(), "http_5xx 503");
    }
}
