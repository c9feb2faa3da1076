//! Gateway API durations (GEP-2257): one to four `<number><unit>` parts,
//! numbers of at most five digits, units `h`, `m`, `s`, `ms`
//! (`^([0-9]{1,5}(h|m|s|ms)){1,4}$`), e.g. `10s`, `500ms`, `1h30m`.

use std::time::Duration;

use crate::routing::error::RouteConfigError;

/// Parses a Gateway API duration. `0s` parses to zero; callers decide what a
/// zero means (for HTTPRoute timeouts: disabled).
pub fn parse_duration(value: &str) -> Result<Duration, RouteConfigError> {
    let err = |reason| RouteConfigError::InvalidDuration {
        value: value.to_string(),
        reason,
    };
    if value.is_empty() {
        return Err(err("empty"));
    }
    let bytes = value.as_bytes();
    let mut total = Duration::ZERO;
    let mut parts = 0;
    let mut i = 0;
    while i < bytes.len() {
        let start = i;
        while i < bytes.len() && bytes[i].is_ascii_digit() {
            i += 1;
        }
        let digits = &value[start..i];
        if digits.is_empty() {
            return Err(err("expected a number"));
        }
        if digits.len() > 5 {
            return Err(err("a number has more than 5 digits"));
        }
        let n: u64 = digits.parse().map_err(|_| err("expected a number"))?;
        let rest = &value[i..];
        let (unit, len) = if rest.starts_with("ms") {
            (Duration::from_millis(n), 2)
        } else if rest.starts_with('h') {
            (Duration::from_secs(n * 3600), 1)
        } else if rest.starts_with('m') {
            (Duration::from_secs(n * 60), 1)
        } else if rest.starts_with('s') {
            (Duration::from_secs(n), 1)
        } else {
            return Err(err("expected unit h, m, s or ms"));
        };
        i += len;
        parts += 1;
        if parts > 4 {
            return Err(err("more than 4 parts"));
        }
        total += unit;
    }
    Ok(total)
}

#[cfg(test)]
mod tests;
