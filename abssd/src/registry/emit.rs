//! Writing one instance's entry back into the registry text, leaving every
//! other byte as it was.
//!
//! Pairs of the entry whose value did not change are copied from the file
//! byte for byte (comments, quoting, odd scalars and all); only changed or
//! new values are written, in the block style PyYAML's `safe_dump` uses, and
//! every string that PyYAML's YAML 1.1 resolver would read as another type
//! (`yes`, `on`, `1e3`, `0755`, `1:30`, `.inf`, `~`, `2025-01-02`) or that
//! holds special characters is double-quoted.

use std::fmt::Write as _;

use serde_json::{Map, Value};

use super::yaml::{self, Doc, Kind, Node, Scalar};
use crate::yaml11;

/// `s` as a YAML scalar that PyYAML reads back as this same string.
pub(super) fn string(s: &str) -> String {
    if plain_ok(s) { s.to_owned() } else { quoted(s) }
}

/// Plain only for the dull cases: letters, digits and `_-./+@`, starting
/// with a letter, `/` or `_` (so no number, date, `.inf` or indicator), and
/// not a YAML 1.1 boolean or null word in any case (`y`, `n` included, which
/// the YAML 1.1 spec lists though PyYAML does not).
fn plain_ok(s: &str) -> bool {
    let Some(&first) = s.as_bytes().first() else {
        return false;
    };
    let word = s.to_ascii_lowercase();
    (first.is_ascii_alphabetic() || first == b'/' || first == b'_')
        && s.bytes().all(|c| {
            c.is_ascii_alphanumeric() || matches!(c, b'_' | b'-' | b'.' | b'/' | b'+' | b'@')
        })
        && !matches!(
            word.as_str(),
            "y" | "n" | "yes" | "no" | "true" | "false" | "on" | "off" | "null"
        )
        && matches!(yaml11::plain(s), Scalar::Str(_))
}

/// A double-quoted scalar; what YAML does not allow raw in a file (control
/// characters, NEL, line and paragraph separators, a BOM) is escaped.
fn quoted(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            '\u{0}'..='\u{1f}' | '\u{7f}'..='\u{9f}' => {
                let _ = write!(out, "\\x{:02X}", c as u32);
            }
            '\u{2028}' | '\u{2029}' | '\u{feff}' | '\u{fffe}' | '\u{ffff}' => {
                let _ = write!(out, "\\u{:04X}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A JSON scalar as YAML 1.1 (a float always has a dot and a signed
/// exponent, which PyYAML needs to read it as a float).
fn scalar(v: &Value) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) if n.is_f64() => {
            let f = n.as_f64().unwrap_or_default();
            let text = format!("{f:?}");
            let (mantissa, exp) = match text.split_once('e') {
                Some((m, e)) => (m.to_owned(), Some(e.to_owned())),
                None => (text.clone(), None),
            };
            let mantissa = if mantissa.contains('.') {
                mantissa
            } else {
                format!("{mantissa}.0")
            };
            match exp {
                Some(e) if e.starts_with('-') => format!("{mantissa}e{e}"),
                Some(e) => format!("{mantissa}e+{e}"),
                None => mantissa,
            }
        }
        Value::Number(n) => n.to_string(),
        Value::String(s) => string(s),
        Value::Array(a) if a.is_empty() => "[]".into(),
        Value::Object(o) if o.is_empty() => "{}".into(),
        other => flow(other),
    }
}

/// Flow notation (`{a: 1, b: [x]}`), for entries inside a flow list.
fn flow(v: &Value) -> String {
    match v {
        Value::Array(items) => {
            let items: Vec<String> = items.iter().map(flow).collect();
            format!("[{}]", items.join(", "))
        }
        Value::Object(map) => {
            let pairs: Vec<String> = map
                .iter()
                .map(|(k, v)| format!("{}: {}", string(k), flow(v)))
                .collect();
            format!("{{{}}}", pairs.join(", "))
        }
        other => scalar(other),
    }
}

fn pad(out: &mut String, indent: usize) {
    out.push('\n');
    out.extend(std::iter::repeat_n(' ', indent));
}

/// What follows `key:` for a key at column `indent`, PyYAML's way: nested
/// mappings two further in, sequences at the key's column.
fn after_key(out: &mut String, v: &Value, indent: usize) {
    match v {
        Value::Object(map) if !map.is_empty() => {
            pad(out, indent + 2);
            mapping(out, map, indent + 2);
        }
        Value::Array(items) if !items.is_empty() => {
            for item in items {
                pad(out, indent);
                out.push_str("- ");
                item_body(out, item, indent + 2);
            }
        }
        other => {
            out.push(' ');
            out.push_str(&scalar(other));
        }
    }
}

/// The content of a `- ` item whose content starts at column `indent`.
fn item_body(out: &mut String, v: &Value, indent: usize) {
    match v {
        Value::Object(map) if !map.is_empty() => mapping(out, map, indent),
        Value::Array(items) if !items.is_empty() => {
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    pad(out, indent);
                }
                out.push_str("- ");
                item_body(out, item, indent + 2);
            }
        }
        other => out.push_str(&scalar(other)),
    }
}

/// A block mapping whose keys sit at column `indent`; the first key is
/// written where `out` ends.
pub(super) fn mapping(out: &mut String, map: &Map<String, Value>, indent: usize) {
    for (i, (k, v)) in map.iter().enumerate() {
        if i > 0 {
            pad(out, indent);
        }
        out.push_str(&string(k));
        out.push(':');
        after_key(out, v, indent);
    }
}

/// The column of byte `at` in `src`.
pub(super) fn column(src: &str, at: usize) -> usize {
    let line = src[..at].rfind('\n').map_or(0, |i| i + 1);
    src[line..at].chars().count()
}

/// The text that replaces `orig` (a mapping in the file), read as `old`, so
/// that it reads as `new`: unchanged pairs are copied, changed ones written,
/// new ones appended, removed ones dropped. A changed block mapping is
/// merged the same way one level down, so its untouched keys keep their
/// bytes too. `indent` is the column of its keys.
pub(super) fn merge(
    src: &str,
    doc: &Doc,
    orig: &Node,
    old: &Map<String, Value>,
    new: &Map<String, Value>,
    indent: usize,
    depth: usize,
) -> Result<String, String> {
    let (Some(pairs), true) = (orig.pairs(), orig.block) else {
        // A flow mapping is written again in block style; an unchanged value
        // on one line keeps its text.
        let mut out = String::new();
        let mut first = true;
        for (k, v) in new {
            let kept = orig
                .pairs()
                .and_then(|pairs| pairs.iter().find(|(kn, _)| doc.key(kn).as_deref() == Ok(k)));
            if !first {
                pad(&mut out, indent);
            }
            first = false;
            match kept {
                Some((kn, _)) if !kn.anchors && !src[kn.start..kn.end].contains('\n') => {
                    out.push_str(&src[kn.start..kn.end]);
                }
                _ => out.push_str(&string(k)),
            }
            out.push(':');
            match kept {
                Some((_, vn))
                    if old.get(k) == Some(v)
                        && !vn.anchors
                        && !src[vn.start..vn.end].contains('\n') =>
                {
                    out.push(' ');
                    out.push_str(&src[vn.start..vn.end]);
                }
                _ => after_key(&mut out, v, indent),
            }
        }
        if orig.anchors {
            return Err("it uses YAML anchors or aliases".into());
        }
        return Ok(out);
    };
    let mut out = String::new();
    let mut pos = orig.start;
    let mut seen = std::collections::HashSet::new();
    for (kn, vn) in pairs {
        let key = doc.key(kn)?;
        let gap = &src[pos..kn.start];
        pos = vn.end.max(kn.end);
        seen.insert(key.clone());
        let Some(v) = new.get(&key) else {
            if kn.anchors || vn.anchors {
                return Err(format!("{key} holds a YAML anchor or alias"));
            }
            continue;
        };
        if !out.is_empty() {
            out.push_str(gap);
        }
        if old.get(&key) == Some(v) {
            out.push_str(&src[kn.start..pos]);
            continue;
        }
        if vn.anchors {
            return Err(format!("{key} holds a YAML anchor or alias"));
        }
        out.push_str(&src[kn.start..kn.end]);
        match (old.get(&key), v) {
            (Some(Value::Object(o)), Value::Object(n))
                if depth == 0 && vn.block && vn.pairs().is_some() && !n.is_empty() =>
            {
                out.push_str(&src[kn.end..vn.start]);
                out.push_str(&merge(
                    src,
                    doc,
                    vn,
                    o,
                    n,
                    column(src, vn.start),
                    depth + 1,
                )?);
            }
            // A flow mapping goes to block style, keeping the text of its
            // unchanged values (a date stays a date).
            (Some(Value::Object(o)), Value::Object(n))
                if depth == 0 && vn.pairs().is_some() && !n.is_empty() =>
            {
                out.push(':');
                pad(&mut out, indent + 2);
                out.push_str(&merge(src, doc, vn, o, n, indent + 2, depth + 1)?);
            }
            _ => {
                out.push(':');
                after_key(&mut out, v, indent);
            }
        }
    }
    for (k, v) in new {
        if seen.contains(k) || old.get(k) == Some(v) {
            continue;
        }
        if !out.is_empty() {
            pad(&mut out, indent);
        }
        out.push_str(&string(k));
        out.push(':');
        after_key(&mut out, v, indent);
    }
    // A mapping whose text ends with its last line's break (a block scalar
    // last) keeps it: what follows starts its own line.
    if src[orig.start..orig.end].ends_with('\n') && !out.ends_with('\n') {
        out.push('\n');
    }
    Ok(out)
}

/// `entry` as a new item of the list `list` (the value of `instances`), as
/// an edit: (byte range to replace, text).
pub(super) fn append(
    src: &str,
    list: &Node,
    entry: &Map<String, Value>,
) -> Result<(std::ops::Range<usize>, String), String> {
    match &list.kind {
        Kind::Seq(items) if list.block => {
            let last = items.last().ok_or("an empty block list")?;
            let dash = src[..last.start]
                .rfind('-')
                .ok_or("a list item without '-'")?;
            let col = column(src, dash);
            let mut out = String::new();
            pad(&mut out, col);
            out.push_str("- ");
            mapping(&mut out, entry, col + 2);
            Ok((last.end..last.end, out))
        }
        Kind::Seq(items) => {
            let close = list.end - 1;
            let sep = if items.is_empty() { "" } else { ", " };
            Ok((
                close..close,
                format!("{sep}{}", flow(&Value::Object(entry.clone()))),
            ))
        }
        Kind::Scalar { .. } if matches!(yaml::resolve(list), Some(Scalar::Null)) => {
            // `instances:` with nothing: the list goes under it, at the
            // root's column as PyYAML writes it.
            let mut out = String::new();
            out.push_str("\n- ");
            mapping(&mut out, entry, 2);
            // An empty value sits at the colon: the list goes after it.
            let range = if list.start == list.end {
                let eol = list.start
                    + src[list.start..]
                        .find('\n')
                        .unwrap_or(src.len() - list.start);
                eol..eol
            } else {
                list.start..list.end
            };
            Ok((range, out))
        }
        _ => Err("`instances` is not a list".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every YAML 1.1 special form is quoted; dull strings stay plain.
    #[test]
    fn strings_that_yaml_1_1_reads_otherwise_are_quoted() {
        let quoted_forms = [
            "",
            "y",
            "Y",
            "n",
            "N",
            "yes",
            "No",
            "ON",
            "off",
            "True",
            "fAlSe",
            "~",
            "null",
            "NULL",
            "0o17",
            "0755",
            "0x1F",
            "0b101",
            "1_000",
            "1:30",
            "-1",
            "+1",
            "42",
            "1e3",
            "1.5",
            ".5",
            ".inf",
            "-.inf",
            ".NaN",
            "2025-01-02",
            "2025-01-02T10:00:00Z",
            "2025-1-2 1:00:00",
            "- a",
            "a: b",
            "a #b",
            "#c",
            "&a",
            "*a",
            "!x",
            "|",
            ">",
            "'",
            "\"",
            "%x",
            "@x",
            "`x",
            "[a]",
            "{a}",
            "a,b",
            " a",
            "a ",
            "a\nb",
            "tab\there",
            "\u{85}",
            "\u{2028}",
            "?",
            ":",
            "<<",
            "=",
            "é",
        ];
        for s in quoted_forms {
            let out = string(s);
            assert!(out.starts_with('"') && out.ends_with('"'), "{s:?} -> {out}");
        }
        for s in [
            "alpha",
            "/srv/alpha/data",
            "ops",
            "budget.example",
            "abssctl-alpha.service",
            "_x",
            "a-1.2",
        ] {
            assert_eq!(string(s), s);
        }
        assert_eq!(string("a\"b\\c\u{1}"), "\"a\\\"b\\\\c\\x01\"");
    }

    #[test]
    fn floats_keep_a_dot_and_a_signed_exponent() {
        for (f, text) in [
            (1.0, "1.0"),
            (1e20, "1.0e+20"),
            (1.5e-7, "1.5e-7"),
            (0.25, "0.25"),
        ] {
            assert_eq!(scalar(&Value::from(f)), text);
            assert!(matches!(yaml11::plain(text), Scalar::Float(_)), "{text}");
        }
    }
}
