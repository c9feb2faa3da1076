//! What a Gateway of our class should turn into: pure functions from the
//! Gateway (and the controller's flags) to the objects the controller applies.
//! Nothing here talks to the API server, so every field is unit-tested.
//!
//! The shapes follow what istiod expects of a waypoint (the
//! `gateway.networking.k8s.io/gateway-name` label, port 15008 named `mesh`,
//! `istio.io/dataplane-mode: none` so ztunnel does not capture the waypoint's
//! own traffic) and what deploy/ expects of the pods (non-root 65532,
//! read-only root filesystem, Prometheus annotations).

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::{Service, ServiceAccount};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::rbac::v1::ClusterRoleBinding;
use serde::de::DeserializeOwned;
use serde_json::{json, Value};
use thiserror::Error;

use super::gateway_api::{WaypointGateway, API_VERSION};

/// The label istiod (and our Service selector) finds waypoint pods by.
pub const GATEWAY_NAME_LABEL: &str = "gateway.networking.k8s.io/gateway-name";
/// The ClusterRole the Helm chart installs for waypoint pods.
pub const PROXY_CLUSTER_ROLE: &str = "pingora-waypoint-proxy";
/// Istio's HBONE port; the Service port istiod looks for is named `mesh`.
pub const MESH_PORT: u16 = 15008;
pub const METRICS_PORT: u16 = 15020;
pub const HEALTH_PORT: u16 = 15021;
/// The distroless `nonroot` user.
pub const RUN_AS_USER: i64 = 65532;

/// Gateway annotations (on `metadata.annotations` or
/// `spec.infrastructure.annotations`) that shape what the controller creates.
pub mod annotations {
    pub const PREFIX: &str = "waypoint.pingora.dev/";
    /// Replicas when not autoscaled (default 1).
    pub const REPLICAS: &str = "waypoint.pingora.dev/replicas";
    /// Either turns on a HorizontalPodAutoscaler (min defaults to 1, max to min).
    pub const AUTOSCALE_MIN: &str = "waypoint.pingora.dev/autoscale-min-replicas";
    pub const AUTOSCALE_MAX: &str = "waypoint.pingora.dev/autoscale-max-replicas";
    /// Target average CPU utilisation in percent (default 80).
    pub const AUTOSCALE_CPU: &str = "waypoint.pingora.dev/autoscale-cpu-utilization";
    /// A PodDisruptionBudget with this `minAvailable` (a number or a percentage).
    pub const PDB_MIN_AVAILABLE: &str = "waypoint.pingora.dev/pdb-min-available";
    pub const CPU_REQUEST: &str = "waypoint.pingora.dev/cpu-request";
    pub const MEMORY_REQUEST: &str = "waypoint.pingora.dev/memory-request";
    pub const CPU_LIMIT: &str = "waypoint.pingora.dev/cpu-limit";
    pub const MEMORY_LIMIT: &str = "waypoint.pingora.dev/memory-limit";
}

/// The controller's flags that end up in every waypoint pod.
#[derive(Debug, Clone, PartialEq)]
pub struct PodTemplateOptions {
    /// Image of the waypoint container.
    pub image: String,
    /// Istio's CA, passed on as `--ca-address`.
    pub ca_address: String,
}

/// A Gateway annotation the controller cannot use.
#[derive(Debug, Error, PartialEq)]
pub enum DesiredError {
    #[error("annotation {key}: {value:?} is not {expected}")]
    Annotation {
        key: &'static str,
        value: String,
        expected: &'static str,
    },
    #[error("annotation {min_key} ({min}) is larger than {max_key} ({max})")]
    AutoscaleRange {
        min_key: &'static str,
        min: i32,
        max_key: &'static str,
        max: i32,
    },
    #[error("BUG: the Gateway has no {0}")]
    Missing(&'static str),
}

/// Everything one Gateway turns into.
#[derive(Debug, Clone)]
pub struct DesiredObjects {
    pub service_account: ServiceAccount,
    pub deployment: Deployment,
    pub service: Service,
    pub cluster_role_binding: ClusterRoleBinding,
    /// `None`: no autoscaler was asked for (delete any left over).
    pub autoscaler: Option<HorizontalPodAutoscaler>,
    /// `None`: no disruption budget was asked for (delete any left over).
    pub disruption_budget: Option<PodDisruptionBudget>,
}

/// The cluster-scoped binding's name: unique per Gateway across namespaces.
pub fn cluster_role_binding_name(namespace: &str, name: &str) -> String {
    format!("pingora-waypoint:{namespace}:{name}")
}

/// The Gateway's in-cluster hostname, as written to `status.addresses`.
pub fn service_hostname(namespace: &str, name: &str, cluster_domain: &str) -> String {
    format!("{name}.{namespace}.svc.{cluster_domain}")
}

/// Builds every object for `gateway`. Fails only on unusable annotations.
pub fn build(
    gateway: &WaypointGateway,
    options: &PodTemplateOptions,
) -> Result<DesiredObjects, DesiredError> {
    let parts = Parts::of(gateway)?;
    let autoscale = parts.autoscale()?;
    Ok(DesiredObjects {
        service_account: typed(json!({
            "apiVersion": "v1", "kind": "ServiceAccount",
            "metadata": parts.metadata(&parts.name),
        })),
        deployment: build_deployment(&parts, options, autoscale.is_some())?,
        service: build_service(&parts, gateway),
        cluster_role_binding: typed(json!({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
            "metadata": {
                "name": cluster_role_binding_name(&parts.namespace, &parts.name),
                "labels": parts.labels(),
            },
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                        "name": PROXY_CLUSTER_ROLE},
            "subjects": [{"kind": "ServiceAccount", "name": parts.name,
                          "namespace": parts.namespace}],
        })),
        autoscaler: autoscale.map(|a| build_autoscaler(&parts, a)),
        disruption_budget: parts
            .annotation(annotations::PDB_MIN_AVAILABLE)
            .map(|v| build_disruption_budget(&parts, v)),
    })
}

/// What every builder needs from the Gateway.
struct Parts {
    namespace: String,
    name: String,
    owner: Value,
    infra_labels: BTreeMap<String, String>,
    infra_annotations: BTreeMap<String, String>,
    /// `metadata.annotations` overlaid with `spec.infrastructure.annotations`.
    settings: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
struct Autoscale {
    min: i32,
    max: i32,
    cpu: i32,
}

impl Parts {
    fn of(gateway: &WaypointGateway) -> Result<Self, DesiredError> {
        let meta = &gateway.metadata;
        let name = meta.name.clone().ok_or(DesiredError::Missing("name"))?;
        let namespace = meta
            .namespace
            .clone()
            .ok_or(DesiredError::Missing("namespace"))?;
        let uid = meta.uid.clone().ok_or(DesiredError::Missing("uid"))?;
        let infra = gateway.spec.infrastructure.clone().unwrap_or_default();
        let mut settings = meta.annotations.clone().unwrap_or_default();
        settings.extend(infra.annotations.clone());
        Ok(Self {
            owner: json!({"apiVersion": API_VERSION, "kind": "Gateway", "name": name,
                          "uid": uid, "controller": true, "blockOwnerDeletion": true}),
            namespace,
            name,
            infra_labels: infra.labels,
            infra_annotations: infra.annotations,
            settings,
        })
    }

    fn annotation(&self, key: &str) -> Option<&str> {
        self.settings
            .get(key)
            .map(|v| v.trim())
            .filter(|v| !v.is_empty())
    }

    fn int(&self, key: &'static str, min: i32) -> Result<Option<i32>, DesiredError> {
        self.annotation(key)
            .map(|v| {
                v.parse::<i32>().ok().filter(|n| *n >= min).ok_or_else(|| {
                    DesiredError::Annotation {
                        key,
                        value: v.to_string(),
                        expected: if min > 0 {
                            "a positive integer"
                        } else {
                            "a non-negative integer"
                        },
                    }
                })
            })
            .transpose()
    }

    fn autoscale(&self) -> Result<Option<Autoscale>, DesiredError> {
        let min = self.int(annotations::AUTOSCALE_MIN, 1)?;
        let max = self.int(annotations::AUTOSCALE_MAX, 1)?;
        let cpu = self.int(annotations::AUTOSCALE_CPU, 1)?.unwrap_or(80);
        match (min, max) {
            (Some(min), Some(max)) if min > max => Err(DesiredError::AutoscaleRange {
                min_key: annotations::AUTOSCALE_MIN,
                min,
                max_key: annotations::AUTOSCALE_MAX,
                max,
            }),
            (Some(min), Some(max)) => Ok(Some(Autoscale { min, max, cpu })),
            // One bound alone: the other defaults to it (max) or to 1 (min).
            (Some(min), None) => Ok(Some(Autoscale { min, max: min, cpu })),
            (None, Some(max)) => Ok(Some(Autoscale { min: 1, max, cpu })),
            (None, None) => Ok(None),
        }
    }

    /// Labels on every object: the gateway-name label plus the Gateway's
    /// `spec.infrastructure.labels`.
    fn labels(&self) -> BTreeMap<String, String> {
        let mut labels = self.infra_labels.clone();
        labels.insert(GATEWAY_NAME_LABEL.to_string(), self.name.clone());
        labels
    }

    /// Metadata of a namespaced object owned by the Gateway.
    fn metadata(&self, name: &str) -> Value {
        let mut meta = json!({
            "name": name,
            "namespace": self.namespace,
            "labels": self.labels(),
            "ownerReferences": [self.owner],
        });
        if !self.infra_annotations.is_empty() {
            meta["annotations"] = json!(self.infra_annotations);
        }
        meta
    }
}

fn build_deployment(
    parts: &Parts,
    options: &PodTemplateOptions,
    autoscaled: bool,
) -> Result<Deployment, DesiredError> {
    let mut pod_labels = parts.labels();
    pod_labels.insert("istio.io/dataplane-mode".into(), "none".into());
    let mut pod_annotations = parts.infra_annotations.clone();
    for (k, v) in [
        ("prometheus.io/scrape", "true"),
        ("prometheus.io/port", "15020"),
        ("prometheus.io/path", "/stats/prometheus"),
    ] {
        pod_annotations.insert(k.into(), v.into());
    }
    let resource = |key, default: &str| parts.annotation(key).unwrap_or(default).to_string();
    let mut deployment = json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": parts.metadata(&parts.name),
        "spec": {
            "selector": {"matchLabels": {GATEWAY_NAME_LABEL: parts.name}},
            "template": {
                "metadata": {"labels": pod_labels, "annotations": pod_annotations},
                "spec": {
                    "serviceAccountName": parts.name,
                    "securityContext": {
                        "runAsNonRoot": true, "runAsUser": RUN_AS_USER,
                        "runAsGroup": RUN_AS_USER, "fsGroup": RUN_AS_USER,
                        "seccompProfile": {"type": "RuntimeDefault"},
                    },
                    "containers": [{
                        "name": "waypoint",
                        "image": options.image,
                        "args": [
                            "run", "--kube", "--gateway-name", parts.name,
                            "--ca-address", options.ca_address,
                            "--metrics-listen", format!("0.0.0.0:{METRICS_PORT}"),
                            "--health-listen", format!("0.0.0.0:{HEALTH_PORT}"),
                        ],
                        "env": [
                            field_env("POD_NAMESPACE", "metadata.namespace"),
                            field_env("POD_NAME", "metadata.name"),
                            field_env("SERVICE_ACCOUNT", "spec.serviceAccountName"),
                        ],
                        "ports": [
                            {"name": "mesh", "containerPort": MESH_PORT, "protocol": "TCP"},
                            {"name": "metrics", "containerPort": METRICS_PORT, "protocol": "TCP"},
                            {"name": "health", "containerPort": HEALTH_PORT, "protocol": "TCP"},
                        ],
                        "readinessProbe": {
                            "httpGet": {"path": "/healthz/ready", "port": HEALTH_PORT},
                            "periodSeconds": 5, "failureThreshold": 3,
                        },
                        "resources": {
                            "requests": {
                                "cpu": resource(annotations::CPU_REQUEST, "100m"),
                                "memory": resource(annotations::MEMORY_REQUEST, "128Mi"),
                            },
                            "limits": {
                                "cpu": resource(annotations::CPU_LIMIT, "2"),
                                "memory": resource(annotations::MEMORY_LIMIT, "1Gi"),
                            },
                        },
                        "securityContext": {
                            "runAsNonRoot": true, "runAsUser": RUN_AS_USER,
                            "runAsGroup": RUN_AS_USER, "privileged": false,
                            "allowPrivilegeEscalation": false,
                            "readOnlyRootFilesystem": true,
                            "capabilities": {"drop": ["ALL"]},
                        },
                        "volumeMounts": [
                            {"name": "workload-certs",
                             "mountPath": "/var/run/secrets/workload-spiffe-credentials"},
                            {"name": "istio-token", "mountPath": "/var/run/secrets/tokens",
                             "readOnly": true},
                            {"name": "istiod-ca-cert", "mountPath": "/var/run/secrets/istio",
                             "readOnly": true},
                            {"name": "tmp", "mountPath": "/tmp"},
                        ],
                    }],
                    "volumes": [
                        {"name": "workload-certs", "emptyDir": {"medium": "Memory"}},
                        {"name": "istio-token", "projected": {"sources": [{
                            "serviceAccountToken": {"audience": "istio-ca",
                                                    "expirationSeconds": 43200,
                                                    "path": "istio-token"}}]}},
                        {"name": "istiod-ca-cert",
                         "configMap": {"name": "istio-ca-root-cert"}},
                        {"name": "tmp", "emptyDir": {}},
                    ],
                },
            },
        },
    });
    // With an autoscaler, replicas belong to it: leaving the field out hands
    // its ownership over under server-side apply.
    if !autoscaled {
        deployment["spec"]["replicas"] = json!(parts.int(annotations::REPLICAS, 0)?.unwrap_or(1));
    }
    Ok(typed(deployment))
}

fn field_env(name: &str, path: &str) -> Value {
    json!({"name": name, "valueFrom": {"fieldRef": {"fieldPath": path}}})
}

fn build_service(parts: &Parts, gateway: &WaypointGateway) -> Service {
    let mut ports = vec![json!({"name": "mesh", "port": MESH_PORT, "protocol": "TCP"})];
    let mut seen = vec![MESH_PORT];
    for listener in &gateway.spec.listeners {
        if seen.contains(&listener.port) {
            continue;
        }
        seen.push(listener.port);
        ports.push(json!({"name": port_name(&listener.name, listener.port),
                          "port": listener.port, "protocol": "TCP"}));
    }
    typed(json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": parts.metadata(&parts.name),
        "spec": {
            "type": "ClusterIP",
            "selector": {GATEWAY_NAME_LABEL: parts.name},
            "ports": ports,
        },
    }))
}

/// A Service port name (DNS label, at most 63 characters) from a listener name.
fn port_name(listener: &str, port: u16) -> String {
    let mut name: String = listener
        .chars()
        .map(|c| c.to_ascii_lowercase())
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .take(63)
        .collect();
    name = name.trim_matches('-').to_string();
    if name.is_empty() || name == "mesh" {
        format!("port-{port}")
    } else {
        name
    }
}

fn build_autoscaler(parts: &Parts, a: Autoscale) -> HorizontalPodAutoscaler {
    typed(json!({
        "apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
        "metadata": parts.metadata(&parts.name),
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": parts.name},
            "minReplicas": a.min,
            "maxReplicas": a.max,
            "metrics": [{"type": "Resource", "resource": {"name": "cpu",
                "target": {"type": "Utilization", "averageUtilization": a.cpu}}}],
        },
    }))
}

fn build_disruption_budget(parts: &Parts, min_available: &str) -> PodDisruptionBudget {
    let min_available = match min_available.parse::<i32>() {
        Ok(n) => json!(n),
        Err(_) => json!(min_available),
    };
    typed(json!({
        "apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
        "metadata": parts.metadata(&parts.name),
        "spec": {
            "minAvailable": min_available,
            "selector": {"matchLabels": {GATEWAY_NAME_LABEL: parts.name}},
        },
    }))
}

/// The builders write JSON (readable next to the YAML a user sees) and hand
/// out k8s-openapi types; every value placed is a string or an integer where
/// the type has one, so the conversion cannot fail.
fn typed<T: DeserializeOwned>(value: Value) -> T {
    serde_json::from_value(value).expect("BUG: a desired object does not match its API type")
}

#[cfg(test)]
mod tests;
