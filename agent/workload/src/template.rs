//! Prompts from a minijinja template.
//!
//! Variables come from the plan (`vars`), from a row of `vars_file` (request i takes row
//! i mod n), and from Stampede: `index` (the request's number in the run's sequence), `class`,
//! `input_tokens`, `output_tokens` and `turn`. Helpers: `filler(n)` is n tokens of filler text,
//! `fill()` fills the prompt up to the request's input length, `choice(list)` picks an item and
//! `rand_int(lo, hi)` a number, both fixed per request.
//!
//! Undefined variables are errors (strict mode). [`TemplateSource::try_new`] renders the
//! template once for every row of variables, so a missing variable stops the plan before the
//! run, naming the template's line and the row.

use minijinja::value::{Serde, Value};
use minijinja::{Environment, Error, ErrorKind, State, UndefinedBehavior};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use serde_json::Map;
use stampede_common::workload::VarRow;

use super::filler::Filler;
use super::tokenizer::Tokenizer;

/// Marks where `filler(n)` goes until the rendered text is finished.
const MARK_OPEN: char = '\u{E000}';
const MARK_CLOSE: char = '\u{E001}';
/// Where `fill()` goes.
const FILL: &str = "\u{E000}fill\u{E001}";
/// The name the template is registered under.
const NAME: &str = "prompt";

/// A compiled template with its variables.
#[derive(Debug)]
pub struct TemplateSource {
    env: Environment<'static>,
    /// The template file as the plan named it, for errors.
    name: String,
    vars: Map<String, serde_json::Value>,
    rows: Vec<VarRow>,
    rows_file: Option<String>,
    /// The template calls `fill()`: its prompts have the request's input length exactly.
    fills: bool,
}

/// What one render needs to know about its request.
#[derive(Debug, Clone, Copy)]
pub struct RenderRequest<'a> {
    /// The request's number in the run's sequence.
    pub index: u64,
    pub seed: u64,
    pub class: &'a str,
    pub input_tokens: u32,
    pub output_tokens: u32,
    pub turn: u32,
}

fn mix(a: u64, b: u64) -> u64 {
    let mut z = a ^ b.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The request's generator for a helper, varied by what the helper was given.
fn helper_rng(state: &State, salt: &str) -> StdRng {
    let seed = state
        .lookup("__seed")
        .and_then(|v| u64::try_from(v).ok())
        .unwrap_or(0);
    let h = salt.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    StdRng::seed_from_u64(mix(seed, h))
}

impl TemplateSource {
    /// Compiles `text` and renders it for every row of variables.
    ///
    /// # Errors
    /// A syntax error, or a row whose render fails (an undefined variable), as a message
    /// naming the template, its line and the row.
    pub fn try_new(
        name: &str,
        text: &str,
        vars: Map<String, serde_json::Value>,
        rows: Vec<VarRow>,
        rows_file: Option<String>,
    ) -> Result<TemplateSource, String> {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        env.add_function("filler", |n: i64| -> Result<String, Error> {
            if !(1..=i64::from(stampede_common::workload::MAX_TOKENS)).contains(&n) {
                return Err(Error::new(
                    ErrorKind::InvalidOperation,
                    format!("filler({n}): expected 1 to 1048576 tokens"),
                ));
            }
            Ok(format!("{MARK_OPEN}{n}{MARK_CLOSE}"))
        });
        env.add_function("fill", || FILL.to_string());
        env.add_function(
            "choice",
            |state: &State, items: Vec<Value>| -> Result<Value, Error> {
                if items.is_empty() {
                    return Err(Error::new(
                        ErrorKind::InvalidOperation,
                        "choice() of an empty list",
                    ));
                }
                let mut rng = helper_rng(state, &format!("{items:?}"));
                Ok(items[rng.random_range(0..items.len())].clone())
            },
        );
        env.add_function(
            "rand_int",
            |state: &State, lo: i64, hi: i64| -> Result<i64, Error> {
                if lo > hi {
                    return Err(Error::new(
                        ErrorKind::InvalidOperation,
                        format!("rand_int({lo}, {hi}): the bounds are reversed"),
                    ));
                }
                let mut rng = helper_rng(state, &format!("{lo}:{hi}"));
                Ok(rng.random_range(lo..=hi))
            },
        );
        env.add_template_owned(NAME, text.to_string())
            .map_err(|e| describe(name, &e, None))?;
        let source = TemplateSource {
            env,
            name: name.to_string(),
            vars,
            rows,
            rows_file,
            fills: text.contains("fill()"),
        };
        let n = source.rows.len().max(1);
        for i in 0..n {
            let probe = RenderRequest {
                index: i as u64,
                seed: 0,
                class: "check",
                input_tokens: 1,
                output_tokens: 1,
                turn: 1,
            };
            source.render_raw(&probe).map_err(|e| {
                let row = source.rows.get(i).map(|r| {
                    let mut keys: Vec<&str> = r.values.keys().map(String::as_str).collect();
                    keys.extend(source.vars.keys().map(String::as_str));
                    format!(
                        "the variables of {}:{} ({})",
                        source.rows_file.as_deref().unwrap_or("vars_file"),
                        r.line,
                        keys.join(", ")
                    )
                });
                describe(name, &e, row)
            })?;
        }
        Ok(source)
    }

    /// True when the template calls `fill()`.
    pub fn fills(&self) -> bool {
        self.fills
    }

    /// Renders with the request's variables; filler marks are still in the text.
    fn render_raw(&self, req: &RenderRequest<'_>) -> Result<String, Error> {
        let mut ctx = self.vars.clone();
        if !self.rows.is_empty() {
            let row = &self.rows[(req.index % self.rows.len() as u64) as usize];
            ctx.extend(row.values.clone());
        }
        ctx.insert("index".into(), req.index.into());
        ctx.insert("class".into(), req.class.into());
        ctx.insert("input_tokens".into(), req.input_tokens.into());
        ctx.insert("output_tokens".into(), req.output_tokens.into());
        ctx.insert("turn".into(), req.turn.into());
        ctx.insert("__seed".into(), req.seed.into());
        self.env
            .get_template(NAME)?
            .render(Value::from(Serde(&ctx)))
    }

    /// The prompt of one request: rendered, `filler(n)` replaced with n tokens of text, and
    /// `fill()` with what brings the whole to `req.input_tokens`. Returns the text and its
    /// length in tokens.
    ///
    /// # Errors
    /// When rendering fails, or the text around `fill()` is already longer than the input.
    pub fn render(
        &self,
        tok: &Tokenizer,
        filler: &Filler,
        req: &RenderRequest<'_>,
    ) -> Result<(String, u32), String> {
        let raw = self
            .render_raw(req)
            .map_err(|e| describe(&self.name, &e, None))?;
        let mut rng = StdRng::seed_from_u64(mix(req.seed, 0xF1));
        let mut out = String::with_capacity(raw.len());
        let mut rest = raw.as_str();
        while let Some(start) = rest.find(MARK_OPEN) {
            let (before, after) = rest.split_at(start);
            out.push_str(before);
            let body = &after[MARK_OPEN.len_utf8()..];
            let Some(end) = body.find(MARK_CLOSE) else {
                out.push_str(after);
                rest = "";
                break;
            };
            let inner = &body[..end];
            if inner == "fill" {
                out.push_str(FILL);
            } else if let Ok(n) = inner.parse::<usize>() {
                let spaced = out.chars().last().is_some_and(|c| !c.is_whitespace());
                filler.push(&mut rng, n, spaced, &mut out);
            }
            rest = &body[end + MARK_CLOSE.len_utf8()..];
        }
        out.push_str(rest);
        if let Some(at) = out.find(FILL) {
            let head = &out[..at];
            let tail = out[at + FILL.len()..].replace(FILL, "");
            let target = req.input_tokens as usize;
            let text = filler
                .fit(tok, mix(req.seed, 0xF2), head, &tail, target)
                .map_err(|e| format!("template {}: fill(): {e}", self.name))?;
            return Ok((text, req.input_tokens));
        }
        let n = u32::try_from(tok.count(&out)).unwrap_or(u32::MAX);
        Ok((out, n))
    }
}

/// A minijinja error as a message naming the template, its line, and what was being rendered.
fn describe(name: &str, e: &Error, row: Option<String>) -> String {
    let mut s = format!("template {name}");
    if let Some(line) = e.line() {
        s.push_str(&format!(" line {line}"));
    }
    s.push_str(": ");
    match e.detail() {
        Some(d) => s.push_str(&format!("{}: {d}", e.kind())),
        None => s.push_str(&e.kind().to_string()),
    }
    if e.kind() == ErrorKind::UndefinedError {
        s.push_str(" (a variable the template uses is not defined)");
    }
    if let Some(row) = row {
        s.push_str(&format!(", rendering with {row}"));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn tok() -> Tokenizer {
        Tokenizer::load("cl100k_base", None).unwrap()
    }

    fn req(index: u64, input: u32) -> RenderRequest<'static> {
        RenderRequest {
            index,
            seed: 42,
            class: "qa",
            input_tokens: input,
            output_tokens: 8,
            turn: 1,
        }
    }

    fn rows(values: &[serde_json::Value]) -> Vec<VarRow> {
        values
            .iter()
            .enumerate()
            .map(|(i, v)| VarRow {
                line: i as u32 + 2,
                values: v.as_object().unwrap().clone(),
            })
            .collect()
    }

    #[test]
    fn variables_rows_and_helpers_render() {
        let mut vars = Map::new();
        vars.insert("lang".into(), json!("Rust"));
        let t = TemplateSource::try_new(
            "qa.j2",
            "[{{ index }}] {{ lang }}: {{ topic }}? {{ choice(['a', 'b']) }} {{ rand_int(1, 3) }}",
            vars,
            rows(&[json!({"topic": "ownership"}), json!({"topic": "traits"})]),
            Some("rows.csv".into()),
        )
        .unwrap();
        let (tk, f) = (tok(), Filler::new(&tok()));
        let (a, _) = t.render(&tk, &f, &req(0, 1)).unwrap();
        let (b, _) = t.render(&tk, &f, &req(3, 1)).unwrap();
        assert!(a.starts_with("[0] Rust: ownership? "), "{a}");
        assert!(b.starts_with("[3] Rust: traits? "), "{b}");
        assert_eq!(
            a,
            t.render(&tk, &f, &req(0, 1)).unwrap().0,
            "the same request renders the same"
        );
    }

    #[test]
    fn filler_and_fill_give_exact_lengths() {
        let (tk, f) = (tok(), Filler::new(&tok()));
        let t = TemplateSource::try_new(
            "t",
            "Context: {{ filler(50) }}\nSummarize the text below.\n{{ fill() }}\nSummary:",
            Map::new(),
            Vec::new(),
            None,
        )
        .unwrap();
        assert!(t.fills());
        for n in [200, 1000, 4096] {
            let (text, count) = t.render(&tk, &f, &req(1, n)).unwrap();
            assert_eq!((tk.count(&text), count), (n as usize, n));
        }
        let e = t.render(&tk, &f, &req(1, 10)).unwrap_err();
        assert!(e.contains("fill()"), "{e}");
        let only = TemplateSource::try_new("t", "{{ filler(300) }}", Map::new(), Vec::new(), None)
            .unwrap();
        let (text, count) = only.render(&tk, &f, &req(0, 1)).unwrap();
        assert_eq!((tk.count(&text), count), (300, 300));
    }

    #[test]
    fn a_missing_variable_names_the_template_line_and_row() {
        let e = TemplateSource::try_new(
            "qa.j2",
            "Question:\n{{ question }}",
            Map::new(),
            rows(&[json!({"question": "a"}), json!({"q": "b"})]),
            Some("rows.csv".into()),
        )
        .unwrap_err();
        assert!(e.contains("template qa.j2 line 2"), "{e}");
        assert!(e.contains("not defined"), "{e}");
        assert!(e.contains("rows.csv:3"), "{e}");
        let e = TemplateSource::try_new("bad.j2", "{% if %}", Map::new(), Vec::new(), None)
            .unwrap_err();
        assert!(e.contains("template bad.j2 line 1: syntax error"), "{e}");
    }
}
