//! The plan's `[monitor]` table: what is sampled beside the load (GPUs through NVML, the host,
//! the target process, the server's Prometheus metrics), where, and the client-saturation guard.
//!
//! Values that can be checked alone are checked while deserializing, so toml reports their line
//! and column; [`MonitorPlan::validate`] adds what needs several fields.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::PlanIssue;
use crate::units::{Fraction, HumanDuration};

/// Whether each agent samples its host's GPUs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum GpuMode {
    /// Through NVML (`libnvidia-ml`); a host without it says so once and the run goes on.
    #[default]
    Nvml,
    Off,
}

/// Where the server's Prometheus metrics are scraped.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum ServerMetrics {
    /// The built-in simulator's `/metrics`, or `/metrics` beside the target's base URL.
    #[default]
    Auto,
    Off,
    /// These endpoints, for example a server's `/metrics` and a DCGM exporter's.
    Urls(Vec<String>),
}

impl ServerMetrics {
    /// The endpoints for a target at `base_url` (such as `http://host:8000/v1`): the given ones,
    /// none, or for `auto` the same scheme, host and port with the path `/metrics`.
    pub fn urls(&self, base_url: &str) -> Vec<String> {
        match self {
            ServerMetrics::Off => Vec::new(),
            ServerMetrics::Urls(urls) => urls.clone(),
            ServerMetrics::Auto => metrics_url_beside(base_url).into_iter().collect(),
        }
    }
}

/// `scheme://authority/metrics` of a base URL, or `None` when it is not an http(s) URL.
pub fn metrics_url_beside(base_url: &str) -> Option<String> {
    let (scheme, rest) = base_url.split_once("://")?;
    if scheme != "http" && scheme != "https" {
        return None;
    }
    let authority = rest.split('/').next().filter(|a| !a.is_empty())?;
    Some(format!("{scheme}://{authority}/metrics"))
}

const SERVER_METRICS_EXPECTED: &str = "expected \"auto\", \"off\", an http:// or https:// URL such as \"http://127.0.0.1:8000/metrics\", or a list of URLs";

fn check_url(url: &str) -> Result<String, String> {
    if (url.starts_with("http://") || url.starts_with("https://")) && url.len() > "http://".len() {
        Ok(url.to_string())
    } else {
        Err(format!("{SERVER_METRICS_EXPECTED}, got {url:?}"))
    }
}

impl<'de> Deserialize<'de> for ServerMetrics {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            One(String),
            Many(Vec<String>),
        }
        let raw =
            Raw::deserialize(d).map_err(|_| serde::de::Error::custom(SERVER_METRICS_EXPECTED))?;
        let parsed = match raw {
            Raw::One(s) if s == "auto" => Ok(ServerMetrics::Auto),
            Raw::One(s) if s == "off" => Ok(ServerMetrics::Off),
            Raw::One(s) => check_url(&s).map(|u| ServerMetrics::Urls(vec![u])),
            Raw::Many(list) if list.is_empty() => Ok(ServerMetrics::Off),
            Raw::Many(list) => list
                .iter()
                .map(|u| check_url(u))
                .collect::<Result<Vec<_>, _>>()
                .map(ServerMetrics::Urls),
        };
        parsed.map_err(serde::de::Error::custom)
    }
}

impl Serialize for ServerMetrics {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            ServerMetrics::Auto => s.serialize_str("auto"),
            ServerMetrics::Off => s.serialize_str("off"),
            ServerMetrics::Urls(urls) => urls.serialize(s),
        }
    }
}

/// A Prometheus series name: `[a-zA-Z_:][a-zA-Z0-9_:]*`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct SeriesName(pub String);

/// True when `name` is a valid Prometheus metric name.
pub fn is_series_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

impl<'de> Deserialize<'de> for SeriesName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let name = String::deserialize(d)?;
        if is_series_name(&name) {
            Ok(SeriesName(name))
        } else {
            Err(serde::de::Error::custom(format!(
                "expected a Prometheus series name such as \"vllm:num_requests_swapped\" (letters, digits, _ and :), got {name:?}"
            )))
        }
    }
}

/// The process serving the model, when it runs on an agent's host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TargetProcess {
    Pid(u32),
    /// Matched against process names (as `ps -e` shows them) on the agent's host.
    Name(String),
}

impl fmt::Display for TargetProcess {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TargetProcess::Pid(p) => write!(f, "pid {p}"),
            TargetProcess::Name(n) => write!(f, "{n:?}"),
        }
    }
}

impl<'de> Deserialize<'de> for TargetProcess {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Pid(i64),
            Name(String),
        }
        let expected = "expected a process id such as 4242 or a process name such as \"vllm\"";
        match Raw::deserialize(d).map_err(|_| serde::de::Error::custom(expected))? {
            Raw::Pid(p) => match u32::try_from(p) {
                Ok(pid) if pid > 0 => Ok(TargetProcess::Pid(pid)),
                _ => Err(serde::de::Error::custom(format!("{expected}, got {p}"))),
            },
            Raw::Name(n) if !n.trim().is_empty() => Ok(TargetProcess::Name(n)),
            Raw::Name(n) => Err(serde::de::Error::custom(format!("{expected}, got {n:?}"))),
        }
    }
}

impl Serialize for TargetProcess {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            TargetProcess::Pid(p) => s.serialize_u32(*p),
            TargetProcess::Name(n) => s.serialize_str(n),
        }
    }
}

/// The `[monitor]` table.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MonitorPlan {
    /// `"nvml"` (default) or `"off"`.
    #[serde(default)]
    pub gpu: GpuMode,
    /// `"auto"` (default), `"off"`, a URL or a list of URLs.
    #[serde(default)]
    pub server_metrics: ServerMetrics,
    /// Series kept besides the known ones, by name.
    #[serde(default)]
    pub series: Vec<SeriesName>,
    /// The target's process on the agents' host; by default the simulator when the controller
    /// started it.
    pub target_process: Option<TargetProcess>,
    /// Time between samples; by default the plan's interval.
    pub interval: Option<HumanDuration>,
    /// An interval in which an agent's process uses more than this share of its host's cores
    /// is marked client-bound.
    #[serde(default = "default_client_cpu_limit")]
    pub client_cpu_limit: Fraction,
    /// An interval whose schedule lag p99 passes this is marked client-bound.
    #[serde(default = "default_client_lag_limit")]
    pub client_lag_limit: HumanDuration,
    /// Monitor-only agents (`HOST:PORT`): they sample their host and send no request, such as
    /// an agent on the model server's host when the load comes from elsewhere.
    #[serde(default)]
    pub agents: Vec<String>,
}

/// The default CPU limit of the saturation guard: 85% of the agent host's cores.
pub const DEFAULT_CLIENT_CPU_LIMIT: f64 = 0.85;
/// The default schedule-lag limit of the saturation guard.
pub const DEFAULT_CLIENT_LAG_LIMIT: Duration = Duration::from_millis(25);

fn default_client_cpu_limit() -> Fraction {
    Fraction(DEFAULT_CLIENT_CPU_LIMIT)
}
fn default_client_lag_limit() -> HumanDuration {
    HumanDuration(DEFAULT_CLIENT_LAG_LIMIT)
}

impl Default for MonitorPlan {
    fn default() -> Self {
        MonitorPlan {
            gpu: GpuMode::default(),
            server_metrics: ServerMetrics::default(),
            series: Vec::new(),
            target_process: None,
            interval: None,
            client_cpu_limit: default_client_cpu_limit(),
            client_lag_limit: default_client_lag_limit(),
            agents: Vec::new(),
        }
    }
}

impl MonitorPlan {
    /// Problems that span fields or need more than one value's own check.
    pub fn validate(&self) -> Vec<PlanIssue> {
        let mut issues = Vec::new();
        let mut whole = |field: &str, message: String| {
            issues.push(PlanIssue {
                line: 0,
                column: 0,
                field: Some(format!("monitor.{field}")),
                message,
            });
        };
        if let Some(d) = self.interval
            && d.0 < Duration::from_millis(100)
        {
            whole("interval", format!("must be at least 100ms, got {d}"));
        }
        if self.client_cpu_limit.0 <= 0.0 {
            whole(
                "client_cpu_limit",
                "must be above 0%, such as \"85%\"".into(),
            );
        }
        if self.client_lag_limit.0.is_zero() {
            whole(
                "client_lag_limit",
                "must be longer than 0s, such as \"25ms\"".into(),
            );
        }
        for (i, a) in self.agents.iter().enumerate() {
            if a.trim().is_empty() || a.contains(char::is_whitespace) {
                whole(
                    &format!("agents[{i}]"),
                    format!(
                        "expected an agent address HOST:PORT such as \"10.0.0.5:7070\", got {a:?}"
                    ),
                );
            }
        }
        issues
    }

    /// The sampling interval, given the plan's report interval.
    pub fn sample_interval(&self, report_interval: Duration) -> Duration {
        self.interval.map_or(report_interval, |d| d.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::Plan;
    use std::path::Path;

    fn plan(monitor: &str) -> Result<Plan, crate::plan::PlanError> {
        let text = format!(
            "name = \"m\"\n\n[monitor]\n{monitor}\n\n[[stage]]\nname = \"a\"\nqps = 1\nduration = \"1s\"\n"
        );
        Plan::parse(&text, Path::new("plan.toml"))
    }

    #[test]
    fn defaults_sample_gpus_and_the_servers_own_metrics() {
        let p = Plan::parse(
            "name = \"m\"\n[[stage]]\nname = \"a\"\nqps = 1\nduration = \"1s\"\n",
            Path::new("plan.toml"),
        )
        .unwrap();
        let m = &p.monitor;
        assert_eq!(m.gpu, GpuMode::Nvml);
        assert_eq!(m.server_metrics, ServerMetrics::Auto);
        assert_eq!(m.client_cpu_limit.0, 0.85);
        assert_eq!(m.client_lag_limit.0, Duration::from_millis(25));
        assert_eq!(
            m.server_metrics.urls("http://10.1.2.3:8000/v1"),
            vec!["http://10.1.2.3:8000/metrics".to_string()]
        );
        assert_eq!(
            m.sample_interval(Duration::from_secs(1)),
            Duration::from_secs(1)
        );
    }

    #[test]
    fn every_field_reads() {
        let p = plan(
            "gpu = \"off\"\nserver_metrics = [\"http://a:8000/metrics\", \"http://a:9400/metrics\"]\nseries = [\"vllm:num_requests_swapped\", \"DCGM_FI_DEV_SM_CLOCK\"]\ntarget_process = \"vllm\"\ninterval = \"500ms\"\nclient_cpu_limit = \"90%\"\nclient_lag_limit = \"10ms\"\nagents = [\"10.0.0.5:7070\"]",
        )
        .unwrap();
        let m = &p.monitor;
        assert_eq!(m.gpu, GpuMode::Off);
        assert_eq!(m.server_metrics.urls("http://x/v1").len(), 2);
        assert_eq!(m.series[0].0, "vllm:num_requests_swapped");
        assert_eq!(m.target_process, Some(TargetProcess::Name("vllm".into())));
        assert_eq!(m.client_cpu_limit.0, 0.9);
        assert_eq!(m.agents, vec!["10.0.0.5:7070".to_string()]);
        let pid = plan("target_process = 4242\nserver_metrics = \"off\"").unwrap();
        assert_eq!(pid.monitor.target_process, Some(TargetProcess::Pid(4242)));
        assert!(pid.monitor.server_metrics.urls("http://x/v1").is_empty());
        // What is written to the results folder reads back the same.
        let again = Plan::parse(&p.redacted_toml(), Path::new("plan.toml")).unwrap();
        assert_eq!(again.monitor.server_metrics, m.server_metrics);
        assert_eq!(again.monitor.target_process, m.target_process);
        assert_eq!(again.monitor.client_cpu_limit, m.client_cpu_limit);
    }

    #[test]
    fn bad_values_name_their_line_and_field() {
        for (body, field, words) in [
            ("gpu = \"cuda\"", "monitor.gpu", "unknown variant"),
            (
                "server_metrics = \"localhost:8000\"",
                "monitor.server_metrics",
                "http://",
            ),
            (
                "series = [\"bad name\"]",
                "monitor.series",
                "Prometheus series name",
            ),
            (
                "target_process = -3",
                "monitor.target_process",
                "process id",
            ),
            (
                "client_cpu_limit = \"120%\"",
                "monitor.client_cpu_limit",
                "percentage",
            ),
            (
                "client_lag_limit = \"soon\"",
                "monitor.client_lag_limit",
                "duration such as",
            ),
            ("sample = 1", "monitor.sample", "unknown field"),
        ] {
            let err = plan(body).unwrap_err();
            let msg = err.to_string();
            assert_eq!(err.issues[0].line, 4, "{body}: {msg}");
            assert_eq!(err.issues[0].field.as_deref(), Some(field), "{body}: {msg}");
            assert!(msg.contains(words), "{body}: {msg}");
        }
    }

    #[test]
    fn cross_field_problems_are_all_reported() {
        let err = plan(
            "interval = \"10ms\"\nclient_cpu_limit = 0\nclient_lag_limit = \"0s\"\nagents = [\"\"]",
        )
        .unwrap_err();
        let fields: Vec<_> = err.issues.iter().filter_map(|i| i.field.clone()).collect();
        for f in [
            "monitor.interval",
            "monitor.client_cpu_limit",
            "monitor.client_lag_limit",
            "monitor.agents[0]",
        ] {
            assert!(fields.contains(&f.to_string()), "{f} missing from {err}");
        }
    }

    #[test]
    fn metrics_beside_a_base_url() {
        assert_eq!(
            metrics_url_beside("https://h:8443/openai/v1").as_deref(),
            Some("https://h:8443/metrics")
        );
        assert_eq!(metrics_url_beside("ftp://h/v1"), None);
        assert!(is_series_name("vllm:num_requests_running"));
        assert!(is_series_name("DCGM_FI_DEV_GPU_UTIL"));
        assert!(!is_series_name("1abc"));
        assert!(!is_series_name(""));
    }
}
