//! The workload's tokenizer: a built-in BPE encoding (offline, loaded once per process) or a
//! Hugging Face tokenizer.json (with the `hf-tokenizers` feature).
//!
//! Counts never include special tokens: a prompt's length is the tokens of its text, and the
//! server's chat template adds its own (the summary's input-token gap shows how many).

use tiktoken_rs::CoreBPE;

/// A tokenizer that cannot be loaded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TokenizerError {
    #[error(
        "unknown tokenizer {0:?}: expected cl100k_base, o200k_base, p50k_base, r50k_base or a tokenizer.json"
    )]
    Unknown(String),
    #[error(
        "{0}: this build reads no Hugging Face tokenizer.json; build with `--features hf-tokenizers`"
    )]
    NoHfSupport(String),
    #[error("{name}: not a usable tokenizer.json: {detail}")]
    BadFile { name: String, detail: String },
}

/// A tokenizer: counts, encodes and decodes text.
pub enum Tokenizer {
    /// One of tiktoken's encodings, shared by the whole process.
    Bpe { name: String, bpe: &'static CoreBPE },
    #[cfg(feature = "hf-tokenizers")]
    Hf {
        name: String,
        tokenizer: Box<tokenizers::Tokenizer>,
    },
}

impl std::fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Tokenizer({})", self.name())
    }
}

impl Tokenizer {
    /// Loads `name`: a built-in encoding, or (with `json`, the file's content) a tokenizer.json.
    /// Built-in tables load once per process (about a second in a debug build).
    ///
    /// # Errors
    /// An unknown name, a build without Hugging Face support, or a file that does not parse.
    pub fn load(name: &str, json: Option<&str>) -> Result<Tokenizer, TokenizerError> {
        let bpe = match (name, json) {
            ("cl100k_base", None) => tiktoken_rs::cl100k_base_singleton(),
            ("o200k_base", None) => tiktoken_rs::o200k_base_singleton(),
            ("p50k_base", None) => tiktoken_rs::p50k_base_singleton(),
            ("r50k_base", None) => tiktoken_rs::r50k_base_singleton(),
            (_, Some(json)) => return Self::load_hf(name, json),
            (other, None) => return Err(TokenizerError::Unknown(other.to_string())),
        };
        Ok(Tokenizer::Bpe {
            name: name.to_string(),
            bpe,
        })
    }

    #[cfg(feature = "hf-tokenizers")]
    fn load_hf(name: &str, json: &str) -> Result<Tokenizer, TokenizerError> {
        let tokenizer = tokenizers::Tokenizer::from_bytes(json.as_bytes()).map_err(|e| {
            TokenizerError::BadFile {
                name: name.to_string(),
                detail: e.to_string(),
            }
        })?;
        Ok(Tokenizer::Hf {
            name: name.to_string(),
            tokenizer: Box::new(tokenizer),
        })
    }

    #[cfg(not(feature = "hf-tokenizers"))]
    fn load_hf(name: &str, _json: &str) -> Result<Tokenizer, TokenizerError> {
        Err(TokenizerError::NoHfSupport(name.to_string()))
    }

    /// The name summary.json reports.
    pub fn name(&self) -> &str {
        match self {
            Tokenizer::Bpe { name, .. } => name,
            #[cfg(feature = "hf-tokenizers")]
            Tokenizer::Hf { name, .. } => name,
        }
    }

    /// The tokens of `text`, without special tokens.
    pub fn encode(&self, text: &str) -> Vec<u32> {
        match self {
            Tokenizer::Bpe { bpe, .. } => bpe.encode_ordinary(text),
            #[cfg(feature = "hf-tokenizers")]
            Tokenizer::Hf { tokenizer, .. } => tokenizer
                .encode_fast(text, false)
                .map(|e| e.get_ids().to_vec())
                .unwrap_or_default(),
        }
    }

    /// How many tokens `text` is.
    pub fn count(&self, text: &str) -> usize {
        match self {
            Tokenizer::Bpe { bpe, .. } => bpe.count_ordinary(text),
            #[cfg(feature = "hf-tokenizers")]
            Tokenizer::Hf { .. } => self.encode(text).len(),
        }
    }

    /// The text of `ids`; bytes that do not form UTF-8 (a token cut in the middle of a
    /// character) are replaced.
    pub fn decode(&self, ids: &[u32]) -> String {
        match self {
            Tokenizer::Bpe { bpe, .. } => bpe
                .decode_bytes(ids)
                .map(|b| String::from_utf8_lossy(&b).into_owned())
                .unwrap_or_default(),
            #[cfg(feature = "hf-tokenizers")]
            Tokenizer::Hf { tokenizer, .. } => tokenizer.decode(ids, false).unwrap_or_default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_encodings_load_and_round_trip() {
        for name in ["cl100k_base", "o200k_base"] {
            let t = Tokenizer::load(name, None).unwrap();
            assert_eq!(t.name(), name);
            let ids = t.encode("hello world, again");
            assert_eq!(t.count("hello world, again"), ids.len());
            assert_eq!(t.decode(&ids), "hello world, again");
        }
        assert!(matches!(
            Tokenizer::load("gpt-17", None),
            Err(TokenizerError::Unknown(_))
        ));
    }

    #[cfg(not(feature = "hf-tokenizers"))]
    #[test]
    fn a_tokenizer_json_needs_the_feature() {
        let e = Tokenizer::load("tok.json", Some("{}")).unwrap_err();
        assert!(e.to_string().contains("hf-tokenizers"), "{e}");
    }
}
