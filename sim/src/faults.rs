//! Fault injection: what can go wrong, when, and how often.
//!
//! A [`FaultSpec`] names a [`FaultKind`], a `rate` (the fraction of completion requests it hits)
//! and optionally a window (`at` seconds after start, for `duration`), so a fault can be
//! steady, scheduled, or both. Each request draws from a seeded RNG against each active spec in
//! order; the first that hits decides the request's fate, so runs with the same seed and the
//! same request order inject the same faults.
//!
//! `outage` is different: for its window the whole server is down. New connections are reset
//! as soon as they are accepted, requests on open connections are reset, and streams in flight
//! when it starts are cut.
//!
//! On the command line a spec reads `KIND[:key=value,...]`, e.g. `http_429:rate=0.1,retry_after=2s`
//! or `outage:at=30s,duration=10s`.

use std::fmt;
use std::str::FromStr;
use std::sync::Mutex;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use crate::duration::{parse_duration, serde_duration};

/// What goes wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum FaultKind {
    /// HTTP 500 with an OpenAI-style error body.
    #[serde(rename = "http_500")]
    Http500,
    /// HTTP 503 with `Retry-After`.
    #[serde(rename = "http_503")]
    Http503,
    /// HTTP 429 with `Retry-After`.
    #[serde(rename = "http_429")]
    Http429,
    /// The TCP connection is reset before any response byte.
    ResetBeforeHeaders,
    /// The response headers go out, then the connection is reset before any event.
    ResetAfterHeaders,
    /// The stream pauses for `stall` after `after_tokens` tokens, then goes on.
    Stall,
    /// The connection is reset after `after_tokens` tokens, without `[DONE]`.
    Disconnect,
    /// An event that is not valid JSON is sent after `after_tokens` tokens.
    MalformedSse,
    /// A well-formed completion with no content (finish_reason `stop`, 0 completion tokens).
    Empty,
    /// The first token (and every later one) comes `delay` late.
    SlowFirstToken,
    /// The server is down from `at` for `duration`.
    Outage,
}

impl FaultKind {
    /// Every kind, in declaration order (their index is `kind as usize`).
    pub const ALL: [FaultKind; 11] = [
        Self::Http500,
        Self::Http503,
        Self::Http429,
        Self::ResetBeforeHeaders,
        Self::ResetAfterHeaders,
        Self::Stall,
        Self::Disconnect,
        Self::MalformedSse,
        Self::Empty,
        Self::SlowFirstToken,
        Self::Outage,
    ];

    /// The name used in config files, flags and metrics.
    pub fn name(self) -> &'static str {
        match self {
            Self::Http500 => "http_500",
            Self::Http503 => "http_503",
            Self::Http429 => "http_429",
            Self::ResetBeforeHeaders => "reset_before_headers",
            Self::ResetAfterHeaders => "reset_after_headers",
            Self::Stall => "stall",
            Self::Disconnect => "disconnect",
            Self::MalformedSse => "malformed_sse",
            Self::Empty => "empty",
            Self::SlowFirstToken => "slow_first_token",
            Self::Outage => "outage",
        }
    }
}

impl fmt::Display for FaultKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One configured fault; see the module docs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultSpec {
    /// What goes wrong.
    pub kind: FaultKind,
    /// Fraction of completion requests hit, 0..=1; default 1 within a window, required
    /// without one. Not used by `outage`.
    #[serde(default)]
    pub rate: Option<f64>,
    /// Start of the window, from server start.
    #[serde(default, with = "serde_duration::option")]
    pub at: Option<Duration>,
    /// Length of the window; default: until the server stops.
    #[serde(default, with = "serde_duration::option")]
    pub duration: Option<Duration>,
    /// `http_429`, `http_503`: the `Retry-After` value (whole seconds, rounded up); default 1s.
    #[serde(default, with = "serde_duration::option")]
    pub retry_after: Option<Duration>,
    /// `stall`, `disconnect`, `malformed_sse`: tokens sent before the fault; default: drawn
    /// uniformly from 1 to max_tokens - 1.
    #[serde(default)]
    pub after_tokens: Option<u32>,
    /// `stall`: how long the stream pauses; default 10s.
    #[serde(default, with = "serde_duration::option")]
    pub stall: Option<Duration>,
    /// `slow_first_token`: extra delay before the first token; default 5s.
    #[serde(default, with = "serde_duration::option")]
    pub delay: Option<Duration>,
}

/// A fault spec that makes no sense.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct FaultSpecError(String);

impl FaultSpec {
    /// A spec of this kind hitting `rate` of requests, other settings at their defaults.
    pub fn with_rate(kind: FaultKind, rate: f64) -> Self {
        Self {
            kind,
            rate: Some(rate),
            at: None,
            duration: None,
            retry_after: None,
            after_tokens: None,
            stall: None,
            delay: None,
        }
    }

    /// Checks the settings against the kind.
    ///
    /// # Errors
    /// [`FaultSpecError`] naming the first problem.
    pub fn validate(&self) -> Result<(), FaultSpecError> {
        let bad = |m: String| Err(FaultSpecError(m));
        if let Some(r) = self.rate
            && !(0.0..=1.0).contains(&r)
        {
            return bad(format!("rate must be within 0..1, not {r}"));
        }
        if self.kind == FaultKind::Outage {
            if self.at.is_none() || self.duration.is_none() {
                return bad("an outage needs `at` and `duration`".to_owned());
            }
            if self.rate.is_some_and(|r| r != 1.0) {
                return bad("an outage takes no rate: the server is down for its window".into());
            }
        } else if self.rate.is_none() && self.at.is_none() {
            return bad("give a `rate`, a window (`at`, `duration`), or both".to_owned());
        }
        let limit = Duration::from_secs(30 * 86_400);
        for (name, d) in [
            ("at", self.at),
            ("duration", self.duration),
            ("retry_after", self.retry_after),
            ("stall", self.stall),
            ("delay", self.delay),
        ] {
            if d.is_some_and(|d| d > limit) {
                return bad(format!("`{name}` is over the 30-day limit"));
            }
        }
        if self.duration.is_some() && self.at.is_none() {
            return bad("`duration` needs `at`".to_owned());
        }
        let allowed: &[&str] = match self.kind {
            FaultKind::Http429 | FaultKind::Http503 => &["retry_after"],
            FaultKind::Stall => &["after_tokens", "stall"],
            FaultKind::Disconnect | FaultKind::MalformedSse => &["after_tokens"],
            FaultKind::SlowFirstToken => &["delay"],
            _ => &[],
        };
        let given = [
            ("retry_after", self.retry_after.is_some()),
            ("after_tokens", self.after_tokens.is_some()),
            ("stall", self.stall.is_some()),
            ("delay", self.delay.is_some()),
        ];
        for (name, set) in given {
            if set && !allowed.contains(&name) {
                return bad(format!("`{name}` does not apply to {}", self.kind));
            }
        }
        Ok(())
    }

    /// True when `elapsed` (since server start) is inside the window.
    fn in_window(&self, elapsed: Duration) -> bool {
        match self.at {
            None => true,
            Some(at) => elapsed >= at && self.duration.is_none_or(|d| elapsed < at + d),
        }
    }
}

impl FromStr for FaultSpec {
    type Err = FaultSpecError;

    /// Parses `KIND[:key=value,...]`, e.g. `http_429:rate=0.1,retry_after=2s`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = |m: String| FaultSpecError(format!("fault {s:?}: {m}"));
        let (kind, rest) = s.split_once(':').unwrap_or((s, ""));
        let kind = FaultKind::ALL
            .into_iter()
            .find(|k| k.name() == kind.trim())
            .ok_or_else(|| {
                let names: Vec<_> = FaultKind::ALL.iter().map(|k| k.name()).collect();
                err(format!("unknown kind; known kinds: {}", names.join(", ")))
            })?;
        let mut spec = FaultSpec::with_rate(kind, 0.0);
        spec.rate = None;
        for pair in rest.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (k, v) = pair
                .split_once('=')
                .ok_or_else(|| err(format!("{pair:?} is not key=value")))?;
            let dur = |v: &str| parse_duration(v).map_err(|e| err(e.to_string()));
            match k.trim() {
                "rate" => {
                    spec.rate = Some(
                        v.parse()
                            .map_err(|_| err(format!("rate {v:?} is not a number")))?,
                    );
                }
                "at" => spec.at = Some(dur(v)?),
                "duration" => spec.duration = Some(dur(v)?),
                "retry_after" => spec.retry_after = Some(dur(v)?),
                "stall" => spec.stall = Some(dur(v)?),
                "delay" => spec.delay = Some(dur(v)?),
                "after_tokens" => {
                    spec.after_tokens = Some(
                        v.parse()
                            .map_err(|_| err(format!("after_tokens {v:?} is not a count")))?,
                    );
                }
                other => return Err(err(format!("unknown key {other:?}"))),
            }
        }
        spec.validate().map_err(|e| err(e.0))?;
        Ok(spec)
    }
}

/// What happens to one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fault {
    /// Answer with this status and an error body.
    Http {
        kind: FaultKind,
        status: u16,
        retry_after: Option<Duration>,
    },
    ResetBeforeHeaders,
    ResetAfterHeaders,
    /// Pause for `for_` before token number `after` (0-based): a stall, or a slow first
    /// token when `after` is 0.
    Stall {
        kind: FaultKind,
        after: u32,
        for_: Duration,
    },
    Disconnect {
        after: u32,
    },
    Malformed {
        after: u32,
    },
    Empty,
}

impl Fault {
    pub(crate) fn kind(self) -> FaultKind {
        match self {
            Self::Http { kind, .. } => kind,
            Self::ResetBeforeHeaders => FaultKind::ResetBeforeHeaders,
            Self::ResetAfterHeaders => FaultKind::ResetAfterHeaders,
            Self::Stall { kind, .. } => kind,
            Self::Disconnect { .. } => FaultKind::Disconnect,
            Self::Malformed { .. } => FaultKind::MalformedSse,
            Self::Empty => FaultKind::Empty,
        }
    }
}

/// Decides faults for requests and tells when the server is in an outage.
#[derive(Debug)]
pub(crate) struct FaultInjector {
    specs: Vec<FaultSpec>,
    start: Instant,
    rng: Mutex<StdRng>,
}

impl FaultInjector {
    pub(crate) fn new(specs: Vec<FaultSpec>, seed: u64, start: Instant) -> Self {
        Self {
            specs,
            start,
            rng: Mutex::new(StdRng::seed_from_u64(seed ^ 0xFA17_5EED)),
        }
    }

    /// The outage windows, as (start, end) instants.
    pub(crate) fn outages(&self) -> Vec<(Instant, Instant)> {
        self.specs
            .iter()
            .filter(|s| s.kind == FaultKind::Outage)
            .filter_map(|s| {
                let at = self.start + s.at?;
                Some((at, at + s.duration?))
            })
            .collect()
    }

    /// True while an outage window is open.
    pub(crate) fn in_outage(&self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.start);
        self.specs
            .iter()
            .any(|s| s.kind == FaultKind::Outage && s.in_window(elapsed))
    }

    /// Draws the fate of a completion request asking for `max_tokens` tokens.
    pub(crate) fn choose(&self, now: Instant, max_tokens: u32) -> Option<Fault> {
        if self.specs.is_empty() {
            return None;
        }
        let elapsed = now.saturating_duration_since(self.start);
        let mut rng = self
            .rng
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for s in &self.specs {
            if s.kind == FaultKind::Outage || !s.in_window(elapsed) {
                continue;
            }
            let rate = s.rate.unwrap_or(1.0);
            if rate <= 0.0 || !rng.random_bool(rate.min(1.0)) {
                continue;
            }
            // Tokens before the fault: strictly inside the stream when it has room.
            let after = match s.after_tokens {
                Some(a) => a,
                None if max_tokens <= 1 => 0,
                None => rng.random_range(1..max_tokens),
            };
            let retry_after = s.retry_after.unwrap_or(Duration::from_secs(1));
            return Some(match s.kind {
                FaultKind::Http500 => Fault::Http {
                    kind: s.kind,
                    status: 500,
                    retry_after: None,
                },
                FaultKind::Http503 => Fault::Http {
                    kind: s.kind,
                    status: 503,
                    retry_after: Some(retry_after),
                },
                FaultKind::Http429 => Fault::Http {
                    kind: s.kind,
                    status: 429,
                    retry_after: Some(retry_after),
                },
                FaultKind::ResetBeforeHeaders => Fault::ResetBeforeHeaders,
                FaultKind::ResetAfterHeaders => Fault::ResetAfterHeaders,
                FaultKind::Stall => Fault::Stall {
                    kind: s.kind,
                    after,
                    for_: s.stall.unwrap_or(Duration::from_secs(10)),
                },
                FaultKind::Disconnect => Fault::Disconnect { after },
                FaultKind::MalformedSse => Fault::Malformed { after },
                FaultKind::Empty => Fault::Empty,
                FaultKind::SlowFirstToken => Fault::Stall {
                    kind: s.kind,
                    after: 0,
                    for_: s.delay.unwrap_or(Duration::from_secs(5)),
                },
                FaultKind::Outage => continue,
            });
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_flag_specs() {
        let s: FaultSpec = "http_429:rate=0.1,retry_after=2s".parse().expect("valid");
        assert_eq!(s.kind, FaultKind::Http429);
        assert_eq!(s.rate, Some(0.1));
        assert_eq!(s.retry_after, Some(Duration::from_secs(2)));
        let s: FaultSpec = "outage:at=30s,duration=10s".parse().expect("valid");
        assert_eq!(s.at, Some(Duration::from_secs(30)));
        for bad in [
            "nope:rate=0.1",
            "http_500",
            "http_500:rate=2",
            "http_500:rate=0.1,stall=1s",
            "outage:at=1s",
            "stall:rate=x",
            "stall:rate=0.1,color=red",
            "disconnect:duration=1s,rate=0.5",
        ] {
            assert!(bad.parse::<FaultSpec>().is_err(), "{bad}");
        }
    }

    #[test]
    fn every_kind_round_trips_its_name() {
        for k in FaultKind::ALL {
            let spec: FaultSpec = format!("{}:at=1s,duration=1s", k.name())
                .parse()
                .expect("valid");
            assert_eq!(spec.kind, k);
            assert_eq!(FaultKind::ALL[k as usize], k);
            let json = serde_json::to_string(&k).expect("serializes");
            assert_eq!(json, format!("\"{}\"", k.name()));
        }
    }

    #[test]
    fn a_rate_hits_about_that_fraction() {
        let t0 = Instant::now();
        let inj = FaultInjector::new(
            vec![
                FaultSpec::with_rate(FaultKind::Http500, 0.1),
                FaultSpec::with_rate(FaultKind::Disconnect, 0.2),
            ],
            7,
            t0,
        );
        let n = 20_000;
        let (mut e500, mut disc) = (0, 0);
        for _ in 0..n {
            match inj.choose(t0, 16) {
                Some(Fault::Http { status: 500, .. }) => e500 += 1,
                Some(Fault::Disconnect { after }) => {
                    assert!((1..16).contains(&after));
                    disc += 1;
                }
                None => {}
                other => panic!("{other:?}"),
            }
        }
        // 500 first at 10 %, then disconnect at 20 % of the remaining 90 %.
        let f500 = e500 as f64 / n as f64;
        let fdisc = disc as f64 / n as f64;
        assert!((f500 - 0.1).abs() < 0.01, "{f500}");
        assert!((fdisc - 0.18).abs() < 0.015, "{fdisc}");
    }

    #[test]
    fn windows_and_outages_follow_the_clock() {
        let t0 = Instant::now();
        let mut window = FaultSpec::with_rate(FaultKind::Http503, 1.0);
        window.at = Some(Duration::from_secs(10));
        window.duration = Some(Duration::from_secs(5));
        let outage: FaultSpec = "outage:at=20s,duration=3s".parse().expect("valid");
        let inj = FaultInjector::new(vec![window, outage], 0, t0);
        let at = |s: u64| t0 + Duration::from_secs(s);
        assert_eq!(inj.choose(at(9), 16), None);
        assert!(matches!(
            inj.choose(at(10), 16),
            Some(Fault::Http { status: 503, .. })
        ));
        assert_eq!(inj.choose(at(15), 16), None);
        assert!(!inj.in_outage(at(19)));
        assert!(inj.in_outage(at(20)));
        assert!(inj.in_outage(at(22)));
        assert!(!inj.in_outage(at(23)));
        assert_eq!(inj.outages(), vec![(at(20), at(23))]);
    }
}
