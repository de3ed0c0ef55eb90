//! PyYAML's YAML 1.1 resolver: what type `yaml.safe_load` gives a plain
//! (unquoted, untagged) scalar. The Python abssctl reads its registry and its
//! `ABSSCTL_*` variables through it, so abssd reads both the same way here,
//! once: `on` is a boolean, `0755` an octal int, `1e3` a string.

use serde_json::Value;

/// What PyYAML's resolver (YAML 1.1) reads a scalar as.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Scalar<'a> {
    /// `~`, `null`, empty.
    Null,
    /// `yes`, `on`, `true`, ...
    Bool(bool),
    /// An integer; `None` when it does not fit in 64 bits.
    Int(Option<i64>),
    /// A float with a dot, `.inf`, `.nan`.
    Float(f64),
    /// A string.
    Str(&'a str),
    /// A date or time.
    Timestamp,
    /// Another tag (`!!binary`, a custom one).
    Other,
}

/// The type PyYAML gives an untagged plain scalar `v`.
pub fn plain(v: &str) -> Scalar<'_> {
    if matches!(v, "" | "~" | "null" | "Null" | "NULL") {
        Scalar::Null
    } else if let Some(b) = bool_word(v) {
        Scalar::Bool(b)
    } else if let Some(i) = int(v) {
        Scalar::Int(i)
    } else if let Some(f) = float(v) {
        Scalar::Float(f)
    } else if timestamp(v) {
        Scalar::Timestamp
    } else {
        Scalar::Str(v)
    }
}

pub fn bool_word(v: &str) -> Option<bool> {
    match v {
        "yes" | "Yes" | "YES" | "true" | "True" | "TRUE" | "on" | "On" | "ON" => Some(true),
        "no" | "No" | "NO" | "false" | "False" | "FALSE" | "off" | "Off" | "OFF" => Some(false),
        _ => None,
    }
}

fn all(s: &str, ok: impl Fn(u8) -> bool) -> bool {
    !s.is_empty() && s.bytes().all(ok)
}

fn unsigned(v: &str) -> (i128, &str) {
    match v.as_bytes().first() {
        Some(b'-') => (-1, &v[1..]),
        Some(b'+') => (1, &v[1..]),
        _ => (1, v),
    }
}

/// PyYAML's int forms: `0b1010`, `017` (octal), `0x1F`, `1_000`, `1:30`
/// (base 60). `Some(None)`: an int too big for 64 bits.
pub fn int(v: &str) -> Option<Option<i64>> {
    let (sign, u) = unsigned(v);
    let digits = |s: &str, radix: u32| -> Option<i128> {
        let mut n: i128 = 0;
        for c in s.chars().filter(|&c| c != '_') {
            n = n
                .checked_mul(radix.into())?
                .checked_add(c.to_digit(radix)?.into())?;
        }
        Some(n)
    };
    let n = if let Some(b) = u.strip_prefix("0b") {
        all(b, |c| matches!(c, b'0' | b'1' | b'_')).then(|| digits(b, 2))?
    } else if let Some(x) = u.strip_prefix("0x") {
        all(x, |c| c.is_ascii_hexdigit() || c == b'_').then(|| digits(x, 16))?
    } else if u.len() > 1 && u.starts_with('0') {
        all(u, |c| matches!(c, b'0'..=b'7' | b'_')).then(|| digits(u, 8))?
    } else if u.contains(':') {
        let mut parts = u.split(':');
        let first = parts.next()?;
        if !(first.starts_with(|c: char| matches!(c, '1'..='9'))
            && all(first, |c| c.is_ascii_digit() || c == b'_'))
        {
            return None;
        }
        let mut n = digits(first, 10);
        for p in parts {
            let sexagesimal = all(p, |c| c.is_ascii_digit())
                && (p.len() == 1 || p.len() == 2 && p.as_bytes()[0] <= b'5');
            if !sexagesimal {
                return None;
            }
            n = n.and_then(|n| n.checked_mul(60)?.checked_add(p.parse().ok()?));
        }
        n
    } else if u == "0"
        || (u.starts_with(|c: char| matches!(c, '1'..='9'))
            && all(u, |c| c.is_ascii_digit() || c == b'_'))
    {
        digits(u, 10)
    } else {
        return None;
    };
    Some(n.and_then(|n| i64::try_from(sign * n).ok()))
}

/// PyYAML's float forms: a dot is required (`1.5`, `1.0e+3`, `.5`), or
/// `.inf`/`.nan`, or base 60 with a dot.
pub fn float(v: &str) -> Option<f64> {
    let (sign, u) = unsigned(v);
    let sign = sign as f64;
    if matches!(u, ".inf" | ".Inf" | ".INF") {
        return Some(sign * f64::INFINITY);
    }
    if matches!(v, ".nan" | ".NaN" | ".NAN") {
        return Some(f64::NAN);
    }
    let clean = u.replace('_', "");
    let (mantissa, exp) = match clean.find(['e', 'E']) {
        Some(i) => (&clean[..i], Some(&clean[i + 1..])),
        None => (&clean[..], None),
    };
    if let Some(e) = exp {
        let digits = e.strip_prefix(['+', '-'])?;
        if digits.len() == e.len() || !all(digits, |c| c.is_ascii_digit()) {
            return None;
        }
    }
    if u.contains(':') {
        // Base 60 with a fraction: `1:30.5`.
        let (whole, frac) = mantissa.split_once('.')?;
        let i = int(whole)??;
        return Some(sign * (i as f64 + format!("0.{frac}").parse::<f64>().ok()?));
    }
    let (whole, frac) = mantissa.split_once('.')?;
    // A digit before the dot, or (unsigned) a dot and a digit: `1.`, `.5`
    // (`._5` is text).
    let ok = if whole.is_empty() {
        v == u
            && u.as_bytes().get(1).is_some_and(u8::is_ascii_digit)
            && all(frac, |c| c.is_ascii_digit())
    } else {
        u.starts_with(|c: char| c.is_ascii_digit())
            && all(whole, |c| c.is_ascii_digit())
            && (frac.is_empty() || all(frac, |c| c.is_ascii_digit()))
    };
    if !ok {
        return None;
    }
    format!("{}{clean}", if sign < 0.0 { "-" } else { "" })
        .parse()
        .ok()
}

/// PyYAML's timestamp forms: `2025-01-02`, `2025-1-2 10:00:00`, ... (a
/// looser check than its pattern: it decides only how a value is read back,
/// and any such value is quoted when written).
fn timestamp(v: &str) -> bool {
    let b = v.as_bytes();
    b.len() >= 8 && b[..4].iter().all(u8::is_ascii_digit) && b[4] == b'-' && {
        let rest = &v[5..];
        let mut it = rest.splitn(3, '-');
        let (m, d) = (it.next().unwrap_or(""), it.next().unwrap_or(""));
        let d_end = d.find(|c: char| !c.is_ascii_digit()).unwrap_or(d.len());
        matches!(m.len(), 1 | 2)
            && all(m, |c| c.is_ascii_digit())
            && matches!(d_end, 1 | 2)
            && (d_end == d.len() && it.next().is_none()
                || d[d_end..].starts_with(['T', 't', ' ', '\t']))
    }
}

/// `scalar`, resolved from `text`, as JSON: PyYAML's type where JSON has
/// one; what JSON cannot hold (an int beyond 64 bits, `.inf`, a date,
/// another tag) is its text.
pub fn json(scalar: Scalar<'_>, text: &str) -> Value {
    match scalar {
        Scalar::Null => Value::Null,
        Scalar::Bool(b) => Value::Bool(b),
        Scalar::Int(Some(i)) => Value::from(i),
        // Above i64 but within u64: JSON holds it (as an archive's
        // instance.json may), and it must read back the same.
        Scalar::Int(None) => text
            .parse::<u64>()
            .map_or_else(|_| Value::String(text.to_owned()), Value::from),
        Scalar::Float(f) if f.is_finite() => Value::from(f),
        Scalar::Str(s) => Value::String(s.to_owned()),
        Scalar::Float(_) | Scalar::Timestamp | Scalar::Other => Value::String(text.to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What PyYAML 6 `safe_load` gives for each plain scalar.
    #[test]
    fn plain_scalars_resolve_as_pyyaml_does() {
        use Scalar::*;
        for (text, want) in [
            ("", Null),
            ("~", Null),
            ("NULL", Null),
            ("on", Bool(true)),
            ("OFF", Bool(false)),
            ("y", Str("y")),
            ("0755", Int(Some(493))),
            ("0o17", Str("0o17")),
            ("0x1F", Int(Some(31))),
            ("0b101", Int(Some(5))),
            ("1_000", Int(Some(1000))),
            ("1:30", Int(Some(90))),
            ("-42", Int(Some(-42))),
            ("1180591620717411303424", Int(None)),
            ("1e3", Str("1e3")),
            ("1.0e+3", Float(1000.0)),
            ("1.", Float(1.0)),
            (".5", Float(0.5)),
            ("-.5", Str("-.5")),
            ("._5", Str("._5")),
            (".5_", Float(0.5)),
            ("1._5", Float(1.5)),
            ("-.inf", Float(f64::NEG_INFINITY)),
            ("2025-01-02", Timestamp),
            ("2025-01-02 10:00:00", Timestamp),
            ("2025-01-02x", Str("2025-01-02x")),
            ("1:a", Str("1:a")),
            ("25.1.0", Str("25.1.0")),
        ] {
            assert_eq!(plain(text), want, "{text:?}");
        }
        assert!(matches!(plain(".nan"), Float(f) if f.is_nan()));
    }
}
