//! Destinations: the Services and ServiceEntries a request can be addressed
//! to and their ports. The lookups from a Host header or an HBONE authority
//! to a [`DestinationPort`] are the snapshot's; endpoints and routes of a port
//! live in the snapshot's port state, not here.

use std::net::IpAddr;
use std::sync::Arc;

use crate::config::NamespacedName;

/// Which API kind a destination comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ServiceKind {
    /// A Kubernetes `v1/Service`.
    Service,
    /// One host of an Istio `ServiceEntry`.
    ServiceEntry,
}

impl ServiceKind {
    /// The API kind name.
    pub fn as_str(self) -> &'static str {
        match self {
            ServiceKind::Service => "Service",
            ServiceKind::ServiceEntry => "ServiceEntry",
        }
    }
}

/// A Service port's `targetPort`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TargetPort {
    /// A port number on the endpoint.
    Number(u16),
    /// A named container port; the EndpointSlice carries the number.
    Named(Arc<str>),
}

/// One port of a destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServicePortTarget {
    /// The Service port (what clients connect to).
    pub number: u16,
    /// The port's name, if any (`sectionName` of a parentRef refers to it).
    pub name: Option<Arc<str>>,
    /// `appProtocol` (Service) or lower-cased `protocol` (ServiceEntry).
    pub app_protocol: Option<Arc<str>>,
    /// Where endpoints listen; defaults to `number`.
    pub target_port: TargetPort,
}

/// A Service or one ServiceEntry host, as a request destination.
#[derive(Debug, PartialEq)]
pub struct ServiceTarget {
    /// `namespace/name` of the Service or ServiceEntry.
    pub key: NamespacedName,
    /// `name.ns.svc.<cluster domain>` for a Service, the host for a ServiceEntry.
    pub hostname: String,
    /// Hostname, name and namespace as metric label values, shared by every request.
    pub labels: ServiceLabels,
    /// Service or ServiceEntry.
    pub kind: ServiceKind,
    /// Ports in declaration order.
    pub ports: Vec<ServicePortTarget>,
    /// Cluster IPs (Service) or VIPs (ServiceEntry `addresses`).
    pub addresses: Vec<IpAddr>,
    /// Position in the snapshot that built it (fast path for `route`).
    pub(crate) index: usize,
}

/// Istio's `destination_service`, `destination_service_name`,
/// `destination_service_namespace` and `destination_cluster` of a destination,
/// built once per snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceLabels {
    pub hostname: Arc<str>,
    pub name: Arc<str>,
    pub namespace: Arc<str>,
    /// The cluster the destination lives in: the snapshot's cluster id (every
    /// Service and ServiceEntry the waypoint serves is its own cluster's).
    /// Kiali drops a sample whose `destination_service_namespace` is known but
    /// whose `destination_cluster` is `unknown` as bad telemetry.
    pub cluster: Arc<str>,
}

impl ServiceLabels {
    /// The labels of `key` at `hostname`; the cluster is `unknown` until the
    /// snapshot sets its own.
    pub fn new(key: &NamespacedName, hostname: &str) -> Self {
        ServiceLabels {
            hostname: hostname.into(),
            name: key.name.as_str().into(),
            namespace: key.namespace.as_str().into(),
            cluster: crate::telemetry::UNKNOWN.into(),
        }
    }
}

impl ServicePortTarget {
    /// True for ports Istio treats as plain TCP: `appProtocol: tcp` or a port
    /// name `tcp` / `tcp-*`. Connections to them are never parsed as HTTP:
    /// TCPRoutes apply, HTTPRoutes do not.
    pub fn is_tcp(&self) -> bool {
        if let Some(app) = self.app_protocol.as_deref() {
            return app.eq_ignore_ascii_case("tcp");
        }
        self.name.as_deref().is_some_and(|n| {
            n.eq_ignore_ascii_case("tcp")
                || n.get(..4).is_some_and(|p| p.eq_ignore_ascii_case("tcp-"))
        })
    }

    /// True for ports whose endpoints speak HTTP/2 in cleartext, as Istio
    /// selects the protocol: `appProtocol` `grpc`, `http2`, `h2c` or
    /// `kubernetes.io/h2c`, else a port name `grpc[-*]` or `http2[-*]`.
    pub fn speaks_h2c(&self) -> bool {
        match (self.app_protocol.as_deref(), self.name.as_deref()) {
            (Some(app), _) => ["kubernetes.io/h2c", "h2c", "http2", "grpc"]
                .iter()
                .any(|p| app.eq_ignore_ascii_case(p)),
            (None, Some(name)) => {
                let prefix = name.split('-').next().unwrap_or(name);
                prefix.eq_ignore_ascii_case("grpc") || prefix.eq_ignore_ascii_case("http2")
            }
            (None, None) => false,
        }
    }
}

impl ServiceTarget {
    /// The port numbered `number`.
    pub fn port(&self, number: u16) -> Option<&ServicePortTarget> {
        self.ports.iter().find(|p| p.number == number)
    }

    /// The port used when a request names no port: 80 if the destination has
    /// it, else its first port.
    pub fn default_port(&self) -> Option<&ServicePortTarget> {
        self.port(80).or_else(|| self.ports.first())
    }
}

/// Where a request is addressed: a destination (Service or ServiceEntry host)
/// and one of its ports. Not Istio's `destination` (`config::Destination`). Cheap to
/// clone.
#[derive(Debug, Clone, PartialEq)]
pub struct DestinationPort {
    /// The Service or ServiceEntry host.
    pub service: Arc<ServiceTarget>,
    /// The port the request was addressed to.
    pub port: ServicePortTarget,
}

impl DestinationPort {
    /// `hostname:port`, e.g. `reviews.bookinfo.svc.cluster.local:9080`.
    pub fn authority(&self) -> String {
        format!("{}:{}", self.service.hostname, self.port.number)
    }
}

/// Splits `host[:port]`, accepting `[v6]:port` and bare IPv6 literals.
/// Returns `None` when the port is not a number.
pub(crate) fn split_host_port(authority: &str) -> Option<(&str, Option<u16>)> {
    if let Some(rest) = authority.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        return match after.strip_prefix(':') {
            Some(port) => Some((host, Some(port.parse().ok()?))),
            None if after.is_empty() => Some((host, None)),
            None => None,
        };
    }
    if authority.parse::<IpAddr>().is_ok() {
        // A bare IPv6 literal has colons but no port.
        return Some((authority, None));
    }
    match authority.rsplit_once(':') {
        Some((host, port)) => Some((host, Some(port.parse().ok()?))),
        None => Some((authority, None)),
    }
}
