//! Istio's `PROXY/15088` sandwich binding: a PROXY v2 header (source,
//! destination, TLV 0xD0 = the source's SPIFFE id), then the application
//! bytes, served like an HBONE stream. Parsing the header is `hbone`'s job;
//! this file accepts connections and hands them to the tunnel handler.

use std::sync::Arc;
use std::time::Duration;

use pingora_core::apps::ServerApp;
use pingora_core::protocols::l4::stream::Stream as L4Stream;
use pingora_core::protocols::GetProxyDigest;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tracing::{debug, info, warn};

use crate::addr::ClientIp;
use crate::hbone::proxy_protocol::read_proxy_v2;
use crate::hbone::{Baggage, ConnectTarget, Sniffed};
use crate::overload::{Accepted, Overload};

use super::downstream::Downstream;
use super::listener::{l4_stream, sniff_h2c, ConnectionTracker};
use super::passthrough;
use super::tunnel::{caller_from, SetDownstream, TunnelHandler};

/// How long a PROXY-protocol client may take to send its header.
const PROXY_HEADER_TIMEOUT: Duration = Duration::from_secs(5);

/// Accepts Istio's `PROXY/15088` sandwich connections: a PROXY v2 header
/// (source, destination, TLV 0xD0 = source SPIFFE id) then the application
/// bytes, served like an HBONE stream. A missing or malformed header closes
/// the connection.
pub async fn run_proxy_protocol<A: ServerApp + Send + Sync + 'static>(
    listener: TcpListener,
    tunnels: Arc<TunnelHandler<A>>,
    tracker: Arc<ConnectionTracker>,
    overload: Arc<Overload>,
    mut shutdown: watch::Receiver<bool>,
) {
    info!(addr = ?listener.local_addr().ok(), "PROXY-protocol listener accepting");
    loop {
        let accepted = tokio::select! {
            // Under memory pressure new connections wait in the kernel's backlog.
            a = async { overload.accepting().await; listener.accept().await } => a,
            _ = shutdown.changed() => break,
        };
        let Ok((mut tcp, peer)) = accepted else {
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        let permit = match overload.admit_accepted(&mut shutdown).await {
            Accepted::Serve(permit) => permit,
            Accepted::Refused => {
                debug!(%peer, "connection refused: --max-downstream-connections reached");
                continue;
            }
            Accepted::ShuttingDown => break,
        };
        let _ = tcp.set_nodelay(true);
        let tunnels = tunnels.clone();
        let guard = tracker.track();
        tokio::spawn(async move {
            let (_guard, _permit) = (guard, permit);
            let header =
                match tokio::time::timeout(PROXY_HEADER_TIMEOUT, read_proxy_v2(&mut tcp)).await {
                    Ok(Ok(h)) => h,
                    Ok(Err(e)) => {
                        warn!(%peer, error = %e, "closing connection: bad PROXY header");
                        return;
                    }
                    Err(_) => {
                        warn!(%peer, "closing connection: no PROXY header in time");
                        return;
                    }
                };
            let target = ConnectTarget::Addr(header.destination);
            let Some(accepted) = tunnels.accept(&target) else {
                debug!(%peer, destination = %header.destination, "no Service for PROXY destination");
                return;
            };
            // A TCP port goes to passthrough without waiting for client bytes
            // (a server-first protocol sends none).
            let sniffed = if passthrough::is_tcp_port(&accepted.destination) {
                Sniffed::Other
            } else {
                match sniff_h2c(&tcp).await {
                    Ok(true) => Sniffed::H2c,
                    Ok(false) => Sniffed::Http1,
                    Err(_) => return,
                }
            };
            let caller = caller_from(
                header.peer_identity.as_ref(),
                &Baggage::default(),
                Some(ClientIp(header.source.ip())),
                &accepted.published.snapshot.options().cluster_id,
            );
            let downstream = Downstream {
                caller,
                target: Some(target),
            };
            let stream = l4_stream(tcp, header.source);
            tunnels
                .serve_bytes(stream, sniffed, downstream, accepted)
                .await;
        });
    }
    info!("PROXY-protocol listener closed");
}

impl SetDownstream for L4Stream {
    fn set_downstream(&mut self, downstream: Downstream) {
        let response = Box::new(
            pingora_http::ResponseHeader::build(200, None).expect("static status is valid"),
        );
        self.set_proxy_digest(pingora_core::protocols::raw_connect::ProxyDigest::new(
            response,
            Some(Box::new(downstream)),
        ));
    }
}
