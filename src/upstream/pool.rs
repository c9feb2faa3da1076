//! Connection-pool limits (DestinationRule `connectionPool`), enforced as
//! Envoy's circuit breakers are: a request beyond the active limit waits in
//! a bounded pending queue; beyond that it fails at once with 503, flag UO
//! and `x-envoy-overloaded: true`. Retries have their own concurrency cap.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::cluster_name::ClusterName;

/// DestinationRule `trafficPolicy.connectionPool`, compiled. `None` = Envoy's
/// default (effectively unlimited).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConnectionPool {
    /// `tcp.maxConnections`: caps concurrent HTTP/1 requests (one per connection).
    pub max_connections: Option<u32>,
    /// `tcp.connectTimeout` (default 10 s).
    pub connect_timeout: Option<Duration>,
    /// `tcp.maxConnectionDuration`.
    pub max_connection_duration: Option<Duration>,
    /// `http.http1MaxPendingRequests`: requests allowed to wait for a slot.
    pub http1_max_pending_requests: Option<u32>,
    /// `http.http2MaxRequests`: concurrent requests to the destination.
    pub http2_max_requests: Option<u32>,
    /// `http.maxRequestsPerConnection`.
    pub max_requests_per_connection: Option<u32>,
    /// `http.maxRetries`: concurrent retries to the destination.
    pub max_retries: Option<u32>,
    /// `http.idleTimeout`: idle upstream connections are closed after this.
    pub idle_timeout: Option<Duration>,
}

/// Why a request was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Overflow {
    /// Active and pending limits both full (Envoy `upstream_rq_pending_overflow`).
    Pending,
    /// The concurrent-retry cap is reached (Envoy `upstream_rq_retry_overflow`).
    Retry,
}

impl Overflow {
    pub fn as_str(self) -> &'static str {
        match self {
            Overflow::Pending => "pending",
            Overflow::Retry => "retry",
        }
    }
}

#[derive(Debug)]
struct LimiterState {
    limits: ConnectionPool,
    /// Concurrent requests allowed; `None` = unlimited.
    active: Option<Arc<Semaphore>>,
    retries: Option<Arc<Semaphore>>,
}

/// Runtime breaker state of one destination (cluster).
#[derive(Debug)]
pub struct PoolLimiter {
    pub cluster: ClusterName,
    state: ArcSwap<LimiterState>,
    pending: AtomicU64,
}

/// Holds a request's (or retry's) slot; released on drop.
#[derive(Debug)]
pub struct PoolGuard {
    _permit: Option<OwnedSemaphorePermit>,
}

impl PoolLimiter {
    pub fn new(cluster: ClusterName, limits: ConnectionPool) -> Self {
        Self {
            cluster,
            state: ArcSwap::from_pointee(state_for(limits)),
            pending: AtomicU64::new(0),
        }
    }

    /// Applies new limits (a reload). In-flight requests keep the slots they
    /// hold in the old semaphore; new requests use the new limits.
    pub fn update(&self, limits: ConnectionPool) {
        if self.state.load().limits != limits {
            self.state.store(Arc::new(state_for(limits)));
        }
    }

    pub fn limits(&self) -> ConnectionPool {
        self.state.load().limits.clone()
    }

    /// Admits one request. `http1` says whether the upstream protocol is
    /// HTTP/1 (where `maxConnections` also caps concurrency).
    pub async fn admit(&self) -> Result<PoolGuard, Overflow> {
        let state = self.state.load_full();
        let Some(active) = state.active.clone() else {
            return Ok(PoolGuard { _permit: None });
        };
        if let Ok(permit) = active.clone().try_acquire_owned() {
            return Ok(PoolGuard {
                _permit: Some(permit),
            });
        }
        // Full: wait in the pending queue if it has room.
        let max_pending = state
            .limits
            .http1_max_pending_requests
            .map_or(u64::MAX, u64::from);
        if self.pending.fetch_add(1, Ordering::AcqRel) >= max_pending {
            self.pending.fetch_sub(1, Ordering::AcqRel);
            return Err(Overflow::Pending);
        }
        let permit = active.acquire_owned().await;
        self.pending.fetch_sub(1, Ordering::AcqRel);
        match permit {
            Ok(p) => Ok(PoolGuard { _permit: Some(p) }),
            // The semaphore is never closed; treat it as overflow if it were.
            Err(_) => Err(Overflow::Pending),
        }
    }

    /// Admits one retry under `maxRetries`, without waiting.
    pub fn admit_retry(&self) -> Result<PoolGuard, Overflow> {
        let state = self.state.load();
        match &state.retries {
            None => Ok(PoolGuard { _permit: None }),
            Some(s) => s
                .clone()
                .try_acquire_owned()
                .map(|p| PoolGuard { _permit: Some(p) })
                .map_err(|_| Overflow::Retry),
        }
    }

    /// Requests currently waiting for a slot.
    pub fn pending(&self) -> u64 {
        self.pending.load(Ordering::Acquire)
    }
}

fn state_for(limits: ConnectionPool) -> LimiterState {
    // Envoy applies `max_requests` to every protocol and, for HTTP/1, one
    // request per connection makes `max_connections` a concurrency cap too.
    let active = match (limits.max_connections, limits.http2_max_requests) {
        (None, None) => None,
        (a, b) => Some(a.unwrap_or(u32::MAX).min(b.unwrap_or(u32::MAX))),
    };
    LimiterState {
        active: active.map(|n| Arc::new(Semaphore::new(permits(n)))),
        retries: limits
            .max_retries
            .map(|n| Arc::new(Semaphore::new(permits(n)))),
        limits,
    }
}

fn permits(n: u32) -> usize {
    (n as usize).min(Semaphore::MAX_PERMITS)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter(max_connections: u32, pending: u32) -> PoolLimiter {
        PoolLimiter::new(
            ClusterName::new(80, None, "svc"),
            ConnectionPool {
                max_connections: Some(max_connections),
                http1_max_pending_requests: Some(pending),
                max_retries: Some(1),
                ..Default::default()
            },
        )
    }

    #[tokio::test]
    async fn beyond_active_and_pending_limits_overflows() {
        let l = Arc::new(limiter(1, 1));
        let first = l.admit().await.expect("slot");
        // The second waits in the pending queue.
        let l2 = l.clone();
        let waiting = tokio::spawn(async move { l2.admit().await.map(|_| ()) });
        while l.pending() == 0 {
            tokio::task::yield_now().await;
        }
        // The third finds both full.
        assert_eq!(l.admit().await.unwrap_err(), Overflow::Pending);
        drop(first);
        assert_eq!(waiting.await.unwrap(), Ok(()));
        assert_eq!(l.pending(), 0);
    }

    #[test]
    fn retries_have_their_own_cap() {
        let l = limiter(10, 10);
        let r = l.admit_retry().expect("one retry allowed");
        assert_eq!(l.admit_retry().unwrap_err(), Overflow::Retry);
        drop(r);
        assert!(l.admit_retry().is_ok());
    }

    #[tokio::test]
    async fn no_limits_means_no_waiting() {
        let l = PoolLimiter::new(ClusterName::new(80, None, "svc"), ConnectionPool::default());
        let guards: Vec<_> = admit_n(&l, 100).await;
        assert_eq!(guards.len(), 100);
    }

    async fn admit_n(l: &PoolLimiter, n: usize) -> Vec<PoolGuard> {
        let mut v = Vec::new();
        for _ in 0..n {
            v.push(l.admit().await.unwrap());
        }
        v
    }
}
