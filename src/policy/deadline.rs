//! The route deadline: a matched route's `timeout` (VirtualService
//! `timeout`, HTTPRoute `timeouts.request`) turned into an instant that
//! bounds every attempt, every backoff and the wait for a pool slot.
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
    fn converts_to_and_from_the_context_field() {
        let at = Instant::now();
        assert_eq!(Deadline::from(Some(at)).at(), Some(at));
        assert_eq!(Option::<Instant>::from(Deadline::NONE), None);
    }
}
