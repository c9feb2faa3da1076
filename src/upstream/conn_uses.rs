//! The history of the upstream connections Pingora's own connector pool keeps
//! for the full proxy, so the cluster's `maxRequestsPerConnection` and
//! `maxConnectionDuration` apply to them as they do to the fast path's pool
//! and to kept HBONE tunnels.
//!
//! Pingora reuses a pooled connection by itself and tells the proxy only
//! whether it did (`connected_to_upstream`: `reused` and the socket's fd). A
//! live connection's fd is unique in the process, and a new connection that
//! gets a recycled fd arrives with `reused == false`, which starts its history
//! afresh: so the fd is the key, and the map never holds more entries than the
//! process has ever had descriptors.
//!
//! What the proxy then does with the verdict: an HTTP/1.1 request that is its
//! connection's last goes out with `Connection: close` (Pingora's pool then
//! drops the connection after the response); an HTTP/2 connection cannot be
//! told that per request, so its endpoint's pool *generation* moves on and the
//! next request's peer gets a new Pingora pool key (a new connection), while
//! the spent one finishes its streams and idles out.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::os::unix::io::RawFd;
use std::sync::Mutex;

use tokio::time::Instant;

use crate::policy::conn_reuse::{ConnUse, ReuseLimits};

/// Connection histories by fd, and HTTP/2 pool generations by endpoint.
#[derive(Debug, Default)]
pub struct PooledConnUses {
    by_fd: Mutex<HashMap<RawFd, ConnUse>>,
    generations: Mutex<HashMap<SocketAddr, u64>>,
}

impl PooledConnUses {
    /// A request is about to be sent on the connection `fd` (`reused` when
    /// Pingora took it from its pool). `true` when this must be the
    /// connection's last request: it reached `maxRequestsPerConnection` with
    /// this one, or `maxConnectionDuration` while it was idle.
    pub fn on_request(&self, fd: RawFd, reused: bool, limits: ReuseLimits) -> bool {
        if limits.is_unlimited() || fd < 0 {
            return false;
        }
        let now = Instant::now();
        let mut by_fd = self.by_fd.lock().unwrap_or_else(|p| p.into_inner());
        if !reused {
            by_fd.insert(fd, ConnUse::opened_at(now));
        }
        let conn = by_fd
            .entry(fd)
            // Reused, but opened before the limits applied: counts from now.
            .or_insert_with(|| ConnUse::opened_at(now));
        let too_old = limits.is_too_old(conn, now);
        conn.count_request();
        let last = too_old || limits.is_last_request(conn);
        if last {
            by_fd.remove(&fd);
        }
        last
    }

    /// The pool generation of HTTP/2 connections to `addr` (0 until one is
    /// spent).
    pub fn generation(&self, addr: SocketAddr) -> u64 {
        let generations = self.generations.lock().unwrap_or_else(|p| p.into_inner());
        generations.get(&addr).copied().unwrap_or(0)
    }

    /// The HTTP/2 connection to `addr` in generation `spent` took its last
    /// request: later requests go to a new connection.
    pub fn retire_generation(&self, addr: SocketAddr, spent: u64) {
        let mut generations = self.generations.lock().unwrap_or_else(|p| p.into_inner());
        let current = generations.entry(addr).or_insert(0);
        // Concurrent streams may each see the limit; move on once per generation.
        if *current == spent {
            *current += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    const TWO: ReuseLimits = ReuseLimits {
        max_requests: Some(2),
        max_age: None,
    };

    #[test]
    fn every_second_request_on_a_connection_is_its_last() {
        let uses = PooledConnUses::default();
        assert!(
            !uses.on_request(7, false, TWO),
            "new connection, 1st request"
        );
        assert!(
            uses.on_request(7, true, TWO),
            "reused, 2nd request: the last"
        );
        assert!(
            !uses.on_request(7, false, TWO),
            "fd 7 again is a new connection"
        );
        assert!(
            !uses.on_request(8, false, TWO),
            "other connections count apart"
        );
    }

    #[test]
    fn unlimited_clusters_are_not_tracked() {
        let uses = PooledConnUses::default();
        for _ in 0..3 {
            assert!(!uses.on_request(7, true, ReuseLimits::default()));
        }
        assert!(uses.by_fd.lock().unwrap().is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn a_reused_connection_past_its_age_carries_one_last_request() {
        let uses = PooledConnUses::default();
        let ten_secs = ReuseLimits {
            max_requests: None,
            max_age: Some(Duration::from_secs(10)),
        };
        assert!(!uses.on_request(7, false, ten_secs));
        tokio::time::advance(Duration::from_secs(5)).await;
        assert!(!uses.on_request(7, true, ten_secs), "5 s old of 10");
        tokio::time::advance(Duration::from_secs(5)).await;
        assert!(
            uses.on_request(7, true, ten_secs),
            "10 s old: closes after this"
        );
    }

    #[test]
    fn a_spent_generation_moves_on_once() {
        let uses = PooledConnUses::default();
        let addr: SocketAddr = "127.0.120.1:80".parse().unwrap();
        assert_eq!(uses.generation(addr), 0);
        uses.retire_generation(addr, 0);
        uses.retire_generation(addr, 0);
        assert_eq!(
            uses.generation(addr),
            1,
            "two streams saw the limit: one move"
        );
    }
}
