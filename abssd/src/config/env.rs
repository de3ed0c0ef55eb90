//! The environment as layers of settings, one layer per variable (so each
//! value's source is the variable that set it):
//! * the Python tool's `ABSSCTL_<A>__<B>` overrides, with its names, nesting and
//!   value coercion (its `config.py`, ADR-023), for the keys it knows;
//! * abssd's own `ABSSD_*` variables ([`ABSSD_VARS`]) for abssd-only keys;
//! * for one release, the flat `ABSSCTL_*` names abssd read before
//!   ([`DEPRECATED`]), each with a deprecation warning.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::file::{ABSSD_ONLY, ConfigFile, Layer, Source, typed_as};
use crate::error::Result;
use crate::yaml11::{self, Scalar};

/// Variables the Python tool reads itself and never as a setting.
pub const RESERVED: [&str; 3] = [
    "ABSSCTL_CONFIG_FILE",
    "ABSSCTL_SKIP_NPM",
    "ABSSCTL_VERSIONS_CACHE",
];

/// abssd's own variables and the key of `abssd.yml` each sets: `ABSSD_` and
/// the key's name upper-cased, `NGINX_` kept for the nginx section's. Values
/// are taken as they are (no YAML coercion).
pub const ABSSD_VARS: [(&str, &str); 5] = [
    ("ABSSD_SOCKET", "daemon.socket"),
    ("ABSSD_OPERATOR_GROUP", "daemon.operator_group"),
    ("ABSSD_RESTORES_ROOT", "backups.restores_root"),
    ("ABSSD_NGINX_SITES_AVAILABLE", "nginx.sites_available"),
    ("ABSSD_NGINX_SITES_ENABLED", "nginx.sites_enabled"),
];

/// The flat names abssd read before, the key each sets, and its name now.
/// Still read for one release, below their new names.
pub const DEPRECATED: [(&str, &str, &str); 8] = [
    ("ABSSCTL_SOCKET", "daemon.socket", "ABSSD_SOCKET"),
    (
        "ABSSCTL_OPERATOR_GROUP",
        "daemon.operator_group",
        "ABSSD_OPERATOR_GROUP",
    ),
    (
        "ABSSCTL_RESTORES_ROOT",
        "backups.restores_root",
        "ABSSD_RESTORES_ROOT",
    ),
    (
        "ABSSCTL_NGINX_SITES_AVAILABLE",
        "nginx.sites_available",
        "ABSSD_NGINX_SITES_AVAILABLE",
    ),
    (
        "ABSSCTL_NGINX_SITES_ENABLED",
        "nginx.sites_enabled",
        "ABSSD_NGINX_SITES_ENABLED",
    ),
    (
        "ABSSCTL_BACKUPS_ROOT",
        "backups.root",
        "ABSSCTL_BACKUPS__ROOT",
    ),
    (
        "ABSSCTL_BACKUPS_INDEX",
        "backups.index",
        "ABSSCTL_BACKUPS__INDEX",
    ),
    (
        "ABSSCTL_UNIT_DIR",
        "systemd.unit_dir",
        "ABSSCTL_SYSTEMD__UNIT_DIR",
    ),
];

/// The environment's layers, lowest first (deprecated names, the Python
/// tool's, abssd's own), and the warnings about them.
pub fn layers(env: &BTreeMap<String, String>) -> Result<(Vec<Layer>, Vec<String>)> {
    let mut warnings = Vec::new();
    let (mut old, mut python, mut own) = (Vec::new(), Vec::new(), Vec::new());
    for (name, raw) in env {
        if let Some((_, key, new)) = DEPRECATED.iter().find(|(n, ..)| n == name) {
            let python_key = name["ABSSCTL_".len()..].to_lowercase();
            warnings.push(format!(
                "environment variable {name} is deprecated (still read in this release): \
                 use {new}; the Python abssctl reads it as a top-level key {python_key:?} \
                 and refuses to run while it is set"
            ));
            old.push(layer(name, key, Value::String(raw.clone()))?);
        } else if let Some((_, key)) = ABSSD_VARS.iter().find(|(n, _)| n == name) {
            own.push(layer(name, key, Value::String(raw.clone()))?);
        } else if let Some(key) = python_key(name) {
            if let Some(mine) = ABSSD_ONLY
                .iter()
                .find(|k| key == **k || key.starts_with(&format!("{k}.")))
            {
                warnings.push(format!(
                    "environment variable {name} ignored: {mine} is abssd's own setting, which \
                     the Python abssctl refuses; set it in abssd.yml or with an ABSSD_* variable"
                ));
                continue;
            }
            let l = layer(name, &key, coerce(raw))?;
            for k in l.settings.unknown_keys() {
                warnings.push(format!(
                    "environment variable {name}: unknown key {k:?} ignored (the Python \
                     abssctl refuses to run while it is set)"
                ));
            }
            python.push(l);
        }
    }
    Ok((old.into_iter().chain(python).chain(own).collect(), warnings))
}

/// The dotted key the Python tool reads variable `name` as: `ABSSCTL_` off,
/// `__` for nesting, lower case; `None` for other and reserved variables.
pub fn python_key(name: &str) -> Option<String> {
    let suffix = name.strip_prefix("ABSSCTL_")?;
    if RESERVED.contains(&name) {
        return None;
    }
    let segments: Vec<String> = suffix
        .split("__")
        .filter(|s| !s.is_empty())
        .map(str::to_lowercase)
        .collect();
    (!segments.is_empty()).then(|| segments.join("."))
}

/// One variable's setting of dotted `key` as a layer; a bad value names the variable.
fn layer(name: &str, key: &str, value: Value) -> Result<Layer> {
    let tree = key.rsplit('.').fold(value, |inner, k| {
        Value::Object(Map::from_iter([(k.to_owned(), inner)]))
    });
    Ok(Layer {
        settings: typed_as::<ConfigFile>(&format!("environment variable {name}"), tree)?,
        source: Source::Environment(name.to_owned()),
    })
}

/// A variable's value as the Python tool reads it: `yaml.safe_load` of the
/// stripped text, YAML 1.1 ([`yaml11`]: `yes`/`off` are booleans, `017` is
/// octal, `1e3` a string, `1.5e+3` a float), the text itself when that fails.
pub fn coerce(raw: &str) -> Value {
    let s = raw.trim();
    let scalar = yaml11::plain(s);
    // Flow collections, quoted strings, `a: b`, `- a`, comments: YAML proper.
    // Plain text that is none of those keeps YAML 1.1's reading, whatever
    // YAML 1.2 says of it (`-.5` is text to PyYAML).
    let structured = s.starts_with(['[', '{', '"', '\'', '#', '&', '*', '!', '|', '>'])
        || s.starts_with("- ")
        || s.starts_with("? ")
        || s.contains(": ")
        || s.ends_with(':')
        || s.contains(" #");
    if matches!(scalar, Scalar::Str(_))
        && structured
        && let Ok(v) = serde_saphyr::from_str::<Value>(s)
    {
        return v;
    }
    yaml11::json(scalar, s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn values_are_coerced_as_pyyaml_reads_them() {
        for (raw, want) in [
            (" /srv/backups ", json!("/srv/backups")),
            ("5", json!(5)),
            ("-3", json!(-3)),
            ("1_000", json!(1000)),
            ("017", json!(15)),
            ("0x1f", json!(31)),
            ("0b101", json!(5)),
            ("1:30", json!(90)),
            ("1.5", json!(1.5)),
            ("1.5e+3", json!(1500.0)),
            (".5", json!(0.5)),
            // YAML 1.1: no dot, no float; no sign in the exponent, no float.
            ("1e3", json!("1e3")),
            ("1.0e3", json!("1.0e3")),
            ("0o17", json!("0o17")),
            ("yes", json!(true)),
            ("Off", json!(false)),
            ("y", json!("y")),
            ("~", Value::Null),
            ("", Value::Null),
            ("[1, 2]", json!([1, 2])),
            ("{level: 3}", json!({"level": 3})),
            ("'017'", json!("017")),
            ("soon", json!("soon")),
            ("NaN", json!("NaN")),
            // PyYAML's floats: no sign before a bare dot; base 60 with a fraction.
            ("+.5", json!("+.5")),
            ("-.5", json!("-.5")),
            ("1:30.5", json!(90.5)),
            (".inf", json!(".inf")),
            ("18446744073709551615", json!(u64::MAX)),
            ("2025-01-02", json!("2025-01-02")),
            ("- a", json!(["a"])),
        ] {
            assert_eq!(coerce(raw), want, "{raw:?}");
        }
    }

    #[test]
    fn names_nest_on_double_underscores_lower_cased_and_reserved_ones_are_not_keys() {
        assert_eq!(
            python_key("ABSSCTL_BACKUPS__ROOT").as_deref(),
            Some("backups.root")
        );
        assert_eq!(
            python_key("ABSSCTL_BACKUPS__COMPRESSION__LEVEL").as_deref(),
            Some("backups.compression.level")
        );
        assert_eq!(
            python_key("ABSSCTL_STATE_DIR").as_deref(),
            Some("state_dir")
        );
        assert_eq!(
            python_key("ABSSCTL_BACKUPS_ROOT").as_deref(),
            Some("backups_root")
        );
        assert_eq!(
            python_key("ABSSCTL_SYSTEMD____UNIT_DIR").as_deref(),
            Some("systemd.unit_dir")
        );
        for name in [
            "ABSSCTL_CONFIG_FILE",
            "ABSSCTL_SKIP_NPM",
            "ABSSCTL_VERSIONS_CACHE",
            "ABSSCTL_",
            "ABSSCTL___",
            "ABSSD_SOCKET",
            "PATH",
        ] {
            assert_eq!(python_key(name), None, "{name}");
        }
    }
}
