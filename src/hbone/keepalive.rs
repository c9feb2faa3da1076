//! Keep-alive for the HTTP/1 connections the proxy runs inside outbound HBONE tunnels.
//!
//! Pingora pools upstream connections itself, but before reusing one it compares the
//! socket's `getpeername` with the peer address, and a tunnel stream is a virtual socket
//! without a file descriptor (pingora-core 0.9 reports -1). Every pooled tunnel fails that
//! check and is dropped, so without this module each request opened a new CONNECT
//! stream and the destination ztunnel a new connection to the pod.
//!
//! So the tunnels are kept here instead. Pingora still decides whether a connection may
//! carry another request (it shuts down the ones that may not), and the proxy says
//! whether the exchange ended cleanly; a tunnel is kept only when both agree:
//!
//! - [`OutboundTunnel`] is what Pingora reads and writes. When Pingora lets go of it,
//!   it parks its stream in its [`TunnelLease`], unless Pingora shut it down or the
//!   stream is mid-message.
//! - [`TunnelLease`] is held by the request. [`TunnelLease::finish`] with `true` (the
//!   exchange completed without error) moves the parked stream to [`TunnelKeepalive`];
//!   anything else closes it. The two events may come in either order.
//! - A stream that is not kept is closed with END_STREAM and drained, never reset.
//!
//! Pingora still puts a finished connection in its own pool first; it lets go of it when
//! the next request for that peer finds it unusable, or when a newer virtual stream takes
//! its pool slot (they all share id −1). So the last tunnel of a burst may wait there, not
//! here, until traffic resumes.
//!
//! Tunnels are keyed by ztunnel, target and the forwarded client IP: the CONNECT request
//! told the destination on whose behalf the connection was opened, so a tunnel never
//! carries another client's requests.
//!
//! For an in-mesh endpoint the tunnel is the upstream connection a DestinationRule's
//! `connectionPool` limits (the application's HTTP/1 connection runs inside it, and
//! ztunnel opens one connection to the pod per tunnel): each kept tunnel carries its
//! [`ConnUse`], and a tunnel that has carried `maxRequestsPerConnection` requests or
//! reached `maxConnectionDuration` is closed instead of kept.

use std::collections::HashMap;
use std::fmt;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Instant;
use tracing::debug;

use super::stream::TunnelStream;
use crate::policy::conn_reuse::{ConnUse, ReuseLimits};

/// Idle tunnels kept per key; more are closed.
const MAX_IDLE_PER_KEY: usize = 128;

/// Which tunnels may serve a request: same destination ztunnel, same target, opened on
/// behalf of the same client.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TunnelKey {
    pub ztunnel: SocketAddr,
    pub target: SocketAddr,
    pub client: Option<IpAddr>,
}

struct IdleTunnel {
    stream: TunnelStream,
    expires: Instant,
    conn: ConnUse,
}

#[derive(Default)]
struct Idle {
    by_key: Mutex<HashMap<TunnelKey, Vec<IdleTunnel>>>,
}

impl Drop for Idle {
    /// Tunnels still kept when the waypoint lets go of the set end like any other.
    fn drop(&mut self) {
        let by_key = match self.by_key.get_mut() {
            Ok(m) => std::mem::take(m),
            Err(poisoned) => std::mem::take(poisoned.into_inner()),
        };
        for idle in by_key.into_values().flatten() {
            idle.stream.close_gracefully();
        }
    }
}

/// Idle outbound tunnels, ready for the next request to the same key. Cheap to clone.
#[derive(Clone, Default)]
pub struct TunnelKeepalive {
    idle: Arc<Idle>,
}

impl fmt::Debug for TunnelKeepalive {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TunnelKeepalive")
            .field("idle", &self.idle_count())
            .finish()
    }
}

impl TunnelKeepalive {
    /// An empty keep-alive set whose expired tunnels are closed every `sweep`, until
    /// it is dropped. Call inside a Tokio runtime.
    pub fn new(sweep: Duration) -> Self {
        let keepalive = TunnelKeepalive::default();
        tokio::spawn(sweep_expired(Arc::downgrade(&keepalive.idle), sweep));
        keepalive
    }

    /// The most recently used live tunnel for `key` that `limits` let carry another
    /// request, with its history. Dead, expired and spent ones met on the way are
    /// closed.
    pub fn checkout(
        &self,
        key: &TunnelKey,
        limits: ReuseLimits,
    ) -> Option<(TunnelStream, ConnUse)> {
        let mut by_key = self.idle.by_key.lock().expect("keepalive lock poisoned");
        let list = by_key.get_mut(key)?;
        let now = Instant::now();
        while let Some(mut idle) = list.pop() {
            if idle.expires > now && limits.may_reuse(&idle.conn, now) && idle.stream.is_reusable()
            {
                return Some((idle.stream, idle.conn));
            }
            idle.stream.close_gracefully();
        }
        None
    }

    /// Keeps `stream`, which has just carried one more exchange, for `idle_for` (and
    /// no longer than `limits` allow), or closes it when it is spent or the key has
    /// enough.
    fn checkin(
        &self,
        key: TunnelKey,
        stream: TunnelStream,
        idle_for: Duration,
        mut conn: ConnUse,
        limits: ReuseLimits,
    ) {
        conn.count_request();
        let now = Instant::now();
        if !limits.may_reuse(&conn, now) {
            debug!(
                requests = conn.requests(),
                "HBONE tunnel reached its reuse limit"
            );
            stream.close_gracefully();
            return;
        }
        let mut expires = now + idle_for;
        if let Some(at) = limits.expires(&conn) {
            expires = expires.min(at);
        }
        let mut by_key = self.idle.by_key.lock().expect("keepalive lock poisoned");
        let list = by_key.entry(key).or_default();
        if list.len() >= MAX_IDLE_PER_KEY {
            drop(by_key);
            stream.close_gracefully();
            return;
        }
        list.push(IdleTunnel {
            stream,
            expires,
            conn,
        });
    }

    /// Idle tunnels held now (all keys).
    pub fn idle_count(&self) -> usize {
        let by_key = self.idle.by_key.lock().expect("keepalive lock poisoned");
        by_key.values().map(Vec::len).sum()
    }

    /// A lease for one exchange on a tunnel to `key`, kept for `idle_for` afterwards
    /// while `limits` (the cluster's `maxRequestsPerConnection`,
    /// `maxConnectionDuration`) allow.
    pub fn lease(&self, key: TunnelKey, idle_for: Duration, limits: ReuseLimits) -> TunnelLease {
        TunnelLease {
            state: Arc::new(LeaseState {
                keepalive: self.clone(),
                key,
                idle_for,
                limits,
                conn: Mutex::new(None),
                slot: Mutex::new(Slot::Open),
            }),
            settled: false,
        }
    }
}

async fn sweep_expired(idle: Weak<Idle>, every: Duration) {
    let mut ticks = tokio::time::interval(every.max(Duration::from_millis(100)));
    loop {
        ticks.tick().await;
        let Some(idle) = idle.upgrade() else { return };
        let now = Instant::now();
        let mut expired = Vec::new();
        {
            let mut by_key = idle.by_key.lock().expect("keepalive lock poisoned");
            for list in by_key.values_mut() {
                let (keep, gone): (Vec<_>, Vec<_>) = list.drain(..).partition(|t| t.expires > now);
                *list = keep;
                expired.extend(gone);
            }
            by_key.retain(|_, list| !list.is_empty());
        }
        if !expired.is_empty() {
            debug!(count = expired.len(), "closing idle HBONE tunnels");
        }
        for t in expired {
            t.stream.close_gracefully();
        }
    }
}

/// Where a leased tunnel is between Pingora letting go of it and the request's verdict.
enum Slot {
    /// In use, no verdict yet.
    Open,
    /// Pingora let go of it first; waiting for the verdict.
    Parked(TunnelStream),
    /// The exchange completed; the stream goes to the keep-alive set when Pingora lets go.
    Clean,
    /// Settled: kept, closed, or never to be kept.
    Done,
}

struct LeaseState {
    keepalive: TunnelKeepalive,
    key: TunnelKey,
    idle_for: Duration,
    limits: ReuseLimits,
    /// The history of the lease's tunnel: taken from the kept one, or started when a
    /// new one was wrapped.
    conn: Mutex<Option<ConnUse>>,
    slot: Mutex<Slot>,
}

impl LeaseState {
    /// Hands a stream fit for another exchange back to the keep-alive set.
    fn keep(&self, stream: TunnelStream) {
        let conn = self.conn.lock().expect("lease lock poisoned").take();
        // A stream this lease never saw opened (not expected) counts from now.
        let conn = conn.unwrap_or_else(|| ConnUse::opened_at(Instant::now()));
        self.keepalive
            .checkin(self.key.clone(), stream, self.idle_for, conn, self.limits);
    }

    /// Pingora let go of a stream that is fit for another exchange.
    fn park(&self, stream: TunnelStream) {
        let mut slot = self.slot.lock().expect("lease lock poisoned");
        match std::mem::replace(&mut *slot, Slot::Done) {
            Slot::Open => *slot = Slot::Parked(stream),
            Slot::Clean => {
                drop(slot);
                self.keep(stream);
            }
            // A second stream on one lease (never expected), or a failed exchange.
            Slot::Parked(other) => {
                *slot = Slot::Parked(other);
                drop(slot);
                stream.close_gracefully();
            }
            Slot::Done => {
                drop(slot);
                stream.close_gracefully();
            }
        }
    }

    fn finish(&self, clean: bool) {
        let mut slot = self.slot.lock().expect("lease lock poisoned");
        match std::mem::replace(&mut *slot, Slot::Done) {
            Slot::Open if clean => *slot = Slot::Clean,
            Slot::Parked(stream) => {
                drop(slot);
                if clean {
                    self.keep(stream);
                } else {
                    stream.close_gracefully();
                }
            }
            Slot::Open | Slot::Clean | Slot::Done => {}
        }
    }
}

/// A request's claim on the tunnel its attempt runs over. Dropping it without
/// [`finish`](Self::finish) counts as an unclean end.
pub struct TunnelLease {
    state: Arc<LeaseState>,
    settled: bool,
}

impl TunnelLease {
    /// The request is over: `clean` when the upstream exchange completed without error,
    /// so the connection may carry another request if Pingora agreed.
    pub fn finish(mut self, clean: bool) {
        self.settled = true;
        self.state.finish(clean);
    }

    /// What the connector of this attempt needs: a kept tunnel, and the wrapping that
    /// brings the stream back to this lease.
    pub fn connect_side(&self) -> LeaseRef {
        LeaseRef(self.state.clone())
    }
}

/// The connector's side of a [`TunnelLease`]; holding it settles nothing.
#[derive(Clone)]
pub struct LeaseRef(Arc<LeaseState>);

impl LeaseRef {
    /// A kept tunnel for the lease's key, if a live one the limits allow is idle.
    pub fn checkout(&self) -> Option<TunnelStream> {
        let (stream, conn) = self.0.keepalive.checkout(&self.0.key, self.0.limits)?;
        *self.0.conn.lock().expect("lease lock poisoned") = Some(conn);
        Some(stream)
    }

    /// The stream Pingora will speak over, returned to the lease when Pingora drops it.
    /// A stream not taken by [`checkout`](Self::checkout) is new: its history starts now.
    pub fn wrap(&self, stream: TunnelStream) -> OutboundTunnel {
        self.0
            .conn
            .lock()
            .expect("lease lock poisoned")
            .get_or_insert_with(|| ConnUse::opened_at(Instant::now()));
        OutboundTunnel {
            stream: Some(stream),
            lease: Some(self.0.clone()),
            shut_down: false,
            stray_bytes: false,
        }
    }
}

impl fmt::Debug for LeaseRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("LeaseRef").field(&self.0.key).finish()
    }
}

impl Drop for TunnelLease {
    fn drop(&mut self) {
        if !self.settled {
            self.state.finish(false);
        }
    }
}

impl fmt::Debug for TunnelLease {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TunnelLease")
            .field("key", &self.state.key)
            .finish_non_exhaustive()
    }
}

/// An outbound tunnel stream that, once dropped, is kept for another exchange (with a
/// lease, see the module docs) or closed with END_STREAM, never reset.
pub struct OutboundTunnel {
    stream: Option<TunnelStream>,
    lease: Option<Arc<LeaseState>>,
    /// Our side was shut down (Pingora does this to connections it will not reuse).
    shut_down: bool,
    /// Bytes arrived between exchanges (see `poll_read`): never reuse.
    stray_bytes: bool,
}

impl OutboundTunnel {
    /// A tunnel that is closed gracefully when dropped and never kept.
    pub fn closing(stream: TunnelStream) -> Self {
        OutboundTunnel {
            stream: Some(stream),
            lease: None,
            shut_down: false,
            stray_bytes: false,
        }
    }

    fn stream(&mut self) -> &mut TunnelStream {
        self.stream
            .as_mut()
            .expect("the stream is taken only on drop")
    }
}

impl Drop for OutboundTunnel {
    fn drop(&mut self) {
        let Some(stream) = self.stream.take() else {
            return;
        };
        match &self.lease {
            Some(lease) if !self.shut_down && !self.stray_bytes && stream.is_idle() => {
                lease.park(stream)
            }
            _ => stream.close_gracefully(),
        }
    }
}

impl AsyncRead for OutboundTunnel {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        // Pingora reads messages into large buffers; a one-byte read is its probe of an
        // idle connection. Data there means the destination sent bytes nobody asked for,
        // and that byte is gone: the stream is no longer at a message boundary.
        let probe = buf.remaining() == 1;
        let before = buf.filled().len();
        let polled = Pin::new(this.stream()).poll_read(cx, buf);
        if probe && buf.filled().len() > before {
            this.stray_bytes = true;
        }
        polled
    }
}

impl AsyncWrite for OutboundTunnel {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(self.get_mut().stream()).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(self.get_mut().stream()).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.shut_down = true;
        Pin::new(this.stream()).poll_shutdown(cx)
    }
}

impl pingora_core::protocols::l4::virt::VirtualSocket for OutboundTunnel {
    /// Socket options belong to the TCP connection under the tunnel, shared by many
    /// streams; per stream they are accepted and ignored.
    fn set_socket_option(
        &self,
        _opt: pingora_core::protocols::l4::virt::VirtualSockOpt,
    ) -> io::Result<()> {
        Ok(())
    }
}

impl fmt::Debug for OutboundTunnel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OutboundTunnel")
            .field("stream", &self.stream)
            .field("leased", &self.lease.is_some())
            .field("shut_down", &self.shut_down)
            .field("stray_bytes", &self.stray_bytes)
            .finish()
    }
}
