//! The shell's calls to agents, behind one trait so that the shell runs unchanged against
//! in-process fakes on paused time: run a share (a stream back), stop, set the rate, and dial
//! a lost agent again. [`GrpcIo`] is the real one.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use futures_util::{FutureExt, Stream, StreamExt};
use stampede_common::proto::{RunEvent, SetRateRequest, StageShare, StopRequest};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::pool::{AgentHandle, AgentSecurity, check_allows, connect};
use crate::workload::RunWorkload;

/// How often a lost agent is dialled again.
pub const REJOIN_EVERY: Duration = Duration::from_secs(2);
/// How long an agent may take to answer a stop or a rate change.
const ANSWER_WITHIN: Duration = Duration::from_secs(2);

/// What an agent streams back for a share.
pub type EventStream = Pin<Box<dyn Stream<Item = Result<RunEvent, tonic::Status>> + Send>>;

/// Calls to agents.
pub trait AgentIo: Send + Sync {
    /// Runs `share` on `agent`; the stream of what it sends back, or why it refused.
    fn run(
        &self,
        agent: &AgentHandle,
        share: StageShare,
    ) -> BoxFuture<'static, Result<EventStream, tonic::Status>>;

    /// Tells `agent` to stop run `run_id`.
    fn stop(&self, agent: &AgentHandle, run_id: &str) -> BoxFuture<'static, ()>;

    /// Sets `agent`'s rate factor.
    fn set_rate(
        &self,
        agent: &AgentHandle,
        req: SetRateRequest,
    ) -> BoxFuture<'static, Result<(), tonic::Status>>;

    /// Dials a lost agent once: the handle when it answered, was handshaken and loaded.
    fn redial(&self, target: &RejoinTarget) -> BoxFuture<'static, Option<AgentHandle>>;
}

/// A lost agent to dial again.
#[derive(Debug, Clone)]
pub struct RejoinTarget {
    pub index: usize,
    pub addr: String,
    /// The `dns:` name it was found by: a restarted pod may come back at another address.
    pub origin: Option<String>,
    /// Other agents' addresses, not to be taken for this one.
    pub taken: Vec<String>,
    pub weight: f64,
    pub monitor_only: bool,
    /// The run's target, which the agent's allow-list (perhaps changed by a restart) must allow.
    pub target_url: String,
}

/// Agents over gRPC.
#[derive(Debug, Clone)]
pub struct GrpcIo {
    pub security: AgentSecurity,
    pub workload: RunWorkload,
}

impl AgentIo for GrpcIo {
    fn run(
        &self,
        agent: &AgentHandle,
        share: StageShare,
    ) -> BoxFuture<'static, Result<EventStream, tonic::Status>> {
        let mut client = agent.client.clone();
        async move {
            let response = client.run(share).await?;
            Ok(response.into_inner().boxed())
        }
        .boxed()
    }

    fn stop(&self, agent: &AgentHandle, run_id: &str) -> BoxFuture<'static, ()> {
        let mut client = agent.client.clone();
        let req = StopRequest {
            run_id: run_id.to_string(),
        };
        async move {
            let _ = client.stop(req).await;
        }
        .boxed()
    }

    fn set_rate(
        &self,
        agent: &AgentHandle,
        req: SetRateRequest,
    ) -> BoxFuture<'static, Result<(), tonic::Status>> {
        let mut client = agent.client.clone();
        async move { client.set_rate(req).await.map(|_| ()) }.boxed()
    }

    fn redial(&self, target: &RejoinTarget) -> BoxFuture<'static, Option<AgentHandle>> {
        let (target, io) = (target.clone(), self.clone());
        async move { io.dial(&target).await }.boxed()
    }
}

impl GrpcIo {
    /// Its old address first, then the name's addresses no other agent has.
    async fn dial(&self, target: &RejoinTarget) -> Option<AgentHandle> {
        let mut candidates = vec![target.addr.clone()];
        if let Some(name) = target
            .origin
            .as_deref()
            .and_then(|o| o.strip_prefix("dns:"))
            && let Ok(found) = tokio::net::lookup_host(name).await
        {
            candidates.extend(
                found
                    .map(|a| a.to_string())
                    .filter(|a| *a != target.addr && !target.taken.contains(a)),
            );
        }
        let mut joined = None;
        for addr in &candidates {
            let weight = Some(target.weight);
            if let Ok(h) = connect(target.index, addr, weight, None, &self.security).await {
                joined = Some(h);
                break;
            }
        }
        let mut handle = joined?;
        handle.origin.clone_from(&target.origin);
        handle.monitor_only = target.monitor_only;
        if !handle.monitor_only {
            if let Err(e) = check_allows(&handle, &target.target_url) {
                tracing::warn!(agent = %target.addr, "not rejoining: {e:#}");
                return None;
            }
            let one = std::slice::from_ref(&handle);
            crate::workload::load_on_agents(one, &self.workload)
                .await
                .ok()?;
        }
        Some(handle)
    }
}

/// Dials a lost agent every [`REJOIN_EVERY`] until it answers, then hands it back through
/// `back`; gives up when `stop` fires.
pub async fn rejoin(
    io: Arc<dyn AgentIo>,
    target: RejoinTarget,
    back: mpsc::UnboundedSender<AgentHandle>,
    stop: CancellationToken,
) {
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(REJOIN_EVERY) => {}
        }
        if let Some(handle) = io.redial(&target).await {
            let _ = back.send(handle);
            return;
        }
    }
}

/// Tells `agents` to stop the run, all at once: one that does not answer within 2 s is left
/// behind (its shares end with its stream).
pub async fn stop_all<'a>(
    io: &dyn AgentIo,
    agents: impl Iterator<Item = &'a AgentHandle>,
    run_id: &str,
) {
    let stops = agents.map(|a| {
        let stop = io.stop(a, run_id);
        async move {
            let _ = tokio::time::timeout(ANSWER_WITHIN, stop).await;
        }
    });
    futures_util::future::join_all(stops).await;
}

/// Tells one agent to stop, in the background: best effort, so that an agent that still runs
/// does not go on sending for a run that left it.
pub fn stop_one(io: &dyn AgentIo, agent: &AgentHandle, run_id: &str) {
    let stop = io.stop(agent, run_id);
    tokio::spawn(async move {
        let _ = tokio::time::timeout(ANSWER_WITHIN, stop).await;
    });
}

/// Sets the rate factor on `agents`, one after the other; the first refusal or silence ends it.
///
/// # Errors
/// Naming the agent that refused or did not answer.
pub async fn set_rate_all<'a>(
    io: &dyn AgentIo,
    agents: impl Iterator<Item = &'a AgentHandle>,
    run_id: &str,
    scale: f64,
) -> Result<(), String> {
    for a in agents {
        let req = SetRateRequest {
            run_id: run_id.to_string(),
            scale,
        };
        match tokio::time::timeout(ANSWER_WITHIN, io.set_rate(a, req)).await {
            Ok(Ok(())) => {}
            Ok(Err(status)) => {
                return Err(format!(
                    "agent {} refused: {}",
                    a.hello.agent_id,
                    status.message()
                ));
            }
            Err(_) => return Err(format!("agent {} did not answer", a.hello.agent_id)),
        }
    }
    Ok(())
}
