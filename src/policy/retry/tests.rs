use std::time::Duration;

use rand::rngs::StdRng;
use rand::SeedableRng;
use tokio::time::{advance, Instant};

use super::*;

const MS: Duration = Duration::from_millis(1);

fn with_retry_on(s: &str) -> RetryPolicy {
    let (retry_on, retriable_status_codes) = RetryOn::parse(s).unwrap();
    RetryPolicy {
        retry_on,
        retriable_status_codes,
        ..RetryPolicy::default()
    }
}

fn seeded() -> StdRng {
    StdRng::seed_from_u64(0x5eed)
}

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

/// Envoy's `x-envoy-retry-on` semantics, one row per condition and failure.
#[test]
fn which_failures_retry() {
    use AttemptFailure::*;
    let rows: &[(&str, AttemptFailure, bool)] = &[
        ("5xx", Status(500), true),
        ("5xx", Status(599), true),
        ("5xx", Status(404), false),
        ("5xx", ConnectFailure, true),
        ("5xx", Reset, true),
        ("5xx", PerTryTimeout, true),
        ("gateway-error", Status(502), true),
        ("gateway-error", Status(503), true),
        ("gateway-error", Status(504), true),
        ("gateway-error", Status(500), false),
        ("gateway-error", ConnectFailure, true),
        ("gateway-error", Reset, true),
        ("gateway-error", PerTryTimeout, true),
        ("reset", Reset, true),
        ("reset", PerTryTimeout, true),
        ("reset", ConnectFailure, false),
        ("reset", Status(503), false),
        ("connect-failure", ConnectFailure, true),
        ("connect-failure", Reset, false),
        ("connect-failure", PerTryTimeout, false),
        ("connect-failure", Status(503), false),
        ("retriable-4xx", Status(409), true),
        ("retriable-4xx", Status(400), false),
        ("418", Status(418), true),
        ("418", Status(503), false),
        ("418", ConnectFailure, false),
        // Accepted for Envoy compatibility, never triggers here.
        ("refused-stream", Reset, false),
        ("unavailable", Status(503), false),
        // gRPC conditions read the grpc-status of a trailers-only response.
        ("cancelled", Grpc(1), true),
        ("deadline-exceeded", Grpc(4), true),
        ("resource-exhausted", Grpc(8), true),
        ("internal", Grpc(13), true),
        ("unavailable", Grpc(14), true),
        ("unavailable", Grpc(13), false),
        ("cancelled", Grpc(14), false),
        ("5xx", Grpc(14), false),
        ("internal", Grpc(2), false),
        ("unavailable,internal", Grpc(13), true),
    ];
    for (on, failure, want) in rows {
        assert_eq!(
            with_retry_on(on).retries(*failure),
            *want,
            "retryOn {on} {failure:?}"
        );
    }
}

/// Istio's default: `connect-failure,refused-stream,unavailable,cancelled,
/// retriable-status-codes` with 503, 2 attempts.
#[test]
fn istio_default_policy_retries_connect_failures_and_503() {
    use AttemptFailure::*;
    let d = RetryPolicy::default();
    assert_eq!(d.attempts, 2);
    assert!(d.retries(ConnectFailure));
    assert!(d.retries(Status(503)));
    assert!(!d.retries(Status(500)));
    assert!(!d.retries(Status(504)));
    assert!(!d.retries(Reset));
    assert!(!d.retries(PerTryTimeout));
    assert!(!RetryPolicy::none().retries(Status(418)));
    assert_eq!(RetryPolicy::none().attempts, 0);
}

#[test]
fn backoff_window_doubles_from_the_base_up_to_the_cap() {
    let p = RetryPolicy::default(); // 25 ms base, 250 ms cap
    let windows: Vec<_> = (1..=7).map(|r| p.backoff_window(r)).collect();
    assert_eq!(
        windows,
        [25, 50, 100, 200, 250, 250, 250].map(|n| MS * n),
        "25 ms doubling, capped at 10x"
    );
    let p = RetryPolicy {
        backoff_base: MS * 100,
        backoff_max: Duration::from_secs(1),
        ..RetryPolicy::default()
    };
    assert_eq!(p.backoff_window(1), MS * 100);
    assert_eq!(p.backoff_window(4), MS * 800);
    assert_eq!(p.backoff_window(5), Duration::from_secs(1));
    // Huge retry counts neither overflow nor exceed the cap.
    assert_eq!(p.backoff_window(u32::MAX), Duration::from_secs(1));
    assert_eq!(p.backoff_window(0), MS * 100, "retry 0 reads as the first");
}

#[test]
fn backoff_is_full_jitter_over_the_window() {
    let p = RetryPolicy::default();
    let mut rng = seeded();
    for retry in 1..=8 {
        let window = p.backoff_window(retry);
        let draws: Vec<_> = (0..500).map(|_| p.backoff_with(retry, &mut rng)).collect();
        let (min, max) = (draws.iter().min().unwrap(), draws.iter().max().unwrap());
        assert!(*max <= window, "retry {retry}: {max:?} > {window:?}");
        // Full jitter: the draws span the window, from near zero to near its top.
        assert!(*min < window / 10, "retry {retry}: min {min:?}");
        assert!(*max > window * 9 / 10, "retry {retry}: max {max:?}");
    }
    // The thread-local source stays within the same bounds.
    for _ in 0..100 {
        assert!(p.backoff(3) <= MS * 100);
    }
}

#[test]
fn zero_base_means_no_backoff() {
    let p = RetryPolicy {
        backoff_base: Duration::ZERO,
        backoff_max: Duration::ZERO,
        ..RetryPolicy::default()
    };
    assert_eq!(p.backoff_with(3, &mut seeded()), Duration::ZERO);
}

#[tokio::test(start_paused = true)]
async fn decide_follows_retry_on_attempts_and_deadline() {
    use AttemptFailure::*;
    use RetryDecision::*;
    let p = RetryPolicy::default(); // 2 attempts
    let now = Instant::now();
    let deadline = Deadline::start(Some(MS * 100), now);
    // (row, failure, retries made, deadline, elapsed, want)
    let rows: &[(&str, AttemptFailure, u32, Deadline, Duration, RetryDecision)] = &[
        (
            "first failure retries",
            ConnectFailure,
            0,
            Deadline::NONE,
            Duration::ZERO,
            Retry,
        ),
        (
            "second failure retries",
            Status(503),
            1,
            deadline,
            MS * 50,
            Retry,
        ),
        (
            "not in retryOn: no flag",
            Status(500),
            1,
            deadline,
            Duration::ZERO,
            NotRetriable,
        ),
        (
            "not in retryOn even when spent",
            Reset,
            2,
            deadline,
            Duration::ZERO,
            NotRetriable,
        ),
        (
            "attempts spent: URX",
            ConnectFailure,
            2,
            Deadline::NONE,
            Duration::ZERO,
            GiveUp { urx: true },
        ),
        (
            "deadline passed after a retry: URX",
            Status(503),
            1,
            deadline,
            MS * 100,
            GiveUp { urx: true },
        ),
        (
            "deadline passed, never retried: no URX",
            Status(503),
            0,
            deadline,
            MS * 150,
            GiveUp { urx: false },
        ),
    ];
    for (row, failure, made, deadline, elapsed, want) in rows {
        assert_eq!(
            p.decide(*failure, *made, *deadline, now + *elapsed),
            *want,
            "{row}"
        );
    }
    // `attempts: 0` never retries, and never flags URX.
    assert_eq!(
        RetryPolicy {
            attempts: 0,
            ..RetryPolicy::default()
        }
        .decide(ConnectFailure, 0, Deadline::NONE, now),
        GiveUp { urx: false }
    );
}

#[tokio::test(start_paused = true)]
async fn no_retry_once_the_deadline_passed() {
    let p = with_retry_on("5xx");
    let deadline = Deadline::start(Some(MS * 300), Instant::now());
    let failure = AttemptFailure::Status(502);
    assert_eq!(
        p.decide(failure, 1, deadline, Instant::now()),
        RetryDecision::Retry
    );
    advance(MS * 299).await;
    assert_eq!(
        p.decide(failure, 1, deadline, Instant::now()),
        RetryDecision::Retry
    );
    advance(MS).await;
    assert_eq!(
        p.decide(failure, 1, deadline, Instant::now()),
        RetryDecision::GiveUp { urx: true }
    );
}

#[tokio::test(start_paused = true)]
async fn wait_before_attempt_is_backoff_clipped_to_the_deadline() {
    let p = RetryPolicy {
        backoff_base: MS * 100,
        backoff_max: Duration::from_secs(1),
        ..RetryPolicy::default()
    };
    let mut rng = seeded();
    assert_eq!(
        p.wait_before_attempt(0, Deadline::NONE, Instant::now(), &mut rng),
        None,
        "the first attempt does not wait"
    );
    for retry in 1..=4 {
        let wait = p
            .wait_before_attempt(retry, Deadline::NONE, Instant::now(), &mut rng)
            .unwrap();
        assert!(wait <= p.backoff_window(retry), "retry {retry}: {wait:?}");
    }
    // Same random source, same draw: the deadline only cuts it short.
    let deadline = Deadline::start(Some(MS * 500), Instant::now());
    advance(MS * 490).await;
    let unclipped = p.backoff_with(4, &mut seeded());
    assert!(unclipped > MS * 10, "seeded draw {unclipped:?}");
    assert_eq!(
        p.wait_before_attempt(4, deadline, Instant::now(), &mut seeded()),
        Some(MS * 10)
    );
    advance(MS * 10).await;
    assert_eq!(
        p.wait_before_attempt(4, deadline, Instant::now(), &mut seeded()),
        Some(Duration::ZERO),
        "no time left: no wait (the proxy then answers 504)"
    );
}
