//! Text for people about restores: the plan (`--dry-run`), the confirmation
//! question of a live restore, and the summary of a finished one.

use abssd_proto::{RestoreMode, RestorePlan, RestoreResult, UnitPlan};

use super::{esc, fields, human_size, yes_no};

/// `backup restore --dry-run`: everything the restore would do, in order.
pub fn plan(p: &RestorePlan) -> String {
    let (id, instance, target) = (esc(&p.id), esc(&p.instance), esc(&p.target));
    let into = match p.mode {
        RestoreMode::Live => format!("into instance {instance}"),
        RestoreMode::Dest => {
            format!("of instance {instance} into {target} (data only; the instance is not touched)")
        }
    };
    let mut text = format!("Dry run, nothing changed: restore backup {id} {into}\n");
    let mut pairs = vec![
        ("target", p.target.clone()),
        ("staging", p.staging.clone()),
        (
            "archive",
            format!(
                "{} ({}, {})",
                p.archive,
                human_size(p.archive_bytes),
                p.algorithm.as_str()
            ),
        ),
    ];
    if let Some(src) = &p.pull {
        pairs.push((
            "pull first",
            format!(
                "the archive is not here: it will first be pulled from remote {} ({} bytes{}; key {})",
                src.remote,
                p.archive_bytes,
                if src.encrypted { ", decrypted" } else { "" },
                src.key
            ),
        ));
    }
    if let Some(bytes) = p.uncompressed_bytes {
        pairs.push(("content", human_size(bytes)));
    }
    pairs.push(("checksum", checksum_text(p)));
    pairs.push(("space", space_text(p)));
    if p.mode == RestoreMode::Live {
        pairs.push(("service assets", assets_text(p.data_only).to_owned()));
        pairs.push((
            "unit",
            p.unit.as_ref().map_or_else(|| "none".to_owned(), unit_text),
        ));
        pairs.push((
            "pre-restore backup",
            p.pre_backup_dir
                .as_ref()
                .map_or_else(|| "none".to_owned(), |dir| format!("into {dir}")),
        ));
    } else {
        // Said outright, because --no-pre-backup is accepted here and does
        // nothing: there is nothing live to keep.
        pairs.push((
            "pre-restore backup",
            "none (a --dest restore changes nothing live)".to_owned(),
        ));
    }
    text.push_str(&fields(2, &pairs));
    text.push_str("Steps:\n");
    let names: Vec<String> = p.steps.iter().map(|s| s.step.to_string()).collect();
    let width = names.iter().map(|n| n.chars().count()).max().unwrap_or(0);
    for (n, (name, step)) in names.iter().zip(&p.steps).enumerate() {
        let line = format!(
            "  {:>2}. {:width$}  {}",
            n + 1,
            esc(name),
            esc(&step.detail)
        );
        text.push_str(line.trim_end());
        text.push('\n');
    }
    text.push_str(&warnings(&p.warnings));
    text
}

/// `Warnings:` and one line each, or nothing.
fn warnings(list: &[String]) -> String {
    let mut text = String::new();
    if !list.is_empty() {
        text.push_str("Warnings:\n");
        for warning in list {
            text.push_str(&format!("  - {}\n", esc(warning)));
        }
    }
    text
}

fn checksum_text(p: &RestorePlan) -> String {
    let c = &p.checksum;
    let mut parts = vec![format!("{}, sha256 {}", c.status, c.expected)];
    if c.sidecar_missing {
        parts.push(format!(
            "{} missing (written back after the restore)",
            c.sidecar
        ));
    } else if !c.sidecar_agrees {
        parts.push(format!("DIFFERS from {}", c.sidecar));
    }
    parts.push(match &c.last_verified {
        Some(at) => format!("last verified {at}"),
        None => "never verified".to_owned(),
    });
    if c.verified_during_extraction {
        parts.push("checked while extracting".to_owned());
    }
    parts.join("; ")
}

fn space_text(p: &RestorePlan) -> String {
    let s = &p.space;
    let short = if s.available_bytes < s.needed_bytes.saturating_add(s.reserve_bytes) {
        " (NOT ENOUGH)"
    } else {
        ""
    };
    let reserve = if s.reserve_bytes > 0 {
        format!(" and keeps {} free", human_size(s.reserve_bytes))
    } else {
        String::new()
    };
    format!(
        "needs {}{reserve} on {}, {} free{short}",
        human_size(s.needed_bytes),
        s.filesystem,
        human_size(s.available_bytes)
    )
}

fn assets_text(data_only: bool) -> &'static str {
    if data_only {
        "left alone (data only)"
    } else {
        "unit file and nginx site replaced from the backup, sites-enabled link reinstated"
    }
}

fn unit_text(u: &UnitPlan) -> String {
    format!(
        "{} ({}, {}); running after the restore: {}",
        u.name,
        u.active_state,
        u.unit_file_state,
        yes_no(u.running_after)
    )
}

/// Whether systemd's `ActiveState` means the service is up (or coming up).
fn runs(active_state: &str) -> bool {
    matches!(active_state, "active" | "activating" | "reloading")
}

/// The question asked before a live restore (without the answer prompt): the
/// instance, its data directory, what is replaced, what happens to the unit and
/// where the pre-restore backup goes. `no_pre_backup` is the flag as given, to
/// say why there is none.
pub fn confirmation(p: &RestorePlan, no_pre_backup: bool) -> String {
    let target = esc(&p.target);
    let mut items: Vec<String> = p.pull.iter().map(|src| pull_item(p, src)).collect();
    items.push(format!(
        "replace the data in {target} with the backup's (the current data is kept as \
         {target}.pre-restore-<time> until the restore has succeeded)"
    ));
    items.push(if p.data_only {
        "leave the unit file, nginx site and sites-enabled link as they are (data only)".to_owned()
    } else {
        "replace the unit file and nginx site with the backup's and reinstate its \
         sites-enabled link"
            .to_owned()
    });
    items.push(match &p.unit {
        None => "no systemd unit to stop or start".to_owned(),
        Some(u) => match (runs(&u.active_state), u.running_after) {
            (true, true) => format!(
                "stop {} ({} now) and start it again afterwards",
                u.name, u.active_state
            ),
            (true, false) => format!(
                "stop {} ({} now) and leave it stopped",
                u.name, u.active_state
            ),
            (false, true) => format!("start {} afterwards ({} now)", u.name, u.active_state),
            (false, false) => format!("leave {} stopped ({} now)", u.name, u.active_state),
        },
    });
    items.push(match (&p.pre_backup_dir, no_pre_backup) {
        (Some(dir), _) => format!("first back up the current instance into {}", esc(dir)),
        (None, true) => "take NO pre-restore backup (--no-pre-backup): once the restore \
                         has succeeded, the current data is gone"
            .to_owned(),
        (None, false) => "take no pre-restore backup".to_owned(),
    });
    let mut text = format!(
        "Restore backup {} into instance {} (data directory {target}). This will:\n",
        esc(&p.id),
        esc(&p.instance)
    );
    for item in items {
        text.push_str(&format!("  - {item}\n"));
    }
    text.push_str(&warnings(&p.warnings));
    text.push_str("If any step fails, everything is rolled back.\n");
    text
}

/// The first thing a restore of an archive that is missing here does.
pub fn pull_item(p: &RestorePlan, src: &abssd_proto::PullSource) -> String {
    format!(
        "first pull the archive from remote {} ({}{}) into {}",
        esc(&src.remote),
        human_size(p.archive_bytes),
        if src.encrypted { ", decrypted" } else { "" },
        esc(&p.archive)
    )
}

/// A finished restore: where the data went, the pre-restore backup, the unit and
/// nginx, and any warnings. `unit` is the unit's name from the plan, when known.
pub fn restored(r: &RestoreResult, unit: Option<&str>) -> String {
    let (id, instance, destination) = (esc(&r.id), esc(&r.instance), esc(&r.destination));
    let mut text = match r.mode {
        RestoreMode::Live => {
            format!("Restored backup {id} into {destination} (instance {instance})\n")
        }
        RestoreMode::Dest => format!(
            "Restored the data of backup {id} (instance {instance}) into {destination}; the instance was not touched\n"
        ),
    };
    let mut pairs = Vec::new();
    if r.mode == RestoreMode::Live {
        pairs.push((
            "pre-restore backup",
            r.pre_restore_backup
                .clone()
                .unwrap_or_else(|| "none".to_owned()),
        ));
        if let Some(running) = r.unit_running {
            let state = if running { "running" } else { "stopped" };
            pairs.push((
                "unit",
                match unit {
                    Some(name) => format!("{name} {state}"),
                    None => state.to_owned(),
                },
            ));
        }
        pairs.push((
            "service assets",
            if r.assets.is_empty() {
                "none replaced".to_owned()
            } else {
                r.assets.join(", ")
            },
        ));
        pairs.push((
            "nginx",
            if r.nginx_reloaded {
                "checked and reloaded"
            } else {
                "not reloaded"
            }
            .to_owned(),
        ));
    }
    pairs.push(("sha256", r.checksum.clone()));
    pairs.push((
        "content",
        format!("{} in {} entries", human_size(r.content_bytes), r.entries),
    ));
    pairs.push(("restored", r.restored_at.clone()));
    text.push_str(&fields(2, &pairs));
    text.push_str(&warnings(&r.warnings));
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn live_plan() -> RestorePlan {
        serde_json::from_value(json!({
            "id": "20250102-030405-alpha-a1b2c3", "instance": "alpha", "mode": "live",
            "archive": "/srv/backups/alpha/x.tar.zst", "archive_bytes": 1536, "algorithm": "zstd",
            "uncompressed_bytes": 4096,
            "checksum": {"expected": "ab12", "sidecar": "/srv/backups/alpha/x.tar.zst.sha256",
                         "sidecar_agrees": true, "status": "available", "last_verified": null,
                         "verified_during_extraction": true},
            "target": "/srv/alpha", "staging": "/srv/.alpha.restore", "data_only": false,
            "space": {"filesystem": "/srv", "needed_bytes": 4506, "available_bytes": 1024},
            "unit": {"name": "abssctl-alpha.service", "load_state": "loaded",
                     "active_state": "active", "unit_file_state": "enabled", "running_after": true},
            "pre_backup_dir": "/srv/backups/alpha",
            "steps": [{"step": "pre_backup", "detail": "back up alpha"},
                      {"step": "extract", "detail": "unpack into /srv/.alpha.restore"}],
            "dry_run": true
        }))
        .unwrap()
    }

    #[test]
    fn plan_lists_target_space_unit_and_numbered_steps() {
        let text = plan(&live_plan());
        assert!(
            text.starts_with(
                "Dry run, nothing changed: restore backup 20250102-030405-alpha-a1b2c3 into instance alpha\n"
            ),
            "{text}"
        );
        for part in [
            "target:              /srv/alpha\n",
            "(1.5 KiB, zstd)",
            "available, sha256 ab12; never verified; checked while extracting",
            "needs 4.4 KiB on /srv, 1.0 KiB free (NOT ENOUGH)",
            "abssctl-alpha.service (active, enabled); running after the restore: yes",
            "pre-restore backup:  into /srv/backups/alpha",
            "Steps:\n   1. pre_backup  back up alpha\n   2. extract     unpack into /srv/.alpha.restore\n",
        ] {
            assert!(text.contains(part), "missing {part:?}:\n{text}");
        }
        assert!(!text.contains("Warnings"), "{text}");
    }

    #[test]
    fn a_plan_that_pulls_first_says_from_where_in_the_plan_and_the_question() {
        let mut p = live_plan();
        p.pull = Some(abssd_proto::PullSource {
            remote: "offsite".into(),
            key: "actual/alpha/x.tar.zst.age".into(),
            size_bytes: Some(1700),
            encrypted: true,
        });
        let text = plan(&p);
        assert!(
            text.contains("the archive is not here: it will first be pulled from remote offsite (1536 bytes, decrypted; key actual/alpha/x.tar.zst.age)"),
            "{text}"
        );
        let question = confirmation(&p, false);
        let first = question.lines().nth(1).unwrap();
        assert_eq!(
            first,
            "  - first pull the archive from remote offsite (1.5 KiB, decrypted) into /srv/backups/alpha/x.tar.zst"
        );
        assert!(!confirmation(&live_plan(), false).contains("pull"));
    }

    #[test]
    fn dest_plan_says_no_pre_restore_backup_and_leaves_the_unit_out() {
        let mut p = live_plan();
        p.mode = RestoreMode::Dest;
        p.target = "/srv/restores/alpha-copy".into();
        p.pre_backup_dir = None;
        p.unit = None;
        p.steps.remove(0);
        let text = plan(&p);
        assert!(
            text.contains("pre-restore backup:  none (a --dest restore changes nothing live)\n"),
            "{text}"
        );
        assert!(!text.contains("unit:"), "{text}");
    }

    #[test]
    fn a_missing_sidecar_is_named_as_missing_not_as_differing() {
        let mut p = live_plan();
        p.checksum.sidecar_agrees = false;
        p.checksum.sidecar_missing = true;
        let text = plan(&p);
        assert!(
            text.contains("sha256 ab12; /srv/backups/alpha/x.tar.zst.sha256 missing (written back after the restore)"),
            "{text}"
        );
        assert!(!text.contains("DIFFERS"), "{text}");
        p.checksum.sidecar_missing = false;
        assert!(plan(&p).contains("DIFFERS from /srv/backups/alpha/x.tar.zst.sha256"));
    }

    #[test]
    fn plan_and_question_show_the_warnings() {
        let mut p = live_plan();
        p.warnings = vec![
            "/srv/alpha.pre-restore-x holds the data an earlier restore replaced; it is kept"
                .into(),
        ];
        let want = "Warnings:\n  - /srv/alpha.pre-restore-x holds the data an earlier restore replaced; it is kept\n";
        let text = plan(&p);
        assert!(text.ends_with(want), "{text}");
        let text = confirmation(&p, false);
        assert!(text.contains(&format!("{want}If any step fails")), "{text}");
    }

    #[test]
    fn confirmation_names_instance_directory_unit_and_pre_backup() {
        let text = confirmation(&live_plan(), false);
        assert!(
            text.starts_with(
                "Restore backup 20250102-030405-alpha-a1b2c3 into instance alpha (data directory /srv/alpha). This will:\n"
            ),
            "{text}"
        );
        assert!(text.contains("/srv/alpha.pre-restore-<time>"), "{text}");
        assert!(
            text.contains("replace the unit file and nginx site"),
            "{text}"
        );
        assert!(
            text.contains("stop abssctl-alpha.service (active now) and start it again afterwards"),
            "{text}"
        );
        assert!(
            text.contains("first back up the current instance into /srv/backups/alpha"),
            "{text}"
        );

        let mut p = live_plan();
        p.data_only = true;
        p.pre_backup_dir = None;
        p.unit.as_mut().unwrap().running_after = false;
        let text = confirmation(&p, true);
        assert!(text.contains("leave the unit file, nginx site"), "{text}");
        assert!(text.contains("and leave it stopped"), "{text}");
        assert!(
            text.contains("take NO pre-restore backup (--no-pre-backup)"),
            "{text}"
        );
    }

    #[test]
    fn summary_names_pre_backup_unit_nginx_and_warnings() {
        let r: RestoreResult = serde_json::from_value(json!({
            "id": "b1", "instance": "alpha", "mode": "live", "destination": "/srv/alpha",
            "pre_restore_backup": "b2", "restored_at": "2025-01-02T03:04:05Z",
            "checksum": "ab12", "entries": 3, "content_bytes": 2048,
            "assets": ["/etc/systemd/system/abssctl-alpha.service"],
            "unit_running": true, "nginx_reloaded": true, "warnings": ["left /srv/x"]
        }))
        .unwrap();
        let text = restored(&r, Some("abssctl-alpha.service"));
        assert!(
            text.starts_with("Restored backup b1 into /srv/alpha (instance alpha)\n"),
            "{text}"
        );
        for part in [
            "pre-restore backup:  b2\n",
            "unit:                abssctl-alpha.service running\n",
            "nginx:               checked and reloaded\n",
            "content:             2.0 KiB in 3 entries\n",
            "Warnings:\n  - left /srv/x\n",
        ] {
            assert!(text.contains(part), "missing {part:?}:\n{text}");
        }
    }
}
