//! Idle upstream HTTP/1.1 connections of the fast path, per endpoint address.
//!
//! Pingora's connector pool checks each reused connection with `getpeername` and
//! watches each idle one with a spawned task; this pool does neither. A
//! connection the upstream closed while idle is found on use, and the request is
//! sent again on a fresh connection (the request has no body, and nothing of the
//! response was read), as Pingora and Envoy do for reused connections.
//!
//! Each connection carries its [`ConnUse`] (opened when, requests carried), so the
//! cluster's `maxRequestsPerConnection` and `maxConnectionDuration` decide whether it
//! is parked again and whether a parked one is taken.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::Duration;

use pingora_core::protocols::Stream;
use tokio::time::Instant;

use crate::policy::conn_reuse::{ConnUse, ReuseLimits};

/// Idle connections kept per address; more are closed when they come back.
const MAX_IDLE_PER_ADDR: usize = 128;

#[derive(Default)]
pub struct IdlePool {
    idle: Mutex<HashMap<SocketAddr, Vec<Idle>>>,
}

struct Idle {
    stream: Stream,
    since: Instant,
    conn: ConnUse,
}

impl IdlePool {
    /// The most recently parked connection to `addr` that has been idle for
    /// less than `idle_timeout` (the cluster's `idleTimeout`) and that `limits`
    /// let take another request, with its history; the others close.
    pub fn take(
        &self,
        addr: SocketAddr,
        idle_timeout: Option<Duration>,
        limits: ReuseLimits,
    ) -> Option<(Stream, ConnUse)> {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        let list = idle.get_mut(&addr)?;
        let now = Instant::now();
        if let Some(limit) = idle_timeout {
            // The oldest are first: drop the expired prefix.
            let fresh = list.partition_point(|i| now.duration_since(i.since) >= limit);
            list.drain(..fresh);
        }
        while let Some(i) = list.pop() {
            if limits.may_reuse(&i.conn, now) {
                return Some((i.stream, i.conn));
            }
        }
        None
    }

    /// Parks a connection whose exchange ended cleanly, unless `limits` say it
    /// has carried its last request (then it closes here).
    pub fn put(&self, addr: SocketAddr, stream: Stream, conn: ConnUse, limits: ReuseLimits) {
        let now = Instant::now();
        if !limits.may_reuse(&conn, now) {
            return;
        }
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        let list = idle.entry(addr).or_default();
        if list.len() < MAX_IDLE_PER_ADDR {
            list.push(Idle {
                stream,
                since: now,
                conn,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stream() -> Stream {
        Box::new(tokio_test_stream())
    }

    fn tokio_test_stream() -> pingora_core::protocols::l4::stream::Stream {
        let (a, _b) = std::os::unix::net::UnixStream::pair().unwrap();
        a.set_nonblocking(true).unwrap();
        tokio::net::UnixStream::from_std(a).unwrap().into()
    }

    #[tokio::test(start_paused = true)]
    async fn newest_first_and_expired_ones_close() {
        let pool = IdlePool::default();
        let a: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let b: SocketAddr = "127.0.0.1:2".parse().unwrap();
        let none = ReuseLimits::default();
        let fresh = || ConnUse::opened_at(Instant::now());
        pool.put(a, stream(), fresh(), none);
        tokio::time::advance(Duration::from_secs(10)).await;
        pool.put(a, stream(), fresh(), none);
        assert!(pool.take(b, None, none).is_none(), "addresses are separate");
        let limit = Some(Duration::from_secs(5));
        assert!(pool.take(a, limit, none).is_some(), "the fresh one");
        assert!(
            pool.take(a, limit, none).is_none(),
            "the one idle for 10 s is past a 5 s idleTimeout"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn spent_and_old_connections_are_not_reused() {
        let pool = IdlePool::default();
        let a: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let two = ReuseLimits {
            max_requests: Some(2),
            max_age: None,
        };
        let mut conn = ConnUse::opened_at(Instant::now());
        conn.count_request();
        conn.count_request();
        pool.put(a, stream(), conn, two);
        assert!(
            pool.take(a, None, two).is_none(),
            "a connection that carried maxRequestsPerConnection is not parked"
        );

        let ten_secs = ReuseLimits {
            max_requests: None,
            max_age: Some(Duration::from_secs(10)),
        };
        pool.put(a, stream(), ConnUse::opened_at(Instant::now()), ten_secs);
        tokio::time::advance(Duration::from_secs(10)).await;
        assert!(
            pool.take(a, None, ten_secs).is_none(),
            "a parked connection reaching maxConnectionDuration closes"
        );
    }
}
