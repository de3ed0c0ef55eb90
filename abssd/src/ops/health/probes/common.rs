//! Building probe results, and the small helpers every probe uses.

use abssd_proto::{Impact, ProbeResult, ProbeStatus};
use jiff::Timestamp;
use serde_json::{Value, json};

/// Items a result lists (ids, paths); the rest are counted.
pub const MAX_LISTED: usize = 20;

/// A result about `instance`.
pub fn result(
    id: &str,
    category: &str,
    instance: Option<&str>,
    status: ProbeStatus,
    impact: Impact,
    message: String,
) -> ProbeResult {
    ProbeResult {
        id: id.to_owned(),
        category: category.to_owned(),
        instance: instance.map(str::to_owned),
        status,
        impact,
        impact_code: impact.code(),
        message,
        remediation: None,
        data: None,
    }
}

pub(crate) fn green(id: &str, category: &str, instance: &str, message: String) -> ProbeResult {
    result(
        id,
        category,
        Some(instance),
        ProbeStatus::Green,
        Impact::Ok,
        message,
    )
}

pub(crate) fn yellow(id: &str, category: &str, instance: &str, message: String) -> ProbeResult {
    result(
        id,
        category,
        Some(instance),
        ProbeStatus::Yellow,
        Impact::Ok,
        message,
    )
}

pub(crate) fn red(
    id: &str,
    category: &str,
    instance: &str,
    impact: Impact,
    message: String,
) -> ProbeResult {
    result(
        id,
        category,
        Some(instance),
        ProbeStatus::Red,
        impact,
        message,
    )
}

pub(crate) trait With {
    fn fix(self, remediation: String) -> Self;
    fn data(self, data: Value) -> Self;
}

impl With for ProbeResult {
    fn fix(mut self, remediation: String) -> Self {
        self.remediation = Some(remediation);
        self
    }
    fn data(mut self, data: Value) -> Self {
        self.data = Some(data);
        self
    }
}

/// At most 64 bytes of a name read from a file, for messages.
pub fn clip(text: &str) -> &str {
    clip_to(text, 64)
}

/// At most `max` bytes of `text`, on a character boundary.
pub fn clip_to(text: &str, max: usize) -> &str {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// A timestamp as written in the index or a job record.
pub fn parse_time(text: &str) -> Option<Timestamp> {
    text.parse::<Timestamp>().ok()
}

/// Whole seconds from `then` to `now`; a time after the clock is 0 old.
pub fn age_seconds(then: Timestamp, now: Timestamp) -> u64 {
    u64::try_from(now.as_second().saturating_sub(then.as_second())).unwrap_or(0)
}

/// `2d 3h`, `5h 10m`, `42s`: enough to read at a glance.
pub fn human_age(secs: u64) -> String {
    let (d, h, m) = (secs / 86400, secs % 86400 / 3600, secs % 3600 / 60);
    match (d, h, m) {
        (0, 0, 0) => format!("{secs}s"),
        (0, 0, m) => format!("{m}m"),
        (0, h, m) => format!("{h}h {m}m"),
        (d, h, _) => format!("{d}d {h}h"),
    }
}

/// `512 B`, `3.4 MiB`, `1.2 TiB`.
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// The first [`MAX_LISTED`] of `items`, and how many there are.
pub fn listed<T: serde::Serialize>(items: &[T]) -> Value {
    json!({
        "count": items.len(),
        "items": items.iter().take(MAX_LISTED).collect::<Vec<_>>(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_read_at_a_glance() {
        assert_eq!(human_age(42), "42s");
        assert_eq!(human_age(600), "10m");
        assert_eq!(human_age(3 * 3600 + 60), "3h 1m");
        assert_eq!(human_age(2 * 86400 + 5 * 3600), "2d 5h");
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(3 << 20), "3.0 MiB");
        assert_eq!(human_bytes(58_176 << 20), "56.8 GiB");
    }
}
