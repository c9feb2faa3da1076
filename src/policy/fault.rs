//! Fault injection (VirtualService `fault`): delay and/or abort a share of
//! requests after the route matched, flags DI and FI. This module draws the
//! faults of one request (pure given the random source); applying them, in
//! Envoy's order (delay, then abort), is [`super::admission::admit`]'s job.

use std::time::Duration;

use rand::Rng;

/// The share of requests to sample, 0–100: the runtime form of `config::Percent`
/// (Istio's `percentage.value`, a double).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SamplePercent(pub f64);

impl SamplePercent {
    /// Draws whether this request falls in the share.
    pub fn sample(self) -> bool {
        self.sample_with(&mut rand::rng())
    }

    /// [`Self::sample`] with the random source supplied. 0 % and 100 % (and
    /// beyond) are decided without drawing.
    pub fn sample_with(self, rng: &mut impl Rng) -> bool {
        if self.0 >= 100.0 {
            return true;
        }
        if self.0 <= 0.0 {
            return false;
        }
        rng.random_range(0.0..100.0) < self.0
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
    pub delay: Option<(Duration, SamplePercent)>,
    pub abort: Option<(Abort, SamplePercent)>,
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
        self.draw_with(&mut rand::rng())
    }

    /// [`Self::draw`] with the random source supplied.
    pub fn draw_with(&self, rng: &mut impl Rng) -> FaultAction {
        FaultAction {
            delay: self
                .delay
                .and_then(|(d, p)| p.sample_with(rng).then_some(d)),
            abort: self
                .abort
                .and_then(|(a, p)| p.sample_with(rng).then_some(a)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    const DELAY: Duration = Duration::from_millis(5);

    fn rng() -> StdRng {
        StdRng::seed_from_u64(0xfa017)
    }

    #[test]
    fn percentages_hold_over_many_draws() {
        let policy = FaultPolicy {
            delay: Some((DELAY, SamplePercent(30.0))),
            abort: Some((Abort::Http(503), SamplePercent(10.0))),
        };
        let mut rng = rng();
        let n = 20_000;
        let (mut delayed, mut aborted, mut both) = (0, 0, 0);
        for _ in 0..n {
            let a = policy.draw_with(&mut rng);
            delayed += a.delay.is_some() as usize;
            aborted += a.abort.is_some() as usize;
            both += (a.delay.is_some() && a.abort.is_some()) as usize;
        }
        let share = |k: usize| k as f64 / n as f64;
        assert!((share(delayed) - 0.30).abs() < 0.02, "{}", share(delayed));
        assert!((share(aborted) - 0.10).abs() < 0.02, "{}", share(aborted));
        // Drawn independently: about 30 % of 10 % are both delayed and aborted.
        assert!((share(both) - 0.03).abs() < 0.01, "{}", share(both));
    }

    #[test]
    fn zero_and_full_shares_are_certain() {
        let mut rng = rng();
        for _ in 0..1000 {
            assert!(SamplePercent(100.0).sample_with(&mut rng));
            assert!(SamplePercent(150.0).sample_with(&mut rng));
            assert!(!SamplePercent(0.0).sample_with(&mut rng));
            assert!(!SamplePercent(-1.0).sample_with(&mut rng));
        }
        assert!(SamplePercent(100.0).sample());
        assert!(!SamplePercent(0.0).sample());
    }

    #[test]
    fn a_tiny_share_is_not_rounded_away() {
        // Istio's percentage is a double: 0.1 % must fire now and then.
        let mut rng = rng();
        let hits = (0..100_000)
            .filter(|_| SamplePercent(0.1).sample_with(&mut rng))
            .count();
        assert!((50..150).contains(&hits), "{hits}");
    }

    #[test]
    fn each_action_carries_the_configured_fault() {
        let policy = FaultPolicy {
            delay: Some((DELAY, SamplePercent(100.0))),
            abort: Some((Abort::Grpc(14), SamplePercent(100.0))),
        };
        assert_eq!(
            policy.draw_with(&mut rng()),
            FaultAction {
                delay: Some(DELAY),
                abort: Some(Abort::Grpc(14)),
            }
        );
        let delay_only = FaultPolicy {
            delay: Some((DELAY, SamplePercent(100.0))),
            abort: None,
        };
        assert_eq!(
            delay_only.draw_with(&mut rng()),
            FaultAction {
                delay: Some(DELAY),
                abort: None,
            }
        );
        let never = FaultPolicy {
            delay: Some((DELAY, SamplePercent(0.0))),
            abort: Some((Abort::Http(503), SamplePercent(0.0))),
        };
        assert_eq!(never.draw(), FaultAction::default());
    }

    #[test]
    fn the_same_seed_draws_the_same_faults() {
        let policy = FaultPolicy {
            delay: Some((DELAY, SamplePercent(50.0))),
            abort: Some((Abort::Http(500), SamplePercent(50.0))),
        };
        let draws = |mut rng: StdRng| -> Vec<FaultAction> {
            (0..64).map(|_| policy.draw_with(&mut rng)).collect()
        };
        assert_eq!(draws(rng()), draws(rng()));
    }
}
