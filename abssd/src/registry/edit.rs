//! A restore's registry update: one entry rewritten in place, the rest of
//! the file byte for byte as read.

use std::path::Path;

use serde_json::{Map, Value};

use super::{Instance, Registry, Source, emit, write, yaml};
use crate::error::{Error, Result};

impl Registry {
    /// The registry text with `new` as the entry of `new.name`, every other
    /// byte as read: the unchanged keys of that entry keep their text too
    /// (see `emit::merge`). An instance with no entry is appended.
    pub fn with_entry(&self, new: &Instance) -> Result<String> {
        let fail = |why: String| {
            Error::Environment(format!(
                "the registry entry of {} cannot be rewritten in place: {why}; write the \
                 registry in block style without anchors, as the Python tool writes it \
                 (yaml.safe_dump), and retry",
                new.name
            ))
        };
        let encode = |i: &Instance| match serde_json::to_value(i) {
            Ok(Value::Object(map)) => Ok(map),
            _ => Err(Error::Internal("encoding a registry entry".into())),
        };
        let new_map = encode(new)?;
        let empty = Source {
            text: String::new(),
            doc: yaml::Doc::default(),
        };
        let Source { text, doc } = self.source.as_ref().unwrap_or(&empty);
        let splice = |range: std::ops::Range<usize>, insert: &str| {
            let mut out = String::with_capacity(text.len() + insert.len());
            out.push_str(&text[..range.start]);
            out.push_str(insert);
            out.push_str(&text[range.end..]);
            out
        };
        let list = doc.root.as_ref().and_then(|r| r.get("instances"));
        let entries = match list.map(|l| &l.kind) {
            Some(yaml::Kind::Seq(items)) => items.as_slice(),
            _ => &[],
        };
        let found = entries
            .iter()
            .find(|e| e.get("name").and_then(yaml::Node::as_str) == Some(&new.name));
        if let Some(node) = found {
            let old = match self.get(&new.name) {
                Some(old) => encode(old)?,
                None => return Err(fail("its current entry is not valid".into())),
            };
            if !list.is_some_and(|l| l.block) {
                return Err(fail("the instances list is in flow style".into()));
            }
            let indent = emit::column(text, node.start);
            let text_new = emit::merge(text, doc, node, &old, &new_map, indent, 0).map_err(fail)?;
            return Ok(splice(node.start..node.end, &text_new));
        }
        let mut entry = Map::new();
        for (k, v) in new_map {
            // Absent keys stay absent, as the Python tool writes a new entry.
            if !(v.is_null() || v == Value::Object(Map::new())) {
                entry.insert(k, v);
            }
        }
        match (list, &doc.root) {
            (Some(list), _) => {
                let (range, insert) = emit::append(text, list, &entry).map_err(fail)?;
                Ok(splice(range, &insert))
            }
            (None, root) if root.as_ref().is_none_or(|r| r.block && r.pairs().is_some()) => {
                let mut out = text.clone();
                if !out.is_empty() && !out.ends_with('\n') {
                    out.push('\n');
                }
                out.push_str("instances:\n- ");
                emit::mapping(&mut out, &entry, 2);
                out.push('\n');
                Ok(out)
            }
            _ => Err(fail("the registry is not a block mapping".into())),
        }
    }

    /// Refuse, naming the file, when a restore could not write `instance`'s
    /// entry back in place (a flow-style `instances` list, anchors in the
    /// entry): checked while the restore plans, so that it stops before it
    /// changes anything rather than at its registry step, after the swap.
    /// The probe changes the entry's metadata, as every restore does.
    pub fn check_editable(&self, path: &Path, instance: &Instance) -> Result<()> {
        let mut probe = instance.clone();
        probe
            .metadata
            .insert("last_restored_at".into(), Value::String(String::new()));
        self.with_entry(&probe)
            .map(drop)
            .map_err(|e| in_file(path, e))
    }

    /// Write `new` as its entry into the registry file, atomically, leaving
    /// the rest of the file as this registry read it ([`Registry::with_entry`]).
    pub fn write_entry(&self, path: &Path, new: &Instance) -> Result<()> {
        let text = self.with_entry(new).map_err(|e| in_file(path, e))?;
        // What was written must read back as what was meant, or nothing is
        // written.
        let check = Registry::parse(&text)
            .map_err(|e| Error::Internal(format!("the rewritten registry does not parse: {e}")))?;
        if check.get(&new.name) != Some(new) {
            return Err(Error::Internal(format!(
                "the rewritten registry entry of {} does not read back as written",
                new.name
            )));
        }
        self.same_but(&check, &new.name)?;
        write(path, &text)
    }

    /// That `after` reads as this registry but for the entry of `name`:
    /// every other entry, typed or not, and every other top-level key. The
    /// edit is built to change one entry; this is what makes an edit that
    /// reached past it (archived values are not ours) fail before the file
    /// is replaced.
    fn same_but(&self, after: &Registry, name: &str) -> Result<()> {
        fn others<'a>(
            r: &'a Registry,
            name: &str,
        ) -> (Vec<&'a Instance>, Vec<&'a (String, String)>) {
            let typed = r.instances.iter().filter(|i| i.name != name).collect();
            let rejected = r.rejected.iter().filter(|(n, _)| n != name).collect();
            (typed, rejected)
        }
        if others(self, name) != others(after, name) || self.extra != after.extra {
            return Err(Error::Internal(format!(
                "rewriting the registry entry of {name} would change other entries or keys; nothing was written"
            )));
        }
        Ok(())
    }
}

/// [`Registry::with_entry`]'s refusal with the registry file's name in front.
fn in_file(path: &Path, e: Error) -> Error {
    match e {
        Error::Environment(m) => Error::Environment(format!("{}: {m}", path.display())),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use serde_json::Map;

    use super::*;
    use crate::registry::{InstancePaths, Registry};

    /// Hand-written YAML 1.1 with comments and odd values around and inside
    /// the entry that changes.
    const HAND: &str = "\
# the registry
instances:
- name: other   # keep me
  port: .inf
  version: 2025-01-02
  flags: !!set {a, b}
  blob: !!binary aGVsbG8=
  big: 1180591620717411303424
  1: int key
- name: alpha
  domain: y
  port: 5006
  # a comment inside
  version: '1.0'
  paths:
    root: /srv/alpha
    data: /srv/alpha/data   # data
    odd: 0o17
  metadata: {created: 2025-01-02, n: 0755}
  when: 2025-01-02
  blob: !!binary aGVsbG8=
- {name: flowy, port: 'auto'}
top: [on, 1e3]
";

    #[test]
    fn only_the_changed_keys_of_the_entry_change() {
        let reg = Registry::parse(HAND).unwrap();
        assert!(reg.get("other").is_none(), "port .inf does not type");
        assert!(reg.get("flowy").is_none());
        let mut alpha = reg.get("alpha").unwrap().clone();
        alpha.version = Some("on".into());
        alpha
            .paths
            .extra
            .insert("data".into(), "/srv/x/data".into());
        let actor = super::super::tests::actor("1e3");
        alpha.record_restore(&super::super::tests::note(
            "2025-06-01T11:00:00Z",
            &actor,
            "1e3",
        ));
        let out = reg.with_entry(&alpha).unwrap();
        let expect = HAND
            .replace("version: '1.0'", "version: \"on\"")
            .replace("data: /srv/alpha/data", "data: /srv/x/data")
            .replace(
                "metadata: {created: 2025-01-02, n: 0755}",
                "metadata:\n    created: 2025-01-02\n    n: 0755\n    last_restored_at: \"2025-06-01T11:00:00Z\"\n    last_restored_by: \"1e3\"\n    last_restore_source: \"1e3\"\n    last_restore_destination: /srv/alpha\n    last_restore_actor:\n      type: user\n      name: \"1e3\"",
            );
        assert_eq!(out, expect);
        let again = Registry::parse(&out).unwrap();
        assert_eq!(again.get("alpha"), Some(&alpha));

        // Unchanged: the very same bytes.
        let same = reg.get("alpha").unwrap().clone();
        assert_eq!(reg.with_entry(&same).unwrap(), HAND);
    }

    /// A block scalar or nested list last in the entry: the entry ends where
    /// its text ends, and what follows keeps its bytes.
    #[test]
    fn an_entry_ending_in_a_block_scalar_or_list_keeps_what_follows() {
        for tail in [
            "  note: |\n    two\n    lines\n",
            "  tags:\n  - a\n  - b\n",
            "  blob: !!binary |\n    AAE=\n\n",
        ] {
            let text =
                format!("instances:\n- name: alpha\n  version: '1'\n{tail}# after\n- name: beta\n");
            let reg = Registry::parse(&text).unwrap();
            let mut alpha = reg.get("alpha").unwrap().clone();
            alpha.version = Some("2".into());
            let out = reg.with_entry(&alpha).unwrap();
            assert_eq!(
                out,
                text.replace("version: '1'", "version: \"2\""),
                "{tail:?}"
            );
        }
    }

    /// Hand-written forms around the keys a restore changes or adds: an
    /// empty value (`version:` and nothing, last or not), a block scalar
    /// last in the entry or in `paths` with keys added after it. The edit
    /// reads back as meant and the next entry keeps its bytes.
    #[test]
    fn empty_values_and_block_scalars_last_take_the_edit() {
        for (body, after) in [
            (
                "  version:
  port: 5006
",
                "",
            ),
            (
                "  port: 5006
  version:
",
                "",
            ),
            (
                "  port: 5006
  version:   # c
",
                "",
            ),
            (
                "  paths:
  metadata:
",
                "",
            ),
            (
                "  note: >-
    folded
",
                "",
            ),
            (
                "  note: |
    two
    lines
",
                "",
            ),
            (
                "  paths:
    odd: |
      x
",
                "  port: 5006
",
            ),
        ] {
            let text =
                format!("instances:\n- name: alpha\n{body}{after}- name: beta\n  version:\n");
            let reg = Registry::parse(&text).unwrap();
            let mut alpha = reg.get("alpha").unwrap().clone();
            alpha.version = Some("24.9.0".into());
            alpha.domain = Some("d.example".into());
            alpha.paths.extra.insert("data".into(), "/new".into());
            alpha.metadata.insert("last".into(), "x".into());
            let out = reg.with_entry(&alpha).unwrap();
            let again = Registry::parse(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
            assert_eq!(again.get("alpha"), Some(&alpha), "{out}");
            assert!(out.ends_with("\n- name: beta\n  version:\n"), "{out}");
        }
    }

    /// The last check before the file is replaced: an edit that changed
    /// another entry (typed or not) or a top-level key is refused.
    #[test]
    fn an_edit_that_reaches_past_its_entry_is_refused() {
        let before = Registry::parse(HAND).unwrap();
        assert!(before.same_but(&before, "alpha").is_ok());
        let changed_alpha = HAND.replace("domain: y", "domain: z");
        assert!(
            before
                .same_but(&Registry::parse(&changed_alpha).unwrap(), "alpha")
                .is_ok()
        );
        for other in [
            HAND.replace("- name: other", "- name: other2"),
            HAND.replace("port: 'auto'", "port: 'manual'"),
            HAND.replace("top: [on, 1e3]", "top: [off, 1e3]"),
            format!("{HAND}extra: 1\n"),
            HAND.replace("- {name: flowy, port: 'auto'}\n", ""),
        ] {
            let after = Registry::parse(&other).unwrap();
            let err = before.same_but(&after, "alpha").unwrap_err();
            assert!(err.to_string().contains("other entries"), "{err}");
        }
    }

    #[test]
    fn a_bad_value_names_instance_and_key_and_others_still_type() {
        let reg = Registry::parse(HAND).unwrap();
        for (name, key) in [("other", "port"), ("flowy", "port")] {
            let e = reg.require(name, Path::new("/r.yml")).unwrap_err();
            assert_eq!(e.kind(), abssd_proto::ErrorKind::Validation);
            let msg = e.to_string();
            assert!(
                msg.contains(&format!("instance {name}")) && msg.contains(key),
                "{msg}"
            );
        }
        assert!(reg.require("alpha", Path::new("/r.yml")).is_ok());
        let bad = Registry::parse("instances:\n- name: a\n  version: 2025-01-02\n").unwrap();
        let msg = bad.require("a", Path::new("/r")).unwrap_err().to_string();
        assert!(
            msg.contains("instance a") && msg.contains("version"),
            "{msg}"
        );
    }

    #[test]
    fn a_missing_entry_is_appended_in_block_style() {
        let new = Instance {
            name: "gamma".into(),
            domain: None,
            port: Some(5007),
            version: Some("25.1.0".into()),
            status: None,
            paths: InstancePaths::default(),
            metadata: Map::new(),
            extra: Map::new(),
        };
        let reg = Registry::parse(HAND).unwrap();
        let out = reg.with_entry(&new).unwrap();
        let at = HAND.find("top:").unwrap();
        assert_eq!(&out[..at - 1], &HAND[..at - 1]);
        assert!(
            out.contains("- name: gamma\n  port: 5007\n  version: \"25.1.0\"\ntop:"),
            "{out}"
        );
        for text in ["", "# only a comment\n", "instances:\n", "instances: []\n"] {
            let reg = Registry::parse(text).unwrap();
            let out = reg.with_entry(&new).unwrap();
            assert!(
                out.starts_with(text.trim_end_matches("[]\n").trim_end_matches('\n')),
                "{out}"
            );
            assert_eq!(
                Registry::parse(&out).unwrap().get("gamma"),
                Some(&new),
                "{out}"
            );
        }
    }
}
