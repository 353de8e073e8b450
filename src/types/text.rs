//! Text from outside (the API's answers, what the ledger holds) as it may
//! reach a terminal or a file: no control character of it is passed on raw,
//! so an answer holding `ESC [2J` cannot clear a screen or retitle a window.

use std::borrow::Cow;

/// `text` with every control character (C0, DEL and C1: escape sequences
/// start with one) written out as `\u{1b}`; a line end or a tab becomes a
/// space, so that a message stays one line.
pub fn printable(text: &str) -> Cow<'_, str> {
    if !text.chars().any(char::is_control) {
        return Cow::Borrowed(text);
    }
    let mut shown = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '\n' | '\r' | '\t' => shown.push(' '),
            c if c.is_control() => shown.push_str(&format!("\\u{{{:x}}}", u32::from(c))),
            c => shown.push(c),
        }
    }
    Cow::Owned(shown)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_sequences_are_written_out_and_plain_text_is_left_alone() {
        assert!(matches!(printable("ok, 200"), Cow::Borrowed("ok, 200")));
        assert_eq!(
            printable("\u{1b}[2J\u{1b}]0;owned\u{7}bad to\n"),
            "\\u{1b}[2J\\u{1b}]0;owned\\u{7}bad to "
        );
        assert_eq!(printable("a\u{9b}31mb\u{7f}"), "a\\u{9b}31mb\\u{7f}");
        assert_eq!(printable("número inválido"), "número inválido");
    }
}
