//! The fake API server's object store: objects as JSON, one global
//! resourceVersion counter, and the event log watches replay from.
//!
//! Semantics kept from the real API server because our clients depend on
//! them: resourceVersions grow per write, `metadata.generation` moves only
//! when something outside metadata/status changes, `status` is written only
//! through the status subresource, finalizers delay deletion, and deleting an
//! owner deletes its dependents (the garbage collector, done at once).

use std::collections::BTreeMap;

use serde_json::{json, Map, Value};

/// A resource type the fake serves (a built-in kind or an installed CRD).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceType {
    pub group: &'static str,
    pub versions: &'static [&'static str],
    pub plural: &'static str,
    pub kind: &'static str,
    pub namespaced: bool,
}

impl ResourceType {
    pub fn api_version(&self, version: &str) -> String {
        if self.group.is_empty() {
            version.to_string()
        } else {
            format!("{}/{version}", self.group)
        }
    }

    /// `plural.group`, as the API server names a resource in messages.
    pub fn qualified(&self) -> String {
        if self.group.is_empty() {
            self.plural.to_string()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }
}

macro_rules! rt {
    ($group:expr, [$($v:expr),+], $plural:expr, $kind:expr, $ns:expr) => {
        ResourceType { group: $group, versions: &[$($v),+], plural: $plural, kind: $kind, namespaced: $ns }
    };
}

/// Everything a cluster with Istio and the Gateway API CRDs serves that our
/// CLI, controller and config source touch.
pub const RESOURCE_TYPES: &[ResourceType] = &[
    rt!("", ["v1"], "namespaces", "Namespace", false),
    rt!("", ["v1"], "services", "Service", true),
    rt!("", ["v1"], "pods", "Pod", true),
    rt!("", ["v1"], "serviceaccounts", "ServiceAccount", true),
    rt!("", ["v1"], "configmaps", "ConfigMap", true),
    rt!("", ["v1"], "events", "Event", true),
    rt!(
        "discovery.k8s.io",
        ["v1"],
        "endpointslices",
        "EndpointSlice",
        true
    ),
    rt!("apps", ["v1"], "deployments", "Deployment", true),
    rt!(
        "autoscaling",
        ["v2"],
        "horizontalpodautoscalers",
        "HorizontalPodAutoscaler",
        true
    ),
    rt!(
        "policy",
        ["v1"],
        "poddisruptionbudgets",
        "PodDisruptionBudget",
        true
    ),
    rt!(
        "rbac.authorization.k8s.io",
        ["v1"],
        "clusterrolebindings",
        "ClusterRoleBinding",
        false
    ),
    rt!(
        "rbac.authorization.k8s.io",
        ["v1"],
        "clusterroles",
        "ClusterRole",
        false
    ),
    rt!(
        "gateway.networking.k8s.io",
        ["v1", "v1beta1"],
        "gateways",
        "Gateway",
        true
    ),
    rt!(
        "gateway.networking.k8s.io",
        ["v1", "v1beta1"],
        "gatewayclasses",
        "GatewayClass",
        false
    ),
    rt!(
        "gateway.networking.k8s.io",
        ["v1", "v1beta1"],
        "httproutes",
        "HTTPRoute",
        true
    ),
    rt!(
        "gateway.networking.k8s.io",
        ["v1", "v1alpha2"],
        "tcproutes",
        "TCPRoute",
        true
    ),
    rt!(
        "gateway.networking.k8s.io",
        ["v1", "v1beta1", "v1alpha2"],
        "referencegrants",
        "ReferenceGrant",
        true
    ),
    rt!(
        "gateway.networking.k8s.io",
        ["v1", "v1alpha2"],
        "grpcroutes",
        "GRPCRoute",
        true
    ),
    rt!(
        "networking.istio.io",
        ["v1", "v1beta1", "v1alpha3"],
        "virtualservices",
        "VirtualService",
        true
    ),
    rt!(
        "networking.istio.io",
        ["v1", "v1beta1", "v1alpha3"],
        "destinationrules",
        "DestinationRule",
        true
    ),
    rt!(
        "networking.istio.io",
        ["v1", "v1beta1", "v1alpha3"],
        "serviceentries",
        "ServiceEntry",
        true
    ),
    rt!(
        "extensions.istio.io",
        ["v1alpha1"],
        "wasmplugins",
        "WasmPlugin",
        true
    ),
    rt!(
        "security.istio.io",
        ["v1", "v1beta1"],
        "authorizationpolicies",
        "AuthorizationPolicy",
        true
    ),
    rt!(
        "security.istio.io",
        ["v1", "v1beta1"],
        "requestauthentications",
        "RequestAuthentication",
        true
    ),
    rt!(
        "telemetry.istio.io",
        ["v1", "v1alpha1"],
        "telemetries",
        "Telemetry",
        true
    ),
    rt!(
        "policy.linkerd.io",
        ["v1beta1", "v1beta2", "v1beta3"],
        "servers",
        "Server",
        true
    ),
    rt!(
        "policy.linkerd.io",
        ["v1beta1"],
        "serverauthorizations",
        "ServerAuthorization",
        true
    ),
    rt!(
        "policy.linkerd.io",
        ["v1alpha1"],
        "authorizationpolicies",
        "AuthorizationPolicy",
        true
    ),
    rt!(
        "policy.linkerd.io",
        ["v1alpha1"],
        "meshtlsauthentications",
        "MeshTLSAuthentication",
        true
    ),
    rt!(
        "policy.linkerd.io",
        ["v1alpha1"],
        "networkauthentications",
        "NetworkAuthentication",
        true
    ),
    rt!(
        "policy.linkerd.io",
        ["v1alpha1", "v1beta1", "v1beta2", "v1beta3"],
        "httproutes",
        "HTTPRoute",
        true
    ),
];

pub fn find_type(group: &str, version: &str, plural: &str) -> Option<&'static ResourceType> {
    RESOURCE_TYPES
        .iter()
        .find(|t| t.group == group && t.plural == plural && t.versions.contains(&version))
}

pub fn find_kind(api_version: &str, kind: &str) -> Option<&'static ResourceType> {
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    RESOURCE_TYPES
        .iter()
        .find(|t| t.group == group && t.kind == kind && t.versions.contains(&version))
}

/// Where an object lives: its type, namespace ("" when cluster-scoped), name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct ObjectKey {
    pub group: &'static str,
    pub plural: &'static str,
    pub namespace: String,
    pub name: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    Added,
    Modified,
    Deleted,
}

impl EventType {
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Added => "ADDED",
            EventType::Modified => "MODIFIED",
            EventType::Deleted => "DELETED",
        }
    }
}

/// Which parts of an object a write may change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteScope {
    /// The main resource: everything but `status`.
    Main,
    /// The status subresource: `status` only.
    Status,
    /// Tests seeding the fake: everything.
    Whole,
}

#[derive(Debug, Clone)]
pub struct Event {
    pub resource_version: u64,
    pub event_type: EventType,
    pub key: ObjectKey,
    pub object: Value,
}

/// Why a write was refused, as the API server would say it.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiFailure {
    pub code: u16,
    pub reason: &'static str,
    pub message: String,
}

impl ApiFailure {
    pub fn not_found(rt: &ResourceType, name: &str) -> Self {
        Self {
            code: 404,
            reason: "NotFound",
            message: format!("{} \"{name}\" not found", rt.qualified()),
        }
    }

    fn namespace_not_found(ns: &str) -> Self {
        Self {
            code: 404,
            reason: "NotFound",
            message: format!("namespaces \"{ns}\" not found"),
        }
    }

    /// The `Status` object the API server answers with.
    pub fn to_status(&self) -> Value {
        json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        })
    }
}

/// The objects and their history.
#[derive(Debug, Default)]
pub struct ObjectStore {
    resource_version: u64,
    objects: BTreeMap<ObjectKey, Value>,
    events: Vec<Event>,
    /// Watches asking to resume from below this get 410 Gone.
    compacted_below: u64,
}

impl ObjectStore {
    pub fn resource_version(&self) -> u64 {
        self.resource_version
    }

    pub fn compact(&mut self) {
        self.compacted_below = self.resource_version + 1;
    }

    pub fn is_compacted(&self, resource_version: u64) -> bool {
        resource_version < self.compacted_below
    }

    pub fn get(&self, key: &ObjectKey) -> Option<&Value> {
        self.objects.get(key)
    }

    pub fn list<'a>(
        &'a self,
        rt: &'a ResourceType,
        namespace: Option<&'a str>,
    ) -> impl Iterator<Item = (&'a ObjectKey, &'a Value)> + 'a {
        self.objects.iter().filter(move |(k, _)| {
            k.group == rt.group
                && k.plural == rt.plural
                && namespace.is_none_or(|ns| k.namespace == ns)
        })
    }

    /// Events after `resource_version`, oldest first.
    pub fn events_after(&self, resource_version: u64) -> &[Event] {
        let start = self
            .events
            .partition_point(|e| e.resource_version <= resource_version);
        &self.events[start..]
    }

    fn namespace_exists(&self, ns: &str) -> bool {
        self.objects.contains_key(&ObjectKey {
            group: "",
            plural: "namespaces",
            namespace: String::new(),
            name: ns.to_string(),
        })
    }

    /// Creates `object`; 409 when it exists, 404 when its namespace does not.
    pub fn create(&mut self, key: ObjectKey, mut object: Value) -> Result<Value, ApiFailure> {
        if self.objects.contains_key(&key) {
            return Err(ApiFailure {
                code: 409,
                reason: "AlreadyExists",
                message: format!("{} \"{}\" already exists", key.plural, key.name),
            });
        }
        if !key.namespace.is_empty() && !self.namespace_exists(&key.namespace) {
            return Err(ApiFailure::namespace_not_found(&key.namespace));
        }
        let rv = self.next_rv();
        let meta = metadata_mut(&mut object);
        meta.insert("name".into(), json!(key.name));
        if key.namespace.is_empty() {
            meta.remove("namespace");
        } else {
            meta.insert("namespace".into(), json!(key.namespace));
        }
        meta.insert("uid".into(), json!(uuid::Uuid::new_v4().to_string()));
        meta.insert("resourceVersion".into(), json!(rv.to_string()));
        meta.insert("generation".into(), json!(1));
        meta.insert("creationTimestamp".into(), json!(now_rfc3339()));
        meta.remove("deletionTimestamp");
        self.record(EventType::Added, key.clone(), object.clone(), rv);
        self.objects.insert(key, object.clone());
        Ok(object)
    }

    /// Replaces the stored object with `updated` (already merged by the
    /// caller), keeping server-owned metadata. Honours an expected
    /// resourceVersion, like PUT.
    pub fn update(
        &mut self,
        key: &ObjectKey,
        mut updated: Value,
        expected_rv: Option<u64>,
        scope: WriteScope,
    ) -> Result<Value, ApiFailure> {
        let Some(current) = self.objects.get(key).cloned() else {
            return Err(ApiFailure {
                code: 404,
                reason: "NotFound",
                message: format!("{} \"{}\" not found", key.plural, key.name),
            });
        };
        let current_rv = rv_of(&current);
        if let Some(expected) = expected_rv.filter(|rv| *rv != current_rv) {
            return Err(ApiFailure {
                code: 409,
                reason: "Conflict",
                message: format!(
                    "Operation cannot be fulfilled on {} \"{}\": the object has been modified \
                     (resourceVersion {expected} != {current_rv})",
                    key.plural, key.name
                ),
            });
        }
        // The status subresource writes status only; the main resource never does.
        match scope {
            WriteScope::Status => {
                let mut next = current.clone();
                set_field(&mut next, "status", updated.get("status").cloned());
                updated = next;
            }
            WriteScope::Main => set_field(&mut updated, "status", current.get("status").cloned()),
            WriteScope::Whole => {}
        }
        // Server-owned metadata survives whatever the client sent.
        for field in [
            "uid",
            "creationTimestamp",
            "deletionTimestamp",
            "namespace",
            "name",
        ] {
            let value = current["metadata"].get(field).cloned();
            set_field(metadata_value(&mut updated), field, value);
        }
        let generation = current["metadata"]["generation"].as_u64().unwrap_or(1);
        let generation = if spec_of(&current) != spec_of(&updated) {
            generation + 1
        } else {
            generation
        };
        metadata_mut(&mut updated).insert("generation".into(), json!(generation));
        if without_rv(&updated) == without_rv(&current) {
            return Ok(current);
        }
        let rv = self.next_rv();
        metadata_mut(&mut updated).insert("resourceVersion".into(), json!(rv.to_string()));
        if is_terminating(&updated) && finalizers(&updated).is_empty() {
            self.remove(key, updated.clone(), rv);
            return Ok(updated);
        }
        self.record(EventType::Modified, key.clone(), updated.clone(), rv);
        self.objects.insert(key.clone(), updated.clone());
        Ok(updated)
    }

    /// Deletes the object, or marks it terminating while finalizers remain.
    /// Dependents (ownerReferences to its uid) go with it.
    pub fn delete(&mut self, key: &ObjectKey) -> Result<Value, ApiFailure> {
        let Some(mut object) = self.objects.get(key).cloned() else {
            return Err(ApiFailure {
                code: 404,
                reason: "NotFound",
                message: format!("{} \"{}\" not found", key.plural, key.name),
            });
        };
        let rv = self.next_rv();
        metadata_mut(&mut object).insert("resourceVersion".into(), json!(rv.to_string()));
        if !finalizers(&object).is_empty() {
            if !is_terminating(&object) {
                metadata_mut(&mut object).insert("deletionTimestamp".into(), json!(now_rfc3339()));
                self.record(EventType::Modified, key.clone(), object.clone(), rv);
                self.objects.insert(key.clone(), object.clone());
            }
            return Ok(object);
        }
        self.remove(key, object.clone(), rv);
        Ok(object)
    }

    fn remove(&mut self, key: &ObjectKey, object: Value, rv: u64) {
        self.objects.remove(key);
        let uid = object["metadata"]["uid"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        self.record(EventType::Deleted, key.clone(), object, rv);
        // The garbage collector: dependents whose owner is gone are deleted.
        let dependents: Vec<ObjectKey> = self
            .objects
            .iter()
            .filter(|(_, o)| {
                o["metadata"]["ownerReferences"]
                    .as_array()
                    .is_some_and(|refs| refs.iter().any(|r| r["uid"] == json!(uid)))
            })
            .map(|(k, _)| k.clone())
            .collect();
        for dependent in dependents {
            // Already gone through another path is fine.
            let _ = self.delete(&dependent);
        }
    }

    fn next_rv(&mut self) -> u64 {
        self.resource_version += 1;
        self.resource_version
    }

    fn record(&mut self, event_type: EventType, key: ObjectKey, object: Value, rv: u64) {
        self.events.push(Event {
            resource_version: rv,
            event_type,
            key,
            object,
        });
    }
}

/// JSON merge (RFC 7386), which is also how the fake treats server-side
/// apply and strategic merge: maps merge, lists and scalars replace, null
/// removes.
pub fn merge(target: &mut Value, patch: &Value) {
    match (target, patch) {
        (Value::Object(t), Value::Object(p)) => {
            for (k, v) in p {
                if v.is_null() {
                    t.remove(k);
                } else {
                    merge(t.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
        }
        (t, p) => *t = p.clone(),
    }
}

pub fn rv_of(object: &Value) -> u64 {
    object["metadata"]["resourceVersion"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

fn finalizers(object: &Value) -> Vec<Value> {
    object["metadata"]["finalizers"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn is_terminating(object: &Value) -> bool {
    object["metadata"].get("deletionTimestamp").is_some()
}

/// Everything but metadata and status: what `generation` tracks.
fn spec_of(object: &Value) -> Value {
    let mut o = object.clone();
    if let Some(map) = o.as_object_mut() {
        map.remove("metadata");
        map.remove("status");
    }
    o
}

fn without_rv(object: &Value) -> Value {
    let mut o = object.clone();
    set_field(metadata_value(&mut o), "resourceVersion", None);
    o
}

fn metadata_value(object: &mut Value) -> &mut Value {
    if !object.is_object() {
        *object = Value::Object(Map::new());
    }
    let map = object.as_object_mut().expect("made an object above");
    let meta = map
        .entry("metadata")
        .or_insert_with(|| Value::Object(Map::new()));
    if !meta.is_object() {
        *meta = Value::Object(Map::new());
    }
    meta
}

fn metadata_mut(object: &mut Value) -> &mut Map<String, Value> {
    metadata_value(object)
        .as_object_mut()
        .expect("metadata_value returns an object")
}

fn set_field(object: &mut Value, field: &str, value: Option<Value>) {
    if let Some(map) = object.as_object_mut() {
        match value {
            Some(v) => {
                map.insert(field.to_string(), v);
            }
            None => {
                map.remove(field);
            }
        }
    }
}

fn now_rfc3339() -> String {
    let now = time::OffsetDateTime::now_utc()
        .replace_nanosecond(0)
        .expect("zero nanoseconds is always valid");
    now.format(&time::format_description::well_known::Rfc3339)
        .expect("formatting a UTC time as RFC 3339 cannot fail")
}
