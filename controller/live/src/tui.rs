//! The terminal dashboard: the step and its progress, load, latencies over the last 10 s and
//! the step so far, errors by class, each agent's health, resources, charts of the last
//! minutes, alerts, and the controller's log.
//!
//! [`render`] draws a [`LiveState`] on any ratatui backend (the tests use `TestBackend`).
//! [`Dashboard`] owns the terminal on a thread of its own: it reads the hub's `watch` channel
//! at its own frame rate, so drawing never slows the run, and it restores the terminal when it
//! stops, and on panic (ratatui's hook).
//!
//! Keys: `q` (or Ctrl-C) stops the run like the first Ctrl-C, a second one finishes the files
//! now; in `controller watch` it leaves the watcher and the run goes on. `+` and `-` change the
//! rate by ten percent, `p` pauses and resumes the step sending now.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use ratatui::Frame;
use ratatui::crossterm::event::{self, Event, KeyCode, KeyEvent, KeyEventKind, KeyModifiers};
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style, Stylize};
use ratatui::symbols::Marker;
use ratatui::text::{Line, Span, Text};
use ratatui::widgets::{
    Axis, Block, Cell, Chart, Dataset, Gauge, GraphType, Paragraph, Row, Table,
};
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

use crate::alerts::{AlertState, Severity};
use crate::command::{ControlRequest, NUDGE, RateCommand};
use crate::hub::LiveHub;
use crate::state::{LiveState, Percentiles};

/// Time between frames when nothing changed.
const FRAME: Duration = Duration::from_millis(250);
/// Seconds of history the charts show.
const CHART_SPAN_S: f64 = 300.0;

/// What `q` does.
#[derive(Debug, Clone)]
pub enum Quit {
    /// Stop the run: the first press gracefully (`interrupt`), the second at once (`abort`).
    StopRun {
        interrupt: CancellationToken,
        abort: CancellationToken,
    },
    /// Leave the dashboard; the run goes on (`controller watch`).
    Leave,
}

/// What the dashboard says besides the run's own state.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Status {
    /// `controller watch ADDR`, or empty for the controller's own dashboard.
    pub watching: String,
    /// The answer to the last key.
    pub message: String,
}

/// The dashboard, drawing on the terminal until dropped.
pub struct Dashboard {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Dashboard {
    /// Takes the terminal (raw mode, alternate screen, a panic hook that gives it back) and
    /// starts drawing `hub`'s state.
    ///
    /// # Errors
    /// When the terminal cannot be set up.
    pub fn start(hub: LiveHub, quit: Quit, watching: String) -> std::io::Result<Dashboard> {
        let terminal = ratatui::try_init()?;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("dashboard".into())
            .spawn(move || {
                let mut terminal = terminal;
                let mut ui = Ui {
                    hub,
                    quit,
                    status: Status {
                        watching,
                        message: String::new(),
                    },
                    pending: None,
                    scale: None,
                    resume_to: None,
                };
                let _ = ui.run(&mut terminal, &flag);
                flag.store(true, Ordering::SeqCst);
                ratatui::restore();
            });
        match thread {
            Ok(t) => Ok(Dashboard {
                stop,
                thread: Some(t),
            }),
            Err(e) => {
                ratatui::restore();
                Err(e)
            }
        }
    }

    /// True once the dashboard stopped (`q` in a watcher).
    pub fn finished(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }

    /// Stops drawing and gives the terminal back.
    pub fn close(mut self) {
        self.shut();
    }

    fn shut(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take()
            && t.join().is_err()
        {
            ratatui::restore();
        }
    }
}

impl Drop for Dashboard {
    fn drop(&mut self) {
        self.shut();
    }
}

struct Ui {
    hub: LiveHub,
    quit: Quit,
    status: Status,
    /// The answer to a rate command, still to come.
    pending: Option<oneshot::Receiver<Result<stampede_common::proto::RateReply, String>>>,
    /// The step and rate factor the last answer gave.
    scale: Option<(String, f64)>,
    /// The factor to resume at after a pause.
    resume_to: Option<f64>,
}

impl Ui {
    fn run(
        &mut self,
        terminal: &mut ratatui::DefaultTerminal,
        stop: &AtomicBool,
    ) -> std::io::Result<()> {
        let mut state = self.hub.state();
        let mut redraw = true;
        while !stop.load(Ordering::SeqCst) {
            if redraw || state.has_changed().unwrap_or(false) {
                let st = Arc::clone(&state.borrow_and_update());
                terminal.draw(|f| render(f, &st, &self.status))?;
                redraw = false;
            }
            if event::poll(FRAME)? {
                if let Event::Key(key) = event::read()?
                    && key.kind == KeyEventKind::Press
                {
                    let st = Arc::clone(&state.borrow());
                    if self.key(key, &st) {
                        return Ok(());
                    }
                }
                redraw = true;
            }
            if let Some(rx) = &mut self.pending {
                match rx.try_recv() {
                    Ok(Ok(r)) => {
                        self.scale = Some((r.step.clone(), r.scale));
                        self.status.message = if r.scale == 0.0 {
                            format!("{} paused: p resumes", r.step)
                        } else {
                            format!(
                                "{} now {:.2}x its plan ({:.2} requests/s)",
                                r.step, r.scale, r.qps
                            )
                        };
                        self.pending = None;
                        redraw = true;
                    }
                    Ok(Err(why)) => {
                        self.status.message = format!("rate not changed: {why}");
                        self.pending = None;
                        redraw = true;
                    }
                    Err(oneshot::error::TryRecvError::Empty) => {}
                    Err(oneshot::error::TryRecvError::Closed) => self.pending = None,
                }
            }
        }
        Ok(())
    }

    /// Handles a key; true when the dashboard should close.
    fn key(&mut self, key: KeyEvent, st: &LiveState) -> bool {
        let ctrl_c =
            key.modifiers.contains(KeyModifiers::CONTROL) && key.code == KeyCode::Char('c');
        match key.code {
            _ if ctrl_c => return self.quit_pressed(),
            KeyCode::Char('q') | KeyCode::Esc => return self.quit_pressed(),
            KeyCode::Char('+' | '=') => self.send(RateCommand::Multiply(NUDGE)),
            KeyCode::Char('-' | '_') => self.send(RateCommand::Multiply(1.0 / NUDGE)),
            KeyCode::Char('p' | ' ') => {
                // The answer to the last command is newer than the state until the step
                // changes.
                let step = st.step.as_ref().map(|s| s.name.as_str());
                let scale = match &self.scale {
                    Some((name, scale)) if Some(name.as_str()) == step => *scale,
                    _ => st.scale,
                };
                if scale == 0.0 {
                    let to = self.resume_to.unwrap_or(st.scale_before_pause).max(1e-3);
                    self.send(RateCommand::Scale(to));
                } else {
                    self.resume_to = Some(scale);
                    self.send(RateCommand::Pause);
                }
            }
            _ => {}
        }
        false
    }

    /// Handles `q`; true when the dashboard should close.
    fn quit_pressed(&mut self) -> bool {
        match &self.quit {
            Quit::Leave => true,
            Quit::StopRun { interrupt, abort } => {
                if interrupt.is_cancelled() {
                    abort.cancel();
                    self.status.message = "finishing the results files now".into();
                } else {
                    interrupt.cancel();
                    self.status.message =
                        "stopping: requests in flight get the grace period; q again finishes the files now".into();
                }
                false
            }
        }
    }

    fn send(&mut self, cmd: RateCommand) {
        let Some(tx) = self.hub.control() else {
            self.status.message = "the rate cannot be changed from here".into();
            return;
        };
        let (reply, answer) = oneshot::channel();
        let req: ControlRequest = (cmd, reply);
        match tx.try_send(req) {
            Ok(()) => {
                self.pending = Some(answer);
                self.status.message = "changing the rate...".into();
            }
            Err(_) => self.status.message = "busy: try again".into(),
        }
    }
}

/// Draws the dashboard of `st` on a frame.
pub fn render(f: &mut Frame<'_>, st: &LiveState, status: &Status) {
    let [head, body, charts, bottom, keys] = Layout::vertical([
        Constraint::Length(4),
        Constraint::Length(8),
        Constraint::Min(8),
        Constraint::Length(8),
        Constraint::Length(1),
    ])
    .areas(f.area());
    header(f, head, st, status);
    let [load, lat, errs, agents] = Layout::horizontal([
        Constraint::Length(25),
        Constraint::Min(40),
        Constraint::Length(25),
        Constraint::Length(30),
    ])
    .areas(body);
    load_pane(f, load, st);
    latency_pane(f, lat, st);
    errors_pane(f, errs, st);
    agents_pane(f, agents, st);
    let [qps, latency, tokens] = Layout::horizontal([
        Constraint::Ratio(1, 3),
        Constraint::Ratio(1, 3),
        Constraint::Ratio(1, 3),
    ])
    .areas(charts);
    charts_panes(f, [qps, latency, tokens], st);
    let [alerts, log] =
        Layout::horizontal([Constraint::Percentage(60), Constraint::Percentage(40)]).areas(bottom);
    alerts_pane(f, alerts, st);
    log_pane(f, log, st);
    let help = if status.watching.is_empty() {
        " q stop the run · + / - rate ±10% · p pause/resume "
    } else {
        " q leave (the run goes on) · + / - rate ±10% · p pause/resume "
    };
    let line = Line::from(vec![
        Span::styled(help, Style::new().reversed()),
        Span::raw(" "),
        Span::styled(status.message.clone(), Style::new().yellow()),
    ]);
    f.render_widget(Paragraph::new(line), keys);
}

fn title(text: &str) -> Block<'_> {
    Block::bordered().title(Span::styled(
        format!(" {text} "),
        Style::new().add_modifier(Modifier::BOLD),
    ))
}

fn header(f: &mut Frame<'_>, area: Rect, st: &LiveState, status: &Status) {
    let run = st.run.clone().unwrap_or_default();
    let mut name = format!(
        "Stampede · {}",
        if run.plan.is_empty() { "-" } else { &run.plan }
    );
    if !status.watching.is_empty() {
        name.push_str(&format!(" · watching {}", status.watching));
    }
    let block = title(&name);
    let inner = block.inner(area);
    f.render_widget(block, area);
    let [info, bar] = Layout::vertical([Constraint::Length(1), Constraint::Length(1)]).areas(inner);
    let mut spans = vec![Span::raw(format!(
        "target {} · model {} · {} agent(s) · t={:.0}s",
        run.target,
        run.model,
        run.agents.len(),
        st.elapsed_s()
    ))];
    if let Some(end) = &st.ended {
        spans.push(Span::styled(
            format!("  run {end}"),
            Style::new().bold().green(),
        ));
    }
    f.render_widget(Paragraph::new(Line::from(spans)), info);
    let Some(step) = &st.step else {
        f.render_widget(Paragraph::new("waiting for the first step"), bar);
        return;
    };
    let [label, gauge] =
        Layout::horizontal([Constraint::Percentage(45), Constraint::Percentage(55)]).areas(bar);
    let load = match (step.offered_qps, step.concurrency) {
        (Some(q), _) if st.paused() => format!("PAUSED (plan {q:.1}/s)"),
        (Some(q), _) if (st.scale - 1.0).abs() > 1e-9 => {
            format!("{:.1}/s ({:.2}x)", q * st.scale, st.scale)
        }
        (Some(q), _) => format!("{q:.1}/s"),
        (None, Some(c)) => format!("{c} users"),
        _ => String::new(),
    };
    let mut text = vec![
        Span::styled(format!("step {}", step.name), Style::new().bold()),
        Span::raw(format!(" ({}) {load}", step.stage)),
    ];
    if step.warmup {
        text.push(Span::styled(" warm-up", Style::new().dim()));
    }
    if st.paused() {
        text.push(Span::styled(" ⏸", Style::new().yellow()));
    }
    f.render_widget(Paragraph::new(Line::from(text)), label);
    let (done, left) = st.step_progress().unwrap_or((0.0, 0.0));
    let ratio = if step.duration_s > 0.0 {
        (done / step.duration_s).clamp(0.0, 1.0)
    } else {
        1.0
    };
    f.render_widget(
        Gauge::default()
            .ratio(ratio)
            .use_unicode(true)
            .gauge_style(Style::new().cyan())
            .label(format!(
                "{done:.0}s of {:.0}s, {left:.0}s left",
                step.duration_s
            )),
        gauge,
    );
}

fn num(v: Option<f64>, unit: &str) -> String {
    v.map_or_else(|| "-".into(), |v| format!("{v:.1}{unit}"))
}

fn load_pane(f: &mut Frame<'_>, area: Rect, st: &LiveState) {
    let row = st.last.as_ref().map(|l| l.row.clone()).unwrap_or_default();
    let lines = vec![
        kv(
            "offered",
            row.offered_qps
                .map_or_else(|| "closed".into(), |q| format!("{q:.1}/s")),
        ),
        kv("achieved", format!("{:.1}/s", row.achieved_qps)),
        kv("completed", format!("{:.1}/s", row.completed_rps)),
        kv("in flight", row.in_flight.to_string()),
        kv("output tok/s", format!("{:.0}", row.output_tokens_per_s)),
        kv("dropped", row.dropped.to_string()),
    ];
    f.render_widget(Paragraph::new(lines).block(title("Load")), area);
}

fn kv(k: &str, v: String) -> Line<'static> {
    Line::from(vec![
        Span::styled(format!("{k:<13}"), Style::new().dim()),
        Span::raw(format!("{v:>10}")),
    ])
}

fn latency_pane(f: &mut Frame<'_>, area: Rect, st: &LiveState) {
    let last = st.last.clone().unwrap_or_default();
    let cell = |p: &Percentiles, v: f64| {
        if p.count == 0 {
            Cell::from("-")
        } else {
            Cell::from(format!("{v:.1}"))
        }
    };
    let rows = [
        ("TTFT", last.window.ttft, last.step.ttft),
        ("ITL", last.window.itl, last.step.itl),
        ("E2E", last.window.e2e, last.step.e2e),
    ]
    .into_iter()
    .map(|(name, w, s)| {
        Row::new(vec![
            Cell::from(name).bold(),
            cell(&w, w.p50_ms),
            cell(&w, w.p99_ms),
            cell(&s, s.p50_ms),
            cell(&s, s.p99_ms),
        ])
    });
    let two = |a: &'static str, b: &'static str| {
        Cell::from(Text::from(vec![Line::from(a), Line::from(b)]))
    };
    let header = Row::new([
        two("", "ms"),
        two("10 s", "p50"),
        two("", "p99"),
        two("step", "p50"),
        two("", "p99"),
    ])
    .height(2)
    .dim();
    let widths = [
        Constraint::Length(5),
        Constraint::Length(7),
        Constraint::Length(8),
        Constraint::Length(7),
        Constraint::Length(8),
    ];
    f.render_widget(
        Table::new(rows, widths)
            .header(header)
            .block(title("Latency: last 10 s and step so far")),
        area,
    );
}

fn errors_pane(f: &mut Frame<'_>, area: Rect, st: &LiveState) {
    let last = st.last.clone().unwrap_or_default();
    let mut lines: Vec<Line<'_>> = Vec::new();
    lines.push(Line::from(vec![
        Span::styled(format!("{:<13}", "class"), Style::new().dim()),
        Span::styled(format!("{:>4} {:>5}", "now", "step"), Style::new().dim()),
    ]));
    let mut classes: Vec<(&String, &u64)> =
        last.step_errors.iter().filter(|(_, n)| **n > 0).collect();
    classes.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
    for (class, total) in classes {
        let now = last.errors.get(class).copied().unwrap_or(0);
        let style = if now > 0 {
            Style::new().red()
        } else {
            Style::new()
        };
        lines.push(Line::styled(
            format!("{:<13}{now:>4} {total:>5}", truncate(class, 13)),
            style,
        ));
    }
    if lines.len() == 1 {
        lines.push(Line::styled("no error", Style::new().green()));
    }
    lines.push(Line::from(format!(
        "timeouts {} dropped {}",
        last.row.timeouts, last.row.dropped
    )));
    // Why they failed: each class's first message, the most frequent first.
    let mut messages: Vec<_> = last.step_error_messages.iter().collect();
    messages.sort_by(|a, b| b.count.cmp(&a.count).then(a.label().cmp(&b.label())));
    for m in messages {
        // The client writes `HTTP 503 Service Unavailable <server's words>`: the status leads.
        let text = match m.message.strip_prefix("HTTP ") {
            Some(rest) if m.http_status.is_some() => rest.to_string(),
            _ => format!("{}: {}", m.class, m.message),
        };
        // Wrapped here: a server's message is longer than the pane is wide.
        let width = usize::from(area.width.saturating_sub(2)).max(8);
        for part in wrap_words(&text, width) {
            lines.push(Line::styled(part, Style::new().dim()));
        }
    }
    f.render_widget(Paragraph::new(lines).block(title("Errors")), area);
}

fn agents_pane(f: &mut Frame<'_>, area: Rect, st: &LiveState) {
    let last = st.last.clone().unwrap_or_default();
    let mut lines: Vec<Line<'_>> = vec![Line::styled(
        format!("{:<10}{:>8}{:>5}", "agent", "lag p99", "cpu"),
        Style::new().dim(),
    )];
    for a in &last.agents {
        let text = format!(
            "{:<10}{:>8}{:>5}",
            truncate(&a.agent, 10),
            num(a.schedule_lag_p99_ms, "ms"),
            a.cpu_pct.map_or_else(|| "-".into(), |c| format!("{c:.0}%")),
        );
        let line = match &a.lost {
            Some(_) => Line::from(vec![
                Span::raw(text),
                Span::styled(" LOST", Style::new().red().bold()),
            ]),
            None => Line::from(text),
        };
        lines.push(line);
    }
    let r = &last.row;
    let pct = |v: Option<f64>| v.map_or_else(|| "-".into(), |v| format!("{v:.0}%"));
    lines.push(Line::from(format!(
        "GPU {} CPU {} mem {}",
        pct(r.gpu_util_pct),
        pct(r.host_cpu_pct),
        pct(r.host_mem_pct)
    )));
    lines.push(Line::from(format!(
        "KV {} run {} wait {}",
        pct(r.kv_cache_usage_pct),
        r.server_running
            .map_or_else(|| "-".into(), |v| format!("{v:.0}")),
        r.server_waiting
            .map_or_else(|| "-".into(), |v| format!("{v:.0}")),
    )));
    if r.client_bound {
        lines.push(Line::styled("CLIENT-BOUND", Style::new().red().bold()));
    }
    f.render_widget(
        Paragraph::new(lines).block(title("Agents and resources")),
        area,
    );
}

fn charts_panes(f: &mut Frame<'_>, areas: [Rect; 3], st: &LiveState) {
    let end = st.history.back().map_or(0.0, |p| p.elapsed_s);
    let start = (end - CHART_SPAN_S).max(st.history.front().map_or(0.0, |p| p.elapsed_s));
    let points: Vec<_> = st.history.iter().filter(|p| p.elapsed_s >= start).collect();
    let series = |get: &dyn Fn(&crate::state::ChartPoint) -> Option<f64>| -> Vec<(f64, f64)> {
        points
            .iter()
            .filter_map(|p| get(p).map(|v| (p.elapsed_s, v)))
            .collect()
    };
    let offered = series(&|p| p.offered_qps);
    let achieved = series(&|p| Some(p.achieved_qps));
    let completed = series(&|p| Some(p.completed_rps));
    let ttft = series(&|p| Some(p.ttft_p99_ms));
    let e2e = series(&|p| Some(p.e2e_p99_ms));
    let tokens = series(&|p| Some(p.output_tokens_per_s));
    let failed = series(&|p| Some(p.failed as f64));
    let span = format!("last {:.0} s", (end - start).max(0.0));
    chart(
        f,
        areas[0],
        &format!("QPS, {span}"),
        vec![
            ("offered", &offered, Color::DarkGray),
            ("sent", &achieved, Color::Cyan),
            ("done", &completed, Color::Green),
        ],
        [start, end],
    );
    chart(
        f,
        areas[1],
        "p99 latency, ms",
        vec![
            ("TTFT", &ttft, Color::Yellow),
            ("E2E", &e2e, Color::Magenta),
        ],
        [start, end],
    );
    chart(
        f,
        areas[2],
        "output tok/s and errors",
        vec![
            ("tok/s", &tokens, Color::Blue),
            ("errors", &failed, Color::Red),
        ],
        [start, end],
    );
}

/// A chart's line: its legend, its points and its colour.
type Series<'a> = (&'a str, &'a Vec<(f64, f64)>, Color);

fn chart(f: &mut Frame<'_>, area: Rect, name: &str, sets: Vec<Series<'_>>, x: [f64; 2]) {
    let top = sets
        .iter()
        .flat_map(|(_, d, _)| d.iter().map(|p| p.1))
        .fold(0.0f64, f64::max);
    let top = if top > 0.0 { top * 1.1 } else { 1.0 };
    let datasets = sets
        .into_iter()
        .map(|(label, data, color)| {
            Dataset::default()
                .name(label.to_string())
                .marker(Marker::Braille)
                .graph_type(GraphType::Line)
                .style(Style::new().fg(color))
                .data(data)
        })
        .collect();
    let x_axis = Axis::default()
        .bounds(if x[1] > x[0] { x } else { [x[0], x[0] + 1.0] })
        .labels([format!("{:.0}s", x[0]), format!("{:.0}s", x[1])]);
    let y_axis = Axis::default()
        .bounds([0.0, top])
        .labels(["0".to_string(), short(top)]);
    f.render_widget(
        Chart::new(datasets)
            .block(title(name))
            .x_axis(x_axis)
            .y_axis(y_axis),
        area,
    );
}

/// A number in at most five characters: 950, 1.2k, 35k, 2.1M.
fn short(v: f64) -> String {
    match v {
        v if v >= 1e6 => format!("{:.1}M", v / 1e6),
        v if v >= 1e4 => format!("{:.0}k", v / 1e3),
        v if v >= 1e3 => format!("{:.1}k", v / 1e3),
        v if v >= 10.0 => format!("{v:.0}"),
        v => format!("{v:.1}"),
    }
}

fn alerts_pane(f: &mut Frame<'_>, area: Rect, st: &LiveState) {
    let rows = area.height.saturating_sub(2) as usize;
    let total: u64 = st.alert_counts.values().sum();
    let lines: Vec<Line<'_>> = st
        .alerts
        .iter()
        .rev()
        .take(rows)
        .map(|a| {
            let style = match (a.state, a.severity) {
                (AlertState::Resolved, _) => Style::new().dim(),
                (_, Severity::Critical) => Style::new().red().bold(),
                (_, Severity::Warning) => Style::new().yellow(),
                (_, Severity::Info) => Style::new(),
            };
            let mark = if a.state == AlertState::Resolved {
                "ok"
            } else {
                "!!"
            };
            Line::styled(
                format!(
                    "{mark} {:>6.1}s {}{}: {}",
                    a.elapsed_s,
                    a.kind.name(),
                    if a.step.is_empty() {
                        String::new()
                    } else {
                        format!(" {}", a.step)
                    },
                    a.message
                ),
                style,
            )
        })
        .collect();
    let lines = if lines.is_empty() {
        vec![Line::styled("no alert", Style::new().green())]
    } else {
        lines
    };
    let name = format!("Alerts: {} firing, {total} raised", st.active.len());
    f.render_widget(Paragraph::new(lines).block(title(&name)), area);
}

fn log_pane(f: &mut Frame<'_>, area: Rect, st: &LiveState) {
    let rows = area.height.saturating_sub(2) as usize;
    let skip = st.notes.len().saturating_sub(rows);
    let mut lines: Vec<Line<'_>> = st
        .notes
        .iter()
        .skip(skip)
        .map(|n| Line::raw(n.clone()))
        .collect();
    if st.missed > 0 {
        lines.push(Line::styled(
            format!("this view fell behind: {} update(s) missed", st.missed),
            Style::new().red(),
        ));
    }
    f.render_widget(Paragraph::new(lines).block(title("Log")), area);
}

/// `s` in lines of at most `width` characters, broken between words (a longer word is cut).
fn wrap_words(s: &str, width: usize) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut line = String::new();
    for word in s.split_whitespace() {
        let mut word: Vec<char> = word.chars().collect();
        loop {
            let used = line.chars().count();
            let gap = usize::from(used > 0);
            if used + gap + word.len() <= width {
                if gap == 1 {
                    line.push(' ');
                }
                line.extend(word.iter());
                break;
            }
            if used > 0 {
                out.push(std::mem::take(&mut line));
                continue;
            }
            let rest = word.split_off(width.min(word.len()));
            out.push(word.into_iter().collect());
            word = rest;
            if word.is_empty() {
                break;
            }
        }
    }
    if !line.is_empty() {
        out.push(line);
    }
    out
}

fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        s.chars().take(n.saturating_sub(1)).chain(['~']).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixture;
    use ratatui::Terminal;
    use ratatui::backend::TestBackend;

    /// The screen as text, one line per row.
    fn screen(st: &LiveState, status: &Status, w: u16, h: u16) -> String {
        let mut terminal = Terminal::new(TestBackend::new(w, h)).unwrap();
        terminal.draw(|f| render(f, st, status)).unwrap();
        let buf = terminal.backend().buffer();
        let mut out = String::new();
        for y in 0..h {
            let mut line = String::new();
            for x in 0..w {
                line.push_str(buf[(x, y)].symbol());
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }

    #[test]
    fn messages_wrap_between_words_and_cut_what_is_longer_than_a_line() {
        assert_eq!(
            wrap_words("503 Service Unavailable the engine", 12),
            ["503 Service", "Unavailable", "the engine"]
        );
        assert_eq!(wrap_words("abcdefghij kl", 4), ["abcd", "efgh", "ij", "kl"]);
        assert!(wrap_words("  ", 4).is_empty());
    }

    /// Compares with the stored snapshot; `UPDATE_SNAPSHOTS=1` rewrites it.
    fn snapshot(name: &str, text: &str) {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("src/snapshots")
            .join(format!("{name}.txt"));
        if std::env::var_os("UPDATE_SNAPSHOTS").is_some() {
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, text).unwrap();
        }
        // A missing snapshot fails: a test that writes its own expectation cannot fail.
        let stored = std::fs::read_to_string(&path).unwrap_or_else(|e| {
            panic!(
                "no snapshot at {} ({e}); create it with UPDATE_SNAPSHOTS=1 and review it",
                path.display()
            )
        });
        assert_eq!(
            stored,
            text,
            "the dashboard changed; rerun with UPDATE_SNAPSHOTS=1 if that was meant ({})",
            path.display()
        );
    }

    #[test]
    fn the_dashboard_renders_a_run_in_full() {
        let st = fixture::state();
        let text = screen(&st, &Status::default(), 160, 44);
        for part in [
            "Stampede · qps-steps",
            "step steps/qps=40",
            "TTFT",
            "http_5xx",
            "local-0",
            "LOST",
            "error_spike",
            "Alerts: 1 firing",
            "GPU 87%",
            "q stop the run",
        ] {
            assert!(text.contains(part), "{part} missing from\n{text}");
        }
        snapshot("dashboard", &text);
    }

    #[test]
    fn the_dashboard_renders_a_paused_watch_and_an_empty_start() {
        let mut st = fixture::state();
        st.scale_before_pause = st.scale;
        st.scale = 0.0;
        let status = Status {
            watching: "127.0.0.1:7071".into(),
            message: "steps/qps=40 paused: p resumes".into(),
        };
        let text = screen(&st, &status, 120, 36);
        assert!(text.contains("PAUSED"), "{text}");
        assert!(text.contains("watching 127.0.0.1:7071"), "{text}");
        snapshot("dashboard-paused-watch", &text);
        let empty = screen(&LiveState::new(), &Status::default(), 100, 30);
        assert!(empty.contains("waiting for the first step"), "{empty}");
        snapshot("dashboard-empty", &empty);
    }
}
