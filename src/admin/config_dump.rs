//! `/config_dump` and its `?resource=` filter.

use serde_json::{json, Map, Value};

use super::AdminState;
use crate::identity::IdentityStore;
use crate::store::SnapshotStore;
use crate::telemetry::access_log::format_start_time;

/// The sections `?resource=` selects, in the order the error lists them.
pub const RESOURCES: [&str; 8] = [
    "listeners",
    "services",
    "clusters",
    "routes",
    "authorization",
    "objects",
    "identity",
    "last_error",
];

/// The JSON behind `/config_dump`: generation, last error, loaded objects and
/// the compiled routes per Service port.
pub fn config_dump(store: &SnapshotStore, identity: Option<&IdentityStore>) -> Value {
    let published = store.load();
    let resources = published.snapshot.resources();
    let counts: Map<String, Value> = resources
        .counts()
        .into_iter()
        .map(|(kind, n)| (kind.to_string(), n.into()))
        .collect();
    let last_error = store.last_error().map(|e| {
        json!({
            "at": format_start_time(e.at),
            "errors": e.errors.0.iter().map(|e| e.to_string()).collect::<Vec<_>>(),
        })
    });
    json!({
        "generation": published.generation,
        "loaded_at": format_start_time(published.loaded_at),
        "last_error": last_error,
        "source": store.source().describe(),
        "objects": counts,
        "identity": identity.map(|id| json!({
            "spiffe_id": id.identity().to_string(),
            "seconds_to_expiry": id.seconds_to_expiry(),
            "last_reload_error": id.last_reload_error(),
        })),
        "snapshot": published.snapshot.dump(),
        "authorization": published.authz.dump(),
    })
}

/// `/config_dump?resource=NAME`: one section of the dump with the generation,
/// or `Err` naming the valid sections.
pub fn filtered(state: &AdminState, resource: &str) -> Result<Value, String> {
    let mut dump = config_dump(&state.store, state.identity.as_deref());
    let snapshot = dump["snapshot"].take();
    let section = match resource {
        "listeners" => json!(state
            .listeners
            .iter()
            .map(|l| json!({"name": l.name, "address": l.addr.to_string()}))
            .collect::<Vec<_>>()),
        "services" => snapshot["services"].clone(),
        "clusters" => clusters(&snapshot["services"]),
        "routes" => json!({
            "routes": snapshot["routes"],
            "conflictedRoutes": snapshot.get("conflictedRoutes"),
        }),
        "authorization" | "objects" | "identity" | "last_error" => dump[resource].take(),
        other => {
            return Err(format!(
                "unknown resource {other:?}; valid resources: {}\n",
                RESOURCES.join(", ")
            ))
        }
    };
    Ok(json!({ "generation": dump["generation"], resource: section }))
}

/// Every cluster (a Service port's own, and its subsets) with its policy and
/// endpoints, read off the services section.
fn clusters(services: &Value) -> Value {
    let mut out = Vec::new();
    for svc in services.as_array().into_iter().flatten() {
        for port in svc["ports"].as_array().into_iter().flatten() {
            out.push(json!({
                "service": svc["hostname"],
                "port": port["port"],
                "cluster": port["cluster"],
                "endpoints": port["endpoints"],
            }));
            for subset in port["subsets"].as_array().into_iter().flatten() {
                out.push(json!({
                    "service": svc["hostname"],
                    "port": port["port"],
                    "subset": subset["name"],
                    "cluster": subset["cluster"],
                    "endpoints": subset["endpoints"],
                }));
            }
        }
    }
    Value::Array(out)
}
