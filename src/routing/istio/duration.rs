//! Istio durations: protobuf `Duration`s written as Go durations — one or
//! more `<decimal><unit>` parts, units `h`, `m`, `s`, `ms`, `us`/`µs`, `ns`,
//! fractions allowed (`1.5s`, `100ms`, `2m`, `1h30m`). Unlike Gateway API
//! durations (`routing::duration`), fractional seconds are common here.

use std::time::Duration;

use super::error::IstioConfigError;

/// Parses an Istio duration; `0s` (or `0`) is zero, negatives are errors.
pub(crate) fn parse_istio_duration(value: &str) -> Result<Duration, IstioConfigError> {
    let err = |reason| IstioConfigError::InvalidDuration {
        value: value.to_string(),
        reason,
    };
    let s = value.trim();
    if s.is_empty() {
        return Err(err("empty"));
    }
    if s.starts_with('-') {
        return Err(err("negative"));
    }
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    let mut total = 0f64;
    let mut rest = s;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let (num, after) = rest.split_at(num_len);
        if num.is_empty() || num == "." {
            return Err(err("expected a number"));
        }
        let n: f64 = num.parse().map_err(|_| err("expected a number"))?;
        let unit_len = after
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(after.len());
        let (unit, next) = after.split_at(unit_len);
        let scale = match unit {
            "h" => 3600.0,
            "m" => 60.0,
            "s" => 1.0,
            "ms" => 1e-3,
            "us" | "µs" => 1e-6,
            "ns" => 1e-9,
            "" => return Err(err("missing unit")),
            _ => return Err(err("unknown unit")),
        };
        total += n * scale;
        rest = next;
    }
    if !total.is_finite() || total > 1e12 {
        return Err(err("too large"));
    }
    Ok(Duration::from_secs_f64(total))
}

/// Parses a duration that Istio requires to be at least 1 ms when set.
pub(crate) fn parse_positive(value: &str) -> Result<Duration, IstioConfigError> {
    let d = parse_istio_duration(value)?;
    if d < Duration::from_millis(1) {
        return Err(IstioConfigError::DurationTooShort {
            value: value.to_string(),
        });
    }
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_style_durations() {
        let ok = [
            ("1.5s", Duration::from_millis(1500)),
            ("100ms", Duration::from_millis(100)),
            ("2m", Duration::from_secs(120)),
            ("1h30m", Duration::from_secs(5400)),
            ("0s", Duration::ZERO),
            ("0", Duration::ZERO),
            ("250us", Duration::from_micros(250)),
        ];
        for (text, want) in ok {
            assert_eq!(parse_istio_duration(text).ok(), Some(want), "{text}");
        }
        for bad in ["", "10", "-1s", "1x", "s", "1.2.3s"] {
            assert!(parse_istio_duration(bad).is_err(), "{bad}");
        }
        assert!(parse_positive("0s").is_err());
        assert!(parse_positive("1ms").is_ok());
    }
}
