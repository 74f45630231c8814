//! `controller watch ADDR`: a run's live view from another process, over the Controller
//! service's `Watch` stream; and the server side of that stream.
//!
//! Each watcher has a task of its own that copies the hub's events into its gRPC stream. The
//! runner never waits for it: a watcher that reads slowly falls behind on the hub's bounded
//! buffer, loses the oldest events and is told how many; one that never reads only holds its
//! own task; one that goes away ends it.

use std::io::{IsTerminal, Write};
use std::time::Duration;

use stampede_common::proto::controller_client::ControllerClient;
use stampede_common::proto::{self, RateChange, WatchRequest, rate_change::Change};
use tokio::sync::{broadcast, mpsc};
use tokio_stream::wrappers::ReceiverStream;
use tonic::Status;

use crate::command::RateCommand;
use crate::hub::LiveHub;
use crate::state::{LiveEvent, LiveState};
use crate::tui::{Dashboard, Quit};
use crate::{plain, wire};
use stampede_results::exit;

/// Updates queued for one watcher's connection beyond what the transport holds.
const QUEUE: usize = 64;

/// The stream a `Watch` call answers with.
pub type WatchStream = ReceiverStream<Result<proto::LiveUpdate, Status>>;

/// Starts copying `hub`'s events (what happened so far, then each new one) to a new watcher.
pub fn stream(hub: &LiveHub) -> WatchStream {
    let (past, mut rx) = hub.subscribe();
    let guard = hub.watcher();
    let (tx, out) = mpsc::channel(QUEUE);
    let hub = hub.clone();
    tokio::spawn(async move {
        let _guard = guard;
        for ev in past {
            if tx.send(Ok(wire::to_proto(&ev))).await.is_err() {
                return;
            }
            if matches!(*ev, LiveEvent::Ended(_)) {
                return;
            }
        }
        loop {
            let update = match rx.recv().await {
                Ok(ev) => {
                    let ended = matches!(*ev, LiveEvent::Ended(_));
                    if tx.send(Ok(wire::to_proto(&ev))).await.is_err() || ended {
                        return;
                    }
                    continue;
                }
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    hub.add_missed(n);
                    wire::to_proto(&LiveEvent::Missed(n))
                }
                Err(broadcast::error::RecvError::Closed) => return,
            };
            if tx.send(Ok(update)).await.is_err() {
                return;
            }
        }
    });
    ReceiverStream::new(out)
}

/// Arguments of `controller watch`.
#[derive(Debug, Clone)]
pub struct WatchOptions {
    /// The controller's `--control-listen` address.
    pub addr: String,
    /// Plain lines even on a terminal.
    pub plain: bool,
}

/// Runs `controller watch`; returns the exit code: 0 once the run ended, 1 when the controller
/// cannot be reached or went away first.
pub async fn watch_command(opts: WatchOptions, out: &mut (impl Write + Send)) -> u8 {
    let url = format!("http://{}", opts.addr);
    let mut client = match ControllerClient::connect(url).await {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: cannot reach the controller at {}: {e}", opts.addr);
            return exit::ERROR;
        }
    };
    let stream = match client.watch(WatchRequest {}).await {
        Ok(s) => s.into_inner(),
        Err(status) => {
            eprintln!(
                "error: the controller at {} cannot be watched: {}",
                opts.addr,
                status.message()
            );
            return exit::ERROR;
        }
    };
    if opts.plain || !std::io::stdout().is_terminal() {
        watch_plain(stream, out).await
    } else {
        watch_dashboard(stream, client, &opts.addr).await
    }
}

async fn watch_plain(
    mut stream: tonic::Streaming<proto::LiveUpdate>,
    out: &mut (impl Write + Send),
) -> u8 {
    let mut state = LiveState::new();
    loop {
        match stream.message().await {
            Ok(Some(u)) => {
                let Some(ev) = wire::from_proto(u) else {
                    continue;
                };
                state.apply(&ev);
                for line in plain::event_lines(&ev) {
                    if writeln!(out, "{line}").is_err() {
                        return exit::ERROR;
                    }
                }
                let _ = out.flush();
                if matches!(ev, LiveEvent::Ended(_)) {
                    let _ = plain::steps_table(out, &state.finished);
                    let _ = out.flush();
                    return exit::PASS;
                }
            }
            Ok(None) | Err(_) => {
                let _ = writeln!(out, "the controller went away before the run ended");
                return exit::ERROR;
            }
        }
    }
}

async fn watch_dashboard(
    mut stream: tonic::Streaming<proto::LiveUpdate>,
    client: ControllerClient<tonic::transport::Channel>,
    addr: &str,
) -> u8 {
    let hub = LiveHub::new(true);
    // The keys' rate commands go to the controller as SetRate calls.
    let (tx, mut rx) = mpsc::channel::<crate::command::ControlRequest>(4);
    hub.set_control(tx);
    tokio::spawn(async move {
        while let Some((cmd, reply)) = rx.recv().await {
            let change = match cmd {
                RateCommand::Qps(q) => Change::Qps(q),
                RateCommand::Scale(s) => Change::Scale(s),
                RateCommand::Multiply(m) => Change::Multiply(m),
                RateCommand::Pause => Change::Pause(true),
                RateCommand::Resume => Change::Pause(false),
            };
            let answer = client
                .clone()
                .set_rate(RateChange {
                    change: Some(change),
                })
                .await
                .map(tonic::Response::into_inner)
                .map_err(|s| s.message().to_string());
            let _ = reply.send(answer);
        }
    });
    let dashboard = match Dashboard::start(hub.clone(), Quit::Leave, addr.to_string()) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("error: cannot draw on this terminal ({e}); use --plain");
            return exit::ERROR;
        }
    };
    let mut ended = false;
    // The stream broke before the run's end.
    let mut gone = false;
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    while !dashboard.finished() {
        tokio::select! {
            m = stream.message(), if !ended => match m {
                Ok(Some(u)) => {
                    if let Some(ev) = wire::from_proto(u) {
                        ended = matches!(ev, LiveEvent::Ended(_));
                        hub.publish(ev);
                    }
                }
                Ok(None) | Err(_) => {
                    ended = true;
                    gone = true;
                    hub.publish(LiveEvent::Note("the controller went away".into()));
                }
            },
            _ = tick.tick() => {}
        }
    }
    dashboard.close();
    let state = hub.state().borrow().clone();
    if !state.finished.is_empty() {
        let _ = plain::steps_table(&mut std::io::stdout(), &state.finished);
    }
    // Leaving with q is fine; losing the controller before the run's end is not.
    if gone && state.ended.is_none() {
        exit::ERROR
    } else {
        exit::PASS
    }
}
