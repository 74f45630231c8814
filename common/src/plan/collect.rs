//! Reading a plan's text into its serde form with every syntax and type problem found in one
//! pass, not only the first.
//!
//! toml's parser recovers from a syntax error and goes on; serde stops at the first value that
//! does not fit the schema. So the parsed document is deserialized, and at each error the item
//! it points at (an unknown key, an ill-typed value, a table missing a field) is noted and left
//! out, and what is left is deserialized again, until it fits. Each round removes an item, so
//! this ends. Unknown names get a "did you mean" from the names serde itself expected
//! ([`super::suggest`]), so the schema stays the only list of them.
//!
//! What one problem may hide, by design:
//! - a table missing a required field is left out whole, but only after its other fields were
//!   checked (serde reports a missing field when it has read the rest of the table);
//! - a type error in the item a syntax error touches is not reported again;
//! - the meaning checks of a table that lost an item are skipped ([`Collected::hides`]): they
//!   would only repeat it ("no load given" after a misspelt `qps`).

use std::ops::Range;

use serde::Deserialize;
use toml::Spanned;
use toml::de::{DeArray, DeTable, DeValue};

use super::issue::{PlanIssue, issue_at};
use super::suggest::with_suggestion;

/// What reading a plan's text found.
pub(crate) struct Collected<T> {
    /// The value deserialized from what was left; `None` when even that failed (an error the
    /// document could not be pruned of).
    pub value: Option<T>,
    /// Syntax and type problems, located, in the order found.
    pub issues: Vec<PlanIssue>,
    /// Dotted paths (`stage[1].qps`) of the items left out and of the lines syntax errors are
    /// on: the tables whose meaning checks would only repeat them.
    pub dropped: Vec<String>,
    /// Every item as written, to locate a field by its path.
    pub written: Written,
}

impl<T> Collected<T> {
    /// True when `issue` is a meaning check of a table that lost an item: it would repeat (or
    /// follow from) a problem already reported.
    pub fn hides(&self, issue: &PlanIssue) -> bool {
        let Some(field) = &issue.field else {
            return false;
        };
        self.dropped.iter().any(|d| same_table(field, d))
    }
}

/// Reads `text` into a `T`, collecting every syntax and type problem on the way.
pub(crate) fn read<'i, T: Deserialize<'i>>(text: &'i str) -> Collected<T> {
    let (mut doc, syntax) = DeTable::parse_recoverable(text);
    let written = Written::of(&doc);
    let mut issues: Vec<PlanIssue> = Vec::new();
    let mut dropped = Vec::new();
    // Paths of the items on lines with a syntax error: what toml recovered there is a guess
    // (`qps = = 5` reads as `qps = 0`), so it is left out, and what follows from its absence
    // (the table then misses a field) is not reported again.
    let mut broken: Vec<String> = Vec::new();
    for e in &syntax {
        let issue = located(text, e, None);
        // One report per line: toml may find two things wrong where one was written.
        if issues.iter().any(|i| i.line == issue.line) {
            continue;
        }
        if let Some(span) = e.span() {
            let on_line: Vec<&Item> = (written.items.iter())
                .filter(|i| {
                    i.key
                        .as_ref()
                        .is_some_and(|(_, k)| same_line(text, k.start, span.start))
                })
                .collect();
            for item in on_line {
                remove(doc.get_mut(), item);
                broken.push(item.path.clone());
            }
            dropped.extend(issue.field.clone());
        }
        issues.push(issue);
    }
    dropped.extend(broken.iter().cloned());
    // Each round removes one item, so the rounds are bounded by the items written.
    for _ in 0..=written.items.len() {
        let e = match T::deserialize(toml::de::Deserializer::from(doc.clone())) {
            Ok(value) => {
                return Collected {
                    value: Some(value),
                    issues,
                    dropped,
                    written,
                };
            }
            Err(e) => e,
        };
        // The root is no item: an error there cannot be pruned.
        let Some(item) = e.span().and_then(|span| written.item_at(&span, &broken)) else {
            issues.push(located(text, &e, None));
            break;
        };
        let follows_syntax = (broken.iter()).any(|b| is_within(b, &item.path));
        if !follows_syntax {
            issues.push(located(text, &e, Some(&item.path)));
        }
        dropped.push(item.path.clone());
        if !remove(doc.get_mut(), item) {
            break;
        }
    }
    Collected {
        value: None,
        issues,
        dropped,
        written,
    }
}

/// True when `path` is `outer` or an item inside it.
fn is_within(path: &str, outer: &str) -> bool {
    path.strip_prefix(outer)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with(['.', '[']))
}

/// One problem found by toml or serde, located at its span, with the suggestion for a name
/// serde did not know.
fn located(text: &str, e: &toml::de::Error, path: Option<&str>) -> PlanIssue {
    let message = with_suggestion(e.message().trim());
    let mut issue = match e.span() {
        Some(span) => issue_at(text, &span, &message),
        None => PlanIssue {
            line: 0,
            column: 0,
            field: None,
            message,
        },
    };
    if let Some(path) = path {
        issue.field = Some(path.to_string());
    }
    issue
}

fn same_line(text: &str, a: usize, b: usize) -> bool {
    let (lo, hi) = (a.min(b).min(text.len()), a.max(b).min(text.len()));
    !text.as_bytes()[lo..hi].contains(&b'\n')
}

/// True when two dotted paths are in the same table of the plan: the same top-level key, the
/// same element of an array of tables (`stage[1]`), or one is the whole array (`stage`).
fn same_table(a: &str, b: &str) -> bool {
    let table = |p: &str| p.split('.').next().unwrap_or(p).to_string();
    let array = |p: &str| p.split('[').next().unwrap_or(p).to_string();
    let (ta, tb) = (table(a), table(b));
    ta == tb || (!ta.contains('[') && ta == array(&tb)) || (!tb.contains('[') && tb == array(&ta))
}

/// One item of the document as written: a key and its value, or an element of an array.
#[derive(Debug, Clone)]
pub(crate) struct Item {
    /// Dotted path with array indices as written: `stage[1].steps.qps`.
    pub path: String,
    /// The key's name and span; `None` for an array element.
    key: Option<(String, Range<usize>)>,
    pub value: Range<usize>,
}

impl Item {
    /// From the key (or the value, for an element) to the end of the value.
    fn whole(&self) -> Range<usize> {
        match &self.key {
            Some((_, k)) => k.start.min(self.value.start)..k.end.max(self.value.end),
            None => self.value.clone(),
        }
    }
}

/// Every item of a document, in the order they are walked (parents before children).
#[derive(Debug, Clone, Default)]
pub(crate) struct Written {
    items: Vec<Item>,
}

impl Written {
    fn of(doc: &Spanned<DeTable<'_>>) -> Written {
        let mut w = Written::default();
        w.table(doc.get_ref(), "");
        w
    }

    fn table(&mut self, t: &DeTable<'_>, prefix: &str) {
        for (k, v) in t.iter() {
            let name: &str = k.get_ref();
            let path = if prefix.is_empty() {
                name.to_string()
            } else {
                format!("{prefix}.{name}")
            };
            self.items.push(Item {
                path: path.clone(),
                key: Some((name.to_string(), k.span())),
                value: v.span(),
            });
            self.value(v.get_ref(), &path);
        }
    }

    fn value(&mut self, v: &DeValue<'_>, path: &str) {
        match v {
            DeValue::Table(t) => self.table(t, path),
            DeValue::Array(a) => {
                for (i, e) in a.iter().enumerate() {
                    let path = format!("{path}[{i}]");
                    self.items.push(Item {
                        path: path.clone(),
                        key: None,
                        value: e.span(),
                    });
                    self.value(e.get_ref(), &path);
                }
            }
            _ => {}
        }
    }

    /// The smallest item holding `span` (the deepest, on a tie): what an error there is about.
    /// Items already left out (`gone`) are not candidates.
    fn item_at(&self, span: &Range<usize>, gone: &[String]) -> Option<&Item> {
        let mut best: Option<&Item> = None;
        for i in self.items.iter().filter(|i| !gone.contains(&i.path)) {
            let w = i.whole();
            let holds = w.start <= span.start && span.end <= w.end;
            if holds && best.is_none_or(|b| w.len() <= b.whole().len()) {
                best = Some(i);
            }
        }
        best
    }

    /// Where the value of the field at `path` is written, or that of the nearest table above it
    /// that is (never the whole document).
    pub fn span_of(&self, path: &str) -> Option<Range<usize>> {
        let mut p = path;
        loop {
            if let Some(i) = self.items.iter().find(|i| i.path == p) {
                return Some(i.value.clone());
            }
            p = match p.rfind(['.', '[']) {
                Some(cut) => &p[..cut],
                None => return None,
            };
        }
    }

    /// The position of the array element written at `span` under `array` (`stage`): its index
    /// as written, which items left out before it do not shift.
    pub fn index_in(&self, array: &str, span: &Range<usize>) -> Option<usize> {
        let prefix = format!("{array}[");
        self.items.iter().find_map(|i| {
            let rest = i.path.strip_prefix(&prefix)?;
            let n = rest.strip_suffix(']')?.parse().ok()?;
            (i.value == *span).then_some(n)
        })
    }
}

/// Removes `item` from the document (its key and value, or its element); false when it is not
/// there any more.
fn remove(t: &mut DeTable<'_>, item: &Item) -> bool {
    for (_, v) in t.iter_mut() {
        if remove_below(v, item) {
            return true;
        }
    }
    let Some((name, _)) = &item.key else {
        return false;
    };
    let before = t.len();
    let kept: DeTable<'_> = std::mem::take(t)
        .into_iter()
        .filter(|(k, v)| !(k.get_ref() == name && v.span() == item.value))
        .collect();
    *t = kept;
    t.len() != before
}

fn remove_below(v: &mut Spanned<DeValue<'_>>, item: &Item) -> bool {
    match v.get_mut() {
        DeValue::Table(t) => remove(t, item),
        DeValue::Array(a) => {
            if item.key.is_none() && a.iter().any(|e| e.span() == item.value) {
                let kept: DeArray<'_> = std::mem::replace(a, DeArray::new())
                    .into_iter()
                    .filter(|e| e.span() != item.value)
                    .collect();
                *a = kept;
                return true;
            }
            a.iter_mut().any(|e| remove_below(e, item))
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_in_the_same_table() {
        assert!(same_table("stage[1].qps", "stage[1]"));
        assert!(same_table("stage", "stage[0].name"));
        assert!(!same_table("stage[0].qps", "stage[1].qps"));
        assert!(same_table("target.timeout", "target"));
        assert!(!same_table("target.timeout", "targets"));
    }
}
