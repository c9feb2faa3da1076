//! Idle upstream HTTP/1.1 connections of the fast path, per endpoint address.
//!
//! Pingora's connector pool checks each reused connection with `getpeername` and
//! watches each idle one with a spawned task; this pool does neither. A
//! connection the upstream closed while idle is found on use, and the request is
//! sent again on a fresh connection (the request has no body, and nothing of the
//! response was read), as Pingora and Envoy do for reused connections.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::Duration;

use pingora_core::protocols::Stream;
use tokio::time::Instant;

/// Idle connections kept per address; more are closed when they come back.
const MAX_IDLE_PER_ADDR: usize = 128;

#[derive(Default)]
pub struct IdlePool {
    idle: Mutex<HashMap<SocketAddr, Vec<Idle>>>,
}

struct Idle {
    stream: Stream,
    since: Instant,
}

impl IdlePool {
    /// The most recently parked connection to `addr` that has been idle for
    /// less than `idle_timeout` (the cluster's `idleTimeout`); older ones close.
    pub fn take(&self, addr: SocketAddr, idle_timeout: Option<Duration>) -> Option<Stream> {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        let list = idle.get_mut(&addr)?;
        if let Some(limit) = idle_timeout {
            let now = Instant::now();
            // The oldest are first: drop the expired prefix.
            let fresh = list.partition_point(|i| now.duration_since(i.since) >= limit);
            list.drain(..fresh);
        }
        list.pop().map(|i| i.stream)
    }

    /// Parks a connection whose exchange ended cleanly.
    pub fn put(&self, addr: SocketAddr, stream: Stream) {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        let list = idle.entry(addr).or_default();
        if list.len() < MAX_IDLE_PER_ADDR {
            list.push(Idle {
                stream,
                since: Instant::now(),
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
        pool.put(a, stream());
        tokio::time::advance(Duration::from_secs(10)).await;
        pool.put(a, stream());
        assert!(pool.take(b, None).is_none(), "addresses are separate");
        let limit = Some(Duration::from_secs(5));
        assert!(pool.take(a, limit).is_some(), "the fresh one");
        assert!(
            pool.take(a, limit).is_none(),
            "the one idle for 10 s is past a 5 s idleTimeout"
        );
    }
}
