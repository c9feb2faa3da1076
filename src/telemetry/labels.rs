//! Istio's standard metric labels. Values the proxy cannot know are
//! `unknown`, exactly as Istio reports them, so dashboards group them alike.

use std::sync::Arc;

use super::{ResponseFlags, UNKNOWN};

/// One side (source or destination) of a request, as Istio labels it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PeerLabels {
    pub workload: Arc<str>,
    pub workload_namespace: Arc<str>,
    pub principal: Arc<str>,
    pub app: Arc<str>,
    pub version: Arc<str>,
    pub canonical_service: Arc<str>,
    pub canonical_revision: Arc<str>,
    pub cluster: Arc<str>,
}

thread_local! {
    /// `unknown` and the empty string, allocated once per thread: labels are built for
    /// every request, and most of them are one of these.
    static UNKNOWN_ARC: Arc<str> = Arc::from(UNKNOWN);
    static EMPTY_ARC: Arc<str> = Arc::from("");
}

thread_local! {
    /// `grpc_response_status` values of the 17 gRPC codes, allocated once per thread.
    static GRPC_CODES: [Arc<str>; 17] = std::array::from_fn(|c| Arc::from(c.to_string()));
}

/// The `grpc_response_status` label value of gRPC status `code`.
pub fn grpc_status_label(code: u32) -> Arc<str> {
    match usize::try_from(code) {
        Ok(c) if c < 17 => GRPC_CODES.with(|codes| codes[c].clone()),
        _ => Arc::from(code.to_string()),
    }
}

fn unknown() -> Arc<str> {
    UNKNOWN_ARC.with(Arc::clone)
}

impl Default for PeerLabels {
    fn default() -> Self {
        let unknown = unknown();
        Self {
            workload: unknown.clone(),
            workload_namespace: unknown.clone(),
            principal: unknown.clone(),
            app: unknown.clone(),
            version: unknown.clone(),
            canonical_service: unknown.clone(),
            canonical_revision: unknown.clone(),
            cluster: unknown,
        }
    }
}

/// Everything `istio_requests_total` and friends are labelled with.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RequestLabels {
    pub source: PeerLabels,
    pub destination: PeerLabels,
    /// FQDN of the destination Service, e.g. `reviews.bookinfo.svc.cluster.local`.
    pub destination_service: Arc<str>,
    pub destination_service_name: Arc<str>,
    pub destination_service_namespace: Arc<str>,
    /// `http` or `grpc` (a gRPC call; Istio reports other HTTP/2 as `http`).
    pub request_protocol: &'static str,
    pub response_code: u16,
    /// A gRPC call's `grpc-status` (response header or trailer, or the
    /// waypoint's own answer); empty otherwise.
    pub grpc_response_status: Arc<str>,
    pub response_flags: ResponseFlags,
    /// `mutual_tls` on HBONE, `none` on the plain listener.
    pub connection_security_policy: &'static str,
}

impl Default for RequestLabels {
    fn default() -> Self {
        let unknown = unknown();
        Self {
            source: PeerLabels::default(),
            destination: PeerLabels::default(),
            destination_service: unknown.clone(),
            destination_service_name: unknown.clone(),
            destination_service_namespace: unknown,
            request_protocol: "http",
            response_code: 0,
            grpc_response_status: EMPTY_ARC.with(Arc::clone),
            response_flags: ResponseFlags::NONE,
            connection_security_policy: "none",
        }
    }
}

/// Label names in the order [`RequestLabels::values`] yields them.
pub(super) const REQUEST_LABEL_NAMES: &[&str] = &[
    "reporter",
    "source_workload",
    "source_workload_namespace",
    "source_principal",
    "source_app",
    "source_version",
    "source_canonical_service",
    "source_canonical_revision",
    "source_cluster",
    "destination_workload",
    "destination_workload_namespace",
    "destination_principal",
    "destination_app",
    "destination_version",
    "destination_service",
    "destination_service_name",
    "destination_service_namespace",
    "destination_canonical_service",
    "destination_canonical_revision",
    "destination_cluster",
    "request_protocol",
    "response_code",
    "grpc_response_status",
    "response_flags",
    "connection_security_policy",
];

/// Labels of the request set that Istio's TCP metrics leave out.
pub(super) const HTTP_ONLY_LABELS: &[&str] = &["response_code", "grpc_response_status"];

/// Istio's TCP metric labels: the request set without the HTTP-only ones.
pub(super) fn tcp_label_names() -> Vec<&'static str> {
    REQUEST_LABEL_NAMES
        .iter()
        .copied()
        .filter(|n| !HTTP_ONLY_LABELS.contains(n))
        .collect()
}

impl RequestLabels {
    /// Label values in [`tcp_label_names`] order.
    pub(super) fn tcp_values(&self) -> Vec<&str> {
        self.values("", "-")
            .into_iter()
            .zip(REQUEST_LABEL_NAMES)
            .filter(|(_, name)| !HTTP_ONLY_LABELS.contains(name))
            .map(|(v, _)| v)
            .collect()
    }

    /// Label values in [`REQUEST_LABEL_NAMES`] order. `codes` holds the
    /// formatted response code and flags so the caller owns the strings.
    pub(super) fn values<'a>(&'a self, code: &'a str, flags: &'a str) -> [&'a str; 25] {
        let s = &self.source;
        let d = &self.destination;
        [
            "waypoint",
            &s.workload,
            &s.workload_namespace,
            &s.principal,
            &s.app,
            &s.version,
            &s.canonical_service,
            &s.canonical_revision,
            &s.cluster,
            &d.workload,
            &d.workload_namespace,
            &d.principal,
            &d.app,
            &d.version,
            &self.destination_service,
            &self.destination_service_name,
            &self.destination_service_namespace,
            &d.canonical_service,
            &d.canonical_revision,
            &d.cluster,
            self.request_protocol,
            code,
            &self.grpc_response_status,
            flags,
            self.connection_security_policy,
        ]
    }
}
