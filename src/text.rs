//! Text from outside (Docker Hub's answers, dataset files) made safe to show on a terminal.
//!
//! A terminal acts on control characters: ESC starts sequences that move the cursor, clear the
//! screen, set the window title or (on some terminals) write files; BEL rings; CR overwrites the
//! line; ENQ asks some terminals to answer; the C1 range (U+0080–U+009F) holds 8-bit forms of the
//! same sequences; the Unicode bidirectional controls reorder what is shown. Such characters from
//! Hub or a dataset are shown escaped (`\u{1b}`), never raw, in all human output. JSON output
//! needs nothing more: JSON escapes every control character itself.

use std::borrow::Cow;
use std::fmt::Write;

/// Whether `c` must not reach a terminal raw: C0 and C1 controls, DEL, and the bidirectional
/// embedding, override and isolate controls.
fn is_unsafe(c: char) -> bool {
    c.is_control() || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

fn escape(text: &str, keep: impl Fn(char) -> bool) -> Cow<'_, str> {
    if !text.chars().any(|c| is_unsafe(c) && !keep(c)) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if is_unsafe(c) && !keep(c) {
            // Writing into a String cannot fail.
            let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// `text` with every control character escaped as `\u{…}`, newlines and tabs included: for one
/// value shown on one line (a platform, a tag).
pub fn printable(text: &str) -> Cow<'_, str> {
    escape(text, |_| false)
}

/// `text` with every control character but the newline escaped: for messages, which may span
/// lines. A CR is escaped too, since it would let text overwrite what is before it on its line.
pub fn printable_lines(text: &str) -> Cow<'_, str> {
    escape(text, |c| c == '\n')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_escaped() {
        let cases = [
            ("linux/amd64", "linux/amd64", "linux/amd64"),
            ("naïve 10.0 ✓", "naïve 10.0 ✓", "naïve 10.0 ✓"),
            ("\u{1b}[2J", "\\u{1b}[2J", "\\u{1b}[2J"),
            ("a\u{7}b", "a\\u{7}b", "a\\u{7}b"),
            ("a\nb\r", "a\\u{a}b\\u{d}", "a\nb\\u{d}"),
            (
                "\t\u{5}\u{7f}",
                "\\u{9}\\u{5}\\u{7f}",
                "\\u{9}\\u{5}\\u{7f}",
            ),
            ("\u{9b}31m", "\\u{9b}31m", "\\u{9b}31m"),
            ("abc\u{202e}fed", "abc\\u{202e}fed", "abc\\u{202e}fed"),
            ("", "", ""),
        ];
        for (raw, one_line, lines) in cases {
            assert_eq!(printable(raw), one_line, "{raw:?}");
            assert_eq!(printable_lines(raw), lines, "{raw:?}");
        }
        assert!(matches!(printable("plain"), Cow::Borrowed(_)));
    }
}
