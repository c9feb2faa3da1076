//! `/clusters`: every cluster's endpoints with health, outlier-detection
//! state, active requests and weight, in Envoy's text form
//! (`cluster::address::field::value`) or, with `?format=json`, as JSON.

use std::time::SystemTime;

use serde_json::{json, Value};

use crate::store::SnapshotStore;
use crate::telemetry::access_log::format_start_time;
use crate::upstream::EndpointSet;

/// One endpoint as `/clusters` shows it.
struct EndpointRow {
    address: String,
    active: u64,
    /// Every ready endpoint weighs the same: EndpointSlices carry no weight.
    weight: u32,
    /// When outlier detection ejected it: until when (wall clock).
    ejected_until: Option<SystemTime>,
    zone: Option<String>,
}

impl EndpointRow {
    /// Envoy's `health_flags`: `healthy`, or `/failed_outlier_check` for
    /// an ejected host (only ready endpoints are in a cluster).
    fn health_flags(&self) -> &'static str {
        if self.ejected_until.is_some() {
            "/failed_outlier_check"
        } else {
            "healthy"
        }
    }
}

fn rows(set: &EndpointSet) -> Vec<EndpointRow> {
    let outlier = set.cluster().outlier.as_ref();
    set.endpoints()
        .iter()
        .zip(set.active_requests())
        .map(|(e, active)| EndpointRow {
            address: e.addr.to_string(),
            active,
            weight: 1,
            ejected_until: outlier
                .and_then(|o| o.ejected_for(e.addr))
                .map(|left| SystemTime::now() + left),
            zone: e.zone.clone(),
        })
        .collect()
}

/// The text form: one `name::address::field::value` line per fact, as
/// Envoy's `/clusters` prints them.
pub fn text(store: &SnapshotStore) -> String {
    let published = store.load();
    let mut out = String::new();
    for set in published.snapshot.clusters() {
        let name = set.cluster().name.to_string();
        let outlier = if set.cluster().outlier.is_some() {
            "enabled"
        } else {
            "disabled"
        };
        out.push_str(&format!("{name}::outlier_detection::{outlier}\n"));
        for row in rows(&set) {
            let at = format!("{name}::{}", row.address);
            out.push_str(&format!("{at}::rq_active::{}\n", row.active));
            out.push_str(&format!("{at}::weight::{}\n", row.weight));
            out.push_str(&format!("{at}::health_flags::{}\n", row.health_flags()));
            if let Some(until) = row.ejected_until {
                out.push_str(&format!(
                    "{at}::ejected_until::{}\n",
                    format_start_time(until)
                ));
            }
            out.push_str(&format!(
                "{at}::zone::{}\n",
                row.zone.as_deref().unwrap_or("")
            ));
        }
    }
    out
}

/// The JSON form (`?format=json`), also read by the admin page.
pub fn json(store: &SnapshotStore) -> Value {
    let published = store.load();
    let clusters: Vec<Value> = published
        .snapshot
        .clusters()
        .iter()
        .map(|set| cluster_json(set))
        .collect();
    json!({ "generation": published.generation, "clusters": clusters })
}

/// One cluster: its endpoints and its live counters.
pub fn cluster_json(set: &EndpointSet) -> Value {
    let endpoints: Vec<Value> = rows(set)
        .into_iter()
        .map(|r| {
            json!({
                "address": r.address,
                "healthFlags": r.health_flags(),
                "ejected": r.ejected_until.is_some(),
                "ejectedUntil": r.ejected_until.map(format_start_time),
                "activeRequests": r.active,
                "weight": r.weight,
                "zone": r.zone,
            })
        })
        .collect();
    json!({
        "name": set.cluster().name.to_string(),
        "outlierDetection": set.cluster().outlier.is_some(),
        "endpoints": endpoints,
        "stats": set.counters().map(|c| c.read()),
    })
}
