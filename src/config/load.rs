//! Loading multi-document YAML into typed [`Resources`].
//!
//! Accepts a single file or a directory (every `*.yaml` / `*.yml`, recursively,
//! in path order), plain documents and `kubectl get -o yaml` `List`s. Unknown
//! kinds are skipped with a debug log; a malformed known kind is an error with
//! its location; unknown fields in known kinds are logged as warnings, since a
//! newer API version may add fields we do not act on.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_yaml::Value;
use tracing::{debug, warn};

use super::{
    AuthorizationPolicy, ConfigError, ConfigErrors, ConfigMap, LoadedPolicy, Location, MeshConfig,
    NamespacedName, ObjectRef, Origin, Resources, Sourced, ISTIO_CONFIGMAP,
};

const GATEWAY_GROUP: &str = "gateway.networking.k8s.io";
const ISTIO_NETWORKING_GROUP: &str = "networking.istio.io";
const ISTIO_EXTENSIONS_GROUP: &str = "extensions.istio.io";
const ISTIO_SECURITY_GROUP: &str = "security.istio.io";
const LINKERD_POLICY_GROUP: &str = "policy.linkerd.io";

/// Loads every object under `path` (file or directory). Namespaced objects
/// without `metadata.namespace` land in `default_namespace`.
pub fn load_path(path: &Path, default_namespace: &str) -> Result<Resources, ConfigErrors> {
    let mut loader = Loader::new(default_namespace);
    let files = match collect_files(path) {
        Ok(files) => files,
        Err(e) => {
            return Err(ConfigError::new(
                Location {
                    file: Some(path.display().to_string()),
                    ..Default::default()
                },
                format!("cannot read config: {e}"),
            )
            .into())
        }
    };
    // An emptied directory is far more often a broken mount or a botched
    // deploy than an intent to drop every route: refuse it (on a reload the
    // last config keeps serving). An empty file clears the config on purpose.
    if files.is_empty() {
        return Err(ConfigError::new(
            Location {
                file: Some(path.display().to_string()),
                ..Default::default()
            },
            "no *.yaml or *.yml files in this directory (to serve an empty config, leave an empty .yaml file)".to_string(),
        )
        .into());
    }
    for file in files {
        let name = file.display().to_string();
        match std::fs::read_to_string(&file) {
            Ok(text) => loader.add_text(&text, &name),
            Err(e) => loader.errors.push(ConfigError::new(
                Location {
                    file: Some(name),
                    ..Default::default()
                },
                format!("cannot read file: {e}"),
            )),
        }
    }
    loader.finish()
}

/// Loads the documents of one YAML text; `file` names it in errors.
pub fn load_str(
    text: &str,
    file: &str,
    default_namespace: &str,
) -> Result<Resources, ConfigErrors> {
    let mut loader = Loader::new(default_namespace);
    loader.add_text(text, file);
    loader.finish()
}

/// Loads objects that are already parsed, e.g. read from the Kubernetes API.
/// Each comes with the name errors use for it in place of a file (such as
/// `kube:HTTPRoute/shop/reviews`); validation is the same as for files.
/// Unknown fields are logged at debug level: API servers add fields (and
/// defaults) our types do not list, and every reload would repeat the warning.
pub fn load_objects<I>(objects: I, default_namespace: &str) -> Result<Resources, ConfigErrors>
where
    I: IntoIterator<Item = (String, serde_json::Value)>,
{
    let mut loader = Loader::new(default_namespace);
    loader.quiet_unknown_fields = true;
    for (name, object) in objects {
        let origin = Origin {
            file: Arc::from(name.as_str()),
            document: 0,
        };
        match serde_yaml::to_value(&object) {
            Ok(value) => loader.add_value(value, &origin, ""),
            Err(e) => loader.errors.push(ConfigError::new(
                Location {
                    file: Some(name),
                    ..Default::default()
                },
                format!("cannot read object: {e}"),
            )),
        }
    }
    loader.finish()
}

fn collect_files(path: &Path) -> std::io::Result<Vec<PathBuf>> {
    let meta = std::fs::metadata(path)?;
    if meta.is_file() {
        return Ok(vec![path.to_path_buf()]);
    }
    let mut out = Vec::new();
    let mut entries: Vec<_> = std::fs::read_dir(path)?.collect::<Result<_, _>>()?;
    entries.sort_by_key(|e| e.path());
    for entry in entries {
        let p = entry.path();
        let name = entry.file_name();
        let name = name.to_string_lossy();
        // Skip editor swap files and Kubernetes' ConfigMap `..data` symlink dirs.
        if name.starts_with('.') {
            continue;
        }
        if p.is_dir() {
            out.extend(collect_files(&p)?);
        } else if name.ends_with(".yaml") || name.ends_with(".yml") {
            out.push(p);
        }
    }
    Ok(out)
}

struct Loader<'a> {
    default_namespace: &'a str,
    resources: Resources,
    errors: ConfigErrors,
    /// Log unknown fields at debug instead of warn level.
    quiet_unknown_fields: bool,
}

/// Which of our kinds a document is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Namespace,
    Service,
    EndpointSlice,
    Pod,
    ServiceEntry,
    Gateway,
    GatewayClass,
    HttpRoute,
    TcpRoute,
    ReferenceGrant,
    GrpcRoute,
    VirtualService,
    DestinationRule,
    WasmPlugin,
    AuthorizationPolicy,
    RequestAuthentication,
    Telemetry,
    LinkerdServer,
    LinkerdServerAuthorization,
    LinkerdAuthorizationPolicy,
    LinkerdMeshTlsAuthentication,
    LinkerdNetworkAuthentication,
    LinkerdHttpRoute,
    ConfigMap,
}

impl Kind {
    fn from_type(api_version: &str, kind: &str) -> Option<Result<Kind, String>> {
        let (group, version) = match api_version.split_once('/') {
            Some((g, v)) => (g, v),
            None => ("", api_version),
        };
        let (found, versions): (Kind, &[&str]) = match (group, kind) {
            ("", "Namespace") => (Kind::Namespace, &["v1"]),
            ("", "Service") => (Kind::Service, &["v1"]),
            ("", "Pod") => (Kind::Pod, &["v1"]),
            ("", "ConfigMap") => (Kind::ConfigMap, &["v1"]),
            ("discovery.k8s.io", "EndpointSlice") => (Kind::EndpointSlice, &["v1"]),
            (ISTIO_NETWORKING_GROUP, "ServiceEntry") => {
                (Kind::ServiceEntry, &["v1", "v1beta1", "v1alpha3"])
            }
            (GATEWAY_GROUP, "Gateway") => (Kind::Gateway, &["v1", "v1beta1"]),
            (GATEWAY_GROUP, "GatewayClass") => (Kind::GatewayClass, &["v1", "v1beta1"]),
            (GATEWAY_GROUP, "HTTPRoute") => (Kind::HttpRoute, &["v1", "v1beta1"]),
            (GATEWAY_GROUP, "TCPRoute") => (Kind::TcpRoute, &["v1", "v1alpha2"]),
            (GATEWAY_GROUP, "ReferenceGrant") => {
                (Kind::ReferenceGrant, &["v1", "v1beta1", "v1alpha2"])
            }
            (GATEWAY_GROUP, "GRPCRoute") => (Kind::GrpcRoute, &["v1", "v1alpha2"]),
            (ISTIO_NETWORKING_GROUP, "VirtualService") => {
                (Kind::VirtualService, &["v1", "v1beta1", "v1alpha3"])
            }
            (ISTIO_NETWORKING_GROUP, "DestinationRule") => {
                (Kind::DestinationRule, &["v1", "v1beta1", "v1alpha3"])
            }
            (ISTIO_EXTENSIONS_GROUP, "WasmPlugin") => (Kind::WasmPlugin, &["v1alpha1"]),
            (ISTIO_SECURITY_GROUP, "AuthorizationPolicy") => {
                (Kind::AuthorizationPolicy, &["v1", "v1beta1"])
            }
            (ISTIO_SECURITY_GROUP, "RequestAuthentication") => {
                (Kind::RequestAuthentication, &["v1", "v1beta1"])
            }
            ("telemetry.istio.io", "Telemetry") => (Kind::Telemetry, &["v1", "v1alpha1"]),
            (LINKERD_POLICY_GROUP, "Server") => {
                (Kind::LinkerdServer, &["v1beta1", "v1beta2", "v1beta3"])
            }
            (LINKERD_POLICY_GROUP, "ServerAuthorization") => {
                (Kind::LinkerdServerAuthorization, &["v1beta1"])
            }
            (LINKERD_POLICY_GROUP, "AuthorizationPolicy") => {
                (Kind::LinkerdAuthorizationPolicy, &["v1alpha1"])
            }
            (LINKERD_POLICY_GROUP, "MeshTLSAuthentication") => {
                (Kind::LinkerdMeshTlsAuthentication, &["v1alpha1"])
            }
            (LINKERD_POLICY_GROUP, "NetworkAuthentication") => {
                (Kind::LinkerdNetworkAuthentication, &["v1alpha1"])
            }
            (LINKERD_POLICY_GROUP, "HTTPRoute") => (
                Kind::LinkerdHttpRoute,
                &["v1alpha1", "v1beta1", "v1beta2", "v1beta3"],
            ),
            _ => return None,
        };
        if versions.contains(&version) {
            Some(Ok(found))
        } else {
            Some(Err(format!(
                "unsupported apiVersion {api_version} for {kind} (supported: {})",
                versions
                    .iter()
                    .map(|v| if group.is_empty() {
                        v.to_string()
                    } else {
                        format!("{group}/{v}")
                    })
                    .collect::<Vec<_>>()
                    .join(", ")
            )))
        }
    }

    fn namespaced(self) -> bool {
        !matches!(self, Kind::Namespace | Kind::GatewayClass)
    }
}

impl<'a> Loader<'a> {
    fn new(default_namespace: &'a str) -> Self {
        Self {
            default_namespace,
            resources: Resources::default(),
            errors: ConfigErrors::default(),
            quiet_unknown_fields: false,
        }
    }

    fn finish(self) -> Result<Resources, ConfigErrors> {
        if self.errors.is_empty() {
            Ok(self.resources)
        } else {
            Err(self.errors)
        }
    }

    fn add_text(&mut self, text: &str, file: &str) {
        let file: Arc<str> = Arc::from(file);
        for (index, document) in serde_yaml::Deserializer::from_str(text).enumerate() {
            let origin = Origin {
                file: file.clone(),
                document: index,
            };
            match Value::deserialize(document) {
                Ok(Value::Null) => {}
                Ok(value) => self.add_value(value, &origin, ""),
                Err(e) => {
                    self.errors.push(ConfigError::new(
                        Location {
                            file: Some(file.to_string()),
                            document: Some(index),
                            ..Default::default()
                        },
                        format!("invalid YAML: {e}"),
                    ));
                    // After a syntax error the document stream cannot be resynchronised.
                    return;
                }
            }
        }
    }

    /// Adds one object, or each item of a `List`. `prefix` is the field path of
    /// `value` inside its document (`items[3].` for list items).
    fn add_value(&mut self, value: Value, origin: &Origin, prefix: &str) {
        let location = |object: Option<ObjectRef>, field: Option<String>| Location {
            file: Some(origin.file.to_string()),
            document: Some(origin.document),
            object,
            field,
        };
        let Value::Mapping(map) = &value else {
            self.errors.push(ConfigError::new(
                location(
                    None,
                    (!prefix.is_empty()).then(|| prefix.trim_end_matches('.').to_string()),
                ),
                "expected a Kubernetes object (a mapping with apiVersion and kind)",
            ));
            return;
        };
        let api_version = map.get("apiVersion").and_then(Value::as_str).unwrap_or("");
        let kind = map.get("kind").and_then(Value::as_str).unwrap_or("");
        if kind.is_empty() || api_version.is_empty() {
            let missing = if kind.is_empty() {
                "kind"
            } else {
                "apiVersion"
            };
            self.errors.push(ConfigError::new(
                location(None, Some(format!("{prefix}{missing}"))),
                format!("missing {missing}"),
            ));
            return;
        }
        if kind == "List" || (kind.ends_with("List") && map.contains_key("items")) {
            let items = match map.get("items") {
                Some(Value::Sequence(items)) => items.clone(),
                Some(Value::Null) | None => Vec::new(),
                Some(_) => {
                    self.errors.push(ConfigError::new(
                        location(None, Some(format!("{prefix}items"))),
                        "items must be a list",
                    ));
                    return;
                }
            };
            for (i, item) in items.into_iter().enumerate() {
                self.add_value(item, origin, &format!("{prefix}items[{i}]."));
            }
            return;
        }
        let kind_enum = match Kind::from_type(api_version, kind) {
            None => {
                debug!(file = %origin.file, document = origin.document, %api_version, %kind, "skipping unknown kind");
                return;
            }
            Some(Err(reason)) => {
                self.errors.push(ConfigError::new(
                    location(
                        Some(object_ref(kind, &value, None)),
                        Some(format!("{prefix}apiVersion")),
                    ),
                    reason,
                ));
                return;
            }
            Some(Ok(k)) => k,
        };
        let default_ns = kind_enum.namespaced().then_some(self.default_namespace);
        let obj_ref = object_ref(kind, &value, default_ns);
        if obj_ref.name.is_empty() {
            self.errors.push(ConfigError::new(
                location(Some(obj_ref), Some(format!("{prefix}metadata.name"))),
                "metadata.name is required",
            ));
            return;
        }
        let key = NamespacedName::new(
            obj_ref.namespace.clone().unwrap_or_default(),
            obj_ref.name.clone(),
        );
        let ctx = DecodeCtx {
            origin,
            prefix,
            object: &obj_ref,
            quiet: self.quiet_unknown_fields,
        };
        let r = &mut self.resources;
        let result = match kind_enum {
            Kind::Namespace => ctx
                .decode(value)
                .map(|o| push(&mut r.namespaces, origin, key, o)),
            Kind::Service => ctx
                .decode(value)
                .map(|o| push(&mut r.services, origin, key, o)),
            Kind::EndpointSlice => ctx
                .decode(value)
                .map(|o| push(&mut r.endpoint_slices, origin, key, o)),
            Kind::Pod => ctx.decode(value).map(|o| push(&mut r.pods, origin, key, o)),
            Kind::ServiceEntry => ctx
                .decode(value)
                .map(|o| push(&mut r.service_entries, origin, key, o)),
            Kind::Gateway => ctx
                .decode(value)
                .map(|o| push(&mut r.gateways, origin, key, o)),
            Kind::GatewayClass => ctx
                .decode(value)
                .map(|o| push(&mut r.gateway_classes, origin, key, o)),
            Kind::HttpRoute => ctx
                .decode(value)
                .map(|o| push(&mut r.http_routes, origin, key, o)),
            Kind::TcpRoute => ctx
                .decode(value)
                .map(|o| push(&mut r.tcp_routes, origin, key, o)),
            Kind::ReferenceGrant => ctx
                .decode(value)
                .map(|o| push(&mut r.reference_grants, origin, key, o)),
            Kind::GrpcRoute => ctx
                .decode(value)
                .map(|o| push(&mut r.grpc_routes, origin, key, o)),
            Kind::VirtualService => ctx
                .decode(value)
                .map(|o| push(&mut r.virtual_services, origin, key, o)),
            Kind::DestinationRule => ctx
                .decode(value)
                .map(|o| push(&mut r.destination_rules, origin, key, o)),
            Kind::WasmPlugin => ctx
                .decode(value)
                .map(|o| push(&mut r.wasm_plugins, origin, key, o)),
            Kind::AuthorizationPolicy => ctx
                .decode_policy(value)
                .map(|o| push(&mut r.authorization_policies, origin, key, o)),
            Kind::RequestAuthentication => ctx
                .decode(value)
                .map(|o| push(&mut r.request_authentications, origin, key, o)),
            Kind::Telemetry => ctx
                .decode(value)
                .map(|o| push(&mut r.telemetries, origin, key, o)),
            Kind::LinkerdServer => ctx
                .decode(value)
                .map(|o| push(&mut r.linkerd_servers, origin, key, o)),
            Kind::LinkerdServerAuthorization => ctx
                .decode(value)
                .map(|o| push(&mut r.linkerd_server_authorizations, origin, key, o)),
            Kind::LinkerdAuthorizationPolicy => ctx
                .decode(value)
                .map(|o| push(&mut r.linkerd_authorization_policies, origin, key, o)),
            Kind::LinkerdMeshTlsAuthentication => ctx
                .decode(value)
                .map(|o| push(&mut r.linkerd_mesh_tls_authentications, origin, key, o)),
            Kind::LinkerdNetworkAuthentication => ctx
                .decode(value)
                .map(|o| push(&mut r.linkerd_network_authentications, origin, key, o)),
            Kind::LinkerdHttpRoute => ctx
                .decode(value)
                .map(|o| push(&mut r.linkerd_http_routes, origin, key, o)),
            // Only Istio's mesh ConfigMap matters; others are skipped like unknown kinds.
            Kind::ConfigMap if key.name != ISTIO_CONFIGMAP => Ok(Ok(())),
            Kind::ConfigMap => ctx
                .decode_mesh(value)
                .map(|o| push(&mut r.mesh_configs, origin, key, o)),
        };
        match result {
            Ok(Ok(())) => {}
            Ok(Err(first)) => self.errors.push(ConfigError::new(
                location(Some(obj_ref), None),
                format!(
                    "duplicate object (first defined in {} document {})",
                    first.file, first.document
                ),
            )),
            Err(e) => self.errors.push(e),
        }
    }
}

/// Appends unless an object with the same key exists; then returns its origin.
fn push<T>(
    list: &mut Vec<Sourced<T>>,
    origin: &Origin,
    key: NamespacedName,
    object: T,
) -> Result<(), Origin> {
    if let Some(existing) = list.iter().find(|s| s.key == key) {
        return Err(existing.origin.clone());
    }
    list.push(Sourced {
        origin: origin.clone(),
        key,
        object,
    });
    Ok(())
}

fn object_ref(kind: &str, value: &Value, default_ns: Option<&str>) -> ObjectRef {
    let meta = value.get("metadata");
    let name = meta
        .and_then(|m| m.get("name"))
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let namespace = default_ns.map(|default| {
        meta.and_then(|m| m.get("namespace"))
            .and_then(Value::as_str)
            .filter(|ns| !ns.is_empty())
            .unwrap_or(default)
            .to_string()
    });
    ObjectRef {
        kind: kind.to_string(),
        namespace,
        name,
    }
}

impl DecodeCtx<'_> {
    /// Istio's `istio` ConfigMap: its `data.mesh` as MeshConfig.
    fn decode_mesh(&self, value: Value) -> Result<MeshConfig, ConfigError> {
        let map: ConfigMap = self.decode(value)?;
        let text = map.data.get("mesh").map(String::as_str).unwrap_or("");
        MeshConfig::parse(text).map_err(|reason| {
            ConfigError::new(
                Location {
                    file: Some(self.origin.file.to_string()),
                    document: Some(self.origin.document),
                    object: Some(self.object.clone()),
                    field: Some(format!("{}data.mesh", self.prefix)),
                },
                reason,
            )
        })
    }
}

/// A policy that fails to parse still loads when its targets can be read:
/// it then denies what it targets (`src/authz`), and the rest of the config
/// keeps serving. Only an unreadable target rejects the whole config.
impl DecodeCtx<'_> {
    fn decode_policy(&self, value: Value) -> Result<LoadedPolicy, ConfigError> {
        let shell = LoadedPolicy::shell(&value);
        match self.decode::<AuthorizationPolicy>(value) {
            Ok(policy) => Ok(LoadedPolicy {
                policy,
                error: None,
            }),
            Err(error) => match shell {
                Some(policy) => {
                    warn!(%error, "AuthorizationPolicy rejected: it denies the traffic it targets");
                    Ok(LoadedPolicy {
                        policy,
                        error: Some(error),
                    })
                }
                None => Err(error),
            },
        }
    }
}

struct DecodeCtx<'a> {
    origin: &'a Origin,
    prefix: &'a str,
    object: &'a ObjectRef,
    quiet: bool,
}

impl DecodeCtx<'_> {
    /// Deserializes `value` into `T`, tracking the field path of a failure and
    /// warning about fields `T` does not know.
    fn decode<T: DeserializeOwned>(&self, value: Value) -> Result<T, ConfigError> {
        let mut ignored = Vec::new();
        let result: Result<T, _> = {
            let mut track = |path: serde_ignored::Path<'_>| ignored.push(path.to_string());
            let de = serde_ignored::Deserializer::new(value, &mut track);
            serde_path_to_error::deserialize(de)
        };
        for field in ignored {
            if field == "apiVersion" || field == "kind" {
                continue;
            }
            if self.quiet {
                debug!(file = %self.origin.file, object = %self.object, %field, "unknown field ignored");
                continue;
            }
            warn!(
                file = %self.origin.file,
                document = self.origin.document,
                object = %self.object,
                field = %format!("{}{field}", self.prefix),
                "unknown field ignored"
            );
        }
        result.map_err(|e| {
            let path = e.path().to_string();
            let field = if path == "." || path.is_empty() {
                None
            } else {
                Some(format!("{}{path}", self.prefix))
            };
            ConfigError::new(
                Location {
                    file: Some(self.origin.file.to_string()),
                    document: Some(self.origin.document),
                    object: Some(self.object.clone()),
                    field,
                },
                e.into_inner().to_string(),
            )
        })
    }
}

#[cfg(test)]
mod tests;
