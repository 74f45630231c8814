//! The agents of a run: started locally or given by address, connected, greeted, and their
//! clocks estimated against the controller's.

use std::time::Duration;

use anyhow::{Context, bail};
use serde::Serialize;
use stampede_common::handshake::{PROTOCOL_VERSION, STAMPEDE_VERSION};
use stampede_common::proto::agent_client::AgentClient;
use stampede_common::proto::{HelloReply, HelloRequest};
use stampede_common::units::wall_clock_us;
use tonic::transport::{Channel, Endpoint};

use crate::children::{ChildGuard, sibling_binary, spawn_listening};

/// Hello exchanges used to estimate an agent's clock offset; the one with the shortest round
/// trip wins, since its midpoint is the tightest bound.
const CLOCK_SAMPLES: usize = 5;

/// One connected agent.
#[derive(Debug)]
pub struct AgentHandle {
    pub index: usize,
    pub addr: String,
    pub client: AgentClient<Channel>,
    pub hello: HelloReply,
    pub clock: ClockEstimate,
    /// The local process, when the controller started it.
    pub child: Option<ChildGuard>,
    /// Samples its host only and sends no request (`[monitor] agents`).
    pub monitor_only: bool,
}

/// An agent's clock against the controller's: `agent = controller + offset`, within
/// `± uncertainty` (half the best round trip).
#[derive(Debug, Clone, Copy, Serialize)]
pub struct ClockEstimate {
    pub offset_us: i64,
    pub uncertainty_us: u64,
    pub rtt_us: u64,
}

/// A clock offset from one exchange: sent at `t0`, answered with `agent_clock`, back at `t1`,
/// all in microseconds.
pub fn offset_from_exchange(t0: i64, agent_clock: i64, t1: i64) -> ClockEstimate {
    let rtt = (t1 - t0).max(0);
    ClockEstimate {
        offset_us: agent_clock - (t0 + rtt / 2),
        uncertainty_us: (rtt / 2).unsigned_abs(),
        rtt_us: rtt.unsigned_abs(),
    }
}

/// Starts `count` local agents as child processes.
///
/// # Errors
/// When the agent binary is missing or an agent does not start.
pub async fn spawn_local(count: usize) -> anyhow::Result<Vec<ChildGuard>> {
    let binary = sibling_binary("agent", "STAMPEDE_AGENT_BIN")?;
    let mut children = Vec::with_capacity(count);
    for i in 0..count {
        let args = vec!["--id".to_string(), format!("local-{i}")];
        children.push(spawn_listening(&format!("agent local-{i}"), &binary, &args).await?);
    }
    Ok(children)
}

/// Connects to an agent, checks its protocol version and estimates its clock.
///
/// # Errors
/// When it cannot be reached or speaks another protocol version (both versions named).
pub async fn connect(
    index: usize,
    addr: &str,
    child: Option<ChildGuard>,
) -> anyhow::Result<AgentHandle> {
    let url = if addr.starts_with("http://") || addr.starts_with("https://") {
        addr.to_string()
    } else {
        format!("http://{addr}")
    };
    let channel = Endpoint::from_shared(url.clone())
        .with_context(|| format!("agent address {addr:?} is not valid"))?
        .connect_timeout(Duration::from_secs(5))
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(1))
        .keep_alive_timeout(Duration::from_secs(3))
        .keep_alive_while_idle(true)
        .connect()
        .await
        .with_context(|| format!("cannot connect to agent {addr}"))?;
    let mut client = AgentClient::new(channel).max_decoding_message_size(64 << 20);
    let mut best: Option<(ClockEstimate, HelloReply)> = None;
    for _ in 0..CLOCK_SAMPLES {
        let t0 = wall_clock_us();
        let reply = client
            .hello(HelloRequest {
                protocol_version: PROTOCOL_VERSION,
                controller_version: STAMPEDE_VERSION.to_string(),
            })
            .await;
        let t1 = wall_clock_us();
        let reply = match reply {
            Ok(r) => r.into_inner(),
            Err(status) => bail!("agent {addr} refused the handshake: {}", status.message()),
        };
        if reply.protocol_version != PROTOCOL_VERSION {
            bail!(
                "protocol mismatch: controller {STAMPEDE_VERSION} speaks protocol {PROTOCOL_VERSION}, agent {addr} ({}) speaks protocol {}",
                reply.agent_version,
                reply.protocol_version
            );
        }
        let estimate = offset_from_exchange(t0, reply.clock_unix_us, t1);
        if best
            .as_ref()
            .is_none_or(|(b, _)| estimate.rtt_us < b.rtt_us)
        {
            best = Some((estimate, reply));
        }
    }
    let (clock, hello) = best.context("no handshake answer")?;
    Ok(AgentHandle {
        index,
        addr: addr.to_string(),
        client,
        hello,
        clock,
        child,
        monitor_only: false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offset_is_the_agent_clock_minus_the_midpoint() {
        // Sent at 1000, agent read 5600, back at 1200: midpoint 1100, so agent = controller + 4500.
        let e = offset_from_exchange(1000, 5600, 1200);
        assert_eq!((e.offset_us, e.uncertainty_us, e.rtt_us), (4500, 100, 200));
        let behind = offset_from_exchange(1000, 100, 1010);
        assert_eq!(behind.offset_us, -905);
    }
}
