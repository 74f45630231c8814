//! Steering a running controller: rate changes typed on standard input (`+`, `-`, `qps 50`,
//! `scale 1.5`, `pause`, `resume`), pressed on the dashboard or sent over gRPC
//! (`controller set-qps`), delivered to the runner through one channel so that the runner alone
//! decides and records them; and the Controller service, which also streams the live view to
//! `controller watch`.

use std::net::SocketAddr;

use anyhow::Context;
use stampede_common::proto::controller_server::{Controller, ControllerServer};
use stampede_common::proto::{RateChange, RateReply, WatchRequest, rate_change};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};
use tokio_stream::wrappers::TcpListenerStream;
use tonic::{Request, Response, Status};

/// A change of the offered rate.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum RateCommand {
    /// This many requests/s for the running step.
    Qps(f64),
    /// This factor on the step's planned rate.
    Scale(f64),
    /// The current factor multiplied by this.
    Multiply(f64),
    /// Stop sending until the rate is set again: the factor becomes 0, so the pause is on the
    /// timeline (offered 0) and in summary.json's `rate_changes`.
    Pause,
    /// Send again at the step's planned rate.
    Resume,
}

/// One step of `+` and `-`: ten percent.
pub const NUDGE: f64 = 1.1;

impl RateCommand {
    /// Parses a line typed at the controller: `+`, `-`, `qps N` or `scale F`.
    ///
    /// # Errors
    /// Says what is accepted.
    pub fn parse(line: &str) -> Result<RateCommand, String> {
        let usage =
            "type + or - (ten percent up or down), qps N, scale F, pause or resume, then Enter";
        let mut words = line.split_whitespace();
        let cmd = match (words.next(), words.next()) {
            (Some("+"), None) => RateCommand::Multiply(NUDGE),
            (Some("-"), None) => RateCommand::Multiply(1.0 / NUDGE),
            (Some("pause" | "p"), None) => return Ok(RateCommand::Pause),
            (Some("resume"), None) => return Ok(RateCommand::Resume),
            (Some("qps"), Some(v)) => RateCommand::Qps(v.parse().map_err(|_| usage.to_string())?),
            (Some("scale"), Some(v)) => {
                RateCommand::Scale(v.parse().map_err(|_| usage.to_string())?)
            }
            _ => return Err(usage.to_string()),
        };
        let value = match cmd {
            RateCommand::Qps(v) | RateCommand::Scale(v) | RateCommand::Multiply(v) => v,
            RateCommand::Pause | RateCommand::Resume => 1.0,
        };
        if !(value.is_finite() && value > 0.0) {
            return Err(format!("the value must be above 0; {usage}"));
        }
        Ok(cmd)
    }

    /// The new factor, given the current one and the step's planned rate (`None`: closed loop).
    pub fn apply(self, current: f64, planned_qps: Option<f64>) -> Option<f64> {
        let next = match self {
            RateCommand::Qps(q) => q / planned_qps?,
            RateCommand::Scale(s) => s,
            RateCommand::Multiply(m) => current * m,
            RateCommand::Pause => return Some(0.0),
            RateCommand::Resume => 1.0,
        };
        (next.is_finite() && next > 0.0 && next <= 1000.0).then_some(next)
    }
}

/// A command with the channel its answer goes back on.
pub type ControlRequest = (RateCommand, oneshot::Sender<Result<RateReply, String>>);

/// Reads rate commands from standard input until it closes. Lines that are not commands get a
/// hint on stderr.
pub fn spawn_stdin_reader(tx: mpsc::Sender<ControlRequest>) {
    tokio::spawn(async move {
        let mut lines = BufReader::new(tokio::io::stdin()).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            if line.trim().is_empty() {
                continue;
            }
            match RateCommand::parse(&line) {
                Ok(cmd) => {
                    let (reply, answer) = oneshot::channel();
                    if tx.send((cmd, reply)).await.is_err() {
                        return;
                    }
                    match answer.await {
                        Ok(Ok(r)) => eprintln!(
                            "rate: {} now at {:.2}x ({:.2} requests/s)",
                            r.step, r.scale, r.qps
                        ),
                        Ok(Err(why)) => eprintln!("rate not changed: {why}"),
                        Err(_) => return,
                    }
                }
                Err(usage) => eprintln!("{usage}"),
            }
        }
    });
}

struct ControlService {
    tx: mpsc::Sender<ControlRequest>,
    live: crate::live::LiveHub,
}

#[tonic::async_trait]
impl Controller for ControlService {
    type WatchStream = crate::live::watch::WatchStream;

    async fn watch(
        &self,
        _request: Request<WatchRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        Ok(Response::new(crate::live::watch::stream(&self.live)))
    }

    async fn set_rate(&self, request: Request<RateChange>) -> Result<Response<RateReply>, Status> {
        let cmd = match request.into_inner().change {
            Some(rate_change::Change::Qps(q)) => RateCommand::Qps(q),
            Some(rate_change::Change::Scale(s)) => RateCommand::Scale(s),
            Some(rate_change::Change::Multiply(m)) => RateCommand::Multiply(m),
            Some(rate_change::Change::Pause(true)) => RateCommand::Pause,
            Some(rate_change::Change::Pause(false)) => RateCommand::Resume,
            None => {
                return Err(Status::invalid_argument(
                    "no change given: qps, scale or multiply",
                ));
            }
        };
        let (reply, answer) = oneshot::channel();
        self.tx
            .send((cmd, reply))
            .await
            .map_err(|_| Status::unavailable("the run has ended"))?;
        match answer.await {
            Ok(Ok(r)) => Ok(Response::new(r)),
            Ok(Err(why)) => Err(Status::failed_precondition(why)),
            Err(_) => Err(Status::unavailable("the run has ended")),
        }
    }
}

/// Serves the Controller service on `addr` for as long as the run lasts: rate changes go to
/// `tx`, watchers get `live`'s events.
///
/// # Errors
/// When the address cannot be bound.
pub async fn serve_control(
    addr: SocketAddr,
    tx: mpsc::Sender<ControlRequest>,
    live: crate::live::LiveHub,
) -> anyhow::Result<SocketAddr> {
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr} for control"))?;
    let bound = listener
        .local_addr()
        .context("cannot read the control address")?;
    tokio::spawn(async move {
        let _ = tonic::transport::Server::builder()
            .add_service(ControllerServer::new(ControlService { tx, live }))
            .serve_with_incoming(TcpListenerStream::new(listener))
            .await;
    });
    Ok(bound)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_parse_and_apply() {
        assert_eq!(
            RateCommand::parse("+").unwrap(),
            RateCommand::Multiply(NUDGE)
        );
        assert_eq!(
            RateCommand::parse(" qps 50 ").unwrap(),
            RateCommand::Qps(50.0)
        );
        assert!(RateCommand::parse("qps -1").is_err());
        assert!(RateCommand::parse("faster").is_err());
        assert_eq!(RateCommand::Qps(50.0).apply(1.0, Some(25.0)), Some(2.0));
        assert_eq!(
            RateCommand::Qps(50.0).apply(1.0, None),
            None,
            "closed loop has no rate"
        );
        assert_eq!(RateCommand::Multiply(2.0).apply(1.5, None), Some(3.0));
        assert_eq!(RateCommand::Scale(0.5).apply(3.0, Some(10.0)), Some(0.5));
        assert_eq!(RateCommand::parse("pause").unwrap(), RateCommand::Pause);
        assert_eq!(RateCommand::Pause.apply(1.5, Some(10.0)), Some(0.0));
        assert_eq!(
            RateCommand::Multiply(NUDGE).apply(0.0, Some(10.0)),
            None,
            "a paused step does not change by a factor"
        );
        assert_eq!(RateCommand::Resume.apply(0.0, Some(10.0)), Some(1.0));
        assert_eq!(RateCommand::Scale(2.0).apply(0.0, Some(10.0)), Some(2.0));
    }
}
