//! Decoding of OpenAI-style response bodies and stream chunks, for chat and completions alike.
//!
//! Only what is measured is read: the content (to know a chunk carried tokens), the finish
//! reason, usage, and errors. Borrowed strings avoid copying the content of every token.

use std::borrow::Cow;

use serde::Deserialize;
use smallvec::SmallVec;

/// What one chunk (or a whole non-streamed body) said.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Decoded {
    /// Bytes of generated text (content, text or reasoning content) the chunk carried.
    pub content_bytes: usize,
    pub finish_reason: Option<String>,
    pub prompt_tokens: Option<u32>,
    pub completion_tokens: Option<u32>,
    /// The server's error message, when the chunk was an error.
    pub error: Option<String>,
}

/// A chunk whose JSON could not be read.
#[derive(Debug, thiserror::Error)]
#[error("response chunk is not OpenAI JSON: {0}")]
pub struct DecodeError(#[from] serde_json::Error);

#[derive(Deserialize)]
struct Body<'a> {
    /// Inline up to one choice (every chunk of an `n = 1` stream): no heap allocation for a
    /// chunk decoded for every token.
    #[serde(default, borrow)]
    choices: SmallVec<[Choice<'a>; 1]>,
    usage: Option<Usage>,
    error: Option<ErrorBody>,
}

#[derive(Deserialize)]
struct Choice<'a> {
    #[serde(borrow)]
    delta: Option<Message<'a>>,
    #[serde(borrow)]
    message: Option<Message<'a>>,
    #[serde(borrow)]
    text: Option<Cow<'a, str>>,
    #[serde(borrow)]
    finish_reason: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct Message<'a> {
    #[serde(borrow)]
    content: Option<Cow<'a, str>>,
    #[serde(borrow)]
    reasoning_content: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct Usage {
    prompt_tokens: Option<u32>,
    completion_tokens: Option<u32>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum ErrorBody {
    Object { message: Option<String> },
    Text(String),
}

/// Decodes one JSON chunk or body.
///
/// # Errors
/// When the text is not JSON of the expected shape.
pub fn decode(json: &str) -> Result<Decoded, DecodeError> {
    decode_into(json, None)
}

/// Decodes one JSON chunk or body and, given `text`, appends the answer's content to it
/// (reasoning content is not part of the answer a conversation carries on with).
///
/// # Errors
/// When the text is not JSON of the expected shape.
pub fn decode_into(json: &str, mut text: Option<&mut String>) -> Result<Decoded, DecodeError> {
    let body: Body<'_> = serde_json::from_str(json)?;
    let mut out = Decoded::default();
    for choice in &body.choices {
        for msg in [&choice.delta, &choice.message].into_iter().flatten() {
            out.content_bytes += msg.content.as_deref().map_or(0, str::len);
            out.content_bytes += msg.reasoning_content.as_deref().map_or(0, str::len);
            if let (Some(t), Some(c)) = (text.as_deref_mut(), msg.content.as_deref()) {
                t.push_str(c);
            }
        }
        out.content_bytes += choice.text.as_deref().map_or(0, str::len);
        if let (Some(t), Some(c)) = (text.as_deref_mut(), choice.text.as_deref()) {
            t.push_str(c);
        }
        if let Some(reason) = &choice.finish_reason {
            out.finish_reason = Some(reason.to_string());
        }
    }
    if let Some(usage) = body.usage {
        out.prompt_tokens = usage.prompt_tokens;
        out.completion_tokens = usage.completion_tokens;
    }
    out.error = body.error.map(|e| match e {
        ErrorBody::Object { message } => {
            message.unwrap_or_else(|| "error without a message".into())
        }
        ErrorBody::Text(t) => t,
    });
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chat_delta_with_content() {
        let d = decode(r#"{"id":"x","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":" hi\n\"q\""},"logprobs":null,"finish_reason":null}]}"#).unwrap();
        assert_eq!(d.content_bytes, 7);
        assert_eq!(d.finish_reason, None);
    }

    #[test]
    fn role_only_first_chunk_has_no_content() {
        let d = decode(r#"{"choices":[{"index":0,"delta":{"role":"assistant","content":""}}]}"#)
            .unwrap();
        assert_eq!(d.content_bytes, 0);
    }

    #[test]
    fn completions_text_and_finish_reason() {
        let d =
            decode(r#"{"choices":[{"index":0,"text":" end","finish_reason":"length"}]}"#).unwrap();
        assert_eq!(
            (d.content_bytes, d.finish_reason.as_deref()),
            (4, Some("length"))
        );
    }

    #[test]
    fn usage_chunk_with_empty_choices() {
        let d = decode(r#"{"choices":[],"usage":{"prompt_tokens":12,"completion_tokens":34,"total_tokens":46}}"#).unwrap();
        assert_eq!((d.prompt_tokens, d.completion_tokens), (Some(12), Some(34)));
    }

    #[test]
    fn non_streamed_message_body() {
        let d = decode(r#"{"choices":[{"message":{"role":"assistant","content":"abc"},"finish_reason":"stop"}],"usage":{"prompt_tokens":3,"completion_tokens":1}}"#).unwrap();
        assert_eq!((d.content_bytes, d.completion_tokens), (3, Some(1)));
    }

    #[test]
    fn reasoning_content_counts_as_content() {
        let d = decode(r#"{"choices":[{"delta":{"reasoning_content":"think"}}]}"#).unwrap();
        assert_eq!(d.content_bytes, 5);
    }

    #[test]
    fn error_objects_and_strings() {
        let d = decode(r#"{"error":{"message":"overloaded","type":"server_error"}}"#).unwrap();
        assert_eq!(d.error.as_deref(), Some("overloaded"));
        let d = decode(r#"{"error":"bad things"}"#).unwrap();
        assert_eq!(d.error.as_deref(), Some("bad things"));
    }

    #[test]
    fn content_is_kept_only_when_asked() {
        let mut text = String::from("a");
        decode_into(
            r#"{"choices":[{"delta":{"content":" b\"c"}}]}"#,
            Some(&mut text),
        )
        .unwrap();
        decode_into(r#"{"choices":[{"text":" d"}]}"#, Some(&mut text)).unwrap();
        assert_eq!(text, "a b\"c d");
    }

    #[test]
    fn every_choice_counts_in_order() {
        let mut text = String::new();
        let d = decode_into(
            r#"{"choices":[{"delta":{"content":"ab"}},{"delta":{"content":"c"},"finish_reason":"stop"},{"text":"de"}]}"#,
            Some(&mut text),
        )
        .unwrap();
        assert_eq!(
            (d.content_bytes, d.finish_reason.as_deref()),
            (5, Some("stop"))
        );
        assert_eq!(text, "abcde");
        assert_eq!(decode(r#"{"choices":[]}"#).unwrap(), Decoded::default());
        assert!(decode(r#"{"choices":null}"#).is_err());
    }

    #[test]
    fn malformed_json_is_an_error() {
        assert!(decode("{\"choices\":[").is_err());
        assert!(decode("not json").is_err());
        assert!(decode(r#"{"choices":"nope"}"#).is_err());
    }
}
