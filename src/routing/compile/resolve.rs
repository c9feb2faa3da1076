//! Resolving a Gateway API backend reference (`backendRefs[]`, a mirror's
//! `backendRef`) to a destination port and its endpoint set. Service and
//! Istio `Hostname` kinds are supported; anything else, a missing Service or
//! port, resolves to an error reason that surfaces per request as a 500.

use std::collections::HashMap;

use tracing::warn;

use crate::config::{BackendObjectReference, NamespacedName};
use crate::routing::discovery::key_in;
use crate::routing::error::{ErrorSink, RouteConfigError};
use crate::routing::service::{DestinationPort, ServiceKind};
use crate::routing::snapshot::TargetState;
use crate::routing::table::backend::BackendTarget;

/// Destinations by API identity; a ServiceEntry has one per host.
pub(crate) type KeyIndex = HashMap<(ServiceKind, NamespacedName), Vec<usize>>;

/// Resolves backend references against the destinations being compiled.
pub(crate) trait Resolve {
    /// Resolves `r` (found at `field`) for a route in `route_ns`. Invalid
    /// config (a Service backend without `port`) goes to `sink`; a dangling
    /// reference comes back as `Err(reason)`.
    fn resolve(
        &self,
        r: &BackendObjectReference,
        route_ns: &str,
        field: &str,
        sink: &mut ErrorSink<'_>,
    ) -> BackendTarget;
}

/// Resolves Gateway API backend references against the destinations of the
/// snapshot being compiled.
pub(crate) struct Resolver<'a> {
    pub targets: &'a [TargetState],
    pub by_key: &'a KeyIndex,
}

impl Resolve for Resolver<'_> {
    fn resolve(
        &self,
        r: &BackendObjectReference,
        route_ns: &str,
        field: &str,
        sink: &mut ErrorSink<'_>,
    ) -> BackendTarget {
        let group = r.group.as_deref().unwrap_or("");
        let kind = r.kind.as_deref().unwrap_or("Service");
        let (candidates, what): (Vec<usize>, String) = match (group, kind) {
            ("" | "core", "Service") => {
                let key = key_in(route_ns, r.namespace.as_deref(), &r.name);
                let found = self.by_key.get(&(ServiceKind::Service, key.clone()));
                (found.cloned().unwrap_or_default(), format!("Service {key}"))
            }
            // Istio's extension: a ServiceEntry host as a backend.
            ("networking.istio.io", "Hostname") => {
                let host = r.name.to_ascii_lowercase();
                let found = (0..self.targets.len())
                    .filter(|&i| {
                        let t = &self.targets[i].target;
                        t.kind == ServiceKind::ServiceEntry && t.hostname == host
                    })
                    .take(1)
                    .collect();
                (found, format!("Hostname {host}"))
            }
            _ => {
                warn!(%group, %kind, name = %r.name, "unsupported backend kind");
                return Err(format!("unsupported backend kind {group}/{kind}"));
            }
        };
        let Some(port) = r.port else {
            sink.push(
                format!("{field}.port"),
                RouteConfigError::MissingBackendPort {
                    kind: kind.to_string(),
                },
            );
            return Err(format!("backend {what} has no port"));
        };
        let Some(state) = candidates.first().and_then(|&i| self.targets.get(i)) else {
            warn!(backend = %what, "backend not found; requests to it get 500");
            return Err(format!("backend {what} not found"));
        };
        let target = &state.target;
        let Some(i) = target.ports.iter().position(|p| p.number == port) else {
            warn!(backend = %what, port, "backend port not found; requests to it get 500");
            return Err(format!("backend {what} has no port {port}"));
        };
        Ok((
            DestinationPort {
                service: target.clone(),
                port: target.ports[i].clone(),
            },
            state.ports[i].endpoints.clone(),
        ))
    }
}
