//! Text of an exact number of tokens.
//!
//! Filler text is made of common English words that are one token each for the tokenizer in
//! use, both alone and after a space. For byte-level BPE tokenizers (cl100k, o200k, Llama 3,
//! Qwen, ...) the pre-tokenizer splits text before every ` word`, so N such words separated by
//! single spaces are exactly N tokens, and appending them after text that ends in a word adds
//! exactly N: [`Filler::push`] builds such text without tokenizing it. [`Filler::new`] checks
//! that property on long samples; where it does not hold (other tokenizers), and around text
//! that is not filler (a template, a dataset prompt), [`Filler::fit`] counts and adjusts.

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

use super::tokenizer::Tokenizer;

/// Candidate words; those that are not one token for the tokenizer are left out.
#[rustfmt::skip]
const WORDS: &[&str] = &[
    "the", "of", "and", "to", "in", "is", "that", "for", "it", "as", "was", "with", "be", "by",
    "on", "not", "he", "this", "are", "or", "his", "from", "at", "which", "but", "have", "an",
    "had", "they", "you", "were", "their", "one", "all", "we", "can", "her", "has", "there", "been",
    "if", "more", "when", "will", "would", "who", "so", "no", "she", "other", "its", "may", "these",
    "what", "them", "than", "some", "him", "time", "into", "only", "do", "could", "new", "about",
    "two", "first", "then", "also", "after", "any", "like", "should", "people", "over", "such",
    "our", "made", "out", "most", "very", "just", "where", "many", "before", "must", "through",
    "back", "years", "much", "your", "way", "well", "down", "even", "because", "good", "each",
    "those", "how", "state", "work", "make", "life", "long", "day", "world", "water", "house",
    "light", "river", "city", "market", "model", "system", "small", "large", "under", "while",
    "never", "again", "since", "place", "great", "still", "every", "around", "early", "number",
    "right", "point", "order", "power", "music", "table", "paper", "money", "data", "server",
    "request", "answer", "token", "question", "story", "group", "school", "family", "country",
    "problem", "service", "hand", "part", "case", "week", "company", "program", "government",
    "night", "area", "home", "room", "fact", "month", "lot", "study", "book", "eye", "job", "word",
    "business", "issue", "side", "kind", "head", "friend", "father", "mother", "hour", "game",
    "line", "end", "member", "law", "car", "name", "president", "team", "minute", "idea", "body",
    "information", "nothing", "ago", "level", "office", "door", "health", "person", "art", "war",
    "history", "party", "result", "change", "morning", "reason", "research", "girl", "guy",
    "moment", "air", "teacher", "force", "education", "foot", "boy", "age", "policy", "process",
    "view", "field", "student", "form", "plan", "test", "report", "value", "price", "road",
    "street", "garden", "village", "forest", "mountain", "ocean", "island", "bridge", "window",
    "letter", "picture", "voice", "sound", "color", "heart", "mind", "child", "young", "old",
    "high", "low", "open", "close", "public", "private", "simple", "clear", "strong", "free",
    "full", "real", "best", "better", "little", "own", "same", "few", "next", "last", "late",
    "hard", "major", "social", "local", "national", "human", "general", "certain", "political",
    "possible", "important", "different", "whole", "read", "write", "run", "play", "move", "live",
    "believe", "bring", "happen", "provide", "sit", "stand", "lose", "pay", "meet", "include",
    "continue", "set", "learn", "lead", "understand", "watch", "follow", "stop", "create", "speak",
    "allow", "add", "spend", "grow", "offer", "remember", "love", "consider", "appear", "buy",
    "wait", "serve", "die", "send", "expect", "build", "stay", "fall", "cut", "reach", "kill",
    "remain", "suggest", "raise", "pass", "sell", "require", "decide", "pull", "return", "explain",
    "hope", "develop", "carry", "drive", "break", "receive", "agree", "support", "hit", "produce",
    "eat", "cover", "catch", "draw", "choose", "often", "always", "sometimes", "together",
    "already", "almost", "enough", "quite", "perhaps", "rather", "later", "soon", "today",
    "tomorrow", "yesterday", "near", "far", "above", "below", "between", "against", "during",
    "without", "within", "along", "across", "behind", "beyond", "toward", "upon", "among",
];

/// Builds text of an exact number of tokens for one tokenizer.
#[derive(Debug, Clone)]
pub struct Filler {
    words: Vec<&'static str>,
    /// N words are exactly N tokens, alone or after text ending in a word.
    exact: bool,
}

/// Filler could not bring a text to its length.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FitError {
    /// The text around the filler is already `base` tokens, more than the `target`.
    #[error("the text is already {base} tokens without filler, more than the {target} asked for")]
    TooLong { base: usize, target: usize },
    /// No number of words gave exactly the target (boundary merges kept moving the count).
    #[error("no filler length gives exactly {target} tokens (closest {closest})")]
    NotExact { target: usize, closest: usize },
}

impl Filler {
    /// The filler of `tok`: its one-token words, and whether they compose exactly.
    pub fn new(tok: &Tokenizer) -> Filler {
        let words: Vec<&'static str> = WORDS
            .iter()
            .copied()
            .filter(|w| tok.count(w) == 1 && tok.count(&format!(" {w}")) == 1)
            .collect();
        if words.len() < 16 {
            // Not a BPE of English words: any words will do, and every text is counted.
            return Filler {
                words: WORDS.to_vec(),
                exact: false,
            };
        }
        let mut f = Filler { words, exact: true };
        f.exact = f.composes(tok);
        f
    }

    /// True when long random texts of these words count exactly, alone and after a word.
    fn composes(&self, tok: &Tokenizer) -> bool {
        (0..3u64).all(|seed| {
            let mut rng = StdRng::seed_from_u64(seed);
            let mut text = String::new();
            self.push(&mut rng, 1500, false, &mut text);
            let head_len = tok.count(&text);
            self.push(&mut rng, 500, true, &mut text);
            head_len == 1500 && tok.count(&text) == 2000
        })
    }

    /// True when [`Filler::push`] gives exactly the words' count in tokens.
    pub fn is_exact(&self) -> bool {
        self.exact
    }

    /// Appends `n` words drawn from `rng`, separated by spaces; the first is preceded by a
    /// space when `spaced` (text already ends in a word).
    pub fn push(&self, rng: &mut StdRng, n: usize, spaced: bool, out: &mut String) {
        out.reserve(n * 7);
        for i in 0..n {
            if i > 0 || spaced {
                out.push(' ');
            }
            out.push_str(self.words[rng.random_range(0..self.words.len())]);
        }
    }

    /// `head`, filler words drawn from a generator seeded with `seed`, then `tail`, with exactly
    /// `target` tokens in all.
    ///
    /// # Errors
    /// When `head` and `tail` alone are longer than `target`, or no number of words lands on it.
    pub fn fit(
        &self,
        tok: &Tokenizer,
        seed: u64,
        head: &str,
        tail: &str,
        target: usize,
    ) -> Result<String, FitError> {
        let spaced = head.chars().last().is_some_and(|c| !c.is_whitespace());
        let build = |n: usize| {
            let mut text = String::with_capacity(head.len() + tail.len() + n * 7);
            text.push_str(head);
            self.push(&mut StdRng::seed_from_u64(seed), n, spaced, &mut text);
            text.push_str(tail);
            text
        };
        let base = tok.count(&format!("{head}{tail}"));
        if base == target {
            return Ok(build(0));
        }
        if base > target {
            return Err(FitError::TooLong { base, target });
        }
        let mut n = target - base;
        let mut tried = Vec::new();
        let mut closest = base;
        for _ in 0..16 {
            let text = build(n);
            let c = self.count_filled(tok, &text, head.len(), tail.len(), n, spaced);
            if c == target {
                return Ok(text);
            }
            if c.abs_diff(target) < closest.abs_diff(target) {
                closest = c;
            }
            tried.push(n);
            let next = if c > target {
                n.saturating_sub((c - target).max(1))
            } else {
                n + (target - c)
            };
            // A step that comes back to a length already tried moves by one word instead.
            n = if tried.contains(&next) {
                if c > target {
                    n.saturating_sub(1)
                } else {
                    n + 1
                }
            } else {
                next
            };
            if tried.contains(&n) {
                break;
            }
        }
        Err(FitError::NotExact { target, closest })
    }

    /// The tokens of `text`: `n` filler words between `head_len` bytes of head and `tail_len`
    /// bytes of tail. With a built-in BPE whose words compose, only the two ends are counted:
    /// its pre-tokenizer starts a new piece at every ` word`, so the words in the middle are one
    /// token each whatever surrounds them.
    fn count_filled(
        &self,
        tok: &Tokenizer,
        text: &str,
        head_len: usize,
        tail_len: usize,
        n: usize,
        spaced: bool,
    ) -> usize {
        const EDGE: usize = 8;
        if !self.exact || !matches!(tok, Tokenizer::Bpe { .. }) || n < 4 * EDGE {
            return tok.count(text);
        }
        let filler = &text[head_len..text.len() - tail_len];
        // Where word k starts (its leading space included).
        let start = |k: usize| -> Option<usize> {
            if k == 0 {
                return Some(0);
            }
            let nth = if spaced { k } else { k - 1 };
            filler.match_indices(' ').nth(nth).map(|(i, _)| i)
        };
        let (Some(left), Some(right)) = (start(EDGE), start(n - EDGE)) else {
            return tok.count(text);
        };
        tok.count(&text[..head_len + left]) + (n - 2 * EDGE) + tok.count(&text[head_len + right..])
    }

    /// A text of exactly `n` tokens on its own, its words drawn from `rng`.
    pub fn text(&self, tok: &Tokenizer, rng: &mut StdRng, n: usize) -> Result<String, FitError> {
        if self.exact {
            let mut s = String::new();
            self.push(rng, n, false, &mut s);
            Ok(s)
        } else {
            self.fit(tok, rng.random(), "", "", n)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_encodings_compose_exactly() {
        for name in ["cl100k_base", "o200k_base"] {
            let tok = Tokenizer::load(name, None).unwrap();
            let f = Filler::new(&tok);
            assert!(f.is_exact(), "{name}");
            assert!(f.words.len() > 200, "{name}: {} words", f.words.len());
            let mut rng = StdRng::seed_from_u64(9);
            for n in [1, 2, 3, 17, 1000, 4096] {
                let t = f.text(&tok, &mut rng, n).unwrap();
                assert_eq!(tok.count(&t), n, "{name} {n}");
            }
        }
    }

    #[test]
    fn fit_lands_on_the_target_around_any_text() {
        let tok = Tokenizer::load("cl100k_base", None).unwrap();
        let f = Filler::new(&tok);
        for (head, tail) in [
            ("Summarize:", "\nAnswer:"),
            ("Q: what is 2+2?\n", ""),
            ("", " ...(end)"),
            ("日本語のテキスト", "!"),
            ("It's", "'s"),
            ("x = 12", "345"),
            ("trailing  ", "  "),
            ("emoji 😀", "😀 end"),
            ("code:\n\tfn main() {", "}\n"),
        ] {
            for target in [40, 333, 4096] {
                let t = f.fit(&tok, 5, head, tail, target).unwrap();
                assert_eq!(tok.count(&t), target, "{head:?} {tail:?}");
                assert!(t.starts_with(head) && t.ends_with(tail));
            }
        }
        assert!(matches!(
            f.fit(&tok, 1, "one two three four", "", 2),
            Err(FitError::TooLong { base: 4, .. })
        ));
    }
}
