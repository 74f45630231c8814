//! report.md: the run's facts, headline numbers, findings and tables in GitHub-flavoured
//! Markdown, to paste into a pull request or a ticket.

use std::io::{self, Write};

use super::Report;
use super::tables::{self, Table};

/// Writes the Markdown report.
///
/// # Errors
/// When the writer fails.
pub fn write<W: Write>(out: &mut W, r: &Report<'_>) -> io::Result<()> {
    let l = r.lang.labels();
    let s = &r.run.summary;
    writeln!(out, "# {}: {}\n", l.report_title, cell(&s.plan))?;
    let facts = tables::facts(r.run, l);
    writeln!(out, "| | |\n| --- | --- |")?;
    for (k, v) in facts {
        writeln!(out, "| {} | {} |", cell(&k), cell(&v))?;
    }
    writeln!(out, "\n## {}\n", l.headline)?;
    for (k, v) in tables::headline(r.run, &r.analysis, &r.knees, l) {
        writeln!(out, "- **{}**: {}", k, v)?;
    }
    writeln!(out, "\n## {}\n", l.findings)?;
    if r.analysis.findings.is_empty() {
        writeln!(out, "{}", l.no_findings)?;
    }
    for f in &r.analysis.findings {
        let sev = l.severity(f.severity);
        writeln!(out, "- **{sev}** `{}`: {}", f.code(), f.message)?;
        if let Some(sug) = &f.suggestion {
            writeln!(out, "  - *{}*: {sug}", l.suggestion)?;
        }
    }
    table(out, l.steps, &tables::steps(r.run, l), None)?;
    table(out, l.slo_verdicts, &tables::slo(r.run, l), Some(l.no_slo))?;
    table(out, l.errors, &tables::errors(r.run, l), Some(l.no_errors))?;
    let notes = tables::notes(r.run, l);
    if !notes.is_empty() {
        writeln!(out, "\n## {}\n", l.notes)?;
        for n in notes {
            writeln!(out, "- {n}")?;
        }
    }
    writeln!(
        out,
        "\n_{} {} {} `controller report {}`; {} report.html._",
        l.generated_by,
        s.manifest.stampede_version,
        l.rebuild_hint,
        r.run.dir.display(),
        match r.lang {
            super::i18n::Lang::En => "charts are in",
            super::i18n::Lang::Zh => "图表见",
        }
    )
}

/// A table cell: pipes escaped and line breaks flattened, which would end the cell.
fn cell(s: &str) -> String {
    s.replace('|', "\\|").replace(['\n', '\r'], " ")
}

fn table<W: Write>(out: &mut W, title: &str, t: &Table, empty: Option<&str>) -> io::Result<()> {
    writeln!(out, "\n## {title}\n")?;
    if t.rows.is_empty() {
        if let Some(e) = empty {
            writeln!(out, "{e}")?;
        }
        return Ok(());
    }
    let head: Vec<String> = t.headers.iter().map(|h| cell(h)).collect();
    writeln!(out, "| {} |", head.join(" | "))?;
    let align: Vec<&str> = (0..t.headers.len())
        .map(|i| if t.is_text(i) { "---" } else { "---:" })
        .collect();
    writeln!(out, "| {} |", align.join(" | "))?;
    for row in &t.rows {
        let cells: Vec<String> = row.iter().map(|c| cell(c)).collect();
        writeln!(out, "| {} |", cells.join(" | "))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::fixture;
    use super::super::i18n::Lang;
    use super::*;
    use stampede_results::read::RunData;

    fn markdown(lang: Lang) -> String {
        let dir = tempfile::tempdir().unwrap();
        fixture::write_steps_run(dir.path(), &fixture::knee_steps());
        let run = RunData::load(dir.path()).unwrap();
        let mut out = Vec::new();
        write(&mut out, &Report::build(&run, lang)).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn the_markdown_has_its_sections_and_well_formed_tables() {
        let md = markdown(Lang::En);
        for h in [
            "## Headline",
            "## Findings",
            "## Steps",
            "## SLO verdicts",
            "## Errors",
        ] {
            assert!(md.contains(h), "{h}");
        }
        assert!(md.contains("**Max QPS within SLO**: 8 /s"), "{md}");
        assert!(md.contains("`queueing-bound`") && md.contains("*Suggestion*"));
        // Every row of a table has as many cells as its header.
        for block in md.split("\n\n").filter(|b| b.starts_with("| ")) {
            let widths: Vec<usize> = block.lines().map(|l| l.matches(" | ").count()).collect();
            assert!(widths.windows(2).all(|w| w[0] == w[1]), "{block}");
        }
        assert!(!md.contains("<svg"));
    }

    #[test]
    fn the_errors_table_shows_each_status_with_its_first_message() {
        use stampede_results::summary::ErrorSample;
        let mut steps = fixture::knee_steps();
        let last = steps.last_mut().unwrap();
        last.errors.insert("http_4xx".into(), 3);
        let sample = |status, count, message: &str| ErrorSample {
            class: "http_4xx".into(),
            http_status: Some(status),
            count,
            message: message.into(),
        };
        last.error_messages = vec![
            sample(
                401,
                2,
                "HTTP 401 Unauthorized Invalid API key | sk-[redacted]",
            ),
            sample(404, 1, "HTTP 404 Not Found no such model"),
            ErrorSample {
                class: "timeout_first_token".into(),
                http_status: None,
                count: 40,
                message: "no content before the first-token timeout".into(),
            },
        ];
        let dir = tempfile::tempdir().unwrap();
        fixture::write_steps_run(dir.path(), &steps);
        let run = RunData::load(dir.path()).unwrap();
        let mut out = Vec::new();
        write(&mut out, &Report::build(&run, Lang::En)).unwrap();
        let md = String::from_utf8(out).unwrap();
        let errors = md.split("## Errors").nth(1).unwrap();
        let rows: Vec<&str> = errors
            .lines()
            .filter(|l| l.starts_with("| steps/qps=32"))
            .collect();
        assert_eq!(
            rows,
            [
                "| steps/qps=32 | cancelled | 216 | 33.8% | - |",
                "| steps/qps=32 | http_4xx 401 | 2 | 0.312% | HTTP 401 Unauthorized Invalid API key \\| sk-[redacted] |",
                "| steps/qps=32 | http_4xx 404 | 1 | 0.156% | HTTP 404 Not Found no such model |",
                "| steps/qps=32 | timeout_first_token | 40 | 6.25% | no content before the first-token timeout |",
            ],
            "{errors}"
        );
        assert!(
            errors.contains("| step | error class | count | Error rate | first message |"),
            "{errors}"
        );
        assert!(
            errors.contains("| --- | --- | ---: | ---: | --- |"),
            "{errors}"
        );
    }

    #[test]
    fn chinese_markdown_uses_chinese_headings() {
        let md = markdown(Lang::Zh);
        assert!(
            md.contains("## 诊断结论") && md.contains("| 阶段 |"),
            "{md}"
        );
    }

    #[test]
    fn cells_cannot_break_a_table() {
        assert_eq!(cell("a|b\nc"), "a\\|b c");
    }
}
