//! Retry policy with Envoy's `retry_on` vocabulary (Istio's `retryOn`) and
//! its backoff: exponential from a base interval (25 ms unless configured),
//! capped at 10× the base, with full jitter.

use std::time::Duration;

use rand::Rng;

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
                        | "internal"
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
        }
    }

    /// Delay before retry number `retry` (1-based): full jitter over an
    /// exponentially growing window, capped (Envoy's algorithm).
    pub fn backoff(&self, retry: u32) -> Duration {
        let exp = retry.saturating_sub(1).min(16);
        let window = self
            .backoff_base
            .saturating_mul(1u32 << exp)
            .min(self.backoff_max);
        let nanos = window.as_nanos().min(u64::MAX as u128) as u64;
        if nanos == 0 {
            return Duration::ZERO;
        }
        Duration::from_nanos(rand::rng().random_range(0..=nanos))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_istio_retry_on_with_bare_codes() {
        let (on, codes) = RetryOn::parse("5xx, connect-failure,429,retriable-4xx").unwrap();
        assert!(on.contains(RetryOn::FIVE_XX));
        assert!(on.contains(RetryOn::CONNECT_FAILURE));
        assert!(on.contains(RetryOn::RETRIABLE_STATUS_CODES));
        assert_eq!(codes, vec![429]);
        assert!(RetryOn::parse("5xx,bogus").unwrap_err().contains("bogus"));
        assert!(RetryOn::parse("999").is_err());
    }

    #[test]
    fn which_failures_retry() {
        let p = |s: &str| {
            let (retry_on, retriable_status_codes) = RetryOn::parse(s).unwrap();
            RetryPolicy {
                retry_on,
                retriable_status_codes,
                ..RetryPolicy::default()
            }
        };
        use AttemptFailure::*;
        let rows: &[(&str, AttemptFailure, bool)] = &[
            ("5xx", Status(500), true),
            ("5xx", Status(404), false),
            ("5xx", ConnectFailure, true),
            ("gateway-error", Status(503), true),
            ("gateway-error", Status(500), false),
            ("reset", Reset, true),
            ("reset", Status(503), false),
            ("connect-failure", ConnectFailure, true),
            ("connect-failure", Reset, false),
            ("retriable-4xx", Status(409), true),
            ("retriable-4xx", Status(400), false),
            ("418", Status(418), true),
            ("418", Status(503), false),
        ];
        for (on, failure, want) in rows {
            assert_eq!(p(on).retries(*failure), *want, "retryOn {on} {failure:?}");
        }
        // Istio's default policy.
        let d = RetryPolicy::default();
        assert_eq!(d.attempts, 2);
        assert!(d.retries(ConnectFailure));
        assert!(d.retries(Status(503)));
        assert!(!d.retries(Status(500)));
        assert!(!d.retries(Reset));
    }

    #[test]
    fn backoff_is_jittered_within_an_exponential_capped_window() {
        let p = RetryPolicy::default();
        for retry in 1..=8 {
            let window = (DEFAULT_BACKOFF * (1 << (retry - 1))).min(DEFAULT_BACKOFF * 10);
            for _ in 0..50 {
                assert!(p.backoff(retry) <= window, "retry {retry}");
            }
        }
    }
}
