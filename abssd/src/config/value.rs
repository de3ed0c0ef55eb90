//! Checked values, as serde reads them from the config file: each function
//! here is a field's `deserialize_with`, and refuses a value out of its range
//! with a message saying what it must be (the key and file are added by the
//! caller). Whole numbers go through `TryFrom`, never `as`.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use serde::de::{self, Deserializer};

/// The longest duration any setting takes (about 31 years): beyond it a
/// `Duration` from the value could not even be made.
pub const MAX_SECONDS: u32 = 1_000_000_000;
/// The longest `daemon.stop_timeout`: a stop that waits longer is a hang.
pub const MAX_STOP_TIMEOUT: u32 = 3600;

/// The longest `hooks.ping_timeout` (seconds).
pub const MAX_PING_TIMEOUT: u32 = 120;
/// The longest `hooks.timeout` (seconds): 6 hours.
pub const MAX_HOOK_TIMEOUT: u32 = 6 * 3600;
/// Bytes of a `hooks.ping_url`.
pub const MAX_URL_BYTES: usize = 2048;
/// Words of a hook command (the program and its arguments).
pub const MAX_HOOK_ARGS: usize = 64;
/// Bytes of one word of a hook command.
pub const MAX_HOOK_ARG_BYTES: usize = 4096;

/// A monitoring URL (`hooks.ping_url`): http or https, with a host. Its
/// path is a secret (a Healthchecks check's uuid lets anyone ping it): it is
/// shown, logged and debug-printed as its scheme and host only.
#[derive(Clone, PartialEq, Eq)]
pub struct PingUrl(String);

impl PingUrl {
    /// `text` if it is one (see the type); else why not.
    pub fn parse(text: &str) -> std::result::Result<PingUrl, String> {
        if text.len() > MAX_URL_BYTES {
            return Err(format!("must be a URL of at most {MAX_URL_BYTES} bytes"));
        }
        let lower = text.get(..8).unwrap_or(text).to_ascii_lowercase();
        if !(lower.starts_with("http://") || lower.starts_with("https://")) {
            // The scheme only: the rest may be a secret.
            let scheme = text.split_once(':').map_or("none", |(s, _)| s);
            return Err(format!(
                "must be an http:// or https:// URL, found the scheme {:?}",
                crate::error::shown(scheme)
            ));
        }
        let uri: ureq::http::Uri = text
            .parse()
            .map_err(|_| "must be a valid http:// or https:// URL".to_owned())?;
        match uri.authority() {
            Some(a) if a.as_str().contains('@') => {
                Err("must not hold a user name or password".to_owned())
            }
            Some(a) if !a.host().is_empty() => Ok(PingUrl(text.to_owned())),
            _ => Err("must name a host".to_owned()),
        }
    }

    /// The URL, secret and all: for sending only.
    pub fn secret(&self) -> &str {
        &self.0
    }

    /// The URL with `/suffix` added to its path (before any query):
    /// Healthchecks' `/start` and `/fail`.
    pub fn with(&self, suffix: &str) -> String {
        if suffix.is_empty() {
            return self.0.clone();
        }
        let (base, query) = match self.0.split_once('?') {
            Some((b, q)) => (b, Some(q)),
            None => (self.0.as_str(), None),
        };
        let mut url = format!("{}/{suffix}", base.trim_end_matches('/'));
        if let Some(q) = query {
            url.push('?');
            url.push_str(q);
        }
        url
    }

    /// `scheme://host[:port]/…`: what may be shown.
    pub fn shown(&self) -> String {
        match self.0.parse::<ureq::http::Uri>() {
            Ok(uri) => format!(
                "{}://{}/…",
                uri.scheme_str().unwrap_or("?"),
                uri.authority().map_or("?", |a| a.as_str())
            ),
            Err(_) => "(a URL)".to_owned(),
        }
    }
}

impl std::fmt::Debug for PingUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PingUrl({})", self.shown())
    }
}

impl std::fmt::Display for PingUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.shown())
    }
}

pub(super) fn ping_url<'de, D: Deserializer<'de>>(
    d: D,
) -> std::result::Result<Option<PingUrl>, D::Error> {
    Option::<String>::deserialize(d)?
        .map(|s| PingUrl::parse(&s).map_err(de::Error::custom))
        .transpose()
}

/// A hook command: the program by its absolute path, then its arguments;
/// bounded (at most [`MAX_HOOK_ARGS`] words of [`MAX_HOOK_ARG_BYTES`]), no
/// NUL.
pub(super) fn hook_command<'de, D: Deserializer<'de>>(
    d: D,
) -> std::result::Result<Option<Vec<String>>, D::Error> {
    let Some(argv) = command(d)? else {
        return Ok(None);
    };
    if argv.len() > MAX_HOOK_ARGS {
        return Err(de::Error::custom(format!(
            "must have at most {MAX_HOOK_ARGS} words (the program, then its arguments)"
        )));
    }
    if argv
        .iter()
        .any(|a| a.len() > MAX_HOOK_ARG_BYTES || a.contains('\0'))
    {
        return Err(de::Error::custom(format!(
            "each word must be at most {MAX_HOOK_ARG_BYTES} bytes, without NUL"
        )));
    }
    if !argv[0].starts_with('/') {
        return Err(de::Error::custom(format!(
            "the program must be an absolute path (no shell, no PATH search), found {:?}",
            crate::error::shown(&argv[0])
        )));
    }
    Ok(Some(argv))
}

/// A section: a mapping, or nothing (`backups:` with no keys under it).
pub(super) fn section<'de, D: Deserializer<'de>, T: Deserialize<'de> + Default>(
    d: D,
) -> std::result::Result<T, D::Error> {
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

pub(super) fn non_empty<'de, D: Deserializer<'de>>(
    d: D,
) -> std::result::Result<Option<String>, D::Error> {
    match Option::<String>::deserialize(d)? {
        Some(s) if s.is_empty() => Err(de::Error::custom("must be a non-empty string")),
        s => Ok(s),
    }
}

/// `backups.retention.keep_within`: restic's notation (see [`restic_span`]),
/// checked when the file is read.
pub(super) fn keep_within<'de, D: Deserializer<'de>>(
    d: D,
) -> std::result::Result<Option<String>, D::Error> {
    match non_empty(d)? {
        Some(s) if restic_span(&s).is_none() => Err(de::Error::custom(format!(
            "must be a duration like 7d, 2y5m or 36h (restic's units y, m = months, d, h; \
             each once), found {s:?}"
        ))),
        s => Ok(s),
    }
}

/// A span in restic's `--keep-within` notation: whole numbers of `y`
/// (years), `m` (months), `d` (days) or `h` (hours), each unit at most once,
/// e.g. `2y5m7d3h` or `30d`. restic's notation rather than jiff's, where
/// `5m` is five minutes: an operator who knows restic must not keep a
/// thousandth of what was meant. `None` when it is not one.
pub fn restic_span(text: &str) -> Option<jiff::Span> {
    let mut span = jiff::Span::new();
    let mut seen = String::new();
    let mut rest = text;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let digits = rest.len() - rest.trim_start_matches(|c: char| c.is_ascii_digit()).len();
        let unit = rest[digits..].chars().next()?;
        if digits == 0 || digits > 6 || seen.contains(unit) {
            return None;
        }
        let n: i64 = rest[..digits].parse().ok()?;
        span = match unit {
            'y' => span.try_years(n),
            'm' => span.try_months(n),
            'd' => span.try_days(n),
            'h' => span.try_hours(n),
            _ => return None,
        }
        .ok()?;
        seen.push(unit);
        rest = &rest[digits + 1..];
    }
    Some(span)
}

pub(super) fn absolute<'de, D: Deserializer<'de>>(
    d: D,
) -> std::result::Result<Option<PathBuf>, D::Error> {
    match Option::<String>::deserialize(d)? {
        None => Ok(None),
        Some(s) if s.starts_with('/') => Ok(Some(PathBuf::from(s))),
        Some(s) => Err(de::Error::custom(format!(
            "must be an absolute path, found {s:?}"
        ))),
    }
}

pub(super) fn command<'de, D: Deserializer<'de>>(
    d: D,
) -> std::result::Result<Option<Vec<String>>, D::Error> {
    match Option::<Vec<String>>::deserialize(d)? {
        Some(argv) if argv.is_empty() => Err(de::Error::custom(
            "must be a non-empty list of strings (the program, then its arguments)",
        )),
        argv => Ok(argv),
    }
}

/// A whole number from `MIN` to `MAX` (and in `T`): checked, never cast.
pub(super) fn whole<'de, D, T, const MIN: u64, const MAX: u64>(
    d: D,
) -> std::result::Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: TryFrom<i128>,
{
    Option::<Whole>::deserialize(d)?
        .map(|Whole(n)| bounded(n, MIN.into(), MAX.into()))
        .transpose()
}

/// A count held in a `u32`, at least `MIN`.
pub(super) fn count<'de, D: Deserializer<'de>, const MIN: u32>(
    d: D,
) -> std::result::Result<Option<u32>, D::Error> {
    Option::<Whole>::deserialize(d)?
        .map(|Whole(n)| bounded(n, MIN.into(), u32::MAX.into()))
        .transpose()
}

fn bounded<T: TryFrom<i128>, E: de::Error>(
    n: i128,
    min: i128,
    max: i128,
) -> std::result::Result<T, E> {
    (min..=max)
        .contains(&n)
        .then(|| T::try_from(n).ok())
        .flatten()
        .ok_or_else(|| {
            let range = if max == i128::from(u64::MAX) {
                format!("{min} or more")
            } else {
                format!("from {min} to {max}")
            };
            E::custom(format!("must be a whole number {range}, found {n}"))
        })
}

/// A number of seconds from 0 to `MAX`: an integer, a decimal, or a string
/// holding one (`"1.5"`).
pub(super) fn seconds<'de, D: Deserializer<'de>, const MAX: u32>(
    d: D,
) -> std::result::Result<Option<Duration>, D::Error> {
    Ok(Option::<Seconds<MAX>>::deserialize(d)?.map(|Seconds(v)| v))
}

/// An age from 0 to `MAX` seconds: a number of seconds as [`seconds`] reads
/// it, or a duration of days, hours, minutes and seconds (`7d`, `36h`,
/// `1d 12h`, `P7D`; months and years are refused: their length varies).
pub(super) fn age<'de, D: Deserializer<'de>, const MAX: u32>(
    d: D,
) -> std::result::Result<Option<Duration>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Number(f64),
        Text(String),
    }
    let Some(raw) = Option::<Raw>::deserialize(d)? else {
        return Ok(None);
    };
    let secs = match &raw {
        Raw::Number(n) => Some(*n),
        Raw::Text(s) => parse_seconds(s).or_else(|| parse_age(s)),
    };
    secs.filter(|v| v.is_finite() && (0.0..=f64::from(MAX)).contains(v))
        .map(|v| Some(Duration::from_secs_f64(v)))
        .ok_or_else(|| {
            let found: &dyn std::fmt::Debug = match &raw {
                Raw::Number(n) => n,
                Raw::Text(s) => s,
            };
            de::Error::custom(format!(
                "must be a number of seconds from 0 to {MAX} or a duration such as 7d or 36h, \
                 found {found:?}"
            ))
        })
}

/// A duration in jiff's friendly or ISO 8601 notation, days counted as 24 h.
/// A bare `m` (`1m`, `30 m`) is refused: jiff reads minutes, restic (whose
/// notation `keep_within`, beside it in the same file, uses) months; `min`
/// and `PT1M` say minutes unmistakably.
fn parse_age(s: &str) -> Option<f64> {
    if bare_m(s) {
        return None;
    }
    let span: jiff::Span = s.trim().parse().ok()?;
    let d = span
        .to_duration(jiff::SpanRelativeTo::days_are_24_hours())
        .ok()?;
    Some(d.as_secs_f64())
}

/// Whether `s` (not ISO 8601) has a number followed by the unit `m` alone.
fn bare_m(s: &str) -> bool {
    let s = s.trim();
    if s.starts_with(['P', 'p']) {
        return false;
    }
    let b = s.as_bytes();
    (0..b.len()).any(|i| {
        matches!(b[i], b'm' | b'M')
            && b[..i]
                .iter()
                .rev()
                .find(|c| **c != b' ')
                .is_some_and(u8::is_ascii_digit)
            && !b.get(i + 1).is_some_and(u8::is_ascii_alphabetic)
    })
}

/// Any integer YAML holds, unconverted (`1.0` and `"1"` are not whole numbers).
struct Whole(i128);

impl<'de> Deserialize<'de> for Whole {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Whole, D::Error> {
        struct V;
        impl de::Visitor<'_> for V {
            type Value = Whole;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a whole number")
            }
            fn visit_i64<E>(self, n: i64) -> std::result::Result<Whole, E> {
                Ok(Whole(n.into()))
            }
            fn visit_u64<E>(self, n: u64) -> std::result::Result<Whole, E> {
                Ok(Whole(n.into()))
            }
        }
        d.deserialize_any(V)
    }
}

/// A number of seconds from 0 to `MAX`, as a duration.
struct Seconds<const MAX: u32>(Duration);

impl<'de, const MAX: u32> Deserialize<'de> for Seconds<MAX> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct V<const MAX: u32>;
        impl<const MAX: u32> V<MAX> {
            fn check<E: de::Error>(
                v: Option<f64>,
                found: &dyn std::fmt::Debug,
            ) -> std::result::Result<Seconds<MAX>, E> {
                v.filter(|v| (0.0..=f64::from(MAX)).contains(v))
                    .map(|v| Seconds(Duration::from_secs_f64(v)))
                    .ok_or_else(|| {
                        E::custom(format!(
                            "must be a number of seconds from 0 to {MAX}, found {found:?}"
                        ))
                    })
            }
        }
        impl<const MAX: u32> de::Visitor<'_> for V<MAX> {
            type Value = Seconds<MAX>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(f, "a number of seconds from 0 to {MAX}")
            }
            fn visit_i64<E: de::Error>(self, n: i64) -> std::result::Result<Self::Value, E> {
                V::check(u32::try_from(n).ok().map(f64::from), &n)
            }
            fn visit_u64<E: de::Error>(self, n: u64) -> std::result::Result<Self::Value, E> {
                V::check(u32::try_from(n).ok().map(f64::from), &n)
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> std::result::Result<Self::Value, E> {
                V::check(Some(v), &v)
            }
            fn visit_str<E: de::Error>(self, s: &str) -> std::result::Result<Self::Value, E> {
                V::check(parse_seconds(s), &s)
            }
        }
        d.deserialize_any(V::<MAX>)
    }
}

/// A finite, non-negative number of seconds written as text (config or environment).
pub fn parse_seconds(s: &str) -> Option<f64> {
    s.trim()
        .parse::<f64>()
        .ok()
        .filter(|v| v.is_finite() && *v >= 0.0)
}
