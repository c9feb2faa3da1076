//! `/stats/live`: the JSON the admin page polls every second. Only monotonic
//! counters and the current config's shape: the page computes rates and
//! p50/p99 from the difference between two polls, so serving it costs the
//! request path nothing.

use serde_json::{json, Value};

use super::clusters::cluster_json;
use super::AdminState;
use crate::telemetry::access_log::format_start_time;
use crate::telemetry::live::LATENCY_BOUNDS_US;

/// The page's data: listeners, routes per Service port, route and cluster
/// counters, recent reloads.
pub fn render(state: &AdminState) -> Value {
    let published = state.store.load();
    let snapshot = &published.snapshot;
    let routes: serde_json::Map<String, Value> = snapshot
        .route_counters()
        .into_iter()
        .map(|(k, c)| (k, json!(c.read())))
        .collect();
    let clusters: Vec<Value> = snapshot
        .clusters()
        .iter()
        .map(|s| cluster_json(s))
        .collect();
    let reloads: Vec<Value> = state
        .store
        .recent_reloads()
        .into_iter()
        .rev()
        .map(|r| {
            json!({
                "at": format_start_time(r.at),
                "generation": r.generation,
                "result": if r.ok { "ok" } else { "rejected" },
                "changed": r.changed,
                "errors": r.errors,
            })
        })
        .collect();
    json!({
        "generation": published.generation,
        "loadedAt": format_start_time(published.loaded_at),
        "ready": state.readiness.is_ready(),
        "listeners": state.listeners.iter().map(|l| json!({"name": l.name, "address": l.addr.to_string()})).collect::<Vec<_>>(),
        "ports": snapshot.live_ports(),
        "latencyBoundsUs": LATENCY_BOUNDS_US,
        "routes": routes,
        "clusters": clusters,
        "reloads": reloads,
    })
}
