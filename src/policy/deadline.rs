//! The route deadline: a matched route's `timeout` (VirtualService
//! `timeout`, HTTPRoute `timeouts.request`), or a gRPC call's `grpc-timeout`
//! capped by it, turned into an instant that bounds every attempt, every
//! backoff and the wait for a pool slot.
//!
//! Pure: every method takes `now`, so the proxy passes
//! `tokio::time::Instant::now()` and the tests pass a paused clock's. The
//! per-try timeout itself is part of [`super::retry::RetryPolicy`]; this
//! module only combines it with what is left of the route's time.

use std::time::Duration;

use tokio::time::Instant;

/// Shortest per-attempt timeout we hand to Pingora: a zero timeout would
/// mean "none" to some layers, so a nearly spent deadline is kept positive.
pub const MIN_ATTEMPT_TIMEOUT: Duration = Duration::from_millis(1);

/// When a request's route timeout runs out; [`Deadline::NONE`] for a route
/// without a timeout.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Deadline(Option<Instant>);

impl Deadline {
    /// No route timeout: nothing expires.
    pub const NONE: Deadline = Deadline(None);

    /// Starts the route timeout at `now`. Envoy starts it when the router
    /// sees the request, i.e. after the fault filter's delay, so the caller
    /// passes the instant the delay ended.
    pub fn start(timeout: Option<Duration>, now: Instant) -> Self {
        Deadline(timeout.map(|t| now + t))
    }

    /// The instant it runs out, if any.
    pub fn at(self) -> Option<Instant> {
        self.0
    }

    /// Time left at `now`; `None` = no deadline, zero once it passed.
    pub fn remaining(self, now: Instant) -> Option<Duration> {
        self.0.map(|d| d.saturating_duration_since(now))
    }

    /// True once the deadline has passed (at `now` or before).
    pub fn expired(self, now: Instant) -> bool {
        self.0.is_some_and(|d| d <= now)
    }

    /// `wait`, cut short so it never runs past the deadline.
    pub fn clip(self, wait: Duration, now: Instant) -> Duration {
        match self.remaining(now) {
            Some(left) => wait.min(left),
            None => wait,
        }
    }

    /// The timeout of one attempt: the per-try timeout and the time left
    /// before the deadline, the tighter one wins; at least
    /// [`MIN_ATTEMPT_TIMEOUT`]. `None` = neither applies.
    pub fn attempt_timeout(self, per_try: Option<Duration>, now: Instant) -> Option<Duration> {
        let limit = match (per_try, self.remaining(now)) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        limit.map(|l| l.max(MIN_ATTEMPT_TIMEOUT))
    }
}

/// Parses a gRPC `grpc-timeout` header: 1–8 ASCII digits and a unit, `H`
/// (hours), `M` (minutes), `S`, `m` (milliseconds), `u` (microseconds) or
/// `n` (nanoseconds), per gRPC over HTTP/2. `None` when malformed: Envoy then
/// applies no gRPC timeout.
pub fn parse_grpc_timeout(value: &str) -> Option<Duration> {
    let (digits, unit) = value.split_at(value.len().checked_sub(1)?);
    if digits.is_empty() || digits.len() > 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n * 3600),
        "M" => Duration::from_secs(n * 60),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

/// Formats `d` as a `grpc-timeout` value (milliseconds, rounded up, so a
/// forwarded deadline never grows; at most 8 digits).
pub fn format_grpc_timeout(d: Duration) -> String {
    let ms = d.as_nanos().div_ceil(1_000_000);
    if ms <= 99_999_999 {
        format!("{ms}m")
    } else {
        format!("{}S", d.as_secs().min(99_999_999))
    }
}

/// The timeout of a gRPC call: its `grpc-timeout`, capped by the route's
/// `timeout`. Istio sets Envoy's `max_grpc_timeout` to the route timeout (0,
/// no cap, when the route has none), so the header is honoured up to it; a
/// call without the header keeps the route timeout.
pub fn grpc_call_timeout(
    route: Option<Duration>,
    grpc_timeout: Option<Duration>,
) -> Option<Duration> {
    match (route, grpc_timeout) {
        (Some(r), Some(g)) => Some(r.min(g)),
        (r, g) => r.or(g),
    }
}

impl From<Option<Instant>> for Deadline {
    fn from(at: Option<Instant>) -> Self {
        Deadline(at)
    }
}

impl From<Deadline> for Option<Instant> {
    fn from(d: Deadline) -> Self {
        d.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::time::advance;

    const SEC: Duration = Duration::from_secs(1);

    #[tokio::test(start_paused = true)]
    async fn no_timeout_never_expires() {
        let d = Deadline::start(None, Instant::now());
        assert_eq!(d, Deadline::NONE);
        advance(SEC * 3600).await;
        assert!(!d.expired(Instant::now()));
        assert_eq!(d.remaining(Instant::now()), None);
        assert_eq!(d.clip(SEC * 5, Instant::now()), SEC * 5);
    }

    #[tokio::test(start_paused = true)]
    async fn route_timeout_counts_down_from_the_start() {
        let d = Deadline::start(Some(SEC * 2), Instant::now());
        assert_eq!(d.remaining(Instant::now()), Some(SEC * 2));
        advance(Duration::from_millis(1500)).await;
        assert_eq!(
            d.remaining(Instant::now()),
            Some(Duration::from_millis(500))
        );
        assert!(!d.expired(Instant::now()));
        advance(Duration::from_millis(500)).await;
        assert!(d.expired(Instant::now()), "expired exactly at the deadline");
        advance(SEC).await;
        assert_eq!(d.remaining(Instant::now()), Some(Duration::ZERO));
    }

    #[tokio::test(start_paused = true)]
    async fn a_wait_is_clipped_to_the_time_left() {
        let d = Deadline::start(Some(SEC), Instant::now());
        advance(Duration::from_millis(900)).await;
        let now = Instant::now();
        assert_eq!(d.clip(SEC, now), Duration::from_millis(100));
        assert_eq!(
            d.clip(Duration::from_millis(40), now),
            Duration::from_millis(40)
        );
        advance(SEC).await;
        assert_eq!(d.clip(SEC, Instant::now()), Duration::ZERO);
    }

    #[tokio::test(start_paused = true)]
    async fn attempt_timeout_is_the_tighter_of_per_try_and_route() {
        let ms = Duration::from_millis;
        let now = Instant::now();
        let route = Deadline::start(Some(SEC), now);
        // (row, deadline, per-try, elapsed, want)
        type Row = (
            &'static str,
            Deadline,
            Option<Duration>,
            Duration,
            Option<Duration>,
        );
        let rows: &[Row] = &[
            ("neither", Deadline::NONE, None, ms(0), None),
            (
                "per-try only",
                Deadline::NONE,
                Some(ms(250)),
                ms(0),
                Some(ms(250)),
            ),
            ("route only", route, None, ms(300), Some(ms(700))),
            (
                "per-try tighter",
                route,
                Some(ms(250)),
                ms(300),
                Some(ms(250)),
            ),
            (
                "route tighter",
                route,
                Some(ms(250)),
                ms(900),
                Some(ms(100)),
            ),
            (
                "spent route stays positive",
                route,
                Some(ms(250)),
                ms(2000),
                Some(ms(1)),
            ),
            (
                "zero per-try stays positive",
                Deadline::NONE,
                Some(ms(0)),
                ms(0),
                Some(ms(1)),
            ),
        ];
        for (name, deadline, per_try, elapsed, want) in rows {
            assert_eq!(
                deadline.attempt_timeout(*per_try, now + *elapsed),
                *want,
                "{name}"
            );
        }
    }

    #[test]
    fn parses_grpc_timeout_units() {
        let rows: &[(&str, Option<Duration>)] = &[
            ("100m", Some(Duration::from_millis(100))),
            ("2S", Some(SEC * 2)),
            ("1H", Some(SEC * 3600)),
            ("3M", Some(SEC * 180)),
            ("250u", Some(Duration::from_micros(250))),
            ("99999999n", Some(Duration::from_nanos(99_999_999))),
            ("0m", Some(Duration::ZERO)),
            // Malformed: more than 8 digits, no digits, unknown unit, sign, empty.
            ("123456789m", None),
            ("m", None),
            ("10x", None),
            ("-1S", None),
            ("1.5S", None),
            ("", None),
        ];
        for (value, want) in rows {
            assert_eq!(parse_grpc_timeout(value), *want, "{value:?}");
        }
    }

    #[test]
    fn formats_grpc_timeout_rounding_up() {
        assert_eq!(format_grpc_timeout(Duration::from_millis(250)), "250m");
        assert_eq!(format_grpc_timeout(Duration::from_micros(1500)), "2m");
        assert_eq!(format_grpc_timeout(SEC * 200_000), "200000S");
    }

    /// Istio's `max_grpc_timeout` = the route timeout (none: no cap).
    #[test]
    fn grpc_timeout_is_capped_by_the_route_timeout() {
        let ms = Duration::from_millis;
        let rows = [
            ("header only", None, Some(ms(100)), Some(ms(100))),
            ("route only", Some(SEC), None, Some(SEC)),
            ("header shorter", Some(SEC), Some(ms(100)), Some(ms(100))),
            ("route shorter", Some(ms(100)), Some(SEC), Some(ms(100))),
            ("neither", None, None, None),
        ];
        for (name, route, header, want) in rows {
            assert_eq!(grpc_call_timeout(route, header), want, "{name}");
        }
    }

    #[test]
    fn converts_to_and_from_the_context_field() {
        let at = Instant::now();
        assert_eq!(Deadline::from(Some(at)).at(), Some(at));
        assert_eq!(Option::<Instant>::from(Deadline::NONE), None);
    }
}
