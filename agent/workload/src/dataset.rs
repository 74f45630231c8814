//! Prompts from a dataset: rows of chat messages (a plain prompt is one user message), sent as
//! they are or fitted to the request's input length.
//!
//! Every row is counted once when the source is built. With `fit = "trim"` a request takes a
//! row at least as long as its length and cuts its last message; with `"pad"` a row at most as
//! long and pads it with filler; with `"exact"` any row whose earlier messages leave room. A
//! length no row can reach is an error before the run, naming the dataset and its longest (or
//! shortest) row.

use rand::RngExt;
use rand::rngs::StdRng;
use stampede_common::workload::{ChatMessage, DatasetRow, Fit, LengthDist};

use super::filler::{Filler, FitError};
use super::tokenizer::Tokenizer;

/// A dataset, counted.
#[derive(Debug)]
pub struct DatasetSource {
    name: String,
    rows: Vec<DatasetRow>,
    fit: Fit,
    /// Tokens of each row's messages before the last.
    fixed: Vec<u32>,
    /// Tokens of each row, all messages.
    total: Vec<u32>,
    /// Row indices by total length, shortest first.
    by_total: Vec<usize>,
}

fn count(tok: &Tokenizer, text: &str) -> u32 {
    u32::try_from(tok.count(text)).unwrap_or(u32::MAX)
}

impl DatasetSource {
    /// Counts the rows and checks that every length of `input` can be served.
    ///
    /// # Errors
    /// A message naming the dataset and the length that no row reaches.
    pub fn try_new(
        name: &str,
        rows: Vec<DatasetRow>,
        fit: Fit,
        tok: &Tokenizer,
        input: &LengthDist,
    ) -> Result<DatasetSource, String> {
        if rows.is_empty() {
            return Err(format!("dataset {name}: no row"));
        }
        let mut fixed = Vec::with_capacity(rows.len());
        let mut total = Vec::with_capacity(rows.len());
        for r in &rows {
            let counts: Vec<u32> = r.messages.iter().map(|m| count(tok, &m.content)).collect();
            let all: u32 = counts.iter().sum();
            fixed.push(all - counts.last().copied().unwrap_or(0));
            total.push(all);
        }
        let mut by_total: Vec<usize> = (0..rows.len()).collect();
        by_total.sort_by_key(|&i| (total[i], i));
        let d = DatasetSource {
            name: name.to_string(),
            rows,
            fit,
            fixed,
            total,
            by_total,
        };
        let (shortest, longest) = (d.by_total[0], d.by_total[d.by_total.len() - 1]);
        let line = |i: usize| d.rows[i].line;
        match fit {
            Fit::None => {}
            Fit::Trim if d.total[longest] < input.max() => {
                return Err(format!(
                    "dataset {name}: no row reaches {} tokens (the longest, line {}, has {}): lower input_tokens or use fit = \"pad\" or \"exact\"",
                    input.max(),
                    line(longest),
                    d.total[longest]
                ));
            }
            Fit::Pad if d.total[shortest] > input.min() => {
                return Err(format!(
                    "dataset {name}: every row is longer than {} tokens (the shortest, line {}, has {}): raise input_tokens or use fit = \"trim\" or \"exact\"",
                    input.min(),
                    line(shortest),
                    d.total[shortest]
                ));
            }
            Fit::Exact => {
                let roomiest = (0..d.rows.len()).min_by_key(|&i| d.fixed[i]).unwrap_or(0);
                if d.fixed[roomiest] >= input.min() {
                    return Err(format!(
                        "dataset {name}: the messages before the last one are already {} tokens or more in every row (line {} has {}), more than the input length {}",
                        d.fixed[roomiest],
                        line(roomiest),
                        d.fixed[roomiest],
                        input.min()
                    ));
                }
            }
            _ => {}
        }
        Ok(d)
    }

    /// How rows are fitted.
    pub fn fit(&self) -> Fit {
        self.fit
    }

    /// A row for a request of `target` tokens, drawn from `rng`.
    fn pick(&self, rng: &mut StdRng, target: u32) -> usize {
        let n = self.rows.len();
        match self.fit {
            Fit::None => rng.random_range(0..n),
            Fit::Trim => {
                let from = self.by_total.partition_point(|&i| self.total[i] < target);
                let from = from.min(n - 1);
                self.by_total[rng.random_range(from..n)]
            }
            Fit::Pad => {
                let to = self.by_total.partition_point(|&i| self.total[i] <= target);
                self.by_total[rng.random_range(0..to.max(1))]
            }
            Fit::Exact => {
                let start = rng.random_range(0..n);
                (0..n)
                    .map(|k| (start + k) % n)
                    .find(|&i| self.fixed[i] < target)
                    .unwrap_or(start)
            }
        }
    }

    /// The messages of one request and their length in tokens. `last_only` keeps only the
    /// row's last message (a later turn of a session).
    ///
    /// # Errors
    /// When fitting cannot land on the length.
    pub fn build(
        &self,
        tok: &Tokenizer,
        filler: &Filler,
        rng: &mut StdRng,
        target: u32,
        last_only: bool,
    ) -> Result<(Vec<ChatMessage>, u32), String> {
        let i = self.pick(rng, target);
        let row = &self.rows[i];
        let mut messages = if last_only {
            row.messages[row.messages.len() - 1..].to_vec()
        } else {
            row.messages.clone()
        };
        let fixed = if last_only { 0 } else { self.fixed[i] };
        if self.fit == Fit::None {
            let n = if last_only {
                count(tok, &messages[0].content)
            } else {
                self.total[i]
            };
            return Ok((messages, n));
        }
        let want = target.saturating_sub(fixed).max(1) as usize;
        let seed = rng.random();
        let last = messages.len() - 1;
        messages[last].content = fit_text(tok, filler, seed, &messages[last].content, want)
            .map_err(|e| format!("dataset {} line {}: {e}", self.name, row.line))?;
        Ok((messages, fixed + want as u32))
    }
}

/// `text` cut or padded to exactly `target` tokens.
///
/// # Errors
/// When no cut or padding lands on the target.
pub fn fit_text(
    tok: &Tokenizer,
    filler: &Filler,
    seed: u64,
    text: &str,
    target: usize,
) -> Result<String, FitError> {
    let ids = tok.encode(text);
    if ids.len() <= target {
        return filler.fit(tok, seed, text, "", target);
    }
    let mut n = target;
    for _ in 0..8 {
        let cut = tok.decode(&ids[..n]);
        let c = tok.count(&cut);
        if c == target {
            return Ok(cut);
        }
        if c < target {
            return filler.fit(tok, seed, &cut, "", target);
        }
        n = n.saturating_sub(c - target);
    }
    Err(FitError::NotExact { target, closest: n })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn row(line: u32, msgs: &[(&str, &str)]) -> DatasetRow {
        DatasetRow {
            line,
            messages: msgs
                .iter()
                .map(|(r, c)| ChatMessage {
                    role: r.to_string(),
                    content: c.to_string(),
                })
                .collect(),
        }
    }

    fn rows() -> Vec<DatasetRow> {
        vec![
            row(1, &[("user", "Tell me about the river and the city.")]),
            row(
                2,
                &[
                    ("system", "Be brief."),
                    (
                        "user",
                        "Why is the sky blue? Explain it to a child, with an example or two, and then summarize it in one sentence.",
                    ),
                ],
            ),
            row(3, &[("user", "Hi")]),
        ]
    }

    #[test]
    fn trimmed_padded_and_exact_rows_have_the_length() {
        let tok = Tokenizer::load("cl100k_base", None).unwrap();
        let f = Filler::new(&tok);
        let mut rng = StdRng::seed_from_u64(3);
        let input = LengthDist::Uniform { min: 8, max: 12 };
        for fit in [Fit::Trim, Fit::Pad, Fit::Exact] {
            let input = if fit == Fit::Pad {
                LengthDist::Uniform { min: 40, max: 60 }
            } else {
                input.clone()
            };
            let d = DatasetSource::try_new("d.jsonl", rows(), fit, &tok, &input).unwrap();
            for _ in 0..30 {
                let target = input.sample(&mut rng);
                let (msgs, n) = d.build(&tok, &f, &mut rng, target, false).unwrap();
                let counted: usize = msgs.iter().map(|m| tok.count(&m.content)).sum();
                assert_eq!((counted, n), (target as usize, target), "{fit:?}");
            }
        }
        let d = DatasetSource::try_new("d", rows(), Fit::None, &tok, &input).unwrap();
        let (msgs, n) = d.build(&tok, &f, &mut rng, 9, false).unwrap();
        let counted: usize = msgs.iter().map(|m| tok.count(&m.content)).sum();
        assert_eq!(counted, n as usize);
    }

    #[test]
    fn a_length_the_dataset_cannot_reach_is_an_error() {
        let tok = Tokenizer::load("cl100k_base", None).unwrap();
        let e =
            DatasetSource::try_new("d.jsonl", rows(), Fit::Trim, &tok, &LengthDist::Fixed(4096))
                .unwrap_err();
        assert!(
            e.contains("no row reaches 4096 tokens") && e.contains("line 2"),
            "{e}"
        );
        let e = DatasetSource::try_new(
            "d.jsonl",
            rows()[..2].to_vec(),
            Fit::Pad,
            &tok,
            &LengthDist::Fixed(1),
        )
        .unwrap_err();
        assert!(e.contains("every row is longer"), "{e}");
    }
}
