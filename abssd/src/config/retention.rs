//! A retention policy as the configuration sets it: `backups.retention:` for
//! the local archives, and `remotes.<name>.retention:` for a remote's copies
//! (which may keep longer). What each rule keeps is told in
//! `ops::prune::policy`.

use serde::Deserialize;

use super::merge::{Merge, Unknown};
use super::value::{count, keep_within};

/// The rules as the file says, each as its `backup prune` flag.
#[derive(Debug, Default, Deserialize)]
#[serde(default, expecting = "a mapping of settings")]
#[allow(missing_docs)]
pub struct RetentionSection {
    #[serde(deserialize_with = "count::<_, 0>")]
    pub keep_last: Option<u32>,
    #[serde(deserialize_with = "count::<_, 0>")]
    pub keep_hourly: Option<u32>,
    #[serde(deserialize_with = "count::<_, 0>")]
    pub keep_daily: Option<u32>,
    #[serde(deserialize_with = "count::<_, 0>")]
    pub keep_weekly: Option<u32>,
    #[serde(deserialize_with = "count::<_, 0>")]
    pub keep_monthly: Option<u32>,
    #[serde(deserialize_with = "count::<_, 0>")]
    pub keep_yearly: Option<u32>,
    /// restic's notation (`30d`, `2y5m`), checked here.
    #[serde(deserialize_with = "keep_within")]
    pub keep_within: Option<String>,
    /// Anything else.
    #[serde(flatten)]
    pub unknown: Unknown,
}

impl Merge for RetentionSection {
    fn merge(self, upper: Self) -> Self {
        RetentionSection {
            keep_last: self.keep_last.merge(upper.keep_last),
            keep_hourly: self.keep_hourly.merge(upper.keep_hourly),
            keep_daily: self.keep_daily.merge(upper.keep_daily),
            keep_weekly: self.keep_weekly.merge(upper.keep_weekly),
            keep_monthly: self.keep_monthly.merge(upper.keep_monthly),
            keep_yearly: self.keep_yearly.merge(upper.keep_yearly),
            keep_within: self.keep_within.merge(upper.keep_within),
            unknown: self.unknown.merge(upper.unknown),
        }
    }
}

/// A retention policy as set (each rule as its `backup prune` flag); all
/// `None`: no policy.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[allow(missing_docs)]
pub struct Retention {
    pub keep_last: Option<u32>,
    pub keep_hourly: Option<u32>,
    pub keep_daily: Option<u32>,
    pub keep_weekly: Option<u32>,
    pub keep_monthly: Option<u32>,
    pub keep_yearly: Option<u32>,
    /// restic's notation, parsed when a prune uses it.
    pub keep_within: Option<String>,
}

impl Retention {
    /// What `section` sets.
    pub fn of(section: &RetentionSection) -> Retention {
        Retention {
            keep_last: section.keep_last,
            keep_hourly: section.keep_hourly,
            keep_daily: section.keep_daily,
            keep_weekly: section.keep_weekly,
            keep_monthly: section.keep_monthly,
            keep_yearly: section.keep_yearly,
            keep_within: section.keep_within.clone(),
        }
    }
}
