//! The registry file as a YAML tree that remembers where each node sits in
//! the text, and PyYAML's YAML 1.1 reading of its scalars.
//!
//! Positions let an edit replace one instance's entry and leave every other
//! byte as the other tool wrote it; the YAML 1.1 reading makes "the same
//! value" mean what it means to PyYAML (`on` is a boolean, `1e3` a string).

use std::collections::HashMap;

use granit_parser::{Event, Parser, ScalarStyle, StructureStyle};
use serde_json::{Map, Value};

pub(super) use crate::yaml11::Scalar;
use crate::yaml11::{self, bool_word, float, int};

/// Deepest nesting accepted: the registry is a few levels deep; a deeper
/// file is not one either tool wrote.
const MAX_DEPTH: usize = 64;
/// Most nodes one value may expand to through aliases (a "billion laughs"
/// file stops here instead of filling memory).
const MAX_EXPANDED: usize = 100_000;
/// Most nodes all of a document's aliases may expand to, over every reading
/// of its values: a bound per value alone lets a 16 MiB file of short
/// entries, each naming one big anchor, expand to a hundred thousand times
/// its size.
const MAX_EXPANDED_TOTAL: usize = 10 * MAX_EXPANDED;

/// One node with its byte range in the source.
#[derive(Debug, Clone)]
pub(super) struct Node {
    /// What the node is.
    pub kind: Kind,
    /// First byte (its tag, when it has one).
    pub start: usize,
    /// One past the last byte of its content.
    pub end: usize,
    /// Block (not flow) notation, for collections.
    pub block: bool,
    /// It or a node inside defines an anchor or is an alias: its text cannot
    /// be dropped or copied without changing what other nodes mean.
    pub anchors: bool,
}

/// The node kinds.
#[derive(Debug, Clone)]
pub(super) enum Kind {
    /// A scalar as written.
    Scalar {
        /// The value after escapes.
        value: String,
        /// Plain scalars are the ones YAML 1.1 resolves to other types.
        plain: bool,
        /// An explicit tag's suffix (`binary`, `str`, `set`) or whole text.
        tag: Option<String>,
    },
    /// A sequence.
    Seq(Vec<Node>),
    /// A mapping in file order (a `!!set` too: its tag changes nothing
    /// abssd reads).
    Map(Vec<(Node, Node)>),
    /// `*name`: the anchor's id.
    Alias(usize),
}

/// A parsed document: its root (`None` when empty) and its anchors.
#[derive(Debug, Clone, Default)]
pub(super) struct Doc {
    /// The root node.
    pub root: Option<Node>,
    /// Anchored nodes by id, for reading aliases.
    anchors: HashMap<usize, Node>,
    /// Nodes held in `anchors`, bounded: nested anchors copy their subtrees.
    anchored: usize,
    /// Nodes read through aliases so far, bounded by [`MAX_EXPANDED_TOTAL`]
    /// (shared by clones: they read the same text).
    expanded: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl Node {
    /// The pairs of a mapping.
    pub fn pairs(&self) -> Option<&[(Node, Node)]> {
        match &self.kind {
            Kind::Map(pairs) => Some(pairs),
            _ => None,
        }
    }

    /// The value of a scalar that is a string to YAML 1.1 (the only keys the
    /// registry's typed fields use).
    pub fn as_str(&self) -> Option<&str> {
        match &self.kind {
            Kind::Scalar { value, .. } if matches!(resolve(self), Some(Scalar::Str(_))) => {
                Some(value)
            }
            _ => None,
        }
    }

    /// The value under key `key` of a mapping.
    pub fn get(&self, key: &str) -> Option<&Node> {
        self.pairs()?
            .iter()
            .find(|(k, _)| k.as_str() == Some(key))
            .map(|(_, v)| v)
    }
}

fn tag_name(tag: Option<&granit_parser::Tag>) -> Option<String> {
    let tag = tag?;
    Some(
        tag.core_suffix()
            .map(str::to_owned)
            .unwrap_or_else(|| tag.original()),
    )
}

/// Parse `text` (one document). An error is the parser's message with its
/// line.
pub(super) fn parse(text: &str) -> Result<Doc, String> {
    let mut doc = Doc::default();
    let mut stack: Vec<Open> = Vec::new();
    let mut documents = 0;
    for event in Parser::new_from_str(text) {
        let (event, span) = event.map_err(|e| e.to_string())?;
        let range = span.byte_range().ok_or("the parser gave no byte offsets")?;
        let start = span
            .tag_start
            .and_then(|t| t.byte_offset())
            .map_or(range.start, |t| t.min(range.start));
        match event {
            Event::DocumentStart(..) => {
                documents += 1;
                if documents > 1 {
                    return Err("more than one YAML document".into());
                }
            }
            Event::Scalar(value, style, anchor, tag) => {
                // An empty value (`version:` and nothing) is placed at its
                // colon: it is put after it, so that an edit replacing the
                // value keeps the colon once.
                let (start, end) = if style == ScalarStyle::Plain
                    && tag.is_none()
                    && start == range.end
                    && text[start..].starts_with(':')
                {
                    (start + 1, start + 1)
                } else if matches!(style, ScalarStyle::Literal | ScalarStyle::Folded) {
                    // A block scalar's span runs into the next line's
                    // indentation: it ends after its last line break, so
                    // that text put after it starts a line of its own.
                    let seg = &text[start..range.end];
                    match seg.rfind('\n') {
                        Some(i) if seg[i + 1..].bytes().all(|b| b == b' ') => {
                            (start, start + i + 1)
                        }
                        _ => (start, range.end),
                    }
                } else {
                    (start, range.end)
                };
                let node = Node {
                    kind: Kind::Scalar {
                        value: value.into_owned(),
                        plain: style == ScalarStyle::Plain,
                        tag: tag_name(tag.as_deref()),
                    },
                    start,
                    end,
                    block: true,
                    anchors: anchor != 0,
                };
                if anchor != 0 {
                    doc.anchor(anchor, &node)?;
                }
                finish(node, &mut stack, &mut doc);
            }
            Event::Alias(id) => {
                let node = Node {
                    kind: Kind::Alias(id),
                    start,
                    end: range.end,
                    block: true,
                    anchors: true,
                };
                finish(node, &mut stack, &mut doc);
            }
            Event::SequenceStart(style, anchor, _) => {
                stack.push(open(&stack, true, style, anchor, &span, start)?);
            }
            Event::MappingStart(style, anchor, _) => {
                stack.push(open(&stack, false, style, anchor, &span, start)?);
            }
            Event::SequenceEnd | Event::MappingEnd => {
                let Open {
                    seq,
                    items,
                    start,
                    block,
                    anchor,
                    ..
                } = stack.pop().ok_or("unbalanced collection")?;
                let first = items.first().map_or(range.start, |n| n.start);
                let start = start.min(first);
                let end = if block {
                    items.last().map_or(range.end, |n| n.end)
                } else {
                    range.end
                };
                let anchors = anchor != 0 || items.iter().any(|n| n.anchors);
                let kind = if seq {
                    Kind::Seq(items)
                } else {
                    let mut pairs = Vec::with_capacity(items.len() / 2);
                    let mut it = items.into_iter();
                    while let (Some(k), Some(v)) = (it.next(), it.next()) {
                        pairs.push((k, v));
                    }
                    Kind::Map(pairs)
                };
                let node = Node {
                    kind,
                    start,
                    end,
                    block,
                    anchors,
                };
                if anchor != 0 {
                    doc.anchor(anchor, &node)?;
                }
                finish(node, &mut stack, &mut doc);
            }
            _ => {}
        }
    }
    Ok(doc)
}

/// A collection being read.
struct Open {
    seq: bool,
    items: Vec<Node>,
    start: usize,
    block: bool,
    anchor: usize,
}

fn open(
    stack: &[Open],
    seq: bool,
    style: StructureStyle,
    anchor: usize,
    span: &granit_parser::Span,
    start: usize,
) -> Result<Open, String> {
    if stack.len() >= MAX_DEPTH {
        return Err(format!("nested deeper than {MAX_DEPTH} levels"));
    }
    let block = style == StructureStyle::Block;
    Ok(Open {
        seq,
        items: Vec::new(),
        // A block collection starts at its first child (its event may sit
        // elsewhere); a tag written before it stays with it.
        start: if block && span.tag_start.is_none() {
            usize::MAX
        } else {
            start
        },
        block,
        anchor,
    })
}

fn finish(node: Node, stack: &mut [Open], doc: &mut Doc) {
    match stack.last_mut() {
        Some(open) => open.items.push(node),
        None => doc.root = Some(node),
    }
}

/// How PyYAML reads `node`, a scalar (`None` for collections and aliases).
pub(super) fn resolve(node: &Node) -> Option<Scalar<'_>> {
    let Kind::Scalar { value, plain, tag } = &node.kind else {
        return None;
    };
    let v = value.as_str();
    Some(match tag.as_deref() {
        Some("str") => Scalar::Str(v),
        Some("null") => Scalar::Null,
        Some("bool") => bool_word(v).map_or(Scalar::Other, Scalar::Bool),
        Some("int") => int(v).map_or(Scalar::Other, Scalar::Int),
        Some("float") => float(v)
            .or_else(|| int(v).map(|_| v.replace('_', "").parse().unwrap_or(f64::NAN)))
            .map_or(Scalar::Other, Scalar::Float),
        Some(_) => Scalar::Other,
        None if !plain => Scalar::Str(v),
        None => yaml11::plain(v),
    })
}

impl Doc {
    /// Keep `node` for the aliases to anchor `id`.
    fn anchor(&mut self, id: usize, node: &Node) -> Result<(), String> {
        fn count(n: &Node) -> usize {
            1 + match &n.kind {
                Kind::Seq(items) => items.iter().map(count).sum(),
                Kind::Map(pairs) => pairs.iter().map(|(k, v)| count(k) + count(v)).sum(),
                _ => 0,
            }
        }
        self.anchored += count(node);
        if self.anchored > MAX_EXPANDED {
            return Err("too many anchored nodes".into());
        }
        self.anchors.insert(id, node.clone());
        Ok(())
    }

    /// A mapping key as the typed entry names it (an int key `1` is `"1"`).
    pub fn key(&self, node: &Node) -> Result<String, String> {
        Ok(match self.json(node)? {
            Value::String(s) => s,
            other => other.to_string(),
        })
    }

    /// `node` as JSON, with PyYAML's types where JSON has them; what JSON
    /// cannot hold (a big int, `.inf`, a date, `!!binary`) is its text.
    pub fn json(&self, node: &Node) -> Result<Value, String> {
        let mut budget = MAX_EXPANDED;
        self.json_in(node, &mut budget, 0)
    }

    fn json_in(&self, node: &Node, budget: &mut usize, depth: usize) -> Result<Value, String> {
        *budget = budget
            .checked_sub(1)
            .ok_or("a value expands to too many nodes through aliases")?;
        if depth > MAX_DEPTH {
            return Err("aliases nest too deep".into());
        }
        Ok(match &node.kind {
            Kind::Scalar { value, .. } => {
                yaml11::json(resolve(node).unwrap_or(Scalar::Other), value)
            }
            Kind::Seq(items) => Value::Array(
                items
                    .iter()
                    .map(|n| self.json_in(n, budget, depth + 1))
                    .collect::<Result<_, _>>()?,
            ),
            Kind::Map(pairs) => {
                let mut map = Map::new();
                for (k, v) in pairs {
                    let key = match self.json_in(k, budget, depth + 1)? {
                        Value::String(s) => s,
                        other => other.to_string(),
                    };
                    map.insert(key, self.json_in(v, budget, depth + 1)?);
                }
                Value::Object(map)
            }
            Kind::Alias(id) => match self.anchors.get(id) {
                Some(target) => {
                    let before = *budget;
                    let value = self.json_in(target, budget, depth + 1)?;
                    let used = before - *budget;
                    let total = self
                        .expanded
                        .fetch_add(used, std::sync::atomic::Ordering::Relaxed)
                        + used;
                    if total > MAX_EXPANDED_TOTAL {
                        return Err("the file's aliases expand to too many nodes".into());
                    }
                    value
                }
                None => return Err(format!("alias to an unknown anchor (id {id})")),
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nodes_know_their_bytes_and_aliases_are_bounded() {
        let text = "a: &x [1, 2]\nb:\n  c: *x\n";
        let doc = parse(text).unwrap();
        let root = doc.root.as_ref().unwrap();
        let b = root.get("b").unwrap();
        assert_eq!(&text[b.start..b.end], "c: *x");
        assert!(b.anchors);
        assert_eq!(doc.json(b).unwrap(), serde_json::json!({"c": [1, 2]}));
        let mut bomb = String::from("a0: &a0 [x, x]\n");
        for i in 1..40 {
            bomb.push_str(&format!("a{i}: &a{i} [*a{}, *a{}]\n", i - 1, i - 1));
        }
        let doc = parse(&bomb).unwrap();
        assert!(doc.json(doc.root.as_ref().unwrap()).is_err());
        assert!(parse(&"[".repeat(100)).is_err());
        let big = parse("a: 18446744073709551615\nb: 18446744073709551616\n").unwrap();
        assert_eq!(
            big.json(big.root.as_ref().unwrap()).unwrap(),
            serde_json::json!({"a": u64::MAX, "b": "18446744073709551616"})
        );
    }
}
