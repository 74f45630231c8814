//! Token counting and the words the simulator "generates".
//!
//! # Prompt tokens: a documented approximation
//!
//! The simulator carries no tokenizer. Stampede builds its prompts from English words that are
//! one token each in common BPE vocabularies (cl100k, o200k, Llama 3), so the number of
//! whitespace-separated words is the prompt's token count to within a few percent. For chat,
//! each message adds [`CHAT_TOKENS_PER_MESSAGE`] tokens of template (role header and
//! end-of-turn markers) and the reply's header adds [`CHAT_TOKENS_PRIMING`], as OpenAI's own
//! counting guide and the Llama 3 template do. Prompts given as token-id arrays count one
//! token per id.
//!
//! # Output tokens
//!
//! Each generated token is a short common word with a leading space (" the", " model"), so a
//! client that re-tokenizes the text counts the same number of tokens the server reports.

/// Template tokens added per chat message.
pub const CHAT_TOKENS_PER_MESSAGE: u32 = 4;
/// Template tokens that prime the assistant's reply.
pub const CHAT_TOKENS_PRIMING: u32 = 3;

/// Words that are single tokens in cl100k, o200k and Llama 3 vocabularies, with their leading
/// space. None needs JSON escaping, which the streaming path relies on.
pub(crate) const VOCAB: &[&str] = &[
    " the", " of", " and", " to", " in", " is", " that", " for", " it", " as", " was", " with",
    " be", " by", " on", " not", " he", " this", " are", " or", " his", " from", " at", " which",
    " but", " have", " an", " had", " they", " you", " were", " their", " one", " all", " we",
    " can", " her", " has", " there", " been", " if", " more", " when", " will", " would", " who",
    " so", " no", " model", " time", " data", " system", " server", " request", " answer",
    " token", " first", " new", " each", " other", " some", " what", " about", " many",
];

/// The text of token `index` of a completion whose words start at `offset` in the vocabulary.
pub(crate) fn word(offset: u64, index: u32) -> &'static str {
    VOCAB[((offset + u64::from(index)) % VOCAB.len() as u64) as usize]
}

/// Counts the tokens of a plain-text prompt: its whitespace-separated words.
pub fn count_text(text: &str) -> u32 {
    u32::try_from(text.split_whitespace().count()).unwrap_or(u32::MAX)
}

/// Counts a chat prompt from the texts of its messages, template overhead included.
pub fn count_chat<'a>(messages: impl IntoIterator<Item = &'a str>) -> u32 {
    let mut total = CHAT_TOKENS_PRIMING;
    for m in messages {
        total = total
            .saturating_add(CHAT_TOKENS_PER_MESSAGE)
            .saturating_add(count_text(m));
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_words_and_template() {
        assert_eq!(count_text("the quick  brown\nfox"), 4);
        assert_eq!(count_text(""), 0);
        assert_eq!(
            count_chat(["hello there", "how are you"]),
            3 + 4 + 2 + 4 + 3
        );
        assert_eq!(count_chat([]), 3);
    }

    #[test]
    fn vocab_needs_no_json_escaping_and_has_one_leading_space() {
        for w in VOCAB {
            assert_eq!(serde_json::to_string(w).expect("str"), format!("\"{w}\""));
            assert!(w.starts_with(' ') && !w[1..].contains(' '), "{w:?}");
        }
        assert_eq!(word(0, 0), " the");
        assert_eq!(word(1, VOCAB.len() as u32), " of");
    }
}
