//! What keeps an agent from becoming an open load cannon: every call carries the shared token,
//! connections may be TLS or mutual TLS, and (in [`crate::service`]) targets may be limited to an
//! allow-list. Also the clock this agent reports, which tests can skew.

use std::path::Path;
use std::sync::atomic::{AtomicI64, Ordering};

use anyhow::Context;
use stampede_common::remote::{TOKEN_HEADER, Token};
use stampede_common::units::wall_clock_us;
use tonic::transport::{Certificate, Identity, ServerTlsConfig};
use tonic::{Request, Status};

/// How the agent's server checks who calls it.
#[derive(Debug, Clone, Default)]
pub struct ServerSecurity {
    pub token: TokenCheck,
    /// None: plain h2 (loopback, or a network the token alone protects).
    pub tls: Option<ServerTlsConfig>,
}

/// The interceptor in front of every call: refuses calls without the token, when one is set.
#[derive(Debug, Clone, Default)]
pub struct TokenCheck {
    token: Option<Token>,
}

impl TokenCheck {
    pub fn new(token: Option<Token>) -> Self {
        TokenCheck { token }
    }
}

impl tonic::service::Interceptor for TokenCheck {
    fn call(&mut self, request: Request<()>) -> Result<Request<()>, Status> {
        let Some(token) = &self.token else {
            return Ok(request);
        };
        let header = request
            .metadata()
            .get(TOKEN_HEADER)
            .and_then(|v| v.to_str().ok());
        if token.matches(header) {
            return Ok(request);
        }
        // The peer is logged, never what it sent.
        let peer = request
            .remote_addr()
            .map_or_else(|| "an unknown peer".to_string(), |a| a.to_string());
        tracing::warn!(%peer, token_given = header.is_some(), "call refused: wrong or missing token");
        Err(Status::unauthenticated(if header.is_some() {
            "the token does not match this agent's: give the controller the agent's token (--token-file or $STAMPEDE_TOKEN)"
        } else {
            "this agent requires a token: give the controller --token-file FILE or $STAMPEDE_TOKEN"
        }))
    }
}

/// TLS settings from PEM files: a certificate chain and its key, and for mutual TLS the CA that
/// signs controllers' client certificates. None when no certificate is given.
///
/// # Errors
/// When a file cannot be read (it is named).
pub fn server_tls(
    cert: Option<&Path>,
    key: Option<&Path>,
    client_ca: Option<&Path>,
) -> anyhow::Result<Option<ServerTlsConfig>> {
    let (Some(cert), Some(key)) = (cert, key) else {
        return Ok(None);
    };
    let read = |p: &Path, what: &str| {
        std::fs::read(p).with_context(|| format!("cannot read the {what} {}", p.display()))
    };
    let mut config = ServerTlsConfig::new().identity(Identity::from_pem(
        read(cert, "TLS certificate")?,
        read(key, "TLS key")?,
    ));
    if let Some(ca) = client_ca {
        config = config.client_ca_root(Certificate::from_pem(read(ca, "client CA")?));
    }
    Ok(Some(config))
}

/// How far this agent's reported clock is from the host's, in microseconds (0 but in tests).
static CLOCK_SKEW_US: AtomicI64 = AtomicI64::new(0);

/// Makes this agent behave as if its host's clock were `ms` milliseconds ahead (negative:
/// behind), in Hello and in reading start times alike: what a real skewed host does.
pub fn set_clock_skew_ms(ms: i64) {
    CLOCK_SKEW_US.store(ms.saturating_mul(1000), Ordering::Relaxed);
}

/// This agent's wall clock, microseconds since the Unix epoch.
pub fn agent_clock_us() -> i64 {
    wall_clock_us().saturating_add(CLOCK_SKEW_US.load(Ordering::Relaxed))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::service::Interceptor;

    fn token() -> Token {
        Token::load(None, |_| Some("0123456789abcdef".into()))
            .unwrap()
            .unwrap()
    }

    #[test]
    fn calls_without_the_token_are_refused() {
        let mut check = TokenCheck::new(Some(token()));
        let err = check.call(Request::new(())).unwrap_err();
        assert_eq!(err.code(), tonic::Code::Unauthenticated);
        assert!(
            err.message().contains("requires a token"),
            "{}",
            err.message()
        );

        let mut wrong = Request::new(());
        wrong
            .metadata_mut()
            .insert(TOKEN_HEADER, "Bearer 0123456789abcdeX".parse().unwrap());
        let err = check.call(wrong).unwrap_err();
        assert!(
            err.message().contains("does not match"),
            "{}",
            err.message()
        );
        assert!(!err.message().contains("0123456789abcde"));

        let mut right = Request::new(());
        right
            .metadata_mut()
            .insert(TOKEN_HEADER, token().bearer().parse().unwrap());
        assert!(check.call(right).is_ok());
    }

    #[test]
    fn without_a_token_every_call_passes() {
        assert!(TokenCheck::new(None).call(Request::new(())).is_ok());
    }

    #[test]
    fn tls_needs_both_certificate_and_key_and_names_a_missing_file() {
        assert!(server_tls(None, None, None).unwrap().is_none());
        let e = server_tls(
            Some(Path::new("/nonexistent/agent.pem")),
            Some(Path::new("/nonexistent/agent.key")),
            None,
        )
        .unwrap_err();
        assert!(format!("{e:#}").contains("/nonexistent/agent.pem"), "{e:#}");
    }
}
