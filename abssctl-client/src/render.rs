//! Everything abssctl prints: one JSON document (`--json`) or text for people on
//! stdout; notes, warnings and errors on stderr.
//!
//! [`Output`] decides where things go; the `backup`, `restore`, `reconcile` and `ops`
//! submodules turn wire types into text and never print themselves, so they are
//! tested as plain functions.
//!
//! Every string that comes from the daemon or an archive (ids, instance names,
//! messages, labels, paths, warnings, errors) goes through [`esc`] before it
//! reaches a terminal: a control character in a backup message or a file name
//! could otherwise move the cursor, rewrite lines or retitle the window. The
//! table and field builders escape every cell; the renderers escape what they
//! put into sentences; and every sink escapes what is left ([`safe_text`],
//! [`safe_json`]) so nothing slips through.

pub mod backup;
pub mod health;
pub mod ops;
pub mod prune;
pub mod push;
pub mod reconcile;
pub mod remote;
pub mod remote_ls;
pub mod restore;
pub mod run;
pub mod schedule;

use std::borrow::Cow;
use std::io::{self, IsTerminal, Write};

use abssd_proto::WireError;
use serde::Serialize;
use serde_json::{Value, json};

/// Where and how to print, from the global flags.
#[derive(Debug, Clone, Copy)]
pub struct Output {
    /// `--json`: stdout gets exactly one JSON document.
    pub json: bool,
    /// `--quiet`: no progress and no informational notes on stderr.
    pub quiet: bool,
}

impl Output {
    /// Print the command's answer: `doc` with `--json`, else the text `human` builds.
    pub fn show<T: Serialize>(&self, doc: &T, human: impl FnOnce() -> String) {
        if self.json {
            self.document(doc);
        } else {
            write_stdout(&human());
        }
    }

    /// Print text for people on stdout.
    pub fn text(&self, text: &str) {
        write_stdout(text);
    }

    /// Print `doc` as the one JSON document of this run.
    pub fn document<T: Serialize>(&self, doc: &T) {
        match serde_json::to_string_pretty(doc) {
            Ok(text) => write_raw(&format!("{}\n", safe_json(&text))),
            // Only a non-string map key could get here; the wire types have none.
            Err(err) => eprintln!("abssctl: error: cannot encode the answer as JSON: {err}"),
        }
    }

    /// An informational line on stderr, unless `--quiet`.
    pub fn note(&self, text: &str) {
        if !self.quiet {
            eprintln!("abssctl: {}", safe_text(text));
        }
    }

    /// A warning on stderr, always.
    pub fn warn(&self, text: &str) {
        eprintln!("abssctl: warning: {}", safe_text(text));
    }

    /// Report a failed command: `{"error": {kind, message, detail?}}` on stdout with
    /// `--json`, else a line on stderr, followed by what a failed restore rolled back
    /// and what it left for an operator.
    pub fn error(&self, err: &WireError) {
        if self.json {
            self.document(&json!({ "error": err }));
        } else {
            let detail = err.detail.as_ref().map(error_detail).unwrap_or_default();
            eprint!("abssctl: error: {}\n{detail}", safe_text(&err.message));
        }
    }

    /// Whether progress bars may be drawn: people are watching stderr.
    pub fn progress_visible(&self) -> bool {
        !self.json && !self.quiet && io::stderr().is_terminal()
    }
}

/// The parts of an error's `detail` people act on, as indented lines: what a
/// failed operation put back (`rolled_back`), what it could not (`left`), and the
/// operation (`op_id`). Other keys are only in the `--json` document.
pub fn error_detail(detail: &Value) -> String {
    let strings = |key: &str| -> Vec<String> {
        detail
            .get(key)
            .and_then(Value::as_array)
            .map(|items| items.iter().map(value_text).collect())
            .unwrap_or_default()
    };
    let mut text = String::new();
    for (key, title) in [
        ("rolled_back", "rolled back:"),
        ("left", "NOT rolled back, needs an operator:"),
    ] {
        let items = strings(key);
        if !items.is_empty() {
            text.push_str(&format!("  {title}\n"));
            for item in items {
                text.push_str(&format!("    - {}\n", esc(&item)));
            }
        }
    }
    if let Some(op_id) = detail.get("op_id").and_then(Value::as_str) {
        let op_id = esc(op_id);
        text.push_str(&format!(
            "  operation {op_id}; its events: abssctl op watch {op_id}\n"
        ));
    }
    text
}

/// Text for people on stdout, escaped ([`safe_text`]).
fn write_stdout(text: &str) {
    write_raw(&safe_text(text));
}

/// Write to stdout without panicking when the reader went away (`abssctl ... | head`).
fn write_raw(text: &str) {
    let mut stdout = io::stdout().lock();
    if let Err(err) = stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
        && err.kind() != io::ErrorKind::BrokenPipe
    {
        eprintln!("abssctl: error: cannot write to stdout: {err}");
    }
}

/// Whether a character may not reach a terminal as it is: control characters
/// (C0, DEL, C1: escape sequences, carriage returns, bells) and the format
/// characters that reorder or hide text (bidirectional overrides and isolates,
/// zero-width marks).
fn unsafe_char(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{feff}')
}

/// A daemon- or archive-supplied string made safe for one line of a terminal:
/// every control or format character, newlines included, written as an escape
/// (`\n`, `\t`, `\r`, `\u{1b}`). The one helper every renderer uses for such
/// strings.
pub fn esc(text: &str) -> Cow<'_, str> {
    escape(text, false)
}

/// `text` as one word of a POSIX shell command line: as it is when it holds
/// only characters no shell treats specially, else in single quotes.
pub fn shell_word(text: &str) -> String {
    let plain = !text.is_empty()
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-./:@%+=,".contains(c));
    if plain {
        text.to_owned()
    } else {
        format!("'{}'", esc(text).replace('\'', r"'\''"))
    }
}

/// [`esc`] for text that is ours and may span lines: newlines are kept,
/// everything else unsafe is escaped. What every sink applies last.
pub fn safe_text(text: &str) -> Cow<'_, str> {
    escape(text, true)
}

fn escape(text: &str, keep_newlines: bool) -> Cow<'_, str> {
    if !text
        .chars()
        .any(|c| unsafe_char(c) && !(keep_newlines && c == '\n'))
    {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '\n' if keep_newlines => out.push('\n'),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if unsafe_char(c) => out.push_str(&format!("\\u{{{:x}}}", u32::from(c))),
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// A JSON document safe for a terminal: serde_json escapes C0 controls but
/// writes DEL, C1 controls and format characters as they are; those become
/// `\uXXXX` escapes, which any JSON reader reads back the same.
pub fn safe_json(text: &str) -> Cow<'_, str> {
    if !text.chars().any(unsafe_char) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if unsafe_char(c) {
            // Outside strings JSON has only ASCII whitespace, which is kept.
            if matches!(c, '\n' | '\t' | '\r') {
                out.push(c);
            } else {
                out.push_str(&format!("\\u{:04x}", u32::from(c)));
            }
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// How a table column lines up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Align {
    /// Text.
    Left,
    /// Numbers and sizes.
    Right,
}

/// Aligned columns with an upper-case header row, two spaces apart, no trailing
/// blanks; each line ends with a newline.
pub fn table(columns: &[(&str, Align)], rows: &[Vec<String>]) -> String {
    let rows: Vec<Vec<String>> = rows
        .iter()
        .map(|row| row.iter().map(|cell| esc(cell).into_owned()).collect())
        .collect();
    let rows = &rows;
    let mut widths: Vec<usize> = columns
        .iter()
        .map(|(title, _)| title.chars().count())
        .collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let header: Vec<String> = columns
        .iter()
        .map(|(title, _)| title.to_uppercase())
        .collect();
    let mut out = String::new();
    for row in std::iter::once(&header).chain(rows) {
        let mut line = String::new();
        for (i, ((_, align), width)) in columns.iter().zip(&widths).enumerate() {
            let cell = row.get(i).map_or("", String::as_str);
            if i > 0 {
                line.push_str("  ");
            }
            let pad = width.saturating_sub(cell.chars().count());
            match align {
                Align::Left => {
                    line.push_str(cell);
                    line.extend(std::iter::repeat_n(' ', pad));
                }
                Align::Right => {
                    line.extend(std::iter::repeat_n(' ', pad));
                    line.push_str(cell);
                }
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// `key: value` lines with the values lined up, each indented by `indent` spaces.
pub fn fields(indent: usize, pairs: &[(&str, String)]) -> String {
    let width = pairs
        .iter()
        .map(|(key, _)| key.chars().count())
        .max()
        .unwrap_or(0);
    let mut out = String::new();
    for (key, value) in pairs {
        let value = esc(value);
        let line = format!(
            "{:indent$}{:width$}  {value}",
            "",
            format!("{key}:"),
            width = width + 1
        );
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// Bytes for people, in binary units with one decimal: `512 B`, `12.3 MiB`.
pub fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    // Move up before one decimal would round to "1024.0".
    while value >= 1023.95 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// A duration in whole seconds for people: `45s`, `5m 03s`, `2h 07m`, `3d 04h`.
pub fn human_duration(secs: u64) -> String {
    let (days, hours, minutes, seconds) =
        (secs / 86_400, secs / 3600 % 24, secs / 60 % 60, secs % 60);
    if days > 0 {
        format!("{days}d {hours:02}h")
    } else if hours > 0 {
        format!("{hours}h {minutes:02}m")
    } else if minutes > 0 {
        format!("{minutes}m {seconds:02}s")
    } else {
        format!("{seconds}s")
    }
}

/// At most `max` characters of `text` on one line, ending in `…` when cut.
pub fn ellipsize(text: &str, max: usize) -> String {
    let one_line = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if one_line.chars().count() <= max {
        return one_line;
    }
    let mut cut: String = one_line.chars().take(max.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

/// A JSON value for people: strings bare, `-` for null, anything else compact JSON.
pub fn value_text(value: &Value) -> String {
    match value {
        Value::Null => "-".to_owned(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// `yes` / `no`.
pub fn yes_no(flag: bool) -> String {
    if flag { "yes" } else { "no" }.to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_use_binary_units_with_one_decimal() {
        assert_eq!(human_size(0), "0 B");
        assert_eq!(human_size(1023), "1023 B");
        assert_eq!(human_size(1024), "1.0 KiB");
        assert_eq!(human_size(1536), "1.5 KiB");
        assert_eq!(human_size(12_897_485), "12.3 MiB");
        assert_eq!(human_size(1_048_575), "1.0 MiB");
        assert_eq!(human_size(5 * 1024 * 1024 * 1024), "5.0 GiB");
        assert_eq!(human_size(u64::MAX), "16.0 EiB");
    }

    #[test]
    fn durations_keep_the_two_largest_units() {
        assert_eq!(human_duration(0), "0s");
        assert_eq!(human_duration(45), "45s");
        assert_eq!(human_duration(303), "5m 03s");
        assert_eq!(human_duration(2 * 3600 + 7 * 60 + 9), "2h 07m");
        assert_eq!(human_duration(3 * 86_400 + 4 * 3600), "3d 04h");
    }

    #[test]
    fn tables_align_columns_without_trailing_blanks() {
        let rows = vec![
            vec!["a".to_owned(), "1 B".to_owned(), "x".to_owned()],
            vec!["long-id".to_owned(), "12.3 MiB".to_owned(), String::new()],
        ];
        let text = table(
            &[
                ("id", Align::Left),
                ("size", Align::Right),
                ("note", Align::Left),
            ],
            &rows,
        );
        assert_eq!(
            text,
            "ID           SIZE  NOTE\n\
             a             1 B  x\n\
             long-id  12.3 MiB\n"
        );
    }

    #[test]
    fn fields_line_up_values() {
        let text = fields(
            2,
            &[("id", "x".to_owned()), ("status", "available".to_owned())],
        );
        assert_eq!(text, "  id:      x\n  status:  available\n");
    }

    #[test]
    fn error_detail_lists_rollback_and_leftovers() {
        let text = error_detail(&json!({
            "rolled_back": ["data of alpha", "unit abssctl-alpha.service started"],
            "left": ["old data kept in /srv/alpha.pre-restore-1"],
            "op_id": "op-1",
            "path": "/srv/alpha"
        }));
        assert_eq!(
            text,
            "  rolled back:\n\
             \x20   - data of alpha\n\
             \x20   - unit abssctl-alpha.service started\n\
             \x20 NOT rolled back, needs an operator:\n\
             \x20   - old data kept in /srv/alpha.pre-restore-1\n\
             \x20 operation op-1; its events: abssctl op watch op-1\n"
        );
        assert_eq!(error_detail(&json!({"path": "/x", "left": []})), "");
    }

    #[test]
    fn daemon_strings_never_carry_control_characters_to_a_terminal() {
        let hostile = "a\u{1b}]0;owned\u{7}b\r\nc\u{9b}2J\u{202e}d\u{7f}";
        let one_line = esc(hostile);
        assert_eq!(
            one_line,
            "a\\u{1b}]0;owned\\u{7}b\\r\\nc\\u{9b}2J\\u{202e}d\\u{7f}"
        );
        assert!(!one_line.chars().any(unsafe_char));
        assert_eq!(esc("plain text, ünïcode"), "plain text, ünïcode");
        assert_eq!(safe_text("two\nlines\u{1b}"), "two\nlines\\u{1b}");
        // Cells and fields are escaped whatever the renderer passed in.
        let text = table(
            &[("id", Align::Left), ("note", Align::Left)],
            &[vec!["x\u{1b}[31m".to_owned(), "line\nforged".to_owned()]],
        );
        assert_eq!(text.lines().count(), 2, "{text}");
        assert!(
            !text.chars().any(|c| unsafe_char(c) && c != '\n'),
            "{text:?}"
        );
        let text = fields(0, &[("message", "m\u{1b}[2J\nx".to_owned())]);
        assert_eq!(text, "message:  m\\u{1b}[2J\\nx\n");
        // JSON stays the same document, with the unsafe characters as \u escapes.
        let doc = serde_json::to_string(&json!({"m": "a\u{9b}b\u{1b}\u{202e}"})).unwrap();
        let safe = safe_json(&doc);
        assert!(!safe.chars().any(unsafe_char), "{safe}");
        let back: Value = serde_json::from_str(&safe).unwrap();
        assert_eq!(back["m"], "a\u{9b}b\u{1b}\u{202e}");
    }

    #[test]
    fn ellipsize_cuts_and_flattens() {
        assert_eq!(ellipsize("short", 10), "short");
        assert_eq!(ellipsize("two\nlines", 20), "two lines");
        assert_eq!(ellipsize("abcdefghij", 5), "abcd…");
    }
}
