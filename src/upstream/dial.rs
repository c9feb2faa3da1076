//! The one dialer. Every upstream connection the waypoint opens goes through
//! [`Dialer`]: routed requests (as Pingora peers), RequestMirror copies,
//! proxy-wasm `proxy_http_call`s, L4 passthrough, and the HTTP clients that
//! take a connector ([`DialConnector`]: ext_authz gRPC checks, OTLP span
//! export). The security rule lives
//! here and nowhere else: an endpoint captured by ambient (`in_mesh`) is
//! reached over HBONE — an mTLS CONNECT stream with the waypoint's own
//! identity through the endpoint's node ztunnel — and never over plain TCP
//! while the waypoint has an identity. Everything else is plain TCP.
//!
//! What the dialer does not own: which endpoint to pick (the caller's
//! endpoint set does), and what is spoken over the stream.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use pingora_core::connectors::L4Connect;
use pingora_core::protocols::l4::socket::SocketAddr as PingoraAddr;
use pingora_core::protocols::l4::stream::Stream as L4Stream;
use pingora_core::protocols::ALPN;
use pingora_core::upstreams::peer::HttpPeer;
use pingora_error::ErrorType;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use crate::addr::ClientIp;
use crate::hbone::{
    Forwarded, HboneConnector, HboneError, HbonePool, OutboundHeaders, OutboundTunnel, PoolConfig,
    TunnelKeepalive, TunnelKey, TunnelLease,
};
use crate::identity::{Identity, IdentityStore};
use crate::policy::conn_reuse::ReuseLimits;

use super::upgrade_gate::GatedConnect;

mod connector;
mod otlp;

pub use connector::{DialConnector, Resolve};

/// On whose behalf a connection is opened: what the destination ztunnel
/// learns about the original caller (`forwarded`, `traceparent`).
#[derive(Debug, Clone, Default)]
pub struct Originator {
    /// The original client's IP.
    pub client_ip: Option<ClientIp>,
    /// The caller tunnel's W3C `traceparent`, passed on for correlation.
    pub traceparent: Option<Arc<str>>,
}

impl Originator {
    fn headers(&self) -> OutboundHeaders {
        OutboundHeaders {
            baggage: None,
            forwarded: self
                .client_ip
                .map(|ip| Forwarded::new(SocketAddr::new(ip.ip(), 0), None)),
            traceparent: self.traceparent.as_deref().map(str::to_string),
        }
    }
}

/// Where a connection to one endpoint goes, as the dialer decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// A TCP connection to the endpoint itself.
    Plain,
    /// A CONNECT stream to the endpoint through the ztunnel at this address.
    Hbone { ztunnel: SocketAddr },
}

/// What the dialer needs to know of an endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DialTarget {
    /// The endpoint's `ip:targetPort`.
    pub addr: SocketAddr,
    /// Captured by ambient: reach it through its node's ztunnel.
    pub in_mesh: bool,
}

/// Why a connection could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum DialError {
    #[error("connect to {addr} failed: {source}")]
    Tcp {
        addr: SocketAddr,
        #[source]
        source: io::Error,
    },
    #[error("connect to {addr} timed out after {timeout:?}")]
    Timeout { addr: SocketAddr, timeout: Duration },
    #[error(transparent)]
    Hbone(#[from] HboneError),
    #[error("no endpoint for {authority}: {reason}")]
    Unresolved { authority: String, reason: String },
}

/// Opens upstream connections, plain or HBONE.
pub struct Dialer {
    hbone: Option<HboneDialer>,
    connect_timeout: Duration,
}

/// Outbound HBONE: pooled mTLS h2 connections to destination ztunnels.
struct HboneDialer {
    pool: HbonePool,
    /// Tunnels kept between requests (Pingora's own pool cannot keep them).
    keepalive: TunnelKeepalive,
    store: Arc<IdentityStore>,
    /// The destination ztunnels' HBONE port (`--hbone-upstream-port`).
    port: u16,
}

impl Dialer {
    /// A dialer without an identity: every endpoint is dialled plain.
    pub fn plain(connect_timeout: Duration) -> Self {
        Dialer {
            hbone: None,
            connect_timeout,
        }
    }

    /// A dialer that reaches in-mesh endpoints over HBONE with `store`'s
    /// identity, through ztunnels listening on `ztunnel_port`.
    pub fn with_hbone(
        store: Arc<IdentityStore>,
        trust_domain: &str,
        ztunnel_port: u16,
        connect_timeout: Duration,
    ) -> Self {
        let pool = PoolConfig::default();
        Dialer {
            hbone: Some(HboneDialer {
                keepalive: TunnelKeepalive::new(pool.idle_timeout / 2),
                pool: HbonePool::new(store.clone(), trust_domain, pool),
                store,
                port: ztunnel_port,
            }),
            connect_timeout,
        }
    }

    /// The waypoint's own SPIFFE identity, when it has one.
    pub fn own_identity(&self) -> Option<Identity> {
        self.hbone.as_ref().map(|h| h.store.identity())
    }

    /// The default connect timeout (`connect_timeout` of the settings).
    pub fn connect_timeout(&self) -> Duration {
        self.connect_timeout
    }

    /// Plain or HBONE for `target`: HBONE exactly when the endpoint is in
    /// the mesh and the waypoint has an identity to tunnel with.
    pub fn transport(&self, target: DialTarget) -> Transport {
        match &self.hbone {
            Some(h) if target.in_mesh => Transport::Hbone {
                ztunnel: SocketAddr::new(target.addr.ip(), h.port),
            },
            _ => Transport::Plain,
        }
    }

    /// Opens a byte stream to `target` within the connect timeout.
    pub async fn connect(
        &self,
        target: DialTarget,
        on_behalf_of: &Originator,
    ) -> Result<UpstreamIo, DialError> {
        self.connect_within(target, on_behalf_of, self.connect_timeout)
            .await
    }

    /// Opens a byte stream to `target` within `timeout` (a cluster's
    /// `connectTimeout`).
    pub async fn connect_within(
        &self,
        target: DialTarget,
        on_behalf_of: &Originator,
        timeout: Duration,
    ) -> Result<UpstreamIo, DialError> {
        match (self.transport(target), &self.hbone) {
            (Transport::Hbone { ztunnel }, Some(h)) => {
                let headers = on_behalf_of.headers();
                let connect = h.pool.connect(ztunnel, target.addr, &headers);
                match tokio::time::timeout(timeout, connect).await {
                    Ok(stream) => Ok(UpstreamIo::Hbone(Box::new(OutboundTunnel::closing(
                        stream?,
                    )))),
                    Err(_) => Err(HboneError::Timeout {
                        ztunnel,
                        phase: "tunnel setup",
                        timeout,
                    }
                    .into()),
                }
            }
            _ => {
                let addr = target.addr;
                match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
                    Ok(Ok(tcp)) => {
                        // Request/response traffic: Nagle would hold small writes.
                        let _ = tcp.set_nodelay(true);
                        Ok(UpstreamIo::Plain(tcp))
                    }
                    Ok(Err(source)) => Err(DialError::Tcp { addr, source }),
                    Err(_) => Err(DialError::Timeout { addr, timeout }),
                }
            }
        }
    }

    /// Makes Pingora's connect for `peer` (to `target`) follow the same
    /// rule: for HBONE, Pingora's L4 connect becomes a CONNECT stream on a
    /// pooled mTLS h2 connection to the endpoint's ztunnel, bounded by
    /// `timeout`, or a tunnel kept from an earlier request. A plain peer is
    /// left as it is.
    ///
    /// For HBONE over HTTP/1.1 the request gets a lease: [`TunnelLease::finish`]
    /// it with whether the exchange completed, so its tunnel can be kept for the
    /// next request (for the peer's `idle_timeout`, 60 s when unset). Set the
    /// peer's HTTP version first: a tunnel that carried HTTP/2 is never kept
    /// (the next request would start a new HTTP/2 connection inside it).
    pub fn configure_peer(
        &self,
        peer: &mut HttpPeer,
        target: DialTarget,
        on_behalf_of: &Originator,
        timeout: Duration,
        limits: ReuseLimits,
    ) -> Option<TunnelLease> {
        let (Transport::Hbone { ztunnel }, Some(h)) = (self.transport(target), &self.hbone) else {
            return None;
        };
        let lease = (peer.options.alpn == ALPN::H1).then(|| {
            h.lease(
                ztunnel,
                target,
                on_behalf_of,
                peer.options.idle_timeout,
                limits,
            )
        });
        let connector = h.connector(ztunnel, target, on_behalf_of, lease.as_ref());
        peer.options.custom_l4 = Some(Arc::new(connector));
        // Pingora keys its pool by address, not by custom_l4: a distinct group
        // keeps a pooled plaintext connection from ever serving an HBONE peer.
        peer.group_key = HBONE_GROUP_KEY;
        // `connection_timeout` is not applied to custom L4 connects.
        peer.options.total_connection_timeout = Some(timeout);
        lease
    }

    /// For an HTTP/1.1 upgrade request: after [`Dialer::configure_peer`], the
    /// peer's connect (HBONE or plain) is wrapped so the upstream response is
    /// read only once the request has been sent (see [`upgrade_gate`]), on a
    /// connection of its own: a pooled connection has no gate.
    ///
    /// [`upgrade_gate`]: super::upgrade_gate
    pub fn gate_upgrade(peer: &mut HttpPeer) {
        let inner = peer.options.custom_l4.take();
        peer.options.custom_l4 = Some(Arc::new(GatedConnect { inner }));
        peer.group_key = rand::random();
        // `connection_timeout` is not applied to custom L4 connects.
        if peer.options.total_connection_timeout.is_none() {
            peer.options.total_connection_timeout = peer.options.connection_timeout;
        }
    }

    /// For the HTTP/1.1 fast path (`proxy::direct`), which speaks HTTP itself: a
    /// connection to `target` as a Pingora stream, within `timeout`, with the
    /// errors Pingora's connector would raise. Over HBONE it is a kept tunnel when
    /// a live one is idle, and comes with the lease that keeps it again after a
    /// clean exchange (for `idle_for`, 60 s when unset), as [`Dialer::configure_peer`]
    /// arranges for Pingora's proxy.
    pub async fn open_http1(
        &self,
        target: DialTarget,
        on_behalf_of: &Originator,
        timeout: Duration,
        idle_for: Option<Duration>,
        limits: ReuseLimits,
    ) -> pingora_error::Result<(L4Stream, Option<TunnelLease>)> {
        if let (Transport::Hbone { ztunnel }, Some(h)) = (self.transport(target), &self.hbone) {
            let lease = h.lease(ztunnel, target, on_behalf_of, idle_for, limits);
            let connector = h.connector(ztunnel, target, on_behalf_of, Some(&lease));
            let addr = PingoraAddr::Inet(target.addr);
            return match tokio::time::timeout(timeout, connector.connect(&addr)).await {
                Ok(stream) => Ok((stream?, Some(lease))),
                Err(_) => Err(pingora_error::Error::explain(
                    ErrorType::ConnectTimedout,
                    format!(
                        "HBONE CONNECT {} via {ztunnel}: no tunnel after {timeout:?}",
                        target.addr
                    ),
                )),
            };
        }
        match self.connect_within(target, on_behalf_of, timeout).await {
            Ok(UpstreamIo::Plain(tcp)) => Ok((L4Stream::from(tcp), None)),
            Ok(UpstreamIo::Hbone(_)) => Err(pingora_error::Error::explain(
                ErrorType::InternalError,
                "BUG: a plain transport dialled HBONE",
            )),
            Err(e) => {
                let etype = match &e {
                    DialError::Timeout { .. } => ErrorType::ConnectTimedout,
                    DialError::Tcp { source, .. }
                        if source.kind() == io::ErrorKind::ConnectionRefused =>
                    {
                        ErrorType::ConnectRefused
                    }
                    _ => ErrorType::ConnectError,
                };
                Err(pingora_error::Error::because(
                    etype,
                    "connecting upstream",
                    e,
                ))
            }
        }
    }
}

impl HboneDialer {
    /// A lease on a tunnel to `target` via `ztunnel` for `on_behalf_of`'s client.
    fn lease(
        &self,
        ztunnel: SocketAddr,
        target: DialTarget,
        on_behalf_of: &Originator,
        idle_for: Option<Duration>,
        limits: ReuseLimits,
    ) -> TunnelLease {
        let key = TunnelKey {
            ztunnel,
            target: target.addr,
            client: on_behalf_of.client_ip.map(|ip| ip.ip()),
        };
        self.keepalive
            .lease(key, idle_for.unwrap_or(KEPT_TUNNEL_IDLE), limits)
    }

    /// Pingora's L4 connect for one tunnel, through `lease` when there is one.
    fn connector(
        &self,
        ztunnel: SocketAddr,
        target: DialTarget,
        on_behalf_of: &Originator,
        lease: Option<&TunnelLease>,
    ) -> HboneConnector {
        let connector = HboneConnector::new(
            self.pool.clone(),
            ztunnel,
            target.addr,
            on_behalf_of.headers(),
        );
        match lease {
            Some(lease) => connector.with_lease(lease.connect_side()),
            None => connector,
        }
    }
}

/// How long a tunnel is kept for reuse when the cluster sets no `idleTimeout`.
const KEPT_TUNNEL_IDLE: Duration = Duration::from_secs(60);

/// Pingora's pool group of every HBONE peer (plain peers have 0). Pingora never
/// reuses a tunnel itself (see `hbone/keepalive.rs`), so the group only has to
/// differ from the plain one; a constant spares hashing the identity per request.
const HBONE_GROUP_KEY: u64 = 0x6862_6f6e_6500_0001; // "hbone", then 1

/// A connection the dialer opened: TCP, or a CONNECT stream through a ztunnel.
pub enum UpstreamIo {
    Plain(TcpStream),
    Hbone(Box<OutboundTunnel>),
}

impl AsyncRead for UpstreamIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            UpstreamIo::Plain(s) => Pin::new(s).poll_read(cx, buf),
            UpstreamIo::Hbone(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for UpstreamIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            UpstreamIo::Plain(s) => Pin::new(s).poll_write(cx, buf),
            UpstreamIo::Hbone(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            UpstreamIo::Plain(s) => Pin::new(s).poll_flush(cx),
            UpstreamIo::Hbone(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            UpstreamIo::Plain(s) => Pin::new(s).poll_shutdown(cx),
            UpstreamIo::Hbone(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

#[cfg(test)]
mod tests;
