//! The test plan: its TOML schema, parsing with errors that name the file, line and field, and
//! its expansion into the steps that agents run.
//!
//! Parsing happens in two passes. Serde with `deny_unknown_fields` rejects unknown keys and
//! ill-typed values (a bad duration, a negative rate) and toml reports where; then
//! [`Plan::validate`] checks what spans several fields and returns every problem at once.

use std::collections::BTreeMap;
use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize};
use toml::Spanned;

use crate::metrics::METRIC_NAMES;
pub use crate::stage::{
    ArrivalPlan, Load, StageDefaults, StagePlan, StageProgram, StepKind, StepPlan, StepsPlan,
};
use crate::units::{HumanDuration, parse_duration, parse_fraction};

pub mod monitor;
pub use crate::workload::WorkloadPlan;
pub use monitor::MonitorPlan;

/// One problem found in a plan, located in its source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanIssue {
    /// 1-based line and column; 0 when the problem concerns the whole file.
    pub line: usize,
    pub column: usize,
    /// The dotted path of the field, such as `stage[2].qps`, when known.
    pub field: Option<String>,
    pub message: String,
}

/// A plan that could not be read, parsed or validated: every problem found, with the file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct PlanError {
    pub file: PathBuf,
    pub issues: Vec<PlanIssue>,
}

impl fmt::Display for PlanError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, issue) in self.issues.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{}", self.file.display())?;
            if issue.line > 0 {
                write!(f, ":{}:{}", issue.line, issue.column)?;
            }
            write!(f, ": ")?;
            if let Some(field) = &issue.field {
                write!(f, "{field}: ")?;
            }
            write!(f, "{}", issue.message)?;
        }
        Ok(())
    }
}

/// Which OpenAI endpoint requests go to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum ApiKind {
    /// `/chat/completions` with a `messages` array.
    #[default]
    Chat,
    /// `/completions` with a `prompt` string.
    Completions,
}

/// The service under test. With no `base_url`, the built-in simulator is started.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetPlan {
    /// Everything before `/chat/completions`, such as `http://127.0.0.1:8000/v1`.
    pub base_url: Option<String>,
    #[serde(default)]
    pub api: ApiKind,
    /// The model name sent with each request; by default the first one `/models` lists.
    pub model: Option<String>,
    /// A bearer token; `${VAR}` is read from the environment. Never written to results.
    pub api_key: Option<String>,
    #[serde(default = "default_true")]
    pub stream: bool,
    /// Total time a request may take.
    #[serde(default = "default_timeout")]
    pub timeout: HumanDuration,
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout: HumanDuration,
    /// Time allowed until the first content token; by default the total timeout.
    pub first_token_timeout: Option<HumanDuration>,
    /// Longest gap allowed between two chunks of a response, once content flows: a server that
    /// trickles a byte a minute cannot hold a request until the total timeout.
    pub idle_timeout: Option<HumanDuration>,
    /// Settings for the built-in simulator, passed to `sim --config` when no base_url is given.
    pub sim: Option<toml::Table>,
}

impl Default for TargetPlan {
    fn default() -> Self {
        TargetPlan {
            base_url: None,
            api: ApiKind::default(),
            model: None,
            api_key: None,
            stream: true,
            timeout: default_timeout(),
            connect_timeout: default_connect_timeout(),
            first_token_timeout: None,
            idle_timeout: None,
            sim: None,
        }
    }
}

fn default_true() -> bool {
    true
}
fn default_timeout() -> HumanDuration {
    HumanDuration(Duration::from_secs(120))
}
fn default_connect_timeout() -> HumanDuration {
    HumanDuration(Duration::from_secs(10))
}

/// A positive number of tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct TokenCount(pub u32);

impl<'de> Deserialize<'de> for TokenCount {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let n = i64::deserialize(d)?;
        match u32::try_from(n) {
            Ok(v) if (1..=1 << 20).contains(&v) => Ok(TokenCount(v)),
            _ => Err(serde::de::Error::custom(format!(
                "expected a token count between 1 and 1048576, got {n}"
            ))),
        }
    }
}

/// A request rate: positive and finite.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Qps(pub f64);

impl<'de> Deserialize<'de> for Qps {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = f64::deserialize(d)?;
        if v.is_finite() && v > 0.0 && v <= 1e6 {
            Ok(Qps(v))
        } else {
            Err(serde::de::Error::custom(format!(
                "expected a rate in requests per second, above 0 and at most 1000000, got {v}"
            )))
        }
    }
}

/// A number of concurrent users: at least 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Concurrency(pub u32);

impl<'de> Deserialize<'de> for Concurrency {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let n = i64::deserialize(d)?;
        match u32::try_from(n) {
            Ok(v) if (1..=100_000).contains(&v) => Ok(Concurrency(v)),
            _ => Err(serde::de::Error::custom(format!(
                "expected a concurrency between 1 and 100000, got {n}"
            ))),
        }
    }
}

/// How much of each request is kept in requests.csv.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResultsPlan {
    /// Keep one request record in every N (1: all, 0: none).
    #[serde(default = "default_record_every")]
    pub record_every: u32,
}

impl Default for ResultsPlan {
    fn default() -> Self {
        ResultsPlan {
            record_every: default_record_every(),
        }
    }
}

fn default_record_every() -> u32 {
    1
}

/// Per-request limits: a completed request meeting all of them counts toward goodput.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GoodputPlan {
    pub ttft: Option<HumanDuration>,
    pub tpot: Option<HumanDuration>,
    pub e2e: Option<HumanDuration>,
}

/// A remote agent the plan runs its load on.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentPlan {
    /// `HOST:PORT`, or `dns:NAME:PORT` for every address NAME resolves to (a Kubernetes
    /// headless Service).
    pub addr: String,
    /// Its share of the load against the other agents'; by default the cores it reports.
    pub weight: Option<f64>,
}

/// What a run does when an agent stops answering mid-run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnAgentLost {
    /// Keep its data up to its last interval and go on with the others; it may rejoin later.
    #[default]
    Continue,
    /// Stop the run (exit 1): every step must have had its whole load.
    Abort,
}

/// The whole plan, as written.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Plan {
    pub name: String,
    /// Seed for arrivals and prompts; the same seed gives the same requests.
    #[serde(default)]
    pub seed: u64,
    /// Length of an interval report.
    #[serde(default = "default_interval")]
    pub interval: HumanDuration,
    /// How long requests still in flight at the end of a stage may finish before cancellation.
    #[serde(default = "default_grace")]
    pub grace: HumanDuration,
    #[serde(default)]
    pub target: TargetPlan,
    #[serde(default)]
    pub workload: WorkloadPlan,
    #[serde(default)]
    pub goodput: GoodputPlan,
    /// Thresholds: `<metric>_<stat> = "duration"` or `<rate> = "percent"`; see [`SloCheck`].
    #[serde(default)]
    pub slo: BTreeMap<String, Spanned<toml::Value>>,
    #[serde(default)]
    pub results: ResultsPlan,
    /// What is sampled beside the load: GPUs, host, target process, server metrics.
    #[serde(default)]
    pub monitor: MonitorPlan,
    #[serde(default, rename = "stage")]
    pub stages: Vec<Spanned<StagePlan>>,
    /// Stop the run at the first step that fails a threshold.
    #[serde(default)]
    pub abort_on_slo_fail: bool,
    /// Remote agents (`--agent` replaces them); none: local agents (`--agents N`).
    #[serde(default)]
    pub agents: Vec<AgentPlan>,
    #[serde(default)]
    pub on_agent_lost: OnAgentLost,
    /// The plan file's folder, against which its relative paths (traces) are read.
    #[serde(skip)]
    pub dir: PathBuf,
}

fn default_interval() -> HumanDuration {
    HumanDuration(Duration::from_secs(1))
}
fn default_grace() -> HumanDuration {
    HumanDuration(Duration::from_secs(5))
}

/// Which way a threshold points.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Bound {
    /// The measured value must be at most the limit.
    AtMost,
    /// The measured value must be at least the limit.
    AtLeast,
}

/// One SLO threshold, resolved: a metric name as summary.json spells it, a limit and a bound.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SloCheck {
    /// As written in the plan, such as `e2e_p99` or `error_rate`.
    pub name: String,
    /// Milliseconds for latencies, a fraction for rates.
    pub limit: f64,
    pub bound: Bound,
}

/// Throughput thresholds, in requests per second, that must be reached.
pub const THROUGHPUT_SLOS: [&str; 2] = ["goodput_qps", "throughput_rps"];
/// Rate thresholds and what they measure.
pub const RATE_SLOS: [&str; 5] = [
    "error_rate",
    "timeout_rate",
    "abnormal_rate",
    "drop_rate",
    "goodput_ratio",
];
/// Statistics a latency threshold may name.
pub const STATS: [&str; 7] = ["mean", "p50", "p90", "p95", "p99", "p999", "max"];

impl Plan {
    /// Reads, parses and validates a plan file.
    ///
    /// # Errors
    /// A [`PlanError`] naming the file and, for each problem, its line, column and field.
    pub fn load(path: &Path) -> Result<Plan, PlanError> {
        let text = std::fs::read_to_string(path).map_err(|e| PlanError {
            file: path.to_path_buf(),
            issues: vec![PlanIssue {
                line: 0,
                column: 0,
                field: None,
                message: format!("cannot read the plan: {e}"),
            }],
        })?;
        Plan::parse(&text, path)
    }

    /// Parses and validates plan text; `file` is only used in errors.
    ///
    /// # Errors
    /// A [`PlanError`] with every problem found.
    pub fn parse(text: &str, file: &Path) -> Result<Plan, PlanError> {
        let plan: Plan = toml::from_str(text).map_err(|e| {
            let issue = match e.span() {
                Some(span) => issue_at(text, &span, e.message().trim()),
                None => PlanIssue {
                    line: 0,
                    column: 0,
                    field: None,
                    message: e.message().trim().to_string(),
                },
            };
            PlanError {
                file: file.to_path_buf(),
                issues: vec![issue],
            }
        })?;
        let mut plan = plan;
        plan.dir = file.parent().map(Path::to_path_buf).unwrap_or_default();
        let issues = plan.validate(text);
        if issues.is_empty() {
            Ok(plan)
        } else {
            Err(PlanError {
                file: file.to_path_buf(),
                issues,
            })
        }
    }

    /// Every problem that spans fields, with its location in `text`.
    pub fn validate(&self, text: &str) -> Vec<PlanIssue> {
        let mut issues = Vec::new();
        let whole = |field: &str, message: String| PlanIssue {
            line: 0,
            column: 0,
            field: Some(field.to_string()),
            message,
        };
        if self.name.trim().is_empty() {
            issues.push(whole("name", "must not be empty".into()));
        }
        if self.stages.is_empty() {
            issues.push(whole(
                "stage",
                "the plan has no stage: add at least one [[stage]] with a name, a duration and qps or concurrency".into(),
            ));
        }
        if self.interval.0 < Duration::from_millis(100) {
            issues.push(whole(
                "interval",
                format!("must be at least 100ms, got {}", self.interval),
            ));
        }
        if let Some(url) = &self.target.base_url
            && !(url.starts_with("http://") || url.starts_with("https://"))
        {
            issues.push(whole(
                "target.base_url",
                format!("expected an http:// or https:// URL such as http://127.0.0.1:8000/v1, got {url:?}"),
            ));
        }
        if self.target.base_url.is_some() && self.target.sim.is_some() {
            issues.push(whole(
                "target.sim",
                "applies only to the built-in simulator, which runs when target.base_url is not set".into(),
            ));
        }
        issues.extend(self.monitor.validate());
        for (i, a) in self.agents.iter().enumerate() {
            let addr = a.addr.strip_prefix("dns:").unwrap_or(&a.addr);
            if addr
                .rsplit_once(':')
                .is_none_or(|(h, p)| h.is_empty() || p.parse::<u16>().is_err())
            {
                issues.push(whole(
                    &format!("agents[{i}].addr"),
                    format!("expected HOST:PORT or dns:NAME:PORT, got {:?}", a.addr),
                ));
            }
            if let Some(w) = a.weight
                && !(w.is_finite() && w > 0.0 && w <= 1e6)
            {
                issues.push(whole(
                    &format!("agents[{i}].weight"),
                    format!("expected a weight above 0, got {w}"),
                ));
            }
        }
        for p in self.workload.problems(&self.dir) {
            let mut issue = match &p.span {
                Some(span) => issue_at(text, span, &p.message),
                None => whole(&p.field, p.message.clone()),
            };
            issue.field = Some(p.field);
            issues.push(issue);
        }
        let plan_checks = self.slo_checks();
        let defaults = self.stage_defaults(&plan_checks);
        let mut names = BTreeMap::new();
        for (i, stage) in self.stages.iter().enumerate() {
            let span = stage.span();
            let at = |field: &str, message: &str| {
                let mut issue = issue_at(text, &span, message);
                issue.field = Some(format!("stage[{i}].{field}"));
                issue
            };
            let s = stage.get_ref();
            if let Some(first) = names.insert(s.name.clone(), i) {
                issues.push(at(
                    "name",
                    &format!("{:?} is already the name of stage[{first}]", s.name),
                ));
            }
            for (field, message) in s.problems(&defaults) {
                issues.push(at(&field, &message));
            }
        }
        for (name, value) in &self.slo {
            if let Err(message) = parse_slo(name, value.get_ref()) {
                let mut issue = issue_at(text, &value.span(), &message);
                issue.field = Some(format!("slo.{name}"));
                issues.push(issue);
            }
        }
        issues
    }

    /// What a stage inherits from the plan.
    pub fn stage_defaults<'a>(&'a self, checks: &'a [SloCheck]) -> StageDefaults<'a> {
        StageDefaults {
            // 0: each class's own distribution; a stage or a sweep may still set a length.
            input_tokens: self.workload.fixed_input_tokens().unwrap_or(0),
            output_tokens: self.workload.fixed_output_tokens().unwrap_or(0),
            checks,
            plan_dir: &self.dir,
        }
    }

    /// What the runner does for each stage, in order.
    ///
    /// # Errors
    /// When a stage's trace file cannot be read.
    pub fn programs(&self) -> Result<Vec<StageProgram>, String> {
        let checks = self.slo_checks();
        let defaults = self.stage_defaults(&checks);
        self.stages
            .iter()
            .enumerate()
            .map(|(i, s)| s.get_ref().program(i, &defaults))
            .collect()
    }

    /// Multiplies every stage duration by `factor`, so a long plan runs quickly (`--time-scale`).
    pub fn scale_time(&mut self, factor: f64) {
        for stage in &mut self.stages {
            stage.get_mut().scale_time(factor);
        }
    }

    /// The SLO thresholds, resolved. Validation has already rejected bad ones.
    pub fn slo_checks(&self) -> Vec<SloCheck> {
        self.slo
            .iter()
            .filter_map(|(name, value)| parse_slo(name, value.get_ref()).ok())
            .collect()
    }

    /// The plan as TOML with secrets replaced, for the results folder.
    pub fn redacted_toml(&self) -> String {
        let mut copy = self.clone();
        if copy.target.api_key.is_some() {
            copy.target.api_key = Some("<redacted>".to_string());
        }
        toml::to_string_pretty(&copy)
            .unwrap_or_else(|e| format!("# plan could not be written: {e}\n"))
    }
}

/// Resolves one `[slo]` entry, or says what is wrong with it.
pub(crate) fn parse_slo(name: &str, value: &toml::Value) -> Result<SloCheck, String> {
    let text = match value {
        toml::Value::String(s) => s.clone(),
        toml::Value::Float(f) => f.to_string(),
        toml::Value::Integer(i) => i.to_string(),
        other => {
            return Err(format!(
                "expected a string such as \"1500ms\" or \"1%\", got {other}"
            ));
        }
    };
    if THROUGHPUT_SLOS.contains(&name) {
        let limit: f64 = text.trim().parse().map_err(|_| {
            format!("expected a number of requests per second, such as 10, got {text:?}")
        })?;
        if !(limit.is_finite() && limit >= 0.0) {
            return Err(format!("expected a rate of 0 or more, got {limit}"));
        }
        return Ok(SloCheck {
            name: name.to_string(),
            limit,
            bound: Bound::AtLeast,
        });
    }
    if RATE_SLOS.contains(&name) {
        let limit = parse_fraction(&text).map_err(|e| e.to_string())?;
        let bound = if name == "goodput_ratio" {
            Bound::AtLeast
        } else {
            Bound::AtMost
        };
        return Ok(SloCheck {
            name: name.to_string(),
            limit,
            bound,
        });
    }
    let known = || {
        format!(
            "unknown SLO metric {name:?}: expected <metric>_<stat> with metric one of {} and stat one of {}, or one of {}, {}",
            METRIC_NAMES.join(", "),
            STATS.join(", "),
            RATE_SLOS.join(", "),
            THROUGHPUT_SLOS.join(", ")
        )
    };
    let (metric, stat) = name.rsplit_once('_').ok_or_else(known)?;
    if !METRIC_NAMES.contains(&metric) || !STATS.contains(&stat) {
        return Err(known());
    }
    let limit = parse_duration(&text).map_err(|e| e.to_string())?;
    Ok(SloCheck {
        name: name.to_string(),
        limit: limit.as_secs_f64() * 1000.0,
        bound: Bound::AtMost,
    })
}

/// Expands `${VAR}` in a value from the environment lookup given.
///
/// # Errors
/// Names the variable that is not set.
pub fn expand_env(value: &str, lookup: impl Fn(&str) -> Option<String>) -> Result<String, String> {
    let mut out = String::with_capacity(value.len());
    let mut rest = value;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after
            .find('}')
            .ok_or_else(|| format!("unclosed ${{ in {value:?}"))?;
        let var = &after[..end];
        let val = lookup(var).ok_or_else(|| format!("environment variable {var} is not set"))?;
        out.push_str(&val);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// Locates a byte span of `text`: its line and column, and the field written there.
fn issue_at(text: &str, span: &Range<usize>, message: &str) -> PlanIssue {
    let start = span.start.min(text.len());
    let before = &text[..start];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = text[line_start..start].chars().count() + 1;
    PlanIssue {
        line,
        column,
        field: field_at(text, line_start, start),
        message: message.to_string(),
    }
}

/// The dotted field at a position: the key on its line (when the position is in the value or
/// the key), prefixed by the table header above it.
fn field_at(text: &str, line_start: usize, pos: usize) -> Option<String> {
    let line_end = text[line_start..]
        .find('\n')
        .map_or(text.len(), |i| line_start + i);
    let line = &text[line_start..line_end];
    let key = line.split_once('=').and_then(|(k, _)| {
        let k = k.trim();
        (!k.is_empty() && !k.starts_with('[') && !k.starts_with('#')).then(|| k.to_string())
    });
    let mut table: Option<String> = None;
    let mut stage_count = 0usize;
    for l in text[..pos.min(line_end)].lines() {
        let t = l.trim();
        if t.starts_with("[[stage]]") {
            table = Some(format!("stage[{stage_count}]"));
            stage_count += 1;
        } else if let Some(h) = t.strip_prefix("[[").and_then(|h| h.split("]]").next()) {
            table = Some(h.trim().to_string());
        } else if let Some(h) = t.strip_prefix('[').and_then(|h| h.split(']').next()) {
            table = Some(h.trim().to_string());
        }
    }
    match (table, key) {
        (Some(t), Some(k)) => Some(format!("{t}.{k}")),
        (None, Some(k)) => Some(k),
        (Some(t), None) => Some(t),
        (None, None) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schedule::ArrivalKind;

    fn parse(text: &str) -> Result<Plan, PlanError> {
        Plan::parse(text, Path::new("plan.toml"))
    }

    const GOOD: &str = r#"
name = "demo"
seed = 3

[target]
api = "completions"
timeout = "30s"

[workload]
input_tokens = 200
output_tokens = 32

[slo]
e2e_p99 = "1500ms"
error_rate = "1%"

[[stage]]
name = "warm"
concurrency = 2
duration = "10s"

[[stage]]
name = "steps"
arrival = "constant"
steps = { qps = [10, 50], each = "20s" }
output_tokens = 8
"#;

    #[test]
    fn a_good_plan_expands_into_steps() {
        let plan = parse(GOOD).unwrap();
        let steps: Vec<StepPlan> = plan
            .programs()
            .unwrap()
            .into_iter()
            .flat_map(|p| match p {
                StageProgram::Fixed(steps) => steps,
                StageProgram::Adaptive { .. } => panic!("no adaptive stage in this plan"),
            })
            .collect();
        assert_eq!(steps.len(), 3);
        assert_eq!(
            steps[0].load,
            Load::Closed {
                concurrency: 2,
                think_time: Duration::ZERO
            }
        );
        assert_eq!(steps[1].name, "steps/qps=10");
        assert_eq!(
            steps[2].load,
            Load::Open {
                qps: 50.0,
                arrival: ArrivalKind::Constant,
                max_in_flight: None
            }
        );
        assert_eq!(steps[2].duration, Duration::from_secs(20));
        assert_eq!((steps[2].input_tokens, steps[2].output_tokens), (200, 8));
        assert_eq!(plan.target.api, ApiKind::Completions);
        let checks = plan.slo_checks();
        assert_eq!(
            checks[0],
            SloCheck {
                name: "e2e_p99".into(),
                limit: 1500.0,
                bound: Bound::AtMost
            }
        );
        assert_eq!(checks[1].limit, 0.01);
    }

    fn one_issue(text: &str) -> (String, PlanIssue) {
        let err = parse(text).unwrap_err();
        assert_eq!(err.file, Path::new("plan.toml"));
        (err.to_string(), err.issues[0].clone())
    }

    #[test]
    fn unknown_field_names_line_and_field() {
        let (msg, issue) =
            one_issue("name = \"x\"\n\n[[stage]]\nname = \"a\"\nqpss = 5\nduration = \"1s\"\n");
        assert_eq!(issue.line, 5, "{msg}");
        assert_eq!(issue.field.as_deref(), Some("stage[0].qpss"), "{msg}");
        assert!(msg.contains("unknown field `qpss`"), "{msg}");
        assert!(msg.starts_with("plan.toml:5:"), "{msg}");
    }

    #[test]
    fn bad_duration_names_line_and_field() {
        let (msg, issue) = one_issue(
            "name = \"x\"\n[[stage]]\nname = \"a\"\nqps = 5\nduration = \"ten seconds\"\n",
        );
        assert_eq!(
            (issue.line, issue.field.as_deref()),
            (5, Some("stage[0].duration")),
            "{msg}"
        );
        assert!(msg.contains("duration such as"), "{msg}");
    }

    #[test]
    fn negative_qps_names_line_and_field() {
        let (msg, issue) =
            one_issue("name = \"x\"\n[[stage]]\nname = \"a\"\nqps = -5\nduration = \"1s\"\n");
        assert_eq!(
            (issue.line, issue.field.as_deref()),
            (4, Some("stage[0].qps")),
            "{msg}"
        );
        assert!(msg.contains("got -5"), "{msg}");
    }

    #[test]
    fn missing_stage_is_an_error() {
        let (msg, issue) = one_issue("name = \"x\"\n");
        assert_eq!(issue.field.as_deref(), Some("stage"));
        assert!(msg.contains("no stage"), "{msg}");
    }

    #[test]
    fn every_cross_field_problem_is_reported_at_once() {
        let text = "name = \"x\"\n[slo]\nttft_p42 = \"1s\"\n[[stage]]\nname = \"a\"\nqps = 5\nconcurrency = 2\nduration = \"1s\"\n[[stage]]\nname = \"a\"\nqps = 1\n";
        let err = parse(text).unwrap_err();
        let fields: Vec<_> = err.issues.iter().filter_map(|i| i.field.clone()).collect();
        assert!(fields.contains(&"stage[0].qps".to_string()), "{err}");
        assert!(fields.contains(&"stage[1].name".to_string()), "{err}");
        assert!(fields.contains(&"stage[1].duration".to_string()), "{err}");
        assert!(fields.contains(&"slo.ttft_p42".to_string()), "{err}");
        let slo = err
            .issues
            .iter()
            .find(|i| i.field.as_deref() == Some("slo.ttft_p42"))
            .unwrap();
        assert_eq!(slo.line, 3);
        // The stage issues point at the stage's own lines.
        let dup = err
            .issues
            .iter()
            .find(|i| i.field.as_deref() == Some("stage[1].name"))
            .unwrap();
        assert!(dup.line >= 9, "{err}");
    }

    #[test]
    fn remote_agents_are_checked() {
        let stage = "[[stage]]\nname = \"a\"\nqps = 1\nduration = \"1s\"\n";
        let plan = parse(&format!("name = \"x\"\non_agent_lost = \"abort\"\n[[agents]]\naddr = \"10.0.0.5:7070\"\n[[agents]]\naddr = \"dns:agents.ns.svc:7070\"\nweight = 2\n{stage}")).unwrap();
        assert_eq!(plan.agents.len(), 2);
        assert_eq!(plan.agents[1].weight, Some(2.0));
        assert_eq!(plan.on_agent_lost, OnAgentLost::Abort);
        let err = parse(&format!("name = \"x\"\n[[agents]]\naddr = \"10.0.0.5\"\n[[agents]]\naddr = \"h:1\"\nweight = 0\n{stage}")).unwrap_err();
        let fields: Vec<_> = err.issues.iter().filter_map(|i| i.field.clone()).collect();
        assert_eq!(fields, ["agents[0].addr", "agents[1].weight"], "{err}");
        let (msg, issue) = one_issue(&format!("name = \"x\"\non_agent_lost = \"retry\"\n{stage}"));
        assert_eq!(issue.line, 2, "{msg}");
        assert!(msg.contains("continue") && msg.contains("abort"), "{msg}");
    }

    #[test]
    fn throughput_thresholds_are_lower_bounds() {
        let plan = parse("name = \"x\"\n[slo]\ngoodput_qps = 12.5\n[[stage]]\nname = \"a\"\nqps = 1\nduration = \"1s\"\n").unwrap();
        assert_eq!(
            plan.slo_checks()[0],
            SloCheck {
                name: "goodput_qps".into(),
                limit: 12.5,
                bound: Bound::AtLeast
            }
        );
        let err = parse("name = \"x\"\n[slo]\ngoodput_qps = \"lots\"\n[[stage]]\nname = \"a\"\nqps = 1\nduration = \"1s\"\n").unwrap_err();
        assert_eq!(err.issues[0].field.as_deref(), Some("slo.goodput_qps"));
    }

    #[test]
    fn env_expansion_names_the_missing_variable() {
        let env = |k: &str| (k == "KEY").then(|| "sk-1".to_string());
        assert_eq!(expand_env("Bearer ${KEY}", env).unwrap(), "Bearer sk-1");
        assert!(expand_env("${NOPE}", env).unwrap_err().contains("NOPE"));
        assert_eq!(expand_env("plain", env).unwrap(), "plain");
    }

    #[test]
    fn redaction_hides_the_api_key() {
        let mut plan = parse(GOOD).unwrap();
        plan.target.api_key = Some("sk-secret".into());
        let text = plan.redacted_toml();
        assert!(!text.contains("sk-secret"));
        assert!(text.contains("<redacted>"));
        // What is written back parses again.
        parse(&text).unwrap();
    }
}
