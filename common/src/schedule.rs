//! Arrival processes: when each request of an open-loop share is due, as offsets from the start.
//!
//! Offsets are absolute (`phase + i / qps`, or a running sum of exponential gaps computed in
//! seconds), so a schedule never drifts however late the sender runs: a late sender shows up as
//! schedule lag, and the latency it causes is kept by the corrected TTFT.

use std::time::Duration;

use rand::SeedableRng;
use rand::rngs::StdRng;
use rand_distr::{Distribution, Exp, Gamma};

/// How arrivals are spaced.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ArrivalKind {
    /// Exactly `1 / qps` apart.
    Constant,
    /// Exponential gaps with mean `1 / qps` (a Poisson process), from a seeded generator.
    Poisson,
    /// Gamma-distributed gaps with mean `1 / qps` and shape `burstiness`: 1 is Poisson, below 1
    /// arrivals bunch into bursts, above 1 they are more regular (as vLLM's benchmark does it).
    Gamma { burstiness: f64 },
    /// The rate grows (or falls) linearly from `qps` to `to_qps` over `over`, then stays at
    /// `to_qps`; arrivals are where the integral of the rate crosses each whole number.
    Ramp { to_qps: f64, over: Duration },
}

/// An endless sequence of intended send offsets.
#[derive(Debug)]
pub struct ArrivalSchedule {
    kind: ArrivalKind,
    qps: f64,
    phase: Duration,
    index: u64,
    elapsed_s: f64,
    rng: StdRng,
    exp: Option<Exp<f64>>,
    gamma: Option<Gamma<f64>>,
}

impl ArrivalSchedule {
    /// A schedule at `qps` requests per second, its first arrival at `phase` (constant) or one
    /// exponential gap after `phase` (Poisson). `qps` must be positive and finite.
    pub fn new(kind: ArrivalKind, qps: f64, phase: Duration, seed: u64) -> Self {
        let qps = if qps.is_finite() && qps > 0.0 {
            qps
        } else {
            f64::MIN_POSITIVE
        };
        ArrivalSchedule {
            kind,
            qps,
            phase,
            index: 0,
            elapsed_s: 0.0,
            rng: StdRng::seed_from_u64(seed),
            exp: Exp::new(qps).ok(),
            gamma: match kind {
                ArrivalKind::Gamma { burstiness } if burstiness.is_finite() && burstiness > 0.0 => {
                    Gamma::new(burstiness, 1.0 / (qps * burstiness)).ok()
                }
                _ => None,
            },
        }
    }

    /// Requests per second.
    pub fn qps(&self) -> f64 {
        self.qps
    }
}

impl Iterator for ArrivalSchedule {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        let offset_s = match self.kind {
            ArrivalKind::Constant => self.index as f64 / self.qps,
            ArrivalKind::Poisson => {
                let gap = match &self.exp {
                    Some(exp) => exp.sample(&mut self.rng),
                    None => 1.0 / self.qps,
                };
                self.elapsed_s += gap;
                self.elapsed_s
            }
            ArrivalKind::Gamma { .. } => {
                let gap = match &self.gamma {
                    Some(g) => g.sample(&mut self.rng),
                    None => 1.0 / self.qps,
                };
                self.elapsed_s += gap;
                self.elapsed_s
            }
            ArrivalKind::Ramp { to_qps, over } => {
                ramp_offset(self.qps, to_qps, over.as_secs_f64(), self.index as f64)
            }
        };
        self.index += 1;
        Some(self.phase + Duration::try_from_secs_f64(offset_s).unwrap_or(Duration::MAX))
    }
}

/// When arrival `i` (from 0) of a linear ramp from `r0` to `r1` requests/s over `t_end` seconds
/// is due: the `t` at which `r0 t + (r1 - r0) t^2 / (2 t_end)` reaches `i`, and past the ramp,
/// `r1` requests/s from where it ended.
pub fn ramp_offset(r0: f64, r1: f64, t_end: f64, i: f64) -> f64 {
    let a = if t_end > 0.0 {
        (r1 - r0) / (2.0 * t_end)
    } else {
        0.0
    };
    let at_end = r0 * t_end + a * t_end * t_end;
    if i > at_end && r1 > 0.0 {
        return t_end + (i - at_end) / r1;
    }
    if a.abs() < 1e-12 {
        return i / r0;
    }
    let disc = (r0 * r0 + 4.0 * a * i).max(0.0);
    (-r0 + disc.sqrt()) / (2.0 * a)
}

/// Splits a total among agents by weight, so that the parts add up to the total exactly.
pub fn split_rate(total: f64, weights: &[f64]) -> Vec<f64> {
    let sum: f64 = weights.iter().sum();
    if sum <= 0.0 {
        return vec![0.0; weights.len()];
    }
    weights.iter().map(|w| total * w / sum).collect()
}

/// Splits an integer total (concurrency) among agents by weight; the remainder goes to the
/// largest fractional parts, so the parts add up to the total.
pub fn split_count(total: u32, weights: &[f64]) -> Vec<u32> {
    let sum: f64 = weights.iter().sum();
    if sum <= 0.0 || weights.is_empty() {
        return vec![0; weights.len()];
    }
    let exact: Vec<f64> = weights.iter().map(|w| f64::from(total) * w / sum).collect();
    let mut parts: Vec<u32> = exact.iter().map(|x| x.floor() as u32).collect();
    let mut left = total - parts.iter().sum::<u32>();
    let mut order: Vec<usize> = (0..weights.len()).collect();
    order.sort_by(|&a, &b| (exact[b] - exact[b].floor()).total_cmp(&(exact[a] - exact[a].floor())));
    for i in order.into_iter().cycle() {
        if left == 0 {
            break;
        }
        parts[i] += 1;
        left -= 1;
    }
    parts
}

/// Deals `n` items (a trace's requests, in order) among agents by weight: item `j` goes to
/// agent `deal[j]`. Smooth weighted round-robin: every agent's count stays within one of its
/// exact share at every prefix, so each agent's part spreads evenly over the trace. Agents of
/// weight 0 get nothing.
pub fn deal_by_weight(weights: &[f64], n: usize) -> Vec<usize> {
    let sum: f64 = weights.iter().filter(|w| **w > 0.0).sum();
    if sum <= 0.0 {
        return Vec::new();
    }
    let mut credit = vec![0.0; weights.len()];
    (0..n)
        .map(|_| {
            let mut best = 0;
            for (i, w) in weights.iter().enumerate() {
                if *w > 0.0 {
                    credit[i] += w;
                    if weights[best] <= 0.0 || credit[i] > credit[best] {
                        best = i;
                    }
                }
            }
            credit[best] -= sum;
            best
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dealing_follows_the_weights_and_spreads_evenly() {
        let deal = deal_by_weight(&[2.0, 1.0, 0.0, 1.0], 400);
        let count = |a: usize| deal.iter().filter(|&&d| d == a).count();
        assert_eq!([count(0), count(1), count(2), count(3)], [200, 100, 0, 100]);
        // At every prefix each agent is within one item of its exact share.
        for (len, prefix) in (1..=deal.len()).map(|l| (l, &deal[..l])) {
            for (a, w) in [(0usize, 0.5), (1, 0.25), (3, 0.25)] {
                let got = prefix.iter().filter(|&&d| d == a).count() as f64;
                assert!((got - w * len as f64).abs() <= 1.0, "agent {a} at {len}");
            }
        }
        assert_eq!(deal_by_weight(&[1.0, 1.0], 4), vec![0, 1, 0, 1]);
        assert!(deal_by_weight(&[0.0], 3).is_empty());
    }

    #[test]
    fn constant_offsets_are_exact_and_do_not_drift() {
        let s = ArrivalSchedule::new(ArrivalKind::Constant, 4.0, Duration::from_millis(10), 0);
        let offsets: Vec<_> = s.take(5).map(|d| d.as_micros()).collect();
        assert_eq!(offsets, vec![10_000, 260_000, 510_000, 760_000, 1_010_000]);
        // The millionth arrival is exactly where arithmetic puts it.
        let far = ArrivalSchedule::new(ArrivalKind::Constant, 3.0, Duration::ZERO, 0)
            .nth(999_999)
            .unwrap();
        assert_eq!(far, Duration::from_secs(333_333));
    }

    #[test]
    fn poisson_counts_and_gaps_match_the_distribution() {
        // 20,000 arrivals at 100/s: the mean gap is 10 ms within 3% (standard error 0.7%), and
        // the coefficient of variation of an exponential distribution is 1.
        let offsets: Vec<f64> =
            ArrivalSchedule::new(ArrivalKind::Poisson, 100.0, Duration::ZERO, 7)
                .take(20_000)
                .map(|d| d.as_secs_f64())
                .collect();
        let gaps: Vec<f64> = std::iter::once(offsets[0])
            .chain(offsets.windows(2).map(|w| w[1] - w[0]))
            .collect();
        let mean = gaps.iter().sum::<f64>() / gaps.len() as f64;
        let var = gaps.iter().map(|g| (g - mean).powi(2)).sum::<f64>() / gaps.len() as f64;
        assert!((mean - 0.01).abs() < 0.0003, "mean gap {mean}");
        assert!(
            (var.sqrt() / mean - 1.0).abs() < 0.05,
            "cv {}",
            var.sqrt() / mean
        );
        // Arrivals in the first 100 s: Poisson(10,000), whose standard deviation is 100.
        let in_100s = offsets.iter().filter(|&&t| t < 100.0).count() as f64;
        assert!((in_100s - 10_000.0).abs() < 400.0, "{in_100s}");
    }

    #[test]
    fn gamma_gaps_keep_the_mean_and_burstiness_sets_the_spread() {
        // Shape k: the coefficient of variation of the gaps is 1/sqrt(k).
        for (k, cv_want) in [(0.25, 2.0), (4.0, 0.5)] {
            let offsets: Vec<f64> = ArrivalSchedule::new(
                ArrivalKind::Gamma { burstiness: k },
                50.0,
                Duration::ZERO,
                3,
            )
            .take(40_000)
            .map(|d| d.as_secs_f64())
            .collect();
            let gaps: Vec<f64> = offsets.windows(2).map(|w| w[1] - w[0]).collect();
            let mean = gaps.iter().sum::<f64>() / gaps.len() as f64;
            let sd =
                (gaps.iter().map(|g| (g - mean).powi(2)).sum::<f64>() / gaps.len() as f64).sqrt();
            assert!((mean - 0.02).abs() < 0.001, "k {k}: mean {mean}");
            assert!(
                (sd / mean - cv_want).abs() < cv_want * 0.08,
                "k {k}: cv {}",
                sd / mean
            );
        }
    }

    #[test]
    fn a_ramp_sends_the_integral_of_its_rate() {
        // 10 -> 30 requests/s over 10 s: 200 arrivals in the ramp, then 30/s.
        let ramp = ArrivalKind::Ramp {
            to_qps: 30.0,
            over: Duration::from_secs(10),
        };
        let offsets: Vec<f64> = ArrivalSchedule::new(ramp, 10.0, Duration::ZERO, 0)
            .take(260)
            .map(|d| d.as_secs_f64())
            .collect();
        assert_eq!(offsets[0], 0.0);
        assert!((offsets[200] - 10.0).abs() < 1e-9, "{}", offsets[200]);
        // In the first second the rate is about 11/s: 10.5 arrivals.
        assert_eq!(offsets.iter().filter(|&&t| t < 1.0).count(), 11);
        // After the ramp: exactly 1/30 s apart.
        assert!((offsets[230] - offsets[200] - 1.0).abs() < 1e-9);
        // A falling ramp works as well.
        let down = ArrivalKind::Ramp {
            to_qps: 10.0,
            over: Duration::from_secs(10),
        };
        let n = ArrivalSchedule::new(down, 30.0, Duration::ZERO, 0)
            .take_while(|d| d.as_secs_f64() < 10.0)
            .count();
        assert_eq!(n, 200);
    }

    #[test]
    fn same_seed_same_schedule_and_other_seed_differs() {
        let a: Vec<_> = ArrivalSchedule::new(ArrivalKind::Poisson, 50.0, Duration::ZERO, 1)
            .take(100)
            .collect();
        let b: Vec<_> = ArrivalSchedule::new(ArrivalKind::Poisson, 50.0, Duration::ZERO, 1)
            .take(100)
            .collect();
        let c: Vec<_> = ArrivalSchedule::new(ArrivalKind::Poisson, 50.0, Duration::ZERO, 2)
            .take(100)
            .collect();
        assert_eq!(a, b);
        assert_ne!(a, c);
    }

    #[test]
    fn splits_add_up_to_the_total() {
        assert_eq!(split_rate(100.0, &[1.0, 1.0, 2.0]), vec![25.0, 25.0, 50.0]);
        assert_eq!(split_count(10, &[1.0, 1.0, 1.0]).iter().sum::<u32>(), 10);
        assert_eq!(split_count(7, &[2.0, 1.0]), vec![5, 2]);
        assert_eq!(split_count(1, &[1.0, 1.0]).iter().sum::<u32>(), 1);
        assert_eq!(split_count(5, &[]), Vec::<u32>::new());
    }
}
