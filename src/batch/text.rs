//! Characters text from a batch may not hold: control characters (C0, DEL, C1), which cut
//! strings (NUL), drive terminals (ESC starts ANSI sequences; CR overwrites a line) and
//! split headers (CR/LF), and the bidi embedding, override and isolate controls, which
//! make text display other than it reads. Prompts may hold tab and line breaks (LF, or
//! CR LF); URLs and paths none of these.

/// A refused character and where it stands (1-based, in characters).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Refused {
    pub ch: char,
    pub at: usize,
}

impl std::fmt::Display for Refused {
    /// `U+001B (ESC, a control character) at character 4`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let code = u32::from(self.ch);
        write!(
            f,
            "U+{code:04X} ({}) at character {}",
            name(self.ch),
            self.at
        )
    }
}

/// What a text may hold besides printable characters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Allow {
    /// Nothing: URLs, paths.
    Nothing,
    /// Tab, line feed, and carriage return right before a line feed: prompts.
    TabAndLineBreaks,
}

/// The first character of `text` that is refused under `allow`.
pub(super) fn first_refused(text: &str, allow: Allow) -> Option<Refused> {
    let mut chars = text.chars().peekable();
    let mut at = 0;
    while let Some(ch) = chars.next() {
        at += 1;
        let allowed = allow == Allow::TabAndLineBreaks
            && match ch {
                '\t' | '\n' => true,
                '\r' => chars.peek() == Some(&'\n'),
                _ => false,
            };
        if !allowed && (ch.is_control() || is_bidi_control(ch)) {
            return Some(Refused { ch, at });
        }
    }
    None
}

/// The first whitespace character of `text` (1-based position), for URLs.
pub(super) fn first_whitespace(text: &str) -> Option<(char, usize)> {
    text.chars().zip(1..).find(|(ch, _)| ch.is_whitespace())
}

/// The embedding, override and isolate controls (the marks LRM, RLM and ALM are fine).
fn is_bidi_control(ch: char) -> bool {
    matches!(ch, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

const C0: [&str; 32] = [
    "NUL", "SOH", "STX", "ETX", "EOT", "ENQ", "ACK", "BEL", "BS", "TAB", "LF", "VT", "FF", "CR",
    "SO", "SI", "DLE", "DC1", "DC2", "DC3", "DC4", "NAK", "SYN", "ETB", "CAN", "EM", "SUB", "ESC",
    "FS", "GS", "RS", "US",
];

fn name(ch: char) -> String {
    let code = u32::from(ch);
    match ch {
        '\0'..='\u{1F}' => format!("{}, a control character", C0[code as usize]),
        '\u{7F}' => "DEL, a control character".to_owned(),
        '\u{80}'..='\u{9F}' => "a C1 control character".to_owned(),
        '\u{202A}' => "LEFT-TO-RIGHT EMBEDDING, a bidi control".to_owned(),
        '\u{202B}' => "RIGHT-TO-LEFT EMBEDDING, a bidi control".to_owned(),
        '\u{202C}' => "POP DIRECTIONAL FORMATTING, a bidi control".to_owned(),
        '\u{202D}' => "LEFT-TO-RIGHT OVERRIDE, a bidi control".to_owned(),
        '\u{202E}' => "RIGHT-TO-LEFT OVERRIDE, a bidi control".to_owned(),
        '\u{2066}' => "LEFT-TO-RIGHT ISOLATE, a bidi control".to_owned(),
        '\u{2067}' => "RIGHT-TO-LEFT ISOLATE, a bidi control".to_owned(),
        '\u{2068}' => "FIRST STRONG ISOLATE, a bidi control".to_owned(),
        '\u{2069}' => "POP DIRECTIONAL ISOLATE, a bidi control".to_owned(),
        ' ' => "a space".to_owned(),
        _ => "whitespace".to_owned(),
    }
}

/// `U+00A0 (whitespace)`, or `a space`, for a whitespace character in a URL.
pub(super) fn whitespace_name(ch: char) -> String {
    if ch == ' ' {
        "a space".to_owned()
    } else {
        format!("U+{:04X} ({})", u32::from(ch), name(ch))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn controls_and_bidi_overrides_are_refused_and_named() {
        for (text, shown) in [
            ("a\0b", "U+0000 (NUL, a control character) at character 2"),
            (
                "\x1b[31mred",
                "U+001B (ESC, a control character) at character 1",
            ),
            ("ab\rc", "U+000D (CR, a control character) at character 3"),
            (
                "x\u{7f}",
                "U+007F (DEL, a control character) at character 2",
            ),
            ("é\u{9b}", "U+009B (a C1 control character) at character 2"),
            (
                "abc\u{202e}gpj.exe",
                "U+202E (RIGHT-TO-LEFT OVERRIDE, a bidi control) at character 4",
            ),
        ] {
            let found = first_refused(text, Allow::TabAndLineBreaks).expect(text);
            assert_eq!(found.to_string(), shown);
        }
    }

    #[test]
    fn prompts_keep_tabs_and_line_breaks_urls_do_not() {
        let text = "first line\r\nsecond\tline\nthird \u{200f}mark";
        assert_eq!(first_refused(text, Allow::TabAndLineBreaks), None);
        let found = first_refused(text, Allow::Nothing).unwrap();
        assert_eq!((found.ch, found.at), ('\r', 11));
        assert_eq!(first_whitespace("https://x/a b"), Some((' ', 12)));
        assert_eq!(whitespace_name('\u{a0}'), "U+00A0 (whitespace)");
    }
}
