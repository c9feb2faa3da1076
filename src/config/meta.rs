//! Object metadata shared by every Kubernetes kind we read, and the typed key
//! (`NamespacedName`) the rest of the proxy uses to name objects.
//!
//! `managedFields`, `ownerReferences` and the other server-populated fields are
//! accepted and ignored on purpose, so `kubectl get -o yaml` output loads.

use std::collections::BTreeMap;
use std::fmt;

use serde::Deserialize;

/// `metadata` of a Kubernetes object (the subset the waypoint reads, plus the
/// server-populated fields it tolerates).
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ObjectMeta {
    /// Object name. Required for every kind we load.
    #[serde(default)]
    pub name: String,
    /// Namespace; cluster-scoped kinds leave it empty, namespaced kinds default
    /// to the namespace the waypoint runs in (`--namespace`), as `kubectl apply` does.
    #[serde(default)]
    pub namespace: Option<String>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    /// RFC 3339 timestamp; Gateway API precedence prefers the oldest route.
    #[serde(default)]
    pub creation_timestamp: Option<String>,
    #[serde(default)]
    pub generation: Option<i64>,
    // Server-populated fields, tolerated and ignored.
    #[serde(default)]
    pub uid: Option<serde_yaml::Value>,
    #[serde(default)]
    pub resource_version: Option<serde_yaml::Value>,
    #[serde(default)]
    pub managed_fields: Option<serde_yaml::Value>,
    #[serde(default)]
    pub owner_references: Option<serde_yaml::Value>,
    #[serde(default)]
    pub finalizers: Option<serde_yaml::Value>,
    #[serde(default)]
    pub deletion_timestamp: Option<serde_yaml::Value>,
    #[serde(default)]
    pub deletion_grace_period_seconds: Option<serde_yaml::Value>,
    #[serde(default)]
    pub generate_name: Option<serde_yaml::Value>,
    #[serde(default)]
    pub self_link: Option<serde_yaml::Value>,
}

/// `namespace/name`: how objects are keyed and shown everywhere.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NamespacedName {
    pub namespace: String,
    pub name: String,
}

impl NamespacedName {
    pub fn new(namespace: impl Into<String>, name: impl Into<String>) -> Self {
        Self {
            namespace: namespace.into(),
            name: name.into(),
        }
    }
}

impl fmt::Display for NamespacedName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}
