//! `waypoint run --kube`: the config comes from the API server instead of
//! files. Watches the kinds in [`WatchedKind::ALL`], keeps their objects in
//! per-kind maps, picks the ones relevant to this waypoint and hands them to
//! the same loader and compiler the file source uses (as a [`ConfigSource`]),
//! so validation and the all-or-nothing hot swap are the same.
//!
//! What this module does not own: the snapshot store (it asks it to reload
//! through [`Reload`](super::Reload)) and readiness (it reports the first good snapshot).
//! Connecting to the cluster is [`client`]'s, shared with the control plane.

pub mod client;
mod kinds;
mod objects;
mod relevance;
mod sync;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard};

use serde_json::json;

use super::ConfigSource;
use crate::config::{self, ConfigErrors, Resources};
use crate::telemetry::access_log::format_start_time;

use client::ApiServerOptions;
pub use kinds::WatchedKind;
use objects::ObjectMap;
pub use relevance::{USE_WAYPOINT, USE_WAYPOINT_NAMESPACE};
pub use sync::{start, KubeWatch};

/// `waypoint run --kube` settings.
#[derive(Debug, Clone)]
pub struct KubeSourceOptions {
    /// This waypoint's Gateway (`--gateway-name`, default `waypoint`); its
    /// namespace is the waypoint's (`--namespace` / `POD_NAMESPACE`).
    pub gateway_name: String,
    /// Where the API server is (`--kubeconfig`, `--context`).
    pub api_server: ApiServerOptions,
}

impl Default for KubeSourceOptions {
    fn default() -> Self {
        Self {
            gateway_name: "waypoint".to_string(),
            api_server: ApiServerOptions::default(),
        }
    }
}

/// The objects seen on the API server, as a [`ConfigSource`].
pub struct KubeSource {
    gateway_name: String,
    namespace: String,
    cluster_domain: String,
    root_namespace: String,
    gateway_class: String,
    url: String,
    maps: Mutex<BTreeMap<WatchedKind, ObjectMap>>,
}

impl KubeSource {
    /// An empty source for the waypoint `gateway_name` in `namespace`; `url`
    /// names the API server in `/config_dump`.
    pub fn new(gateway_name: &str, namespace: &str, cluster_domain: &str, url: &str) -> Self {
        Self {
            gateway_name: gateway_name.to_string(),
            namespace: namespace.to_string(),
            cluster_domain: cluster_domain.to_string(),
            root_namespace: "istio-system".to_string(),
            gateway_class: "pingora-waypoint".to_string(),
            url: url.to_string(),
            maps: Mutex::new(
                WatchedKind::ALL
                    .iter()
                    .map(|k| (*k, ObjectMap::new(*k)))
                    .collect(),
            ),
        }
    }

    /// Where GatewayClass-wide AuthorizationPolicies live and which class is
    /// this waypoint's (defaults: `istio-system`, `pingora-waypoint`).
    pub fn with_policy_scope(mut self, root_namespace: &str, gateway_class: &str) -> Self {
        self.root_namespace = root_namespace.to_string();
        self.gateway_class = gateway_class.to_string();
        self
    }

    fn maps(&self) -> MutexGuard<'_, BTreeMap<WatchedKind, ObjectMap>> {
        self.maps
            .lock()
            .expect("object maps lock is never poisoned: no panics while held")
    }

    /// Whether every watched kind has completed its initial list.
    pub fn is_synced(&self) -> bool {
        self.maps().values().all(ObjectMap::is_synced)
    }

    /// Whether `kind` has completed a list (or was found absent).
    fn is_listed(&self, kind: WatchedKind) -> bool {
        self.maps().get(&kind).is_some_and(ObjectMap::is_synced)
    }

    fn apply(
        &self,
        kind: WatchedKind,
        event: kube::runtime::watcher::Event<kube::core::DynamicObject>,
    ) -> bool {
        self.maps()
            .get_mut(&kind)
            .expect("every watched kind has a map")
            .apply(event)
    }
}

impl ConfigSource for KubeSource {
    /// Before the first full sync this is an empty config; readiness stays
    /// 503 until a snapshot built after the sync is published.
    fn load(&self, default_namespace: &str) -> Result<Resources, ConfigErrors> {
        let id = relevance::WaypointId {
            gateway_name: &self.gateway_name,
            namespace: &self.namespace,
            cluster_domain: &self.cluster_domain,
            root_namespace: &self.root_namespace,
            gateway_class: &self.gateway_class,
        };
        // Copy out under the lock; parse and validate without it.
        let objects = relevance::select(&id, &self.maps());
        config::load_objects(objects, default_namespace)
    }

    /// Objects from the API have no directory: relative WasmPlugin paths
    /// resolve against `/` (use `file:///…` URLs).
    fn base_dir(&self) -> PathBuf {
        PathBuf::from("/")
    }

    fn describe(&self) -> serde_json::Value {
        let maps = self.maps();
        let kinds: serde_json::Map<String, serde_json::Value> = maps
            .iter()
            .map(|(kind, map)| {
                (
                    kind.label(),
                    json!({
                        "objects": map.count(),
                        "last_sync": map.last_sync().map(format_start_time),
                    }),
                )
            })
            .collect();
        json!({
            "type": "kube",
            "api_server": self.url,
            "gateway": format!("{}/{}", self.namespace, self.gateway_name),
            "synced": maps.values().all(ObjectMap::is_synced),
            "kinds": kinds,
        })
    }
}
