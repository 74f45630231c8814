//! The readers of agents' streams: each share's stream is read by its own task, which notes
//! when each message arrived (so a busy coordinator cannot make an agent look silent) and
//! passes what it read to the shell as an [`Input`].

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures_util::StreamExt;
use stampede_common::proto::{RunEvent, StageShare};
use stampede_common::units::micros;
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::pool::AgentHandle;
use crate::runner::agent_io::AgentIo;
use crate::runner::messages::Input;

/// When each agent's last message arrived, in microseconds since `base` (0: never).
#[derive(Debug)]
pub struct Heard {
    base: Instant,
    at: Vec<AtomicU64>,
}

impl Heard {
    /// Nothing heard yet from any of `agents` agents.
    pub fn new(agents: usize) -> Self {
        Heard {
            base: Instant::now(),
            at: (0..agents).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    /// Agent `i` was heard from now.
    pub fn note(&self, i: usize) {
        if let Some(a) = self.at.get(i) {
            a.fetch_max(micros(self.base.elapsed()).max(1), Ordering::Relaxed);
        }
    }

    /// When each agent was last heard from.
    pub fn snapshot(&self) -> Vec<Option<Instant>> {
        self.at
            .iter()
            .map(|a| match a.load(Ordering::Relaxed) {
                0 => None,
                us => Some(self.base + Duration::from_micros(us)),
            })
            .collect()
    }
}

/// Runs `share` on agent `i` for step `k` and forwards what it streams to `tx`.
pub fn forward(
    io: &dyn AgentIo,
    agent: &AgentHandle,
    share: StageShare,
    (k, i): (usize, usize),
    tx: &mpsc::Sender<Input>,
    heard: &Arc<Heard>,
) {
    let run = io.run(agent, share);
    let tx = tx.clone();
    let heard = Arc::clone(heard);
    let agent_id = agent.hello.agent_id.clone();
    tokio::spawn(async move {
        let error = match run.await {
            Err(status) => Some(format!(
                "agent {agent_id} refused the step: {}",
                status.message()
            )),
            Ok(mut stream) => loop {
                let message = stream.next().await;
                heard.note(i);
                match message {
                    Some(Ok(RunEvent { event: Some(event) })) => {
                        let input = Input::Report {
                            step: k,
                            agent: i,
                            event: Box::new(event),
                        };
                        if tx.send(input).await.is_err() {
                            return;
                        }
                        // A full queue (a busy coordinator) held this reader: the agent was not
                        // silent meanwhile.
                        heard.note(i);
                    }
                    Some(Ok(_)) => {}
                    None => break None,
                    Some(Err(status)) => {
                        break Some(format!(
                            "agent {agent_id} stream failed: {}",
                            status.message()
                        ));
                    }
                }
            },
        };
        let _ = tx
            .send(Input::Ended {
                step: k,
                agent: i,
                error,
            })
            .await;
    });
}
