//! The test plan: its TOML schema, parsing with errors that name the file, line and field, and
//! its expansion into the steps that agents run.
//!
//! Parsing happens in two passes. Serde with `deny_unknown_fields` rejects unknown keys and
//! ill-typed values (a bad duration, a negative rate) and toml reports where; then
//! [`Plan::parse`] checks what spans several fields, returns every problem at once, and keeps
//! each stage in its validated form ([`Stage`], whose driver is one enum variant), from which
//! [`Plan::programs`] expands the steps.
//!
//! - `issue`: [`PlanIssue`] and [`PlanError`], located by line, column and field;
//! - `target`: `[target]`; `values`: token counts, rates and users; `slo`: thresholds;
//! - [`stage`]: a `[[stage]]` as written, validated and expanded; [`monitor`]: `[monitor]`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use toml::Spanned;

use crate::units::HumanDuration;

mod collect;
mod issue;
pub mod monitor;
#[cfg(test)]
mod one_pass_tests;
mod slo;
pub mod stage;
mod suggest;
mod target;
mod values;

pub use crate::workload::WorkloadPlan;
pub(crate) use issue::issue_at;
pub use issue::{PlanError, PlanIssue};
pub use monitor::MonitorPlan;
pub(crate) use slo::parse_slo;
pub use slo::{Bound, RATE_SLOS, STATS, SloCheck, THROUGHPUT_SLOS};
pub use stage::{
    ArrivalPlan, Load, Stage, StageDefaults, StageDriver, StagePlan, StageProgram, StepKind,
    StepPlan, StepsPlan,
};
pub use target::{ApiKind, TargetPlan};
pub use values::{Concurrency, Qps, TokenCount};

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

/// When a step's first requests stop the run: a target that refuses every request (a wrong
/// key, a wrong model name) makes no load test, only noise, and the message says why.
///
/// The run stops (exit 1) when the first `first_requests` requests of a step to finish, or all
/// of those that finished in its first `within` if fewer, all failed with one error class and
/// HTTP status, and that class is one of `errors`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AbortOnPlan {
    /// The error classes that stop the run this way; `[]` turns the rule off.
    #[serde(default = "default_abort_errors")]
    pub errors: Vec<String>,
    /// How many of a step's first requests are judged.
    #[serde(default = "default_abort_first_requests")]
    pub first_requests: u32,
    /// Judge what finished by then when fewer requests did.
    #[serde(default = "default_abort_within")]
    pub within: HumanDuration,
}

impl Default for AbortOnPlan {
    fn default() -> Self {
        AbortOnPlan {
            errors: default_abort_errors(),
            first_requests: default_abort_first_requests(),
            within: default_abort_within(),
        }
    }
}

fn default_abort_errors() -> Vec<String> {
    vec!["http_4xx".to_string()]
}
fn default_abort_first_requests() -> u32 {
    10
}
fn default_abort_within() -> HumanDuration {
    HumanDuration(Duration::from_secs(2))
}

impl AbortOnPlan {
    /// Its problems, as (field, message).
    fn problems(&self) -> Vec<(String, String)> {
        let known = crate::error_sample::ERROR_CLASSES;
        let mut out = Vec::new();
        for (i, class) in self.errors.iter().enumerate() {
            if !known.contains(&class.as_str()) {
                out.push((
                    format!("abort_on.errors[{i}]"),
                    format!(
                        "unknown error class {class:?}: expected one of {}",
                        known.join(", ")
                    ),
                ));
            }
        }
        if self.first_requests == 0 {
            out.push((
                "abort_on.first_requests".into(),
                "must be at least 1 (to turn the rule off, set abort_on.errors = [])".into(),
            ));
        }
        if self.within.0.is_zero() {
            out.push((
                "abort_on.within".into(),
                "must be above 0 (to turn the rule off, set abort_on.errors = [])".into(),
            ));
        }
        out
    }
}

/// The whole plan, as written.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Plan {
    /// Required; a default here only lets the rest of the plan be checked when it is missing.
    #[serde(default)]
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
    /// When a step's first requests, all failing alike, stop the run.
    #[serde(default)]
    pub abort_on: AbortOnPlan,
    /// The plan file's folder, against which its relative paths (traces) are read.
    #[serde(skip)]
    pub dir: PathBuf,
    /// The stages validated by [`Plan::parse`], one per `[[stage]]`: what [`Plan::programs`]
    /// expands. `stages` stays as written, for the copy in the results folder.
    #[serde(skip)]
    resolved: Vec<Stage>,
    /// The index as written of each stage in `stages`, which differ when stages were left out
    /// for a problem, so that every problem names the stage the file has there.
    #[serde(skip)]
    stage_numbers: Vec<usize>,
}

fn default_interval() -> HumanDuration {
    HumanDuration(Duration::from_secs(1))
}
fn default_grace() -> HumanDuration {
    HumanDuration(Duration::from_secs(5))
}

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
    /// Every problem is reported at once, in file order: syntax, types (unknown fields and
    /// values with a "did you mean"), then what spans several fields; see `collect` for what
    /// one problem may hide.
    ///
    /// # Errors
    /// A [`PlanError`] with every problem found.
    pub fn parse(text: &str, file: &Path) -> Result<Plan, PlanError> {
        let mut read = collect::read::<Plan>(text);
        let mut issues = std::mem::take(&mut read.issues);
        let mut plan = read.value.take();
        if let Some(plan) = &mut plan {
            plan.dir = file.parent().map(Path::to_path_buf).unwrap_or_default();
            plan.stage_numbers = (plan.stages.iter().enumerate())
                .map(|(i, s)| read.written.index_in("stage", &s.span()).unwrap_or(i))
                .collect();
            let (checks, stages) = plan.resolve(text);
            issues.extend(
                (checks.into_iter())
                    .filter(|i| !read.hides(i))
                    .map(|i| relocate(text, &read.written, i)),
            );
            plan.resolved = stages;
        }
        match plan {
            Some(plan) if issues.is_empty() => Ok(plan),
            _ => {
                // Stable: the problems of one line keep the order they were found in.
                issues.sort_by_key(|i| (i.line, i.column));
                Err(PlanError {
                    file: file.to_path_buf(),
                    issues,
                })
            }
        }
    }

    /// Every problem that spans fields, with its location in `text`.
    pub fn validate(&self, text: &str) -> Vec<PlanIssue> {
        self.resolve(text).0
    }

    /// Every problem, with its location in `text`, and the stages validated (all of them when
    /// there is no problem).
    fn resolve(&self, text: &str) -> (Vec<PlanIssue>, Vec<Stage>) {
        let mut issues = self.top_level_issues();
        for p in self.workload.problems(&self.dir) {
            let mut issue = match &p.span {
                Some(span) => issue_at(text, span, &p.message),
                None => whole(&p.field, p.message.clone()),
            };
            issue.field = Some(p.field);
            issues.push(issue);
        }
        let stages = self.resolve_stages(text, &mut issues);
        for (name, value) in &self.slo {
            if let Err(message) = parse_slo(name, value.get_ref()) {
                let mut issue = issue_at(text, &value.span(), &message);
                issue.field = Some(format!("slo.{name}"));
                issues.push(issue);
            }
        }
        (issues, stages)
    }

    /// The problems of the plan's own fields: name, interval, target, monitor and agents.
    fn top_level_issues(&self) -> Vec<PlanIssue> {
        let mut issues = Vec::new();
        if self.name.trim().is_empty() {
            issues.push(whole(
                "name",
                "is required and must not be empty: it names the results folder, such as name = \"nightly\"".into(),
            ));
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
        issues.extend(self.target.problems().into_iter().map(|(f, m)| whole(f, m)));
        issues.extend(self.monitor.validate());
        issues.extend(
            (self.abort_on.problems().into_iter()).map(|(field, message)| whole(&field, message)),
        );
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
        issues
    }

    /// Validates each stage, pushing its problems (located at the stage) to `issues`.
    fn resolve_stages(&self, text: &str, issues: &mut Vec<PlanIssue>) -> Vec<Stage> {
        let plan_checks = self.slo_checks();
        let defaults = self.stage_defaults(&plan_checks);
        let mut names = BTreeMap::new();
        let mut stages = Vec::with_capacity(self.stages.len());
        for (i, stage) in self.stages.iter().enumerate() {
            let span = stage.span();
            // As written: a stage left out for a type error before it does not shift the rest.
            let n = self.stage_numbers.get(i).copied().unwrap_or(i);
            let at = |field: &str, message: &str| {
                let mut issue = issue_at(text, &span, message);
                issue.field = Some(format!("stage[{n}].{field}"));
                issue
            };
            let s = stage.get_ref();
            if let Some(first) = names.insert(s.name.clone(), n) {
                issues.push(at(
                    "name",
                    &format!("{:?} is already the name of stage[{first}]", s.name),
                ));
            }
            match s.resolve(&defaults) {
                Ok(resolved) => stages.push(resolved),
                Err(problems) => {
                    issues.extend(problems.iter().map(|(field, message)| at(field, message)));
                }
            }
        }
        stages
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

    /// The stages as [`Plan::parse`] validated them, in order.
    pub fn resolved_stages(&self) -> &[Stage] {
        &self.resolved
    }

    /// What the runner does for each stage, in order. Every file a stage needs was read when
    /// the plan was parsed, so this cannot fail.
    pub fn programs(&self) -> Vec<StageProgram> {
        (self.resolved.iter().enumerate())
            .map(|(i, s)| s.program(i))
            .collect()
    }

    /// Multiplies every stage duration by `factor`, so a long plan runs quickly (`--time-scale`).
    /// The stages as written are scaled too: they are the plan the results folder records.
    pub fn scale_time(&mut self, factor: f64) {
        for stage in &mut self.resolved {
            stage.scale_time(factor);
        }
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

/// A meaning check's issue, placed where its field is written (or the nearest table above it
/// that is) when it had no line, or only its stage's header.
fn relocate(text: &str, written: &collect::Written, issue: PlanIssue) -> PlanIssue {
    let Some(field) = &issue.field else {
        return issue;
    };
    let Some(span) = written.span_of(field) else {
        return issue;
    };
    let at = issue_at(text, &span, "");
    if issue.line == 0 || at.line > issue.line {
        PlanIssue {
            line: at.line,
            column: at.column,
            ..issue
        }
    } else {
        issue
    }
}

/// An issue of the whole file (no line), with its field.
fn whole(field: &str, message: String) -> PlanIssue {
    PlanIssue {
        line: 0,
        column: 0,
        field: Some(field.to_string()),
        message,
    }
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
    fn abort_on_has_a_default_and_checks_its_values() {
        let stage = "[[stage]]\nname = \"a\"\nqps = 1\nduration = \"1s\"\n";
        let plan = parse(&format!("name = \"x\"\n{stage}")).unwrap();
        assert_eq!(plan.abort_on.errors, ["http_4xx"]);
        assert_eq!(plan.abort_on.first_requests, 10);
        assert_eq!(plan.abort_on.within.0, Duration::from_secs(2));
        let off = parse(&format!("name = \"x\"\n[abort_on]\nerrors = []\n{stage}")).unwrap();
        assert!(off.abort_on.errors.is_empty());
        assert_eq!(off.abort_on.first_requests, 10);
        let set = "[abort_on]\nerrors = [\"http_4xx\", \"connect\"]\nfirst_requests = 3\nwithin = \"500ms\"\n";
        let plan = parse(&format!("name = \"x\"\n{set}{stage}")).unwrap();
        assert_eq!(plan.abort_on.errors, ["http_4xx", "connect"]);
        assert_eq!(plan.abort_on.first_requests, 3);
        assert_eq!(plan.abort_on.within.0, Duration::from_millis(500));
        let bad = "[abort_on]\nerrors = [\"http_4xx\", \"http4xx\"]\nfirst_requests = 0\nwithin = \"0s\"\n";
        let err = parse(&format!("name = \"x\"\n{bad}{stage}")).unwrap_err();
        let fields: Vec<_> = err.issues.iter().filter_map(|i| i.field.clone()).collect();
        assert_eq!(
            fields,
            [
                "abort_on.errors[1]",
                "abort_on.first_requests",
                "abort_on.within"
            ],
            "{err}"
        );
        assert!(err.issues[0].message.contains("\"http4xx\""), "{err}");
        assert!(
            err.issues[0].message.contains("http_4xx, http_5xx"),
            "{err}"
        );
        // A field it does not have is named, at its line.
        let (msg, issue) = one_issue(&format!("name = \"x\"\n[abort_on]\nfirst = 3\n{stage}"));
        assert_eq!(issue.line, 3, "{msg}");
        assert!(msg.contains("first"), "{msg}");
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
