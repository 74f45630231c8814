//! Everything before a run's first step: the plan read and checked, the results folder
//! opened, the agents brought up and loaded, and the summary's fixed part.

use std::collections::BTreeMap;

use anyhow::Context;
use stampede_common::plan::{ApiKind, Plan, expand_env};

use crate::feed::Console;
use crate::monitor::{add_monitor_agents, gpu_inventory, load_agents};
use crate::pool::{
    AgentHandle, AgentSpec, DNS_WAIT, check_allows, connect, expand_dns, resolve_waiting,
    spawn_local,
};
use crate::results::ResultsWriter;
use crate::results::kinds::RunStatus;
use crate::runner::RunOptions;
use crate::runner::notice::Notice;
use crate::runner::roster::AgentCard;
use crate::summary::{AgentInfo, Manifest, RunSummary, SCHEMA, TargetInfo, fnv1a64};
use crate::target::{Preflight, ResolvedTarget};
use crate::wallclock::UtcTime;
use crate::workload::RunWorkload;
use tokio_util::sync::CancellationToken;

/// A run's plan, workload and results folder, ready before anything is started.
pub struct Prepared {
    pub plan: Plan,
    pub plan_text: String,
    pub workload: RunWorkload,
    pub api_key: Option<String>,
    /// `<plan name>-<UTC start>`: the results folder's name and the run's id.
    pub run_id: String,
    pub started: UtcTime,
    pub dir: std::path::PathBuf,
    pub writer: ResultsWriter,
}

/// Reads and checks the plan and its workload, and opens the results folder.
///
/// # Errors
/// When the plan or a workload file is invalid, or the results folder cannot be created.
pub fn prepare(opts: &RunOptions, interrupt: &CancellationToken) -> anyhow::Result<Prepared> {
    let plan_text = std::fs::read_to_string(&opts.plan)
        .with_context(|| format!("cannot read the plan {}", opts.plan.display()))?;
    let mut plan = Plan::parse(&plan_text, &opts.plan)?;
    if opts.time_scale != 1.0 {
        plan.scale_time(opts.time_scale);
    }
    // Every file of the workload is read and built now: a bad one stops the run before it starts.
    let workload = crate::workload::prepare(&plan, &opts.plan)?;
    let api_key = plan
        .target
        .api_key
        .as_deref()
        .map(|k| expand_env(k, |v| std::env::var(v).ok()))
        .transpose()
        .map_err(|e| anyhow::anyhow!("{}: target.api_key: {e}", opts.plan.display()))?;
    let started = UtcTime::now();
    let run_id = format!("{}-{}", sanitize(&plan.name), started.compact());
    let dir = opts.out.join(&run_id);
    // A results file that cannot be written stops the run like a first Ctrl-C; `finish` then
    // returns the error, so the run exits 1 naming it.
    let writer = ResultsWriter::create(dir.clone(), &plan.redacted_toml(), {
        let interrupt = interrupt.clone();
        move || interrupt.cancel()
    })?;
    Ok(Prepared {
        plan,
        plan_text,
        workload,
        api_key,
        run_id,
        started,
        dir,
        writer,
    })
}

/// Brings up the load agents and the monitor-only ones, checks that each load agent may send
/// to the target, loads the workload on them, and says who they are.
///
/// # Errors
/// When an agent cannot be started, reached or loaded, or refuses the target.
pub async fn agents(
    opts: &RunOptions,
    plan: &Plan,
    target_url: &str,
    workload: &RunWorkload,
    console: &mut Console<'_>,
) -> anyhow::Result<Vec<AgentHandle>> {
    let agents = bring_up_agents(opts, plan).await?;
    let agents = add_monitor_agents(agents, &plan.monitor, &opts.security).await?;
    let load = &agents[..load_agents(&agents)];
    // An agent whose allow-list leaves out the target says so now, not at the first step.
    for a in load {
        check_allows(a, target_url)?;
    }
    crate::workload::load_on_agents(load, workload).await?;
    for a in &agents {
        console.notice(&Notice::Agent(AgentCard::of(a)))?;
    }
    Ok(agents)
}

/// The run's load agents: the command line's `--agent`s, else the plan's `[[agents]]` (each
/// `dns:` name expanded), else `--agents N` local ones.
async fn bring_up_agents(opts: &RunOptions, plan: &Plan) -> anyhow::Result<Vec<AgentHandle>> {
    let specs: Vec<AgentSpec> = if opts.agent_addrs.is_empty() {
        plan.agents
            .iter()
            .map(|a| AgentSpec {
                addr: a.addr.clone(),
                weight: a.weight,
                origin: None,
            })
            .collect()
    } else {
        opts.agent_addrs
            .iter()
            .map(|addr| AgentSpec {
                addr: addr.clone(),
                weight: None,
                origin: None,
            })
            .collect()
    };
    let mut agents = Vec::new();
    if specs.is_empty() {
        let children = spawn_local(opts.agents.max(1)).await?;
        for (i, child) in children.into_iter().enumerate() {
            let addr = child.addr.to_string();
            agents.push(connect(i, &addr, None, Some(child), &opts.security).await?);
        }
    } else {
        let specs = expand_dns(&specs, |name| resolve_waiting(name, DNS_WAIT)).await?;
        for (i, spec) in specs.iter().enumerate() {
            let mut agent = connect(i, &spec.addr, spec.weight, None, &opts.security).await?;
            agent.origin.clone_from(&spec.origin);
            agents.push(agent);
        }
    }
    Ok(agents)
}

/// summary.json as the run starts: what ran, against what, on which agents.
pub fn summary_header(
    p: &Prepared,
    opts: &RunOptions,
    target: &ResolvedTarget,
    pre: &Preflight,
    agents: &[AgentHandle],
) -> RunSummary {
    let plan = &p.plan;
    RunSummary {
        schema: SCHEMA.into(),
        plan: plan.name.clone(),
        started_at: p.started.rfc3339(),
        finished_at: None,
        status: RunStatus::Running,
        target: TargetInfo {
            base_url: target.base_url.clone(),
            api: match plan.target.api {
                ApiKind::Chat => "chat".into(),
                ApiKind::Completions => "completions".into(),
            },
            model: pre.model.clone(),
            stream: plan.target.stream,
            simulator: target.simulator.is_some(),
        },
        agents: agents.iter().map(agent_info).collect(),
        stages: Vec::new(),
        overall: None,
        slo_pass: true,
        analysis: Default::default(),
        probes: Vec::new(),
        rate_changes: Vec::new(),
        alerts: BTreeMap::new(),
        agent_events: Vec::new(),
        manifest: Manifest {
            stampede_version: stampede_common::handshake::STAMPEDE_VERSION.into(),
            protocol_version: stampede_common::handshake::PROTOCOL_VERSION,
            plan_hash: format!("{:016x}", fnv1a64(p.plan_text.as_bytes())),
            plan_file: opts.plan.display().to_string(),
            models: pre.models.clone(),
            gpus: gpu_inventory(agents),
            clock_offsets_us: agents
                .iter()
                .map(|a| (a.hello.agent_id.clone(), a.clock.offset_us))
                .collect(),
            tokenizer: p.workload.tokenizer.clone(),
        },
    }
}

fn agent_info(a: &AgentHandle) -> AgentInfo {
    AgentInfo {
        id: a.hello.agent_id.clone(),
        addr: a.addr.clone(),
        host: a.hello.host.clone(),
        cores: a.hello.cores,
        version: a.hello.agent_version.clone(),
        local: a.child.is_some(),
        weight: a.weight,
        clock: a.clock,
        monitor_only: a.monitor_only,
    }
}

/// A plan name made safe for a folder name.
pub fn sanitize(name: &str) -> String {
    let s: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .collect();
    if s.is_empty() { "run".into() } else { s }
}
