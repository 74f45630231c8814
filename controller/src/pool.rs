//! The agents of a run: started locally or given by address (`HOST:PORT`, or `dns:NAME:PORT`
//! for every address a name resolves to), connected with the shared token and TLS when set,
//! greeted, and their clocks estimated against the controller's.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, bail};
use stampede_common::handshake::{PROTOCOL_VERSION, STAMPEDE_VERSION};
use stampede_common::proto::agent_client::AgentClient;
use stampede_common::proto::{HelloReply, HelloRequest};
use stampede_common::remote::{TOKEN_HEADER, Token};
use stampede_common::units::wall_clock_us;
use tonic::metadata::{AsciiMetadataValue, MetadataValue};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

use crate::children::{ChildGuard, sibling_binary, spawn_listening};

/// A connection to an agent: every call carries the token, when there is one.
pub type AgentConn = AgentClient<InterceptedService<Channel, TokenHeader>>;

/// Adds the shared token to every call.
#[derive(Clone, Default)]
pub struct TokenHeader(Option<AsciiMetadataValue>);

impl tonic::service::Interceptor for TokenHeader {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(v) = &self.0 {
            let mut v = v.clone();
            v.set_sensitive(true);
            request.metadata_mut().insert(TOKEN_HEADER, v);
        }
        Ok(request)
    }
}

/// How the controller proves itself to agents and checks them: the shared token, and TLS (the
/// CA that signed the agents' certificates, and a client certificate for mutual TLS).
#[derive(Clone, Default)]
pub struct AgentSecurity {
    pub token: Option<Token>,
    pub tls: Option<ClientTlsConfig>,
}

/// Says what is set, never the token or the client key.
impl std::fmt::Debug for AgentSecurity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentSecurity")
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("tls", &self.tls.is_some())
            .finish()
    }
}

impl AgentSecurity {
    /// The token from `token_file` or $STAMPEDE_TOKEN, and TLS from PEM files: `ca` turns TLS
    /// on; `cert` and `key` add a client certificate; `domain` is the name the agents'
    /// certificates must carry (by default the host each is dialled by).
    ///
    /// # Errors
    /// When a file cannot be read (named) or the token is unfit.
    pub fn load(
        token_file: Option<&Path>,
        ca: Option<&Path>,
        cert: Option<&Path>,
        key: Option<&Path>,
        domain: Option<&str>,
    ) -> anyhow::Result<Self> {
        let token = Token::load(token_file, |v| std::env::var(v).ok())?;
        let read = |p: &Path, what: &str| {
            std::fs::read(p).with_context(|| format!("cannot read the {what} {}", p.display()))
        };
        let tls = match ca {
            None => {
                if cert.is_some() || domain.is_some() {
                    bail!(
                        "--tls-cert and --tls-domain need --tls-ca (the CA that signed the agents' certificates)"
                    );
                }
                None
            }
            Some(ca) => {
                let mut tls =
                    ClientTlsConfig::new().ca_certificate(Certificate::from_pem(read(ca, "CA")?));
                match (cert, key) {
                    (Some(c), Some(k)) => {
                        tls = tls.identity(Identity::from_pem(
                            read(c, "client certificate")?,
                            read(k, "client key")?,
                        ));
                    }
                    (None, None) => {}
                    _ => bail!("--tls-cert and --tls-key go together"),
                }
                if let Some(d) = domain {
                    tls = tls.domain_name(d);
                }
                Some(tls)
            }
        };
        Ok(AgentSecurity { token, tls })
    }

    fn header(&self) -> anyhow::Result<TokenHeader> {
        Ok(TokenHeader(
            self.token
                .as_ref()
                .map(|t| MetadataValue::try_from(t.bearer()))
                .transpose()
                .context("the token cannot travel in a header")?,
        ))
    }
}

/// An agent the plan or the command line names.
#[derive(Debug, Clone, PartialEq)]
pub struct AgentSpec {
    /// `HOST:PORT`, or `dns:NAME:PORT` for every address NAME resolves to.
    pub addr: String,
    /// Its share of the load against the others'; None: its cores.
    pub weight: Option<f64>,
    /// The `dns:NAME:PORT` it was found by, when it was.
    pub origin: Option<String>,
}

/// How long `dns:` names are retried while they resolve to nothing (a headless Service whose
/// agents are not ready yet).
pub const DNS_WAIT: Duration = Duration::from_secs(60);

/// Expands `dns:NAME:PORT` specs into one spec per address, in order, without duplicates;
/// `lookup` resolves `NAME:PORT`. Other specs pass through.
///
/// # Errors
/// When a name resolves to nothing (its last lookup error is named).
pub async fn expand_dns<F, Fut>(specs: &[AgentSpec], lookup: F) -> anyhow::Result<Vec<AgentSpec>>
where
    F: Fn(String) -> Fut,
    Fut: Future<Output = std::io::Result<Vec<SocketAddr>>>,
{
    let mut out: Vec<AgentSpec> = Vec::new();
    for spec in specs {
        let Some(name) = spec.addr.strip_prefix("dns:") else {
            out.push(spec.clone());
            continue;
        };
        if name
            .rsplit_once(':')
            .is_none_or(|(h, p)| h.is_empty() || p.parse::<u16>().is_err())
        {
            bail!("agent {:?}: expected dns:NAME:PORT", spec.addr);
        }
        let mut addrs = lookup(name.to_string())
            .await
            .with_context(|| format!("agent {:?}: {name} does not resolve", spec.addr))?;
        if addrs.is_empty() {
            bail!("agent {:?}: {name} resolves to no address", spec.addr);
        }
        addrs.sort();
        for a in addrs {
            let addr = a.to_string();
            if !out.iter().any(|o| o.addr == addr) {
                out.push(AgentSpec {
                    addr,
                    weight: spec.weight,
                    origin: Some(spec.addr.clone()),
                });
            }
        }
    }
    Ok(out)
}

/// Resolves `NAME:PORT` with the system resolver, retrying for up to `wait` while it yields
/// nothing or fails.
///
/// # Errors
/// The last failure once `wait` has passed.
pub async fn resolve_waiting(name: String, wait: Duration) -> std::io::Result<Vec<SocketAddr>> {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let result = tokio::net::lookup_host(name.as_str())
            .await
            .map(Iterator::collect::<Vec<_>>);
        match result {
            Ok(a) if !a.is_empty() => return Ok(a),
            other if tokio::time::Instant::now() >= deadline => return other,
            _ => {
                tracing::info!(%name, "no agent address yet; retrying");
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
        }
    }
}

/// Hello exchanges used to estimate an agent's clock offset; the one with the shortest round
/// trip wins, since its midpoint is the tightest bound.
const CLOCK_SAMPLES: usize = 5;

/// One connected agent.
#[derive(Debug)]
pub struct AgentHandle {
    pub index: usize,
    pub addr: String,
    pub client: AgentConn,
    pub hello: HelloReply,
    /// Its share of the load against the other agents'.
    pub weight: f64,
    /// The `dns:NAME:PORT` it was found by: a restarted agent may come back at another address.
    pub origin: Option<String>,
    pub clock: ClockEstimate,
    /// The local process, when the controller started it.
    pub child: Option<ChildGuard>,
    /// Samples its host only and sends no request (`[monitor] agents`).
    pub monitor_only: bool,
}

pub use stampede_results::summary::ClockEstimate;

/// A clock offset from one exchange: sent at `t0`, answered with `agent_clock`, back at `t1`,
/// all in microseconds.
pub fn offset_from_exchange(t0: i64, agent_clock: i64, t1: i64) -> ClockEstimate {
    let rtt = t1.saturating_sub(t0).max(0);
    ClockEstimate {
        offset_us: agent_clock.saturating_sub(t0.saturating_add(rtt / 2)),
        uncertainty_us: (rtt / 2).unsigned_abs(),
        rtt_us: rtt.unsigned_abs(),
    }
}

/// Starts `count` local agents as child processes (on loopback, so no token is needed).
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

/// Connects to an agent, checks its protocol version and estimates its clock. Its weight is
/// `weight`, or else the cores it reports.
///
/// # Errors
/// When it cannot be reached, refuses the token or the certificate, or speaks another protocol
/// version (both versions named).
pub async fn connect(
    index: usize,
    addr: &str,
    weight: Option<f64>,
    child: Option<ChildGuard>,
    security: &AgentSecurity,
) -> anyhow::Result<AgentHandle> {
    let channel = dial(addr, security).await?;
    let mut client = AgentClient::with_interceptor(channel, security.header()?)
        .max_decoding_message_size(64 << 20);
    let (clock, hello) = greet(&mut client, addr).await?;
    // Start times are sent on each agent's clock; one a day off is a broken clock, not skew.
    if clock.offset_us.unsigned_abs() > 86_400_000_000 {
        bail!(
            "agent {addr}'s clock is {:.0} s off the controller's: set both clocks (NTP) before a run",
            clock.offset_us as f64 / 1e6
        );
    }
    let weight = weight.unwrap_or(f64::from(hello.cores.max(1)));
    Ok(AgentHandle {
        index,
        addr: addr.to_string(),
        client,
        hello,
        weight,
        origin: None,
        clock,
        child,
        monitor_only: false,
    })
}

/// Opens the channel to an agent: TLS when set, keep-alive so a dead agent is noticed.
async fn dial(addr: &str, security: &AgentSecurity) -> anyhow::Result<Channel> {
    let scheme = if security.tls.is_some() {
        "https"
    } else {
        "http"
    };
    if security.tls.is_some() && addr.starts_with("http://") {
        bail!(
            "agent {addr}: --tls-ca asks for TLS but the address says http://: give HOST:PORT or https://HOST:PORT"
        );
    }
    let url = if addr.starts_with("http://") || addr.starts_with("https://") {
        addr.to_string()
    } else {
        format!("{scheme}://{addr}")
    };
    let mut endpoint = Endpoint::from_shared(url.clone())
        .with_context(|| format!("agent address {addr:?} is not valid"))?;
    if let Some(tls) = &security.tls {
        endpoint = endpoint
            .tls_config(tls.clone())
            .with_context(|| format!("agent {addr}: the TLS settings were refused"))?;
    }
    endpoint
        .connect_timeout(Duration::from_secs(5))
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(1))
        .keep_alive_timeout(Duration::from_secs(3))
        .keep_alive_while_idle(true)
        .connect()
        .await
        .with_context(|| format!("cannot connect to agent {addr}"))
}

/// Says hello [`CLOCK_SAMPLES`] times, checking the protocol version; the clock estimate of the
/// shortest round trip, and the agent's answer.
async fn greet(client: &mut AgentConn, addr: &str) -> anyhow::Result<(ClockEstimate, HelloReply)> {
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
            Err(status) => bail!(
                "agent {addr} refused the handshake: {}{}",
                status.message(),
                match status.code() {
                    tonic::Code::Unavailable =>
                        " (is it listening there, and with TLS only when --tls-ca is given?)",
                    _ => "",
                }
            ),
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
    best.context("no handshake answer")
}

/// Refuses, before any step, a target the agent's allow-list leaves out.
///
/// # Errors
/// Naming the agent, the target and its allow-list.
pub fn check_allows(agent: &AgentHandle, url: &str) -> anyhow::Result<()> {
    let allowed = agent
        .hello
        .allowed_targets
        .iter()
        .map(|e| stampede_common::remote::AllowedTarget::parse(e).map_err(anyhow::Error::msg))
        .collect::<anyhow::Result<Vec<_>>>()
        .with_context(|| format!("agent {} sent a bad allow-list", agent.hello.agent_id))?;
    stampede_common::remote::check_target(&allowed, url).map_err(|why| {
        anyhow::anyhow!(
            "agent {} ({}) will not send to the target: {why}",
            agent.hello.agent_id,
            agent.addr
        )
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

    fn spec(addr: &str, weight: Option<f64>) -> AgentSpec {
        AgentSpec {
            addr: addr.into(),
            weight,
            origin: None,
        }
    }

    #[tokio::test]
    async fn a_dns_name_becomes_one_agent_per_address() {
        let lookup = |name: String| async move {
            match name.as_str() {
                "agents.ns.svc:7070" => Ok(vec![
                    "10.0.0.7:7070".parse().unwrap(),
                    "10.0.0.5:7070".parse().unwrap(),
                ]),
                _ => Err(std::io::Error::other("NXDOMAIN")),
            }
        };
        let specs = [
            spec("10.0.0.5:7070", None),
            spec("dns:agents.ns.svc:7070", Some(2.0)),
        ];
        let out = expand_dns(&specs, lookup).await.unwrap();
        // Sorted, and an address named twice is one agent.
        let mut found = spec("10.0.0.7:7070", Some(2.0));
        found.origin = Some("dns:agents.ns.svc:7070".into());
        assert_eq!(out, vec![spec("10.0.0.5:7070", None), found]);
        let e = expand_dns(&[spec("dns:missing:7070", None)], lookup)
            .await
            .unwrap_err();
        assert!(format!("{e:#}").contains("NXDOMAIN"), "{e:#}");
        let e = expand_dns(&[spec("dns:noport", None)], lookup)
            .await
            .unwrap_err();
        assert!(e.to_string().contains("dns:NAME:PORT"), "{e}");
    }

    #[test]
    fn tls_flags_that_need_a_ca_say_so() {
        let e = AgentSecurity::load(None, None, Some(Path::new("c.pem")), None, None).unwrap_err();
        assert!(e.to_string().contains("--tls-ca"), "{e}");
        let e = AgentSecurity::load(
            None,
            Some(Path::new("/nonexistent/ca.pem")),
            None,
            None,
            None,
        )
        .unwrap_err();
        assert!(format!("{e:#}").contains("/nonexistent/ca.pem"), "{e:#}");
    }
}
