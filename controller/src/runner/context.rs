//! What every part of a run reads and none changes: the plan, the resolved target, the run's
//! id, the monitoring and the workload.

use stampede_common::plan::Plan;

use crate::monitor::MonitorRun;
use crate::pool::AgentSecurity;
use crate::workload::RunWorkload;

/// The run's fixed facts, resolved before its first step.
#[derive(Debug)]
pub struct RunContext<'a> {
    pub plan: &'a Plan,
    pub model: String,
    pub base_url: String,
    pub api_key: Option<String>,
    pub run_id: String,
    /// What the agents sample, and how samples become results.
    pub monitoring: MonitorRun,
    /// The workload, loaded on every load agent.
    pub workload: RunWorkload,
    /// How agents are reached (and reached again when they rejoin).
    pub security: AgentSecurity,
}
