//! `[target]`: the service under test, or the built-in simulator's settings.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::units::HumanDuration;

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

impl TargetPlan {
    /// The problems of `[target]` as (field, message).
    pub(crate) fn problems(&self) -> Vec<(&'static str, String)> {
        let mut p = Vec::new();
        if let Some(url) = &self.base_url
            && !(url.starts_with("http://") || url.starts_with("https://"))
        {
            p.push((
                "target.base_url",
                format!("expected an http:// or https:// URL such as http://127.0.0.1:8000/v1, got {url:?}"),
            ));
        }
        if self.base_url.is_some() && self.sim.is_some() {
            p.push((
                "target.sim",
                "applies only to the built-in simulator, which runs when target.base_url is not set".into(),
            ));
        }
        p
    }
}
