//! `HbonePool`: outbound HBONE to destination ztunnels. Pools mTLS HTTP/2 connections per
//! (ztunnel address, our identity), opens one CONNECT stream per call.
//!
//! A connection carries at most `max_streams_per_connection` streams (ztunnel's 100); the
//! next call opens another connection. Closed connections are dropped; idle ones are reaped.
//! A failure is returned to the caller, never retried in a loop.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use bytes::Bytes;
use h2::client::SendRequest;
use http::{HeaderValue, Method, Request, StatusCode};
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio::time::{timeout, Instant};
use tokio_rustls::TlsConnector;
use tracing::{debug, info, Instrument};

use super::error::HboneError;
use super::h2_config::{keepalive, H2Settings, KeepaliveEnd};
use super::headers::OutboundHeaders;
use super::stream::TunnelStream;
use crate::identity::{handshake_failure_reason, Identity, IdentityStore};

/// Settings of the outbound pool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolConfig {
    /// Windows, frame size, keepalive (ztunnel's by default).
    pub h2: H2Settings,
    /// Streams per connection before another connection is opened. Default 100 (ztunnel's).
    pub max_streams_per_connection: usize,
    /// Limit for each setup phase: TCP connect, TLS + HTTP/2 handshake, CONNECT response.
    /// Default 10 s.
    pub connect_timeout: Duration,
    /// A connection without streams for this long is closed. Default 60 s.
    pub idle_timeout: Duration,
}

impl Default for PoolConfig {
    fn default() -> Self {
        PoolConfig {
            h2: H2Settings::default(),
            max_streams_per_connection: 100,
            connect_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct PoolKey {
    ztunnel: SocketAddr,
    identity: Identity,
}

/// One pooled HTTP/2 connection.
struct PooledConn {
    id: u64,
    sender: SendRequest<Bytes>,
    active: AtomicUsize,
    closed: Arc<AtomicBool>,
    idle_since: Mutex<Instant>,
}

impl PooledConn {
    fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }
}

/// Holds one stream slot of a connection; released when the stream is dropped.
struct StreamSlot(Arc<PooledConn>);

impl Drop for StreamSlot {
    fn drop(&mut self) {
        if self.0.active.fetch_sub(1, Ordering::AcqRel) == 1 {
            if let Ok(mut since) = self.0.idle_since.lock() {
                *since = Instant::now();
            }
        }
    }
}

struct PoolInner {
    store: Arc<IdentityStore>,
    tls: TlsConnector,
    cfg: PoolConfig,
    conns: Mutex<HashMap<PoolKey, Vec<Arc<PooledConn>>>>,
    /// One dial at a time per key, so a burst of calls shares new connections instead of
    /// each opening its own.
    dials: Mutex<HashMap<PoolKey, Arc<tokio::sync::Mutex<()>>>>,
    next_id: AtomicU64,
}

/// Pool of outbound HBONE connections. Cheap to clone; clones share the pool.
#[derive(Clone)]
pub struct HbonePool {
    inner: Arc<PoolInner>,
}

impl std::fmt::Debug for HbonePool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HbonePool")
            .field("cfg", &self.inner.cfg)
            .finish_non_exhaustive()
    }
}

impl HbonePool {
    /// A pool presenting `store`'s current certificate and accepting ztunnels whose SPIFFE
    /// id is in `trust_domain`. Spawns the idle reaper, so call it inside a Tokio runtime.
    pub fn new(store: Arc<IdentityStore>, trust_domain: &str, cfg: PoolConfig) -> Self {
        let inner = Arc::new(PoolInner {
            tls: TlsConnector::from(store.client_config(trust_domain)),
            store,
            cfg,
            conns: Mutex::default(),
            dials: Mutex::default(),
            next_id: AtomicU64::new(1),
        });
        tokio::spawn(reap_idle(Arc::downgrade(&inner)));
        HbonePool { inner }
    }

    /// Opens a CONNECT stream to `target` through the ztunnel at `ztunnel` (its HBONE
    /// address, `podIP:15008`), sending `headers`, and waits for the `200`.
    ///
    /// Reuses a pooled connection with a free stream slot or opens a new one. A pooled
    /// connection that turns out to be closed is replaced once; other failures are returned.
    pub async fn connect(
        &self,
        ztunnel: SocketAddr,
        target: SocketAddr,
        headers: &OutboundHeaders,
    ) -> Result<TunnelStream, HboneError> {
        let key = PoolKey {
            ztunnel,
            identity: self.inner.store.identity(),
        };
        let mut retried = false;
        loop {
            let (conn, reused) = self.checkout(&key).await?;
            let slot = StreamSlot(conn.clone());
            let request = build_connect(target, headers)?;
            // Phase 1: a stream on the connection. Failure here means the connection died
            // behind our back (GOAWAY, reset); the request never left.
            let sender = conn.sender.clone();
            let sent = match sender.ready().await {
                Ok(mut ready) => ready.send_request(request, false),
                Err(e) => Err(e),
            };
            let (response, send) = match sent {
                Ok(pair) => pair,
                Err(source) => {
                    conn.closed.store(true, Ordering::Release);
                    if reused && !retried {
                        debug!(%ztunnel, error = %source, "pooled HBONE connection failed; redialing");
                        retried = true;
                        continue;
                    }
                    return Err(HboneError::H2 { ztunnel, source });
                }
            };
            // Phase 2: the destination's answer.
            let limit = self.inner.cfg.connect_timeout;
            let response = match timeout(limit, response).await {
                Err(_) => {
                    return Err(HboneError::Timeout {
                        ztunnel,
                        phase: "CONNECT response",
                        timeout: limit,
                    })
                }
                Ok(Ok(response)) => response,
                Ok(Err(source)) => {
                    // A pooled connection that died under us (GOAWAY, refused, closed) never
                    // carried our bytes: we write only after the 200. Redial once.
                    if is_connection_failure(&source) {
                        conn.closed.store(true, Ordering::Release);
                        if reused && !retried {
                            debug!(%ztunnel, error = %source, "pooled HBONE connection failed; redialing");
                            retried = true;
                            continue;
                        }
                    }
                    return Err(HboneError::H2 { ztunnel, source });
                }
            };
            if response.status() != StatusCode::OK {
                return Err(HboneError::Status {
                    ztunnel,
                    target,
                    status: response.status(),
                });
            }
            let mut stream = TunnelStream::new(send, response.into_body());
            stream.set_socket_addrs(target, None);
            stream.hold(Box::new(slot));
            return Ok(stream);
        }
    }

    /// Live pooled connections to `ztunnel` (all identities).
    pub fn connection_count(&self, ztunnel: SocketAddr) -> usize {
        let conns = self.inner.conns.lock().expect("pool lock poisoned");
        conns
            .iter()
            .filter(|(k, _)| k.ztunnel == ztunnel)
            .map(|(_, v)| v.iter().filter(|c| !c.is_closed()).count())
            .sum()
    }

    /// A connection with a free slot (slot taken), and whether it was pooled already.
    async fn checkout(&self, key: &PoolKey) -> Result<(Arc<PooledConn>, bool), HboneError> {
        if let Some(conn) = self.take_slot(key) {
            return Ok((conn, true));
        }
        let dial_lock = {
            let mut dials = self.inner.dials.lock().expect("pool lock poisoned");
            dials.entry(key.clone()).or_default().clone()
        };
        let _dialing = dial_lock.lock().await;
        // Someone else may have dialed while we waited.
        if let Some(conn) = self.take_slot(key) {
            return Ok((conn, true));
        }
        let conn = Arc::new(self.dial(key.ztunnel).await?);
        conn.active.fetch_add(1, Ordering::AcqRel);
        self.inner
            .conns
            .lock()
            .expect("pool lock poisoned")
            .entry(key.clone())
            .or_default()
            .push(conn.clone());
        Ok((conn, false))
    }

    fn take_slot(&self, key: &PoolKey) -> Option<Arc<PooledConn>> {
        let max = self.inner.cfg.max_streams_per_connection;
        let mut conns = self.inner.conns.lock().expect("pool lock poisoned");
        let list = conns.get_mut(key)?;
        list.retain(|c| !c.is_closed());
        // Increments happen only under this lock, so check-then-add cannot overshoot.
        let conn = list
            .iter()
            .find(|c| c.active.load(Ordering::Acquire) < max)?;
        conn.active.fetch_add(1, Ordering::AcqRel);
        Some(conn.clone())
    }

    async fn dial(&self, ztunnel: SocketAddr) -> Result<PooledConn, HboneError> {
        let limit = self.inner.cfg.connect_timeout;
        let timed_out = |phase| HboneError::Timeout {
            ztunnel,
            phase,
            timeout: limit,
        };
        // Phase 1: TCP.
        let tcp = timeout(limit, TcpStream::connect(ztunnel))
            .await
            .map_err(|_| timed_out("tcp connect"))?
            .map_err(|source| HboneError::Connect { ztunnel, source })?;
        let _ = tcp.set_nodelay(true);
        // Phase 2: mTLS. ztunnel certificates have SPIFFE SANs only; the name is unused.
        let name = ServerName::IpAddress(ztunnel.ip().into());
        let tls = timeout(limit, self.inner.tls.connect(name, tcp))
            .await
            .map_err(|_| timed_out("tls handshake"))?
            .map_err(|source| HboneError::Tls {
                ztunnel,
                reason: source
                    .get_ref()
                    .and_then(|e| e.downcast_ref::<rustls::Error>())
                    .map(handshake_failure_reason)
                    .unwrap_or("TLS handshake failed"),
                source,
            })?;
        if tls.get_ref().1.alpn_protocol() != Some(b"h2") {
            return Err(HboneError::NoH2 { ztunnel });
        }
        // Phase 3: HTTP/2 with ztunnel's windows.
        let h2 = &self.inner.cfg.h2;
        let (sender, mut conn) = timeout(
            limit,
            h2::client::Builder::new()
                .initial_window_size(h2.stream_window)
                .initial_connection_window_size(h2.connection_window)
                .max_frame_size(h2.max_frame_size)
                .max_concurrent_reset_streams(50)
                .handshake::<_, Bytes>(tls),
        )
        .await
        .map_err(|_| timed_out("h2 handshake"))?
        .map_err(|source| HboneError::H2 { ztunnel, source })?;

        // Phase 4: drive the connection until it ends or stops answering PINGs.
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        let closed = Arc::new(AtomicBool::new(false));
        let pings = conn.ping_pong().expect("ping_pong is taken once, here");
        let (interval, ack) = (h2.keepalive_interval, h2.keepalive_timeout);
        let driver_closed = closed.clone();
        let driver = async move {
            tokio::select! {
                res = &mut conn => {
                    if let Err(e) = res {
                        debug!(error = %e, "HBONE connection ended with error");
                    }
                }
                end = keepalive(pings, interval, ack) => match end {
                    KeepaliveEnd::TimedOut => info!("HBONE keepalive timed out; closing"),
                    KeepaliveEnd::Connection(e) => debug!(error = %e, "HBONE connection failed"),
                },
            }
            driver_closed.store(true, Ordering::Release);
        };
        tokio::spawn(driver.instrument(tracing::debug_span!("hbone_out", %ztunnel, conn = id)));
        debug!(%ztunnel, conn = id, "HBONE connection opened");
        Ok(PooledConn {
            id,
            sender,
            active: AtomicUsize::new(0),
            closed,
            idle_since: Mutex::new(Instant::now()),
        })
    }
}

/// True for failures of the whole connection (as opposed to this stream being refused by
/// the destination with a status or a stream error).
fn is_connection_failure(e: &h2::Error) -> bool {
    e.is_io() || e.is_go_away() || e.reason() == Some(h2::Reason::REFUSED_STREAM)
}

fn build_connect(target: SocketAddr, headers: &OutboundHeaders) -> Result<Request<()>, HboneError> {
    let mut fields: Vec<(&'static str, String)> = Vec::new();
    if let Some(b) = headers.baggage.as_ref().filter(|b| !b.is_empty()) {
        fields.push(("baggage", b.to_string()));
    }
    if let Some(f) = &headers.forwarded {
        fields.push(("forwarded", f.to_string()));
    }
    if let Some(t) = &headers.traceparent {
        fields.push(("traceparent", t.clone()));
    }
    // Classic CONNECT: authority only; h2 then sends no :scheme and no :path.
    let mut req = Request::builder()
        .method(Method::CONNECT)
        .uri(target.to_string());
    for (name, value) in fields {
        let value = HeaderValue::try_from(value).map_err(|e| HboneError::Request {
            target,
            reason: format!("header {name}: {e}"),
        })?;
        req = req.header(name, value);
    }
    req.body(()).map_err(|e| HboneError::Request {
        target,
        reason: e.to_string(),
    })
}

/// Closes idle and dead connections every half idle timeout, until the pool is dropped.
async fn reap_idle(pool: Weak<PoolInner>) {
    let period = match pool.upgrade() {
        Some(p) => (p.cfg.idle_timeout / 2).max(Duration::from_millis(100)),
        None => return,
    };
    let mut ticks = tokio::time::interval(period);
    loop {
        ticks.tick().await;
        let Some(pool) = pool.upgrade() else { return };
        reap(&pool);
    }
}

/// Drops closed connections and those without streams for `idle_timeout`. Dropping the last
/// `SendRequest` lets h2 close the connection gracefully.
fn reap(pool: &PoolInner) {
    let idle = pool.cfg.idle_timeout;
    let mut conns = pool.conns.lock().expect("pool lock poisoned");
    for list in conns.values_mut() {
        list.retain(|c| {
            let idle_for = c.idle_since.lock().map(|s| s.elapsed()).unwrap_or_default();
            let busy = c.active.load(Ordering::Acquire) > 0;
            let keep = !c.is_closed() && (busy || idle_for < idle);
            if !keep {
                debug!(conn = c.id, "closing idle HBONE connection");
            }
            keep
        });
    }
    conns.retain(|_, list| !list.is_empty());
    let mut dials = pool.dials.lock().expect("pool lock poisoned");
    dials.retain(|k, lock| conns.contains_key(k) || Arc::strong_count(lock) > 1);
}

#[cfg(test)]
impl HbonePool {
    /// Runs one reaper pass now.
    pub(crate) fn reap_now(&self) {
        reap(&self.inner);
    }
}
