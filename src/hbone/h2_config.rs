//! HTTP/2 settings shared by both HBONE directions, and the PING keepalive.
//!
//! The numbers are ztunnel's, so windows and frame sizes match on both ends of a tunnel.

use std::time::Duration;

use h2::{Ping, PingPong};
use tokio::time::{interval_at, timeout, Instant, MissedTickBehavior};

/// HTTP/2 flow-control and liveness settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct H2Settings {
    /// Initial per-stream receive window, bytes. Default 4 MiB (ztunnel's).
    pub stream_window: u32,
    /// Connection receive window, bytes. Default 16 MiB (ztunnel's).
    pub connection_window: u32,
    /// Largest DATA frame we accept, bytes. Default 1 MiB (ztunnel's).
    pub max_frame_size: u32,
    /// Interval between keepalive PINGs. Default 10 s (ztunnel's).
    pub keepalive_interval: Duration,
    /// How long a PING may go unanswered before the connection is closed. Default 20 s.
    pub keepalive_timeout: Duration,
}

impl Default for H2Settings {
    fn default() -> Self {
        H2Settings {
            stream_window: 4 * 1024 * 1024,
            connection_window: 16 * 1024 * 1024,
            max_frame_size: 1024 * 1024,
            keepalive_interval: Duration::from_secs(10),
            keepalive_timeout: Duration::from_secs(20),
        }
    }
}

/// Why the keepalive gave up on a connection.
#[derive(Debug)]
pub(crate) enum KeepaliveEnd {
    /// No PONG within the timeout: the peer or the path is dead.
    TimedOut,
    /// The connection itself failed (it is closing anyway).
    Connection(h2::Error),
}

/// Pings the peer every `interval`; returns when a PING goes unanswered for `ack_timeout`
/// or the connection fails. Runs alongside the connection driver, which closes the
/// connection when this returns.
pub(crate) async fn keepalive(
    mut pings: PingPong,
    interval: Duration,
    ack_timeout: Duration,
) -> KeepaliveEnd {
    let mut ticks = interval_at(Instant::now() + interval, interval);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        match timeout(ack_timeout, pings.ping(Ping::opaque())).await {
            Ok(Ok(_pong)) => {}
            Ok(Err(e)) => return KeepaliveEnd::Connection(e),
            Err(_) => return KeepaliveEnd::TimedOut,
        }
    }
}
