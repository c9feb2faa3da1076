//! When to renew, and the task that does it.
//!
//! The schedule is pure arithmetic on the certificate's own validity (tested without a
//! clock): renew at 80 % of the lifetime, up to 2 % earlier at random so a fleet of waypoints
//! started together does not renew together. A failed renewal is retried with exponential
//! backoff (1 s doubling to 30 s) for as long as it takes; the current certificate keeps
//! serving meanwhile, and the logs turn from warnings to errors once it has expired.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::task::JoinHandle;
use tracing::{error, info, warn};

use super::super::store::IdentityStore;
use super::client::{CaClient, Validity};
use super::error::CaError;
use super::files::provision;

/// Fraction of the lifetime after which a certificate is renewed.
pub const RENEW_AT: f64 = 0.8;
/// Largest fraction of the lifetime the renewal is moved earlier by, at random.
pub const RENEW_JITTER: f64 = 0.02;
/// Shortest wait before a renewal, so a CA handing out (nearly) expired certificates is not
/// called in a tight loop.
const MIN_RENEW_DELAY: Duration = Duration::from_secs(1);
/// First retry delay after a failed renewal; doubles per attempt.
const RETRY_INITIAL: Duration = Duration::from_secs(1);
/// Longest retry delay.
const RETRY_MAX: Duration = Duration::from_secs(30);

/// How long to wait at `now` before renewing a certificate valid for `validity`.
///
/// The renewal point is `not_before + lifetime × (0.8 − 0.02 × jitter)`, with `jitter` in
/// `[0, 1]` (clamped). A point already past gives the minimum delay of one second.
pub fn renewal_delay(validity: Validity, now: SystemTime, jitter: f64) -> Duration {
    let lifetime = validity
        .not_after
        .duration_since(validity.not_before)
        .unwrap_or_default();
    let fraction = RENEW_AT - RENEW_JITTER * jitter.clamp(0.0, 1.0);
    let renew_at = validity.not_before + lifetime.mul_f64(fraction);
    renew_at
        .duration_since(now)
        .unwrap_or_default()
        .max(MIN_RENEW_DELAY)
}

/// The wait before retry number `attempt` (0-based) of a failed renewal: 1 s, 2 s, 4 s, …,
/// at most 30 s.
pub fn retry_delay(attempt: u32) -> Duration {
    RETRY_INITIAL
        .saturating_mul(2u32.saturating_pow(attempt))
        .min(RETRY_MAX)
}

/// Keeps the renewal task alive; dropping it stops renewing.
#[derive(Debug)]
pub struct CertRenewer {
    task: JoinHandle<()>,
}

impl Drop for CertRenewer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub(super) fn spawn(client: CaClient, store: Arc<IdentityStore>, current: Validity) -> CertRenewer {
    CertRenewer {
        task: tokio::spawn(renew_loop(client, store, current)),
    }
}

async fn renew_loop(client: CaClient, store: Arc<IdentityStore>, mut current: Validity) {
    loop {
        let delay = renewal_delay(current, SystemTime::now(), rand::random::<f64>());
        info!(in_s = delay.as_secs(), ca = %client.address(), "certificate renewal scheduled");
        tokio::time::sleep(delay).await;
        let mut attempt = 0;
        current = loop {
            match renew_once(&client, &store).await {
                Ok(validity) => break validity,
                Err(e) => {
                    let wait = retry_delay(attempt);
                    attempt = attempt.saturating_add(1);
                    if SystemTime::now() < current.not_after {
                        warn!(error = %e, retry_in_ms = wait.as_millis() as u64, "certificate renewal failed; the current certificate stays in use");
                    } else {
                        error!(error = %e, retry_in_ms = wait.as_millis() as u64, "certificate renewal failed and the current certificate has expired; HBONE handshakes will fail until a renewal succeeds");
                    }
                    tokio::time::sleep(wait).await;
                }
            }
        };
    }
}

/// One renewal: a new certificate into the directory, then the store reloaded from it.
async fn renew_once(client: &CaClient, store: &IdentityStore) -> Result<Validity, CaError> {
    let validity = provision(client, store.cert_dir()).await?;
    store.reload()?;
    Ok(validity)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000 + secs)
    }

    fn valid(from: u64, to: u64) -> Validity {
        Validity {
            not_before: at(from),
            not_after: at(to),
        }
    }

    #[test]
    fn renews_at_eighty_percent_of_the_lifetime() {
        // A 24 h certificate issued now: renew after 19.2 h.
        let day = valid(0, 86_400);
        assert_eq!(renewal_delay(day, at(0), 0.0), Duration::from_secs(69_120));
        // Asked later, the wait is shorter by as much.
        assert_eq!(
            renewal_delay(day, at(60_000), 0.0),
            Duration::from_secs(9_120)
        );
        // A CA that back-dates notBefore by 5 min moves the point with it.
        let backdated = valid(0, 86_700);
        assert_eq!(
            renewal_delay(backdated, at(300), 0.0),
            Duration::from_secs(69_360 - 300)
        );
    }

    #[test]
    fn jitter_moves_renewal_earlier_by_at_most_two_percent() {
        let day = valid(0, 86_400);
        // 78 % of a day.
        assert_eq!(renewal_delay(day, at(0), 1.0), Duration::from_secs(67_392));
        let half = renewal_delay(day, at(0), 0.5);
        assert!(half > Duration::from_secs(67_392) && half < Duration::from_secs(69_120));
        // Out-of-range jitter is clamped.
        assert_eq!(renewal_delay(day, at(0), 7.0), Duration::from_secs(67_392));
        assert_eq!(renewal_delay(day, at(0), -1.0), Duration::from_secs(69_120));
    }

    #[test]
    fn past_or_degenerate_validity_waits_the_minimum() {
        assert_eq!(renewal_delay(valid(0, 10), at(9), 0.0), MIN_RENEW_DELAY);
        assert_eq!(renewal_delay(valid(0, 10), at(100), 0.0), MIN_RENEW_DELAY);
        // notAfter before notBefore: no lifetime, renew right away.
        assert_eq!(renewal_delay(valid(10, 0), at(10), 0.0), MIN_RENEW_DELAY);
    }

    #[test]
    fn short_test_certificates_renew_before_they_expire() {
        // A 4 s certificate: renewal 3.2 s after notBefore.
        assert_eq!(
            renewal_delay(valid(0, 4), at(0), 0.0),
            Duration::from_millis(3_200)
        );
    }

    #[test]
    fn retries_back_off_exponentially_up_to_thirty_seconds() {
        let delays: Vec<u64> = (0..8).map(|a| retry_delay(a).as_secs()).collect();
        assert_eq!(delays, [1, 2, 4, 8, 16, 30, 30, 30]);
        assert_eq!(retry_delay(u32::MAX), RETRY_MAX);
    }
}
