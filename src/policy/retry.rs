//! Retry policy with Envoy's `retry_on` vocabulary (Istio's `retryOn`) and
//! the decisions made with it: whether a failed attempt is retried
//! (`retryOn`, attempts left, route deadline; URX when retries ran out) and
//! how long to back off: exponential from a base interval (25 ms unless
//! configured), capped at 10× the base, with full jitter, never past the
//! deadline. Pure: time comes in as `now`, randomness as an `Rng`. The
//! `maxRetries` budget is admission's ([`super::admission`]).

use std::time::Duration;

use rand::Rng;
use tokio::time::Instant;

use super::deadline::Deadline;

/// Conditions that make an attempt retryable (Envoy `x-envoy-retry-on`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RetryOn(u16);

impl RetryOn {
    /// Any 5xx response, and connect failures/resets (Envoy's `5xx`).
    pub const FIVE_XX: RetryOn = RetryOn(1);
    /// 502, 503, 504, and connect failures/resets.
    pub const GATEWAY_ERROR: RetryOn = RetryOn(1 << 1);
    /// Upstream reset / disconnect before the response started.
    pub const RESET: RetryOn = RetryOn(1 << 2);
    /// Connection to the upstream failed.
    pub const CONNECT_FAILURE: RetryOn = RetryOn(1 << 3);
    /// HTTP/2 REFUSED_STREAM.
    pub const REFUSED_STREAM: RetryOn = RetryOn(1 << 4);
    /// 409 (Envoy's retriable 4xx).
    pub const RETRIABLE_4XX: RetryOn = RetryOn(1 << 5);
    /// The codes in [`RetryPolicy::retriable_status_codes`].
    pub const RETRIABLE_STATUS_CODES: RetryOn = RetryOn(1 << 6);
    /// gRPC status `unavailable` (14).
    pub const UNAVAILABLE: RetryOn = RetryOn(1 << 7);
    /// gRPC status `cancelled` (1).
    pub const CANCELLED: RetryOn = RetryOn(1 << 8);
    /// gRPC status `deadline-exceeded` (4).
    pub const DEADLINE_EXCEEDED: RetryOn = RetryOn(1 << 9);
    /// gRPC status `resource-exhausted` (8).
    pub const RESOURCE_EXHAUSTED: RetryOn = RetryOn(1 << 10);
    /// gRPC status `internal` (13).
    pub const INTERNAL: RetryOn = RetryOn(1 << 11);

    const TOKENS: &'static [(&'static str, RetryOn)] = &[
        ("5xx", Self::FIVE_XX),
        ("gateway-error", Self::GATEWAY_ERROR),
        ("reset", Self::RESET),
        ("connect-failure", Self::CONNECT_FAILURE),
        ("refused-stream", Self::REFUSED_STREAM),
        ("retriable-4xx", Self::RETRIABLE_4XX),
        ("retriable-status-codes", Self::RETRIABLE_STATUS_CODES),
        ("unavailable", Self::UNAVAILABLE),
        ("cancelled", Self::CANCELLED),
        ("deadline-exceeded", Self::DEADLINE_EXCEEDED),
        ("resource-exhausted", Self::RESOURCE_EXHAUSTED),
        ("internal", Self::INTERNAL),
    ];

    pub fn contains(self, other: RetryOn) -> bool {
        self.0 & other.0 != 0
    }

    pub fn insert(&mut self, other: RetryOn) {
        self.0 |= other.0;
    }

    /// Parses Istio's comma-separated `retryOn`. Bare status codes (`503`)
    /// become retriable status codes, as Istio translates them.
    pub fn parse(text: &str) -> Result<(RetryOn, Vec<u16>), String> {
        let mut on = RetryOn::default();
        let mut codes = Vec::new();
        for token in text.split(',').map(str::trim).filter(|t| !t.is_empty()) {
            if let Ok(code) = token.parse::<u16>() {
                if !(100..=599).contains(&code) {
                    return Err(format!("retryOn status code {code} is not an HTTP status"));
                }
                on.insert(Self::RETRIABLE_STATUS_CODES);
                codes.push(code);
                continue;
            }
            match Self::TOKENS.iter().find(|(name, _)| *name == token) {
                Some((_, flag)) => on.insert(*flag),
                // Envoy tokens we accept but that never trigger here.
                None if matches!(
                    token,
                    "retriable-headers"
                        | "envoy-ratelimited"
                        | "http3-post-connect-failure"
                        | "retriable-reset-reason"
                ) => {}
                None => return Err(format!("unknown retryOn token {token:?}")),
            }
        }
        Ok((on, codes))
    }
}

impl std::fmt::Display for RetryOn {
    /// Istio's `retryOn` tokens, comma-separated.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let tokens: Vec<&str> = Self::TOKENS
            .iter()
            .filter(|(_, flag)| self.contains(*flag))
            .map(|(name, _)| *name)
            .collect();
        f.write_str(&tokens.join(","))
    }
}

/// What went wrong with one attempt, as far as retrying is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptFailure {
    /// The connection could not be established.
    ConnectFailure,
    /// The upstream reset or closed before a response.
    Reset,
    /// The per-try timeout fired.
    PerTryTimeout,
    /// The upstream answered with this status.
    Status(u16),
    /// The upstream answered a gRPC call with this `grpc-status` in the
    /// response headers (a trailers-only response), as Envoy reads the gRPC
    /// `retryOn` conditions.
    Grpc(u32),
}

/// A route's retry policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Retries after the first attempt.
    pub attempts: u32,
    pub per_try_timeout: Option<Duration>,
    pub retry_on: RetryOn,
    pub retriable_status_codes: Vec<u16>,
    /// Base backoff interval (Envoy: 25 ms).
    pub backoff_base: Duration,
    /// Backoff cap (Envoy: 10× the base).
    pub backoff_max: Duration,
}

/// Envoy's default base retry interval.
pub const DEFAULT_BACKOFF: Duration = Duration::from_millis(25);

impl Default for RetryPolicy {
    /// Istio's default for every route without a policy: 2 retries on
    /// `connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes`
    /// with 503 retriable.
    fn default() -> Self {
        let mut on = RetryOn::CONNECT_FAILURE;
        on.insert(RetryOn::REFUSED_STREAM);
        on.insert(RetryOn::UNAVAILABLE);
        on.insert(RetryOn::CANCELLED);
        on.insert(RetryOn::RETRIABLE_STATUS_CODES);
        Self {
            attempts: 2,
            per_try_timeout: None,
            retry_on: on,
            retriable_status_codes: vec![503],
            backoff_base: DEFAULT_BACKOFF,
            backoff_max: DEFAULT_BACKOFF * 10,
        }
    }
}

impl RetryPolicy {
    /// No retries at all (`attempts: 0`).
    pub fn none() -> Self {
        Self {
            attempts: 0,
            ..Self::default()
        }
    }

    /// Whether an attempt that failed this way may be retried (budget aside).
    pub fn retries(&self, failure: AttemptFailure) -> bool {
        let on = self.retry_on;
        let any = |flags: &[RetryOn]| flags.iter().any(|f| on.contains(*f));
        match failure {
            AttemptFailure::ConnectFailure => any(&[
                RetryOn::CONNECT_FAILURE,
                RetryOn::FIVE_XX,
                RetryOn::GATEWAY_ERROR,
            ]),
            AttemptFailure::Reset => {
                any(&[RetryOn::RESET, RetryOn::FIVE_XX, RetryOn::GATEWAY_ERROR])
            }
            // Envoy treats a per-try timeout as a 5xx/gateway error for retry.
            AttemptFailure::PerTryTimeout => {
                any(&[RetryOn::FIVE_XX, RetryOn::GATEWAY_ERROR, RetryOn::RESET])
            }
            AttemptFailure::Status(code) => {
                (on.contains(RetryOn::FIVE_XX) && (500..600).contains(&code))
                    || (on.contains(RetryOn::GATEWAY_ERROR) && matches!(code, 502..=504))
                    || (on.contains(RetryOn::RETRIABLE_4XX) && code == 409)
                    || (on.contains(RetryOn::RETRIABLE_STATUS_CODES)
                        && self.retriable_status_codes.contains(&code))
            }
            AttemptFailure::Grpc(code) => match code {
                1 => on.contains(RetryOn::CANCELLED),
                4 => on.contains(RetryOn::DEADLINE_EXCEEDED),
                8 => on.contains(RetryOn::RESOURCE_EXHAUSTED),
                13 => on.contains(RetryOn::INTERNAL),
                14 => on.contains(RetryOn::UNAVAILABLE),
                _ => false,
            },
        }
    }

    /// Delay before retry number `retry` (1-based): full jitter over an
    /// exponentially growing window, capped (Envoy's algorithm).
    pub fn backoff(&self, retry: u32) -> Duration {
        self.backoff_with(retry, &mut rand::rng())
    }

    /// [`Self::backoff`] with the random source supplied: uniform over
    /// `0..=`[`Self::backoff_window`]`(retry)`.
    pub fn backoff_with(&self, retry: u32, rng: &mut impl Rng) -> Duration {
        let window = self.backoff_window(retry);
        let nanos = window.as_nanos().min(u64::MAX as u128) as u64;
        if nanos == 0 {
            return Duration::ZERO;
        }
        Duration::from_nanos(rng.random_range(0..=nanos))
    }

    /// The jitter window of retry number `retry` (1-based): the base
    /// interval doubled per retry, capped at `backoff_max` (Envoy's fully
    /// jittered exponential back-off; its max interval defaults to 10× the
    /// base).
    pub fn backoff_window(&self, retry: u32) -> Duration {
        let exp = retry.saturating_sub(1).min(16);
        self.backoff_base
            .saturating_mul(1u32 << exp)
            .min(self.backoff_max)
    }

    /// Whether a failed attempt is retried, `retries_made` retries (attempts
    /// after the first) into the request. The `maxRetries` budget is not
    /// consulted here: see [`super::admission::admit_retry`].
    pub fn decide(
        &self,
        failure: AttemptFailure,
        retries_made: u32,
        deadline: Deadline,
        now: Instant,
    ) -> RetryDecision {
        if !self.retries(failure) {
            return RetryDecision::NotRetriable;
        }
        if retries_made >= self.attempts || deadline.expired(now) {
            // URX (upstream retry limit exceeded) only once a retry was
            // made: a request never retried exceeded no retry limit.
            return RetryDecision::GiveUp {
                urx: retries_made > 0,
            };
        }
        RetryDecision::Retry
    }

    /// How long to wait before the next attempt, `retries_made` retries in
    /// (counting the one about to start): `None` before the first attempt,
    /// else a jittered backoff never running past the deadline.
    pub fn wait_before_attempt(
        &self,
        retries_made: u32,
        deadline: Deadline,
        now: Instant,
        rng: &mut impl Rng,
    ) -> Option<Duration> {
        if retries_made == 0 {
            return None;
        }
        Some(deadline.clip(self.backoff_with(retries_made, rng), now))
    }
}

/// What the retry policy says about a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryDecision {
    /// The policy's `retryOn` does not name this failure: the error (or
    /// response) goes to the client as it is, no flag.
    NotRetriable,
    /// The policy would retry, but the attempts are spent or the route
    /// deadline has passed. `urx`: flag the response URX.
    GiveUp { urx: bool },
    /// Retry, subject to the destination's `maxRetries` budget.
    Retry,
}

#[cfg(test)]
mod tests;
