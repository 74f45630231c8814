//! The workload: what each request asks for, as a plan writes it (`[workload]`) and as agents
//! receive it ([`WorkloadSpec`]).
//!
//! A workload is one or more request classes (`[[workload.class]]`, weighted), each with its
//! input and output length distributions ([`LengthPlan`]), its prompt source (synthetic text,
//! a minijinja template with variables, or a dataset), shared system prompts, multi-turn
//! sessions and output control. Fields set at the top of `[workload]` are inherited by every
//! class that does not set its own.
//!
//! Checking happens in three places, all before the run starts:
//! - [`WorkloadPlan::problems`]: what the plan says, field by field (part of `Plan::validate`);
//! - [`WorkloadPlan::resolve`]: every file the workload names is read (templates, variable rows,
//!   datasets, length files, a tokenizer.json), with errors naming the file, the line or row and
//!   the field. The result holds content, not paths, so remote agents need none of the
//!   controller's files;
//! - the agent's `WorkloadEngine`, which needs the tokenizer: undefined template variables,
//!   lengths a dataset cannot reach. The controller builds one too, before any agent starts.

use std::collections::BTreeSet;
use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rand::{Rng, RngExt};
use rand_distr::{Distribution, Normal};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};
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

/// A length distribution, resolved: what the agents sample from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LengthDist {
    Fixed(u32),
    Uniform {
        min: u32,
        max: u32,
    },
    /// Rounded and clamped into `min..=max`.
    Normal {
        mean: f64,
        stddev: f64,
        min: u32,
        max: u32,
    },
    /// One of the values, equally likely (a list, or an empirical distribution).
    Choices(Vec<u32>),
}

impl LengthDist {
    /// One length.
    pub fn sample<R: Rng + ?Sized>(&self, rng: &mut R) -> u32 {
        match self {
            LengthDist::Fixed(n) => *n,
            LengthDist::Uniform { min, max } => rng.random_range(*min..=*max),
            LengthDist::Normal {
                mean,
                stddev,
                min,
                max,
            } => {
                let x = Normal::new(*mean, *stddev).map_or(*mean, |n| n.sample(rng));
                // Clamped in f64 first, so the cast cannot overflow.
                (x.round().clamp(f64::from(*min), f64::from(*max))) as u32
            }
            LengthDist::Choices(v) if v.is_empty() => 1,
            LengthDist::Choices(v) => v[rng.random_range(0..v.len())],
        }
    }

    /// The shortest length it can give.
    pub fn min(&self) -> u32 {
        match self {
            LengthDist::Fixed(n) => *n,
            LengthDist::Uniform { min, .. } | LengthDist::Normal { min, .. } => *min,
            LengthDist::Choices(v) => v.iter().copied().min().unwrap_or(1),
        }
    }

    /// The longest length it can give.
    pub fn max(&self) -> u32 {
        match self {
            LengthDist::Fixed(n) => *n,
            LengthDist::Uniform { max, .. } | LengthDist::Normal { max, .. } => *max,
            LengthDist::Choices(v) => v.iter().copied().max().unwrap_or(1),
        }
    }

    /// The mean length (before clamping, for the normal distribution).
    pub fn mean(&self) -> f64 {
        match self {
            LengthDist::Fixed(n) => f64::from(*n),
            LengthDist::Uniform { min, max } => (f64::from(*min) + f64::from(*max)) / 2.0,
            LengthDist::Normal { mean, .. } => *mean,
            LengthDist::Choices(v) => {
                v.iter().map(|n| f64::from(*n)).sum::<f64>() / v.len().max(1) as f64
            }
        }
    }
}

/// The workload as agents receive it: content, not paths.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkloadSpec {
    /// The tokenizer's name as summary.json reports it: a built-in encoding, or the
    /// tokenizer.json's path as the plan wrote it.
    pub tokenizer: String,
    /// The tokenizer.json's content, for a Hugging Face tokenizer.
    #[serde(default)]
    pub tokenizer_json: Option<String>,
    pub classes: Vec<ClassSpec>,
}

/// One request class, resolved.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClassSpec {
    pub name: String,
    /// Share of the requests, 0..=1; the classes' weights add up to 1.
    pub weight: f64,
    pub input_tokens: LengthDist,
    pub output_tokens: LengthDist,
    pub source: SourceSpec,
    pub unique: bool,
    pub shared_prefix: Option<PrefixSpec>,
    pub multi_turn: Option<MultiTurnSpec>,
    pub ignore_eos: bool,
    pub send_ignore_eos: bool,
    pub send_min_tokens: bool,
    /// Sent with every request, beside the fields Stampede sets.
    pub extra_body: Map<String, Value>,
}

/// Where a class's prompts come from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SourceSpec {
    /// Words that are one token each, drawn from a seeded generator.
    Synthetic,
    Template {
        /// The template's file as the plan named it, or `template_text`.
        name: String,
        text: String,
        /// `vars` from the plan.
        vars: Map<String, Value>,
        /// Rows from `vars_file`: request i takes row i mod n.
        rows: Vec<VarRow>,
        /// The file the rows came from, for errors.
        rows_file: Option<String>,
    },
    Dataset {
        /// The file as the plan named it.
        name: String,
        rows: Vec<DatasetRow>,
        fit: Fit,
    },
}

/// One row of template variables and the line it was read from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VarRow {
    pub line: u32,
    pub values: Map<String, Value>,
}

/// One prompt of a dataset: its messages (a plain prompt is one user message).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DatasetRow {
    /// 1-based line of the file (JSONL, text) or position in the array (ShareGPT JSON).
    pub line: u32,
    pub messages: Vec<ChatMessage>,
}

/// A chat message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatMessage {
    pub role: String,
    pub content: String,
}

/// Shared system prompts, resolved.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct PrefixSpec {
    pub count: u32,
    pub tokens: u32,
    pub fraction: f64,
}

/// Multi-turn sessions, resolved.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct MultiTurnSpec {
    pub turns: u32,
    pub think_time_us: u64,
}

impl WorkloadSpec {
    /// A single synthetic class of fixed lengths: what a share without a spec asks for.
    pub fn fixed(input_tokens: u32, output_tokens: u32, ignore_eos: bool) -> WorkloadSpec {
        WorkloadSpec {
            tokenizer: DEFAULT_TOKENIZER.into(),
            tokenizer_json: None,
            classes: vec![ClassSpec {
                name: "default".into(),
                weight: 1.0,
                input_tokens: LengthDist::Fixed(input_tokens.max(1)),
                output_tokens: LengthDist::Fixed(output_tokens.max(1)),
                source: SourceSpec::Synthetic,
                unique: true,
                shared_prefix: None,
                multi_turn: None,
                ignore_eos,
                send_ignore_eos: ignore_eos,
                send_min_tokens: ignore_eos,
                extra_body: Map::new(),
            }],
        }
    }

    /// A stable identifier of the content: FNV-1a 64 of its JSON, in hex.
    pub fn id_of(json: &[u8]) -> String {
        let h = json.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        });
        format!("{h:016x}")
    }

    /// The class names, in order.
    pub fn class_names(&self) -> Vec<String> {
        self.classes.iter().map(|c| c.name.clone()).collect()
    }
}

/// A workload file that cannot be used: the file, the line or row, the field and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct WorkloadError {
    pub file: PathBuf,
    /// 1-based line (or row of a JSON array); none when the whole file is concerned.
    pub line: Option<usize>,
    /// The plan field that named the file, such as `workload.class[1].dataset`, or the column.
    pub field: Option<String>,
    pub message: String,
}

impl fmt::Display for WorkloadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(l) = self.line {
            write!(f, ":{l}")?;
        }
        write!(f, ": ")?;
        if let Some(field) = &self.field {
            write!(f, "{field}: ")?;
        }
        f.write_str(&self.message)
    }
}

/// One problem of `[workload]`: the field, where it is written (when known), and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkloadProblem {
    pub field: String,
    pub span: Option<Range<usize>>,
    pub message: String,
}

/// A class with the workload's defaults filled in: every field as the plan wrote it.
struct Merged<'a> {
    name: &'a str,
    field: String,
    weight: f64,
    input_tokens: &'a LengthPlan,
    output_tokens: &'a LengthPlan,
    ignore_eos: bool,
    exact_output_fields: &'a [ExactField],
    unique: bool,
    template: Option<&'a PathBuf>,
    template_text: Option<&'a String>,
    vars: Option<&'a toml::Table>,
    vars_file: Option<&'a PathBuf>,
    dataset: Option<&'a DatasetPlan>,
    shared_prefix: Option<&'a SharedPrefixPlan>,
    multi_turn: Option<&'a MultiTurnPlan>,
    extra_body: Option<&'a toml::Table>,
    span: Option<Range<usize>>,
}

impl WorkloadPlan {
    /// The prompt length every request has, when there is one: one class of a fixed length.
    pub fn fixed_input_tokens(&self) -> Option<u32> {
        self.merged()
            .iter()
            .map(|c| c.input_tokens.fixed())
            .reduce(|a, b| if a == b { a } else { None })
            .flatten()
    }

    /// The output length every request asks for, when there is one.
    pub fn fixed_output_tokens(&self) -> Option<u32> {
        self.merged()
            .iter()
            .map(|c| c.output_tokens.fixed())
            .reduce(|a, b| if a == b { a } else { None })
            .flatten()
    }

    /// True when `tokenizer` names a built-in encoding rather than a file.
    pub fn builtin_tokenizer(&self) -> bool {
        BUILTIN_TOKENIZERS.contains(&self.tokenizer.as_str())
    }

    fn merged(&self) -> Vec<Merged<'_>> {
        let top = |field: String, span| Merged {
            name: "default",
            field,
            weight: 1.0,
            input_tokens: &self.input_tokens,
            output_tokens: &self.output_tokens,
            ignore_eos: self.ignore_eos,
            exact_output_fields: &self.exact_output_fields,
            unique: self.unique,
            template: self.template.as_ref(),
            template_text: self.template_text.as_ref(),
            vars: self.vars.as_ref(),
            vars_file: self.vars_file.as_ref(),
            dataset: self.dataset.as_ref(),
            shared_prefix: self.shared_prefix.as_ref(),
            multi_turn: self.multi_turn.as_ref(),
            extra_body: self.extra_body.as_ref(),
            span,
        };
        if self.classes.is_empty() {
            return vec![top("workload".into(), None)];
        }
        self.classes
            .iter()
            .enumerate()
            .map(|(i, spanned)| {
                let c = spanned.get_ref();
                let mut m = top(format!("workload.class[{i}]"), Some(spanned.span()));
                m.name = &c.name;
                m.weight = c.weight;
                if let Some(v) = &c.input_tokens {
                    m.input_tokens = v;
                }
                if let Some(v) = &c.output_tokens {
                    m.output_tokens = v;
                }
                m.ignore_eos = c.ignore_eos.unwrap_or(m.ignore_eos);
                if let Some(v) = &c.exact_output_fields {
                    m.exact_output_fields = v;
                }
                m.unique = c.unique.unwrap_or(m.unique);
                // A class that names a source of its own replaces the workload's.
                if c.template.is_some() || c.template_text.is_some() || c.dataset.is_some() {
                    m.template = c.template.as_ref();
                    m.template_text = c.template_text.as_ref();
                    m.dataset = c.dataset.as_ref();
                }
                if c.vars.is_some() {
                    m.vars = c.vars.as_ref();
                }
                if c.vars_file.is_some() {
                    m.vars_file = c.vars_file.as_ref();
                }
                if c.shared_prefix.is_some() {
                    m.shared_prefix = c.shared_prefix.as_ref();
                }
                if c.multi_turn.is_some() {
                    m.multi_turn = c.multi_turn.as_ref();
                }
                if c.extra_body.is_some() {
                    m.extra_body = c.extra_body.as_ref();
                }
                m
            })
            .collect()
    }

    /// Every problem of `[workload]` that can be seen without reading its files' content:
    /// conflicting fields, bad weights, files that are not there. `dir` is the plan's folder.
    pub fn problems(&self, dir: &Path) -> Vec<WorkloadProblem> {
        let mut out = Vec::new();
        let mut bad = |field: String, span: Option<Range<usize>>, message: String| {
            out.push(WorkloadProblem {
                field,
                span,
                message,
            });
        };
        if !self.builtin_tokenizer() {
            let path = dir.join(&self.tokenizer);
            if !path.is_file() {
                bad(
                    "workload.tokenizer".into(),
                    None,
                    format!(
                        "{:?} is neither a built-in encoding ({}) nor a tokenizer.json file: {} is not there",
                        self.tokenizer,
                        BUILTIN_TOKENIZERS.join(", "),
                        path.display()
                    ),
                );
            }
        }
        let mut names = BTreeSet::new();
        for m in self.merged() {
            let f = |name: &str| format!("{}.{name}", m.field);
            let span = m.span.clone();
            if !self.classes.is_empty() {
                if m.name.trim().is_empty() {
                    bad(f("name"), span.clone(), "must not be empty".into());
                } else if !names.insert(m.name.to_string()) {
                    bad(
                        f("name"),
                        span.clone(),
                        format!("{:?} is already the name of another class", m.name),
                    );
                }
                if !(m.weight.is_finite() && m.weight > 0.0) {
                    bad(
                        f("weight"),
                        span.clone(),
                        format!("must be above 0, got {}", m.weight),
                    );
                }
            }
            let sources = [
                m.template.is_some(),
                m.template_text.is_some(),
                m.dataset.is_some(),
            ];
            if sources.iter().filter(|s| **s).count() > 1 {
                bad(
                    f("template"),
                    span.clone(),
                    "give one prompt source: template, template_text or dataset".into(),
                );
            }
            let templated = m.template.is_some() || m.template_text.is_some();
            if (m.vars_file.is_some() || m.vars.is_some()) && !templated {
                bad(
                    f("vars"),
                    span.clone(),
                    "vars and vars_file are for templates: add template or template_text".into(),
                );
            }
            let mut file = |field: &str, p: &Path| {
                let path = dir.join(p);
                if !path.is_file() {
                    bad(
                        f(field),
                        span.clone(),
                        format!("{} is not there", path.display()),
                    );
                }
            };
            if let Some(t) = m.template {
                file("template", t);
            }
            if let Some(v) = m.vars_file {
                file("vars_file", v);
            }
            if let Some(d) = m.dataset {
                file("dataset.file", &d.file);
                if d.limit == Some(0) {
                    bad(
                        f("dataset.limit"),
                        span.clone(),
                        "must be at least 1".into(),
                    );
                }
            }
            for (field, len) in [
                ("input_tokens", m.input_tokens),
                ("output_tokens", m.output_tokens),
            ] {
                if let LengthPlan::File { file: p, .. } = len {
                    let path = dir.join(p);
                    if !path.is_file() {
                        bad(
                            f(field),
                            span.clone(),
                            format!("{} is not there", path.display()),
                        );
                    }
                }
            }
            if let Some(p) = m.shared_prefix {
                if p.count == 0 {
                    bad(
                        f("shared_prefix.count"),
                        span.clone(),
                        "must be at least 1".into(),
                    );
                }
                if p.tokens == 0 || p.tokens > MAX_TOKENS {
                    bad(
                        f("shared_prefix.tokens"),
                        span.clone(),
                        format!("expected 1 to {MAX_TOKENS} tokens, got {}", p.tokens),
                    );
                }
                let shortest = min_of(m.input_tokens);
                if m.dataset.is_none()
                    && p.fraction.0 > 0.0
                    && shortest.is_some_and(|s| s <= p.tokens)
                {
                    bad(
                        f("shared_prefix.tokens"),
                        span.clone(),
                        format!(
                            "input_tokens counts the shared prefix, so it must be longer than the prefix: the shortest input is {} tokens, the prefix {}",
                            shortest.unwrap_or(0),
                            p.tokens
                        ),
                    );
                }
            }
            if let Some(t) = m.multi_turn
                && t.turns == 0
            {
                bad(
                    f("multi_turn.turns"),
                    span.clone(),
                    "must be at least 1".into(),
                );
            }
            if let Some(extra) = m.extra_body {
                for k in extra.keys() {
                    if RESERVED_BODY_FIELDS.contains(&k.as_str()) || k == "ignore_eos" {
                        bad(
                            f("extra_body"),
                            span.clone(),
                            format!(
                                "{k:?} is set by Stampede: use input_tokens, output_tokens, ignore_eos and exact_output_fields instead"
                            ),
                        );
                    }
                }
            }
        }
        out
    }

    /// Reads every file the workload names and returns what agents need. `dir` is the plan's
    /// folder; paths are relative to it.
    ///
    /// # Errors
    /// The first file that cannot be used, with its line or row and the field.
    pub fn resolve(&self, dir: &Path) -> Result<WorkloadSpec, WorkloadError> {
        let tokenizer_json = if self.builtin_tokenizer() {
            None
        } else {
            let path = dir.join(&self.tokenizer);
            Some(std::fs::read_to_string(&path).map_err(|e| WorkloadError {
                file: path.clone(),
                line: None,
                field: Some("workload.tokenizer".into()),
                message: format!("cannot read the tokenizer: {e}"),
            })?)
        };
        let merged = self.merged();
        let total: f64 = merged.iter().map(|m| m.weight).sum();
        let mut classes = Vec::with_capacity(merged.len());
        for m in &merged {
            let f = |name: &str| format!("{}.{name}", m.field);
            let source = if let Some(d) = m.dataset {
                SourceSpec::Dataset {
                    name: d.file.display().to_string(),
                    rows: read_dataset(dir, d, &f("dataset"))?,
                    fit: d.fit,
                }
            } else if m.template.is_some() || m.template_text.is_some() {
                let (name, text) = match (m.template, m.template_text) {
                    (Some(p), _) => {
                        let path = dir.join(p);
                        let text = std::fs::read_to_string(&path).map_err(|e| WorkloadError {
                            file: path.clone(),
                            line: None,
                            field: Some(f("template")),
                            message: format!("cannot read the template: {e}"),
                        })?;
                        (p.display().to_string(), text)
                    }
                    (None, Some(t)) => (f("template_text"), t.clone()),
                    (None, None) => unreachable!("checked just above"),
                };
                let vars = match m.vars {
                    Some(t) => toml_to_json(t),
                    None => Map::new(),
                };
                let (rows, rows_file) = match m.vars_file {
                    Some(p) => (
                        read_var_rows(&dir.join(p), &f("vars_file"))?,
                        Some(p.display().to_string()),
                    ),
                    None => (Vec::new(), None),
                };
                SourceSpec::Template {
                    name,
                    text,
                    vars,
                    rows,
                    rows_file,
                }
            } else {
                SourceSpec::Synthetic
            };
            let fields = m.exact_output_fields;
            classes.push(ClassSpec {
                name: m.name.to_string(),
                weight: if total > 0.0 { m.weight / total } else { 1.0 },
                input_tokens: resolve_length(dir, m.input_tokens, &f("input_tokens"))?,
                output_tokens: resolve_length(dir, m.output_tokens, &f("output_tokens"))?,
                source,
                unique: m.unique,
                shared_prefix: m.shared_prefix.map(|p| PrefixSpec {
                    count: p.count,
                    tokens: p.tokens,
                    fraction: p.fraction.0,
                }),
                multi_turn: m.multi_turn.map(|t| MultiTurnSpec {
                    turns: t.turns,
                    think_time_us: crate::units::micros(t.think_time.0),
                }),
                ignore_eos: m.ignore_eos,
                send_ignore_eos: m.ignore_eos && fields.contains(&ExactField::IgnoreEos),
                send_min_tokens: m.ignore_eos && fields.contains(&ExactField::MinTokens),
                extra_body: m.extra_body.map(toml_to_json).unwrap_or_default(),
            });
        }
        Ok(WorkloadSpec {
            tokenizer: self.tokenizer.clone(),
            tokenizer_json,
            classes,
        })
    }
}

fn min_of(l: &LengthPlan) -> Option<u32> {
    match l {
        LengthPlan::Fixed(n) => Some(*n),
        LengthPlan::Uniform(lo, _) => Some(*lo),
        LengthPlan::Normal { min, .. } => Some(min.unwrap_or(1)),
        LengthPlan::List(v) => v.iter().copied().min(),
        LengthPlan::File { .. } => None,
    }
}

/// A TOML table as JSON (dates become strings).
pub fn toml_to_json(t: &toml::Table) -> Map<String, Value> {
    fn conv(v: &toml::Value) -> Value {
        match v {
            toml::Value::String(s) => Value::String(s.clone()),
            toml::Value::Integer(i) => Value::from(*i),
            toml::Value::Float(f) => {
                serde_json::Number::from_f64(*f).map_or(Value::Null, Value::Number)
            }
            toml::Value::Boolean(b) => Value::Bool(*b),
            toml::Value::Datetime(d) => Value::String(d.to_string()),
            toml::Value::Array(a) => Value::Array(a.iter().map(conv).collect()),
            toml::Value::Table(t) => Value::Object(toml_to_json(t)),
        }
    }
    t.iter().map(|(k, v)| (k.clone(), conv(v))).collect()
}

fn resolve_length(dir: &Path, plan: &LengthPlan, field: &str) -> Result<LengthDist, WorkloadError> {
    Ok(match plan {
        LengthPlan::Fixed(n) => LengthDist::Fixed(*n),
        LengthPlan::Uniform(lo, hi) => LengthDist::Uniform { min: *lo, max: *hi },
        LengthPlan::Normal {
            mean,
            stddev,
            min,
            max,
        } => LengthDist::Normal {
            mean: *mean,
            stddev: *stddev,
            min: min.unwrap_or(1),
            max: max.unwrap_or(MAX_TOKENS),
        },
        LengthPlan::List(v) => LengthDist::Choices(v.clone()),
        LengthPlan::File { file, column } => {
            LengthDist::Choices(read_lengths(&dir.join(file), column.as_deref(), field)?)
        }
    })
}

/// Reads an empirical length distribution: one number per line (blank lines and `#` comments
/// skipped), or a column of a CSV (with a header) or JSONL file.
///
/// # Errors
/// When the file cannot be read, the column is missing, or a value is not a token count.
pub fn read_lengths(
    path: &Path,
    column: Option<&str>,
    field: &str,
) -> Result<Vec<u32>, WorkloadError> {
    let err = |line: Option<usize>, message: String| WorkloadError {
        file: path.to_path_buf(),
        line,
        field: Some(field.to_string()),
        message,
    };
    let text = std::fs::read_to_string(path)
        .map_err(|e| err(None, format!("cannot read the lengths: {e}")))?;
    let parse = |line: usize, s: &str| -> Result<u32, WorkloadError> {
        let s = s.trim();
        s.parse::<f64>()
            .ok()
            .filter(|v| v.is_finite() && *v >= 1.0 && *v <= f64::from(MAX_TOKENS))
            .map(|v| v.round() as u32)
            .ok_or_else(|| {
                err(
                    Some(line),
                    format!("expected a token count between 1 and {MAX_TOKENS}, got {s:?}"),
                )
            })
    };
    let mut out = Vec::new();
    match (column, is_jsonl(path)) {
        (Some(col), true) => {
            for (i, line) in text.lines().enumerate() {
                if line.trim().is_empty() {
                    continue;
                }
                let v: Value = serde_json::from_str(line)
                    .map_err(|e| err(Some(i + 1), format!("not JSON: {e}")))?;
                let cell = v
                    .get(col)
                    .ok_or_else(|| err(Some(i + 1), format!("no field {col:?}")))?;
                out.push(parse(i + 1, &cell.to_string().replace('"', ""))?);
            }
        }
        (Some(col), false) => {
            let mut r = csv::ReaderBuilder::new()
                .flexible(true)
                .from_reader(text.as_bytes());
            let headers = r
                .headers()
                .map_err(|e| err(Some(1), format!("cannot read the header: {e}")))?
                .clone();
            let idx = headers.iter().position(|h| h == col).ok_or_else(|| {
                err(
                    Some(1),
                    format!(
                        "no column {col:?}; the header has {}",
                        headers.iter().collect::<Vec<_>>().join(", ")
                    ),
                )
            })?;
            for rec in r.records() {
                let rec =
                    rec.map_err(|e| err(e.position().map(|p| p.line() as usize), e.to_string()))?;
                let line = rec.position().map_or(0, |p| p.line() as usize);
                let cell = rec
                    .get(idx)
                    .ok_or_else(|| err(Some(line), format!("the row has no {col:?} cell")))?;
                out.push(parse(line, cell)?);
            }
        }
        (None, _) => {
            for (i, line) in text.lines().enumerate() {
                let t = line.trim();
                if t.is_empty() || t.starts_with('#') {
                    continue;
                }
                out.push(parse(i + 1, t)?);
            }
        }
    }
    if out.is_empty() {
        return Err(err(None, "the file holds no length".into()));
    }
    Ok(out)
}

fn is_jsonl(path: &Path) -> bool {
    matches!(
        path.extension().and_then(|e| e.to_str()),
        Some("jsonl" | "ndjson")
    )
}

/// Reads rows of template variables: CSV with a header row, or JSONL objects.
///
/// # Errors
/// When the file cannot be read or a row is malformed (with its line).
pub fn read_var_rows(path: &Path, field: &str) -> Result<Vec<VarRow>, WorkloadError> {
    let err = |line: Option<usize>, message: String| WorkloadError {
        file: path.to_path_buf(),
        line,
        field: Some(field.to_string()),
        message,
    };
    let text = std::fs::read_to_string(path)
        .map_err(|e| err(None, format!("cannot read the variables: {e}")))?;
    let mut rows = Vec::new();
    if is_jsonl(path) {
        for (i, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            match serde_json::from_str::<Value>(line) {
                Ok(Value::Object(values)) => rows.push(VarRow {
                    line: (i + 1) as u32,
                    values,
                }),
                Ok(other) => {
                    return Err(err(
                        Some(i + 1),
                        format!("expected a JSON object of variables, got {other}"),
                    ));
                }
                Err(e) => return Err(err(Some(i + 1), format!("not JSON: {e}"))),
            }
        }
    } else {
        let mut r = csv::Reader::from_reader(text.as_bytes());
        let headers = r
            .headers()
            .map_err(|e| err(Some(1), format!("cannot read the header: {e}")))?
            .clone();
        for rec in r.records() {
            let rec = rec.map_err(|e| {
                err(
                    e.position().map(|p| p.line() as usize),
                    format!("malformed row: {e}"),
                )
            })?;
            let line = rec.position().map_or(0, |p| p.line() as u32);
            let values = headers
                .iter()
                .zip(rec.iter())
                .map(|(h, v)| (h.to_string(), Value::String(v.to_string())))
                .collect();
            rows.push(VarRow { line, values });
        }
    }
    if rows.is_empty() {
        return Err(err(None, "the file holds no row".into()));
    }
    Ok(rows)
}

/// The dataset's format: as the plan says, else from the file's extension.
pub fn dataset_format(d: &DatasetPlan) -> DatasetFormat {
    d.format
        .unwrap_or_else(|| match d.file.extension().and_then(|e| e.to_str()) {
            Some("jsonl" | "ndjson") => DatasetFormat::Jsonl,
            Some("json") => DatasetFormat::Sharegpt,
            _ => DatasetFormat::Text,
        })
}

/// Fields tried, in order, for the prompt of a JSONL row.
pub const PROMPT_FIELDS: [&str; 4] = ["prompt", "text", "input", "question"];

/// Reads a dataset into rows of chat messages. `field` names the plan field, for errors.
///
/// # Errors
/// When the file cannot be read or a row is malformed: the line (or the row of a JSON array)
/// and the field that is missing or wrong.
pub fn read_dataset(
    dir: &Path,
    d: &DatasetPlan,
    field: &str,
) -> Result<Vec<DatasetRow>, WorkloadError> {
    let path = dir.join(&d.file);
    let err = |line: Option<usize>, f: &str, message: String| WorkloadError {
        file: path.clone(),
        line,
        field: Some(if f.is_empty() {
            field.to_string()
        } else {
            format!("{field}: {f}")
        }),
        message,
    };
    let text = std::fs::read_to_string(&path)
        .map_err(|e| err(None, "", format!("cannot read the dataset: {e}")))?;
    let limit = d.limit.unwrap_or(usize::MAX);
    let mut rows = Vec::new();
    match dataset_format(d) {
        DatasetFormat::Text => {
            for (i, line) in text.lines().enumerate() {
                if rows.len() >= limit {
                    break;
                }
                if line.trim().is_empty() {
                    continue;
                }
                rows.push(DatasetRow {
                    line: (i + 1) as u32,
                    messages: vec![user(line)],
                });
            }
        }
        DatasetFormat::Jsonl => {
            for (i, line) in text.lines().enumerate() {
                if rows.len() >= limit {
                    break;
                }
                if line.trim().is_empty() {
                    continue;
                }
                let v: Value = serde_json::from_str(line)
                    .map_err(|e| err(Some(i + 1), "", format!("not JSON: {e}")))?;
                let messages =
                    jsonl_row(&v, d.field.as_deref()).map_err(|(f, m)| err(Some(i + 1), &f, m))?;
                rows.push(DatasetRow {
                    line: (i + 1) as u32,
                    messages,
                });
            }
        }
        DatasetFormat::Sharegpt => {
            let trimmed = text.trim_start();
            let items: Vec<(usize, Value)> = if trimmed.starts_with('[') {
                let all: Vec<Value> = serde_json::from_str(&text).map_err(|e| {
                    err(
                        Some(e.line()),
                        "",
                        format!("not a JSON array of conversations: {e}"),
                    )
                })?;
                all.into_iter()
                    .enumerate()
                    .map(|(i, v)| (i + 1, v))
                    .collect()
            } else {
                let mut v = Vec::new();
                for (i, line) in text.lines().enumerate() {
                    if line.trim().is_empty() {
                        continue;
                    }
                    let item = serde_json::from_str(line)
                        .map_err(|e| err(Some(i + 1), "", format!("not JSON: {e}")))?;
                    v.push((i + 1, item));
                }
                v
            };
            for (row, v) in items {
                if rows.len() >= limit {
                    break;
                }
                let messages = sharegpt_row(&v).map_err(|(f, m)| err(Some(row), &f, m))?;
                rows.push(DatasetRow {
                    line: row as u32,
                    messages,
                });
            }
        }
    }
    if rows.is_empty() {
        return Err(err(None, "", "the dataset holds no prompt".into()));
    }
    Ok(rows)
}

fn user(text: &str) -> ChatMessage {
    ChatMessage {
        role: "user".into(),
        content: text.to_string(),
    }
}

/// A JSONL row: `messages` (chat), or a prompt field.
fn jsonl_row(v: &Value, field: Option<&str>) -> Result<Vec<ChatMessage>, (String, String)> {
    let obj = v
        .as_object()
        .ok_or_else(|| (String::new(), format!("expected a JSON object, got {v}")))?;
    if field.is_none()
        && let Some(m) = obj.get("messages")
    {
        return chat_messages(m, "messages");
    }
    let names: Vec<&str> = match field {
        Some(f) => vec![f],
        None => PROMPT_FIELDS.to_vec(),
    };
    for name in &names {
        if let Some(p) = obj.get(*name) {
            return match p {
                Value::String(s) if !s.trim().is_empty() => Ok(vec![user(s)]),
                Value::String(_) => Err((name.to_string(), "the prompt is empty".into())),
                Value::Array(_) => chat_messages(p, name),
                other => Err((name.to_string(), format!("expected a string, got {other}"))),
            };
        }
    }
    Err((
        names.join(" or "),
        format!(
            "missing: the row has {}",
            obj.keys()
                .map(String::as_str)
                .collect::<Vec<_>>()
                .join(", ")
        ),
    ))
}

/// An array of `{ "role", "content" }`, kept up to its last user message.
fn chat_messages(v: &Value, field: &str) -> Result<Vec<ChatMessage>, (String, String)> {
    let items = v.as_array().ok_or_else(|| {
        (
            field.to_string(),
            "expected an array of messages".to_string(),
        )
    })?;
    let mut out = Vec::with_capacity(items.len());
    for (i, m) in items.iter().enumerate() {
        let f = format!("{field}[{i}]");
        let role = m
            .get("role")
            .and_then(Value::as_str)
            .ok_or_else(|| (format!("{f}.role"), "missing or not a string".to_string()))?;
        if !matches!(role, "system" | "user" | "assistant" | "developer") {
            return Err((
                format!("{f}.role"),
                format!("expected system, user or assistant, got {role:?}"),
            ));
        }
        let content = m.get("content").and_then(Value::as_str).ok_or_else(|| {
            (
                format!("{f}.content"),
                "missing or not a string".to_string(),
            )
        })?;
        out.push(ChatMessage {
            role: role.to_string(),
            content: content.to_string(),
        });
    }
    keep_to_last_user(out).ok_or_else(|| (field.to_string(), "no user message".to_string()))
}

fn keep_to_last_user(mut messages: Vec<ChatMessage>) -> Option<Vec<ChatMessage>> {
    let last = messages.iter().rposition(|m| m.role == "user")?;
    messages.truncate(last + 1);
    Some(messages)
}

/// A ShareGPT conversation: its system message, if any, and its first human turn.
fn sharegpt_row(v: &Value) -> Result<Vec<ChatMessage>, (String, String)> {
    let conv = v
        .get("conversations")
        .or_else(|| v.get("conversation"))
        .and_then(Value::as_array)
        .ok_or_else(|| {
            (
                "conversations".to_string(),
                "missing or not an array".to_string(),
            )
        })?;
    let mut out = Vec::new();
    for (i, turn) in conv.iter().enumerate() {
        let f = format!("conversations[{i}]");
        let from = turn
            .get("from")
            .and_then(Value::as_str)
            .ok_or_else(|| (format!("{f}.from"), "missing or not a string".to_string()))?;
        let value = turn
            .get("value")
            .and_then(Value::as_str)
            .ok_or_else(|| (format!("{f}.value"), "missing or not a string".to_string()))?;
        let role = match from {
            "human" | "user" => "user",
            "gpt" | "assistant" | "chatgpt" | "bard" | "bing" | "model" => "assistant",
            "system" => "system",
            other => {
                return Err((
                    format!("{f}.from"),
                    format!("expected human, gpt or system, got {other:?}"),
                ));
            }
        };
        out.push(ChatMessage {
            role: role.into(),
            content: value.to_string(),
        });
        if role == "user" {
            break;
        }
    }
    keep_to_last_user(out).ok_or_else(|| ("conversations".to_string(), "no human turn".to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    fn plan(text: &str) -> WorkloadPlan {
        toml::from_str(text).unwrap()
    }

    #[test]
    fn lengths_read_in_every_form() {
        let p = plan(
            "input_tokens = { uniform = [1000, 4096] }\noutput_tokens = { normal = { mean = 200, stddev = 50, max = 300 } }",
        );
        assert_eq!(p.input_tokens, LengthPlan::Uniform(1000, 4096));
        assert!(matches!(
            p.output_tokens,
            LengthPlan::Normal { max: Some(300), .. }
        ));
        assert_eq!(
            plan("input_tokens = [1, 2, 3]").input_tokens,
            LengthPlan::List(vec![1, 2, 3])
        );
        assert_eq!(
            plan("input_tokens = { list = [7] }").input_tokens,
            LengthPlan::List(vec![7])
        );
        assert_eq!(plan("input_tokens = 5").input_tokens.fixed(), Some(5));
        for bad in [
            "input_tokens = 0",
            "input_tokens = { uniform = [10, 5] }",
            "input_tokens = { normal = { mean = 10 } }",
            "input_tokens = { poisson = 3 }",
            "input_tokens = []",
            "input_tokens = \"many\"",
        ] {
            assert!(toml::from_str::<WorkloadPlan>(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn lengths_write_back_as_they_read() {
        let p = plan(
            "input_tokens = { normal = { mean = 2048.0, stddev = 256.0, min = 1000 } }\noutput_tokens = { uniform = [1, 9] }\n[[class]]\nname = \"a\"\nweight = 1\ninput_tokens = [3, 4]",
        );
        let text = toml::to_string(&p).unwrap();
        let again: WorkloadPlan = toml::from_str(&text).unwrap();
        assert_eq!(again.input_tokens, p.input_tokens);
        assert_eq!(again.output_tokens, p.output_tokens);
        assert_eq!(
            again.classes[0].get_ref().input_tokens,
            Some(LengthPlan::List(vec![3, 4]))
        );
    }

    #[test]
    fn distributions_stay_in_their_bounds() {
        let mut rng = StdRng::seed_from_u64(1);
        let normal = LengthDist::Normal {
            mean: 100.0,
            stddev: 80.0,
            min: 50,
            max: 120,
        };
        let uniform = LengthDist::Uniform {
            min: 1000,
            max: 4096,
        };
        let mut seen = BTreeSet::new();
        for _ in 0..2000 {
            let n = normal.sample(&mut rng);
            assert!((50..=120).contains(&n));
            let u = uniform.sample(&mut rng);
            assert!((1000..=4096).contains(&u));
            seen.insert(LengthDist::Choices(vec![3, 9]).sample(&mut rng));
        }
        assert_eq!(seen, BTreeSet::from([3, 9]));
        assert_eq!(
            (uniform.min(), uniform.max(), uniform.mean()),
            (1000, 4096, 2548.0)
        );
    }

    #[test]
    fn classes_inherit_what_they_do_not_set() {
        let p = plan(
            "output_tokens = 64\nunique = false\n[[class]]\nname = \"chat\"\nweight = 70\ninput_tokens = 100\n[[class]]\nname = \"sum\"\nweight = 30\ninput_tokens = 3000\noutput_tokens = 300\n",
        );
        let spec = p.resolve(Path::new(".")).unwrap();
        assert_eq!(spec.class_names(), vec!["chat", "sum"]);
        assert!((spec.classes[0].weight - 0.7).abs() < 1e-9);
        assert_eq!(spec.classes[0].output_tokens, LengthDist::Fixed(64));
        assert_eq!(spec.classes[1].output_tokens, LengthDist::Fixed(300));
        assert!(!spec.classes[1].unique);
        assert_eq!(p.fixed_input_tokens(), None);
        assert_eq!(plan("input_tokens = 9").fixed_input_tokens(), Some(9));
    }

    #[test]
    fn problems_name_the_field() {
        let dir = tempfile::tempdir().unwrap();
        let p = plan(
            "tokenizer = \"nope.json\"\ntemplate = \"missing.j2\"\ndataset = { file = \"d.jsonl\" }\nextra_body = { max_tokens = 3 }\n[[class]]\nname = \"a\"\nweight = 0\n[[class]]\nname = \"a\"\nweight = 1\ntemplate_text = \"{{ fill() }}\"\nshared_prefix = { count = 2, tokens = 2000, fraction = 0.5 }\n",
        );
        let fields: Vec<String> = p
            .problems(dir.path())
            .into_iter()
            .map(|p| p.field)
            .collect();
        for want in [
            "workload.tokenizer",
            "workload.class[0].weight",
            "workload.class[1].name",
            "workload.class[0].template",
            "workload.class[0].extra_body",
            "workload.class[1].shared_prefix.tokens",
        ] {
            assert!(fields.iter().any(|f| f == want), "{want} not in {fields:?}");
        }
    }

    #[test]
    fn length_files_and_their_errors() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("l.txt"), "# lengths\n100\n\n200\n").unwrap();
        std::fs::write(dir.path().join("l.csv"), "id,len\n1,30\n2,40\n").unwrap();
        std::fs::write(dir.path().join("bad.txt"), "100\nlots\n").unwrap();
        let f = "workload.input_tokens";
        assert_eq!(
            read_lengths(&dir.path().join("l.txt"), None, f).unwrap(),
            vec![100, 200]
        );
        assert_eq!(
            read_lengths(&dir.path().join("l.csv"), Some("len"), f).unwrap(),
            vec![30, 40]
        );
        let e = read_lengths(&dir.path().join("bad.txt"), None, f).unwrap_err();
        assert_eq!(e.line, Some(2));
        assert!(
            e.to_string().contains("bad.txt:2: workload.input_tokens"),
            "{e}"
        );
        let e = read_lengths(&dir.path().join("l.csv"), Some("nope"), f).unwrap_err();
        assert!(e.message.contains("no column"), "{e}");
    }

    fn dataset(
        dir: &Path,
        name: &str,
        body: &str,
        extra: &str,
    ) -> Result<Vec<DatasetRow>, WorkloadError> {
        std::fs::write(dir.join(name), body).unwrap();
        let d: DatasetPlan = toml::from_str(&format!("file = \"{name}\"\n{extra}")).unwrap();
        read_dataset(dir, &d, "workload.dataset")
    }

    #[test]
    fn every_dataset_format_reads() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let rows = dataset(
            d,
            "p.jsonl",
            "{\"prompt\":\"hello there\"}\n\n{\"text\":\"second\"}\n",
            "",
        )
        .unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(
            (rows[1].line, rows[1].messages[0].content.as_str()),
            (3, "second")
        );
        let rows = dataset(
            d,
            "c.jsonl",
            "{\"messages\":[{\"role\":\"system\",\"content\":\"be brief\"},{\"role\":\"user\",\"content\":\"hi\"},{\"role\":\"assistant\",\"content\":\"hello\"}]}\n",
            "",
        )
        .unwrap();
        assert_eq!(rows[0].messages.len(), 2, "trailing answers are dropped");
        let rows = dataset(
            d,
            "s.json",
            r#"[{"id":"a","conversations":[{"from":"human","value":"q1"},{"from":"gpt","value":"a1"},{"from":"human","value":"q2"}]}]"#,
            "",
        )
        .unwrap();
        assert_eq!(rows[0].messages, vec![user("q1")]);
        let rows = dataset(d, "t.txt", "one\n\ntwo\nthree\n", "limit = 2").unwrap();
        let p: WorkloadPlan = toml::from_str("dataset = \"t.txt\"").unwrap();
        assert_eq!(p.dataset.unwrap().file, Path::new("t.txt"));
        assert!(
            toml::from_str::<WorkloadPlan>("dataset = { file = \"t.txt\", fits = \"trim\" }")
                .is_err()
        );
        assert_eq!(rows.iter().map(|r| r.line).collect::<Vec<_>>(), vec![1, 3]);
        let rows = dataset(d, "q.jsonl", "{\"q\":\"x\"}\n", "field = \"q\"").unwrap();
        assert_eq!(rows[0].messages[0].content, "x");
    }

    #[test]
    fn malformed_dataset_rows_name_line_and_field() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let e = dataset(d, "a.jsonl", "{\"prompt\":\"ok\"}\n{\"prompt\":\n", "").unwrap_err();
        assert_eq!(e.line, Some(2), "{e}");
        let e = dataset(
            d,
            "b.jsonl",
            "{\"prompt\":\"ok\"}\n{\"answer\":\"x\"}\n",
            "",
        )
        .unwrap_err();
        assert_eq!(e.line, Some(2));
        assert!(e.to_string().contains("prompt or text"), "{e}");
        let e = dataset(d, "c.jsonl", "{\"messages\":[{\"role\":\"user\"}]}\n", "").unwrap_err();
        assert!(e.to_string().contains("messages[0].content"), "{e}");
        let e = dataset(
            d,
            "s.json",
            r#"[{"conversations":[{"from":"human","value":"q"}]},{"conversations":[{"from":"alien","value":"q"}]}]"#,
            "",
        )
        .unwrap_err();
        assert_eq!(e.line, Some(2));
        assert!(e.to_string().contains("conversations[0].from"), "{e}");
        let e = dataset(d, "s2.json", "[{\"conversations\": [", "").unwrap_err();
        assert!(e.message.contains("not a JSON array"), "{e}");
        let e = dataset(d, "empty.txt", "\n\n", "").unwrap_err();
        assert!(e.message.contains("no prompt"), "{e}");
    }

    #[test]
    fn variable_rows_from_csv_and_jsonl() {
        let dir = tempfile::tempdir().unwrap();
        let csv = dir.path().join("v.csv");
        std::fs::write(&csv, "topic,n\nrust,3\n\"go, mostly\",4\n").unwrap();
        let rows = read_var_rows(&csv, "workload.vars_file").unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[1].values["topic"], "go, mostly");
        assert_eq!(rows[1].line, 3);
        let jl = dir.path().join("v.jsonl");
        std::fs::write(&jl, "{\"topic\":\"a\"}\n[1]\n").unwrap();
        let e = read_var_rows(&jl, "workload.vars_file").unwrap_err();
        assert_eq!(e.line, Some(2));
    }
}
