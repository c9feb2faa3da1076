//! The plain listener's accept loop, the h2c sniff, and the hand-off of any
//! downstream stream (TCP, HBONE, PROXY protocol) to the Pingora app; plus
//! the connection count that lets shutdown drain in-flight requests.
//!
//! We run our own accept loop instead of a Pingora `Server` so that HBONE
//! streams, PROXY-protocol connections and plain sockets all enter the same
//! `HttpProxy` the same way (`ServerApp::process_new`).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use pingora_core::apps::ServerApp;
use pingora_core::protocols::l4::stream::Stream as L4Stream;
use pingora_core::protocols::{GetSocketDigest, SocketDigest, Stream};
use pingora_core::server::ShutdownWatch;
use tokio::net::TcpListener;
use tokio::sync::{watch, Notify};
use tracing::{debug, info, warn};

use super::coalesce::Coalesce;
use crate::overload::{Accepted, Overload};

/// Counts open downstream connections so shutdown can wait for them.
#[derive(Default)]
pub struct ConnectionTracker {
    open: AtomicUsize,
    closed: Notify,
}

/// Decrements the open count when a connection task ends.
pub struct ConnectionGuard(Arc<ConnectionTracker>);

impl ConnectionTracker {
    pub fn track(self: &Arc<Self>) -> ConnectionGuard {
        self.open.fetch_add(1, Ordering::AcqRel);
        ConnectionGuard(self.clone())
    }

    pub fn open(&self) -> usize {
        self.open.load(Ordering::Acquire)
    }

    /// Waits until every tracked connection has closed, or `limit` passes.
    /// Returns whether all closed in time.
    pub async fn drained(&self, limit: Duration) -> bool {
        let wait = async {
            loop {
                let notified = self.closed.notified();
                if self.open() == 0 {
                    return;
                }
                notified.await;
            }
        };
        tokio::time::timeout(limit, wait).await.is_ok()
    }
}

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        if self.0.open.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.closed.notify_waiters();
        }
    }
}

/// The proxy, twice: Pingora decides h2c per proxy (`HttpServerOptions::h2c`)
/// and then peeks with `read_exact` on the 24-byte preface, which hangs a
/// shorter HTTP/1 request (`GET / HTTP/1.0\r\n\r\n` is 18 bytes). So we sniff
/// ourselves and hand each connection to the instance for its protocol.
pub struct Proxies<A> {
    pub http1: Arc<A>,
    pub h2c: Arc<A>,
}

impl<A> Clone for Proxies<A> {
    fn clone(&self) -> Self {
        Proxies {
            http1: self.http1.clone(),
            h2c: self.h2c.clone(),
        }
    }
}

impl<A: ServerApp + Send + Sync + 'static> Proxies<A> {
    /// Wakes idle keep-alive connections so they close (shutdown).
    pub async fn cleanup(&self) {
        self.http1.cleanup().await;
        self.h2c.cleanup().await;
    }

    pub fn for_protocol(&self, h2c: bool) -> Arc<A> {
        if h2c {
            self.h2c.clone()
        } else {
            self.http1.clone()
        }
    }
}

/// The HTTP/2 connection preface (RFC 9113 §3.4).
pub const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Peeks at a fresh connection until its first bytes either are the h2
/// preface (true) or stop being a prefix of it (false). Consumes nothing.
pub async fn sniff_h2c(tcp: &tokio::net::TcpStream) -> std::io::Result<bool> {
    let mut buf = [0u8; 24];
    loop {
        let n = tcp.peek(&mut buf).await?;
        if n == 0 {
            return Ok(false);
        }
        if buf[..n] != H2_PREFACE[..n] {
            return Ok(false);
        }
        if n == H2_PREFACE.len() {
            return Ok(true);
        }
        // A prefix of the preface so far. The socket stays readable while
        // those bytes sit unread, so readiness cannot tell us more arrived:
        // poll gently (real h2c clients send the whole preface at once).
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// Serves one downstream connection: HTTP/1.1 keep-alive loop or h2c.
pub async fn serve_stream<A: ServerApp + Send + Sync + 'static>(
    proxy: Arc<A>,
    stream: Stream,
    shutdown: ShutdownWatch,
    _guard: ConnectionGuard,
) {
    let mut next = proxy.process_new(stream, &shutdown).await;
    while let Some(stream) = next {
        if *shutdown.borrow() {
            break;
        }
        next = proxy.process_new(stream, &shutdown).await;
    }
}

/// Wraps an accepted socket as Pingora's L4 stream with the peer address
/// recorded, so `Session::client_addr()` works.
pub fn l4_stream(tcp: tokio::net::TcpStream, peer: std::net::SocketAddr) -> L4Stream {
    use std::os::fd::AsRawFd;
    let digest = SocketDigest::from_raw_fd(tcp.as_raw_fd());
    let _ = digest.peer_addr.set(Some(peer.into()));
    let mut stream = L4Stream::from(tcp);
    stream.set_socket_digest(digest);
    stream
}

/// Accepts plain TCP connections until `shutdown` turns true.
pub async fn run_plain<A: ServerApp + Send + Sync + 'static>(
    listener: TcpListener,
    proxies: Proxies<A>,
    tracker: Arc<ConnectionTracker>,
    overload: Arc<Overload>,
    mut shutdown: watch::Receiver<bool>,
) {
    info!(addr = ?listener.local_addr().ok(), "plain HTTP listener accepting");
    loop {
        let accepted = tokio::select! {
            // Under memory pressure new connections wait in the kernel's backlog.
            a = async { overload.accepting().await; listener.accept().await } => a,
            _ = shutdown.changed() => break,
        };
        let (tcp, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // EMFILE and friends: back off briefly instead of spinning.
                warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let permit = match overload.admit_accepted(&mut shutdown).await {
            Accepted::Serve(permit) => permit,
            Accepted::Refused => {
                debug!(%peer, "connection refused: --max-downstream-connections reached");
                continue;
            }
            Accepted::ShuttingDown => break,
        };
        // Without NODELAY small responses wait for delayed ACKs (~40 ms stalls).
        let _ = tcp.set_nodelay(true);
        debug!(%peer, "accepted");
        let guard = tracker.track();
        let proxies = proxies.clone();
        let mut shutdown = shutdown.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let h2c = tokio::select! {
                sniffed = sniff_h2c(&tcp) => match sniffed {
                    Ok(h2c) => h2c,
                    Err(e) => { debug!(%peer, error = %e, "connection closed before a request"); return; }
                },
                _ = shutdown.changed() => return,
            };
            let stream: Stream = Box::new(Coalesce::new(l4_stream(tcp, peer)));
            serve_stream(proxies.for_protocol(h2c), stream, shutdown, guard).await;
        });
    }
    info!("plain HTTP listener closed");
}
