//! What an operation's events say it is doing: the names of its phases and the
//! level of its messages. Both are strings on the wire (`"archive"`,
//! `"verify:<id>"`, `"warning"`), the same strings abssd has always sent.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::job::JobStep;

/// How much a `message` event matters.
///
/// The set is closed: an unknown level is a protocol change, like a new event
/// kind, and does not deserialize (abssctl skips an event it cannot read and
/// keeps following). A fallback would let a daemon invent levels no client
/// knows how to show.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Level {
    /// A note: what was done, or what was decided on the operator's behalf.
    Info,
    /// Something the operator should look at; operations also list these in
    /// their result and the operations log.
    Warning,
}

/// The phases that carry no data, each with its wire name, in one list: the
/// enum, [`Phase::fixed_name`] and the parser are all made from it, so a name
/// cannot be added to one and forgotten in another.
macro_rules! phases {
    ($($(#[$doc:meta])* $variant:ident = $name:literal,)*) => {
        /// The name of a phase of an operation (`phase` events, and the
        /// `phase` of `progress` events). On the wire a string; see
        /// [`Phase::Other`] for names this build does not know.
        #[derive(Debug, Clone, PartialEq, Eq, Hash)]
        pub enum Phase {
            $($(#[$doc])* $variant,)*
            /// `verify:<id>`: re-hashing (and inspecting) backup `<id>`'s
            /// archive (`backup.verify`, reconcile's `verify`).
            Verify(String),
            /// `verify-deep:<id>`: the same with the deep check of the content.
            VerifyDeep(String),
            /// `adopt:<file name>`: reading an orphaned archive through
            /// (reconcile's `adopt`).
            Adopt(String),
            /// `remove:<id>`: a prune removes backup `<id>` (its index entry
            /// marked removed, its archive and sidecar deleted).
            Remove(String),
            /// `push:<id>`: `backup.push` uploads backup `<id>`'s archive
            /// (byte progress: plain bytes read).
            Push(String),
            /// `<instance>:<step>`: a backup job (`backup.run`) runs one of its
            /// steps (`create`, `prune`, `verify`, `reconcile`) for an instance;
            /// the step's own phases follow it.
            Job(String, JobStep),
            /// A name this build does not know (a newer daemon's), kept as it
            /// came so a client can still show it. Never holds a known name:
            /// parsing gives the variant for those.
            Other(String),
        }

        impl Phase {
            /// The wire name of a phase that carries no data.
            fn fixed_name(&self) -> Option<&'static str> {
                match self {
                    $(Phase::$variant => Some($name),)*
                    Phase::Verify(_)
                    | Phase::VerifyDeep(_)
                    | Phase::Adopt(_)
                    | Phase::Remove(_)
                    | Phase::Push(_)
                    | Phase::Job(..)
                    | Phase::Other(_) => None,
                }
            }

            /// The phase without data named `name`.
            fn from_fixed_name(name: &str) -> Option<Phase> {
                match name {
                    $($name => Some(Phase::$variant),)*
                    _ => None,
                }
            }
        }
    };
}

phases! {
    /// `preflight`: restore checks the archive, the target and the space.
    Preflight = "preflight",
    /// `verify_deep`: the step of a restore's plan that runs the deep check
    /// first (`verify_deep`); while it runs, the phase is [`Phase::VerifyDeep`].
    DeepCheck = "verify_deep",
    /// `lock`: the step of a live restore's plan that takes the instance
    /// lock. Only in plans: waiting shows as `lock_wait` events.
    Lock = "lock",
    /// `scan`: reconcile walks the backups root.
    Scan = "scan",
    /// `pre_backup`: restore backs up the live instance first.
    PreBackup = "pre_backup",
    /// `stop_unit`: the instance's unit is stopped (restore; create in `stop` mode).
    StopUnit = "stop_unit",
    /// `archive`: create streams the archive (byte progress).
    Archive = "archive",
    /// `start_unit`: the instance's unit is started (restore; create in `stop` mode).
    StartUnit = "start_unit",
    /// `extract`: restore unpacks the archive into staging (byte progress).
    Extract = "extract",
    /// `validate`: restore checks the unpacked payload.
    Validate = "validate",
    /// `place`: `restore --dest` moves the data into the destination.
    Place = "place",
    /// `swap`: a live restore moves the live data aside and the restored data in.
    Swap = "swap",
    /// `assets`: restore installs the archived unit file, site and link.
    Assets = "assets",
    /// `daemon_reload`: restore has systemd reload its units.
    DaemonReload = "daemon_reload",
    /// `registry`: restore updates the instance's registry entry.
    Registry = "registry",
    /// `nginx`: restore checks and reloads nginx.
    Nginx = "nginx",
    /// `cleanup`: restore removes what the committed restore replaced.
    Cleanup = "cleanup",
    /// `rollback`: a failed restore undoes its journaled steps.
    Rollback = "rollback",
    /// `index`: the backup index is written.
    Index = "index",
    /// `pull`: a backup's copy is downloaded from a remote (`backup.pull`,
    /// the first step of a restore with `pull`; byte progress).
    Pull = "pull",
}

const VERIFY: &str = "verify:";
const VERIFY_DEEP: &str = "verify-deep:";
const ADOPT: &str = "adopt:";
const REMOVE: &str = "remove:";
const PUSH: &str = "push:";

impl fmt::Display for Phase {
    /// The wire name.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Phase::Verify(id) => write!(f, "{VERIFY}{id}"),
            Phase::VerifyDeep(id) => write!(f, "{VERIFY_DEEP}{id}"),
            Phase::Adopt(name) => write!(f, "{ADOPT}{name}"),
            Phase::Remove(id) => write!(f, "{REMOVE}{id}"),
            Phase::Push(id) => write!(f, "{PUSH}{id}"),
            Phase::Job(instance, step) => write!(f, "{instance}:{}", step.name()),
            Phase::Other(name) => f.write_str(name),
            fixed => f.write_str(fixed.fixed_name().unwrap_or_default()),
        }
    }
}

impl From<&str> for Phase {
    /// Parse a wire name; never fails (unknown names become [`Phase::Other`]).
    fn from(name: &str) -> Phase {
        Phase::from(name.to_owned())
    }
}

impl From<String> for Phase {
    /// Parse a wire name; never fails (unknown names become [`Phase::Other`]).
    fn from(name: String) -> Phase {
        if let Some(phase) = Phase::from_fixed_name(&name) {
            return phase;
        }
        // Before the prefixes: an instance may be named `verify` or `remove`,
        // while no backup id or archive name is a step's name.
        if let Some((instance, step)) = name.rsplit_once(':')
            && let Some(step) = JobStep::named(step)
            && is_instance_name(instance)
        {
            return Phase::Job(instance.to_owned(), step);
        }
        if let Some(id) = name.strip_prefix(VERIFY) {
            return Phase::Verify(id.to_owned());
        }
        if let Some(id) = name.strip_prefix(VERIFY_DEEP) {
            return Phase::VerifyDeep(id.to_owned());
        }
        if let Some(file) = name.strip_prefix(ADOPT) {
            return Phase::Adopt(file.to_owned());
        }
        if let Some(id) = name.strip_prefix(REMOVE) {
            return Phase::Remove(id.to_owned());
        }
        if let Some(id) = name.strip_prefix(PUSH) {
            return Phase::Push(id.to_owned());
        }
        Phase::Other(name)
    }
}

/// An instance name as the registry allows it: `[a-z0-9][a-z0-9-]*`, at
/// most [`crate::limits::NAME`] bytes.
fn is_instance_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && name.len() <= crate::limits::NAME
}

impl Serialize for Phase {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Phase {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Phase, D::Error> {
        String::deserialize(deserializer).map(Phase::from)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;
    use crate::{Event, EventKind};

    /// Every name abssd sends today (docs/API.md), as it goes over the wire:
    /// in events, and as the steps of a restore plan (which adds `verify_deep`
    /// and `lock`).
    const TODAY: &[&str] = &[
        "preflight",
        "verify_deep",
        "lock",
        "scan",
        "pre_backup",
        "stop_unit",
        "archive",
        "start_unit",
        "extract",
        "validate",
        "place",
        "swap",
        "assets",
        "daemon_reload",
        "registry",
        "nginx",
        "cleanup",
        "rollback",
        "index",
        "verify:20240101-000000-alpha-0a1b2c",
        "verify-deep:20240101-000000-alpha-0a1b2c",
        "adopt:alpha-2024.tar.zst",
        "remove:20240101-000000-alpha-0a1b2c",
        "push:20240101-000000-alpha-0a1b2c",
        "alpha:push",
        "alpha:create",
        "alpha-2:prune",
        "verify:verify",
        "remove:reconcile",
    ];

    #[test]
    fn todays_phase_names_are_known_and_come_back_unchanged() {
        for &name in TODAY {
            let phase = Phase::from(name);
            assert!(!matches!(phase, Phase::Other(_)), "{name} is not known");
            assert_eq!(phase.to_string(), name);
            let wire = serde_json::to_value(&phase).unwrap();
            assert_eq!(wire, Value::String(name.to_owned()));
            assert_eq!(serde_json::from_value::<Phase>(wire).unwrap(), phase);
        }
        assert_eq!(Phase::from("stop_unit"), Phase::StopUnit);
        assert_eq!(
            Phase::from("verify-deep:x"),
            Phase::VerifyDeep("x".into()),
            "the longer prefix is not taken for verify:"
        );
        assert_eq!(Phase::from("adopt:a:b"), Phase::Adopt("a:b".into()));
        assert_eq!(
            Phase::from("verify:verify"),
            Phase::Job("verify".into(), JobStep::Verify),
            "an instance named like a prefix runs a job step"
        );
        assert_eq!(
            Phase::from("verify:20240101-000000-verify-0a1b2c"),
            Phase::Verify("20240101-000000-verify-0a1b2c".into())
        );
        assert_eq!(
            Phase::from("Alpha:create"),
            Phase::Other("Alpha:create".into()),
            "not an instance name"
        );
    }

    #[test]
    fn an_unknown_phase_name_is_kept_as_it_came() {
        for name in ["defragment", "verify", "Archive", "", "swap_data"] {
            let phase: Phase = serde_json::from_value(json!(name)).unwrap();
            assert_eq!(phase, Phase::Other(name.to_owned()));
            assert_eq!(serde_json::to_value(&phase).unwrap(), json!(name));
        }
    }

    #[test]
    fn events_carry_typed_phases_and_levels_in_todays_form() {
        let lines = [
            json!({"seq": 3, "ts": "t", "event": "phase", "name": "verify:b1", "total_bytes": 9}),
            json!({"seq": 4, "ts": "t", "event": "progress", "phase": "archive", "done": 1, "total": 2}),
            json!({"seq": 5, "ts": "t", "event": "message", "level": "warning", "text": "w"}),
            json!({"seq": 6, "ts": "t", "event": "message", "level": "info", "text": "i"}),
            json!({"seq": 7, "ts": "t", "event": "phase", "name": "from_the_future", "total_bytes": null}),
        ];
        let events: Vec<Event> = lines
            .iter()
            .map(|l| serde_json::from_value(l.clone()).unwrap())
            .collect();
        assert_eq!(
            events.iter().map(|e| &e.kind).collect::<Vec<_>>(),
            [
                &EventKind::Phase {
                    name: Phase::Verify("b1".into()),
                    total_bytes: Some(9)
                },
                &EventKind::Progress {
                    phase: Phase::Archive,
                    done: 1,
                    total: 2
                },
                &EventKind::Message {
                    level: Level::Warning,
                    text: "w".into()
                },
                &EventKind::Message {
                    level: Level::Info,
                    text: "i".into()
                },
                &EventKind::Phase {
                    name: Phase::Other("from_the_future".into()),
                    total_bytes: None
                },
            ]
        );
        for (event, line) in events.iter().zip(&lines) {
            assert_eq!(&serde_json::to_value(event).unwrap(), line);
        }
    }

    #[test]
    fn levels_are_todays_two_strings_and_nothing_else() {
        assert_eq!(serde_json::to_value(Level::Info).unwrap(), json!("info"));
        assert_eq!(
            serde_json::to_value(Level::Warning).unwrap(),
            json!("warning")
        );
        assert_eq!(
            serde_json::from_value::<Level>(json!("warning")).unwrap(),
            Level::Warning
        );
        assert!(serde_json::from_value::<Level>(json!("error")).is_err());
        assert!(serde_json::from_value::<Level>(json!("Warning")).is_err());
    }
}
