//! Inbound tunnels: what to do with an HBONE CONNECT stream (or a
//! PROXY-protocol connection) once the caller is known. Resolve the target
//! to a Service port in one config snapshot, then run the same L7 path as
//! the plain listener on the stream — or, for a TCP port or non-HTTP bytes,
//! forward it as L4 with that same snapshot's endpoints.

use std::net::SocketAddr;
use std::sync::Arc;

use async_trait::async_trait;
use http::StatusCode;
use pingora_core::apps::ServerApp;
use pingora_core::protocols::Stream;
use tokio::sync::watch;
use tracing::debug;

use crate::addr::ClientIp;
use crate::hbone::{Baggage, ConnectHandler, ConnectTarget, Sniffed, TunnelRequest, TunnelStream};
use crate::identity::Identity;
use crate::routing::{DestinationPort, Snapshot};
use crate::store::SnapshotStore;
use crate::telemetry::PeerLabels;

use super::coalesce::Coalesce;
use super::downstream::{Caller, Downstream, ResolvedTarget};
use super::listener::{serve_stream, ConnectionTracker, Proxies};
use super::passthrough::{self, Passthrough};

/// Serves tunnelled connections for every inbound listener; `A` is the
/// Pingora app (the proxy) that HTTP streams are handed to.
pub struct TunnelHandler<A> {
    pub store: Arc<SnapshotStore>,
    pub proxies: Proxies<A>,
    pub tracker: Arc<ConnectionTracker>,
    pub shutdown: watch::Receiver<bool>,
    pub passthrough: Arc<Passthrough>,
}

/// The Service port an authority names in `snapshot`.
pub fn resolve_target(snapshot: &Snapshot, target: &ConnectTarget) -> Option<DestinationPort> {
    match target {
        ConnectTarget::Addr(addr) => snapshot.find_destination_by_addr(*addr),
        ConnectTarget::Host { .. } => snapshot.find_destination_by_host(&target.to_string()),
    }
}

/// Istio's source labels from the caller's identity and ztunnel's baggage.
/// A mesh caller (one with an identity) whose ztunnel named no cluster is in
/// `cluster`, the waypoint's own: Istio's waypoint reports the source
/// workload's cluster, and Kiali drops a sample whose source namespace is
/// known but whose `source_cluster` is `unknown`.
pub fn caller_from(
    identity: Option<&Identity>,
    baggage: &Baggage,
    client_ip: Option<ClientIp>,
    cluster: &Arc<str>,
) -> Caller {
    let mut labels = PeerLabels::default();
    let set = |slot: &mut Arc<str>, v: Option<&str>| {
        if let Some(v) = v.filter(|v| !v.is_empty()) {
            *slot = Arc::from(v);
        }
    };
    if let Some(id) = identity {
        labels.principal = Arc::from(id.to_string());
        labels.workload_namespace = Arc::from(id.namespace());
        labels.cluster = cluster.clone();
    }
    set(&mut labels.workload_namespace, baggage.namespace.as_deref());
    set(&mut labels.workload, baggage.workload_name());
    set(&mut labels.app, baggage.service_name.as_deref());
    set(
        &mut labels.canonical_service,
        baggage.service_name.as_deref(),
    );
    set(&mut labels.version, baggage.service_version.as_deref());
    set(
        &mut labels.canonical_revision,
        baggage.service_version.as_deref(),
    );
    set(&mut labels.cluster, baggage.cluster_name.as_deref());
    Caller {
        labels,
        client_ip,
        identity: identity.cloned(),
        traceparent: None,
        sni: None,
    }
}

impl<A: ServerApp + Send + Sync + 'static> TunnelHandler<A> {
    /// Resolves `target` in the config as it is now.
    pub fn accept(&self, target: &ConnectTarget) -> Option<ResolvedTarget> {
        let published = self.store.load();
        let destination = resolve_target(&published.snapshot, target)?;
        Some(ResolvedTarget {
            published,
            destination,
        })
    }

    /// Runs a tunnelled byte stream to `accepted`'s destination: L7 when it
    /// carries HTTP/1.1 or h2c on an HTTP port, L4 otherwise.
    pub async fn serve_bytes<S>(
        &self,
        mut stream: S,
        sniffed: Sniffed,
        downstream: Downstream,
        accepted: ResolvedTarget,
    ) where
        S: pingora_core::protocols::IO + SetDownstream + 'static,
    {
        let destination = &accepted.destination;
        let http = matches!(sniffed, Sniffed::Http1 | Sniffed::H2c)
            && !passthrough::is_tcp_port(destination);
        if !http {
            debug!(service = %destination.service.key, port = destination.port.number, "L4 passthrough");
            self.passthrough
                .forward(stream, &downstream.caller, &accepted)
                .await;
            return;
        }
        let h2c = sniffed == Sniffed::H2c;
        stream.set_downstream(downstream);
        let guard = self.tracker.track();
        let boxed: Stream = Box::new(Coalesce::new(stream));
        serve_stream(
            self.proxies.for_protocol(h2c),
            boxed,
            self.shutdown.clone(),
            guard,
        )
        .await;
    }
}

/// Streams that can carry a [`Downstream`] into Pingora's session digest.
pub trait SetDownstream {
    fn set_downstream(&mut self, downstream: Downstream);
}

impl SetDownstream for TunnelStream {
    fn set_downstream(&mut self, downstream: Downstream) {
        self.set_user_data(Box::new(downstream));
    }
}

#[async_trait]
impl<A: ServerApp + Send + Sync + 'static> ConnectHandler for TunnelHandler<A> {
    type Accepted = ResolvedTarget;

    /// 200 when the authority names something we serve, else 503 (ztunnel's
    /// own answer when nothing serves a destination).
    async fn decide(&self, req: &TunnelRequest) -> Result<ResolvedTarget, StatusCode> {
        self.accept(&req.target).ok_or_else(|| {
            debug!(target = %req.target, peer = %req.peer, "no Service for CONNECT authority");
            StatusCode::SERVICE_UNAVAILABLE
        })
    }

    async fn serve(&self, req: TunnelRequest, accepted: ResolvedTarget, mut stream: TunnelStream) {
        // A TCP port is never HTTP: don't wait for the client's first bytes,
        // which a server-first protocol (MySQL, SMTP) never sends first.
        let sniffed = if passthrough::is_tcp_port(&accepted.destination) {
            Sniffed::Other
        } else {
            match stream.sniff().await {
                Ok(s) => s,
                Err(e) => {
                    debug!(error = %e, "tunnel closed before any byte");
                    return;
                }
            }
        };
        let mut caller = caller_from(
            Some(&req.peer),
            &req.baggage,
            Some(ClientIp(req.client_addr().ip())),
            &accepted.published.snapshot.options().cluster_id,
        );
        caller.traceparent = req.traceparent.as_deref().map(Arc::from);
        caller.sni = req.sni.clone();
        let client: SocketAddr = req.client_addr();
        debug!(%client, target = %req.target, ?sniffed, "tunnel accepted");
        let downstream = Downstream {
            caller,
            target: Some(req.target),
        };
        self.serve_bytes(stream, sniffed, downstream, accepted)
            .await;
    }
}
