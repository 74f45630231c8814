//! "Did you mean `output_tokens`?": the known name nearest to a misspelt one.
//!
//! The known names are the ones serde lists when it meets an unknown field or enum value
//! ("unknown field `qpss`, expected one of `name`, `qps`, ..."), which the derive takes from the
//! schema itself; no second list is kept here.

/// The message of a toml/serde error, with "did you mean" for an unknown field or value when a
/// known name is close. A long list of every name is then left out: the suggestion says it.
pub(crate) fn with_suggestion(message: &str) -> String {
    let Some((kind, word, expected)) = unknown_name(message) else {
        return message.to_string();
    };
    match nearest(word, expected.iter().copied()) {
        Some(best) => format!("unknown {kind} `{word}`: did you mean `{best}`?"),
        None => message.to_string(),
    }
}

/// The kind (`field` or `variant`), the name and the names expected, from serde's message for
/// an unknown field or variant.
fn unknown_name(message: &str) -> Option<(&str, &str, Vec<&str>)> {
    let rest = message.strip_prefix("unknown ")?;
    let (kind, rest) = rest.split_once(" `")?;
    if kind != "field" && kind != "variant" {
        return None;
    }
    let (word, rest) = rest.split_once('`')?;
    let expected = rest.strip_prefix(", expected ")?;
    // Names are the backquoted parts: `a`, `b` or `c`.
    let names = expected.split('`').skip(1).step_by(2).collect();
    Some((kind, word, names))
}

/// The name in `known` nearest to `word`, if it is near enough to be what was meant: at most
/// one edit in three characters (at least one), case aside. The first wins a tie.
pub fn nearest<'a>(word: &str, known: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let word = word.to_lowercase();
    let limit = (word.chars().count() / 3).max(1);
    known
        .into_iter()
        .map(|k| (distance(&word, &k.to_lowercase()), k))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

/// Edits between `a` and `b`: insertions, deletions, substitutions and swaps of two
/// neighbouring characters (optimal string alignment distance).
fn distance(a: &str, b: &str) -> usize {
    let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    let w = b.len() + 1;
    let mut d = vec![0usize; (a.len() + 1) * w];
    for i in 0..=a.len() {
        d[i * w] = i;
    }
    for (j, cell) in d.iter_mut().enumerate().take(w) {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut v = (d[(i - 1) * w + j] + 1)
                .min(d[i * w + j - 1] + 1)
                .min(d[(i - 1) * w + j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                v = v.min(d[(i - 2) * w + j - 2] + 1);
            }
            d[i * w + j] = v;
        }
    }
    d[a.len() * w + b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edits_are_counted() {
        assert_eq!(distance("qps", "qps"), 0);
        assert_eq!(distance("qpss", "qps"), 1);
        assert_eq!(distance("ouptut", "output"), 1);
        assert_eq!(distance("possion", "poisson"), 2);
        assert_eq!(distance("", "abc"), 3);
    }

    #[test]
    fn the_nearest_close_name_is_suggested() {
        let known = ["input_tokens", "output_tokens", "duration"];
        assert_eq!(nearest("output_token", known), Some("output_tokens"));
        assert_eq!(nearest("Duraton", known), Some("duration"));
        assert_eq!(nearest("model", known), None);
    }

    #[test]
    fn serde_messages_get_a_suggestion() {
        let m =
            "unknown field `output_token`, expected one of `name`, `input_tokens`, `output_tokens`";
        assert_eq!(
            with_suggestion(m),
            "unknown field `output_token`: did you mean `output_tokens`?"
        );
        let m = "unknown variant `possion`, expected one of `constant`, `poisson`, `gamma`";
        assert_eq!(
            with_suggestion(m),
            "unknown variant `possion`: did you mean `poisson`?"
        );
        // Nothing near: serde's list of what was expected stays.
        let m = "unknown variant `retry`, expected `continue` or `abort`";
        assert_eq!(with_suggestion(m), m);
        assert_eq!(with_suggestion("invalid type"), "invalid type");
    }
}
