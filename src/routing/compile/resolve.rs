//! Resolving a Gateway API backend reference (`backendRefs[]`, a mirror's
//! `backendRef`) to a destination port and its endpoint set, for every route
//! kind. Service and Istio `Hostname` kinds are supported; a cross-namespace
//! Service needs a ReferenceGrant (`grants`). Anything else, a missing
//! Service or port, resolves to an error reason that surfaces per request
//! (HTTP 500, TCP connection closed) and in the route's `ResolvedRefs`
//! condition.

use std::cell::RefCell;
use std::collections::HashMap;

use tracing::warn;

use super::grants::{ReferenceGrants, Referrer};
use crate::config::{BackendObjectReference, NamespacedName, ObjectRef};
use crate::routing::discovery::key_in;
use crate::routing::error::{ErrorSink, RouteConfigError};
use crate::routing::route_name::RouteKind;
use crate::routing::route_status::{RefReason, UnresolvedRef};
use crate::routing::service::{DestinationPort, ServiceKind};
use crate::routing::snapshot::TargetState;
use crate::routing::table::backend::BackendTarget;

/// Destinations by API identity; a ServiceEntry has one per host.
pub(crate) type KeyIndex = HashMap<(ServiceKind, NamespacedName), Vec<usize>>;

/// The route a reference is written in.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RouteRef<'a> {
    pub kind: RouteKind,
    pub key: &'a NamespacedName,
}

impl RouteRef<'_> {
    pub(crate) fn namespace(&self) -> &str {
        &self.key.namespace
    }

    /// The route as config errors name it.
    pub(crate) fn object(&self) -> ObjectRef {
        ObjectRef {
            kind: self.kind.as_str().to_string(),
            namespace: Some(self.key.namespace.clone()),
            name: self.key.name.clone(),
        }
    }
}

/// Resolves backend references against the destinations being compiled.
pub(crate) trait Resolve {
    /// Resolves `r` (found at `field`) for the route `from`. Invalid config
    /// (a Service backend without `port`) goes to `sink`; a dangling or
    /// not-permitted reference comes back as `Err(reason)`.
    fn resolve(
        &self,
        r: &BackendObjectReference,
        from: RouteRef<'_>,
        field: &str,
        sink: &mut ErrorSink<'_>,
    ) -> BackendTarget;
}

/// Resolves Gateway API backend references against the destinations of the
/// snapshot being compiled, and keeps every reference that did not resolve
/// for the routes' `ResolvedRefs` condition.
pub(crate) struct Resolver<'a> {
    pub targets: &'a [TargetState],
    pub by_key: &'a KeyIndex,
    pub grants: &'a ReferenceGrants<'a>,
    /// Unresolved references by route, in the order they were met.
    pub unresolved: RefCell<Vec<(RouteKind, NamespacedName, UnresolvedRef)>>,
}

impl Resolver<'_> {
    fn unresolved(
        &self,
        from: RouteRef<'_>,
        field: &str,
        reason: RefReason,
        message: String,
    ) -> BackendTarget {
        self.unresolved.borrow_mut().push((
            from.kind,
            from.key.clone(),
            UnresolvedRef {
                field: field.to_string(),
                reason,
                message: message.clone(),
            },
        ));
        Err(message)
    }
}

impl Resolve for Resolver<'_> {
    fn resolve(
        &self,
        r: &BackendObjectReference,
        from: RouteRef<'_>,
        field: &str,
        sink: &mut ErrorSink<'_>,
    ) -> BackendTarget {
        let group = r.group.as_deref().unwrap_or("");
        let kind = r.kind.as_deref().unwrap_or("Service");
        let (candidates, what): (Vec<usize>, String) = match (group, kind) {
            ("" | "core", "Service") => {
                let key = key_in(from.namespace(), r.namespace.as_deref(), &r.name);
                let referrer = Referrer {
                    kind: from.kind.as_str(),
                    namespace: from.namespace(),
                };
                if !self
                    .grants
                    .permits(referrer, "Service", &key.namespace, &key.name)
                {
                    warn!(route = %from.key, backend = %key, "cross-namespace backendRef without a ReferenceGrant; traffic to it is refused");
                    let message = format!(
                        "backend Service {key}: no ReferenceGrant in namespace {} allows {} from namespace {}",
                        key.namespace,
                        from.kind.as_str(),
                        from.namespace()
                    );
                    return self.unresolved(from, field, RefReason::RefNotPermitted, message);
                }
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
                let message = format!("unsupported backend kind {group}/{kind}");
                return self.unresolved(from, field, RefReason::InvalidKind, message);
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
            warn!(backend = %what, "backend not found; traffic to it is refused");
            let message = format!("backend {what} not found");
            return self.unresolved(from, field, RefReason::BackendNotFound, message);
        };
        let target = &state.target;
        let Some(i) = target.ports.iter().position(|p| p.number == port) else {
            warn!(backend = %what, port, "backend port not found; traffic to it is refused");
            let message = format!("backend {what} has no port {port}");
            return self.unresolved(from, field, RefReason::BackendNotFound, message);
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
