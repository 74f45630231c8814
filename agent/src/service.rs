//! The agent's gRPC service: Hello, Run and Stop. Status codes are chosen here, in one place.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use stampede_common::handshake::{PROTOCOL_VERSION, STAMPEDE_VERSION};
use stampede_common::proto::agent_server::Agent;
use stampede_common::proto::{
    HelloReply, HelloRequest, LoadWorkloadReply, LoadWorkloadRequest, RunEvent, SetRateReply,
    SetRateRequest, StageShare, StopReply, StopRequest,
};
use stampede_common::remote::{AllowedTarget, check_target};
use tokio::sync::mpsc;
use tokio_stream::Stream;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use crate::client::http_pool;
use crate::monitor_only::prepare_monitor_only;
use crate::samplers::MonitorEnv;
use crate::share::{ShareStops, prepare};

/// Events buffered per share between the recorder and the gRPC stream.
const EVENT_BUFFER: usize = 1024;

/// Who this agent is, as Hello reports it.
#[derive(Debug, Clone)]
pub struct AgentIdentity {
    pub id: String,
    pub host: String,
    pub cores: u32,
}

impl AgentIdentity {
    /// This process on this host, named `id` or after the host and process id.
    pub fn detect(id: Option<String>) -> Self {
        let host = std::env::var("HOSTNAME")
            .ok()
            .or_else(|| {
                std::fs::read_to_string("/etc/hostname")
                    .ok()
                    .map(|h| h.trim().to_string())
            })
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "localhost".to_string());
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get() as u32);
        let id = id.unwrap_or_else(|| format!("{host}-{}", std::process::id()));
        AgentIdentity { id, host, cores }
    }
}

/// Running shares' stop signals by run id, each share with its own number.
type RunningShares = HashMap<String, Vec<(u64, ShareStops)>>;

/// The Agent service.
#[derive(Clone)]
pub struct AgentService {
    identity: AgentIdentity,
    /// Running shares by run id. Touched only by Run and Stop, never on the request path.
    runs: Arc<Mutex<RunningShares>>,
    next_share: Arc<AtomicU64>,
    /// Connection pools by connect timeout, reused across steps so connections stay warm.
    pools: Arc<Mutex<HashMap<u64, reqwest::Client>>>,
    /// What the samplers share: NVML, loaded once.
    monitor: MonitorEnv,
    /// Targets this agent may send to and scrape; empty: any.
    allowed: Arc<Vec<AllowedTarget>>,
}

impl AgentService {
    /// A service for `identity`, with this host's GPUs looked up through NVML.
    pub fn new(identity: AgentIdentity) -> Self {
        Self::with_monitor(identity, MonitorEnv::detect())
    }

    /// A service whose samplers use `monitor`.
    pub fn with_monitor(identity: AgentIdentity, monitor: MonitorEnv) -> Self {
        AgentService {
            identity,
            runs: Arc::default(),
            pools: Arc::default(),
            next_share: Arc::default(),
            monitor,
            allowed: Arc::default(),
        }
    }

    /// Limits the targets this agent sends to (and the endpoints it scrapes) to `allowed`.
    #[must_use]
    pub fn allow_targets(mut self, allowed: Vec<AllowedTarget>) -> Self {
        self.allowed = Arc::new(allowed);
        self
    }

    /// Refuses a share whose target or scraped endpoints are not on the allow-list.
    fn check_allowed(&self, share: &StageShare) -> Result<(), Status> {
        let target = share.target.as_ref().map(|t| t.base_url.as_str());
        let scraped = share
            .monitor
            .iter()
            .flat_map(|m| m.server_metrics_urls.iter().map(String::as_str));
        for url in target.into_iter().chain(scraped) {
            check_target(&self.allowed, url).map_err(|why| {
                tracing::warn!(%url, "share refused by the allow-list");
                Status::permission_denied(format!("agent {}: {why}", self.identity.id))
            })?;
        }
        Ok(())
    }

    fn pool(&self, connect_timeout_us: u64) -> Result<reqwest::Client, Status> {
        let mut pools = self.pools.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = pools.get(&connect_timeout_us) {
            return Ok(c.clone());
        }
        let timeout = if connect_timeout_us == 0 {
            Duration::from_secs(10)
        } else {
            Duration::from_micros(connect_timeout_us)
        };
        let client = http_pool(timeout).map_err(|e| Status::internal(e.to_string()))?;
        pools.insert(connect_timeout_us, client.clone());
        Ok(client)
    }
}

type EventStream = Pin<Box<dyn Stream<Item = Result<RunEvent, Status>> + Send>>;

#[tonic::async_trait]
impl Agent for AgentService {
    async fn hello(&self, request: Request<HelloRequest>) -> Result<Response<HelloReply>, Status> {
        let req = request.into_inner();
        if req.protocol_version != PROTOCOL_VERSION {
            return Err(Status::failed_precondition(format!(
                "protocol mismatch: controller {} speaks protocol {}, agent {} speaks protocol {}",
                req.controller_version, req.protocol_version, STAMPEDE_VERSION, PROTOCOL_VERSION
            )));
        }
        Ok(Response::new(HelloReply {
            protocol_version: PROTOCOL_VERSION,
            agent_version: STAMPEDE_VERSION.to_string(),
            agent_id: self.identity.id.clone(),
            host: self.identity.host.clone(),
            cores: self.identity.cores,
            gpus: self
                .monitor
                .gpus
                .as_ref()
                .map(|g| g.inventory().to_vec())
                .unwrap_or_default(),
            clock_unix_us: crate::security::agent_clock_us(),
            gpu_unavailable: self.monitor.gpu_unavailable.clone().unwrap_or_default(),
            allowed_targets: self.allowed.iter().map(ToString::to_string).collect(),
        }))
    }

    type RunStream = EventStream;

    async fn run(&self, request: Request<StageShare>) -> Result<Response<Self::RunStream>, Status> {
        let share = request.into_inner();
        self.check_allowed(&share)?;
        let (tx, rx) = mpsc::channel(EVENT_BUFFER);
        let (stops, running): (ShareStops, Pin<Box<dyn Future<Output = ()> + Send>>) =
            if share.monitor_only {
                let prepared = prepare_monitor_only(&share, tx, &self.monitor)?;
                (prepared.stops(), Box::pin(prepared.run()))
            } else {
                let pool = self.pool(share.target.as_ref().map_or(0, |t| t.connect_timeout_us))?;
                let prepared = prepare(&share, pool, tx, &self.monitor)?;
                (prepared.stops(), Box::pin(prepared.run()))
            };
        let share_id = self.next_share.fetch_add(1, Ordering::Relaxed);
        tracing::info!(run = %share.run_id, stage = %share.stage_name, "share starting");
        {
            let mut runs = self.runs.lock().unwrap_or_else(|p| p.into_inner());
            runs.entry(share.run_id.clone())
                .or_default()
                .push((share_id, stops));
        }
        let runs = Arc::clone(&self.runs);
        let run_id = share.run_id.clone();
        tokio::spawn(async move {
            running.await;
            let mut runs = runs.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(list) = runs.get_mut(&run_id) {
                list.retain(|(id, _)| *id != share_id);
                if list.is_empty() {
                    runs.remove(&run_id);
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn set_rate(
        &self,
        request: Request<SetRateRequest>,
    ) -> Result<Response<SetRateReply>, Status> {
        let req = request.into_inner();
        // 0 pauses: nothing is sent until the scale is set again.
        if !(req.scale.is_finite() && req.scale >= 0.0 && req.scale <= 1000.0) {
            return Err(Status::invalid_argument(format!(
                "rate scale must be 0 (pause) or above, at most 1000, got {}",
                req.scale
            )));
        }
        let adjusted = {
            let runs = self.runs.lock().unwrap_or_else(|p| p.into_inner());
            let list = runs.get(&req.run_id).cloned().unwrap_or_default();
            for (_, s) in &list {
                s.rate_scale.send_replace(req.scale);
            }
            list.len()
        };
        tracing::info!(run = %req.run_id, scale = req.scale, shares = adjusted, "rate changed");
        Ok(Response::new(SetRateReply {
            shares_adjusted: u32::try_from(adjusted).unwrap_or(u32::MAX),
        }))
    }

    async fn load_workload(
        &self,
        request: Request<LoadWorkloadRequest>,
    ) -> Result<Response<LoadWorkloadReply>, Status> {
        let json = request.into_inner().spec_json;
        // Loading a tokenizer and counting a dataset take a while: off the runtime's threads.
        let engine = tokio::task::spawn_blocking(move || crate::workload::load(&json))
            .await
            .map_err(|e| Status::internal(format!("building the workload failed: {e}")))?
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        tracing::info!(workload = %engine.id(), tokenizer = %engine.tokenizer_name(), "workload loaded");
        Ok(Response::new(LoadWorkloadReply {
            workload_id: engine.id().to_string(),
            tokenizer: engine.tokenizer_name().to_string(),
            classes: engine.class_names(),
        }))
    }

    async fn stop(&self, request: Request<StopRequest>) -> Result<Response<StopReply>, Status> {
        let run_id = request.into_inner().run_id;
        let stopped = {
            let runs = self.runs.lock().unwrap_or_else(|p| p.into_inner());
            let list = runs.get(&run_id).cloned().unwrap_or_default();
            for (_, s) in &list {
                s.stop();
            }
            list.len()
        };
        tracing::info!(run = %run_id, shares = stopped, "stop requested");
        Ok(Response::new(StopReply {
            shares_stopped: u32::try_from(stopped).unwrap_or(u32::MAX),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service() -> AgentService {
        AgentService::new(AgentIdentity {
            id: "t".into(),
            host: "h".into(),
            cores: 1,
        })
    }

    #[tokio::test]
    async fn a_protocol_mismatch_names_both_versions() {
        let err = service()
            .hello(Request::new(HelloRequest {
                protocol_version: PROTOCOL_VERSION + 1,
                controller_version: "9.9.9".into(),
            }))
            .await
            .unwrap_err();
        assert_eq!(err.code(), tonic::Code::FailedPrecondition);
        let msg = err.message();
        assert!(
            msg.contains("9.9.9") && msg.contains(STAMPEDE_VERSION),
            "{msg}"
        );
        assert!(
            msg.contains(&format!("protocol {}", PROTOCOL_VERSION + 1))
                && msg.contains(&format!("protocol {PROTOCOL_VERSION}")),
            "{msg}"
        );
    }

    async fn hello(service: &AgentService) -> HelloReply {
        service
            .hello(Request::new(HelloRequest {
                protocol_version: PROTOCOL_VERSION,
                controller_version: STAMPEDE_VERSION.into(),
            }))
            .await
            .unwrap()
            .into_inner()
    }

    #[tokio::test]
    async fn a_matching_handshake_answers_with_a_clock_reading() {
        let reply = hello(&service()).await;
        assert_eq!(reply.agent_id, "t");
        assert!((reply.clock_unix_us - stampede_common::units::wall_clock_us()).abs() < 5_000_000);
        assert!(reply.allowed_targets.is_empty());
    }

    #[tokio::test]
    async fn a_share_for_a_target_off_the_allow_list_is_refused() {
        let allowed = vec![AllowedTarget::parse("vllm.internal:8000").unwrap()];
        let service = service().allow_targets(allowed);
        let share = |url: &str, scrape: &str| StageShare {
            target: Some(stampede_common::proto::Target {
                base_url: url.into(),
                ..Default::default()
            }),
            monitor: Some(stampede_common::proto::MonitorConfig {
                server_metrics_urls: vec![scrape.into()],
                ..Default::default()
            }),
            ..Default::default()
        };
        let ok = "http://vllm.internal:8000/v1";
        assert!(
            service
                .check_allowed(&share(ok, "http://vllm.internal:8000/metrics"))
                .is_ok()
        );
        let err = match service
            .run(Request::new(share("http://other:8000/v1", ok)))
            .await
        {
            Err(e) => e,
            Ok(_) => panic!("a target off the allow-list was accepted"),
        };
        assert_eq!(err.code(), tonic::Code::PermissionDenied);
        assert!(err.message().contains("other:8000"), "{}", err.message());
        // Scraping is sending too: an endpoint off the list is refused as well.
        let err = service
            .check_allowed(&share(ok, "http://10.0.0.9:9400/metrics"))
            .unwrap_err();
        assert!(err.message().contains("10.0.0.9:9400"), "{}", err.message());
        let hello = hello(&service).await;
        assert_eq!(hello.allowed_targets, vec!["vllm.internal:8000"]);
    }

    #[tokio::test]
    async fn a_bad_rate_scale_is_refused() {
        let err = service()
            .set_rate(Request::new(SetRateRequest {
                run_id: "r".into(),
                scale: -1.0,
            }))
            .await
            .unwrap_err();
        assert_eq!(err.code(), tonic::Code::InvalidArgument);
    }
}
