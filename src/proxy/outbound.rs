//! Outbound HBONE: in-mesh endpoints are reached through their node's
//! ztunnel (`podIP:15008`, `CONNECT podIP:targetPort`, mTLS with the
//! waypoint's own identity). Plain endpoints stay plain.

use std::hash::{Hash, Hasher};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use pingora_core::upstreams::peer::HttpPeer;

use crate::hbone::{Forwarded, HboneConnector, HbonePool, OutboundHeaders, PoolConfig};
use crate::identity::{Identity, IdentityStore};

use super::caller::Caller;

/// Everything needed to dial in-mesh endpoints.
pub struct HboneUpstream {
    pool: HbonePool,
    store: Arc<IdentityStore>,
    /// The destination ztunnel's HBONE port (`--hbone-upstream-port`).
    port: u16,
}

impl HboneUpstream {
    pub fn new(store: Arc<IdentityStore>, trust_domain: &str, port: u16) -> Self {
        Self {
            pool: HbonePool::new(store.clone(), trust_domain, PoolConfig::default()),
            store,
            port,
        }
    }

    /// The waypoint's own SPIFFE identity (its leaf certificate's URI SAN).
    pub fn own_identity(&self) -> Identity {
        self.store.identity()
    }

    /// Opens an HBONE stream to `target` (for L4 passthrough).
    pub async fn connect(
        &self,
        target: SocketAddr,
        caller: &Caller,
        timeout: Duration,
    ) -> Result<crate::hbone::TunnelStream, crate::hbone::HboneError> {
        let ztunnel = SocketAddr::new(target.ip(), self.port);
        let headers = outbound_headers(caller);
        match tokio::time::timeout(timeout, self.pool.connect(ztunnel, target, &headers)).await {
            Ok(r) => r,
            Err(_) => Err(crate::hbone::HboneError::Timeout {
                ztunnel,
                phase: "tunnel setup",
                timeout,
            }),
        }
    }

    /// Turns `peer` (the endpoint `target`) into an HBONE peer: Pingora's L4
    /// connect becomes a CONNECT stream on a pooled mTLS h2 connection to the
    /// endpoint's ztunnel.
    pub fn configure(
        &self,
        peer: &mut HttpPeer,
        target: SocketAddr,
        caller: &Caller,
        timeout: Duration,
    ) {
        let ztunnel = SocketAddr::new(target.ip(), self.port);
        let headers = outbound_headers(caller);
        peer.options.custom_l4 = Some(Arc::new(HboneConnector::new(
            self.pool.clone(),
            ztunnel,
            target,
            headers,
        )));
        // Pingora keys its pool by address, not by custom_l4: a distinct group
        // keeps a pooled plaintext connection from ever serving an HBONE peer.
        peer.group_key = hbone_group_key(&self.store.identity());
        // `connection_timeout` is not applied to custom L4 connects.
        peer.options.total_connection_timeout = Some(timeout);
    }
}

/// What the destination ztunnel learns about the original caller.
fn outbound_headers(caller: &Caller) -> OutboundHeaders {
    OutboundHeaders {
        baggage: None,
        forwarded: caller
            .client_ip
            .map(|ip| Forwarded::new(SocketAddr::new(ip, 0), None)),
        traceparent: caller.traceparent.as_deref().map(str::to_string),
    }
}

fn hbone_group_key(identity: &Identity) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    "hbone".hash(&mut h);
    identity.to_string().hash(&mut h);
    h.finish() | 1
}
