//! What makes an agent safe to expose on a network, shared by both ends of the connection: the
//! shared token (read from a file or the environment, compared in constant time, never printed)
//! and the allow-list of targets an agent may send to.

use std::fmt;
use std::net::SocketAddr;
use std::path::Path;

/// The environment variable a token is read from when no file is given.
pub const TOKEN_ENV: &str = "STAMPEDE_TOKEN";

/// The metadata key the token travels in, as `Bearer TOKEN`.
pub const TOKEN_HEADER: &str = "authorization";

/// Shortest token accepted: a guessable token is no protection.
pub const MIN_TOKEN_LEN: usize = 16;

/// A shared secret. Its `Debug` and `Display` never show it.
#[derive(Clone, PartialEq, Eq)]
pub struct Token(String);

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

impl fmt::Display for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// A token that could not be read or is unfit.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("cannot read the token file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error(
        "the token from {from} is {len} characters long: use at least {MIN_TOKEN_LEN} (for example `openssl rand -hex 32`)"
    )]
    TooShort { from: String, len: usize },
    #[error(
        "the token from {from} holds a character that cannot travel in a header: use printable ASCII"
    )]
    NotPrintable { from: String },
}

impl Token {
    /// The token from `file` (surrounding whitespace removed) or else from `env(TOKEN_ENV)`;
    /// `None` when neither is given.
    ///
    /// # Errors
    /// When the file cannot be read, or the token is short or not printable ASCII.
    pub fn load(
        file: Option<&Path>,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Option<Token>, TokenError> {
        let (text, from) = match file {
            Some(path) => (
                std::fs::read_to_string(path).map_err(|source| TokenError::Read {
                    path: path.display().to_string(),
                    source,
                })?,
                path.display().to_string(),
            ),
            None => match env(TOKEN_ENV) {
                Some(v) => (v, format!("${TOKEN_ENV}")),
                None => return Ok(None),
            },
        };
        let text = text.trim();
        if text.len() < MIN_TOKEN_LEN {
            return Err(TokenError::TooShort {
                from,
                len: text.len(),
            });
        }
        if !text.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(TokenError::NotPrintable { from });
        }
        Ok(Some(Token(text.to_string())))
    }

    /// The header value that carries it.
    pub fn bearer(&self) -> String {
        format!("Bearer {}", self.0)
    }

    /// Whether `header` (an `authorization` value) carries this token. The comparison takes
    /// the same time wherever the first difference is, so timing tells an attacker nothing.
    pub fn matches(&self, header: Option<&str>) -> bool {
        let Some(given) = header.and_then(|h| h.strip_prefix("Bearer ")) else {
            return false;
        };
        let (a, b) = (given.as_bytes(), self.0.as_bytes());
        let mut diff = a.len() ^ b.len();
        for (i, &x) in b.iter().enumerate() {
            diff |= usize::from(x ^ a.get(i).copied().unwrap_or(0));
        }
        diff == 0
    }
}

/// Whether a listening address can be reached from other hosts.
pub fn reachable_from_other_hosts(addr: &SocketAddr) -> bool {
    !addr.ip().is_loopback()
}

/// An allow-list entry: a host, optionally with a port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowedTarget {
    host: String,
    port: Option<u16>,
}

impl AllowedTarget {
    /// Parses `HOST` or `HOST:PORT` (`[v6]:PORT` for IPv6).
    ///
    /// # Errors
    /// When the entry is empty or its port is not a number.
    pub fn parse(entry: &str) -> Result<Self, String> {
        let entry = entry.trim();
        if entry.contains('/') || entry.contains('@') {
            return Err(format!(
                "{entry:?}: expected HOST or HOST:PORT, without a scheme, path or user"
            ));
        }
        let (host, port) = if let Some(rest) = entry.strip_prefix('[') {
            let (h, after) = rest
                .split_once(']')
                .ok_or_else(|| format!("{entry:?}: an IPv6 host needs its closing ']'"))?;
            let port = match after {
                "" => None,
                p => Some(
                    p.strip_prefix(':')
                        .ok_or_else(|| format!("{entry:?}: expected [IPv6] or [IPv6]:PORT"))?,
                ),
            };
            (h.to_string(), port)
        } else if entry.matches(':').count() == 1 {
            let (h, p) = entry.split_once(':').unwrap_or((entry, ""));
            (h.to_string(), Some(p))
        } else {
            (entry.to_string(), None)
        };
        if host.is_empty() {
            return Err(format!("{entry:?}: expected HOST or HOST:PORT"));
        }
        let port = port
            .map(|p| {
                p.parse::<u16>()
                    .map_err(|_| format!("{entry:?}: the port must be a number up to 65535"))
            })
            .transpose()?;
        Ok(AllowedTarget {
            host: host.to_ascii_lowercase(),
            port,
        })
    }

    fn allows(&self, host: &str, port: u16) -> bool {
        self.host == host && self.port.is_none_or(|p| p == port)
    }
}

impl fmt::Display for AllowedTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        match self.port {
            Some(p) => write!(f, "{host}:{p}"),
            None => f.write_str(&host),
        }
    }
}

/// Checks `url` against `allowed` (empty: everything is allowed). The host is compared as
/// written in the URL, so `localhost` and `127.0.0.1` are different entries.
///
/// # Errors
/// Why the URL is refused: unparsable, no host, or not in the list (which is named).
pub fn check_target(allowed: &[AllowedTarget], url: &str) -> Result<(), String> {
    if allowed.is_empty() {
        return Ok(());
    }
    let parsed = url::Url::parse(url).map_err(|e| format!("{url:?} is not a URL: {e}"))?;
    let host = match parsed.host() {
        Some(url::Host::Ipv6(ip)) => ip.to_string(),
        Some(h) => h.to_string().to_ascii_lowercase(),
        None => return Err(format!("{url:?} has no host")),
    };
    let port = parsed.port_or_known_default().unwrap_or(0);
    if allowed.iter().any(|a| a.allows(&host, port)) {
        Ok(())
    } else {
        let list: Vec<String> = allowed.iter().map(ToString::to_string).collect();
        Err(format!(
            "{host}:{port} is not in this agent's allow-list ({}); start the agent with --allow-target {host}:{port} to permit it",
            list.join(", ")
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_comes_from_the_file_before_the_environment_and_is_trimmed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "  0123456789abcdef0123\n").unwrap();
        let env = |_: &str| Some("from-the-environment-xyz".to_string());
        let t = Token::load(Some(&path), env).unwrap().unwrap();
        assert!(t.matches(Some("Bearer 0123456789abcdef0123")));
        let t = Token::load(None, env).unwrap().unwrap();
        assert!(t.matches(Some("Bearer from-the-environment-xyz")));
        assert!(Token::load(None, |_| None).unwrap().is_none());
    }

    #[test]
    fn bad_tokens_are_refused_with_their_source_named() {
        let e = Token::load(None, |_| Some("short".into())).unwrap_err();
        assert!(e.to_string().contains("$STAMPEDE_TOKEN"), "{e}");
        let e = Token::load(None, |_| Some("with a space inside it".into())).unwrap_err();
        assert!(e.to_string().contains("printable"), "{e}");
        let missing = Path::new("/nonexistent/token");
        let e = Token::load(Some(missing), |_| None).unwrap_err();
        assert!(e.to_string().contains("/nonexistent/token"), "{e}");
    }

    #[test]
    fn a_token_never_shows_in_debug_or_display() {
        let t = Token::load(None, |_| Some("super-secret-token-value".into()))
            .unwrap()
            .unwrap();
        assert!(!format!("{t:?} {t}").contains("super-secret"));
    }

    #[test]
    fn only_the_exact_bearer_token_matches() {
        let t = Token("0123456789abcdef".into());
        assert!(t.matches(Some("Bearer 0123456789abcdef")));
        for wrong in [
            "Bearer 0123456789abcdeX",
            "Bearer 0123456789abcde",
            "Bearer 0123456789abcdef0",
            "0123456789abcdef",
            "Bearer ",
        ] {
            assert!(!t.matches(Some(wrong)), "{wrong}");
        }
        assert!(!t.matches(None));
    }

    #[test]
    fn the_allow_list_matches_host_and_optional_port() {
        let allowed: Vec<AllowedTarget> = ["vllm.internal:8000", "Gateway.example", "[::1]:9000"]
            .iter()
            .map(|e| AllowedTarget::parse(e).unwrap())
            .collect();
        assert!(check_target(&allowed, "http://vllm.internal:8000/v1").is_ok());
        assert!(check_target(&allowed, "https://gateway.example/v1").is_ok());
        assert!(check_target(&allowed, "http://gateway.example:8080/v1").is_ok());
        assert!(check_target(&allowed, "http://[::1]:9000/v1").is_ok());
        let e = check_target(&allowed, "http://vllm.internal:8001/v1").unwrap_err();
        assert!(
            e.contains("vllm.internal:8001") && e.contains("allow-list"),
            "{e}"
        );
        assert!(check_target(&allowed, "http://evil.example/v1").is_err());
        assert!(check_target(&allowed, "not a url").is_err());
        assert!(check_target(&[], "http://anything:1/").is_ok());
        assert!(AllowedTarget::parse("host:notaport").is_err());
        assert!(AllowedTarget::parse("[::1]junk").is_err());
        assert!(AllowedTarget::parse("http://host:80").is_err());
        assert!(AllowedTarget::parse("user@host").is_err());
        assert!(AllowedTarget::parse(":80").is_err());
        assert_eq!(
            AllowedTarget::parse("[::1]:9000").unwrap().to_string(),
            "[::1]:9000"
        );
    }

    #[test]
    fn only_loopback_listeners_stay_on_this_host() {
        assert!(!reachable_from_other_hosts(
            &"127.0.0.1:7070".parse().unwrap()
        ));
        assert!(!reachable_from_other_hosts(&"[::1]:7070".parse().unwrap()));
        assert!(reachable_from_other_hosts(&"0.0.0.0:7070".parse().unwrap()));
        assert!(reachable_from_other_hosts(
            &"10.1.2.3:7070".parse().unwrap()
        ));
    }
}
