//! The service under test: the plan's URL, or the built-in simulator started for the run; and
//! the check, before any stage, that it answers.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use stampede_common::plan::TargetPlan;
use stampede_common::units::{error_chain, format_duration, parse_duration};

use crate::children::{ChildGuard, sibling_binary, spawn_listening};

/// Where requests go, and the simulator process when the controller started one.
#[derive(Debug)]
pub struct ResolvedTarget {
    pub base_url: String,
    pub simulator: Option<ChildGuard>,
}

/// Starts the simulator when the plan gives no URL. Its `[target.sim]` table is written to
/// `sim.toml` in the results folder and passed with `--config`; the plan file itself goes with
/// `--config-plan`, so that a bad setting is reported at the plan's line and field.
///
/// # Errors
/// When the simulator cannot be started or its settings cannot be written.
pub async fn resolve(
    target: &TargetPlan,
    plan_file: &Path,
    results_dir: &Path,
    time_scale: f64,
) -> anyhow::Result<ResolvedTarget> {
    if let Some(url) = &target.base_url {
        return Ok(ResolvedTarget {
            base_url: url.trim_end_matches('/').to_string(),
            simulator: None,
        });
    }
    let binary = sibling_binary("sim", "STAMPEDE_SIM_BIN")?;
    let mut args = Vec::new();
    if let Some(table) = &target.sim {
        let path = results_dir.join("sim.toml");
        let table = scale_fault_schedule(table, time_scale);
        let text =
            toml::to_string_pretty(&table).context("cannot write the [target.sim] settings")?;
        std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
        args.push("--config".to_string());
        args.push(path.display().to_string());
        args.push("--config-plan".to_string());
        args.push(plan_file.display().to_string());
    }
    // The simulator's pacer spins before each token for precise timing, which on a machine of
    // 2 or 3 cores takes CPU the agent needs; there its tokens leave about 0.1 ms late instead.
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    let spin_set = target
        .sim
        .as_ref()
        .is_some_and(|t| t.contains_key("timer_spin"));
    if cores < 4 && !spin_set {
        args.push("--timer-spin".to_string());
        args.push("0s".to_string());
    }
    let sim = spawn_listening("simulator", &binary, &args).await?;
    Ok(ResolvedTarget {
        base_url: format!("http://{}/v1", sim.addr),
        simulator: Some(sim),
    })
}

/// What the target said when asked for its models.
#[derive(Debug, Clone)]
pub struct Preflight {
    pub model: String,
    /// The raw `/models` answer, for the manifest.
    pub models: serde_json::Value,
}

/// Asks `GET {base_url}/models`, so that an unreachable target is reported before any stage
/// runs, and picks the model: the plan's, or the first one listed.
///
/// # Errors
/// With the URL and the cause when the target cannot be reached or refuses the key, or when no
/// model is named and none is listed.
pub async fn preflight(
    base_url: &str,
    model: Option<&str>,
    api_key: Option<&str>,
    connect_timeout: Duration,
) -> anyhow::Result<Preflight> {
    let url = format!("{base_url}/models");
    let client = reqwest::Client::builder()
        .connect_timeout(connect_timeout)
        .timeout(connect_timeout + Duration::from_secs(20))
        .build()
        .context("cannot build an HTTP client")?;
    let mut req = client.get(&url);
    if let Some(key) = api_key.filter(|k| !k.is_empty()) {
        req = req.bearer_auth(key);
    }
    let resp = req.send().await.map_err(|e| {
        anyhow!(
            "target {base_url} is unreachable: GET {url}: {}",
            error_chain(&e)
        )
    })?;
    let status = resp.status();
    if status == reqwest::StatusCode::UNAUTHORIZED || status == reqwest::StatusCode::FORBIDDEN {
        bail!(
            "target {base_url} refused the request: GET {url} answered {status}; check target.api_key"
        );
    }
    let models: serde_json::Value = if status.is_success() {
        resp.json().await.unwrap_or(serde_json::Value::Null)
    } else {
        serde_json::Value::Null
    };
    let listed = models["data"][0]["id"].as_str().map(str::to_string);
    let model = match (model, listed) {
        (Some(m), _) => m.to_string(),
        (None, Some(first)) => first,
        (None, None) => bail!(
            "no model named in the plan and GET {url} listed none (it answered {status}); set target.model"
        ),
    };
    Ok(Preflight { model, models })
}

/// Scales the schedule of the simulator's faults (`at`, `duration`) with the plan's time scale,
/// so an outage lands at the same point of a quick run as of the full one.
pub fn scale_fault_schedule(table: &toml::Table, factor: f64) -> toml::Table {
    let mut table = table.clone();
    if factor == 1.0 {
        return table;
    }
    if let Some(toml::Value::Array(faults)) = table.get_mut("faults") {
        for fault in faults.iter_mut() {
            let toml::Value::Table(f) = fault else {
                continue;
            };
            for key in ["at", "duration"] {
                if let Some(toml::Value::String(text)) = f.get_mut(key)
                    && let Ok(d) = parse_duration(text)
                {
                    *text = format_duration(d.mul_f64(factor));
                }
            }
        }
    }
    table
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fault_schedules_scale_with_the_plan() {
        let table: toml::Table = toml::from_str(
            "preset = \"deterministic\"\n[[faults]]\nkind = \"outage\"\nat = \"20s\"\nduration = \"10s\"\n[[faults]]\nkind = \"stall\"\nrate = 0.1\nstall = \"2s\"\n",
        )
        .unwrap();
        let scaled = scale_fault_schedule(&table, 0.1);
        let faults = scaled["faults"].as_array().unwrap();
        assert_eq!(faults[0]["at"].as_str(), Some("2s"));
        assert_eq!(faults[0]["duration"].as_str(), Some("1s"));
        assert_eq!(
            faults[1]["stall"].as_str(),
            Some("2s"),
            "request-level delays are not scaled"
        );
    }
}
