//! Request bodies, built ahead of their send time from the run's workload and seed: shared by
//! the agent (which sends them) and the controller (which checks a plan's workload before any
//! agent starts).
//!
//! - [`tokenizer`]: the workload's tokenizer (built-in BPE encodings, or a tokenizer.json).
//! - [`filler`]: text of an exact number of tokens.
//! - [`template`]: prompts from a minijinja template with variables and helpers.
//! - [`dataset`]: prompts from a dataset, trimmed or padded to the input length.
//! - [`session`]: multi-turn sessions, each turn carrying the earlier turns and their answers.
//! - [`body`]: the OpenAI JSON body of one request.
//!
//! A [`WorkloadEngine`] is built once per workload (the controller sends it before the first
//! step, see [`load`]); a [`RequestBuilder`] per share. Request `id` of agent `a` of `n` is
//! number `g = id * n + a` of the run's sequence, and everything random about it (its class,
//! its lengths, its words, its shared prefix) comes from a generator seeded by the plan's seed,
//! the step and `g`: the same seed sends the same requests, split the same way across agents.
//!
//! Synthetic prompts are unique per request by default: their words are drawn from the
//! request's own generator, so two prompts differ from their first token and a server's prefix
//! cache cannot flatter the results. `unique = false` sends the same words to every request.

pub mod body;
pub mod dataset;
pub mod filler;
pub mod session;
pub mod template;
pub mod tokenizer;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use stampede_common::plan::ApiKind;
use stampede_common::workload::{
    ChatMessage, ClassSpec, LengthDist, MAX_TOKENS, SourceSpec, WorkloadSpec,
};

use self::body::{BodyConfig, OutputControl, body, flatten};
use self::dataset::DatasetSource;
use self::filler::Filler;
pub use self::session::Session;

/// A request body built ahead of its send time.
#[derive(Debug, Clone)]
pub struct PreparedRequest {
    pub id: u64,
    pub body: Bytes,
    pub input_tokens: u32,
    pub max_tokens: u32,
    pub ignore_eos: bool,
    /// The workload's request class.
    pub class: u32,
    /// Keep the answer's text on the timeline (a multi-turn session's next turn needs it).
    pub capture_text: bool,
}
use self::template::{RenderRequest, TemplateSource};
use self::tokenizer::{Tokenizer, TokenizerError};

/// A workload that cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WorkloadError {
    #[error("the workload spec is not valid JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("workload.tokenizer: {0}")]
    Tokenizer(#[from] TokenizerError),
    #[error("workload: {0}")]
    Spec(String),
    #[error("class {class:?}: {message}")]
    Class { class: String, message: String },
}

/// A class's prompt source, ready.
#[derive(Debug)]
enum Source {
    Synthetic,
    Template(Box<TemplateSource>),
    Dataset(DatasetSource),
}

#[derive(Debug)]
struct ClassEngine {
    spec: ClassSpec,
    source: Source,
}

/// Everything built once per workload: the tokenizer, its filler, each class's source.
#[derive(Debug)]
pub struct WorkloadEngine {
    id: String,
    tokenizer: Tokenizer,
    filler: Filler,
    classes: Vec<ClassEngine>,
    /// Cumulative class weights, ending at 1.
    cumulative: Vec<f64>,
}

fn check_dist(d: &LengthDist, what: &str) -> Result<(), String> {
    let ok = match d {
        LengthDist::Fixed(n) => (1..=MAX_TOKENS).contains(n),
        LengthDist::Uniform { min, max } | LengthDist::Normal { min, max, .. } => {
            *min >= 1 && min <= max && *max <= MAX_TOKENS
        }
        LengthDist::Choices(v) => !v.is_empty() && v.iter().all(|n| (1..=MAX_TOKENS).contains(n)),
    };
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{what}: lengths must lie between 1 and {MAX_TOKENS}: {d:?}"
        ))
    }
}

impl WorkloadEngine {
    /// Loads the tokenizer, compiles templates, counts datasets, and checks that every class
    /// can build prompts of every length its distribution gives.
    ///
    /// # Errors
    /// The first problem found, naming the class and the file, line or row.
    pub fn try_new(spec: &WorkloadSpec, id: String) -> Result<WorkloadEngine, WorkloadError> {
        if spec.classes.is_empty() {
            return Err(WorkloadError::Spec("no request class".into()));
        }
        let tokenizer = Tokenizer::load(&spec.tokenizer, spec.tokenizer_json.as_deref())?;
        let filler = Filler::new(&tokenizer);
        let total: f64 = spec.classes.iter().map(|c| c.weight).sum();
        if !(total.is_finite() && total > 0.0) || spec.classes.iter().any(|c| c.weight < 0.0) {
            return Err(WorkloadError::Spec(
                "class weights must be 0 or more, and not all 0".into(),
            ));
        }
        let mut classes = Vec::with_capacity(spec.classes.len());
        let mut cumulative = Vec::with_capacity(spec.classes.len());
        let mut acc = 0.0;
        for c in &spec.classes {
            let err = |message: String| WorkloadError::Class {
                class: c.name.clone(),
                message,
            };
            check_dist(&c.input_tokens, "input_tokens").map_err(err)?;
            check_dist(&c.output_tokens, "output_tokens").map_err(err)?;
            let source = match &c.source {
                SourceSpec::Synthetic => Source::Synthetic,
                SourceSpec::Template {
                    name,
                    text,
                    vars,
                    rows,
                    rows_file,
                } => Source::Template(Box::new(
                    TemplateSource::try_new(
                        name,
                        text,
                        vars.clone(),
                        rows.clone(),
                        rows_file.clone(),
                    )
                    .map_err(err)?,
                )),
                SourceSpec::Dataset { name, rows, fit } => {
                    let mut input = c.input_tokens.clone();
                    if let Some(p) = &c.shared_prefix {
                        input = LengthDist::Uniform {
                            min: input.min().saturating_sub(p.tokens).max(1),
                            max: input.max().saturating_sub(p.tokens).max(1),
                        };
                    }
                    Source::Dataset(
                        DatasetSource::try_new(name, rows.clone(), *fit, &tokenizer, &input)
                            .map_err(err)?,
                    )
                }
            };
            if let Some(p) = &c.shared_prefix {
                if p.count == 0 || p.tokens == 0 || !(0.0..=1.0).contains(&p.fraction) {
                    return Err(err(format!("shared_prefix: {p:?} is out of range")));
                }
                if !matches!(source, Source::Dataset(_)) && c.input_tokens.min() <= p.tokens {
                    return Err(err(format!(
                        "input_tokens counts the shared prefix: the shortest input ({}) must be longer than the prefix ({})",
                        c.input_tokens.min(),
                        p.tokens
                    )));
                }
            }
            if let Some(t) = &c.multi_turn
                && t.turns == 0
            {
                return Err(err("multi_turn.turns must be at least 1".into()));
            }
            acc += c.weight / total;
            cumulative.push(acc);
            classes.push(ClassEngine {
                spec: strip_source(c),
                source,
            });
        }
        if let Some(last) = cumulative.last_mut() {
            *last = 1.0;
        }
        let engine = WorkloadEngine {
            id,
            tokenizer,
            filler,
            classes,
            cumulative,
        };
        engine.check_lengths()?;
        Ok(engine)
    }

    /// Builds a prompt at each end of every class's input distribution, so a length that
    /// cannot be built exactly stops the plan before the run.
    fn check_lengths(&self) -> Result<(), WorkloadError> {
        for (i, c) in self.classes.iter().enumerate() {
            for target in [c.spec.input_tokens.min(), c.spec.input_tokens.max()] {
                let mut rng = StdRng::seed_from_u64(u64::from(target));
                let own = target.saturating_sub(c.spec.shared_prefix.map_or(0, |p| p.tokens));
                self.content(i, &mut rng, 0, own.max(1), 1, None, false)
                    .map_err(|message| WorkloadError::Class {
                        class: c.spec.name.clone(),
                        message: format!("a prompt of {target} tokens: {message}"),
                    })?;
            }
        }
        Ok(())
    }

    /// The messages of a turn of class `ci` with `target` tokens in all (`prefix`, a shared
    /// system prompt and its length, included), and that count. For the completions API
    /// (`completions`) a synthetic prompt after a prefix is fitted as one text.
    #[allow(clippy::too_many_arguments)]
    fn content(
        &self,
        ci: usize,
        rng: &mut StdRng,
        g: u64,
        target: u32,
        turn: u32,
        prefix: Option<(&str, u32)>,
        completions: bool,
    ) -> Result<(Vec<ChatMessage>, u32), String> {
        let class = &self.classes[ci];
        let (tok, filler) = (&self.tokenizer, &self.filler);
        let own = prefix.map_or(target, |(_, n)| target.saturating_sub(n).max(1));
        let (messages, n) = match &class.source {
            Source::Synthetic if completions && prefix.is_some() => {
                // One prompt: the prefix, a paragraph break, then words up to the length.
                let head = format!("{}\n\n", prefix.map_or("", |p| p.0));
                let text = filler
                    .fit(tok, rng.random(), &head, "", target as usize)
                    .map_err(|err| err.to_string())?;
                return Ok((vec![user(text)], target));
            }
            Source::Synthetic => {
                let text = filler
                    .text(tok, rng, own as usize)
                    .map_err(|err| err.to_string())?;
                (vec![user(text)], own)
            }
            Source::Template(t) => {
                let req = RenderRequest {
                    index: g,
                    seed: rng.random(),
                    class: &class.spec.name,
                    input_tokens: own,
                    output_tokens: 0,
                    turn,
                };
                let (text, n) = t.render(tok, filler, &req)?;
                (vec![user(text)], n)
            }
            Source::Dataset(d) => d.build(tok, filler, rng, own, turn > 1)?,
        };
        match prefix {
            Some((text, len)) => {
                let mut all = Vec::with_capacity(messages.len() + 1);
                all.push(ChatMessage {
                    role: "system".into(),
                    content: text.to_string(),
                });
                all.extend(messages);
                Ok((all, n + len))
            }
            None => Ok((messages, n)),
        }
    }

    /// Parses a spec sent as JSON (checking its wire version first) and builds its engine.
    ///
    /// # Errors
    /// As [`WorkloadEngine::try_new`], or when the JSON does not parse or is of another version.
    pub fn from_json(json: &[u8]) -> Result<WorkloadEngine, WorkloadError> {
        let spec = WorkloadSpec::from_json(json).map_err(|e| WorkloadError::Spec(e.to_string()))?;
        WorkloadEngine::try_new(&spec, WorkloadSpec::id_of(json))
    }

    /// The content hash the controller and the agents know this workload by.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The tokenizer's name, as summary.json reports it.
    pub fn tokenizer_name(&self) -> &str {
        self.tokenizer.name()
    }

    /// The tokenizer.
    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }

    /// The class names, in order.
    pub fn class_names(&self) -> Vec<String> {
        self.classes.iter().map(|c| c.spec.name.clone()).collect()
    }
}

/// A class's spec without its source's content (kept in the built source instead).
fn strip_source(c: &ClassSpec) -> ClassSpec {
    ClassSpec {
        source: SourceSpec::Synthetic,
        ..c.clone()
    }
}

/// Workloads this agent has built, newest last.
static ENGINES: Mutex<Vec<Arc<WorkloadEngine>>> = Mutex::new(Vec::new());
/// Workloads kept at once: a run uses one; a few runs may overlap.
const KEPT: usize = 4;

/// Builds the workload of a spec sent as JSON (once: a spec already built is reused) and
/// keeps it for the shares that name it.
///
/// # Errors
/// As [`WorkloadEngine::from_json`].
pub fn load(json: &[u8]) -> Result<Arc<WorkloadEngine>, WorkloadError> {
    let id = WorkloadSpec::id_of(json);
    if let Some(e) = lookup(&id) {
        return Ok(e);
    }
    let engine = Arc::new(WorkloadEngine::from_json(json)?);
    keep(Arc::clone(&engine));
    Ok(engine)
}

fn keep(engine: Arc<WorkloadEngine>) {
    let mut all = ENGINES.lock().unwrap_or_else(|p| p.into_inner());
    all.retain(|e| e.id != engine.id);
    all.push(engine);
    let extra = all.len().saturating_sub(KEPT);
    all.drain(..extra);
}

/// A workload built earlier, by its id.
pub fn lookup(id: &str) -> Option<Arc<WorkloadEngine>> {
    let all = ENGINES.lock().unwrap_or_else(|p| p.into_inner());
    all.iter().find(|e| e.id == id).cloned()
}

/// The workload of a share that names no spec: one synthetic class of fixed lengths with the
/// default tokenizer, built once per set of lengths.
///
/// # Errors
/// When the lengths are out of range.
pub fn fixed(
    input_tokens: u32,
    output_tokens: u32,
    ignore_eos: bool,
) -> Result<Arc<WorkloadEngine>, WorkloadError> {
    let id = format!("fixed:{input_tokens}:{output_tokens}:{ignore_eos}");
    if let Some(e) = lookup(&id) {
        return Ok(e);
    }
    let spec = WorkloadSpec::fixed(input_tokens, output_tokens, ignore_eos);
    let engine = Arc::new(WorkloadEngine::try_new(&spec, id)?);
    keep(Arc::clone(&engine));
    Ok(engine)
}

/// Loads the default tokenizer on a thread of its own, so the first workload (or a share
/// without one) does not wait for its tables.
pub fn warm_up() {
    let _ = std::thread::Builder::new()
        .name("tokenizer-warm-up".into())
        .spawn(|| {
            let _ = Tokenizer::load(stampede_common::workload::DEFAULT_TOKENIZER, None);
        });
}

/// What a share asks of each request besides the workload.
#[derive(Debug, Clone)]
pub struct BuilderConfig {
    pub api: ApiKind,
    pub model: String,
    pub stream: bool,
    /// The plan's seed.
    pub seed: u64,
    /// The step's number in the run.
    pub stage: u32,
    pub agent_index: u32,
    pub agent_count: u32,
    /// A length every class uses in this step (a stage's `input_tokens`, a sweep, a limit test).
    pub input_tokens: Option<u32>,
    pub output_tokens: Option<u32>,
}

/// A request ready to send, and the session it opens when its class is multi-turn.
#[derive(Debug)]
pub struct Turn {
    pub req: PreparedRequest,
    pub session: Option<Session>,
}

/// SplitMix64's finalizer: well-spread seeds from structured inputs.
pub(crate) fn mix(a: u64, b: u64) -> u64 {
    let mut z = a ^ b
        .wrapping_add(0x9E37_79B9_7F4A_7C15)
        .wrapping_mul(0xD6E8_FEB8_6659_FD93);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Builds the request bodies of one share.
#[derive(Debug)]
pub struct RequestBuilder {
    engine: Arc<WorkloadEngine>,
    config: BuilderConfig,
    body: BodyConfig,
    /// Seed of this step's requests.
    step_seed: u64,
    /// Each class's shared prefixes and their length in tokens.
    prefixes: Vec<Vec<String>>,
    /// Said once: a prompt could not be built and a synthetic one was sent instead.
    warned: AtomicBool,
}

impl RequestBuilder {
    /// A builder for one share. Shared prefixes depend on the plan's seed only, so every agent
    /// and every step sends the same ones.
    pub fn new(engine: Arc<WorkloadEngine>, config: BuilderConfig) -> RequestBuilder {
        let prefixes = engine
            .classes
            .iter()
            .enumerate()
            .map(|(ci, c)| match &c.spec.shared_prefix {
                Some(p) => (0..p.count)
                    .map(|k| {
                        let mut rng = StdRng::seed_from_u64(mix(
                            mix(config.seed, 0x5052_4546),
                            (ci as u64) << 32 | u64::from(k),
                        ));
                        engine
                            .filler
                            .text(&engine.tokenizer, &mut rng, p.tokens as usize)
                            .unwrap_or_default()
                    })
                    .collect(),
                None => Vec::new(),
            })
            .collect();
        RequestBuilder {
            step_seed: mix(config.seed, u64::from(config.stage)),
            body: BodyConfig {
                api: config.api,
                model: config.model.clone(),
                stream: config.stream,
            },
            engine,
            config,
            prefixes,
            warned: AtomicBool::new(false),
        }
    }

    /// The workload this builder draws from.
    pub fn engine(&self) -> &Arc<WorkloadEngine> {
        &self.engine
    }

    /// Number `id` of this agent's requests in the run's sequence.
    fn global(&self, id: u64) -> u64 {
        id.wrapping_mul(u64::from(self.config.agent_count.max(1)))
            .wrapping_add(u64::from(self.config.agent_index))
    }

    fn pick_class(&self, rng: &mut StdRng) -> usize {
        if self.engine.classes.len() == 1 {
            return 0;
        }
        let x: f64 = rng.random();
        self.engine
            .cumulative
            .iter()
            .position(|c| x < *c)
            .unwrap_or(self.engine.classes.len() - 1)
    }

    /// The first turn of request `id`, its lengths from its class.
    pub fn build(&self, id: u64) -> Turn {
        self.build_with(id, None, None)
    }

    /// Request `id` with its own lengths (trace replay).
    pub fn build_sized(&self, id: u64, input_tokens: u32, output_tokens: u32) -> Turn {
        self.build_with(id, Some(input_tokens), Some(output_tokens))
    }

    fn build_with(&self, id: u64, input: Option<u32>, output: Option<u32>) -> Turn {
        let g = self.global(id);
        let mut rng = StdRng::seed_from_u64(mix(self.step_seed, g));
        let ci = self.pick_class(&mut rng);
        let c = &self.engine.classes[ci].spec;
        let input = input
            .or(self.config.input_tokens)
            .unwrap_or_else(|| c.input_tokens.sample(&mut rng))
            .max(1);
        let output = output
            .or(self.config.output_tokens)
            .unwrap_or_else(|| c.output_tokens.sample(&mut rng))
            .max(1);
        let prefix = c.shared_prefix.and_then(|p| {
            // Exactly `fraction` of the sequence carries a prefix, spread evenly.
            let (a, b) = (
                (g as f64 * p.fraction).floor(),
                ((g + 1) as f64 * p.fraction).floor(),
            );
            (b > a).then(|| rng.random_range(0..p.count as usize))
        });
        let mut content_rng = if c.unique {
            StdRng::seed_from_u64(rng.random())
        } else {
            StdRng::seed_from_u64(mix(self.config.seed, ci as u64))
        };
        let (messages, tokens) =
            self.content_or_fallback(ci, &mut content_rng, g, input, 1, prefix);
        let session = c.multi_turn.filter(|t| t.turns > 1).map(|t| {
            Session::new(
                ci,
                g,
                id,
                t.turns,
                t.think_time_us,
                messages.clone(),
                tokens,
            )
        });
        let req = self.finish(id, ci, &messages, tokens, output, session.is_some());
        Turn { req, session }
    }

    /// The next turn of a session, after `answer`: the conversation so far, the answer, and a
    /// new user message of the class's input length. None when the session is over.
    pub fn next_turn(&self, s: &mut Session, answer: &str) -> Option<PreparedRequest> {
        if s.done() {
            return None;
        }
        let ci = s.class;
        let c = &self.engine.classes[ci].spec;
        let answer_tokens = u32::try_from(self.engine.tokenizer.count(answer)).unwrap_or(u32::MAX);
        s.push(
            ChatMessage {
                role: "assistant".into(),
                content: answer.to_string(),
            },
            answer_tokens,
        );
        let turn = s.turn + 1;
        let mut rng = StdRng::seed_from_u64(mix(mix(self.step_seed, s.global), u64::from(turn)));
        let input = self
            .config
            .input_tokens
            .unwrap_or_else(|| c.input_tokens.sample(&mut rng))
            .max(1);
        let output = self
            .config
            .output_tokens
            .unwrap_or_else(|| c.output_tokens.sample(&mut rng))
            .max(1);
        let (messages, tokens) =
            self.content_or_fallback(ci, &mut rng, s.global, input, turn, None);
        for (m, n) in messages
            .into_iter()
            .zip(std::iter::once(tokens).chain(std::iter::repeat(0)))
        {
            s.push(m, n);
        }
        s.turn = turn;
        let id = s.first_id | (u64::from(turn - 1) << 48);
        Some(self.finish(id, ci, &s.messages, s.tokens, output, !s.done()))
    }

    fn content_or_fallback(
        &self,
        ci: usize,
        rng: &mut StdRng,
        g: u64,
        target: u32,
        turn: u32,
        prefix: Option<usize>,
    ) -> (Vec<ChatMessage>, u32) {
        match self.content(ci, rng, g, target, turn, prefix) {
            Ok(x) => x,
            Err(e) => {
                if !self.warned.swap(true, Ordering::Relaxed) {
                    tracing::warn!("workload: {e}; sending synthetic prompts where this happens");
                }
                let mut text = String::new();
                self.engine
                    .filler
                    .push(rng, target as usize, false, &mut text);
                (vec![user(text)], target)
            }
        }
    }

    fn content(
        &self,
        ci: usize,
        rng: &mut StdRng,
        g: u64,
        target: u32,
        turn: u32,
        prefix: Option<usize>,
    ) -> Result<(Vec<ChatMessage>, u32), String> {
        let len = self.engine.classes[ci]
            .spec
            .shared_prefix
            .map_or(0, |p| p.tokens);
        let prefix = prefix.and_then(|k| Some((self.prefixes.get(ci)?.get(k)?.as_str(), len)));
        let completions = self.body.api == ApiKind::Completions;
        self.engine
            .content(ci, rng, g, target, turn, prefix, completions)
    }

    /// The prepared request: body, lengths and class.
    fn finish(
        &self,
        id: u64,
        ci: usize,
        messages: &[ChatMessage],
        tokens: u32,
        output: u32,
        capture_text: bool,
    ) -> PreparedRequest {
        let c = &self.engine.classes[ci].spec;
        let (prompt, tokens) = if self.body.api == ApiKind::Completions {
            if messages.len() == 1 {
                (Some(messages[0].content.clone()), tokens)
            } else {
                let text = flatten(messages);
                let n = u32::try_from(self.engine.tokenizer.count(&text)).unwrap_or(u32::MAX);
                (Some(text), n)
            }
        } else {
            (None, tokens)
        };
        let out = OutputControl {
            max_tokens: output,
            ignore_eos: c.send_ignore_eos,
            min_tokens: c.send_min_tokens,
        };
        PreparedRequest {
            id,
            body: body(&self.body, messages, prompt.as_deref(), out, &c.extra_body),
            input_tokens: tokens,
            max_tokens: output,
            ignore_eos: c.ignore_eos,
            class: u32::try_from(ci).unwrap_or(u32::MAX),
            capture_text,
        }
    }
}

fn user(text: String) -> ChatMessage {
    ChatMessage {
        role: "user".into(),
        content: text,
    }
}

#[cfg(test)]
mod tests;
