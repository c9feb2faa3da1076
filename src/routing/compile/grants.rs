//! ReferenceGrant: which cross-namespace `backendRefs` are permitted.
//!
//! Per the Gateway API (ReferenceGrant, GEP-709): "All cross-namespace
//! references in Gateway API (with the exception of cross-namespace
//! Gateway-route attachment) require a ReferenceGrant", and implementations
//! "MUST NOT permit cross-namespace references which have no grant". GAMMA
//! routes are no exception: a consumer route in `frontend` that sends to a
//! Service in `bookinfo` needs a grant in `bookinfo` (Istio checks the same
//! for waypoints). A grant lives in the referent's namespace, names the
//! route kind and namespace it trusts in `from`, and the kind (and
//! optionally the name) it opens in `to`.

use std::collections::HashMap;

use crate::config::{ReferenceGrant, Sourced};

const GATEWAY_GROUP: &str = "gateway.networking.k8s.io";

/// The loaded ReferenceGrants, by the namespace they open.
#[derive(Debug, Default)]
pub(crate) struct ReferenceGrants<'a> {
    by_namespace: HashMap<&'a str, Vec<&'a ReferenceGrant>>,
}

/// The referring route: its kind as the API writes it (`HTTPRoute`) and
/// its namespace.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Referrer<'a> {
    pub kind: &'static str,
    pub namespace: &'a str,
}

impl<'a> ReferenceGrants<'a> {
    pub(crate) fn new(grants: &'a [Sourced<ReferenceGrant>]) -> Self {
        let mut by_namespace: HashMap<&str, Vec<&ReferenceGrant>> = HashMap::new();
        for g in grants {
            by_namespace
                .entry(g.key.namespace.as_str())
                .or_default()
                .push(&g.object);
        }
        Self { by_namespace }
    }

    /// Whether `from` may reference the core-group `kind` object `name` in
    /// namespace `to_ns`. Same-namespace references need no grant.
    pub(crate) fn permits(&self, from: Referrer<'_>, kind: &str, to_ns: &str, name: &str) -> bool {
        if from.namespace == to_ns {
            return true;
        }
        let Some(grants) = self.by_namespace.get(to_ns) else {
            return false;
        };
        grants.iter().any(|g| {
            let trusts = g.spec.from.iter().any(|f| {
                f.group == GATEWAY_GROUP && f.kind == from.kind && f.namespace == from.namespace
            });
            let opens = g.spec.to.iter().any(|t| {
                matches!(t.group.as_str(), "" | "core")
                    && t.kind == kind
                    && t.name.as_deref().is_none_or(|n| n == name)
            });
            trusts && opens
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::load_str;

    fn grants(yaml: &str) -> crate::config::Resources {
        load_str(yaml, "t.yaml", "default").unwrap()
    }

    const GRANT: &str = "apiVersion: gateway.networking.k8s.io/v1beta1\nkind: ReferenceGrant\nmetadata: {name: g, namespace: backend}\nspec:\n  from: [{group: gateway.networking.k8s.io, kind: HTTPRoute, namespace: front}]\n  to: [{group: \"\", kind: Service, name: api}]\n";

    #[test]
    fn a_grant_opens_only_what_it_names_to_whom_it_names() {
        let r = grants(GRANT);
        let g = ReferenceGrants::new(&r.reference_grants);
        let http = |ns| Referrer {
            kind: "HTTPRoute",
            namespace: ns,
        };
        // Rows: (referrer, kind, target namespace, name, permitted, rule).
        let rows = [
            (
                http("front"),
                "Service",
                "backend",
                "api",
                true,
                "from and to match",
            ),
            (
                http("front"),
                "Service",
                "backend",
                "db",
                false,
                "to.name restricts the grant to api",
            ),
            (
                http("other"),
                "Service",
                "backend",
                "api",
                false,
                "from.namespace is front only",
            ),
            (
                Referrer {
                    kind: "TCPRoute",
                    namespace: "front",
                },
                "Service",
                "backend",
                "api",
                false,
                "from.kind is HTTPRoute only",
            ),
            (
                http("front"),
                "Service",
                "elsewhere",
                "api",
                false,
                "a grant opens only its own namespace",
            ),
            (
                http("backend"),
                "Service",
                "backend",
                "db",
                true,
                "same namespace needs no grant",
            ),
        ];
        for (from, kind, ns, name, want, rule) in rows {
            assert_eq!(g.permits(from, kind, ns, name), want, "{rule}");
        }
    }

    #[test]
    fn a_grant_without_to_name_opens_every_service_of_its_namespace() {
        let r = grants(&GRANT.replace(", name: api", ""));
        let g = ReferenceGrants::new(&r.reference_grants);
        let from = Referrer {
            kind: "HTTPRoute",
            namespace: "front",
        };
        assert!(g.permits(from, "Service", "backend", "db"));
    }
}
