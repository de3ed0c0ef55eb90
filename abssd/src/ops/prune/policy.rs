//! Which backups a retention policy keeps, and why: a pure function of the
//! policy, the index entries, the clock and the time zone ([`plan`]), with no
//! I/O, so a dry run prints exactly what a prune would do and tests call it
//! with an injected clock.
//!
//! The rules, per instance (restic groups by host and paths; an instance is
//! our group):
//! * Counting rules are restic's `forget`: walking the instance's backups
//!   newest first, `keep_last` keeps the newest N; `keep_hourly` … `keep_yearly`
//!   keep the newest backup of each calendar bucket (wall-clock hour, day, ISO
//!   week from Monday, month, year in the given time zone) until N buckets are
//!   kept; while a rule has buckets left when the walk ends, it also keeps the
//!   oldest backup, as restic does, so a young history is kept whole.
//! * Only backups that may be restorable take a counting rule's slot: status
//!   `available` (or its old spelling `present`) or `unknown` (never checked).
//!   A `missing`, `corrupt` or `error` backup takes none: the Python tool let
//!   them count towards `--keep`, so a run could keep three dead entries and
//!   delete the one archive that restores.
//! * `keep_within` keeps every backup (of any status) made within that span
//!   before the instance's newest backup that is not in the future — restic's
//!   anchor, not the clock: an instance whose backups stopped (a dormant
//!   instance, a broken timer) keeps its last span of history however late
//!   prune runs, and the plan does not change while no backup is added.
//! * `older_than_days` is the Python tool's `--older-than`, made safe: it keeps
//!   every backup (of any status) made at or after `now - DAYS × 24 h`,
//!   measured from the clock as the Python tool measures it. Unlike the
//!   Python tool's, it never removes a backup another rule keeps.
//! * The rules are ORed: a backup is removed only when no rule keeps it.
//!
//! Safety that no policy overrides ([`Reason::is_safety`]): per instance the
//! newest `available` backup whose checksum was last verified good is kept,
//! and when none is, the newest backup of any status and the newest that may
//! restore (`available` or never checked); protected backups; the
//! backups a running operation reads; pre-restore backups younger than the
//! minimum age; entries whose status this project does not know (a newer tool
//! may mean something by it), whose creation time is unreadable, or whose id
//! another entry also has (a removal by id could hit the wrong one).
//!
//! A backup dated after the clock (the clock was set back, or another host's
//! clock is ahead) cannot be placed in time: it is kept for as long as it is
//! in the future, and it neither takes a counting rule's slot nor either
//! "newest" safety slot, so a few such entries never crowd out the backups
//! that were really made last.
//!
//! Entries with status `removed` are gone already: they are no candidates and
//! get no decision. Equal creation times are ordered by id (the larger id is
//! the newer), so a plan never depends on the order of the index.

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use abssd_proto::backup::status;
use jiff::civil::DateTime;
use jiff::tz::TimeZone;
use jiff::{SignedDuration, Span, Timestamp};
use serde::Serialize;

use crate::error::{Error, Result};

/// The retention rules; a rule left `None` (or zero) keeps nothing.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    /// Keep the newest N restorable backups (`--keep-last`, the Python `--keep`).
    pub keep_last: Option<u32>,
    /// Keep the newest restorable backup of each of the newest N hours that have one.
    pub keep_hourly: Option<u32>,
    /// … of each of the newest N days.
    pub keep_daily: Option<u32>,
    /// … of each of the newest N ISO weeks (Monday to Sunday).
    pub keep_weekly: Option<u32>,
    /// … of each of the newest N months.
    pub keep_monthly: Option<u32>,
    /// … of each of the newest N years.
    pub keep_yearly: Option<u32>,
    /// Keep every backup made within this span before the instance's newest
    /// (calendar units count in the time zone: `1mo` before 31 March is 29
    /// or 28 February, as restic's `AddDate`, minus jiff's overflow).
    pub keep_within: Option<Span>,
    /// Keep every backup newer than this many days (the Python `--older-than`).
    pub older_than_days: Option<u32>,
}

impl Policy {
    /// No rule that can keep anything: such a policy would remove everything
    /// but what the safety rules keep, which is never what was meant.
    pub fn is_empty(&self) -> bool {
        let counts = [
            self.keep_last,
            self.keep_hourly,
            self.keep_daily,
            self.keep_weekly,
            self.keep_monthly,
            self.keep_yearly,
            self.older_than_days,
        ];
        counts.iter().all(|c| c.unwrap_or(0) == 0) && self.keep_within.is_none_or(|s| s.is_zero())
    }
}

/// Read a `--keep-within` duration in restic's notation: whole numbers, each
/// followed by `y` (years), `m` (months, as restic: not minutes), `d` (days)
/// or `h` (hours), each unit at most once, e.g. `2y5m7d3h` or `30d`.
/// restic's notation rather than jiff's, where `5m` is five minutes: an
/// operator who knows restic must not keep a thousandth of what was meant.
pub fn parse_keep_within(text: &str) -> Result<Span> {
    crate::config::restic_span(text).ok_or_else(|| {
        Error::validation(format!(
            "--keep-within {:?} is not a duration like 7d, 2y5m or 36h \
             (units y, m = months, d, h; each once)",
            crate::error::shown(text)
        ))
    })
}

/// What [`plan`] needs to know of one index entry; the caller derives it from
/// the index and the operations running now.
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    /// The backup id.
    pub id: String,
    /// Its instance: the group the rules count in.
    pub instance: String,
    /// When it was made; `None` when the entry's time is unreadable (kept).
    pub created_at: Option<Timestamp>,
    /// The index status (see [`abssd_proto::backup::status`]).
    pub status: String,
    /// Its checksum was verified and matched the last time it was checked.
    pub verified_good: bool,
    /// Marked protected by an operator.
    pub protected: bool,
    /// Made by a restore (label `pre-restore` or the Python tool's
    /// `pre-backup-restore`): the way back from that restore.
    pub pre_restore: bool,
    /// A running operation (restore, verify) reads it.
    pub in_use: bool,
    /// Its archive's size, what removing it frees.
    pub size_bytes: u64,
}

/// A counting rule with calendar buckets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Period {
    /// `keep_hourly`.
    Hourly,
    /// `keep_daily`.
    Daily,
    /// `keep_weekly`.
    Weekly,
    /// `keep_monthly`.
    Monthly,
    /// `keep_yearly`.
    Yearly,
}

impl fmt::Display for Period {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Period::Hourly => "hourly",
            Period::Daily => "daily",
            Period::Weekly => "weekly",
            Period::Monthly => "monthly",
            Period::Yearly => "yearly",
        })
    }
}

/// Why a backup is kept. In `--json` an object tagged by `rule`
/// (`{"rule":"bucket","period":"daily","bucket":"2019-11-17"}`); [`fmt::Display`] for people.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "rule", rename_all = "snake_case")]
pub enum Reason {
    /// `keep_last`: the `rank`-th newest restorable backup (1 is the newest).
    Last {
        /// 1-based position among the instance's restorable backups.
        rank: u32,
    },
    /// The newest of its calendar bucket under a counting rule.
    Bucket {
        /// Which rule.
        period: Period,
        /// The bucket, in the time zone: `2024-10-27T02`, `2024-10-27`,
        /// `2024-W43`, `2024-10`, `2024`.
        bucket: String,
    },
    /// The oldest restorable backup, kept because `period`'s rule still had
    /// buckets left (restic's "oldest" keep).
    Oldest {
        /// Which rule.
        period: Period,
    },
    /// `keep_within`: made after `since`, the instance's newest backup less
    /// the span.
    Within {
        /// The start of the window (exclusive).
        since: Timestamp,
    },
    /// `older_than_days`: made at or after `since`, the clock less the days.
    NewerThan {
        /// The start of the window (inclusive).
        since: Timestamp,
    },
    /// Safety: the instance's newest available backup last verified good.
    NewestVerified,
    /// Safety: the instance's newest backup, none being verified good.
    NewestOfInstance,
    /// Safety: the instance's newest backup that may restore (`available`
    /// or never checked), none being verified good and the newest of all
    /// being dead.
    NewestRestorable,
    /// Safety: protected by an operator.
    Protected,
    /// Safety: a running operation reads it.
    InUse,
    /// Safety: a pre-restore backup younger than the minimum age.
    PreRestoreMinAge {
        /// When it may go.
        until: Timestamp,
    },
    /// Safety: a status this project does not know.
    UnknownStatus {
        /// The status, as the index has it.
        status: String,
    },
    /// Safety: the entry's creation time is unreadable.
    UnknownTime,
    /// Safety: made after the clock's now (the clock or the entry is wrong).
    Future,
    /// Safety: another index entry has the same id.
    DuplicateId,
}

impl Reason {
    /// A rule no policy can override, rather than one of the policy's.
    pub fn is_safety(&self) -> bool {
        !matches!(
            self,
            Reason::Last { .. }
                | Reason::Bucket { .. }
                | Reason::Oldest { .. }
                | Reason::Within { .. }
                | Reason::NewerThan { .. }
        )
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::Last { rank } => write!(f, "last #{rank}"),
            Reason::Bucket { period, bucket } => write!(f, "{period} {bucket}"),
            Reason::Oldest { period } => write!(f, "oldest {period}"),
            Reason::Within { since } => write!(f, "within (after {since})"),
            Reason::NewerThan { since } => write!(f, "newer than {since}"),
            Reason::NewestVerified => f.write_str("newest verified"),
            Reason::NewestOfInstance => f.write_str("newest (none verified)"),
            Reason::NewestRestorable => f.write_str("newest restorable (none verified)"),
            Reason::Protected => f.write_str("protected"),
            Reason::InUse => f.write_str("in use"),
            Reason::PreRestoreMinAge { until } => write!(f, "pre-restore until {until}"),
            Reason::UnknownStatus { status } => {
                write!(f, "unknown status {:?}", crate::error::shown(status))
            }
            Reason::UnknownTime => f.write_str("unreadable time"),
            Reason::Future => f.write_str("dated in the future"),
            Reason::DuplicateId => f.write_str("duplicate id"),
        }
    }
}

/// The verdict on one candidate.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Decision {
    /// The backup id.
    pub id: String,
    /// Its instance.
    pub instance: String,
    /// When it was made, when known.
    pub created_at: Option<Timestamp>,
    /// Its index status.
    pub status: String,
    /// Kept (`true`) or to be removed.
    pub keep: bool,
    /// Every rule that keeps it; empty exactly when it is to be removed.
    pub reasons: Vec<Reason>,
    /// What removing it frees.
    pub size_bytes: u64,
}

/// What a removal of the decisions marked remove frees, in bytes.
pub fn freed_bytes(decisions: &[Decision]) -> u64 {
    decisions
        .iter()
        .filter(|d| !d.keep)
        .map(|d| d.size_bytes)
        .sum()
}

/// Decide, for every candidate whose status is not `removed`, keep or remove
/// and why. Decisions come grouped by instance (names in order), newest first
/// within one. `now` is the clock (for `older_than_days`, pre-restore ages and
/// what counts as the future), `tz` the zone of the calendar buckets and of
/// `keep_within`'s calendar units.
///
/// Fails on an empty policy, a negative `keep_within` or minimum age, and
/// arithmetic past jiff's range.
pub fn plan(
    policy: &Policy,
    candidates: &[Candidate],
    now: Timestamp,
    tz: &TimeZone,
    pre_restore_min_age: SignedDuration,
) -> Result<Vec<Decision>> {
    if policy.is_empty() {
        return Err(Error::validation(
            "the retention policy keeps nothing: give at least one of --keep-last, \
             --keep-hourly, --keep-daily, --keep-weekly, --keep-monthly, --keep-yearly, \
             --keep-within or --older-than with a value above zero (or set backups.retention)",
        ));
    }
    if policy.keep_within.is_some_and(|s| s.is_negative()) {
        return Err(Error::validation("--keep-within must not be negative"));
    }
    if pre_restore_min_age.is_negative() {
        return Err(Error::validation(
            "backups.pre_restore_min_age must not be negative",
        ));
    }
    let newer_than = match policy.older_than_days {
        Some(days) if days > 0 => {
            let back = SignedDuration::from_hours(i64::from(days) * 24);
            let since = now.checked_sub(back).map_err(|e| {
                Error::validation(format!("--older-than {days} reaches too far back: {e}"))
            })?;
            // In whole seconds (down: it keeps, never removes, the
            // fraction), as people read it and backups are dated.
            Some(Timestamp::from_second(since.as_second()).unwrap_or(since))
        }
        _ => None,
    };

    let mut id_count: HashMap<&str, usize> = HashMap::new();
    for c in candidates {
        *id_count.entry(c.id.as_str()).or_default() += 1;
    }
    let mut groups: BTreeMap<&str, Vec<&Candidate>> = BTreeMap::new();
    for c in candidates.iter().filter(|c| c.status != status::REMOVED) {
        groups.entry(c.instance.as_str()).or_default().push(c);
    }

    let rules = Rules {
        policy,
        now,
        tz,
        pre_restore_min_age,
        newer_than,
        id_count: &id_count,
    };
    let mut out = Vec::with_capacity(candidates.len());
    for (_, mut group) in groups {
        // Newest first; an unreadable time sorts last (it is kept anyway).
        group.sort_by(|a, b| (b.created_at, &b.id).cmp(&(a.created_at, &a.id)));
        out.extend(rules.instance(&group)?);
    }
    Ok(out)
}

/// Whether a backup of this status may restore, and so may take a counting
/// rule's slot.
fn takes_slot(status: &str) -> bool {
    matches!(
        status,
        status::AVAILABLE | status::LEGACY_PRESENT | status::UNKNOWN
    )
}

/// A status this project knows the meaning of.
fn known_status(status: &str) -> bool {
    takes_slot(status) || matches!(status, status::MISSING | status::CORRUPT | status::ERROR)
}

/// What [`plan`] applies to each instance.
struct Rules<'a> {
    policy: &'a Policy,
    now: Timestamp,
    tz: &'a TimeZone,
    pre_restore_min_age: SignedDuration,
    newer_than: Option<Timestamp>,
    id_count: &'a HashMap<&'a str, usize>,
}

impl Rules<'_> {
    /// Decisions for one instance's backups, given newest first.
    fn instance(&self, group: &[&Candidate]) -> Result<Vec<Decision>> {
        let mut reasons: Vec<Vec<Reason>> = vec![Vec::new(); group.len()];
        self.counting(group, &mut reasons);
        self.windows(group, &mut reasons)?;
        self.safety(group, &mut reasons)?;
        Ok(group
            .iter()
            .zip(reasons)
            .map(|(c, reasons)| Decision {
                id: c.id.clone(),
                instance: c.instance.clone(),
                created_at: c.created_at,
                status: c.status.clone(),
                keep: !reasons.is_empty(),
                reasons,
                size_bytes: c.size_bytes,
            })
            .collect())
    }

    /// `keep_last` and the calendar rules, over the restorable backups.
    fn counting(&self, group: &[&Candidate], reasons: &mut [Vec<Reason>]) {
        let slots: Vec<(usize, Timestamp)> = group
            .iter()
            .enumerate()
            .filter(|(_, c)| takes_slot(&c.status) && known_id(self.id_count, c))
            .filter_map(|(i, c)| Some((i, c.created_at?)))
            .filter(|&(_, t)| t <= self.now)
            .collect();
        if let Some(n) = self.policy.keep_last {
            for (rank, &(i, _)) in slots.iter().take(n as usize).enumerate() {
                let rank = u32::try_from(rank + 1).unwrap_or(u32::MAX);
                reasons[i].push(Reason::Last { rank });
            }
        }
        let periods = [
            (Period::Hourly, self.policy.keep_hourly),
            (Period::Daily, self.policy.keep_daily),
            (Period::Weekly, self.policy.keep_weekly),
            (Period::Monthly, self.policy.keep_monthly),
            (Period::Yearly, self.policy.keep_yearly),
        ];
        if periods.iter().all(|(_, n)| n.unwrap_or(0) == 0) {
            return;
        }
        let local: Vec<DateTime> = slots.iter().map(|&(_, t)| self.tz.to_datetime(t)).collect();
        for (period, n) in periods {
            let mut left = n.unwrap_or(0);
            let mut last = None;
            for (k, &(i, _)) in slots.iter().enumerate() {
                if left == 0 {
                    break;
                }
                let key = bucket_key(period, local[k]);
                if last != Some(key) {
                    last = Some(key);
                    left -= 1;
                    let bucket = bucket_label(period, local[k]);
                    reasons[i].push(Reason::Bucket { period, bucket });
                } else if k + 1 == slots.len() {
                    reasons[i].push(Reason::Oldest { period });
                }
            }
        }
    }

    /// `keep_within` and `older_than_days`, over backups of any status.
    fn windows(&self, group: &[&Candidate], reasons: &mut [Vec<Reason>]) -> Result<()> {
        if let Some(span) = self.policy.keep_within.filter(|s| !s.is_zero()) {
            // restic's anchor: the newest backup that is not in the future
            // (with every backup in the future, the clock: all are within).
            let anchor = group
                .iter()
                .filter_map(|c| c.created_at)
                .find(|&t| t <= self.now)
                .unwrap_or(self.now);
            let since = anchor
                .to_zoned_datetime(self.tz.clone())
                .checked_sub(span)
                .map_err(|e| {
                    Error::validation(format!("--keep-within {span} reaches too far back: {e}"))
                })?
                .timestamp();
            for (i, c) in group.iter().enumerate() {
                if c.created_at.is_some_and(|t| t > since) {
                    reasons[i].push(Reason::Within { since });
                }
            }
        }
        if let Some(since) = self.newer_than {
            for (i, c) in group.iter().enumerate() {
                if c.created_at.is_some_and(|t| t >= since) {
                    reasons[i].push(Reason::NewerThan { since });
                }
            }
        }
        Ok(())
    }

    /// What no policy overrides.
    fn safety(&self, group: &[&Candidate], reasons: &mut [Vec<Reason>]) -> Result<()> {
        let placed = |c: &Candidate| c.created_at.is_some_and(|t| t <= self.now);
        let newest_verified = group.iter().position(|c| {
            c.verified_good
                && matches!(
                    c.status.as_str(),
                    status::AVAILABLE | status::LEGACY_PRESENT
                )
                && placed(c)
        });
        match newest_verified {
            Some(i) => reasons[i].push(Reason::NewestVerified),
            None => {
                let newest = group.iter().position(|c| placed(c));
                if let Some(i) = newest {
                    reasons[i].push(Reason::NewestOfInstance);
                }
                // The newest of any status may be dead (missing, corrupt):
                // the newest that may restore stays too, so a window rule
                // anchored on a dead entry never leaves nothing to restore.
                let restorable = group
                    .iter()
                    .position(|c| placed(c) && takes_slot(&c.status));
                if let Some(i) = restorable.filter(|&i| Some(i) != newest) {
                    reasons[i].push(Reason::NewestRestorable);
                }
            }
        }
        for (i, c) in group.iter().enumerate() {
            let r = &mut reasons[i];
            if c.protected {
                r.push(Reason::Protected);
            }
            if c.in_use {
                r.push(Reason::InUse);
            }
            if let (true, Some(t)) = (c.pre_restore, c.created_at) {
                // Past jiff's range (an entry dated near year 9999, or a
                // huge minimum age) is young for ever: kept, and the rest of
                // the plan is not refused for one entry's date.
                let until = t
                    .checked_add(self.pre_restore_min_age)
                    .unwrap_or(Timestamp::MAX);
                if until > self.now {
                    r.push(Reason::PreRestoreMinAge { until });
                }
            }
            if !known_status(&c.status) {
                r.push(Reason::UnknownStatus {
                    status: c.status.clone(),
                });
            }
            match c.created_at {
                None => r.push(Reason::UnknownTime),
                Some(t) if t > self.now => r.push(Reason::Future),
                Some(_) => {}
            }
            if !known_id(self.id_count, c) {
                r.push(Reason::DuplicateId);
            }
        }
        Ok(())
    }
}

/// The candidate's id belongs to it alone among the entries passed.
fn known_id(id_count: &HashMap<&str, usize>, c: &Candidate) -> bool {
    id_count.get(c.id.as_str()).copied() == Some(1)
}

/// A number that differs between buckets of `period` and is equal within one
/// (restic's `ymdh`, `ymd`, `yw`, `ym`, `y`).
fn bucket_key(period: Period, t: DateTime) -> i64 {
    let (y, m, d, h) = (
        i64::from(t.year()),
        i64::from(t.month()),
        i64::from(t.day()),
        i64::from(t.hour()),
    );
    match period {
        Period::Hourly => ((y * 100 + m) * 100 + d) * 100 + h,
        Period::Daily => (y * 100 + m) * 100 + d,
        Period::Weekly => {
            let w = t.date().iso_week_date();
            i64::from(w.year()) * 100 + i64::from(w.week())
        }
        Period::Monthly => y * 100 + m,
        Period::Yearly => y,
    }
}

/// The bucket as people read it.
fn bucket_label(period: Period, t: DateTime) -> String {
    match period {
        Period::Hourly => format!(
            "{:04}-{:02}-{:02}T{:02}",
            t.year(),
            t.month(),
            t.day(),
            t.hour()
        ),
        Period::Daily => format!("{:04}-{:02}-{:02}", t.year(), t.month(), t.day()),
        Period::Weekly => {
            let w = t.date().iso_week_date();
            format!("{:04}-W{:02}", w.year(), w.week())
        }
        Period::Monthly => format!("{:04}-{:02}", t.year(), t.month()),
        Period::Yearly => format!("{:04}", t.year()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::ToSpan;

    const NOW: &str = "2026-01-01T00:00:00Z";

    fn t(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn at(id: &str, when: &str) -> Candidate {
        Candidate {
            id: id.into(),
            instance: "main".into(),
            created_at: Some(t(when)),
            status: status::AVAILABLE.into(),
            verified_good: false,
            protected: false,
            pre_restore: false,
            in_use: false,
            size_bytes: 10,
        }
    }

    fn berlin() -> TimeZone {
        TimeZone::get("Europe/Berlin").expect("tzdata: Europe/Berlin")
    }

    fn run_in(policy: &Policy, cands: &[Candidate], tz: &TimeZone) -> Vec<Decision> {
        plan(
            policy,
            cands,
            t(NOW),
            tz,
            SignedDuration::from_hours(7 * 24),
        )
        .unwrap()
    }

    fn run(policy: &Policy, cands: &[Candidate]) -> Vec<Decision> {
        run_in(policy, cands, &TimeZone::UTC)
    }

    /// The ids kept, newest first.
    fn kept(decisions: &[Decision]) -> Vec<&str> {
        decisions
            .iter()
            .filter(|d| d.keep)
            .map(|d| d.id.as_str())
            .collect()
    }

    fn reasons<'a>(decisions: &'a [Decision], id: &str) -> &'a [Reason] {
        &decisions.iter().find(|d| d.id == id).unwrap().reasons
    }

    fn daily(n: u32) -> Policy {
        Policy {
            keep_daily: Some(n),
            ..Policy::default()
        }
    }

    // --- restic's documented examples (doc/060_forget.rst) ---

    /// "one backup every Sunday for 12 weeks", `--keep-daily 4`: the four
    /// newest stay, the other eight go.
    #[test]
    fn restic_twelve_sundays_keep_daily_4() {
        let snaps = [
            ("0a1f9759", "2019-09-01"),
            ("46cfe4d5", "2019-09-08"),
            ("f6b1f037", "2019-09-15"),
            ("eb430a5d", "2019-09-22"),
            ("8cf1cb9a", "2019-09-29"),
            ("5d33b116", "2019-10-06"),
            ("b9553125", "2019-10-13"),
            ("e1a7b58b", "2019-10-20"),
            ("8f8018c0", "2019-10-27"),
            ("59403279", "2019-11-03"),
            ("dfee9fb4", "2019-11-10"),
            ("e1ae2f40", "2019-11-17"),
        ];
        let cands: Vec<_> = snaps
            .iter()
            .map(|(id, day)| Candidate {
                verified_good: true,
                ..at(id, &format!("{day}T11:00:00Z"))
            })
            .collect();
        for tz in [TimeZone::UTC, berlin()] {
            let d = run_in(&daily(4), &cands, &tz);
            assert_eq!(
                kept(&d),
                ["e1ae2f40", "dfee9fb4", "59403279", "8f8018c0"],
                "{tz:?}"
            );
            assert_eq!(d.len(), 12);
            assert_eq!(
                reasons(&d, "59403279"),
                [Reason::Bucket {
                    period: Period::Daily,
                    bucket: "2019-11-03".into()
                }]
            );
            assert_eq!(
                reasons(&d, "e1ae2f40"),
                [
                    Reason::Bucket {
                        period: Period::Daily,
                        bucket: "2019-11-17".into()
                    },
                    Reason::NewestVerified
                ]
            );
        }
    }

    /// `forget --keep-last 1` on two snapshots keeps the newer.
    #[test]
    fn restic_keep_last_1() {
        let cands = [
            at("8c02b94b", "2017-02-21T10:48:33Z"),
            at("4bba301e", "2017-02-21T10:49:18Z"),
        ];
        let policy = Policy {
            keep_last: Some(1),
            ..Policy::default()
        };
        let d = run(&policy, &cands);
        assert_eq!(kept(&d), ["4bba301e"]);
        assert_eq!(
            reasons(&d, "4bba301e"),
            [Reason::Last { rank: 1 }, Reason::NewestOfInstance]
        );
    }

    /// "one backup every day for 100 years", `--keep-daily 7 --keep-weekly 5
    /// --keep-monthly 12 --keep-yearly 75`: 7 dailies, 4 more weeklies (the
    /// dailies hold one), the monthlies and yearlies not already kept.
    /// Ending on a Sunday, so the seven dailies are one ISO week.
    #[test]
    fn restic_hundred_years_of_dailies() {
        let first = jiff::civil::date(1926, 1, 1);
        let last = jiff::civil::date(2025, 12, 28);
        assert_eq!(last.weekday(), jiff::civil::Weekday::Sunday);
        let mut cands = Vec::new();
        let mut day = first;
        while day <= last {
            let when = day.at(12, 0, 0, 0).in_tz("UTC").unwrap().timestamp();
            cands.push(Candidate {
                created_at: Some(when),
                ..at(&day.to_string(), NOW)
            });
            day = day.tomorrow().unwrap();
        }
        let policy = Policy {
            keep_daily: Some(7),
            keep_weekly: Some(5),
            keep_monthly: Some(12),
            keep_yearly: Some(75),
            ..Policy::default()
        };
        let d = run(&policy, &cands);
        let mut expected: Vec<String> = (22..=28).map(|d| format!("2025-12-{d}")).collect();
        expected.extend(["2025-12-21", "2025-12-14", "2025-12-07", "2025-11-30"].map(String::from));
        // Month ends of 2025 not yet kept: October back to January.
        for m in (1..=10).rev() {
            let end = jiff::civil::date(2025, m, 1).last_of_month();
            expected.push(end.to_string());
        }
        expected.extend((1951..=2024).rev().map(|y| format!("{y}-12-31")));
        let mut got: Vec<&str> = kept(&d);
        got.sort_unstable();
        expected.sort_unstable();
        assert_eq!(got, expected);
        assert_eq!(got.len(), 7 + 4 + 10 + 74);
        let count = |p: Period| {
            d.iter()
                .flat_map(|d| &d.reasons)
                .filter(|r| matches!(r, Reason::Bucket { period, .. } if *period == p))
                .count()
        };
        assert_eq!(
            [
                Period::Daily,
                Period::Weekly,
                Period::Monthly,
                Period::Yearly
            ]
            .map(count),
            [7, 5, 12, 75]
        );
    }

    /// The append-only warning: garbage backups slightly newer than the real
    /// ones within each of the last three weeks make `--keep-weekly 3` drop
    /// the real ones; `--keep-within 21d` keeps both. Here, unlike restic, the
    /// newest verified real backup survives either way.
    #[test]
    fn restic_garbage_backups_and_keep_within() {
        let mut cands = Vec::new();
        for (i, day) in ["2025-12-08", "2025-12-15", "2025-12-22"]
            .iter()
            .enumerate()
        {
            cands.push(Candidate {
                verified_good: true,
                ..at(&format!("real{i}"), &format!("{day}T10:00:00Z"))
            });
            cands.push(at(&format!("junk{i}"), &format!("{day}T10:05:00Z")));
        }
        let weekly = Policy {
            keep_weekly: Some(3),
            ..Policy::default()
        };
        let d = run(&weekly, &cands);
        assert_eq!(kept(&d), ["junk2", "real2", "junk1", "junk0"]);
        assert_eq!(reasons(&d, "real2"), [Reason::NewestVerified]);
        let within = Policy {
            keep_within: Some(21.days()),
            ..Policy::default()
        };
        assert_eq!(kept(&run(&within, &cands)).len(), 6);
    }

    // --- counting rules ---

    /// restic keeps the oldest backup too while a rule has buckets left.
    #[test]
    fn oldest_is_kept_while_buckets_are_left() {
        let cands = [
            at("a", "2025-12-30T08:00:00Z"),
            at("b", "2025-12-30T09:00:00Z"),
            at("c", "2025-12-31T09:00:00Z"),
        ];
        let d = run(&daily(5), &cands);
        assert_eq!(kept(&d), ["c", "b", "a"]);
        assert_eq!(
            reasons(&d, "a"),
            [Reason::Oldest {
                period: Period::Daily
            }]
        );
        // With the buckets used up, the oldest goes.
        assert_eq!(kept(&run(&daily(2), &cands)), ["c", "b"]);
    }

    /// A backup that cannot restore takes no slot (the Python tool's bug):
    /// `--keep-last 2` keeps the two newest restorable ones.
    #[test]
    fn unrestorable_backups_take_no_slot() {
        let cands = [
            Candidate {
                verified_good: true,
                ..at("old", "2025-12-01T00:00:00Z")
            },
            at("unchecked", "2025-12-02T00:00:00Z"),
            Candidate {
                status: status::ERROR.into(),
                ..at("err", "2025-12-03T00:00:00Z")
            },
            Candidate {
                status: status::CORRUPT.into(),
                ..at("bad", "2025-12-04T00:00:00Z")
            },
            Candidate {
                status: status::MISSING.into(),
                ..at("gone", "2025-12-05T00:00:00Z")
            },
            Candidate {
                status: status::REMOVED.into(),
                ..at("removed", "2025-12-06T00:00:00Z")
            },
        ];
        let policy = Policy {
            keep_last: Some(2),
            ..Policy::default()
        };
        let d = run(&policy, &cands);
        assert_eq!(kept(&d), ["unchecked", "old"]);
        assert_eq!(reasons(&d, "unchecked"), [Reason::Last { rank: 1 }]);
        // `removed` entries get no decision at all.
        assert_eq!(
            d.iter().map(|d| d.id.as_str()).collect::<Vec<_>>(),
            ["gone", "bad", "err", "unchecked", "old"]
        );
        assert_eq!(freed_bytes(&d), 30);
    }

    /// Each instance is counted on its own.
    #[test]
    fn instances_are_counted_apart() {
        let mut cands = Vec::new();
        for inst in ["b", "a"] {
            for day in 1..=3 {
                cands.push(Candidate {
                    instance: inst.into(),
                    ..at(
                        &format!("{inst}{day}"),
                        &format!("2025-12-0{day}T00:00:00Z"),
                    )
                });
            }
        }
        let policy = Policy {
            keep_last: Some(1),
            ..Policy::default()
        };
        let d = run(&policy, &cands);
        assert_eq!(kept(&d), ["a3", "b3"]);
        assert_eq!(d[0].instance, "a");
        assert_eq!(d[3].instance, "b");
    }

    /// Equal times are ordered by id, whatever the index order.
    #[test]
    fn equal_times_order_by_id() {
        let policy = Policy {
            keep_last: Some(1),
            ..Policy::default()
        };
        let one = [at("x1", NOW), at("x2", NOW)];
        let other = [at("x2", NOW), at("x1", NOW)];
        assert_eq!(kept(&run(&policy, &one)), ["x2"]);
        assert_eq!(run(&policy, &one), run(&policy, &other));
    }

    // --- time windows ---

    /// `keep_within` counts back from the newest backup, not from the clock:
    /// a dormant instance keeps its last week; `older_than_days` counts from
    /// the clock and keeps nothing of it (but the newest).
    #[test]
    fn keep_within_counts_from_the_newest_backup() {
        let cands = [
            at("d1", "2025-10-01T00:00:00Z"),
            at("d2", "2025-10-20T00:00:00Z"),
            at("d3", "2025-10-25T00:00:00Z"),
            at("d4", "2025-10-26T00:00:00Z"),
        ];
        let within = Policy {
            keep_within: Some(7.days()),
            ..Policy::default()
        };
        let d = run(&within, &cands);
        assert_eq!(kept(&d), ["d4", "d3", "d2"]);
        let since = t("2025-10-19T00:00:00Z");
        assert_eq!(reasons(&d, "d2"), [Reason::Within { since }]);
        let older = Policy {
            older_than_days: Some(7),
            ..Policy::default()
        };
        let d = run(&older, &cands);
        assert_eq!(kept(&d), ["d4"]);
        assert_eq!(reasons(&d, "d4"), [Reason::NewestOfInstance]);
    }

    /// A backup exactly `keep_within` before the newest is outside (restic's
    /// "after"); one exactly `older_than_days` old is kept (the Python tool
    /// removes only what is strictly older).
    #[test]
    fn window_edges() {
        let cands = [at("edge", "2025-12-25T00:00:00Z"), at("new", NOW)];
        let within = Policy {
            keep_within: Some(7.days()),
            ..Policy::default()
        };
        assert_eq!(kept(&run(&within, &cands)), ["new"]);
        let older = Policy {
            older_than_days: Some(7),
            ..Policy::default()
        };
        let d = run(&older, &cands);
        assert_eq!(kept(&d), ["new", "edge"]);
        let since = t("2025-12-25T00:00:00Z");
        assert_eq!(reasons(&d, "edge"), [Reason::NewerThan { since }]);
    }

    /// Backups from the future neither anchor `keep_within` nor get removed
    /// by it.
    #[test]
    fn future_backups_do_not_anchor_keep_within() {
        let cands = [
            at("past", "2025-12-20T00:00:00Z"),
            at("older", "2025-12-01T00:00:00Z"),
            at("future", "2027-01-01T00:00:00Z"),
        ];
        let within = Policy {
            keep_within: Some(7.days()),
            ..Policy::default()
        };
        assert_eq!(kept(&run(&within, &cands)), ["future", "past"]);
        let all_future = [
            at("f1", "2027-01-01T00:00:00Z"),
            at("f2", "2027-02-01T00:00:00Z"),
        ];
        assert_eq!(kept(&run(&within, &all_future)), ["f2", "f1"]);
    }

    /// A backup dated after the clock is kept while it is, and takes no
    /// slot: `keep_last 1` and the newest-verified slot still go to the
    /// backups really made last.
    #[test]
    fn future_backups_are_kept_and_take_no_slot() {
        let mut verified_future = at("future", "2027-01-01T00:00:00Z");
        verified_future.verified_good = true;
        let mut verified_past = at("verified", "2025-11-01T00:00:00Z");
        verified_past.verified_good = true;
        let cands = [
            verified_future,
            at("newest", "2025-12-20T00:00:00Z"),
            verified_past,
            at("old", "2025-10-01T00:00:00Z"),
        ];
        let last = Policy {
            keep_last: Some(1),
            keep_daily: Some(1),
            ..Policy::default()
        };
        let d = run(&last, &cands);
        assert_eq!(kept(&d), ["future", "newest", "verified"]);
        assert_eq!(reasons(&d, "future"), [Reason::Future]);
        assert_eq!(
            reasons(&d, "newest"),
            [
                Reason::Last { rank: 1 },
                Reason::Bucket {
                    period: Period::Daily,
                    bucket: "2025-12-20".into()
                }
            ]
        );
        assert_eq!(reasons(&d, "verified"), [Reason::NewestVerified]);
        // Once the clock has passed it, it is an ordinary backup.
        let later = plan(
            &last,
            &cands,
            t("2027-06-01T00:00:00Z"),
            &TimeZone::UTC,
            SignedDuration::ZERO,
        )
        .unwrap();
        assert_eq!(kept(&later), ["future"]);
    }

    // --- time zones ---

    /// Fall back in Berlin (27 Oct 2024, 03:00 CEST → 02:00 CET): 00:30Z and
    /// 01:30Z are both 02:30 on the wall clock, one hourly bucket, as in
    /// restic; in UTC they are two.
    #[test]
    fn hourly_buckets_follow_the_wall_clock_through_fall_back() {
        let cands = [
            at("before", "2024-10-26T12:00:00Z"),
            at("cest", "2024-10-27T00:30:00Z"),
            at("cet", "2024-10-27T01:30:00Z"),
            at("after", "2024-10-27T02:30:00Z"),
        ];
        let hourly = Policy {
            keep_hourly: Some(3),
            ..Policy::default()
        };
        let d = run_in(&hourly, &cands, &berlin());
        assert_eq!(kept(&d), ["after", "cet", "before"]);
        assert_eq!(
            reasons(&d, "cet")[0],
            Reason::Bucket {
                period: Period::Hourly,
                bucket: "2024-10-27T02".into()
            }
        );
        assert_eq!(kept(&run(&hourly, &cands)), ["after", "cet", "cest"], "UTC");
    }

    /// Spring forward in Berlin (31 Mar 2024): 23:30Z on the 30th is already
    /// the 31st there, so it shares the newer backup's day.
    #[test]
    fn daily_buckets_use_the_local_date_around_spring_forward() {
        let cands = [
            at("sat", "2024-03-30T22:30:00Z"),
            at("midnight", "2024-03-30T23:30:00Z"),
            at("sun", "2024-03-31T01:30:00Z"),
        ];
        assert_eq!(kept(&run_in(&daily(2), &cands, &berlin())), ["sun", "sat"]);
        assert_eq!(kept(&run(&daily(2), &cands)), ["sun", "midnight"]);
    }

    /// Weeks start on Monday in local time: Sunday 23:30Z is Monday in Berlin.
    #[test]
    fn weekly_buckets_start_on_local_monday() {
        let cands = [
            at("sun", "2024-03-31T12:00:00Z"),
            at("late", "2024-03-31T23:30:00Z"),
        ];
        let weekly = Policy {
            keep_weekly: Some(1),
            ..Policy::default()
        };
        let d = run_in(&weekly, &cands, &berlin());
        assert_eq!(
            reasons(&d, "late")[0],
            Reason::Bucket {
                period: Period::Weekly,
                bucket: "2024-W14".into()
            }
        );
        let d = run(&weekly, &cands);
        assert_eq!(kept(&d), ["late"]);
        assert_eq!(
            reasons(&d, "late")[0],
            Reason::Bucket {
                period: Period::Weekly,
                bucket: "2024-W13".into()
            }
        );
    }

    /// `keep_within 1d` is a calendar day in the zone: 23 hours across spring
    /// forward in Berlin, 24 in UTC.
    #[test]
    fn keep_within_days_are_calendar_days() {
        let cands = [
            at("early", "2024-03-30T12:30:00Z"),
            at("newest", "2024-03-31T12:00:00Z"),
        ];
        let within = Policy {
            keep_within: Some(1.day()),
            ..Policy::default()
        };
        assert_eq!(kept(&run_in(&within, &cands, &berlin())), ["newest"]);
        assert_eq!(kept(&run(&within, &cands)), ["newest", "early"]);
    }

    // --- safety ---

    /// The newest verified available backup survives a policy that would
    /// drop it; a verified one that is corrupt now does not count.
    #[test]
    fn newest_verified_survives() {
        let cands = [
            Candidate {
                verified_good: true,
                ..at("good", "2025-12-01T00:00:00Z")
            },
            Candidate {
                verified_good: true,
                status: status::CORRUPT.into(),
                ..at("rotten", "2025-12-02T00:00:00Z")
            },
            at("unchecked", "2025-12-03T00:00:00Z"),
        ];
        let policy = Policy {
            keep_last: Some(1),
            ..Policy::default()
        };
        let d = run(&policy, &cands);
        assert_eq!(kept(&d), ["unchecked", "good"]);
        assert_eq!(reasons(&d, "good"), [Reason::NewestVerified]);
    }

    /// With nothing verified, the newest backup of any status survives, and
    /// the newest that may restore too.
    #[test]
    fn newest_of_any_status_survives_when_none_is_verified() {
        let cands = [
            at("older", "2024-11-01T00:00:00Z"),
            at("old", "2024-12-01T00:00:00Z"),
            Candidate {
                status: status::MISSING.into(),
                ..at("newest", "2025-01-02T00:00:00Z")
            },
        ];
        // A window anchored on the dead newest (keep_within), or the clock
        // (older_than), keeps none of the others: the newest that may
        // restore stays all the same.
        for policy in [
            Policy {
                older_than_days: Some(1),
                ..Policy::default()
            },
            Policy {
                keep_within: Some(7.days()),
                ..Policy::default()
            },
        ] {
            let d = run(&policy, &cands);
            assert_eq!(kept(&d), ["newest", "old"], "{policy:?}");
            assert_eq!(
                reasons(&d, "newest").last(),
                Some(&Reason::NewestOfInstance)
            );
            assert_eq!(reasons(&d, "old"), [Reason::NewestRestorable]);
        }
    }

    /// Protected and in-use backups are kept whatever the policy.
    #[test]
    fn protected_and_in_use_survive() {
        let cands = [
            Candidate {
                protected: true,
                ..at("p", "2020-01-01T00:00:00Z")
            },
            Candidate {
                in_use: true,
                ..at("u", "2020-01-02T00:00:00Z")
            },
            at("x", "2020-01-03T00:00:00Z"),
            at("y", "2025-12-31T00:00:00Z"),
        ];
        let policy = Policy {
            keep_last: Some(1),
            ..Policy::default()
        };
        let d = run(&policy, &cands);
        assert_eq!(kept(&d), ["y", "u", "p"]);
        assert_eq!(reasons(&d, "p"), [Reason::Protected]);
        assert_eq!(reasons(&d, "u"), [Reason::InUse]);
    }

    /// A pre-restore backup stays until it is `pre_restore_min_age` old, then
    /// the policy decides.
    #[test]
    fn pre_restore_backups_keep_their_minimum_age() {
        let pre = |id, when| Candidate {
            pre_restore: true,
            ..at(id, when)
        };
        let cands = [
            pre("young", "2025-12-30T00:00:00Z"),
            pre("edge", "2025-12-25T00:00:00Z"),
            pre("old", "2025-12-01T00:00:00Z"),
            at("newest", "2025-12-31T00:00:00Z"),
        ];
        let policy = Policy {
            keep_last: Some(1),
            ..Policy::default()
        };
        let d = run(&policy, &cands);
        assert_eq!(kept(&d), ["newest", "young"]);
        let until = t("2026-01-06T00:00:00Z");
        assert_eq!(reasons(&d, "young"), [Reason::PreRestoreMinAge { until }]);
    }

    /// A pre-restore entry dated so late that its minimum age runs past the
    /// calendar's end is kept, and the plan for the others still made.
    #[test]
    fn a_pre_restore_age_past_the_calendar_keeps_the_backup_and_plans_the_rest() {
        let cands = [
            Candidate {
                pre_restore: true,
                ..at("far", "9999-12-30T00:00:00Z")
            },
            at("newest", "2025-12-31T00:00:00Z"),
            at("old", "2025-01-01T00:00:00Z"),
        ];
        let policy = Policy {
            keep_last: Some(2),
            ..Policy::default()
        };
        let d = run(&policy, &cands);
        // Dated in the future, it takes no slot of the two.
        assert_eq!(kept(&d), ["far", "newest", "old"]);
        assert_eq!(
            reasons(&d, "far"),
            [
                Reason::PreRestoreMinAge {
                    until: Timestamp::MAX
                },
                Reason::Future
            ],
        );
    }

    /// What prune cannot be sure of it keeps: a status it does not know, an
    /// unreadable time, an id two entries share (a removed one included).
    #[test]
    fn unknowns_are_kept() {
        let cands = [
            at("n", "2025-12-31T00:00:00Z"),
            Candidate {
                status: "archived".into(),
                ..at("s", "2025-01-01T00:00:00Z")
            },
            Candidate {
                created_at: None,
                ..at("t", NOW)
            },
            at("dup", "2025-01-02T00:00:00Z"),
            Candidate {
                status: status::REMOVED.into(),
                ..at("dup", "2024-01-01T00:00:00Z")
            },
        ];
        let policy = Policy {
            keep_last: Some(1),
            ..Policy::default()
        };
        let d = run(&policy, &cands);
        assert_eq!(kept(&d), ["n", "dup", "s", "t"]);
        assert_eq!(
            reasons(&d, "s"),
            [Reason::UnknownStatus {
                status: "archived".into()
            }]
        );
        assert_eq!(reasons(&d, "t"), [Reason::UnknownTime]);
        assert_eq!(reasons(&d, "dup"), [Reason::DuplicateId]);
    }

    /// A policy that keeps nothing is refused, as restic refuses one.
    #[test]
    fn empty_policy_is_refused() {
        let zeros = Policy {
            keep_last: Some(0),
            keep_daily: Some(0),
            keep_within: Some(0.days()),
            older_than_days: Some(0),
            ..Policy::default()
        };
        for policy in [Policy::default(), zeros] {
            let err = plan(&policy, &[], t(NOW), &TimeZone::UTC, SignedDuration::ZERO).unwrap_err();
            assert_eq!(err.kind(), abssd_proto::ErrorKind::Validation);
            assert!(err.to_string().contains("keeps nothing"), "{err}");
        }
        let negative = Policy {
            keep_within: Some((-1).days()),
            ..Policy::default()
        };
        let err = plan(&negative, &[], t(NOW), &TimeZone::UTC, SignedDuration::ZERO);
        assert!(err.is_err());
    }

    /// `--json` tags each reason by its rule; people read a short phrase.
    #[test]
    fn reasons_serialize_and_display() {
        let r = Reason::Bucket {
            period: Period::Daily,
            bucket: "2019-11-17".into(),
        };
        assert_eq!(
            serde_json::to_string(&r).unwrap(),
            r#"{"rule":"bucket","period":"daily","bucket":"2019-11-17"}"#
        );
        assert_eq!(r.to_string(), "daily 2019-11-17");
        assert_eq!(
            serde_json::to_string(&Reason::Protected).unwrap(),
            r#"{"rule":"protected"}"#
        );
        let w = Reason::Within {
            since: t("2025-10-19T00:00:00Z"),
        };
        assert_eq!(
            serde_json::to_string(&w).unwrap(),
            r#"{"rule":"within","since":"2025-10-19T00:00:00Z"}"#
        );
        assert!(Reason::InUse.is_safety() && !w.is_safety());
        let esc = Reason::UnknownStatus {
            status: "x\u{1b}[2J".into(),
        };
        assert!(!esc.to_string().contains('\u{1b}'));
    }

    /// restic's duration notation, `m` being months; anything else refused.
    #[test]
    fn keep_within_in_restic_notation() {
        let span = parse_keep_within("2y5m7d3h").unwrap();
        assert_eq!(
            (
                span.get_years(),
                span.get_months(),
                span.get_days(),
                span.get_hours()
            ),
            (2, 5, 7, 3)
        );
        assert_eq!(parse_keep_within("30d").unwrap().get_days(), 30);
        assert_eq!(parse_keep_within("5m").unwrap().get_minutes(), 0);
        for bad in [
            "", "7", "d", "7w", "1d1d", "-1d", "7 d", "1234567d", "99999y", "7d\u{1b}",
        ] {
            let err = parse_keep_within(bad).unwrap_err();
            assert_eq!(err.kind(), abssd_proto::ErrorKind::Validation, "{bad:?}");
            assert!(!err.to_string().contains('\u{1b}'));
        }
    }

    /// Not a timing assertion: prints how long a plan of 10,000 entries over
    /// 10 instances takes (`--nocapture` shows it).
    #[test]
    fn plan_of_ten_thousand_entries() {
        let base = t("2020-01-01T00:00:00Z");
        let cands: Vec<Candidate> = (0..10_000i64)
            .map(|i| Candidate {
                instance: format!("inst{}", i % 10),
                created_at: Some(base + SignedDuration::from_secs(i * 3_607)),
                verified_good: i % 7 == 0,
                ..at(&format!("id{i:05}"), NOW)
            })
            .collect();
        let policy = Policy {
            keep_last: Some(3),
            keep_hourly: Some(24),
            keep_daily: Some(7),
            keep_weekly: Some(4),
            keep_monthly: Some(12),
            keep_yearly: Some(5),
            keep_within: Some(2.days()),
            older_than_days: Some(30),
        };
        let tz = berlin();
        let start = std::time::Instant::now();
        let d = plan(
            &policy,
            &cands,
            t(NOW),
            &tz,
            SignedDuration::from_hours(168),
        )
        .unwrap();
        eprintln!(
            "plan of {} entries over 10 instances: {:?}",
            d.len(),
            start.elapsed()
        );
        assert_eq!(d.len(), 10_000);
    }

    /// Properties over any policy and history.
    mod props {
        use super::*;
        use proptest::prelude::*;

        const STATUSES: [&str; 8] = [
            status::AVAILABLE,
            status::LEGACY_PRESENT,
            status::UNKNOWN,
            status::MISSING,
            status::CORRUPT,
            status::ERROR,
            status::REMOVED,
            "archived",
        ];

        fn candidate() -> impl Strategy<Value = Candidate> {
            (
                (0u8..3, 0u32..40),
                // Half-hour steps over about 4.5 years around NOW: equal
                // times, the future and DST changes all occur.
                prop::option::weighted(0.95, 0i64..80_000),
                prop::sample::select(&STATUSES[..]),
                (prop::bool::weighted(0.4), prop::bool::weighted(0.1)),
                (prop::bool::weighted(0.1), prop::bool::weighted(0.05)),
            )
                .prop_map(
                    |((inst, id), half_hours, status, (verified, protected), (pre, used))| {
                        Candidate {
                            id: format!("b{id:02}"),
                            instance: format!("i{inst}"),
                            created_at: half_hours.map(|h| {
                                t("2022-01-01T00:00:00Z") + SignedDuration::from_secs(h * 1800)
                            }),
                            status: status.into(),
                            verified_good: verified,
                            protected,
                            pre_restore: pre,
                            in_use: used,
                            size_bytes: 1,
                        }
                    },
                )
        }

        fn policy() -> impl Strategy<Value = Policy> {
            let count = || prop::option::of(0u32..5);
            (
                (count(), count(), count(), count(), count(), count()),
                prop::option::of(prop_oneof![
                    (0i64..40).prop_map(|d| d.days()),
                    (0i64..100).prop_map(|h| h.hours()),
                    (0i64..3).prop_map(|m| m.months()),
                ]),
                prop::option::of(0u32..400),
            )
                .prop_map(|((last, h, d, w, m, y), within, older)| Policy {
                    keep_last: last,
                    keep_hourly: h,
                    keep_daily: d,
                    keep_weekly: w,
                    keep_monthly: m,
                    keep_yearly: y,
                    keep_within: within,
                    older_than_days: older,
                })
        }

        /// The newest of `cands` (by time, then id) that `pick` accepts.
        fn newest<'a>(
            cands: impl Iterator<Item = &'a Candidate>,
            pick: impl Fn(&Candidate) -> bool,
        ) -> Option<&'a Candidate> {
            cands
                .filter(|c| c.status != status::REMOVED && c.created_at.is_some() && pick(c))
                .max_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)))
        }

        /// Every decision for `id` keeps it.
        fn all_kept(d: &[Decision], id: &str) -> bool {
            d.iter().filter(|d| d.id == id).all(|d| d.keep) && d.iter().any(|d| d.id == id)
        }

        proptest! {
            #![proptest_config(ProptestConfig {
                cases: 256,
                failure_persistence: None,
                ..ProptestConfig::default()
            })]

            #[test]
            fn rules_hold(
                policy in policy(),
                cands in prop::collection::vec(candidate(), 0..40),
                in_berlin in any::<bool>(),
            ) {
                let tz = if in_berlin { berlin() } else { TimeZone::UTC };
                let min_age = SignedDuration::from_hours(7 * 24);
                let planned = plan(&policy, &cands, t(NOW), &tz, min_age);
                if policy.is_empty() {
                    prop_assert!(planned.is_err());
                    return Ok(());
                }
                let d = planned.unwrap();

                // One decision per candidate that is not removed, none for removed ones.
                let live = cands.iter().filter(|c| c.status != status::REMOVED).count();
                prop_assert_eq!(d.len(), live);
                prop_assert!(d.iter().all(|d| d.status != status::REMOVED));
                // Removed exactly when no rule keeps it.
                for x in &d {
                    prop_assert_eq!(x.keep, !x.reasons.is_empty(), "{:?}", x);
                }

                let instances: std::collections::BTreeSet<&str> =
                    cands.iter().map(|c| c.instance.as_str()).collect();
                for inst in instances {
                    let of = || cands.iter().filter(|c| c.instance == inst);
                    let verified = newest(of(), |c| {
                        c.verified_good
                            && matches!(c.status.as_str(), status::AVAILABLE | status::LEGACY_PRESENT)
                    });
                    match verified {
                        Some(v) => prop_assert!(all_kept(&d, &v.id), "newest verified {}", v.id),
                        None => {
                            if let Some(n) = newest(of(), |_| true) {
                                prop_assert!(all_kept(&d, &n.id), "newest {}", n.id);
                            }
                        }
                    }
                    // Whatever the policy, an instance that had a backup that
                    // may restore keeps one.
                    if newest(of(), |c| takes_slot(&c.status)).is_some() {
                        prop_assert!(
                            of().any(|c| takes_slot(&c.status)
                                && c.created_at.is_some()
                                && all_kept(&d, &c.id)),
                            "no restorable backup of {} kept", inst
                        );
                    }
                }
                for c in cands.iter().filter(|c| c.status != status::REMOVED) {
                    if c.protected || c.in_use {
                        prop_assert!(all_kept(&d, &c.id), "{:?}", c);
                    }
                }

                // Run again on the index as the prune leaves it (what it
                // removed marked `removed`): nothing more goes.
                let removed: std::collections::HashSet<&str> =
                    d.iter().filter(|d| !d.keep).map(|d| d.id.as_str()).collect();
                let after: Vec<Candidate> = cands
                    .iter()
                    .map(|c| {
                        let mut c = c.clone();
                        if removed.contains(c.id.as_str()) {
                            c.status = status::REMOVED.into();
                        }
                        c
                    })
                    .collect();
                let again = plan(&policy, &after, t(NOW), &tz, min_age).unwrap();
                prop_assert!(again.iter().all(|d| d.keep), "{:?}", again);
                prop_assert_eq!(again.len(), d.len() - removed.len());
            }
        }
    }
}
