//! Everything abssctl prints: one JSON document (`--json`) or text for people on
//! stdout; notes, warnings and errors on stderr.
//!
//! [`Output`] decides where things go; the `backup` and `ops` submodules turn wire
//! types into text and never print themselves, so they are tested as plain functions.

pub mod backup;
pub mod ops;

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
            Ok(text) => write_stdout(&format!("{text}\n")),
            // Only a non-string map key could get here; the wire types have none.
            Err(err) => eprintln!("abssctl: error: cannot encode the answer as JSON: {err}"),
        }
    }

    /// An informational line on stderr, unless `--quiet`.
    pub fn note(&self, text: &str) {
        if !self.quiet {
            eprintln!("abssctl: {text}");
        }
    }

    /// A warning on stderr, always.
    pub fn warn(&self, text: &str) {
        eprintln!("abssctl: warning: {text}");
    }

    /// Report a failed command: `{"error": {kind, message, detail?}}` on stdout with
    /// `--json`, else one line on stderr.
    pub fn error(&self, err: &WireError) {
        if self.json {
            self.document(&json!({ "error": err }));
        } else {
            eprintln!("abssctl: error: {}", err.message);
        }
    }

    /// Whether progress bars may be drawn: people are watching stderr.
    pub fn progress_visible(&self) -> bool {
        !self.json && !self.quiet && io::stderr().is_terminal()
    }
}

/// Write to stdout without panicking when the reader went away (`abssctl ... | head`).
fn write_stdout(text: &str) {
    let mut stdout = io::stdout().lock();
    if let Err(err) = stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
        && err.kind() != io::ErrorKind::BrokenPipe
    {
        eprintln!("abssctl: error: cannot write to stdout: {err}");
    }
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
    fn ellipsize_cuts_and_flattens() {
        assert_eq!(ellipsize("short", 10), "short");
        assert_eq!(ellipsize("two\nlines", 20), "two lines");
        assert_eq!(ellipsize("abcdefghij", 5), "abcd…");
    }
}
