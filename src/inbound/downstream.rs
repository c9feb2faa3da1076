//! Who is calling and where to: the client's identity and namespace (for
//! consumer routes), its metric labels, whether the connection was mutual
//! TLS, and — for tunnelled streams — the target the tunnel named. The plain
//! listener knows none of it; HBONE and PROXY-protocol listeners attach a
//! [`Downstream`] to the stream's `ProxyDigest` (Pingora's only way to carry
//! per-connection data into a session), where the phases read it back.
//!
//! The tunnel's target stays an authority, not a resolved Service: each
//! request resolves it in the one snapshot it is served with.

use std::sync::Arc;

use pingora_core::protocols::l4::socket::SocketAddr as PingoraAddr;
use pingora_core::protocols::Digest;
use pingora_proxy::Session;

use crate::addr::ClientIp;
use crate::hbone::ConnectTarget;
use crate::identity::Identity;
use crate::routing::DestinationPort;
use crate::store::Published;
use crate::telemetry::PeerLabels;
use crate::upstream::dial::Originator;

/// What a listener knows about a downstream connection before any request.
#[derive(Debug, Clone, Default)]
pub struct Downstream {
    pub caller: Caller,
    /// The destination named by the tunnel (HBONE `:authority`, PROXY
    /// destination); when set, routing ignores the Host header.
    pub target: Option<ConnectTarget>,
}

impl Downstream {
    /// The context attached to this session's connection, or an anonymous
    /// plain-listener one.
    pub fn of(session: &Session) -> Downstream {
        Self::of_connection(session.digest(), session.client_addr())
    }

    /// The same, from a connection's digest and peer address (an HTTP/1.1
    /// session driven without Pingora's proxy).
    pub fn of_connection(digest: Option<&Digest>, client: Option<&PingoraAddr>) -> Downstream {
        let attached = digest
            .and_then(|d| d.proxy_digest.as_ref())
            .and_then(|p| p.user_data.as_ref())
            .and_then(|data| data.downcast_ref::<Downstream>());
        match attached {
            Some(d) => d.clone(),
            None => Downstream {
                caller: Caller {
                    client_ip: client.and_then(|a| a.as_inet()).map(|a| ClientIp(a.ip())),
                    ..Default::default()
                },
                target: None,
            },
        }
    }
}

/// A tunnel's target resolved in one snapshot: the stream's L4/L7 choice
/// and, for L4, its endpoints come from this snapshot only.
pub struct ResolvedTarget {
    pub published: Arc<Published>,
    pub destination: DestinationPort,
}

/// The caller of one request, as far as the listener could tell.
#[derive(Debug, Clone, Default)]
pub struct Caller {
    /// Source labels for Istio's metrics.
    pub labels: PeerLabels,
    /// Original client IP when a tunnel told us (`forwarded: for=`), else the peer address.
    pub client_ip: Option<ClientIp>,
    /// The caller's SPIFFE identity (HBONE client certificate or PROXY TLV).
    pub identity: Option<Identity>,
    /// W3C `traceparent` of the tunnel, for logs.
    pub traceparent: Option<Arc<str>>,
    /// The TLS server name of the downstream connection (HBONE), if sent.
    pub sni: Option<Arc<str>>,
}

impl Caller {
    /// `connection_security_policy` label value.
    pub fn security_policy(&self) -> &'static str {
        // Only an mTLS handshake (HBONE) or ztunnel's PROXY TLV yields an identity.
        if self.identity.is_some() {
            "mutual_tls"
        } else {
            "none"
        }
    }

    /// Namespace of the caller's SPIFFE identity (selects GAMMA consumer
    /// routes); `None` on the plain listener.
    pub fn namespace(&self) -> Option<&str> {
        self.identity.as_ref().map(|id| id.namespace())
    }

    /// The identity as AuthorizationPolicy `principals` name it
    /// (`cluster.local/ns/x/sa/y`), borrowed from the metric label.
    pub fn principal(&self) -> Option<&str> {
        self.identity.as_ref()?;
        self.labels.principal.strip_prefix("spiffe://")
    }

    /// What an upstream connection opened for this caller tells the
    /// destination ztunnel.
    pub fn originator(&self) -> Originator {
        Originator {
            client_ip: self.client_ip,
            traceparent: self.traceparent.clone(),
        }
    }
}
