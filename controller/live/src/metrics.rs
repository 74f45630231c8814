//! `--metrics-listen ADDR`: the live stats in Prometheus' text format at `/metrics`, for a
//! Prometheus server to scrape and Grafana to chart (examples/grafana-dashboard.json).
//!
//! A scrape reads the hub's current state (a `watch` channel): it never waits on the run.

use std::net::SocketAddr;

use anyhow::Context;
use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use stampede_prom::{CONTENT_TYPE, Exposition, MetricKind};
use tokio::net::TcpListener;

use crate::alerts::AlertKind;
use crate::hub::LiveHub;
use crate::state::{LiveState, Percentiles};

/// Serves `/metrics` on `addr` for as long as the process lives; returns the bound address.
///
/// # Errors
/// When the address cannot be bound.
pub async fn serve(addr: SocketAddr, hub: LiveHub) -> anyhow::Result<SocketAddr> {
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr} for --metrics-listen"))?;
    let bound = listener
        .local_addr()
        .context("cannot read the metrics address")?;
    let app = Router::new().route("/metrics", get(scrape)).with_state(hub);
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok(bound)
}

async fn scrape(State(hub): State<LiveHub>) -> impl IntoResponse {
    let state = hub.state().borrow().clone();
    let text = render(&state, hub.watchers(), hub.missed());
    ([(header::CONTENT_TYPE, CONTENT_TYPE)], text)
}

/// The live stats of `st` in the text format.
pub fn render(st: &LiveState, watchers: usize, missed: u64) -> String {
    let mut f = Exposition::new();
    let run = st.run.clone().unwrap_or_default();
    f.family(
        "stampede_run_info",
        MetricKind::Gauge,
        "The run: plan, target and model (always 1).",
    );
    f.sample(
        "stampede_run_info",
        &[
            ("plan", &run.plan),
            ("target", &run.target),
            ("model", &run.model),
        ],
        1.0,
    );
    f.family(
        "stampede_running",
        MetricKind::Gauge,
        "1 while the run goes, 0 once it ended.",
    );
    f.sample(
        "stampede_running",
        &[],
        if st.ended.is_some() { 0.0 } else { 1.0 },
    );
    f.family(
        "stampede_elapsed_seconds",
        MetricKind::Gauge,
        "Seconds since the run's first step, at the end of the latest interval.",
    );
    f.sample("stampede_elapsed_seconds", &[], st.elapsed_s());

    if let Some(step) = &st.step {
        let labels = [("step", step.name.as_str()), ("stage", step.stage.as_str())];
        f.family(
            "stampede_step_info",
            MetricKind::Gauge,
            "The step sending now (always 1).",
        );
        f.sample("stampede_step_info", &labels, 1.0);
        if let Some((done, left)) = st.step_progress() {
            f.family(
                "stampede_step_remaining_seconds",
                MetricKind::Gauge,
                "Seconds left in the step sending now.",
            );
            f.sample("stampede_step_remaining_seconds", &labels, left);
            f.family(
                "stampede_step_elapsed_seconds",
                MetricKind::Gauge,
                "Seconds done of the step sending now.",
            );
            f.sample("stampede_step_elapsed_seconds", &labels, done);
        }
        f.family(
            "stampede_rate_scale",
            MetricKind::Gauge,
            "Factor on the planned rate of the step sending now (0 while paused).",
        );
        f.sample("stampede_rate_scale", &labels, st.scale);
    }

    if let Some(last) = &st.last {
        let r = &last.row;
        let step = [("step", r.step.as_str())];
        let gauges: [(&str, &str, Option<f64>); 5] = [
            (
                "stampede_offered_qps",
                "Offered rate of the latest interval, requests/s (absent for a closed loop).",
                r.offered_qps,
            ),
            (
                "stampede_achieved_qps",
                "Requests sent per second in the latest interval.",
                Some(r.achieved_qps),
            ),
            (
                "stampede_completed_rps",
                "Requests completed per second in the latest interval.",
                Some(r.completed_rps),
            ),
            (
                "stampede_in_flight",
                "Requests in flight at the end of the latest interval.",
                Some(r.in_flight as f64),
            ),
            (
                "stampede_output_tokens_per_second",
                "Output tokens received per second in the latest interval.",
                Some(r.output_tokens_per_s),
            ),
        ];
        for (name, help, v) in gauges {
            if let Some(v) = v {
                f.family(name, MetricKind::Gauge, help);
                f.sample(name, &step, v);
            }
        }
        f.family(
            "stampede_latency_ms",
            MetricKind::Gauge,
            "Latency percentiles in milliseconds, over the step's last 10 s (window=\"10s\") and the step so far (window=\"step\"), from merged histograms.",
        );
        for (window, lat) in [("10s", &last.window), ("step", &last.step)] {
            for (metric, p) in [("ttft", &lat.ttft), ("itl", &lat.itl), ("e2e", &lat.e2e)] {
                latency(&mut f, &r.step, window, metric, p);
            }
        }
        f.family(
            "stampede_schedule_lag_p99_ms",
            MetricKind::Gauge,
            "Schedule lag p99 of the latest interval in milliseconds: the client's own delay.",
        );
        f.sample("stampede_schedule_lag_p99_ms", &step, r.schedule_lag_p99_ms);
        f.family(
            "stampede_client_bound",
            MetricKind::Gauge,
            "1 when the saturation guard marked the latest interval client-bound.",
        );
        f.sample(
            "stampede_client_bound",
            &step,
            if r.client_bound { 1.0 } else { 0.0 },
        );
        let resources: [(&str, &str, Option<f64>); 6] = [
            (
                "stampede_gpu_util_percent",
                "Mean GPU utilisation, percent.",
                r.gpu_util_pct,
            ),
            (
                "stampede_gpu_memory_used_bytes",
                "GPU memory used, summed over the GPUs.",
                r.gpu_mem_used_bytes,
            ),
            (
                "stampede_host_cpu_percent",
                "Mean CPU of the load agents' hosts, percent of their cores.",
                r.host_cpu_pct,
            ),
            (
                "stampede_host_memory_percent",
                "Mean memory used on the load agents' hosts, percent.",
                r.host_mem_pct,
            ),
            (
                "stampede_kv_cache_usage_percent",
                "The server's KV-cache usage, percent.",
                r.kv_cache_usage_pct,
            ),
            (
                "stampede_server_waiting_requests",
                "Requests waiting in the server's queue.",
                r.server_waiting,
            ),
        ];
        for (name, help, v) in resources {
            if let Some(v) = v {
                f.family(name, MetricKind::Gauge, help);
                f.sample(name, &[], v);
            }
        }
        if !last.agents.is_empty() {
            f.family(
                "stampede_agent_schedule_lag_p99_ms",
                MetricKind::Gauge,
                "Each agent's own schedule lag p99 in the latest interval, milliseconds.",
            );
            for a in &last.agents {
                if let Some(v) = a.schedule_lag_p99_ms {
                    f.sample(
                        "stampede_agent_schedule_lag_p99_ms",
                        &[("agent", &a.agent)],
                        v,
                    );
                }
            }
            f.family(
                "stampede_agent_cpu_percent",
                MetricKind::Gauge,
                "Each agent process's CPU, percent of its host's cores.",
            );
            for a in &last.agents {
                if let Some(v) = a.cpu_pct {
                    f.sample("stampede_agent_cpu_percent", &[("agent", &a.agent)], v);
                }
            }
            f.family(
                "stampede_agent_lost",
                MetricKind::Gauge,
                "1 when the agent's share of the step failed.",
            );
            for a in &last.agents {
                let lost = if a.lost.is_some() { 1.0 } else { 0.0 };
                f.sample("stampede_agent_lost", &[("agent", &a.agent)], lost);
            }
        }
    }

    if !st.totals.is_empty() {
        f.family(
            "stampede_requests_total",
            MetricKind::Counter,
            "Requests of each step by outcome: sent, completed, failed, timeouts, dropped.",
        );
        for (step, t) in &st.totals {
            for (outcome, n) in [
                ("sent", t.sent),
                ("completed", t.completed),
                ("failed", t.failed),
                ("timeouts", t.timeouts),
                ("dropped", t.dropped),
            ] {
                f.sample(
                    "stampede_requests_total",
                    &[("step", step), ("outcome", outcome)],
                    n as f64,
                );
            }
        }
        f.family(
            "stampede_output_tokens_total",
            MetricKind::Counter,
            "Output tokens received by each step.",
        );
        for (step, t) in &st.totals {
            f.sample(
                "stampede_output_tokens_total",
                &[("step", step)],
                t.output_tokens as f64,
            );
        }
    }
    if let Some(last) = &st.last
        && !last.step_errors.is_empty()
    {
        f.family(
            "stampede_errors_total",
            MetricKind::Counter,
            "Failed requests of the step sending now, by error class.",
        );
        for (class, n) in &last.step_errors {
            f.sample(
                "stampede_errors_total",
                &[("step", &last.row.step), ("class", class)],
                *n as f64,
            );
        }
    }

    f.family(
        "stampede_alerts_total",
        MetricKind::Counter,
        "Alerts raised since the run started, by kind.",
    );
    for k in AlertKind::ALL {
        let n = st.alert_counts.get(k.name()).copied().unwrap_or(0);
        f.sample("stampede_alerts_total", &[("kind", k.name())], n as f64);
    }
    f.family(
        "stampede_alerts_firing",
        MetricKind::Gauge,
        "Alerts firing now, by kind.",
    );
    for k in AlertKind::ALL {
        let n = st.active.values().filter(|a| a.kind == k).count();
        f.sample("stampede_alerts_firing", &[("kind", k.name())], n as f64);
    }
    f.family(
        "stampede_watchers",
        MetricKind::Gauge,
        "`controller watch` clients attached now.",
    );
    f.sample("stampede_watchers", &[], watchers as f64);
    f.family(
        "stampede_watch_missed_total",
        MetricKind::Counter,
        "Updates lost by watchers that read too slowly.",
    );
    f.sample("stampede_watch_missed_total", &[], missed as f64);
    f.into_string()
}

fn latency(f: &mut Exposition, step: &str, window: &str, metric: &str, p: &Percentiles) {
    if p.count == 0 {
        return;
    }
    for (q, v) in [("0.5", p.p50_ms), ("0.99", p.p99_ms)] {
        f.sample(
            "stampede_latency_ms",
            &[
                ("step", step),
                ("window", window),
                ("metric", metric),
                ("quantile", q),
            ],
            v,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixture;
    use prom_text_format_parser::{Scrape, Type};

    /// The value of the sample of `name` whose labels include `labels`.
    fn value(scrape: &Scrape, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let m = scrape.metrics.iter().find(|m| m.name == name)?;
        m.samples
            .iter()
            .find(|s| {
                labels
                    .iter()
                    .all(|(k, v)| s.labels.iter().any(|l| l.key == *k && l.value == *v))
            })
            .map(|s| s.value.value.as_f64())
    }

    #[test]
    fn the_metrics_parse_as_prometheus_text() {
        let text = render(&fixture::state(), 2, 7);
        let scrape = Scrape::parse(&text).unwrap_or_else(|e| panic!("{e:?}\n{text}"));
        let kind = |name: &str| {
            scrape
                .metrics
                .iter()
                .find(|m| m.name == name)
                .map(|m| m.kind)
        };
        assert_eq!(kind("stampede_requests_total"), Some(Type::Counter));
        assert_eq!(kind("stampede_latency_ms"), Some(Type::Gauge));
        let step = ("step", "steps/qps=40");
        assert_eq!(
            value(
                &scrape,
                "stampede_requests_total",
                &[step, ("outcome", "sent")]
            ),
            Some(44.0 * 18.0)
        );
        assert_eq!(
            value(
                &scrape,
                "stampede_requests_total",
                &[("step", "steps/qps=20"), ("outcome", "failed")]
            ),
            Some(0.0)
        );
        let p99 = value(
            &scrape,
            "stampede_latency_ms",
            &[
                step,
                ("window", "10s"),
                ("metric", "e2e"),
                ("quantile", "0.99"),
            ],
        )
        .unwrap();
        assert!(p99 > 3000.0, "{p99}");
        assert_eq!(value(&scrape, "stampede_in_flight", &[step]), Some(123.0));
        assert_eq!(
            value(&scrape, "stampede_errors_total", &[("class", "http_5xx")]),
            Some(77.0)
        );
        assert_eq!(
            value(&scrape, "stampede_alerts_total", &[("kind", "error_spike")]),
            Some(1.0)
        );
        assert_eq!(
            value(&scrape, "stampede_alerts_firing", &[("kind", "agent_lost")]),
            Some(1.0)
        );
        assert_eq!(
            value(&scrape, "stampede_agent_lost", &[("agent", "local-1")]),
            Some(1.0)
        );
        assert_eq!(value(&scrape, "stampede_gpu_util_percent", &[]), Some(87.0));
        assert_eq!(value(&scrape, "stampede_watchers", &[]), Some(2.0));
        assert_eq!(value(&scrape, "stampede_rate_scale", &[step]), Some(1.1));
    }

    #[test]
    fn labels_are_escaped_and_an_empty_run_still_parses() {
        let mut st = LiveState::new();
        st.run = Some(crate::state::RunInfo {
            plan: "a \"quoted\" plan\\x".into(),
            ..Default::default()
        });
        let text = render(&st, 0, 0);
        let scrape = Scrape::parse(&text).unwrap_or_else(|e| panic!("{e:?}\n{text}"));
        let info = scrape
            .metrics
            .iter()
            .find(|m| m.name == "stampede_run_info")
            .unwrap();
        assert!(info.samples[0].labels.iter().any(|l| l.key == "plan"));
        assert_eq!(value(&scrape, "stampede_running", &[]), Some(1.0));
    }
}
