//! Agents lost during a run: each loss is a finding, saying what was kept and what followed.

use super::Evidence;
use stampede_results::facts::{AfterLoss, AgentLost, Facts};
use stampede_results::kinds::{AgentEventKind, Severity};
use stampede_results::summary::Finding;

/// One finding per agent lost: critical when the loss stopped the run, else a warning.
pub fn lost(ev: &Evidence<'_>, out: &mut Vec<Finding>) {
    let events = ev.agent_events;
    for (i, e) in events
        .iter()
        .enumerate()
        .filter(|(_, e)| e.event == AgentEventKind::Lost)
    {
        let back = events[i + 1..]
            .iter()
            .find(|r| r.event == AgentEventKind::Rejoined && r.addr == e.addr);
        let after = match back {
            _ if ev.aborted => AfterLoss::Aborted {
                reason: events
                    .iter()
                    .find(|a| a.event == AgentEventKind::Abort)
                    .map_or_else(String::new, |a| a.detail.clone()),
            },
            Some(r) if r.step.is_empty() => AfterLoss::RejoinedAfterLastStep { at_s: r.elapsed_s },
            Some(r) => AfterLoss::Rejoined {
                at_s: r.elapsed_s,
                step: r.step.clone(),
            },
            None => AfterLoss::WentOn,
        };
        let severity = if ev.aborted {
            Severity::Critical
        } else {
            Severity::Warning
        };
        out.push(Finding::new(
            severity,
            Facts::AgentLost(AgentLost {
                agent: e.agent.clone(),
                addr: e.addr.clone(),
                step: e.step.clone(),
                elapsed_s: e.elapsed_s,
                detail: e.detail.clone(),
                after,
            }),
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{analysed, analysed_in};
    use super::*;
    use stampede_results::kinds::{FindingCode, Severity};
    use stampede_results::summary::AgentEventRecord;

    fn event(agent: &str, event: AgentEventKind, step: &str, at: f64) -> AgentEventRecord {
        AgentEventRecord {
            elapsed_s: at,
            at: String::new(),
            agent: agent.into(),
            addr: format!("{agent}:7070"),
            event,
            step: step.into(),
            detail: "stream failed".into(),
        }
    }

    #[test]
    fn each_loss_is_a_finding_that_says_what_followed() {
        let events = [
            event("a", AgentEventKind::Lost, "s1", 3.0),
            event("b", AgentEventKind::Lost, "s1", 4.0),
            event("a", AgentEventKind::Rejoined, "s2", 6.0),
        ];
        let mut ev = Evidence::stages_only(&[], false);
        ev.agent_events = &events;
        let out = analysed(&ev).findings;
        assert_eq!(out.len(), 2);
        assert!(
            out[0].message.contains("rejoined at 6s, from s2"),
            "{}",
            out[0].message
        );
        assert!(
            out[1].message.contains("went on without it"),
            "{}",
            out[1].message
        );
        assert!(
            out.iter()
                .all(|f| f.severity == Severity::Warning && f.code() == FindingCode::AgentLost)
        );
        let mut with_abort = events.to_vec();
        let mut abort = event("b", AgentEventKind::Abort, "s1", 4.0);
        abort.detail = "on_agent_lost = \"abort\"".into();
        with_abort.push(abort);
        ev.agent_events = &with_abort;
        ev.aborted = true;
        let out = analysed_in(&ev, crate::i18n::Lang::Zh).findings;
        assert_eq!(out[0].severity, Severity::Critical);
        assert!(out[0].message.contains("中止"), "{}", out[0].message);
        assert!(
            out[0].message.contains("on_agent_lost"),
            "{}",
            out[0].message
        );
        assert_eq!(out.len(), 2, "an abort event is not a loss of its own");
    }
}
