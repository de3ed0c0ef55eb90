//! The instance registry, `registry_dir/instances.yml`, shared with the Python
//! tool (SPEC §3, §4).
//!
//! The file is the truth: it is read afresh under the lock for every operation
//! and never cached. It is read leniently (`yaml.rs`: a tree with byte
//! positions, scalars typed as PyYAML's YAML 1.1 resolver types them) and each
//! entry is typed on its own (`typed.rs`): a value our model rejects stops only
//! an operation on that instance. A restore changes one entry in place
//! (`edit.rs`, `emit.rs`): its unchanged keys and every other byte of the file stay as the
//! other tool wrote them, and what is written reads back in PyYAML as the types
//! meant. Where an entry's unit and site live, and which recorded paths are
//! taken: `paths.rs`.

mod edit;
mod emit;
pub mod paths;
mod typed;
mod yaml;

use std::path::{Path, PathBuf};

use abssd_proto::{Actor, ToolActor};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::config::Config;
use crate::error::{Error, IoContext, Result};

/// The whole registry file.
///
/// Read leniently: every entry is typed on its own, and one whose known keys
/// hold what the model does not accept (`port: auto`, a date as `version`)
/// is kept aside in `rejected`, so that an odd value in one instance's entry
/// never stops an operation on another. The text it was read from is kept:
/// [`Registry::write_entry`] changes one entry and no other byte.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Registry {
    /// Entries that type, in file order.
    pub instances: Vec<Instance>,
    /// Other top-level keys (read as JSON; only a whole-file
    /// [`Registry::save`] writes them, which the daemon never does).
    #[serde(flatten)]
    pub extra: Map<String, Value>,
    /// Entries that do not type: (instance name, the reason).
    #[serde(skip)]
    rejected: Vec<(String, String)>,
    /// The text and tree read, for editing one entry in place.
    #[serde(skip)]
    source: Option<Source>,
}

/// What [`Registry::parse`] read.
#[derive(Debug, Clone)]
struct Source {
    text: String,
    doc: yaml::Doc,
}

impl PartialEq for Registry {
    fn eq(&self, other: &Registry) -> bool {
        (&self.instances, &self.extra, &self.rejected)
            == (&other.instances, &other.extra, &other.rejected)
    }
}

/// Largest registry read: a few KiB per instance; a bigger file is not one
/// either tool wrote.
const MAX_FILE: u64 = 16 << 20;

/// One instance entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Instance {
    /// `[a-z0-9][a-z0-9-]*`.
    pub name: String,
    /// Public domain served by nginx.
    #[serde(default)]
    pub domain: Option<String>,
    /// Local port of the sync server.
    #[serde(default)]
    pub port: Option<i64>,
    /// Actual server version.
    #[serde(default)]
    pub version: Option<String>,
    /// `enabled`, `disabled`, ...
    #[serde(default)]
    pub status: Option<String>,
    /// `root`, `data`, `config`, ...
    #[serde(default)]
    pub paths: InstancePaths,
    /// Free-form metadata; abssd writes `last_restored_at/by` through
    /// [`Instance::record_restore`].
    #[serde(default)]
    pub metadata: Map<String, Value>,
    /// Other keys.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// The `paths` mapping of an instance.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct InstancePaths {
    /// Data root; default `instance_root/<name>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub root: Option<String>,
    /// Other paths, kept in order.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// Check an instance name against `[a-z0-9][a-z0-9-]*` (also keeps it a single,
/// harmless path component).
pub fn validate_name(name: &str) -> Result<()> {
    let mut chars = name.chars();
    let ok = matches!(chars.next(), Some(c) if c.is_ascii_lowercase() || c.is_ascii_digit())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && name.len() <= 64;
    if ok {
        Ok(())
    } else {
        Err(Error::validation(format!(
            "invalid instance name {name:?}: use lowercase letters, digits and '-', starting with a letter or digit"
        )))
    }
}

impl Registry {
    /// Read and parse the registry. A missing file is an empty registry; an
    /// unparsable one is an error naming the file.
    pub fn load(path: &Path) -> Result<Registry> {
        use std::io::Read;
        let file = match std::fs::File::open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Registry::default()),
            Err(e) => return Err(e).at("reading registry", path),
        };
        let mut text = String::new();
        file.take(MAX_FILE + 1)
            .read_to_string(&mut text)
            .at("reading registry", path)?;
        let corrupt = |message: String| Error::Corrupt {
            path: path.to_owned(),
            format: "YAML",
            message,
        };
        if text.len() as u64 > MAX_FILE {
            return Err(corrupt(format!("larger than {} MiB", MAX_FILE >> 20)));
        }
        Registry::parse(&text).map_err(corrupt)
    }

    /// Parse registry text. Only a file that is not YAML, or whose shape is
    /// not a registry's (a mapping with an `instances` list), is an error.
    pub fn parse(text: &str) -> Result<Registry, String> {
        let doc = yaml::parse(text)?;
        let mut registry = Registry::default();
        if let Some(root) = &doc.root {
            let pairs = match root.pairs() {
                Some(pairs) => pairs,
                None if matches!(yaml::resolve(root), Some(yaml::Scalar::Null)) => &[],
                None => return Err("the registry is not a mapping".into()),
            };
            for (k, v) in pairs {
                if k.as_str() == Some("instances") {
                    match &v.kind {
                        yaml::Kind::Seq(items) => {
                            for item in items {
                                match Instance::from_node(&doc, text, item) {
                                    Ok(instance) => registry.instances.push(instance),
                                    Err(rejected) => registry.rejected.push(rejected),
                                }
                            }
                        }
                        _ if matches!(yaml::resolve(v), Some(yaml::Scalar::Null)) => {}
                        _ => return Err("`instances` is not a list".into()),
                    }
                } else {
                    // Only a whole-file save writes these back: one that
                    // does not convert (an alias bomb) is left out, not fatal.
                    if let (Ok(k), Ok(v)) = (doc.key(k), doc.json(v)) {
                        registry.extra.insert(k, v);
                    }
                }
            }
        }
        registry.source = Some(Source {
            text: text.to_owned(),
            doc,
        });
        Ok(registry)
    }

    /// Render the whole registry as YAML (block style, keys in order): for
    /// a file abssd makes whole (tests, fresh hosts). The daemon edits the
    /// shared file with [`Registry::write_entry`].
    pub fn to_yaml(&self) -> Result<String> {
        serde_saphyr::to_string(self)
            .map_err(|e| Error::Internal(format!("rendering registry: {e}")))
    }

    /// Write the whole registry atomically (see [`Registry::to_yaml`]).
    pub fn save(&self, path: &Path) -> Result<()> {
        write(path, &self.to_yaml()?)
    }

    /// The entry for `name`, mutable.
    pub fn get_mut(&mut self, name: &str) -> Option<&mut Instance> {
        self.instances.iter_mut().find(|i| i.name == name)
    }

    /// The entry for `name`.
    pub fn get(&self, name: &str) -> Option<&Instance> {
        self.instances.iter().find(|i| i.name == name)
    }

    /// The entry for `name`, or a not-found error listing what exists, or a
    /// validation error naming the key of that entry that does not type.
    pub fn require(&self, name: &str, file: &Path) -> Result<&Instance> {
        validate_name(name)?;
        if self.get(name).is_none()
            && let Some((_, why)) = self.rejected.iter().find(|(n, _)| n == name)
        {
            return Err(Error::validation(format!(
                "instance {name}: {why} in the registry {}; fix that entry",
                file.display()
            )));
        }
        self.get(name).ok_or_else(|| {
            // Sorted, as typed and rejected entries are kept apart; an entry
            // without a name has none to list.
            let mut known: Vec<&str> = self
                .instances
                .iter()
                .map(|i| i.name.as_str())
                .chain(self.rejected.iter().map(|(n, _)| n.as_str()))
                .filter(|n| !n.is_empty())
                .collect();
            known.sort_unstable();
            Error::NotFound {
                what: "instance",
                name: name.to_owned(),
                hint: if known.is_empty() {
                    format!(" (the registry {} has no instances)", file.display())
                } else {
                    format!(" in {} (known: {})", file.display(), known.join(", "))
                },
            }
        })
    }
}

impl Instance {
    /// The instance's data root: `paths.root`, else `instance_root/<name>`.
    pub fn data_root(&self, config: &Config) -> PathBuf {
        match &self.paths.root {
            Some(root) if !root.is_empty() => PathBuf::from(root),
            _ => config.layout.instance_root.join(&self.name),
        }
    }

    /// Take `paths`, `version` and `domain` from `archived`, the entry an
    /// archive carries (`metadata/instance.json`), as a restore does (SPEC §7
    /// step 6). The data root stays where the data was just restored,
    /// `restored_to`: when the archive names another, that root is returned
    /// so the caller can say it was not taken.
    pub fn apply_archived(
        &mut self,
        archived: &Map<String, Value>,
        restored_to: &Path,
    ) -> Option<String> {
        if let Some(Value::String(v)) = archived.get("version") {
            self.version = Some(v.clone());
        }
        if let Some(Value::String(d)) = archived.get("domain") {
            self.domain = Some(d.clone());
        }
        let mut paths = archived
            .get("paths")
            .and_then(|p| serde_json::from_value::<InstancePaths>(p.clone()).ok())?;
        let restored_to = restored_to.display().to_string();
        let other_root = paths.root.take().filter(|root| *root != restored_to);
        paths.root = self.paths.root.clone();
        self.paths = paths;
        other_root
    }

    /// Note a restore of this instance in its metadata (SPEC §7 step 6),
    /// replacing an earlier restore's note and keeping every other key. Both
    /// tools' keys, so that whichever wrote last, either reads the same:
    /// `last_restored_at` (UTC, as the index writes it) and `last_restored_by`
    /// (the user's name, abssd's), and the Python tool's `last_restore_source`
    /// (the backup id), `last_restore_destination` (the data root restored)
    /// and `last_restore_actor` (`{type: user, name}`).
    pub fn record_restore(&mut self, note: &RestoreNote<'_>) {
        let text = |s: &str| Value::String(s.to_owned());
        let actor = ToolActor::of(note.actor);
        for (key, value) in [
            ("last_restored_at", text(note.at)),
            ("last_restored_by", text(&note.actor.user)),
            ("last_restore_source", text(note.source)),
            (
                "last_restore_destination",
                text(&note.destination.display().to_string()),
            ),
            (
                "last_restore_actor",
                serde_json::to_value(&actor).unwrap_or(Value::Null),
            ),
        ] {
            self.metadata.insert(key.into(), value);
        }
    }
}

/// One restore of an instance, as [`Instance::record_restore`] notes it.
#[derive(Debug, Clone, Copy)]
pub struct RestoreNote<'a> {
    /// When it finished (UTC, whole seconds, `Z`).
    pub at: &'a str,
    /// Who asked for it.
    pub actor: &'a Actor,
    /// The backup restored.
    pub source: &'a str,
    /// The data root it was restored to.
    pub destination: &'a Path,
}

/// Write `text` as the registry file, atomically.
fn write(path: &Path, text: &str) -> Result<()> {
    let tmp = crate::fsutil::write_temp(path, text.as_bytes())?;
    crash_point!("registry::before-rename");
    crate::fsutil::replace(tmp, path)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Many short entries, each reading one big anchor: what they expand to
    /// together is bounded, not only each one; the entries past the bound are
    /// refused, naming the aliases.
    #[test]
    fn aliases_expand_to_a_bounded_total_over_the_whole_file() {
        fn nodes(v: &Value) -> usize {
            1 + match v {
                Value::Array(a) => a.iter().map(nodes).sum(),
                Value::Object(m) => m.values().map(nodes).sum(),
                _ => 0,
            }
        }
        let mut text = format!("big: &a [{}]\ninstances:\n", vec!["0"; 20_000].join(","));
        for i in 0..100 {
            text.push_str(&format!("- {{name: i{i}, metadata: {{m: *a}}}}\n"));
        }
        let reg = Registry::parse(&text).unwrap();
        let total: usize = reg
            .instances
            .iter()
            .map(|i| nodes(&Value::Object(i.metadata.clone())))
            .sum();
        assert!(total <= 1_000_000 + 20_010, "{total} nodes read");
        assert!(
            reg.rejected
                .iter()
                .any(|(n, why)| n == "i99" && why.contains("aliases")),
            "{:?}",
            reg.rejected.last()
        );
        assert!(reg.get("i0").is_some());
    }

    /// As PyYAML `safe_dump(sort_keys=False)` writes it: strings that would read as
    /// other types are quoted, the rest are plain.
    const PYYAML: &str = "\
instances:
- name: alpha
  domain: 'yes'
  port: 5006
  version: '2025-01-02'
  status: 'on'
  paths:
    root: /srv/alpha
    data: /srv/alpha/data
    config: /srv/alpha/config.json
  metadata:
    note: '1e3'
    flag: 'off'
    owner: ops
    created: '2025-01-02'
  custom_key:
    nested: [1, 2]
- name: beta
  domain: null
  port: null
  version: 1e3
  status: enabled
  paths: {}
  metadata: {}
top_level_extra: kept
";

    #[test]
    fn round_trip_keeps_meaning_and_unknown_keys() {
        let reg = Registry::parse(PYYAML).unwrap();
        let a = reg.get("alpha").unwrap();
        assert_eq!(a.domain.as_deref(), Some("yes"));
        assert_eq!(a.version.as_deref(), Some("2025-01-02"));
        assert_eq!(a.status.as_deref(), Some("on"));
        assert_eq!(a.metadata["note"], "1e3");
        assert_eq!(a.extra["custom_key"]["nested"][1], 2);
        // PyYAML reads a plain 1e3 as a string (its floats need a dot).
        assert_eq!(reg.get("beta").unwrap().version.as_deref(), Some("1e3"));
        assert_eq!(reg.extra["top_level_extra"], "kept");

        let out = reg.to_yaml().unwrap();
        // The strings stay strings for a YAML 1.1 reader: quoted in the output.
        for needle in ["'yes'", "'on'", "'off'", "'2025-01-02'", "'1e3'"] {
            let quoted = out.contains(needle) || out.contains(&needle.replace('\'', "\""));
            assert!(quoted, "{needle} not quoted in:\n{out}");
        }
        let again = Registry::parse(&out).unwrap();
        assert_eq!(again, reg);
        assert!(out.find("name: alpha").unwrap() < out.find("name: beta").unwrap());
    }

    #[test]
    fn data_root_defaults_under_instance_root() {
        let reg = Registry::parse("instances:\n- name: gamma\n").unwrap();
        let dir = tempfile::tempdir().unwrap();
        let cfg = Config::load_with_env(
            &crate::config::Overrides {
                prefix: Some(dir.path().into()),
                ..Default::default()
            },
            &Default::default(),
        )
        .unwrap();
        assert_eq!(
            reg.get("gamma").unwrap().data_root(&cfg),
            dir.path().join("srv/gamma")
        );
    }

    #[test]
    fn archived_entry_brings_paths_version_domain_but_not_the_root() {
        let mut reg = Registry::parse(PYYAML).unwrap();
        let alpha = reg.get_mut("alpha").unwrap();
        let archived = serde_json::json!({
            "name": "alpha",
            "version": "25.1.0",
            "domain": "budget.example",
            "port": 9999,
            "paths": {"root": "/elsewhere/alpha", "data": "/elsewhere/alpha/data"},
        });
        let other = alpha.apply_archived(archived.as_object().unwrap(), Path::new("/srv/alpha"));
        assert_eq!(other.as_deref(), Some("/elsewhere/alpha"));
        assert_eq!(alpha.version.as_deref(), Some("25.1.0"));
        assert_eq!(alpha.domain.as_deref(), Some("budget.example"));
        assert_eq!(alpha.port, Some(5006), "only paths, version and domain");
        assert_eq!(alpha.paths.root.as_deref(), Some("/srv/alpha"));
        assert_eq!(alpha.paths.extra["data"], "/elsewhere/alpha/data");
        assert!(!alpha.paths.extra.contains_key("config"));

        // The same root: nothing to say. No paths: the current ones stay.
        let same = serde_json::json!({"paths": {"root": "/srv/alpha"}});
        assert_eq!(
            alpha.apply_archived(same.as_object().unwrap(), Path::new("/srv/alpha")),
            None
        );
        let beta = reg.get_mut("beta").unwrap();
        let before = beta.paths.clone();
        let bare = serde_json::json!({"version": "2"});
        assert_eq!(
            beta.apply_archived(bare.as_object().unwrap(), Path::new("/x")),
            None
        );
        assert_eq!(
            (beta.paths.clone(), beta.version.as_deref()),
            (before, Some("2"))
        );
    }

    /// A restore as the tests note it.
    pub(crate) fn note<'a>(at: &'a str, actor: &'a Actor, source: &'a str) -> RestoreNote<'a> {
        RestoreNote {
            at,
            actor,
            source,
            destination: Path::new("/srv/alpha"),
        }
    }

    pub(crate) fn actor(user: &str) -> Actor {
        Actor {
            uid: 0,
            user: user.into(),
            pid: 1,
        }
    }

    /// The keys and value types are the registry format's (the Python tool and
    /// older abssd read them): strings in `metadata` (and the Python tool's
    /// actor mapping), after the keys already there and strings to a YAML 1.1
    /// reader too; a later restore replaces an earlier one's.
    #[test]
    fn a_restore_is_recorded_in_metadata_with_both_tools_keys() {
        let mut reg = Registry::parse(PYYAML).unwrap();
        let alpha = reg.get_mut("alpha").unwrap();
        alpha.record_restore(&note("2025-01-01T00:00:00Z", &actor("ops"), "old-id"));
        alpha.record_restore(&note(
            "2025-06-01T11:00:00Z",
            &actor("root"),
            "20250601-110000-alpha-a1b2c3",
        ));
        let keys: Vec<&str> = alpha.metadata.keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            [
                "note",
                "flag",
                "owner",
                "created",
                "last_restored_at",
                "last_restored_by",
                "last_restore_source",
                "last_restore_destination",
                "last_restore_actor",
            ]
        );
        reg.get_mut("beta").unwrap().record_restore(&note(
            "2025-06-02T00:00:00Z",
            &actor("1e3"),
            "1e3",
        ));

        let out = reg.to_yaml().unwrap();
        // The time is quoted (PyYAML would read it as a timestamp), as is a
        // user name that would read as a number.
        let alpha_meta = "  metadata:\n    note: \"1e3\"\n    flag: \"off\"\n    owner: ops\n    created: \"2025-01-02\"\n    last_restored_at: \"2025-06-01T11:00:00Z\"\n    last_restored_by: root\n    last_restore_source: 20250601-110000-alpha-a1b2c3\n    last_restore_destination: /srv/alpha\n    last_restore_actor:\n      type: user\n      name: root\n";
        assert!(out.contains(alpha_meta), "{out}");
        let again = Registry::parse(&out).unwrap();
        assert_eq!(again, reg);
        let beta = &again.get("beta").unwrap().metadata;
        assert_eq!(
            beta["last_restored_at"],
            Value::from("2025-06-02T00:00:00Z")
        );
        assert_eq!(beta["last_restored_by"], Value::from("1e3"));
        assert_eq!(beta["last_restore_source"], Value::from("1e3"));
        assert_eq!(beta["last_restore_actor"]["name"], Value::from("1e3"));
    }

    #[test]
    fn not_found_lists_the_known_names_sorted_and_no_empty_one() {
        let reg =
            Registry::parse("instances:\n- name: beta\n  port: auto\n- name: 12\n- name: alpha\n")
                .unwrap();
        let err = reg
            .require("gamma", Path::new("/r/instances.yml"))
            .unwrap_err()
            .to_string();
        assert!(
            err.ends_with("in /r/instances.yml (known: alpha, beta)"),
            "{err}"
        );
    }

    #[test]
    fn names_are_validated_and_missing_file_is_empty() {
        assert!(validate_name("alpha-2").is_ok());
        for bad in ["", "-a", "A", "a/b", "..", "a b", "ä"] {
            assert!(validate_name(bad).is_err(), "{bad}");
        }
        let dir = tempfile::tempdir().unwrap();
        assert!(
            Registry::load(&dir.path().join("none.yml"))
                .unwrap()
                .instances
                .is_empty()
        );
        let bad = dir.path().join("bad.yml");
        std::fs::write(&bad, "instances: [\n").unwrap();
        let err = Registry::load(&bad).unwrap_err();
        assert!(err.to_string().contains("bad.yml"), "{err}");
    }
}
