//! Monitoring on the controller's side: what each agent is asked to sample, the monitor-only
//! agents, and what becomes of the samples: resources.csv (one row per sample per agent), the
//! resource columns of timeseries.csv, each step's `resources` in summary.json, and the
//! client-saturation guard.
//!
//! Who samples what:
//!
//! - every agent: its host (CPU, memory, network) and itself; its GPUs through NVML unless
//!   `[monitor] gpu = "off"`;
//! - the first load agent: the server's Prometheus metrics (it reaches the target by
//!   definition);
//! - the target process: the monitor-only agents when there are any (they run on the model
//!   server's host), else the first load agent. By default it is the simulator the controller
//!   started, when the agents are local too.
//!
//! CPU figures in results are percent of the sampling host's cores (0 to 100), for the host,
//! the agent and the target alike; the agent's figure is what the guard compares.

use crate::results::rows::round3;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use hdrhistogram::Histogram;
use stampede_common::metrics::LatencySummary;
use stampede_common::plan::monitor::{GpuMode, MonitorPlan, TargetProcess};
use stampede_common::plan::{Load, Plan, StepPlan};
use stampede_common::proto::{MonitorConfig, ResourceSample, StageShare};
use stampede_common::server_metrics::known_kinds;
use stampede_common::units::micros;

use crate::pool::{AgentHandle, connect};
use crate::summary::{GpuInventory, GpuSummary, MeanMax, Resources};

/// The number of load agents: monitor-only agents come after them in the list.
pub fn load_agents(agents: &[AgentHandle]) -> usize {
    agents.iter().filter(|a| !a.monitor_only).count()
}

/// Connects the plan's monitor-only agents and appends them after the load agents.
///
/// # Errors
/// When one cannot be reached or speaks another protocol.
pub async fn add_monitor_agents(
    mut agents: Vec<AgentHandle>,
    plan: &MonitorPlan,
    security: &crate::pool::AgentSecurity,
) -> anyhow::Result<Vec<AgentHandle>> {
    for addr in &plan.agents {
        let mut a = connect(agents.len(), addr, None, None, security)
            .await
            .with_context(|| format!("[monitor] agents: {addr}"))?;
        a.monitor_only = true;
        agents.push(a);
    }
    Ok(agents)
}

/// The GPUs the agents reported, for the manifest.
pub fn gpu_inventory(agents: &[AgentHandle]) -> Vec<GpuInventory> {
    agents
        .iter()
        .flat_map(|a| {
            a.hello.gpus.iter().map(|g| GpuInventory {
                agent: a.hello.agent_id.clone(),
                index: g.index,
                name: g.name.clone(),
                memory_total_bytes: g.memory_total_bytes,
            })
        })
        .collect()
}

/// The limits of the client-saturation guard.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Guard {
    /// An agent's CPU above this, percent of its host's cores, marks the interval.
    pub cpu_limit_pct: f64,
    /// Schedule lag p99 above this marks an open-loop interval.
    pub lag_limit_ms: f64,
}

impl Guard {
    fn of(plan: &MonitorPlan) -> Self {
        Guard {
            cpu_limit_pct: plan.client_cpu_limit.0 * 100.0,
            lag_limit_ms: plan.client_lag_limit.0.as_secs_f64() * 1000.0,
        }
    }
}

/// An agent as resources.csv names it.
#[derive(Debug, Clone)]
struct AgentColumn {
    id: String,
    monitor_only: bool,
}

/// The columns of resources.csv, fixed when the run starts: GPUs as many as the agent with the
/// most reported, the known server series, then the plan's own.
#[derive(Debug, Clone)]
pub struct ResourceTable {
    agents: Vec<AgentColumn>,
    gpus: usize,
    known: Vec<(&'static str, bool)>,
    extra: Vec<String>,
    header: Vec<String>,
}

/// Per-GPU columns, after `gpu<i>_`.
const GPU_COLUMNS: [&str; 7] = [
    "util_pct",
    "mem_used_bytes",
    "mem_total_bytes",
    "power_w",
    "temperature_c",
    "sm_clock_mhz",
    "processes",
];

impl ResourceTable {
    fn new(agents: &[AgentHandle], extra: Vec<String>) -> Self {
        let gpus = agents.iter().map(|a| a.hello.gpus.len()).max().unwrap_or(0);
        let known = known_kinds();
        let mut header: Vec<String> = [
            "elapsed_s",
            "step",
            "agent",
            "role",
            "host_cpu_pct",
            "host_cores_pct",
            "host_mem_used_bytes",
            "host_mem_total_bytes",
            "host_mem_pct",
            "net_rx_bytes_per_s",
            "net_tx_bytes_per_s",
            "agent_cpu_pct",
            "agent_rss_bytes",
            "target_pid",
            "target_cpu_pct",
            "target_rss_bytes",
            "target_up",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        for i in 0..gpus {
            header.extend(GPU_COLUMNS.iter().map(|c| format!("gpu{i}_{c}")));
        }
        for (name, counter) in &known {
            if *counter {
                header.push(format!("server_{name}_total"));
                header.push(format!("server_{name}_per_s"));
            } else {
                header.push(format!("server_{name}"));
            }
        }
        for name in &extra {
            header.push(name.clone());
            header.push(format!("{name}_per_s"));
        }
        header.push("scrape_failures".into());
        header.push("malformed_lines".into());
        ResourceTable {
            agents: agents
                .iter()
                .map(|a| AgentColumn {
                    id: a.hello.agent_id.clone(),
                    monitor_only: a.monitor_only,
                })
                .collect(),
            gpus,
            known,
            extra,
            header,
        }
    }

    /// The header row.
    pub fn header(&self) -> &[String] {
        &self.header
    }

    fn agent(&self, index: usize) -> AgentColumn {
        self.agents.get(index).cloned().unwrap_or(AgentColumn {
            id: format!("agent-{index}"),
            monitor_only: false,
        })
    }

    /// One sample as a row; `elapsed_s` is the sample's time since the run's first step.
    fn row(&self, elapsed_s: f64, step: &str, agent: usize, s: &ResourceSample) -> Vec<String> {
        let a = self.agent(agent);
        let cores = cores_of(s);
        let mut row: Vec<String> = Vec::with_capacity(self.header.len());
        row.push(num(elapsed_s));
        row.push(step.to_string());
        row.push(a.id);
        row.push(if a.monitor_only { "monitor" } else { "load" }.into());
        match &s.host {
            Some(h) => {
                row.push(num(h.cpu_pct));
                row.push(
                    h.core_pct
                        .iter()
                        .map(|c| num(*c))
                        .collect::<Vec<_>>()
                        .join(";"),
                );
                row.push(h.mem_used_bytes.to_string());
                row.push(h.mem_total_bytes.to_string());
                row.push(opt(mem_pct(h.mem_used_bytes, h.mem_total_bytes)));
                row.push(num(h.net_rx_bytes_per_s));
                row.push(num(h.net_tx_bytes_per_s));
            }
            None => row.extend(std::iter::repeat_n(String::new(), 7)),
        }
        match &s.agent {
            Some(p) => {
                row.push(num(p.cpu_pct / cores));
                row.push(p.rss_bytes.to_string());
            }
            None => row.extend(std::iter::repeat_n(String::new(), 2)),
        }
        match &s.target {
            Some(p) => {
                row.push(p.pid.to_string());
                row.push(num(p.cpu_pct / cores));
                row.push(p.rss_bytes.to_string());
                row.push(u8::from(p.running).to_string());
            }
            None => row.extend(std::iter::repeat_n(String::new(), 4)),
        }
        for i in 0..self.gpus {
            match s.gpus.get(i) {
                Some(g) => {
                    row.push(opt(g.util_pct));
                    row.push(g.mem_used_bytes.to_string());
                    row.push(g.mem_total_bytes.to_string());
                    row.push(opt(g.power_w));
                    row.push(opt(g.temperature_c));
                    row.push(g.sm_clock_mhz.map(|c| c.to_string()).unwrap_or_default());
                    let mut procs = String::new();
                    for (k, p) in g.processes.iter().enumerate() {
                        let sep = if k > 0 { ";" } else { "" };
                        let _ = write!(procs, "{sep}{}:{}", p.pid, p.used_bytes);
                    }
                    row.push(procs);
                }
                None => row.extend(std::iter::repeat_n(String::new(), GPU_COLUMNS.len())),
            }
        }
        for (name, counter) in &self.known {
            // A known series carries its common name beside its source's.
            let x = s
                .server
                .iter()
                .find(|x| x.name == *name && x.name != x.source);
            if *counter {
                row.push(x.map(|x| num(x.value)).unwrap_or_default());
                row.push(x.and_then(|x| x.rate_per_s).map(num).unwrap_or_default());
            } else {
                row.push(x.map(|x| num(x.value)).unwrap_or_default());
            }
        }
        for name in &self.extra {
            let x = s
                .server
                .iter()
                .find(|x| x.name == *name && x.source == *name);
            row.push(x.map(|x| num(x.value)).unwrap_or_default());
            row.push(x.and_then(|x| x.rate_per_s).map(num).unwrap_or_default());
        }
        row.push(s.scrape_failures.to_string());
        row.push(s.malformed_lines.to_string());
        row
    }
}

fn cores_of(s: &ResourceSample) -> f64 {
    f64::from(s.host.as_ref().map_or(1, |h| h.cores).max(1))
}

fn mem_pct(used: u64, total: u64) -> Option<f64> {
    (total > 0).then(|| used as f64 / total as f64 * 100.0)
}

/// A number as CSV writes it: at most three decimals, no trailing zeros.
fn num(v: f64) -> String {
    if !v.is_finite() {
        return String::new();
    }
    let r = (v * 1000.0).round() / 1000.0;
    if r == r.trunc() && r.abs() < 1e15 {
        format!("{}", r as i64)
    } else {
        format!("{r}")
    }
}

fn opt(v: Option<f64>) -> String {
    v.map(num).unwrap_or_default()
}

/// What the plan asks to sample, resolved against the run: the endpoints, the target process,
/// the agents.
#[derive(Debug, Clone)]
pub struct MonitorRun {
    gpu: bool,
    urls: Vec<String>,
    series: Vec<String>,
    target: Option<TargetProcess>,
    interval: Duration,
    /// The plan's report interval.
    report_interval: Duration,
    guard: Guard,
    table: Arc<ResourceTable>,
    has_monitor_agents: bool,
}

impl MonitorRun {
    /// Resolves `[monitor]` for a target at `base_url`. `simulator_pid`: the simulator the
    /// controller started, the default target process when the agents are local too.
    pub fn resolve(
        plan: &Plan,
        base_url: &str,
        simulator_pid: Option<u32>,
        agents: &[AgentHandle],
    ) -> Self {
        let m = &plan.monitor;
        let local = agents
            .iter()
            .filter(|a| !a.monitor_only)
            .all(|a| a.child.is_some());
        let target = m.target_process.clone().or_else(|| {
            simulator_pid
                .filter(|_| local && m.agents.is_empty())
                .map(TargetProcess::Pid)
        });
        let series: Vec<String> = m.series.iter().map(|s| s.0.clone()).collect();
        MonitorRun {
            gpu: m.gpu == GpuMode::Nvml,
            urls: m.server_metrics.urls(base_url),
            series: series.clone(),
            target,
            interval: m.sample_interval(plan.interval.0),
            report_interval: plan.interval.0,
            guard: Guard::of(m),
            table: Arc::new(ResourceTable::new(agents, series)),
            has_monitor_agents: agents.iter().any(|a| a.monitor_only),
        }
    }

    /// resources.csv's header.
    pub fn header(&self) -> Vec<String> {
        self.table.header().to_vec()
    }

    /// Lines for the start of a run: each agent's GPUs (or why it has none), what is scraped
    /// and which process is watched, and by whom.
    pub fn startup_lines(&self, agents: &[AgentHandle]) -> Vec<String> {
        let mut lines = Vec::new();
        for a in agents {
            let id = &a.hello.agent_id;
            if a.monitor_only {
                lines.push(format!(
                    "agent {id}: monitor only: samples its host, sends no request"
                ));
            }
            if !self.gpu {
                continue;
            }
            if a.hello.gpus.is_empty() {
                let why = if a.hello.gpu_unavailable.is_empty() {
                    "the agent did not say why"
                } else {
                    a.hello.gpu_unavailable.as_str()
                };
                lines.push(format!("agent {id}: GPU: not available: {why}"));
            } else {
                let gpus: Vec<String> = a
                    .hello
                    .gpus
                    .iter()
                    .map(|g| {
                        format!(
                            "{} {} ({:.0} GiB)",
                            g.index,
                            g.name,
                            g.memory_total_bytes as f64 / (1u64 << 30) as f64
                        )
                    })
                    .collect();
                lines.push(format!("agent {id}: GPU {}", gpus.join(", ")));
            }
        }
        let first = agents.iter().find(|a| !a.monitor_only);
        if let Some(a) = first
            && !self.urls.is_empty()
        {
            lines.push(format!(
                "server metrics: {} (scraped by agent {})",
                self.urls.join(", "),
                a.hello.agent_id
            ));
        }
        if let Some(t) = &self.target {
            let by: Vec<&str> = agents
                .iter()
                .enumerate()
                .filter(|(i, a)| self.samples_target(*i, a))
                .map(|(_, a)| a.hello.agent_id.as_str())
                .collect();
            lines.push(format!(
                "target process: {t} (sampled by agent {})",
                by.join(", ")
            ));
        }
        lines
    }

    fn samples_target(&self, index: usize, agent: &AgentHandle) -> bool {
        if self.has_monitor_agents {
            agent.monitor_only
        } else {
            index == 0
        }
    }

    /// What agent `index` samples during a step.
    pub fn share_config(&self, index: usize, agent: &AgentHandle) -> MonitorConfig {
        let scrapes = index == 0 && !agent.monitor_only;
        let (target_pid, target_process_name) = match &self.target {
            Some(t) if self.samples_target(index, agent) => match t {
                TargetProcess::Pid(p) => (*p, String::new()),
                TargetProcess::Name(n) => (0, n.clone()),
            },
            _ => (0, String::new()),
        };
        MonitorConfig {
            gpu: self.gpu,
            server_metrics_urls: if scrapes {
                self.urls.clone()
            } else {
                Vec::new()
            },
            series: if scrapes {
                self.series.clone()
            } else {
                Vec::new()
            },
            target_pid,
            target_process_name,
            sample_interval_us: micros(self.interval),
        }
    }

    /// The share of a monitor-only agent for step `k`: the step's window, no load.
    pub fn monitor_share(
        &self,
        run_id: &str,
        k: usize,
        step: &StepPlan,
        start_at_unix_us: i64,
        index: usize,
        agent: &AgentHandle,
    ) -> StageShare {
        StageShare {
            run_id: run_id.to_string(),
            stage_index: u32::try_from(k).unwrap_or(u32::MAX),
            stage_name: step.name.clone(),
            start_at_unix_us,
            duration_us: micros(step.duration),
            interval_us: micros(self.report_interval),
            agent_index: u32::try_from(index).unwrap_or(u32::MAX),
            monitor: Some(self.share_config(index, agent)),
            monitor_only: true,
            ..Default::default()
        }
    }

    /// The accumulator of a step starting `step_start_s` after the run's first step.
    pub fn step(&self, step: &StepPlan, step_start_s: f64) -> StepResources {
        StepResources {
            table: Some(Arc::clone(&self.table)),
            step: step.name.clone(),
            step_start_s,
            open_loop: !matches!(step.load, Load::Closed { .. }),
            guard: self.guard,
            ..StepResources::default()
        }
    }
}

/// The resource columns of one merged interval (timeseries.csv and the live line), with its
/// resources.csv rows and the notes its samples carried.
#[derive(Debug, Clone, Default)]
pub struct IntervalResources {
    /// The busiest load agent's CPU, percent of its host's cores.
    pub client_cpu_pct: Option<f64>,
    /// Mean CPU and memory of the load agents' hosts.
    pub host_cpu_pct: Option<f64>,
    pub host_mem_pct: Option<f64>,
    /// Mean utilisation over every GPU the agents read through NVML, else the server's
    /// (DCGM or Triton) figure; memory and power summed.
    pub gpu_util_pct: Option<f64>,
    pub gpu_mem_used_bytes: Option<f64>,
    pub gpu_power_w: Option<f64>,
    pub target_cpu_pct: Option<f64>,
    pub server_running: Option<f64>,
    pub server_waiting: Option<f64>,
    pub kv_cache_usage_pct: Option<f64>,
    /// An agent's CPU or the schedule lag passed the guard's limit.
    pub client_bound: bool,
    /// resources.csv rows.
    pub rows: Vec<Vec<String>>,
    /// Notes, each prefixed with its agent.
    pub notes: Vec<String>,
}

/// Sum, max and count of one resource.
#[derive(Debug, Clone, Copy, Default)]
struct Accum {
    sum: f64,
    max: f64,
    n: u64,
}

impl Accum {
    fn add(&mut self, v: f64) {
        if !v.is_finite() {
            return;
        }
        self.max = if self.n == 0 { v } else { self.max.max(v) };
        self.sum += v;
        self.n += 1;
    }

    fn mean(&self) -> Option<f64> {
        (self.n > 0).then(|| self.sum / self.n as f64)
    }

    fn mean_max(&self) -> Option<MeanMax> {
        self.mean().map(|mean| MeanMax {
            mean: round3(mean),
            max: round3(self.max),
        })
    }
}

/// One GPU's figures over a step.
#[derive(Debug, Clone, Default)]
struct GpuAccum {
    name: String,
    mem_total_bytes: u64,
    util_pct: Accum,
    mem_used_bytes: Accum,
    power_w: Accum,
    temperature_c: Accum,
    sm_clock_mhz: Accum,
}

/// A step's samples as they come, interval by interval: its summary `resources` and the
/// guard's count.
#[derive(Debug, Clone, Default)]
pub struct StepResources {
    table: Option<Arc<ResourceTable>>,
    step: String,
    step_start_s: f64,
    open_loop: bool,
    guard: Guard,
    stats: BTreeMap<String, Accum>,
    gpus: BTreeMap<(usize, u32), GpuAccum>,
    samples: u64,
    sampled_intervals: u32,
    client_bound_intervals: u32,
    client_cpu_bound_intervals: u32,
    scrape_failures: u64,
    malformed_lines: u64,
    notes: Vec<String>,
}

impl Default for Guard {
    fn default() -> Self {
        Guard::of(&MonitorPlan::default())
    }
}

fn mean(v: &[f64]) -> Option<f64> {
    (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
}

impl StepResources {
    fn stat(&mut self, key: &str, v: f64) {
        self.stats.entry(key.to_string()).or_default().add(v);
    }

    /// Takes a merged interval's samples (with each agent's index) and its schedule lag: its
    /// resource columns, rows and notes, and counts it for the step.
    pub fn interval(
        &mut self,
        samples: &[(usize, ResourceSample)],
        schedule_lag: &Histogram<u64>,
    ) -> IntervalResources {
        let mut ir = IntervalResources::default();
        let (mut client_cpu, mut host_cpu, mut host_mem) = (Vec::new(), Vec::new(), Vec::new());
        let (mut gpu_util, mut gpu_mem, mut gpu_power) = (Vec::new(), Vec::new(), Vec::new());
        let mut server_gpu: Option<f64> = None;
        for (agent, s) in samples {
            let a = self
                .table
                .as_ref()
                .map_or_else(|| format!("agent-{agent}"), |t| t.agent(*agent).id);
            let monitor_only = self
                .table
                .as_ref()
                .is_some_and(|t| t.agent(*agent).monitor_only);
            if let Some(t) = &self.table {
                let elapsed = self.step_start_s + s.offset_us as f64 / 1e6;
                ir.rows.push(t.row(elapsed, &self.step, *agent, s));
            }
            for n in &s.notes {
                let line = format!("agent {a}: {n}");
                ir.notes.push(line.clone());
                self.notes.push(line);
            }
            self.samples += 1;
            self.scrape_failures += u64::from(s.scrape_failures);
            self.malformed_lines += u64::from(s.malformed_lines);
            let cores = cores_of(s);
            let role = if monitor_only { "monitor_" } else { "" };
            if let Some(h) = &s.host {
                let mem = mem_pct(h.mem_used_bytes, h.mem_total_bytes);
                self.stat(&format!("{role}host_cpu_pct"), h.cpu_pct);
                if let Some(p) = mem {
                    self.stat(&format!("{role}host_mem_pct"), p);
                }
                self.stat(
                    &format!("{role}host_mem_used_bytes"),
                    h.mem_used_bytes as f64,
                );
                self.stat(&format!("{role}net_rx_bytes_per_s"), h.net_rx_bytes_per_s);
                self.stat(&format!("{role}net_tx_bytes_per_s"), h.net_tx_bytes_per_s);
                if !monitor_only {
                    host_cpu.push(h.cpu_pct);
                    host_mem.extend(mem);
                }
            }
            if let Some(p) = &s.agent
                && !monitor_only
            {
                let share = p.cpu_pct / cores;
                client_cpu.push(share);
                self.stat("client_cpu_pct", share);
                self.stat("agent_rss_bytes", p.rss_bytes as f64);
            }
            if let Some(p) = s.target.as_ref().filter(|p| p.running) {
                let share = p.cpu_pct / cores;
                ir.target_cpu_pct = Some(ir.target_cpu_pct.unwrap_or(0.0) + share);
                self.stat("target_cpu_pct", share);
                self.stat("target_rss_bytes", p.rss_bytes as f64);
            }
            for g in &s.gpus {
                let acc = self.gpus.entry((*agent, g.index)).or_default();
                acc.name.clone_from(&g.name);
                acc.mem_total_bytes = g.mem_total_bytes;
                acc.mem_used_bytes.add(g.mem_used_bytes as f64);
                if let Some(u) = g.util_pct {
                    acc.util_pct.add(u);
                    gpu_util.push(u);
                }
                if let Some(p) = g.power_w {
                    acc.power_w.add(p);
                    gpu_power.push(p);
                }
                if let Some(t) = g.temperature_c {
                    acc.temperature_c.add(t);
                }
                if let Some(c) = g.sm_clock_mhz {
                    acc.sm_clock_mhz.add(f64::from(c));
                }
                gpu_mem.push(g.mem_used_bytes as f64);
            }
            for x in &s.server {
                let known = x.name != x.source;
                let key = match (known, x.counter) {
                    (true, true) => format!("server_{}_per_s", x.name),
                    (true, false) => format!("server_{}", x.name),
                    (false, true) => format!("{}_per_s", x.name),
                    (false, false) => x.name.clone(),
                };
                let value = if x.counter {
                    x.rate_per_s
                } else {
                    Some(x.value)
                };
                if let Some(v) = value {
                    self.stat(&key, v);
                }
                if known {
                    match x.name.as_str() {
                        "requests_running" => ir.server_running = Some(round3(x.value)),
                        "requests_waiting" => ir.server_waiting = Some(round3(x.value)),
                        "kv_cache_usage_pct" => ir.kv_cache_usage_pct = Some(round3(x.value)),
                        "gpu_util_pct" => server_gpu = Some(x.value),
                        _ => {}
                    }
                }
            }
        }
        ir.client_cpu_pct = client_cpu.iter().copied().reduce(f64::max).map(round3);
        ir.host_cpu_pct = mean(&host_cpu).map(round3);
        ir.host_mem_pct = mean(&host_mem).map(round3);
        ir.gpu_util_pct = mean(&gpu_util).or(server_gpu).map(round3);
        ir.gpu_mem_used_bytes = (!gpu_mem.is_empty()).then(|| gpu_mem.iter().sum());
        ir.gpu_power_w = (!gpu_power.is_empty()).then(|| round3(gpu_power.iter().sum()));
        ir.target_cpu_pct = ir.target_cpu_pct.map(round3);
        let lag = LatencySummary::of(schedule_lag);
        let cpu_bound = ir
            .client_cpu_pct
            .is_some_and(|c| c > self.guard.cpu_limit_pct);
        let lag_bound = self.open_loop && lag.count > 0 && lag.p99 > self.guard.lag_limit_ms;
        ir.client_bound = cpu_bound || lag_bound;
        if ir.client_cpu_pct.is_some() {
            self.sampled_intervals += 1;
        }
        self.client_bound_intervals += u32::from(ir.client_bound);
        self.client_cpu_bound_intervals += u32::from(cpu_bound);
        ir
    }

    /// The step's `resources` for summary.json.
    pub fn summary(&self) -> Resources {
        let stat = |k: &str| self.stats.get(k).and_then(Accum::mean).map(round3);
        Resources {
            cpu_pct: stat("host_cpu_pct"),
            mem_pct: stat("host_mem_pct"),
            gpus: self
                .gpus
                .iter()
                .map(|((agent, index), g)| {
                    let id = self
                        .table
                        .as_ref()
                        .map_or_else(|| format!("agent-{agent}"), |t| t.agent(*agent).id);
                    GpuSummary {
                        agent: id,
                        index: *index,
                        name: g.name.clone(),
                        mem_total_bytes: g.mem_total_bytes,
                        util_pct: g.util_pct.mean_max(),
                        mem_used_bytes: g.mem_used_bytes.mean_max(),
                        power_w: g.power_w.mean_max(),
                        temperature_c: g.temperature_c.mean_max(),
                        sm_clock_mhz: g.sm_clock_mhz.mean_max(),
                    }
                })
                .collect(),
            samples: self.samples,
            sampled_intervals: self.sampled_intervals,
            client_bound_intervals: self.client_bound_intervals,
            client_cpu_bound_intervals: self.client_cpu_bound_intervals,
            client_cpu_limit_pct: Some(round3(self.guard.cpu_limit_pct)),
            client_lag_limit_ms: Some(round3(self.guard.lag_limit_ms)),
            scrape_failures: self.scrape_failures,
            malformed_lines: self.malformed_lines,
            notes: self.notes.clone(),
            stats: self
                .stats
                .iter()
                .filter_map(|(k, a)| a.mean_max().map(|m| (k.clone(), m)))
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use stampede_common::metrics::HistogramBundle;
    use stampede_common::proto::{
        Counts, GpuInfo, GpuSample, HelloReply, HostSample, ProcessSample, ServerSeries,
    };
    use stampede_common::schedule::ArrivalKind;
    use stampede_common::stage::StepKind;
    use tonic::transport::Endpoint;

    use crate::aggregate::MergedInterval;
    use crate::analysis::{analyse, is_client_bound};
    use crate::pool::ClockEstimate;
    use crate::results::kinds::{FindingCode, Severity};
    use crate::summary::StageSummary;

    fn agent(index: usize, id: &str, gpus: usize, monitor_only: bool) -> AgentHandle {
        let channel = Endpoint::from_static("http://127.0.0.1:9").connect_lazy();
        AgentHandle {
            index,
            addr: "127.0.0.1:9".into(),
            client: stampede_common::proto::agent_client::AgentClient::with_interceptor(
                channel,
                crate::pool::TokenHeader::default(),
            ),
            weight: 2.0,
            origin: None,
            hello: HelloReply {
                agent_id: id.into(),
                cores: 2,
                gpus: (0..gpus)
                    .map(|i| GpuInfo {
                        index: i as u32,
                        name: "NVIDIA H100 80GB HBM3".into(),
                        memory_total_bytes: 80 << 30,
                    })
                    .collect(),
                gpu_unavailable: if gpus == 0 {
                    "NVML could not be loaded".into()
                } else {
                    String::new()
                },
                ..Default::default()
            },
            clock: ClockEstimate {
                offset_us: 0,
                uncertainty_us: 0,
                rtt_us: 0,
            },
            child: None,
            monitor_only,
        }
    }

    fn step() -> StepPlan {
        StepPlan {
            stage_index: 0,
            stage_name: "s".into(),
            step_index: 0,
            name: "s".into(),
            kind: StepKind::default(),
            load: Load::Open {
                qps: 10.0,
                arrival: ArrivalKind::Constant,
                max_in_flight: None,
            },
            duration: Duration::from_secs(10),
            input_tokens: 1,
            output_tokens: 1,
            checks: Vec::new(),
        }
    }

    /// A sample from a 2-core host: `agent_cpu` percent of one core, as the agent reports it.
    fn sample(offset_us: u64, agent_cpu: f64) -> ResourceSample {
        ResourceSample {
            offset_us,
            host: Some(HostSample {
                cpu_pct: 50.0,
                core_pct: vec![40.0, 60.0],
                mem_used_bytes: 4 << 30,
                mem_total_bytes: 16 << 30,
                cores: 2,
                ..Default::default()
            }),
            agent: Some(ProcessSample {
                pid: 7,
                name: "agent".into(),
                cpu_pct: agent_cpu,
                rss_bytes: 50 << 20,
                running: true,
            }),
            ..Default::default()
        }
    }

    impl StepResources {
        fn interval_of(&mut self, m: &MergedInterval) -> IntervalResources {
            self.interval(&m.samples, &m.bundle.schedule_lag)
        }
    }

    fn interval(index: u32, samples: Vec<(usize, ResourceSample)>) -> MergedInterval {
        MergedInterval {
            step: 0,
            index,
            start_offset: Duration::from_secs(u64::from(index)),
            end_offset: Duration::from_secs(u64::from(index) + 1),
            counts: Counts::default(),
            bundle: HistogramBundle::new(),
            in_flight: 0,
            recorder_overflow: 0,
            agents: 1,
            samples,
            resources: IntervalResources::default(),
            agent_lag_p99_ms: Vec::new(),
            drain: false,
        }
    }

    fn summary_with(resources: Resources) -> StageSummary {
        let mut s = StageSummary::compute(
            "s",
            "s",
            Some(&step().load),
            Duration::from_secs(10),
            &stampede_common::metrics::Tally {
                sent: 100,
                completed: 100,
                ..Default::default()
            },
            &HistogramBundle::new(),
            &[],
        );
        s.resources = resources;
        s
    }

    fn run(plan_text: &str, agents: &[AgentHandle]) -> MonitorRun {
        let plan = Plan::parse(
            &format!(
                "name = \"m\"\n{plan_text}\n[[stage]]\nname = \"s\"\nqps = 1\nduration = \"1s\"\n"
            ),
            std::path::Path::new("plan.toml"),
        )
        .unwrap();
        MonitorRun::resolve(&plan, "http://127.0.0.1:8000/v1", Some(4242), agents)
    }

    #[tokio::test]
    async fn a_starved_agent_is_marked_and_the_step_is_client_bound() {
        let agents = [agent(0, "local-0", 0, false)];
        let m = run("", &agents);
        let mut r = m.step(&step(), 0.0);
        // 190% of one core on 2 cores: 95% of the host, above the 85% limit.
        let busy = r.interval_of(&interval(0, vec![(0, sample(500_000, 190.0))]));
        assert_eq!(busy.client_cpu_pct, Some(95.0));
        assert!(busy.client_bound);
        for k in 1..5 {
            let calm = r.interval_of(&interval(
                k,
                vec![(0, sample(500_000 + u64::from(k) * 1_000_000, 20.0))],
            ));
            assert_eq!(calm.client_cpu_pct, Some(10.0));
            assert!(!calm.client_bound);
        }
        let res = r.summary();
        assert_eq!(
            (
                res.sampled_intervals,
                res.client_bound_intervals,
                res.client_cpu_bound_intervals
            ),
            (5, 1, 1)
        );
        assert_eq!(res.stats["client_cpu_pct"].max, 95.0);
        assert_eq!(res.stats["client_cpu_pct"].mean, 27.0);
        assert_eq!(res.cpu_pct, Some(50.0));
        assert_eq!(res.mem_pct, Some(25.0));
        assert_eq!(res.client_cpu_limit_pct, Some(85.0));
        let s = summary_with(res);
        assert!(is_client_bound(&s));
        let findings = analyse(&[s], false).findings;
        let f = findings
            .iter()
            .find(|f| f.code() == FindingCode::ClientBound)
            .expect("a client-bound finding");
        assert_eq!(f.severity, Severity::Critical);
        assert!(
            f.message.contains("results understate the server"),
            "{}",
            f.message
        );
        assert!(f.message.contains("1 of 5 intervals"), "{}", f.message);
        assert!(
            f.suggestion
                .as_deref()
                .is_some_and(|s| s.contains("add agents"))
        );
        let stampede_results::facts::Facts::ClientBound(c) = &f.facts else {
            panic!("{f:?}")
        };
        let stampede_results::facts::ClientLimit::Cpu { peak_pct, .. } = c.limit else {
            panic!("{c:?}")
        };
        assert_eq!(peak_pct, Some(95.0));
    }

    #[tokio::test]
    async fn a_calm_agent_raises_nothing() {
        let agents = [agent(0, "local-0", 0, false)];
        let m = run("", &agents);
        let mut r = m.step(&step(), 0.0);
        for k in 0..10 {
            let iv = r.interval_of(&interval(k, vec![(0, sample(500_000, 160.0))]));
            // 80% of the host: busy but under the limit.
            assert!(!iv.client_bound);
        }
        let s = summary_with(r.summary());
        assert!(!is_client_bound(&s));
        assert!(
            analyse(&[s], false)
                .findings
                .iter()
                .all(|f| f.code() != FindingCode::ClientBound)
        );
        // One busy interval in twenty is noise, not a client-bound step.
        let mut r = m.step(&step(), 0.0);
        for k in 0..20 {
            r.interval_of(&interval(
                k,
                vec![(0, sample(500_000, if k == 3 { 199.0 } else { 20.0 }))],
            ));
        }
        let res = r.summary();
        assert_eq!(res.client_cpu_bound_intervals, 1);
        assert!(!res.client_cpu_bound());
        // The plan's limit applies: at 70% the calm 80% agent is marked.
        let strict = run("[monitor]\nclient_cpu_limit = \"70%\"\n", &agents);
        let mut r = strict.step(&step(), 0.0);
        assert!(
            r.interval_of(&interval(0, vec![(0, sample(500_000, 160.0))]))
                .client_bound
        );
    }

    #[tokio::test]
    async fn rows_line_up_with_the_header_and_carry_every_source() {
        let agents = [agent(0, "local-0", 1, false), agent(1, "gpu-host", 2, true)];
        let m = run(
            "[monitor]\nseries = [\"vllm:num_requests_swapped\"]\n",
            &agents,
        );
        let header = m.header();
        for c in [
            "elapsed_s",
            "agent",
            "host_cpu_pct",
            "agent_cpu_pct",
            "target_cpu_pct",
            "gpu0_util_pct",
            "gpu1_power_w",
            "server_requests_running",
            "server_kv_cache_usage_pct",
            "server_generation_tokens_per_s",
            "server_preemptions_total",
            "vllm:num_requests_swapped",
            "malformed_lines",
        ] {
            assert!(header.iter().any(|h| h == c), "{c} missing from {header:?}");
        }
        let mut s = sample(1_500_000, 20.0);
        s.target = Some(ProcessSample {
            pid: 4242,
            name: "sim".into(),
            cpu_pct: 100.0,
            rss_bytes: 1 << 30,
            running: true,
        });
        s.gpus = vec![GpuSample {
            index: 0,
            name: "H100".into(),
            util_pct: Some(87.0),
            mem_used_bytes: 70 << 30,
            mem_total_bytes: 80 << 30,
            power_w: Some(512.5),
            temperature_c: Some(61.0),
            sm_clock_mhz: Some(1980),
            processes: vec![stampede_common::proto::GpuProcessMemory {
                pid: 4242,
                used_bytes: 69 << 30,
            }],
        }];
        s.server = vec![
            ServerSeries {
                name: "requests_running".into(),
                source: "vllm:num_requests_running".into(),
                value: 12.0,
                counter: false,
                rate_per_s: None,
            },
            ServerSeries {
                name: "generation_tokens".into(),
                source: "vllm:generation_tokens_total".into(),
                value: 5000.0,
                counter: true,
                rate_per_s: Some(812.25),
            },
            ServerSeries {
                name: "vllm:num_requests_swapped".into(),
                source: "vllm:num_requests_swapped".into(),
                value: 2.0,
                counter: false,
                rate_per_s: None,
            },
        ];
        s.notes = vec!["target process pid 4242 (sim): exited".into()];
        let mut r = m.step(&step(), 10.0);
        let iv = r.interval_of(&interval(1, vec![(1, s)]));
        assert_eq!(iv.rows.len(), 1);
        let row = &iv.rows[0];
        assert_eq!(row.len(), header.len());
        let col = |name: &str| row[header.iter().position(|h| h == name).unwrap()].as_str();
        assert_eq!(col("elapsed_s"), "11.5");
        assert_eq!(col("agent"), "gpu-host");
        assert_eq!(col("role"), "monitor");
        assert_eq!(col("host_cores_pct"), "40;60");
        assert_eq!(col("host_mem_pct"), "25");
        assert_eq!(col("target_cpu_pct"), "50");
        assert_eq!(col("target_up"), "1");
        assert_eq!(col("gpu0_util_pct"), "87");
        assert_eq!(col("gpu0_power_w"), "512.5");
        assert_eq!(col("gpu0_processes"), format!("4242:{}", 69u64 << 30));
        assert_eq!(col("gpu1_util_pct"), "");
        assert_eq!(col("server_requests_running"), "12");
        assert_eq!(col("server_generation_tokens_total"), "5000");
        assert_eq!(col("server_generation_tokens_per_s"), "812.25");
        assert_eq!(col("vllm:num_requests_swapped"), "2");
        assert_eq!(iv.server_running, Some(12.0));
        assert_eq!(iv.gpu_util_pct, Some(87.0));
        // A monitor-only agent's CPU is the server host's: not the client's.
        assert_eq!(iv.client_cpu_pct, None);
        assert!(!iv.client_bound);
        assert_eq!(
            iv.notes,
            vec!["agent gpu-host: target process pid 4242 (sim): exited"]
        );
        let res = r.summary();
        assert_eq!(res.gpus.len(), 1);
        assert_eq!(res.gpus[0].agent, "gpu-host");
        assert_eq!(res.gpus[0].util_pct.map(|u| u.max), Some(87.0));
        assert_eq!(res.stats["server_generation_tokens_per_s"].mean, 812.25);
        assert_eq!(res.stats["monitor_host_cpu_pct"].mean, 50.0);
        assert_eq!(res.cpu_pct, None, "no load agent's host was sampled");
        assert_eq!(res.notes.len(), 1);
        // summary.json keeps every resource beside the fixed fields.
        let json = serde_json::to_value(&res).unwrap();
        assert_eq!(json["server_requests_running"]["max"], 12.0);
        let back: Resources = serde_json::from_value(json).unwrap();
        assert_eq!(back.stats.len(), res.stats.len());
    }

    #[tokio::test]
    async fn scraping_goes_to_the_first_load_agent_and_the_target_to_the_monitors() {
        let load = [agent(0, "local-0", 0, false), agent(1, "local-1", 0, false)];
        let m = run("", &load);
        let c0 = m.share_config(0, &load[0]);
        let c1 = m.share_config(1, &load[1]);
        assert_eq!(
            c0.server_metrics_urls,
            vec!["http://127.0.0.1:8000/metrics".to_string()]
        );
        assert!(c1.server_metrics_urls.is_empty());
        assert!(c0.gpu && c1.gpu);
        assert_eq!(c0.sample_interval_us, 1_000_000);
        // Agents given by address are not local: the simulator's pid means nothing to them.
        assert_eq!((c0.target_pid, c1.target_pid), (0, 0));
        let lines = m.startup_lines(&load);
        assert!(
            lines.contains(
                &"agent local-0: GPU: not available: NVML could not be loaded".to_string()
            ),
            "{lines:?}"
        );
        assert!(lines.iter().any(|l| l.starts_with(
            "server metrics: http://127.0.0.1:8000/metrics (scraped by agent local-0)"
        )));

        let with_monitor = [agent(0, "local-0", 0, false), agent(1, "gpu-host", 1, true)];
        let m = run(
            "[monitor]\ntarget_process = \"vllm\"\ngpu = \"off\"\nserver_metrics = \"off\"\ninterval = \"250ms\"",
            &with_monitor,
        );
        let load_cfg = m.share_config(0, &with_monitor[0]);
        let mon_cfg = m.share_config(1, &with_monitor[1]);
        assert!(load_cfg.target_process_name.is_empty() && load_cfg.server_metrics_urls.is_empty());
        assert_eq!(mon_cfg.target_process_name, "vllm");
        assert!(!mon_cfg.gpu);
        assert_eq!(mon_cfg.sample_interval_us, 250_000);
        let share = m.monitor_share("run", 3, &step(), 1_000, 1, &with_monitor[1]);
        assert!(share.monitor_only && share.target.is_none() && share.load.is_none());
        assert_eq!(
            (share.duration_us, share.interval_us),
            (10_000_000, 1_000_000)
        );
        assert_eq!(load_agents(&with_monitor), 1);
        let lines = m.startup_lines(&with_monitor);
        assert!(
            lines.iter().any(|l| l.contains("gpu-host: monitor only")),
            "{lines:?}"
        );
        assert!(
            lines
                .iter()
                .any(|l| l == "target process: \"vllm\" (sampled by agent gpu-host)"),
            "{lines:?}"
        );
    }
}
