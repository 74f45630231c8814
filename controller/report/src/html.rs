//! report.html: one self-contained page (styles and SVG charts inline, no script, no link to
//! anything outside it) that opens from a laptop, a CI artifact or an e-mail with no network.

use std::io::{self, Write};

use super::Report;
use super::i18n::Labels;
use super::svg::esc;
use super::tables::{self, Table};

const STYLE: &str = r#"
:root{--fg:#111827;--muted:#6b7280;--bg:#ffffff;--panel:#f9fafb;--line:#e5e7eb;--accent:#2563eb;
--pass:#15803d;--fail:#b91c1c;--info:#2563eb;--warning:#b45309;--critical:#b91c1c}
@media (prefers-color-scheme:dark){:root{--fg:#e5e7eb;--muted:#9ca3af;--bg:#0b1220;--panel:#111a2e;
--line:#24324d;--accent:#60a5fa;--pass:#4ade80;--fail:#f87171;--info:#60a5fa;--warning:#fbbf24;--critical:#f87171}}
*{box-sizing:border-box}
body{margin:0;background:var(--bg);color:var(--fg);font:14px/1.5 system-ui,-apple-system,"Segoe UI",
Roboto,"Noto Sans","PingFang SC","Hiragino Sans GB","Microsoft YaHei","Noto Sans CJK SC",sans-serif}
main{max-width:1280px;margin:0 auto;padding:24px}
h1{font-size:24px;margin:0 0 4px}h2{font-size:18px;margin:32px 0 12px;padding-bottom:6px;border-bottom:1px solid var(--line)}
.sub,.muted{color:var(--muted)}
nav{display:flex;flex-wrap:wrap;gap:6px 14px;margin:12px 0 0;font-size:13px}
nav a{color:var(--accent);text-decoration:none}
.facts{display:grid;grid-template-columns:repeat(auto-fill,minmax(260px,1fr));gap:4px 24px;margin:16px 0}
.facts div{display:flex;gap:8px;border-bottom:1px dashed var(--line);padding:3px 0}
.facts dt{color:var(--muted);min-width:120px}.facts dd{margin:0;word-break:break-all}
.cards{display:grid;grid-template-columns:repeat(auto-fill,minmax(200px,1fr));gap:12px;margin:16px 0}
.card{background:var(--panel);border:1px solid var(--line);border-radius:10px;padding:12px 14px}
.card .k{color:var(--muted);font-size:12px}.card .v{font-size:20px;font-weight:600;margin-top:2px}
.finding{border:1px solid var(--line);border-left:4px solid var(--info);border-radius:8px;padding:10px 14px;margin:10px 0;background:var(--panel)}
.finding.warning{border-left-color:var(--warning)}.finding.critical{border-left-color:var(--critical)}
.badge{display:inline-block;font-size:11px;font-weight:600;text-transform:uppercase;padding:1px 7px;border-radius:999px;border:1px solid currentColor;margin-right:6px}
.badge.info{color:var(--info)}.badge.warning{color:var(--warning)}.badge.critical{color:var(--critical)}
.finding p{margin:6px 0}.finding code{font-size:12px;color:var(--muted)}
.suggestion{padding-left:10px;border-left:2px solid var(--line)}
details summary{cursor:pointer;color:var(--muted);font-size:12px}
pre{background:var(--panel);border:1px solid var(--line);border-radius:6px;padding:10px;overflow:auto;font-size:12px}
.table-wrap{overflow-x:auto}
table{border-collapse:collapse;width:100%;font-size:13px;font-variant-numeric:tabular-nums}
th,td{padding:5px 8px;border-bottom:1px solid var(--line);text-align:right;white-space:nowrap}
th.t,td.t{text-align:left}
th{color:var(--muted);font-weight:600;background:var(--panel);position:sticky;top:0}
tr.pass td:last-child{color:var(--pass);font-weight:600}tr.fail td:last-child{color:var(--fail);font-weight:600}
.charts{display:grid;grid-template-columns:repeat(auto-fill,minmax(560px,1fr));gap:16px}
figure{margin:0;background:var(--panel);border:1px solid var(--line);border-radius:10px;padding:8px}
svg.chart{display:block;height:auto}
svg.chart text{fill:var(--fg)}svg.chart text.muted{fill:var(--muted)}
svg.chart .grid{stroke:var(--line)}svg.chart .frame{stroke:var(--muted)}svg.chart .band rect{fill:var(--fg)}
footer{margin:40px 0 8px;color:var(--muted);font-size:12px}
@media print{.charts{grid-template-columns:1fr}figure{break-inside:avoid}}
"#;

/// Writes the page.
///
/// # Errors
/// When the writer fails.
pub fn write<W: Write>(out: &mut W, r: &Report<'_>) -> io::Result<()> {
    let l = r.lang.labels();
    let s = &r.run.summary;
    let title = format!("{}: {}", l.report_title, s.plan);
    writeln!(out, "<!DOCTYPE html>")?;
    writeln!(out, r#"<html lang="{}">"#, r.lang.html_code())?;
    writeln!(
        out,
        r#"<head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1"><title>{}</title><style>{STYLE}</style></head>"#,
        esc(&title)
    )?;
    writeln!(out, "<body><main>")?;
    writeln!(out, "<header><h1>{}</h1>", esc(&title))?;
    writeln!(
        out,
        r#"<div class="sub">{} · {} · {}</div>"#,
        esc(&s.target.model),
        esc(&s.started_at),
        esc(s.status.name())
    )?;
    let mut toc: Vec<(&str, String)> = vec![
        ("findings", l.findings.into()),
        ("steps", l.steps.into()),
        ("slo", l.slo_verdicts.into()),
        ("errors", l.errors.into()),
    ];
    toc.extend(r.sections.iter().map(|sec| (sec.id, sec.title.clone())));
    toc.push(("plan", l.plan.into()));
    write!(out, "<nav>")?;
    for (id, name) in &toc {
        write!(out, r##"<a href="#{id}">{}</a>"##, esc(name))?;
    }
    writeln!(out, "</nav></header>")?;

    writeln!(out, r#"<dl class="facts">"#)?;
    for (k, v) in tables::facts(r.run, l) {
        writeln!(out, "<div><dt>{}</dt><dd>{}</dd></div>", esc(&k), esc(&v))?;
    }
    writeln!(out, "</dl>")?;
    writeln!(out, r#"<div class="cards">"#)?;
    for (k, v) in tables::headline(r.run, &r.analysis, &r.knees, l) {
        writeln!(
            out,
            r#"<div class="card"><div class="k">{}</div><div class="v">{}</div></div>"#,
            esc(&k),
            esc(&v)
        )?;
    }
    writeln!(out, "</div>")?;

    findings(out, r, l)?;
    table_section(out, "steps", l.steps, &tables::steps(r.run, l), None)?;
    table_section(
        out,
        "slo",
        l.slo_verdicts,
        &tables::slo(r.run, l),
        Some(l.no_slo),
    )?;
    table_section(
        out,
        "errors",
        l.errors,
        &tables::errors(r.run, l),
        Some(l.no_errors),
    )?;

    for sec in &r.sections {
        writeln!(
            out,
            r#"<section id="{}"><h2>{}</h2>"#,
            sec.id,
            esc(&sec.title)
        )?;
        if let Some(note) = &sec.note {
            writeln!(out, r#"<p class="muted">{}</p>"#, esc(note))?;
        }
        writeln!(out, r#"<div class="charts">"#)?;
        for c in &sec.charts {
            writeln!(out, "<figure>{}</figure>", c.to_svg())?;
        }
        writeln!(out, "</div></section>")?;
    }

    let notes = tables::notes(r.run, l);
    if !notes.is_empty() {
        writeln!(out, r#"<section id="notes"><h2>{}</h2><ul>"#, esc(l.notes))?;
        for n in notes {
            writeln!(out, "<li>{}</li>", esc(&n))?;
        }
        writeln!(out, "</ul></section>")?;
    }
    writeln!(out, r#"<section id="plan"><h2>{}</h2>"#, esc(l.plan))?;
    if let Some(plan) = &r.run.plan_toml {
        writeln!(
            out,
            "<details><summary>plan.toml</summary><pre>{}</pre></details>",
            esc(plan)
        )?;
    }
    writeln!(out, "</section>")?;
    writeln!(
        out,
        "<footer>{} {} {} <code>controller report {}</code></footer>",
        esc(l.generated_by),
        esc(&s.manifest.stampede_version),
        esc(l.rebuild_hint),
        esc(&r.run.dir.display().to_string())
    )?;
    writeln!(out, "</main></body></html>")
}

fn findings<W: Write>(out: &mut W, r: &Report<'_>, l: &Labels) -> io::Result<()> {
    writeln!(
        out,
        r#"<section id="findings"><h2>{}</h2>"#,
        esc(l.findings)
    )?;
    if r.analysis.findings.is_empty() {
        writeln!(out, r#"<p class="muted">{}</p>"#, esc(l.no_findings))?;
    }
    for f in &r.analysis.findings {
        let sev = l.severity(f.severity);
        writeln!(
            out,
            r#"<div class="finding {0}"><p><span class="badge {0}">{1}</span><code>{2}</code></p><p>{3}</p>"#,
            f.severity,
            esc(sev),
            f.code(),
            esc(&f.message)
        )?;
        if let Some(s) = &f.suggestion {
            writeln!(
                out,
                r#"<p class="suggestion"><b>{}:</b> {}</p>"#,
                esc(l.suggestion),
                esc(s)
            )?;
        }
        // The facts the finding rests on, as summary.json holds them.
        let facts = serde_json::to_value(&f.facts).unwrap_or_default();
        let evidence = serde_json::to_string_pretty(&facts["facts"]).unwrap_or_default();
        writeln!(
            out,
            "<details><summary>{}</summary><pre>{}</pre></details></div>",
            esc(l.evidence),
            esc(&evidence)
        )?;
    }
    writeln!(out, "</section>")
}

fn table_section<W: Write>(
    out: &mut W,
    id: &str,
    title: &str,
    t: &Table,
    empty: Option<&str>,
) -> io::Result<()> {
    writeln!(out, r#"<section id="{id}"><h2>{}</h2>"#, esc(title))?;
    if t.rows.is_empty() {
        if let Some(e) = empty {
            writeln!(out, r#"<p class="muted">{}</p>"#, esc(e))?;
        }
        return writeln!(out, "</section>");
    }
    write!(out, r#"<div class="table-wrap"><table><thead><tr>"#)?;
    let class = |i: usize| {
        if t.is_text(i) { r#" class="t""# } else { "" }
    };
    for (i, h) in t.headers.iter().enumerate() {
        write!(out, "<th{}>{}</th>", class(i), esc(h))?;
    }
    writeln!(out, "</tr></thead><tbody>")?;
    for (row, state) in t.rows.iter().zip(&t.states) {
        match state {
            Some(s) => write!(out, r#"<tr class="{s}">"#)?,
            None => write!(out, "<tr>")?,
        }
        for (i, cell) in row.iter().enumerate() {
            write!(out, "<td{}>{}</td>", class(i), esc(cell))?;
        }
        writeln!(out, "</tr>")?;
    }
    writeln!(out, "</tbody></table></div></section>")
}

#[cfg(test)]
mod tests {
    use super::super::fixture;
    use super::super::i18n::Lang;
    use super::*;
    use stampede_results::read::RunData;

    fn page(lang: Lang) -> String {
        let dir = tempfile::tempdir().unwrap();
        fixture::write_steps_run(dir.path(), &fixture::knee_steps());
        fixture::write_resources(dir.path());
        let run = RunData::load(dir.path()).unwrap();
        let r = Report::build(&run, lang);
        let mut out = Vec::new();
        write(&mut out, &r).unwrap();
        String::from_utf8(out).unwrap()
    }

    /// Every `<tag` has its `</tag>` for the elements the page nests.
    fn balanced(html: &str, tag: &str) -> bool {
        html.matches(&format!("<{tag}>")).count() + html.matches(&format!("<{tag} ")).count()
            == html.matches(&format!("</{tag}>")).count()
    }

    #[test]
    fn the_page_is_whole_self_contained_and_has_every_part() {
        let html = page(Lang::En);
        assert!(html.starts_with("<!DOCTYPE html>"));
        assert!(html.trim_end().ends_with("</html>"));
        for tag in ["section", "svg", "table", "figure", "details", "div", "g"] {
            assert!(balanced(&html, tag), "unbalanced <{tag}>");
        }
        let polylines: Vec<&str> = html.split("<polyline ").skip(1).collect();
        assert!(!polylines.is_empty());
        for p in polylines {
            let end = p.find('>').expect("a polyline ends");
            assert!(p[..end].ends_with('/'), "a polyline is self-closed");
        }
        // No network: no scripts, stylesheets, images or fonts fetched, no links out.
        for bad in [
            "<script",
            "<link",
            "<img",
            "@import",
            "url(",
            "src=",
            "href=\"http",
            "xmlns",
        ] {
            assert!(!html.contains(bad), "{bad} found");
        }
        for id in [
            "findings",
            "steps",
            "slo",
            "errors",
            "load",
            "throughput",
            "time",
            "resources",
            "distribution",
            "plan",
        ] {
            assert!(
                html.contains(&format!(r#"<section id="{id}">"#)),
                "section {id}"
            );
        }
        for title in [
            "Achieved against offered QPS",
            "Output tokens/s",
            "Requests in flight",
            "GPU utilisation",
            "KV cache usage",
            "E2E latency: distribution by percentile",
        ] {
            assert!(html.contains(&format!(">{title}</text>")), "chart {title}");
        }
        assert!(html.contains(r#"class="marker""#), "the knee is marked");
        assert!(html.contains("queueing-bound") && html.contains(r#"class="suggestion""#));
        assert!(html.contains(r#"<tr class="fail">"#) && html.contains(r#"<tr class="pass">"#));
    }

    #[test]
    fn chinese_labels_reach_the_charts_and_tables() {
        let html = page(Lang::Zh);
        assert!(html.contains(r#"<html lang="zh-CN">"#));
        assert!(
            html.contains(">目标 QPS（请求/秒）</text>"),
            "x axis in Chinese"
        );
        assert!(html.contains(">延迟（毫秒）</text>"), "y axis in Chinese");
        assert!(html.contains("<h2>诊断结论</h2>") && html.contains("优化建议"));
        assert!(html.contains("拐点在"), "findings in Chinese");
        assert!(!html.contains(">offered QPS (requests/s)</text>"));
    }
}
