//! Request bodies: the OpenAI chat or completions JSON of one request.

use bytes::Bytes;
use serde::Serialize;
use serde_json::{Map, Value};
use stampede_common::plan::ApiKind;
use stampede_common::workload::ChatMessage;

/// What the body of every request of a share says besides its prompt.
#[derive(Debug, Clone)]
pub struct BodyConfig {
    pub api: ApiKind,
    pub model: String,
    pub stream: bool,
}

/// Output control of one request.
#[derive(Debug, Clone, Copy)]
pub struct OutputControl {
    pub max_tokens: u32,
    pub ignore_eos: bool,
    pub min_tokens: bool,
}

#[derive(Serialize)]
struct StreamOptions {
    include_usage: bool,
}

#[derive(Serialize)]
struct Body<'a> {
    model: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    messages: Option<&'a [ChatMessage]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    prompt: Option<&'a str>,
    max_tokens: u32,
    stream: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    stream_options: Option<StreamOptions>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ignore_eos: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    min_tokens: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    temperature: Option<f32>,
    #[serde(flatten)]
    extra: &'a Map<String, Value>,
}

/// The prompt of a completions request: the messages' contents, one paragraph each.
pub fn flatten(messages: &[ChatMessage]) -> String {
    let mut text = String::new();
    for (i, m) in messages.iter().enumerate() {
        if i > 0 {
            text.push_str("\n\n");
        }
        text.push_str(&m.content);
    }
    text
}

/// The JSON body of one request. `prompt` is the completions prompt (the messages flattened),
/// used when the API is completions.
pub fn body(
    cfg: &BodyConfig,
    messages: &[ChatMessage],
    prompt: Option<&str>,
    out: OutputControl,
    extra: &Map<String, Value>,
) -> Bytes {
    let chat = cfg.api == ApiKind::Chat;
    let body = Body {
        model: &cfg.model,
        messages: chat.then_some(messages),
        prompt: if chat { None } else { prompt },
        max_tokens: out.max_tokens,
        stream: cfg.stream,
        stream_options: cfg.stream.then_some(StreamOptions {
            include_usage: true,
        }),
        ignore_eos: out.ignore_eos.then_some(true),
        min_tokens: out.min_tokens.then_some(out.max_tokens),
        // Greedy by default, so answers do not vary with sampling; extra_body may say otherwise.
        temperature: (!extra.contains_key("temperature")).then_some(0.0),
        extra,
    };
    // Serializing strings, numbers and JSON values cannot fail.
    Bytes::from(serde_json::to_vec(&body).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(role: &str, content: &str) -> ChatMessage {
        ChatMessage {
            role: role.into(),
            content: content.into(),
        }
    }

    #[test]
    fn chat_and_completion_bodies() {
        let cfg = BodyConfig {
            api: ApiKind::Chat,
            model: "m".into(),
            stream: true,
        };
        let msgs = [msg("system", "s"), msg("user", "u \"q\"")];
        let mut extra = Map::new();
        extra.insert("top_p".into(), 0.9.into());
        extra.insert("temperature".into(), 0.7.into());
        let out = OutputControl {
            max_tokens: 8,
            ignore_eos: true,
            min_tokens: false,
        };
        let chat: Value = serde_json::from_slice(&body(&cfg, &msgs, None, out, &extra)).unwrap();
        assert_eq!(chat["messages"][1]["content"], "u \"q\"");
        assert_eq!(chat["max_tokens"], 8);
        assert_eq!(chat["ignore_eos"], true);
        assert!(chat.get("min_tokens").is_none());
        assert_eq!(
            (chat["top_p"].clone(), chat["temperature"].clone()),
            (0.9.into(), 0.7.into())
        );
        assert_eq!(chat["stream_options"]["include_usage"], true);
        let cfg = BodyConfig {
            api: ApiKind::Completions,
            stream: false,
            ..cfg
        };
        let text = flatten(&msgs);
        let out = OutputControl {
            max_tokens: 4,
            ignore_eos: false,
            min_tokens: true,
        };
        let comp: Value =
            serde_json::from_slice(&body(&cfg, &msgs, Some(&text), out, &Map::new())).unwrap();
        assert_eq!(comp["prompt"], "s\n\nu \"q\"");
        assert!(comp.get("messages").is_none() && comp.get("ignore_eos").is_none());
        assert_eq!(
            (comp["min_tokens"].clone(), comp["temperature"].clone()),
            (4.into(), 0.0.into())
        );
    }
}
