//! `[workload]` as written: the defaults of every request class, the classes, their length
//! distributions ([`LengthPlan`]) and prompt sources, with serde's checks of each value.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use toml::Spanned;

use crate::units::{Fraction, HumanDuration};

/// Encodings built into every agent, usable offline.
pub const BUILTIN_TOKENIZERS: [&str; 4] = ["cl100k_base", "o200k_base", "p50k_base", "r50k_base"];
/// The tokenizer used when the plan names none.
pub const DEFAULT_TOKENIZER: &str = "cl100k_base";
/// Longest prompt or answer a length distribution may reach.
pub const MAX_TOKENS: u32 = 1 << 20;
/// Body fields Stampede sets itself, which `extra_body` may not replace.
pub const RESERVED_BODY_FIELDS: [&str; 7] = [
    "model",
    "messages",
    "prompt",
    "stream",
    "stream_options",
    "max_tokens",
    "min_tokens",
];

/// `[workload]` as written: the defaults of every request class, and the classes.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkloadPlan {
    /// A built-in encoding (`cl100k_base`, `o200k_base`, ...) or a path to a tokenizer.json.
    #[serde(default = "default_tokenizer")]
    pub tokenizer: String,
    /// Prompt length in tokens: a number or a distribution.
    #[serde(default = "default_input_tokens")]
    pub input_tokens: LengthPlan,
    /// `max_tokens` of each request: a number or a distribution.
    #[serde(default = "default_output_tokens")]
    pub output_tokens: LengthPlan,
    /// Ask the server for exactly `output_tokens` tokens (through `exact_output_fields`).
    #[serde(default = "default_true")]
    pub ignore_eos: bool,
    /// Which request fields ask for the exact length: `ignore_eos` (vLLM, SGLang) and
    /// `min_tokens` (vLLM). Servers that reject unknown fields need `[]`.
    #[serde(default = "default_exact_fields")]
    pub exact_output_fields: Vec<ExactField>,
    /// Synthetic prompts differ per request (true) or are the same for every request (false).
    #[serde(default = "default_true")]
    pub unique: bool,
    /// A minijinja template file for the prompt.
    pub template: Option<PathBuf>,
    /// A minijinja template written in the plan.
    pub template_text: Option<String>,
    /// Template variables.
    pub vars: Option<toml::Table>,
    /// Rows of template variables, CSV with a header or JSONL; request i takes row i mod n.
    pub vars_file: Option<PathBuf>,
    /// Prompts from a dataset.
    pub dataset: Option<DatasetPlan>,
    /// System prompts shared by a fraction of the requests (the prefix-caching workload).
    pub shared_prefix: Option<SharedPrefixPlan>,
    /// Sessions of several turns, each carrying the earlier turns and their answers.
    pub multi_turn: Option<MultiTurnPlan>,
    /// More body fields sent with every request (`temperature`, `top_p`, `seed`, ...).
    pub extra_body: Option<toml::Table>,
    /// Weighted request classes; none: one class of the fields above.
    #[serde(default, rename = "class", skip_serializing_if = "Vec::is_empty")]
    pub classes: Vec<Spanned<ClassPlan>>,
}

impl Default for WorkloadPlan {
    fn default() -> Self {
        WorkloadPlan {
            tokenizer: default_tokenizer(),
            input_tokens: default_input_tokens(),
            output_tokens: default_output_tokens(),
            ignore_eos: true,
            exact_output_fields: default_exact_fields(),
            unique: true,
            template: None,
            template_text: None,
            vars: None,
            vars_file: None,
            dataset: None,
            shared_prefix: None,
            multi_turn: None,
            extra_body: None,
            classes: Vec::new(),
        }
    }
}

fn default_tokenizer() -> String {
    DEFAULT_TOKENIZER.to_string()
}
fn default_input_tokens() -> LengthPlan {
    LengthPlan::Fixed(1000)
}
fn default_output_tokens() -> LengthPlan {
    LengthPlan::Fixed(256)
}
fn default_true() -> bool {
    true
}
fn default_exact_fields() -> Vec<ExactField> {
    vec![ExactField::IgnoreEos, ExactField::MinTokens]
}

/// A request field that asks a server for an exact output length.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExactField {
    IgnoreEos,
    MinTokens,
}

/// One request class: a name, a weight, and whatever it sets differently from `[workload]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClassPlan {
    pub name: String,
    /// Relative weight: `weight = 70` beside `weight = 30` sends 70% and 30%.
    pub weight: f64,
    pub input_tokens: Option<LengthPlan>,
    pub output_tokens: Option<LengthPlan>,
    pub ignore_eos: Option<bool>,
    pub exact_output_fields: Option<Vec<ExactField>>,
    pub unique: Option<bool>,
    pub template: Option<PathBuf>,
    pub template_text: Option<String>,
    pub vars: Option<toml::Table>,
    pub vars_file: Option<PathBuf>,
    pub dataset: Option<DatasetPlan>,
    pub shared_prefix: Option<SharedPrefixPlan>,
    pub multi_turn: Option<MultiTurnPlan>,
    pub extra_body: Option<toml::Table>,
}

/// A dataset of prompts: `dataset = "prompts.jsonl"`, or a table with the options.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, try_from = "DatasetForm")]
pub struct DatasetPlan {
    /// Relative to the plan file's folder.
    pub file: PathBuf,
    /// By default from the extension: `.jsonl` jsonl, `.json` sharegpt, anything else text.
    pub format: Option<DatasetFormat>,
    /// JSONL: the prompt's field; by default `prompt`, `text`, `input` or `question`.
    pub field: Option<String>,
    /// Whether prompts are cut or padded to the input length.
    #[serde(default)]
    pub fit: Fit,
    /// Read only the first N rows.
    pub limit: Option<usize>,
}

/// A dataset as written: a path alone, or a table.
#[derive(Deserialize)]
#[serde(untagged)]
enum DatasetForm {
    File(PathBuf),
    Table(toml::Table),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DatasetTable {
    file: PathBuf,
    format: Option<DatasetFormat>,
    field: Option<String>,
    #[serde(default)]
    fit: Fit,
    limit: Option<usize>,
}

impl TryFrom<DatasetForm> for DatasetPlan {
    type Error = String;

    fn try_from(f: DatasetForm) -> Result<Self, String> {
        match f {
            DatasetForm::File(file) => Ok(DatasetPlan {
                file,
                format: None,
                field: None,
                fit: Fit::None,
                limit: None,
            }),
            DatasetForm::Table(t) => {
                let d: DatasetTable = toml::Value::Table(t)
                    .try_into()
                    .map_err(|e: toml::de::Error| e.message().to_string())?;
                Ok(DatasetPlan {
                    file: d.file,
                    format: d.format,
                    field: d.field,
                    fit: d.fit,
                    limit: d.limit,
                })
            }
        }
    }
}

/// How a dataset file is laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DatasetFormat {
    /// One JSON object per line: a prompt field, or `messages` (chat).
    Jsonl,
    /// ShareGPT: a JSON array (or JSONL) of `{ "conversations": [{ "from", "value" }] }`.
    Sharegpt,
    /// One prompt per line.
    Text,
}

/// What is done to a dataset prompt to reach the input length.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Fit {
    /// Sent as it is; the input length is not used.
    #[default]
    None,
    /// Cut to the input length; only rows at least that long are used.
    Trim,
    /// Padded with synthetic text to the input length; only rows at most that long are used.
    Pad,
    /// Cut or padded: every row reaches every length.
    Exact,
}

/// `count` system prompts of `tokens` tokens, one of which starts `fraction` of the requests.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SharedPrefixPlan {
    pub count: u32,
    pub tokens: u32,
    pub fraction: Fraction,
}

/// Sessions of `turns` requests; each turn sends the earlier turns and the server's answers.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MultiTurnPlan {
    pub turns: u32,
    /// Pause between an answer and the session's next turn.
    #[serde(default = "zero_duration")]
    pub think_time: HumanDuration,
}

fn zero_duration() -> HumanDuration {
    HumanDuration(Duration::ZERO)
}

/// A length in tokens as written: a number, a list, or a distribution.
#[derive(Debug, Clone, PartialEq)]
pub enum LengthPlan {
    /// `1000`
    Fixed(u32),
    /// `{ uniform = [1000, 4096] }`, both ends included.
    Uniform(u32, u32),
    /// `{ normal = { mean = 2048, stddev = 256 } }` with optional `min` and `max` (clamped).
    Normal {
        mean: f64,
        stddev: f64,
        min: Option<u32>,
        max: Option<u32>,
    },
    /// `[128, 512, 2048]` or `{ list = [...] }`: one of the values, equally likely.
    List(Vec<u32>),
    /// `{ file = "lengths.txt" }`: an empirical distribution, one value per line (or a
    /// `column` of a CSV or JSONL file).
    File {
        file: PathBuf,
        column: Option<String>,
    },
}

fn token_count(v: &toml::Value, what: &str) -> Result<u32, String> {
    match v {
        toml::Value::Integer(n) => u32::try_from(*n)
            .ok()
            .filter(|n| (1..=MAX_TOKENS).contains(n))
            .ok_or_else(|| {
                format!("{what}: expected a token count between 1 and {MAX_TOKENS}, got {n}")
            }),
        other => Err(format!("{what}: expected a token count, got {other}")),
    }
}

const LENGTH_FORMS: &str = "a number of tokens, a list [a, b, ...], { uniform = [min, max] }, { normal = { mean = M, stddev = S } } or { file = \"lengths.txt\" }";

impl LengthPlan {
    fn from_value(v: &toml::Value) -> Result<LengthPlan, String> {
        match v {
            toml::Value::Integer(_) => token_count(v, "length").map(LengthPlan::Fixed),
            toml::Value::Array(items) => Self::list(items),
            toml::Value::Table(t) => {
                let keys: Vec<&str> = t.keys().map(String::as_str).collect();
                match keys.as_slice() {
                    ["uniform"] => match &t["uniform"] {
                        toml::Value::Array(a) if a.len() == 2 => {
                            let lo = token_count(&a[0], "uniform")?;
                            let hi = token_count(&a[1], "uniform")?;
                            if lo > hi {
                                return Err(format!(
                                    "uniform: the bounds are reversed: [{lo}, {hi}]; write [min, max]"
                                ));
                            }
                            Ok(LengthPlan::Uniform(lo, hi))
                        }
                        _ => Err("uniform: expected [min, max]".into()),
                    },
                    ["normal"] => Self::normal(&t["normal"]),
                    ["list"] => match &t["list"] {
                        toml::Value::Array(items) => Self::list(items),
                        _ => Err("list: expected an array of token counts".into()),
                    },
                    _ if t.contains_key("file") => {
                        let file = t["file"].as_str().ok_or("file: expected a path")?.into();
                        let column = match t.get("column") {
                            None => None,
                            Some(toml::Value::String(c)) => Some(c.clone()),
                            Some(_) => return Err("column: expected a column name".into()),
                        };
                        if let Some(k) = keys.iter().find(|k| !matches!(**k, "file" | "column")) {
                            return Err(format!("unknown field `{k}` beside file"));
                        }
                        Ok(LengthPlan::File { file, column })
                    }
                    _ => Err(format!("expected {LENGTH_FORMS}")),
                }
            }
            other => Err(format!("expected {LENGTH_FORMS}, got {other}")),
        }
    }

    fn list(items: &[toml::Value]) -> Result<LengthPlan, String> {
        if items.is_empty() {
            return Err("the list of lengths is empty".into());
        }
        let values = items
            .iter()
            .map(|v| token_count(v, "list"))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(LengthPlan::List(values))
    }

    fn normal(v: &toml::Value) -> Result<LengthPlan, String> {
        let t = v
            .as_table()
            .ok_or("normal: expected { mean = M, stddev = S }")?;
        let num = |k: &str| -> Result<Option<f64>, String> {
            match t.get(k) {
                None => Ok(None),
                Some(toml::Value::Integer(i)) => Ok(Some(*i as f64)),
                Some(toml::Value::Float(f)) => Ok(Some(*f)),
                Some(other) => Err(format!("normal.{k}: expected a number, got {other}")),
            }
        };
        if let Some(k) = t
            .keys()
            .find(|k| !matches!(k.as_str(), "mean" | "stddev" | "min" | "max"))
        {
            return Err(format!(
                "normal: unknown field `{k}`; expected mean, stddev, min, max"
            ));
        }
        let mean = num("mean")?.ok_or("normal: missing mean")?;
        let stddev = num("stddev")?.ok_or("normal: missing stddev")?;
        if !(mean.is_finite() && mean >= 1.0 && mean <= f64::from(MAX_TOKENS)) {
            return Err(format!(
                "normal.mean: expected 1 to {MAX_TOKENS} tokens, got {mean}"
            ));
        }
        if !(stddev.is_finite() && stddev >= 0.0) {
            return Err(format!("normal.stddev: must be 0 or more, got {stddev}"));
        }
        let bound = |k: &str| {
            t.get(k)
                .map(|v| token_count(v, &format!("normal.{k}")))
                .transpose()
        };
        let (min, max) = (bound("min")?, bound("max")?);
        if let (Some(lo), Some(hi)) = (min, max)
            && lo > hi
        {
            return Err(format!("normal: min {lo} is above max {hi}"));
        }
        Ok(LengthPlan::Normal {
            mean,
            stddev,
            min,
            max,
        })
    }

    fn to_value(&self) -> toml::Value {
        use toml::Value as V;
        let int = |n: u32| V::Integer(i64::from(n));
        let table = |k: &str, v: V| {
            let mut t = toml::Table::new();
            t.insert(k.to_string(), v);
            V::Table(t)
        };
        match self {
            LengthPlan::Fixed(n) => int(*n),
            LengthPlan::Uniform(lo, hi) => table("uniform", V::Array(vec![int(*lo), int(*hi)])),
            LengthPlan::Normal {
                mean,
                stddev,
                min,
                max,
            } => {
                let mut t = toml::Table::new();
                t.insert("mean".into(), V::Float(*mean));
                t.insert("stddev".into(), V::Float(*stddev));
                if let Some(m) = min {
                    t.insert("min".into(), int(*m));
                }
                if let Some(m) = max {
                    t.insert("max".into(), int(*m));
                }
                table("normal", V::Table(t))
            }
            LengthPlan::List(v) => table("list", V::Array(v.iter().map(|n| int(*n)).collect())),
            LengthPlan::File { file, column } => {
                let mut t = toml::Table::new();
                t.insert("file".into(), V::String(file.display().to_string()));
                if let Some(c) = column {
                    t.insert("column".into(), V::String(c.clone()));
                }
                V::Table(t)
            }
        }
    }

    /// The one length this plan always gives, if it is fixed.
    pub fn fixed(&self) -> Option<u32> {
        match self {
            LengthPlan::Fixed(n) => Some(*n),
            _ => None,
        }
    }
}

impl<'de> Deserialize<'de> for LengthPlan {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = toml::Value::deserialize(d)?;
        LengthPlan::from_value(&v).map_err(serde::de::Error::custom)
    }
}

impl Serialize for LengthPlan {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.to_value().serialize(s)
    }
}
