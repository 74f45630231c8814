//! Agents lost during a run: each loss is a finding, saying what was kept and what followed.

use serde_json::json;

use super::{Evidence, finding};
use crate::i18n::{Lang, num, tr};
use stampede_results::kinds::{AgentEventKind, FindingCode, Severity};
use stampede_results::summary::Finding;

/// One finding per agent lost: critical when the loss stopped the run, else a warning.
pub fn lost(ev: &Evidence<'_>, lang: Lang, out: &mut Vec<Finding>) {
    let events = ev.agent_events;
    for (i, e) in events
        .iter()
        .enumerate()
        .filter(|(_, e)| e.event == AgentEventKind::Lost)
    {
        let back = events[i + 1..]
            .iter()
            .find(|r| r.event == AgentEventKind::Rejoined && r.addr == e.addr);
        let (agent, addr, step, at, why) =
            (&e.agent, &e.addr, &e.step, num(e.elapsed_s), &e.detail);
        let after = match back {
            _ if ev.aborted => {
                let reason = events
                    .iter()
                    .find(|a| a.event == AgentEventKind::Abort)
                    .map_or("", |a| a.detail.as_str());
                tr!(
                    lang,
                    "the run was aborted ({reason})",
                    "运行已中止（{reason}）"
                )
            }
            Some(r) if r.step.is_empty() => {
                let t = num(r.elapsed_s);
                tr!(
                    lang,
                    "it rejoined at {t}s, after the last step",
                    "它在 {t} 秒时重新加入，已在最后一步之后"
                )
            }
            Some(r) => {
                let (t, from) = (num(r.elapsed_s), &r.step);
                tr!(
                    lang,
                    "it rejoined at {t}s, from {from} on",
                    "它在 {t} 秒时重新加入，从 {from} 起参与"
                )
            }
            None => tr!(
                lang,
                "the run went on without it",
                "运行在没有它的情况下继续"
            ),
        };
        out.push(finding(
            if ev.aborted {
                Severity::Critical
            } else {
                Severity::Warning
            },
            FindingCode::AgentLost,
            tr!(
                lang,
                "agent {agent} ({addr}) was lost during {step} at {at}s: {why}; its data up to its last interval is kept, and {after}",
                "压测代理 {agent}（{addr}）在 {step} 的第 {at} 秒丢失：{why}；其最后一个区间之前的数据已保留，{after}"
            ),
            Some(tr!(
                lang,
                "{step} offered less than planned after the loss (see its agents' achieved_qps in summary.json); check the agent's host: its logs, the OOM killer, the network",
                "{step} 在丢失后实际负载低于计划（见 summary.json 中各代理的 achieved_qps）；请检查该代理所在主机：日志、OOM killer、网络"
            )),
            json!({
                "agent": agent,
                "addr": addr,
                "step": step,
                "elapsed_s": e.elapsed_s,
                "detail": why,
                "rejoined_at_s": back.map(|r| r.elapsed_s),
            }),
        ));
    }
}

#[cfg(test)]
mod tests {
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
        let mut out = Vec::new();
        lost(&ev, Lang::En, &mut out);
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
                .all(|f| f.severity == Severity::Warning && f.code == FindingCode::AgentLost)
        );
        let mut with_abort = events.to_vec();
        let mut abort = event("b", AgentEventKind::Abort, "s1", 4.0);
        abort.detail = "on_agent_lost = \"abort\"".into();
        with_abort.push(abort);
        ev.agent_events = &with_abort;
        ev.aborted = true;
        let mut out = Vec::new();
        lost(&ev, Lang::Zh, &mut out);
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
