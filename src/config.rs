//! Configuration as Kubernetes objects: serde types that mirror the API field
//! for field, loading them from YAML files, where they come from ([`source`]:
//! files or the API server), and errors that say where a bad field is. This module knows nothing of routing: `routing` compiles the
//! loaded [`Resources`] into the immutable snapshot the request path reads.

mod core;
mod error;
mod extensions;
mod gateway;
mod grpc_route;
mod istio;
mod istio_traffic;
mod linkerd;
pub mod load;
mod mesh;
mod meta;
mod reference_grant;
mod security;
pub mod source;
mod tcp_route;
mod telemetry;
pub mod watch;

use std::sync::Arc;

pub use self::core::*;
pub use error::{ConfigError, ConfigErrors, Location, ObjectRef};
pub use extensions::*;
pub use gateway::*;
pub use grpc_route::*;
pub use istio::*;
pub use istio_traffic::*;
pub use linkerd::*;
pub use load::{load_objects, load_path, load_str};
pub use mesh::{
    ConfigMap, DefaultProviders, EnvoyFileAccessLog, ExtAuthzGrpc, ExtAuthzHttp, ExtensionProvider,
    FileLogFormat, MeshConfig, OpenTelemetryProvider, OtelGrpc, OtelHeader, OtelHttp, ProxyConfig,
    ProxyTracing, ResourceDetectors, ISTIO_CONFIGMAP,
};
pub use meta::{NamespacedName, ObjectMeta};
pub use reference_grant::*;
pub use security::*;
pub use tcp_route::*;
pub use telemetry::*;

/// Where an object came from: the file and the 0-based index of the YAML
/// document in it (items of a `List` share their document's index).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    pub file: Arc<str>,
    pub document: usize,
}

/// A loaded object with its origin, so later stages can report errors with a
/// location.
#[derive(Debug, Clone, PartialEq)]
pub struct Sourced<T> {
    pub origin: Origin,
    /// `namespace/name` with the namespace defaulted.
    pub key: NamespacedName,
    pub object: T,
}

impl<T> Sourced<T> {
    /// An error located at `field` of this object (`kind` as users write it).
    pub fn error_at(&self, kind: &str, field: &str, reason: impl Into<String>) -> ConfigError {
        ConfigError::new(
            Location {
                file: Some(self.origin.file.to_string()),
                document: Some(self.origin.document),
                object: Some(ObjectRef {
                    kind: kind.to_string(),
                    namespace: Some(self.key.namespace.clone()),
                    name: self.key.name.clone(),
                }),
                field: Some(field.to_string()),
            },
            reason,
        )
    }
}

/// Every object the waypoint understood, by kind, in load order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Resources {
    pub namespaces: Vec<Sourced<Namespace>>,
    pub services: Vec<Sourced<Service>>,
    pub endpoint_slices: Vec<Sourced<EndpointSlice>>,
    pub pods: Vec<Sourced<Pod>>,
    pub service_entries: Vec<Sourced<ServiceEntry>>,
    pub gateways: Vec<Sourced<Gateway>>,
    pub gateway_classes: Vec<Sourced<GatewayClass>>,
    pub http_routes: Vec<Sourced<HttpRoute>>,
    pub tcp_routes: Vec<Sourced<TcpRoute>>,
    pub reference_grants: Vec<Sourced<ReferenceGrant>>,
    pub grpc_routes: Vec<Sourced<GrpcRoute>>,
    pub virtual_services: Vec<Sourced<VirtualService>>,
    pub destination_rules: Vec<Sourced<DestinationRule>>,
    pub wasm_plugins: Vec<Sourced<WasmPlugin>>,
    pub authorization_policies: Vec<Sourced<LoadedPolicy>>,
    pub request_authentications: Vec<Sourced<RequestAuthentication>>,
    pub linkerd_servers: Vec<Sourced<Server>>,
    pub linkerd_server_authorizations: Vec<Sourced<ServerAuthorization>>,
    pub linkerd_authorization_policies: Vec<Sourced<LinkerdAuthorizationPolicy>>,
    pub linkerd_mesh_tls_authentications: Vec<Sourced<MeshTlsAuthentication>>,
    pub linkerd_network_authentications: Vec<Sourced<NetworkAuthentication>>,
    pub linkerd_http_routes: Vec<Sourced<LinkerdHttpRoute>>,
    /// Istio's Telemetry resources (`telemetry.istio.io`).
    pub telemetries: Vec<Sourced<Telemetry>>,
    /// Istio's `istio` ConfigMaps (`data.mesh` parsed), by namespace.
    pub mesh_configs: Vec<Sourced<MeshConfig>>,
}

impl Resources {
    /// Counts per kind, for `waypoint check` and `/config_dump`.
    pub fn counts(&self) -> Vec<(&'static str, usize)> {
        vec![
            ("Namespace", self.namespaces.len()),
            ("Service", self.services.len()),
            ("EndpointSlice", self.endpoint_slices.len()),
            ("Pod", self.pods.len()),
            ("ServiceEntry", self.service_entries.len()),
            ("Gateway", self.gateways.len()),
            ("GatewayClass", self.gateway_classes.len()),
            ("HTTPRoute", self.http_routes.len()),
            ("TCPRoute", self.tcp_routes.len()),
            ("ReferenceGrant", self.reference_grants.len()),
            ("GRPCRoute", self.grpc_routes.len()),
            ("VirtualService", self.virtual_services.len()),
            ("DestinationRule", self.destination_rules.len()),
            ("WasmPlugin", self.wasm_plugins.len()),
            ("AuthorizationPolicy", self.authorization_policies.len()),
            ("RequestAuthentication", self.request_authentications.len()),
            ("Telemetry", self.telemetries.len()),
            ("Server", self.linkerd_servers.len()),
            (
                "ServerAuthorization",
                self.linkerd_server_authorizations.len(),
            ),
            (
                "AuthorizationPolicy.policy.linkerd.io",
                self.linkerd_authorization_policies.len(),
            ),
            (
                "MeshTLSAuthentication",
                self.linkerd_mesh_tls_authentications.len(),
            ),
            (
                "NetworkAuthentication",
                self.linkerd_network_authentications.len(),
            ),
            (
                "HTTPRoute.policy.linkerd.io",
                self.linkerd_http_routes.len(),
            ),
        ]
    }
}
