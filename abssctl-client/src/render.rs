//! Everything abssctl prints: one JSON document (`--json`) or text for people on
//! stdout; notes, warnings and errors on stderr.
//!
//! [`Output`] decides where things go; the `backup`, `restore`, `reconcile` and `ops`
//! submodules turn wire types into text and never print themselves, so they are
//! tested as plain functions.

pub mod backup;
pub mod ops;
pub mod reconcile;
pub mod restore;

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
    /// `--json`, else a line on stderr, followed by what a failed restore rolled back
    /// and what it left for an operator.
    pub fn error(&self, err: &WireError) {
        if self.json {
            self.document(&json!({ "error": err }));
        } else {
            let detail = err.detail.as_ref().map(error_detail).unwrap_or_default();
            eprint!("abssctl: error: {}\n{detail}", err.message);
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
                text.push_str(&format!("    - {item}\n"));
            }
        }
    }
    if let Some(op_id) = detail.get("op_id").and_then(Value::as_str) {
        text.push_str(&format!(
            "  operation {op_id}; its events: abssctl op watch {op_id}\n"
        ));
    }
    text
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
    fn ellipsize_cuts_and_flattens() {
        assert_eq!(ellipsize("short", 10), "short");
        assert_eq!(ellipsize("two\nlines", 20), "two lines");
        assert_eq!(ellipsize("abcdefghij", 5), "abcd…");
    }
}
