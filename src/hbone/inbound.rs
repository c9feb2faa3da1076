//! The HBONE inbound server: accept TCP, mTLS handshake, HTTP/2, one task per CONNECT
//! stream. Validates each request (400 if malformed), asks the [`ConnectHandler`], answers,
//! and hands accepted streams to it.
//!
//! Owns connection lifecycle (handshake timeout, keepalive, graceful shutdown); does not
//! own what happens inside a tunnel.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use h2::server::SendResponse;
use h2::RecvStream;
use http::{Request, Response, StatusCode};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::time::timeout;
use tokio_rustls::TlsAcceptor;
use tracing::{debug, info, warn, Instrument};

use super::h2_config::{keepalive, H2Settings, KeepaliveEnd};
use super::request::{parse_request, ConnectHandler, TunnelRequest};
use super::stream::TunnelStream;
use crate::identity::{handshake_failure_reason, peer_identity, Identity};
use crate::overload::{Accepted, ConnectionPermit, Overload};
use crate::telemetry::{HandshakeFailure, HandshakeFailures};

/// Settings of the inbound HBONE server.
#[derive(Debug, Clone)]
pub struct InboundConfig {
    /// Windows, frame size, keepalive.
    pub h2: H2Settings,
    /// SETTINGS_MAX_CONCURRENT_STREAMS per connection. Default 200, ztunnel's own server
    /// limit (its client pool opens ≤ 100 per connection).
    pub max_concurrent_streams: u32,
    /// Streams the client reset before we accepted them, kept at most; beyond this the
    /// connection is closed with ENHANCE_YOUR_CALM (HTTP/2 rapid-reset defence). Default 50.
    pub max_pending_accept_reset_streams: usize,
    /// Locally reset streams remembered at once (to ignore their late frames). Default 50.
    pub max_concurrent_reset_streams: usize,
    /// Streams we may reset for protocol errors before closing the connection. Default 1024.
    pub max_local_error_reset_streams: usize,
    /// Largest request header block, bytes. Default 64 KiB.
    pub max_header_list_size: u32,
    /// Limit for the TLS and HTTP/2 handshakes together. Default 10 s.
    pub handshake_timeout: Duration,
    /// Where connections that never became a tunnel are counted. Default: a family
    /// registered nowhere (the server registers one on its metrics page).
    pub handshake_failures: HandshakeFailures,
    /// Connection caps (global, per caller identity) and the memory pressure that
    /// pauses accepting. Default: unlimited.
    pub overload: Arc<Overload>,
}

impl Default for InboundConfig {
    fn default() -> Self {
        InboundConfig {
            h2: H2Settings::default(),
            max_concurrent_streams: 200,
            max_pending_accept_reset_streams: 50,
            max_concurrent_reset_streams: 50,
            max_local_error_reset_streams: 1024,
            max_header_list_size: 64 * 1024,
            handshake_timeout: Duration::from_secs(10),
            handshake_failures: HandshakeFailures::default(),
            overload: Overload::unlimited(),
        }
    }
}

impl InboundConfig {
    fn h2_builder(&self) -> h2::server::Builder {
        let mut b = h2::server::Builder::new();
        b.initial_window_size(self.h2.stream_window)
            .initial_connection_window_size(self.h2.connection_window)
            .max_frame_size(self.h2.max_frame_size)
            .max_concurrent_streams(self.max_concurrent_streams)
            .max_pending_accept_reset_streams(self.max_pending_accept_reset_streams)
            .max_concurrent_reset_streams(self.max_concurrent_reset_streams)
            .max_local_error_reset_streams(Some(self.max_local_error_reset_streams))
            .max_header_list_size(self.max_header_list_size);
        b
    }
}

/// Serves HBONE on `listener` until `shutdown` becomes `true` (or its sender is dropped).
///
/// Each connection runs on its own task; on shutdown, accepting stops, open connections
/// get a GOAWAY and finish their streams. Handshake failures are counted by reason
/// (`InboundConfig::handshake_failures`) and logged with a reason such as "certificate not
/// trusted" or "trust domain mismatch": at info for a refused handshake, at debug for a
/// connection closed before its first byte (a kubelet `tcpSocket` probe does that every few
/// seconds).
pub async fn serve_inbound<H: ConnectHandler + 'static>(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    cfg: InboundConfig,
    handler: Arc<H>,
    mut shutdown: watch::Receiver<bool>,
) {
    let acceptor = TlsAcceptor::from(tls);
    let cfg = Arc::new(cfg);
    let local = listener.local_addr().ok();
    info!(?local, "HBONE inbound listening");
    while !*shutdown.borrow_and_update() {
        tokio::select! {
            // Under memory pressure new connections wait in the kernel's backlog.
            accepted = async { cfg.overload.accepting().await; listener.accept().await } => match accepted {
                Ok((tcp, peer_addr)) => {
                    let permit = match cfg.overload.admit_accepted(&mut shutdown).await {
                        Accepted::Serve(permit) => permit,
                        Accepted::Refused => {
                            debug!(%peer_addr, "HBONE connection refused: --max-downstream-connections reached");
                            continue;
                        }
                        Accepted::ShuttingDown => break,
                    };
                    let conn = serve_connection(
                        tcp,
                        peer_addr,
                        permit,
                        acceptor.clone(),
                        cfg.clone(),
                        handler.clone(),
                        shutdown.clone(),
                    );
                    tokio::spawn(conn.instrument(tracing::debug_span!("hbone_in", %peer_addr)));
                }
                Err(e) => {
                    // Usually EMFILE; pausing lets connections close instead of spinning.
                    warn!(error = %e, "HBONE accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            changed = shutdown.changed() => {
                if changed.is_err() {
                    break;
                }
            }
        }
    }
    info!(?local, "HBONE inbound stopped accepting");
}

async fn serve_connection<H: ConnectHandler + 'static>(
    tcp: TcpStream,
    peer_addr: SocketAddr,
    mut permit: ConnectionPermit,
    acceptor: TlsAcceptor,
    cfg: Arc<InboundConfig>,
    handler: Arc<H>,
    mut shutdown: watch::Receiver<bool>,
) {
    // Phase 1: TCP options and the mTLS handshake (the verifier checks chain and trust domain).
    if let Err(e) = tcp.set_nodelay(true) {
        debug!(error = %e, "cannot set TCP_NODELAY");
    }
    let failures = &cfg.handshake_failures;
    let handshake = async {
        // A TCP probe connects and closes without a byte; peeking tells it apart
        // from a client that started TLS and was refused.
        if matches!(tcp.peek(&mut [0u8; 1]).await, Ok(0) | Err(_)) {
            debug!("HBONE connection closed before a TLS ClientHello (a TCP probe?)");
            return Err(HandshakeFailure::ClosedBeforeClientHello);
        }
        let tls = acceptor.accept(tcp).await.map_err(|e| {
            let refused = e
                .get_ref()
                .and_then(|inner| inner.downcast_ref::<rustls::Error>());
            let reason = refused
                .map(handshake_failure_reason)
                .unwrap_or("TLS handshake failed");
            info!(reason, error = %e, "HBONE handshake refused");
            refused.map_or(HandshakeFailure::Tls, failure_kind)
        })?;
        let Some(peer) = peer_identity(tls.get_ref().1) else {
            warn!("BUG: verified client certificate without SPIFFE id");
            return Err(HandshakeFailure::BadCertificate);
        };
        let sni: Option<Arc<str>> = tls.get_ref().1.server_name().map(Arc::from);
        // Phase 2: the HTTP/2 handshake.
        let conn = cfg
            .h2_builder()
            .handshake::<_, Bytes>(tls)
            .await
            .map_err(|e| {
                debug!(error = %e, "HTTP/2 handshake failed");
                HandshakeFailure::Http2
            })?;
        Ok((peer, sni, conn))
    };
    let (peer, sni, mut conn) = match timeout(cfg.handshake_timeout, handshake).await {
        Ok(Ok(done)) => done,
        Ok(Err(reason)) => {
            failures.record(reason);
            return;
        }
        Err(_) => {
            info!(timeout = ?cfg.handshake_timeout, "HBONE handshake timed out");
            failures.record(HandshakeFailure::Timeout);
            return;
        }
    };
    if cfg.overload.admit_identity(&mut permit, &peer).is_err() {
        info!(%peer, "HBONE connection refused: --max-connections-per-identity reached for this caller");
        // A GOAWAY tells the client's pool why, instead of a bare close.
        conn.abrupt_shutdown(h2::Reason::ENHANCE_YOUR_CALM);
        let flush = async { while let Some(Ok(_)) = conn.accept().await {} };
        let _ = timeout(Duration::from_secs(1), flush).await;
        return;
    }
    debug!(%peer, "HBONE connection established");

    // Phase 3: accept streams until the client goes away, keepalive fails, or we drain.
    let pings = conn.ping_pong().expect("ping_pong is taken once, here");
    let alive = keepalive(pings, cfg.h2.keepalive_interval, cfg.h2.keepalive_timeout);
    tokio::pin!(alive);
    let mut draining = *shutdown.borrow();
    if draining {
        conn.graceful_shutdown();
    }
    loop {
        tokio::select! {
            next = conn.accept() => match next {
                Some(Ok((req, respond))) => {
                    let stream = serve_stream(req, respond, (peer.clone(), sni.clone()), peer_addr, handler.clone());
                    tokio::spawn(stream.in_current_span());
                }
                Some(Err(e)) => {
                    debug!(error = %e, "HBONE connection error");
                    break;
                }
                None => break,
            },
            end = &mut alive => {
                match end {
                    KeepaliveEnd::TimedOut => info!(%peer, "HBONE keepalive timed out; closing"),
                    KeepaliveEnd::Connection(e) => debug!(error = %e, "HBONE connection failed"),
                }
                break;
            }
            changed = shutdown.changed(), if !draining => {
                if changed.is_err() || *shutdown.borrow() {
                    debug!("draining HBONE connection");
                    conn.graceful_shutdown();
                    draining = true;
                }
            }
        }
    }
    debug!(%peer, "HBONE connection closed");
}

/// A refused handshake's counter reason: the client's certificate, or TLS itself.
fn failure_kind(err: &rustls::Error) -> HandshakeFailure {
    match err {
        rustls::Error::NoCertificatesPresented | rustls::Error::InvalidCertificate(_) => {
            HandshakeFailure::BadCertificate
        }
        _ => HandshakeFailure::Tls,
    }
}

async fn serve_stream<H: ConnectHandler>(
    req: Request<RecvStream>,
    mut respond: SendResponse<Bytes>,
    (peer, sni): (Identity, Option<Arc<str>>),
    peer_addr: SocketAddr,
    handler: Arc<H>,
) {
    // Phase 1: validate; malformed requests never reach the handler.
    let tunnel = match parse_request(&req, &peer, peer_addr) {
        Ok(t) => TunnelRequest { sni, ..t },
        Err(e) => {
            debug!(%peer, error = %e, "bad HBONE request");
            send_status(&mut respond, StatusCode::BAD_REQUEST);
            return;
        }
    };

    // Phase 2: decide.
    let accepted = match handler.decide(&tunnel).await {
        Ok(accepted) => accepted,
        Err(status) => {
            debug!(%peer, target = %tunnel.target, %status, "HBONE CONNECT rejected");
            send_status(&mut respond, status);
            return;
        }
    };

    // Phase 3: answer 200 and hand the stream over.
    let ok = Response::builder()
        .status(StatusCode::OK)
        .body(())
        .expect("static response is valid");
    let send = match respond.send_response(ok, false) {
        Ok(send) => send,
        Err(e) => {
            // Typically the client reset the stream while we decided.
            debug!(%peer, error = %e, "HBONE stream gone before 200");
            return;
        }
    };
    let mut stream = TunnelStream::new(send, req.into_body());
    stream.set_socket_addrs(tunnel.client_addr(), tunnel.target.addr());
    debug!(%peer, target = %tunnel.target, stream = stream.stream_id(), "HBONE CONNECT accepted");
    handler.serve(tunnel, accepted, stream).await;
}

fn send_status(respond: &mut SendResponse<Bytes>, status: StatusCode) {
    let response = Response::builder()
        .status(status)
        .body(())
        .expect("status-only response is valid");
    if let Err(e) = respond.send_response(response, true) {
        debug!(error = %e, %status, "cannot answer HBONE request");
    }
}
