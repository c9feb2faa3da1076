//! Fault injection (VirtualService `fault`): delay and/or abort a share of
//! requests after the route matched, flags DI and FI.

use std::time::Duration;

use rand::Rng;

/// A share of requests, 0–100 (Istio's `percentage.value`, a double).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Percentage(pub f64);

impl Percentage {
    /// Draws whether this request falls in the share.
    pub fn sample(self) -> bool {
        if self.0 >= 100.0 {
            return true;
        }
        if self.0 <= 0.0 {
            return false;
        }
        rand::rng().random_range(0.0..100.0) < self.0
    }
}

/// How an aborted request is answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Abort {
    /// This HTTP status.
    Http(u16),
    /// HTTP 200 with `grpc-status` (Envoy answers gRPC aborts as trailers-only).
    Grpc(u32),
}

/// A route's fault injection.
#[derive(Debug, Clone, PartialEq)]
pub struct FaultPolicy {
    pub delay: Option<(Duration, Percentage)>,
    pub abort: Option<(Abort, Percentage)>,
}

/// What to do to one request, drawn from a [`FaultPolicy`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FaultAction {
    pub delay: Option<Duration>,
    pub abort: Option<Abort>,
}

impl FaultPolicy {
    /// Draws this request's faults; delay and abort are drawn independently,
    /// and a delayed request may still be aborted (Envoy delays first).
    pub fn draw(&self) -> FaultAction {
        FaultAction {
            delay: self.delay.and_then(|(d, p)| p.sample().then_some(d)),
            abort: self.abort.and_then(|(a, p)| p.sample().then_some(a)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentages_hold_over_many_draws() {
        let policy = FaultPolicy {
            delay: Some((Duration::from_millis(5), Percentage(30.0))),
            abort: Some((Abort::Http(503), Percentage(10.0))),
        };
        let n = 20_000;
        let (mut delayed, mut aborted) = (0, 0);
        for _ in 0..n {
            let a = policy.draw();
            delayed += a.delay.is_some() as usize;
            aborted += a.abort.is_some() as usize;
        }
        let share = |k: usize| k as f64 / n as f64;
        assert!((share(delayed) - 0.30).abs() < 0.02, "{}", share(delayed));
        assert!((share(aborted) - 0.10).abs() < 0.02, "{}", share(aborted));
        assert!(Percentage(100.0).sample());
        assert!(!Percentage(0.0).sample());
    }
}
