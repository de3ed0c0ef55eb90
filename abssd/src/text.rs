//! Text from outside (names in an archive, SQLite's messages, a peer's bad
//! parameters) cut to a length fit for a message, a log line or an answer.

/// Characters of an outside name or message kept where it is shown.
pub const SHOWN: usize = 300;

/// `s`, cut to [`SHOWN`] characters and marked with `…` when cut.
pub fn bounded(s: &str) -> String {
    match s.char_indices().nth(SHOWN) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_owned(),
    }
}

/// At most `max` bytes of `text`, cut on a character boundary and marked.
pub fn cut(mut text: String, max: usize) -> String {
    if text.len() <= max {
        return text;
    }
    let mut end = max.saturating_sub(3);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.truncate(end);
    text.push('…');
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_text_is_cut_on_a_character_boundary() {
        assert_eq!(bounded("short"), "short");
        let exact = "é".repeat(SHOWN);
        assert_eq!(bounded(&exact), exact);
        let long = "é".repeat(SHOWN + 1);
        let cut = bounded(&long);
        assert_eq!(cut.chars().count(), SHOWN + 1);
        assert!(cut.ends_with('…'));
    }
}
