//! WasmPlugins compiled for the request path: [`compile_plugins`] validates
//! every WasmPlugin, compiles its module (reusing running plugins whose
//! module and configuration did not change), and orders them as Istio does;
//! [`PluginSet::chain_for`] picks a request's chain.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex, Weak};

use prometheus::Registry;

use super::error::WasmError;
use super::load::{compile, read_checked, resolve_url, Compiled};
use super::metrics::WasmMetrics;
use super::plugin::PluginRuntime;
use super::plugin_env::{HostOptions, PluginEnv};
use crate::config::{
    ConfigError, ConfigErrors, EnvValueSource, FailStrategy, Location, NamespacedName, ObjectRef,
    PluginPhase, PluginType, Resources, Sourced, WasmPlugin, WorkloadMode,
};

/// The process's wasm host: options, metrics, compiled modules and running
/// plugins. Create once at startup and keep across reloads, so an unchanged
/// plugin keeps its instances (and state) through a reload.
pub struct WasmHost {
    options: HostOptions,
    metrics: Arc<WasmMetrics>,
    modules: Mutex<HashMap<String, Compiled>>,
    runtimes: Mutex<HashMap<RuntimeKey, Weak<PluginRuntime>>>,
}

impl WasmHost {
    /// A host exporting its metrics to `registry`.
    pub fn new(registry: &Registry, options: HostOptions) -> Arc<WasmHost> {
        Arc::new(WasmHost {
            options,
            metrics: Arc::new(WasmMetrics::new(registry)),
            modules: Mutex::new(HashMap::new()),
            runtimes: Mutex::new(HashMap::new()),
        })
    }

    /// Host and plugin metrics.
    pub fn metrics(&self) -> &WasmMetrics {
        &self.metrics
    }
}

/// What makes two plugins the same running thing.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct RuntimeKey {
    key: NamespacedName,
    sha256: String,
    root_id: String,
    plugin_config: Vec<u8>,
    env: Vec<(String, String)>,
}

/// Which traffic a plugin attaches to.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Target {
    /// `targetRefs` names this waypoint's Gateway.
    AllTraffic,
    /// `targetRefs` names a Service (or ServiceEntry).
    Service(NamespacedName),
}

/// The request-path view of a WasmPlugin's spec.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct PluginSpec {
    pub(crate) key: NamespacedName,
    /// 0 AUTHN, 1 AUTHZ, 2 unspecified, 3 STATS: Istio's filter order.
    phase_rank: u8,
    priority: i32,
    pub(crate) fail_open: bool,
    targets: Vec<Target>,
    /// `match` as (port list) entries that apply to a waypoint; `None` means
    /// no `match` (all traffic).
    ports: Option<Vec<Vec<u16>>>,
}

impl PluginSpec {
    fn applies(&self, service: &NamespacedName, port: u16) -> bool {
        let targeted = self.targets.iter().any(|t| match t {
            Target::AllTraffic => true,
            Target::Service(s) => s == service,
        });
        targeted
            && match &self.ports {
                None => true,
                Some(selectors) => selectors
                    .iter()
                    .any(|ports| ports.is_empty() || ports.contains(&port)),
            }
    }
}

/// One compiled WasmPlugin.
pub struct Plugin {
    pub(crate) runtime: Arc<PluginRuntime>,
    pub(crate) spec: PluginSpec,
    identity: RuntimeKey,
}

impl Plugin {
    /// Whether it is in the `AUTHN` or `AUTHZ` phase, which Istio runs before
    /// its authorization (RBAC) filter.
    pub fn before_authorization(&self) -> bool {
        self.spec.phase_rank < 2
    }

    /// `namespace/name` of the WasmPlugin.
    pub fn key(&self) -> &NamespacedName {
        &self.spec.key
    }
}

impl std::fmt::Debug for Plugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plugin")
            .field("spec", &self.spec)
            .field("sha256", &self.identity.sha256)
            .finish()
    }
}

impl PartialEq for Plugin {
    fn eq(&self, other: &Self) -> bool {
        self.identity == other.identity && self.spec == other.spec
    }
}

/// Every plugin of a config, in execution order.
#[derive(Debug, Default)]
pub struct PluginSet {
    plugins: Vec<Arc<Plugin>>,
    /// The chain when every plugin applies (the common case), shared.
    all: Option<Arc<[Arc<Plugin>]>>,
}

impl PartialEq for PluginSet {
    fn eq(&self, other: &Self) -> bool {
        self.plugins.len() == other.plugins.len()
            && self.plugins.iter().zip(&other.plugins).all(|(a, b)| a == b)
    }
}

impl PluginSet {
    /// The plugins for a request to `service` on `port`, in order.
    pub fn chain_for(&self, service: &NamespacedName, port: u16) -> Arc<[Arc<Plugin>]> {
        if let Some(all) = &self.all {
            return Arc::clone(all);
        }
        self.plugins
            .iter()
            .filter(|p| p.spec.applies(service, port))
            .cloned()
            .collect()
    }

    /// All plugins, in order.
    pub fn plugins(&self) -> &[Arc<Plugin>] {
        &self.plugins
    }

    fn new(mut plugins: Vec<Arc<Plugin>>) -> PluginSet {
        // Istio's order: AUTHN, AUTHZ, unspecified, STATS; within a phase
        // higher priority first; ties by namespace/name.
        plugins.sort_by(|a, b| {
            (a.spec.phase_rank, -(a.spec.priority as i64), &a.spec.key).cmp(&(
                b.spec.phase_rank,
                -(b.spec.priority as i64),
                &b.spec.key,
            ))
        });
        let universal = plugins
            .iter()
            .all(|p| p.spec.targets.contains(&Target::AllTraffic) && p.spec.ports.is_none());
        let all = universal.then(|| plugins.iter().cloned().collect());
        PluginSet { plugins, all }
    }
}

/// Compiles every WasmPlugin in `resources`. Relative `url`s resolve against
/// the directory of the file that defined the plugin, or `config_dir` when
/// that file is not on disk. Any invalid plugin rejects the whole set, with
/// each error located at its WasmPlugin and field.
pub fn compile_plugins(
    resources: &Resources,
    config_dir: &Path,
    host: &WasmHost,
) -> Result<PluginSet, ConfigErrors> {
    let mut errors = ConfigErrors::default();
    let mut plugins = Vec::new();
    for sourced in &resources.wasm_plugins {
        match compile_one(sourced, config_dir, host) {
            Ok(Some(p)) => plugins.push(Arc::new(p)),
            Ok(None) => {}
            Err((field, e)) => {
                errors.push(ConfigError::new(location(sourced, field), e.to_string()))
            }
        }
    }
    // Forget compiled modules and runtimes nothing uses any more.
    let used: Vec<String> = plugins.iter().map(|p| p.identity.sha256.clone()).collect();
    host.modules
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .retain(|sha, _| used.contains(sha));
    host.runtimes
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .retain(|_, w| w.strong_count() > 0);
    if errors.is_empty() {
        Ok(PluginSet::new(plugins))
    } else {
        Err(errors)
    }
}

fn location(sourced: &Sourced<WasmPlugin>, field: &str) -> Location {
    Location {
        file: Some(sourced.origin.file.to_string()),
        document: Some(sourced.origin.document),
        object: Some(ObjectRef {
            kind: "WasmPlugin".into(),
            namespace: Some(sourced.key.namespace.clone()),
            name: sourced.key.name.clone(),
        }),
        field: Some(field.to_string()),
    }
}

type Failure = (&'static str, WasmError);

fn compile_one(
    sourced: &Sourced<WasmPlugin>,
    config_dir: &Path,
    host: &WasmHost,
) -> Result<Option<Plugin>, Failure> {
    let spec = &sourced.object.spec;
    let key = &sourced.key;
    if spec.plugin_type == Some(PluginType::Network) {
        return Err(("spec.type", WasmError::NetworkType));
    }
    if spec.selector.is_some() {
        tracing::warn!(plugin = %key, "spec.selector is ignored on a waypoint; use targetRefs");
    }
    let targets = targets(sourced)?;
    if targets.is_empty() {
        // Istio attaches plugins to waypoints only through targetRefs.
        tracing::warn!(plugin = %key, "WasmPlugin has no targetRefs and does not apply to this waypoint");
        return Ok(None);
    }
    // A waypoint serves inbound traffic: Istio matches it as SERVER mode.
    let ports = (!spec.matches.is_empty()).then(|| {
        spec.matches
            .iter()
            .filter(|m| !matches!(m.mode, Some(WorkloadMode::Client)))
            .map(|m| m.ports.iter().map(|p| p.number).collect())
            .collect()
    });
    let base = Path::new(&*sourced.origin.file)
        .parent()
        .filter(|p| p.is_dir())
        .unwrap_or(config_dir);
    let path = resolve_url(&spec.url, base).map_err(|e| ("spec.url", e))?;
    let (bytes, sha256) = read_checked(&path, spec.sha256.as_deref()).map_err(|e| match e {
        WasmError::Sha256Mismatch { .. } => ("spec.sha256", e),
        e => ("spec.url", e),
    })?;
    let compiled = {
        let cached = host
            .modules
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&sha256)
            .cloned();
        match cached {
            Some(c) => c,
            None => {
                let c = compile(&path, &bytes).map_err(|e| ("spec.url", e))?;
                host.modules
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(sha256.clone(), c.clone());
                c
            }
        }
    };
    // Istio hands pluginConfig to the plugin as JSON. A bare string is
    // passed as its text, so plugins that take a plain-string configuration
    // (the SDK's http_config example) work too.
    let plugin_config = match &spec.plugin_config {
        Some(serde_json::Value::String(s)) => s.clone().into_bytes(),
        Some(v) => serde_json::to_vec(v).unwrap_or_default(),
        None => Vec::new(),
    };
    let env = spec
        .vm_config
        .iter()
        .flat_map(|vm| &vm.env)
        .map(|e| {
            let value = match e.value_from {
                Some(EnvValueSource::Host) => std::env::var(&e.name).unwrap_or_default(),
                _ => e.value.clone().unwrap_or_default(),
            };
            (e.name.clone(), value)
        })
        .collect();
    let identity = RuntimeKey {
        key: key.clone(),
        sha256,
        root_id: spec.plugin_name.clone().unwrap_or_default(),
        plugin_config,
        env,
    };
    let runtime = running(host, &identity, &compiled)?;
    let phase_rank = match spec.phase {
        Some(PluginPhase::Authn) => 0,
        Some(PluginPhase::Authz) => 1,
        Some(PluginPhase::Stats) => 3,
        Some(PluginPhase::UnspecifiedPhase) | None => 2,
    };
    Ok(Some(Plugin {
        runtime,
        spec: PluginSpec {
            key: key.clone(),
            phase_rank,
            priority: spec.priority.unwrap_or(0),
            // Per the WasmPlugin API, failStrategy defaults to FAIL_CLOSE.
            fail_open: spec.fail_strategy == Some(FailStrategy::FailOpen),
            targets,
            ports,
        },
        identity,
    }))
}

/// The running plugin for `identity`: reused if one is alive, else started.
fn running(
    host: &WasmHost,
    identity: &RuntimeKey,
    compiled: &Compiled,
) -> Result<Arc<PluginRuntime>, Failure> {
    let mut runtimes = host.runtimes.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(rt) = runtimes.get(identity).and_then(Weak::upgrade) {
        return Ok(rt);
    }
    let (tx, rx) = std::sync::mpsc::channel();
    let env = PluginEnv {
        name: format!("{}.{}", identity.key.namespace, identity.key.name),
        root_id: identity.root_id.clone(),
        vm_id: format!("{}.{}", identity.key.namespace, identity.key.name),
        plugin_config: identity.plugin_config.clone(),
        vm_config: Vec::new(),
        env: identity.env.clone(),
        node_metadata: Arc::new(host.options.node_metadata.clone()),
        metrics: Arc::clone(&host.metrics),
        events: tx.clone(),
    };
    let rt = PluginRuntime::start(env, (tx, rx), compiled.pre.clone(), &host.options)
        .map(Arc::new)
        .map_err(|f| {
            (
                "spec.url",
                WasmError::Start(format!("{} ({})", f.message, f.reason.as_str())),
            )
        })?;
    runtimes.insert(identity.clone(), Arc::downgrade(&rt));
    Ok(rt)
}

/// `targetRefs` (and the deprecated `targetRef`) as targets.
fn targets(sourced: &Sourced<WasmPlugin>) -> Result<Vec<Target>, Failure> {
    let spec = &sourced.object.spec;
    let ns = &sourced.key.namespace;
    let mut out = Vec::new();
    for r in spec.target_ref.iter().chain(&spec.target_refs) {
        match (r.group.as_str(), r.kind.as_str()) {
            ("gateway.networking.k8s.io", "Gateway") => out.push(Target::AllTraffic),
            ("" | "core", "Service") | ("networking.istio.io", "ServiceEntry") => out.push(
                Target::Service(NamespacedName::new(ns.clone(), r.name.clone())),
            ),
            _ => {
                return Err((
                    "spec.targetRefs",
                    WasmError::Start(format!(
                        "unsupported targetRef {}/{} {}: use a Gateway or a Service",
                        r.group, r.kind, r.name
                    )),
                ))
            }
        }
    }
    Ok(out)
}
