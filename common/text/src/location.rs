//! Where a byte of a TOML text is, as a person reads it: line, column, and the dotted field
//! written there (`stage[1].qps`, `target.sim.faults[0].at`), so that an error found at a span
//! can say where to look.

use std::collections::BTreeMap;

/// A position in a text: 1-based line and column, and the field written there when known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    pub line: usize,
    pub column: usize,
    /// The dotted field: the key on that line, prefixed by the table header above it.
    pub field: Option<String>,
}

/// Locates byte `offset` of a TOML `text` (an offset past the end means the end).
pub fn locate(text: &str, offset: usize) -> Location {
    let mut start = offset.min(text.len());
    while !text.is_char_boundary(start) {
        start -= 1;
    }
    let before = &text[..start];
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    Location {
        line: before.matches('\n').count() + 1,
        column: text[line_start..start].chars().count() + 1,
        field: field_at(text, line_start),
    }
}

/// The dotted field of the line starting at `line_start`: its key, prefixed by the table header
/// above it (or on it); the n-th table of an array of tables (`[[stage]]`) is named with its
/// index, `stage[n]`.
fn field_at(text: &str, line_start: usize) -> Option<String> {
    let line_end = text[line_start..]
        .find('\n')
        .map_or(text.len(), |i| line_start + i);
    let line = &text[line_start..line_end];
    let key = line.split_once('=').and_then(|(k, _)| {
        let k = k.trim();
        (!k.is_empty() && !k.starts_with('[') && !k.starts_with('#')).then(|| k.to_string())
    });
    let mut table: Option<String> = None;
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    // Up to the end of the position's line: a header on that very line is its table.
    for l in text[..line_end].lines() {
        let t = l.trim();
        if let Some(h) = t.strip_prefix("[[").and_then(|h| h.split("]]").next()) {
            let name = h.trim().to_string();
            let n = counts.entry(name.clone()).or_default();
            table = Some(format!("{name}[{n}]"));
            *n += 1;
        } else if let Some(h) = t.strip_prefix('[').and_then(|h| h.split(']').next()) {
            table = Some(h.trim().to_string());
        }
    }
    match (table, key) {
        (Some(t), Some(k)) => Some(format!("{t}.{k}")),
        (None, Some(k)) => Some(k),
        (Some(t), None) => Some(t),
        (None, None) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_byte_is_located_by_line_column_and_field() {
        let text = "name = \"x\"\n[target.sim]\nttft = \"5 parsecs\"\n[[target.sim.faults]]\nat = \"1s\"\n[[target.sim.faults]]\nat = \"x\"\n[[stage]]\nqps = 1\n";
        let at = |needle: &str, nth: usize| {
            let offset = text.match_indices(needle).nth(nth).unwrap().0;
            let l = locate(text, offset);
            (l.line, l.column, l.field)
        };
        let field = |s: &str| Some(s.to_string());
        assert_eq!(at("name", 0), (1, 1, field("name")));
        assert_eq!(at("\"5 parsecs", 0), (3, 8, field("target.sim.ttft")));
        assert_eq!(at("\"1s", 0), (5, 6, field("target.sim.faults[0].at")));
        assert_eq!(at("[[target", 1), (6, 1, field("target.sim.faults[1]")));
        assert_eq!(at("\"x\"", 1), (7, 6, field("target.sim.faults[1].at")));
        assert_eq!(at("1\n", 0), (9, 7, field("stage[0].qps")));
        assert_eq!(locate(text, usize::MAX).line, 10);
    }
}
