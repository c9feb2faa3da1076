//! The kinds `waypoint run --kube` watches: what the loader understands and a
//! waypoint needs (src/config/load.rs `Kind`). Gateways and GatewayClasses
//! are not watched: the waypoint knows its own Gateway by name.

use kube::core::{ApiResource, GroupVersionKind};

/// One watched kind: where the API serves it and the version we ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum WatchedKind {
    Namespace,
    Service,
    EndpointSlice,
    Pod,
    ServiceEntry,
    HttpRoute,
    /// Gateway API experimental channel: optional.
    TcpRoute,
    /// Optional too: a cluster without the CRD has no grants.
    ReferenceGrant,
    GrpcRoute,
    VirtualService,
    DestinationRule,
    WasmPlugin,
    AuthorizationPolicy,
    RequestAuthentication,
    /// Istio's Telemetry API (tracing, access logs, metric overrides).
    Telemetry,
    LinkerdServer,
    LinkerdServerAuthorization,
    LinkerdAuthorizationPolicy,
    LinkerdMeshTlsAuthentication,
    LinkerdNetworkAuthentication,
    LinkerdHttpRoute,
    /// Istio's `istio` ConfigMap in the root namespace (MeshConfig), only.
    MeshConfigMap,
}

impl WatchedKind {
    /// Every kind, in the order objects are handed to the loader.
    pub const ALL: [WatchedKind; 22] = [
        WatchedKind::Namespace,
        WatchedKind::Service,
        WatchedKind::EndpointSlice,
        WatchedKind::Pod,
        WatchedKind::ServiceEntry,
        WatchedKind::HttpRoute,
        WatchedKind::TcpRoute,
        WatchedKind::ReferenceGrant,
        WatchedKind::GrpcRoute,
        WatchedKind::VirtualService,
        WatchedKind::DestinationRule,
        WatchedKind::WasmPlugin,
        WatchedKind::AuthorizationPolicy,
        WatchedKind::RequestAuthentication,
        WatchedKind::Telemetry,
        WatchedKind::LinkerdServer,
        WatchedKind::LinkerdServerAuthorization,
        WatchedKind::LinkerdAuthorizationPolicy,
        WatchedKind::LinkerdMeshTlsAuthentication,
        WatchedKind::LinkerdNetworkAuthentication,
        WatchedKind::LinkerdHttpRoute,
        WatchedKind::MeshConfigMap,
    ];

    /// Linkerd's policy kinds.
    pub const LINKERD: [WatchedKind; 6] = [
        WatchedKind::LinkerdServer,
        WatchedKind::LinkerdServerAuthorization,
        WatchedKind::LinkerdAuthorizationPolicy,
        WatchedKind::LinkerdMeshTlsAuthentication,
        WatchedKind::LinkerdNetworkAuthentication,
        WatchedKind::LinkerdHttpRoute,
    ];

    /// `(group, version, kind, plural)`.
    fn gvkp(self) -> (&'static str, &'static str, &'static str, &'static str) {
        match self {
            WatchedKind::Namespace => ("", "v1", "Namespace", "namespaces"),
            WatchedKind::Service => ("", "v1", "Service", "services"),
            WatchedKind::EndpointSlice => {
                ("discovery.k8s.io", "v1", "EndpointSlice", "endpointslices")
            }
            WatchedKind::Pod => ("", "v1", "Pod", "pods"),
            WatchedKind::ServiceEntry => (
                "networking.istio.io",
                "v1",
                "ServiceEntry",
                "serviceentries",
            ),
            WatchedKind::HttpRoute => {
                ("gateway.networking.k8s.io", "v1", "HTTPRoute", "httproutes")
            }
            // v1alpha2: what every installed TCPRoute CRD serves (v1 only in
            // the newest Gateway API releases); the loader accepts both.
            WatchedKind::TcpRoute => (
                "gateway.networking.k8s.io",
                "v1alpha2",
                "TCPRoute",
                "tcproutes",
            ),
            WatchedKind::ReferenceGrant => (
                "gateway.networking.k8s.io",
                "v1beta1",
                "ReferenceGrant",
                "referencegrants",
            ),
            WatchedKind::GrpcRoute => {
                ("gateway.networking.k8s.io", "v1", "GRPCRoute", "grpcroutes")
            }
            WatchedKind::VirtualService => (
                "networking.istio.io",
                "v1",
                "VirtualService",
                "virtualservices",
            ),
            WatchedKind::DestinationRule => (
                "networking.istio.io",
                "v1",
                "DestinationRule",
                "destinationrules",
            ),
            WatchedKind::WasmPlugin => (
                "extensions.istio.io",
                "v1alpha1",
                "WasmPlugin",
                "wasmplugins",
            ),
            WatchedKind::AuthorizationPolicy => (
                "security.istio.io",
                "v1",
                "AuthorizationPolicy",
                "authorizationpolicies",
            ),
            WatchedKind::RequestAuthentication => (
                "security.istio.io",
                "v1",
                "RequestAuthentication",
                "requestauthentications",
            ),
            WatchedKind::Telemetry => ("telemetry.istio.io", "v1", "Telemetry", "telemetries"),
            WatchedKind::LinkerdServer => ("policy.linkerd.io", "v1beta3", "Server", "servers"),
            WatchedKind::LinkerdServerAuthorization => (
                "policy.linkerd.io",
                "v1beta1",
                "ServerAuthorization",
                "serverauthorizations",
            ),
            WatchedKind::LinkerdAuthorizationPolicy => (
                "policy.linkerd.io",
                "v1alpha1",
                "AuthorizationPolicy",
                "authorizationpolicies",
            ),
            WatchedKind::LinkerdMeshTlsAuthentication => (
                "policy.linkerd.io",
                "v1alpha1",
                "MeshTLSAuthentication",
                "meshtlsauthentications",
            ),
            WatchedKind::LinkerdNetworkAuthentication => (
                "policy.linkerd.io",
                "v1alpha1",
                "NetworkAuthentication",
                "networkauthentications",
            ),
            WatchedKind::LinkerdHttpRoute => {
                ("policy.linkerd.io", "v1beta3", "HTTPRoute", "httproutes")
            }
            WatchedKind::MeshConfigMap => ("", "v1", "ConfigMap", "configmaps"),
        }
    }

    /// The kind as `/config_dump` names it: `Kind`, or `Kind.group` for
    /// Linkerd's, whose names Istio and the Gateway API also use.
    pub fn label(self) -> String {
        let (group, _, kind, _) = self.gvkp();
        if Self::LINKERD.contains(&self) {
            format!("{kind}.{group}")
        } else {
            kind.to_string()
        }
    }

    /// The kind as the API writes it (`HTTPRoute`).
    pub fn kind(self) -> &'static str {
        self.gvkp().2
    }

    /// `group/version`, or `v1` for the core group.
    pub fn api_version(self) -> String {
        let (group, version, _, _) = self.gvkp();
        if group.is_empty() {
            version.to_string()
        } else {
            format!("{group}/{version}")
        }
    }

    /// For kube-rs' dynamic API.
    pub fn api_resource(self) -> ApiResource {
        let (group, version, kind, plural) = self.gvkp();
        ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(group, version, kind), plural)
    }

    /// Kinds whose CRDs a cluster may lack (Linkerd's, TCPRoute from the
    /// Gateway API's experimental channel, ReferenceGrant): a 404 on their
    /// list counts as an empty, synced kind.
    pub fn optional(self) -> bool {
        Self::LINKERD.contains(&self)
            || matches!(self, WatchedKind::TcpRoute | WatchedKind::ReferenceGrant)
    }

    pub fn namespaced(self) -> bool {
        self != WatchedKind::Namespace
    }
}
