//! Who is calling: the client's namespace (for consumer routes), its metric
//! labels and whether the connection was mutual TLS. The plain listener knows
//! none of it; HBONE and PROXY-protocol listeners attach a `Caller` to the
//! stream's `ProxyDigest`, where the proxy phases read it back.

use std::net::IpAddr;
use std::sync::Arc;

use pingora_proxy::Session;

use crate::telemetry::PeerLabels;

/// The caller of one request, as far as the listener could tell.
#[derive(Debug, Clone, Default)]
pub struct Caller {
    /// Namespace of the caller's SPIFFE identity; `None` on the plain listener.
    pub namespace: Option<Arc<str>>,
    /// Source labels for Istio's metrics.
    pub labels: PeerLabels,
    /// True when the caller was authenticated by mTLS (HBONE).
    pub mutual_tls: bool,
    /// Original client IP when a tunnel told us (`forwarded: for=`), else the peer address.
    pub client_ip: Option<IpAddr>,
}

impl Caller {
    /// The caller attached to this session's connection, or an anonymous one.
    pub fn of(session: &Session) -> Caller {
        let attached = session
            .digest()
            .and_then(|d| d.proxy_digest.as_ref())
            .and_then(|p| p.user_data.as_ref())
            .and_then(|data| data.downcast_ref::<Caller>());
        match attached {
            Some(caller) => caller.clone(),
            None => Caller {
                client_ip: session
                    .client_addr()
                    .and_then(|a| a.as_inet())
                    .map(|a| a.ip()),
                ..Default::default()
            },
        }
    }

    /// `connection_security_policy` label value.
    pub fn security_policy(&self) -> &'static str {
        if self.mutual_tls {
            "mutual_tls"
        } else {
            "none"
        }
    }
}
