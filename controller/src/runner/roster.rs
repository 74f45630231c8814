//! The run's agents as the coordinator sees them: what each one is (its card) and where it
//! stands (ready, running, lost, rejoined), with when it was last heard from.
//!
//! Load agents come first, then monitor-only agents; a rejoined agent takes its old place, so
//! an agent's index is its identity for the whole run.

use std::time::Duration;

use tokio::time::Instant;

use crate::pool::{AgentHandle, ClockEstimate};

/// What the coordinator knows of one agent: plain data, no connection.
#[derive(Debug, Clone, PartialEq)]
pub struct AgentCard {
    pub id: String,
    pub addr: String,
    pub cores: u32,
    pub clock: ClockEstimate,
    /// Its share of the load against the other agents'.
    pub weight: f64,
    /// Samples its host only and sends no request.
    pub monitor_only: bool,
}

impl AgentCard {
    /// The card of a connected agent.
    pub fn of(a: &AgentHandle) -> Self {
        AgentCard {
            id: a.hello.agent_id.clone(),
            addr: a.addr.clone(),
            cores: a.hello.cores,
            clock: a.clock,
            weight: a.weight,
            monitor_only: a.monitor_only,
        }
    }
}

/// Where an agent stands in the run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AgentState {
    /// Connected and loaded, in no step yet.
    Ready,
    /// Given a share of the latest step.
    Running,
    /// Out of the run, and why; dialled again unless the run stops.
    Lost(String),
    /// Back after a loss: it takes part from the next step.
    Rejoined,
}

/// One agent of the run.
#[derive(Debug, Clone)]
struct Member {
    card: AgentCard,
    state: AgentState,
    /// When it was last heard from: its stream's last message, or its step's start, whichever
    /// is later (silence is counted from the step's start, not from the step before).
    heard: Option<Instant>,
}

/// Every agent of the run and its state.
#[derive(Debug, Clone)]
pub struct Roster {
    members: Vec<Member>,
    /// How many come first as load agents (the rest are monitor-only).
    load: usize,
}

impl Roster {
    /// A roster of `cards`, all ready; the load agents are those before the first monitor-only
    /// one.
    pub fn new(cards: Vec<AgentCard>) -> Self {
        let load = cards.iter().take_while(|c| !c.monitor_only).count();
        let members = cards
            .into_iter()
            .map(|card| Member {
                card,
                state: AgentState::Ready,
                heard: None,
            })
            .collect();
        Roster { members, load }
    }

    /// How many agents the run has, lost ones included.
    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// True when the run has no agent.
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// How many load agents come first.
    pub fn load_agents(&self) -> usize {
        self.load
    }

    /// Agent `i`'s card.
    pub fn card(&self, i: usize) -> &AgentCard {
        &self.members[i].card
    }

    /// Agent `i`'s state.
    pub fn state(&self, i: usize) -> &AgentState {
        &self.members[i].state
    }

    /// Why agent `i` is out of the run, while it is.
    pub fn lost_why(&self, i: usize) -> Option<&str> {
        match &self.members[i].state {
            AgentState::Lost(why) => Some(why),
            _ => None,
        }
    }

    /// True when agent `i` is not lost.
    pub fn reachable(&self, i: usize) -> bool {
        self.lost_why(i).is_none()
    }

    /// The indices of the agents not lost.
    pub fn reachable_indices(&self) -> Vec<usize> {
        (0..self.len()).filter(|&i| self.reachable(i)).collect()
    }

    /// Which load agents can take a share of the next step.
    pub fn active_load(&self) -> Vec<bool> {
        (0..self.load).map(|i| self.reachable(i)).collect()
    }

    /// Agent `i` takes part in a step starting at `start`.
    pub fn start_step(&mut self, i: usize, start: Instant) {
        let m = &mut self.members[i];
        m.state = AgentState::Running;
        m.heard = Some(m.heard.map_or(start, |h| h.max(start)));
    }

    /// Agent `i` was heard from at `at` (its stream's reader noted it).
    pub fn heard(&mut self, i: usize, at: Instant) {
        let m = &mut self.members[i];
        m.heard = Some(m.heard.map_or(at, |h| h.max(at)));
    }

    /// How long agent `i` has been silent at `now` (zero before its first step).
    pub fn silence(&self, i: usize, now: Instant) -> Duration {
        self.members[i]
            .heard
            .map_or(Duration::ZERO, |h| now.saturating_duration_since(h))
    }

    /// Takes agent `i` out of the run; false when it already was.
    pub fn lose(&mut self, i: usize, why: &str) -> bool {
        if !self.reachable(i) {
            return false;
        }
        self.members[i].state = AgentState::Lost(why.to_string());
        true
    }

    /// True when another reachable agent already has `addr` (two lost agents of one `dns:`
    /// name may both find the same new address: one is enough).
    pub fn addr_taken(&self, i: usize, addr: &str) -> bool {
        (0..self.len()).any(|j| j != i && self.reachable(j) && self.members[j].card.addr == addr)
    }

    /// Puts agent `i` back with its new card (its place and role kept).
    pub fn rejoin(&mut self, i: usize, card: AgentCard) {
        let m = &mut self.members[i];
        let monitor_only = m.card.monitor_only;
        m.card = AgentCard {
            monitor_only,
            ..card
        };
        m.state = AgentState::Rejoined;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn card(id: &str, monitor_only: bool) -> AgentCard {
        AgentCard {
            id: id.into(),
            addr: format!("{id}:7070"),
            cores: 2,
            clock: ClockEstimate {
                offset_us: 0,
                uncertainty_us: 0,
                rtt_us: 0,
            },
            weight: 2.0,
            monitor_only,
        }
    }

    #[test]
    fn an_agent_goes_ready_running_lost_rejoined() {
        let mut r = Roster::new(vec![card("a", false), card("b", false), card("m", true)]);
        assert_eq!((r.len(), r.load_agents()), (3, 2));
        assert_eq!(r.state(0), &AgentState::Ready);
        let t0 = Instant::now();
        r.start_step(0, t0);
        assert_eq!(r.state(0), &AgentState::Running);
        assert_eq!(
            r.silence(0, t0 + Duration::from_secs(3)),
            Duration::from_secs(3)
        );
        assert!(r.lose(0, "gone"));
        assert!(!r.lose(0, "again"), "lost once");
        assert_eq!(r.lost_why(0), Some("gone"));
        assert_eq!(r.active_load(), [false, true]);
        assert_eq!(r.reachable_indices(), [1, 2]);
        let mut back = card("a2", false);
        back.addr = "b:7070".into();
        assert!(r.addr_taken(0, "b:7070"), "b already has that address");
        r.rejoin(0, card("a2", true));
        assert_eq!(r.state(0), &AgentState::Rejoined);
        assert!(!r.card(0).monitor_only, "its role is kept");
        assert_eq!(r.active_load(), [true, true]);
    }
}
