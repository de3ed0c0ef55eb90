//! Where an instance's unit file, nginx site and `sites-enabled` link live:
//! as its registry entry records them (`paths.systemd_unit`,
//! `paths.nginx_site`, `paths.nginx_enabled`, the Python tool's keys), held
//! to the directories either tool could have put them in; else the
//! configuration's directories.

use std::path::{Component, Path, PathBuf};

use serde_json::Value;

use super::Instance;
use crate::config::layout::rerooted;
use crate::config::{Config, site_name, unit_name};
use crate::error::{Error, Result};

impl Instance {
    /// Where the instance's unit file, nginx site and `sites-enabled` link
    /// live: `paths.systemd_unit`, `paths.nginx_site` and
    /// `paths.nginx_enabled` as the Python tool records them, each checked by
    /// [`recorded_asset`]; the configuration's directories for any absent (or
    /// null or empty, which the Python tool also reads as absent).
    pub fn service_paths(&self, config: &Config) -> Result<ServicePaths> {
        let layout = &config.layout;
        let pick = |key: &str, name: String, dirs: [PathBuf; 3]| {
            recorded_asset(&self.name, key, self.paths.extra.get(key), &name, &dirs)
                .map(|recorded| recorded.unwrap_or_else(|| dirs[0].join(&name)))
        };
        let python = layout.runtime_dir.clone();
        Ok(ServicePaths {
            unit: pick(
                "systemd_unit",
                unit_name(&self.name),
                [
                    layout.unit_dir.clone(),
                    python.join("systemd"),
                    rerooted(layout.prefix.as_deref(), "/etc/systemd/system"),
                ],
            )?,
            site: pick(
                "nginx_site",
                site_name(&self.name),
                [
                    layout.sites_available.clone(),
                    python.join("nginx/sites-available"),
                    rerooted(layout.prefix.as_deref(), "/etc/nginx/sites-available"),
                ],
            )?,
            link: pick(
                "nginx_enabled",
                site_name(&self.name),
                [
                    layout.sites_enabled.clone(),
                    python.join("nginx/sites-enabled"),
                    rerooted(layout.prefix.as_deref(), "/etc/nginx/sites-enabled"),
                ],
            )?,
        })
    }
}

/// Where an instance's service assets live ([`Instance::service_paths`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServicePaths {
    /// The systemd unit file.
    pub unit: PathBuf,
    /// The nginx site file.
    pub site: PathBuf,
    /// The `sites-enabled` link to the site.
    pub link: PathBuf,
}

/// A path recorded under `paths.<key>` of `instance`, checked before a create
/// reads it or a restore replaces it, or `None` when nothing is recorded.
///
/// The registry is root's, but its `paths` also come from archives (a restore
/// takes the archived entry's), so a recorded path is held to what either tool
/// could have written there: absolute, no `.` or `..`, named exactly as the
/// tools name the instance's file (`name`), directly inside one of `dirs` (the
/// configured directory, the Python tool's default for the same config, the
/// distribution's). A path anywhere else, or naming another file in those
/// shared directories (another unit, nginx's `default` site), is refused: a
/// restore must not be steered into overwriting it.
fn recorded_asset(
    instance: &str,
    key: &str,
    value: Option<&Value>,
    name: &str,
    dirs: &[PathBuf],
) -> Result<Option<PathBuf>> {
    let refuse = |why: String| {
        Err(Error::validation(format!(
            "instance {instance}: paths.{key} in the registry {why}; fix the entry or remove the key to use the default"
        )))
    };
    let text = match value {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::String(s)) if s.is_empty() => return Ok(None),
        Some(Value::String(s)) => s,
        Some(other) => return refuse(format!("is {other}, not a path")),
    };
    let path = Path::new(text);
    if !path.is_absolute()
        || path
            .components()
            .any(|c| !matches!(c, Component::RootDir | Component::Normal(_)))
    {
        return refuse(format!(
            "is {text:?}: it must be an absolute path without '.' or '..'"
        ));
    }
    let parent = path.parent().unwrap_or(Path::new("/"));
    if !dirs.iter().any(|d| d == parent) {
        let allowed: Vec<String> = dirs.iter().map(|d| d.display().to_string()).collect();
        return refuse(format!(
            "is {text:?}, outside the directories it may name ({})",
            allowed.join(", ")
        ));
    }
    if path.file_name().and_then(|n| n.to_str()) != Some(name) {
        return refuse(format!(
            "is {text:?}: the file must be named {name}, as both tools name it"
        ));
    }
    Ok(Some(path.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::Registry;

    #[test]
    fn recorded_unit_and_site_paths_are_used_checked_or_defaulted() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = Config::load_with_env(
            &crate::config::Overrides {
                prefix: Some(dir.path().into()),
                ..Default::default()
            },
            &Default::default(),
        )
        .unwrap();
        let run = cfg.layout.runtime_dir.display().to_string();
        let entry = |paths: &str| {
            Registry::parse(&format!("instances:\n- name: alpha\n  paths: {paths}\n"))
                .unwrap()
                .get("alpha")
                .unwrap()
                .service_paths(&cfg)
        };
        // As the Python tool records them: its own default directories.
        let at = entry(&format!(
            "{{systemd_unit: {run}/systemd/abssctl-alpha.service, nginx_site: {run}/nginx/sites-available/abssctl-alpha.conf, nginx_enabled: {run}/nginx/sites-enabled/abssctl-alpha.conf}}"
        ))
        .unwrap();
        assert_eq!(
            at.site,
            Path::new(&run).join("nginx/sites-available/abssctl-alpha.conf")
        );
        assert_eq!(
            at.unit,
            Path::new(&run).join("systemd/abssctl-alpha.service")
        );
        // Absent, null or empty: the configuration's directories.
        let default = entry("{nginx_site: null, systemd_unit: ''}").unwrap();
        assert_eq!(default.site, cfg.layout.site_file("alpha"));
        assert_eq!(default.unit, cfg.layout.unit_file("alpha"));
        assert_eq!(default.link, cfg.layout.site_link("alpha"));
        // Hostile: elsewhere, another file in an allowed directory, `..`, relative, not a string.
        let sa = cfg.layout.sites_available.display().to_string();
        for bad in [
            "{nginx_site: /etc/shadow}".to_owned(),
            format!("{{nginx_site: {sa}/default}}"),
            format!("{{nginx_site: {sa}/../sites-available/abssctl-alpha.conf}}"),
            "{nginx_site: abssctl-alpha.conf}".to_owned(),
            "{nginx_site: [1]}".to_owned(),
        ] {
            let e = entry(&bad).unwrap_err();
            assert_eq!(e.kind(), abssd_proto::ErrorKind::Validation, "{bad}");
            let msg = e.to_string();
            assert!(
                msg.contains("instance alpha") && msg.contains("paths.nginx_site"),
                "{msg}"
            );
        }
    }
}
