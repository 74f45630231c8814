//! Escaping, as the text format defines it: in a label value a backslash, a double quote and
//! a line feed are written `\\`, `\"` and `\n`; in help text only the backslash and the line
//! feed are (a quote there is plain text).

use std::borrow::Cow;

/// A label value escaped for the text format, borrowed when nothing needed escaping.
pub fn escape_label_value(value: &str) -> Cow<'_, str> {
    escape(value, true)
}

/// Help text escaped for a `# HELP` line, borrowed when nothing needed escaping.
pub fn escape_help(help: &str) -> Cow<'_, str> {
    escape(help, false)
}

fn escape(s: &str, quotes: bool) -> Cow<'_, str> {
    let special = |c: char| c == '\\' || c == '\n' || (quotes && c == '"');
    if !s.contains(special) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '"' if quotes => out.push_str("\\\""),
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_escape_backslash_quote_and_newline() {
        assert_eq!(escape_label_value(r#"a "b" \c"#), r#"a \"b\" \\c"#);
        assert_eq!(escape_label_value("two\nlines"), "two\\nlines");
        assert_eq!(escape_label_value("é plain"), "é plain");
        assert!(matches!(escape_label_value("plain"), Cow::Borrowed(_)));
    }

    #[test]
    fn help_keeps_quotes_but_escapes_backslash_and_newline() {
        assert_eq!(
            escape_help("window=\"10s\" a\\b\nc"),
            "window=\"10s\" a\\\\b\\nc"
        );
    }
}
