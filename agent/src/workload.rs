//! Request bodies, built ahead of their send time from the share's workload and seed.
//!
//! Prompts are synthetic text: words drawn from a list of common English words that each
//! encode as one token (with their leading space) in the usual BPE vocabularies, so a prompt of
//! N words is about N tokens. Words are drawn from a generator seeded by (seed, agent, request),
//! so every request differs from its first word and a server's prefix cache cannot flatter the
//! results, while the same seed gives the same requests.

use bytes::Bytes;
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use serde::Serialize;
use stampede_common::plan::ApiKind;

use crate::client::PreparedRequest;

/// Common English words, each one token with a leading space in cl100k_base and o200k_base.
const WORDS: &[&str] = &[
    "the", "of", "and", "to", "in", "is", "that", "for", "it", "as", "was", "with", "be", "by",
    "on", "not", "he", "this", "are", "or", "his", "from", "at", "which", "but", "have", "an",
    "had", "they", "you", "were", "their", "one", "all", "we", "can", "her", "has", "there",
    "been", "if", "more", "when", "will", "would", "who", "so", "no", "she", "other", "its", "may",
    "these", "what", "them", "than", "some", "him", "time", "into", "only", "do", "could", "new",
    "about", "two", "first", "then", "also", "after", "any", "like", "should", "people", "over",
    "such", "our", "made", "out", "most", "very", "just", "where", "many", "before", "must",
    "through", "back", "years", "much", "your", "way", "well", "down", "even", "because", "good",
    "each", "those", "how", "state", "work", "make", "life", "long", "day", "world", "water",
    "house", "light", "river", "city", "market", "model", "system", "small", "large", "under",
    "while", "never", "again", "since", "place", "great", "still", "every", "around", "early",
    "number", "right", "point", "order", "power", "music", "table", "paper", "money",
];

/// What a share asks of each request.
#[derive(Debug, Clone)]
pub struct WorkloadConfig {
    pub api: ApiKind,
    pub model: String,
    pub stream: bool,
    pub input_tokens: u32,
    pub output_tokens: u32,
    pub ignore_eos: bool,
    pub seed: u64,
    pub agent_index: u32,
}

#[derive(Serialize)]
struct Message<'a> {
    role: &'static str,
    content: &'a str,
}

#[derive(Serialize)]
struct StreamOptions {
    include_usage: bool,
}

#[derive(Serialize)]
struct Body<'a> {
    model: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    messages: Option<[Message<'a>; 1]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    prompt: Option<&'a str>,
    max_tokens: u32,
    stream: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    stream_options: Option<StreamOptions>,
    ignore_eos: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    min_tokens: Option<u32>,
    temperature: f32,
}

/// Builds the request bodies of one share.
#[derive(Debug, Clone)]
pub struct RequestBuilder {
    config: WorkloadConfig,
}

impl RequestBuilder {
    pub fn new(config: WorkloadConfig) -> Self {
        RequestBuilder { config }
    }

    /// The synthetic prompt of request `id`: `input_tokens` words.
    pub fn prompt(&self, id: u64) -> String {
        self.prompt_of(id, self.config.input_tokens)
    }

    /// A synthetic prompt of `input_tokens` words for request `id`.
    fn prompt_of(&self, id: u64, input_tokens: u32) -> String {
        let c = &self.config;
        let seed =
            c.seed ^ (u64::from(c.agent_index) << 48) ^ id.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        let mut rng = StdRng::seed_from_u64(seed);
        let mut text = String::with_capacity(input_tokens as usize * 7);
        for i in 0..input_tokens {
            if i > 0 {
                text.push(' ');
            }
            text.push_str(WORDS[rng.random_range(0..WORDS.len())]);
        }
        text
    }

    /// The body of request `id`, ready to send.
    pub fn build(&self, id: u64) -> PreparedRequest {
        self.build_sized(id, self.config.input_tokens, self.config.output_tokens)
    }

    /// The body of request `id` with its own lengths (trace replay).
    pub fn build_sized(&self, id: u64, input_tokens: u32, output_tokens: u32) -> PreparedRequest {
        let c = &self.config;
        let prompt = self.prompt_of(id, input_tokens);
        let body = Body {
            model: &c.model,
            messages: (c.api == ApiKind::Chat).then(|| {
                [Message {
                    role: "user",
                    content: &prompt,
                }]
            }),
            prompt: (c.api == ApiKind::Completions).then_some(prompt.as_str()),
            max_tokens: output_tokens,
            stream: c.stream,
            stream_options: c.stream.then_some(StreamOptions {
                include_usage: true,
            }),
            ignore_eos: c.ignore_eos,
            min_tokens: c.ignore_eos.then_some(output_tokens),
            temperature: 0.0,
        };
        // Serializing plain structs of strings and numbers cannot fail.
        let body = serde_json::to_vec(&body).unwrap_or_default();
        PreparedRequest {
            id,
            body: Bytes::from(body),
            input_tokens,
            max_tokens: output_tokens,
            ignore_eos: c.ignore_eos,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn builder(api: ApiKind) -> RequestBuilder {
        RequestBuilder::new(WorkloadConfig {
            api,
            model: "m".into(),
            stream: true,
            input_tokens: 50,
            output_tokens: 8,
            ignore_eos: true,
            seed: 1,
            agent_index: 0,
        })
    }

    #[test]
    fn prompts_have_the_asked_length_and_differ_per_request() {
        let b = builder(ApiKind::Chat);
        let (p0, p1) = (b.prompt(0), b.prompt(1));
        assert_eq!(p0.split_whitespace().count(), 50);
        assert_ne!(p0, p1);
        assert_eq!(
            p0,
            builder(ApiKind::Chat).prompt(0),
            "same seed, same prompt"
        );
    }

    #[test]
    fn chat_and_completion_bodies() {
        let chat: serde_json::Value =
            serde_json::from_slice(&builder(ApiKind::Chat).build(3).body).unwrap();
        assert_eq!(chat["messages"][0]["role"], "user");
        assert_eq!(chat["max_tokens"], 8);
        assert_eq!(chat["stream_options"]["include_usage"], true);
        assert!(chat.get("prompt").is_none());
        let comp: serde_json::Value =
            serde_json::from_slice(&builder(ApiKind::Completions).build(3).body).unwrap();
        assert!(comp["prompt"].as_str().unwrap().len() > 50);
        assert!(comp.get("messages").is_none());
    }
}
