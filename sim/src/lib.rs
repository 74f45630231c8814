//! Stampede's simulated LLM service: an OpenAI-compatible HTTP server whose timing behaves
//! like a GPU inference server, for trying plans without a GPU and for testing Stampede.
//!
//! It serves `GET /v1/models`, `POST /v1/chat/completions` and `POST /v1/completions` (JSON or
//! SSE streaming in vLLM's exact chunk format), `GET /metrics` (Prometheus text with vLLM's and
//! DCGM's names) and `GET /health`. Tokens come either from the deterministic preset (fixed
//! time to first token and gap, no queueing) or from an engine model of vLLM's continuous
//! batching, and faults can be injected by rate or schedule.
//!
//! Run it in-process with [`serve`] on a listener bound to `127.0.0.1:0`, or as the `sim`
//! binary ([`main`], flags in [`SimArgs`]).
//!
//! Modules:
//!
//! - [`config`]: [`SimConfig`] (a plan's `[target.sim]` table, or `--config FILE`), resolved
//!   against a preset into a validated [`ResolvedConfig`].
//! - [`presets`]: the named presets and the public figures behind them.
//! - [`engine`]: the batching model, a pure clock-injected state machine.
//! - `driver`: the task that owns the engine and runs its steps on the real clock.
//! - `pacer` (the `stampede-pacer` crate, shared with the agent): a timer thread that releases tokens within microseconds of their due time.
//! - `stream`: one response's tokens, faults applied, as an SSE body.
//! - `openai`: request parsing and validation, vLLM's chunk format, error bodies.
//! - `api`: the HTTP routes and the state they share.
//! - `conn`: connections that faults can reset.
//! - [`faults`]: fault specs and the seeded injector.
//! - [`metrics`]: counters and histograms, rendered for `/metrics`.
//! - [`tokens`]: prompt token counting (a documented approximation) and output words.
//! - [`duration`]: "50ms"-style durations for flags and files.
//! - `cli`: the command line and `main`.

mod api;
mod cli;
pub mod config;
mod conn;
mod driver;
pub mod duration;
pub mod engine;
pub mod faults;
pub mod metrics;
mod openai;
use stampede_pacer as pacer;
pub mod presets;
#[cfg(unix)]
pub mod rx_time;
mod stream;
pub mod tokens;

use std::future::Future;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use tokio::net::TcpListener;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

pub use cli::{SimArgs, main};
pub use config::{
    ConfigError, EngineOverrides, GpuConfig, GpuOverrides, PacerMode, ResolvedConfig, SimConfig,
    Timing,
};
pub use engine::EngineConfig;
pub use faults::{FaultKind, FaultSpec};
pub use metrics::{LatencySummary, LatenessSnapshot, Metrics};

use crate::api::AppState;
use crate::conn::{ConnHandle, SimListener};
use crate::faults::FaultInjector;
use stampede_pacer::Pacer;

/// Why the simulator could not run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SimError {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A system resource failed (the pacer thread, the listener).
    #[error("{context}")]
    Io {
        /// What was being done.
        context: &'static str,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

/// A configured simulator, ready to serve; its [`Metrics`] stay readable after it stops.
#[derive(Debug)]
pub struct Sim {
    config: ResolvedConfig,
    metrics: Arc<Metrics>,
}

impl Sim {
    /// Validates the config.
    ///
    /// # Errors
    /// [`SimError::Config`] listing every problem.
    pub fn try_new(config: &SimConfig) -> Result<Self, SimError> {
        let config = config.resolve()?;
        let metrics = Arc::new(Metrics::new(&config.model, config.gpu.clone()));
        Ok(Self { config, metrics })
    }

    /// The validated configuration.
    pub fn config(&self) -> &ResolvedConfig {
        &self.config
    }

    /// What it has served so far (shared with the running server).
    pub fn metrics(&self) -> Arc<Metrics> {
        self.metrics.clone()
    }

    /// Serves on `listener` until `shutdown` completes, then stops accepting, lets streams in
    /// flight finish for the configured grace period, cuts the rest and returns.
    ///
    /// # Errors
    /// [`SimError::Io`] when the pacer thread cannot start or the server fails.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), SimError> {
        let start = Instant::now();
        // Wall-clock time is read once, for the `created` fields of responses.
        let start_unix = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let pacer = match self.config.pacer {
            PacerMode::Thread => {
                Pacer::start(self.config.timer_spin).map_err(|source| SimError::Io {
                    context: "cannot start the pacer thread",
                    source,
                })?
            }
            PacerMode::Inline => Pacer::start_inline(),
        };
        let faults = Arc::new(FaultInjector::new(
            self.config.faults.clone(),
            self.config.seed,
            start,
        ));
        let grace = self.config.shutdown_grace;
        let state = Arc::new(AppState::new(
            self.config,
            self.metrics,
            faults.clone(),
            pacer,
            start,
            start_unix,
        ));

        let mut aux = tokio::task::JoinSet::new();
        for (at, _) in faults.outages() {
            // A weak reference: the outage timer must not keep the server's state alive.
            let weak = Arc::downgrade(&state);
            aux.spawn(async move {
                tokio::time::sleep_until(at).await;
                if let Some(s) = weak.upgrade() {
                    tracing::info!("simulated outage starts: cutting every connection");
                    s.cut_all();
                }
            });
        }
        let stop = CancellationToken::new();
        let stop_on_signal = stop.clone();
        aux.spawn(async move {
            shutdown.await;
            stop_on_signal.cancel();
        });
        let weak = Arc::downgrade(&state);
        let stop_grace = stop.clone();
        aux.spawn(async move {
            stop_grace.cancelled().await;
            tokio::time::sleep(grace).await;
            if let Some(s) = weak.upgrade() {
                s.cut_all();
            }
        });

        let app = api::router(state).into_make_service_with_connect_info::<ConnHandle>();
        let result = axum::serve(SimListener::new(listener, faults), app)
            .with_graceful_shutdown(stop.cancelled_owned())
            .await;
        aux.abort_all();
        result.map_err(|source| SimError::Io {
            context: "the HTTP server failed",
            source,
        })
    }
}

/// Serves `config` on `listener` until `shutdown` completes; see [`Sim::serve`].
///
/// # Errors
/// [`SimError::Config`] for an invalid config, [`SimError::Io`] when serving fails.
pub async fn serve(
    listener: TcpListener,
    config: SimConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), SimError> {
    Sim::try_new(&config)?.serve(listener, shutdown).await
}
