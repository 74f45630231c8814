//! Steering a running controller: rate changes typed on standard input (`+`, `-`, `qps 50`,
//! `scale 1.5`, `pause`, `resume`), pressed on the dashboard or sent over gRPC
//! (`controller set-qps`), delivered to the runner through one channel so that the runner alone
//! decides and records them; and the Controller service, which also streams the live view to
//! `controller watch`.

use std::net::SocketAddr;

use anyhow::Context;
use stampede_common::proto::controller_server::{Controller, ControllerServer};
use stampede_common::proto::{RateChange, RateReply, WatchRequest};
use stampede_live::command::RateCommand;
pub use stampede_live::command::{ControlRequest, NUDGE};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};
use tokio_stream::wrappers::TcpListenerStream;
use tonic::{Request, Response, Status};

/// Reads rate commands from standard input until it closes. Lines that are not commands get a
/// hint on stderr.
pub fn spawn_stdin_reader(tx: mpsc::Sender<ControlRequest>) {
    tokio::spawn(async move {
        let mut lines = BufReader::new(tokio::io::stdin()).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            if line.trim().is_empty() {
                continue;
            }
            match line.parse::<RateCommand>() {
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
        let cmd = RateCommand::try_from(request.into_inner()).map_err(Status::invalid_argument)?;
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
