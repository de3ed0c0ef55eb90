//! Typing one registry entry from the YAML tree: the known keys must hold
//! what the model expects, every other key is kept as read.

use serde_json::{Map, Value};

use super::yaml::{Doc, Kind, Node, Scalar, resolve};
use super::{Instance, InstancePaths};

/// At most this much of a rejected value is quoted in an error.
const QUOTE: usize = 40;

/// The value's text in the file, cut short, for an error.
fn shown(src: &str, node: &Node) -> String {
    let text = src.get(node.start..node.end).unwrap_or("").trim();
    let mut cut: String = text.chars().take(QUOTE).collect();
    if cut.len() < text.len() {
        cut.push('…');
    }
    format!("{cut:?}")
}

/// A string field: absent or null is `None`; numbers keep their text (a
/// hand-written `version: 25.1`, as earlier abssd read it).
fn text(src: &str, key: &str, node: Option<&Node>) -> Result<Option<String>, String> {
    let Some(node) = node else { return Ok(None) };
    let value = match &node.kind {
        Kind::Scalar { value, .. } => value,
        _ => return Err(format!("{key} is {}, not a string", shown(src, node))),
    };
    match resolve(node) {
        Some(Scalar::Null) => Ok(None),
        Some(Scalar::Str(s)) => Ok(Some(s.to_owned())),
        Some(Scalar::Int(_) | Scalar::Float(_)) if value.bytes().all(|c| c.is_ascii_graphic()) => {
            Ok(Some(value.clone()))
        }
        _ => Err(format!(
            "{key} is {}, which YAML reads as another type than a string (quote it)",
            shown(src, node)
        )),
    }
}

impl Instance {
    /// Type one entry of the `instances` list. Err: (its name, or `#<n>`
    /// when it has none, and what is wrong, naming the key).
    pub(super) fn from_node(
        doc: &Doc,
        src: &str,
        node: &Node,
    ) -> Result<Instance, (String, String)> {
        let name = node
            .get("name")
            .and_then(Node::as_str)
            .map(str::to_owned)
            .ok_or_else(|| (String::new(), "an entry without a name".to_owned()))?;
        let reject = |why: String| (name.clone(), why);
        let Some(pairs) = node.pairs() else {
            return Err(reject("the entry is not a mapping".into()));
        };
        let mut instance = Instance {
            name: name.clone(),
            domain: text(src, "domain", node.get("domain")).map_err(reject)?,
            port: match node.get("port").map(|n| (n, resolve(n))) {
                None | Some((_, Some(Scalar::Null))) => None,
                Some((_, Some(Scalar::Int(Some(p))))) => Some(p),
                Some((n, _)) => {
                    return Err(reject(format!(
                        "port is {}, not a port number",
                        shown(src, n)
                    )));
                }
            },
            version: text(src, "version", node.get("version")).map_err(reject)?,
            status: text(src, "status", node.get("status")).map_err(reject)?,
            paths: InstancePaths::default(),
            metadata: Map::new(),
            extra: Map::new(),
        };
        if let Some(paths) = node.get("paths") {
            match paths.pairs() {
                Some(pairs) => {
                    instance.paths.root =
                        text(src, "paths.root", paths.get("root")).map_err(reject)?;
                    for (k, v) in pairs {
                        let key = doc.key(k).map_err(reject)?;
                        if key != "root" {
                            let v = doc
                                .json(v)
                                .map_err(|e| reject(format!("paths.{key}: {e}")))?;
                            instance.paths.extra.insert(key, v);
                        }
                    }
                }
                None if matches!(resolve(paths), Some(Scalar::Null)) => {}
                None => {
                    return Err(reject(format!(
                        "paths is {}, not a mapping",
                        shown(src, paths)
                    )));
                }
            }
        }
        if let Some(meta) = node.get("metadata") {
            match doc
                .json(meta)
                .map_err(|e| reject(format!("metadata: {e}")))?
            {
                Value::Object(map) if meta.pairs().is_some() => instance.metadata = map,
                Value::Null => {}
                _ => {
                    return Err(reject(format!(
                        "metadata is {}, not a mapping",
                        shown(src, meta)
                    )));
                }
            }
        }
        for (k, v) in pairs {
            let key = doc.key(k).map_err(reject)?;
            if !matches!(
                key.as_str(),
                "name" | "domain" | "port" | "version" | "status" | "paths" | "metadata"
            ) {
                let v = doc.json(v).map_err(|e| reject(format!("{key}: {e}")))?;
                instance.extra.insert(key, v);
            }
        }
        Ok(instance)
    }
}
