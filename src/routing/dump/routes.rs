//! `/config_dump` for Gateway API route objects: each route with the
//! Service ports it attaches to (and why it does not act on one) and its
//! `ResolvedRefs` condition as Gateway API status would show it; and a
//! port's TCPRoutes in the order they apply.

use serde_json::{json, Value};

use crate::routing::snapshot::{PortState, Snapshot};
use crate::routing::table::backend::CompiledBackend;
use crate::routing::table::tcp::TcpRouteTable;

/// Every Gateway API route: parents and `ResolvedRefs`.
pub(super) fn dump_routes(snapshot: &Snapshot) -> Value {
    let attachments = &snapshot.attachments;
    snapshot
        .route_status
        .iter()
        .map(|s| {
            let (ok, reason, message) = s.resolved_refs();
            let parents: Vec<Value> = attachments
                .iter()
                .filter(|a| a.kind == s.kind && a.route == s.route)
                .map(|a| {
                    json!({
                        "service": a.service.to_string(),
                        "port": a.port,
                        "consumer": a.consumer,
                        "note": if a.conflicted {
                            Some("ignored: Conflicted, a GRPCRoute is attached to this Service port (GEP-1426)")
                        } else {
                            a.note
                        },
                    })
                })
                .collect();
            json!({
                "kind": s.kind.as_str(),
                "route": s.route.to_string(),
                "parents": parents,
                "conditions": [{
                    "type": "ResolvedRefs",
                    "status": if ok { "True" } else { "False" },
                    "reason": reason,
                    "message": message,
                }],
                "unresolvedRefs": s.unresolved.iter().map(|u| json!({
                    "field": u.field,
                    "reason": u.reason.as_str(),
                    "message": u.message,
                })).collect::<Vec<_>>(),
            })
        })
        .collect()
}

/// A port's TCPRoutes (producer, then consumers by namespace), or `None`
/// when it has none, so ports without TCPRoutes dump as before.
pub(super) fn dump_tcp_routes(state: &PortState) -> Option<Value> {
    if state.tcp_producer.is_empty() && state.tcp_consumers.is_empty() {
        return None;
    }
    let consumers: serde_json::Map<String, Value> = state
        .tcp_consumers
        .iter()
        .map(|(ns, t)| (ns.clone(), dump_tcp_table(t)))
        .collect();
    Some(json!({
        "producer": dump_tcp_table(&state.tcp_producer),
        "consumers": consumers,
    }))
}

fn dump_tcp_table(table: &TcpRouteTable) -> Value {
    table
        .routes
        .iter()
        .enumerate()
        .map(|(i, r)| {
            json!({
                "route": r.route.as_str(),
                "applies": i == 0,
                "backends": r.backends.iter().map(dump_backend).collect::<Vec<_>>(),
            })
        })
        .collect()
}

fn dump_backend(b: &CompiledBackend) -> Value {
    match &b.target {
        Ok((dest, eps)) => json!({
            "weight": b.weight,
            "backend": dest.authority(),
            "cluster": eps.cluster().name.to_string(),
            "endpoints": eps.len(),
        }),
        Err(reason) => json!({ "weight": b.weight, "invalid": reason }),
    }
}
