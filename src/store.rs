//! The one `ArcSwap` the request path reads: the compiled snapshot currently
//! served, with its generation. Reloads parse, validate and compile off the
//! request path and publish with a single store; a bad config never replaces
//! a good one.
//!
//! Where the objects come from is the config layer's ([`ConfigSource`]); this module only
//! asks its source again on every reload.

use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use arc_swap::ArcSwap;
use tracing::{error, info};

use crate::authz::{AuthzOptions, AuthzTable, JwksRegistry};
use crate::config::source::{ConfigSource, FileSource, Reload};
use crate::config::{ConfigErrors, NamespacedName};
use crate::routing::{CompileOptions, Snapshot};
use crate::settings::Settings;
use crate::telemetry::access_log::sink::SinkRegistry;
use crate::telemetry::Metrics;
use crate::telemetry_api::{TelemetryOptions, TelemetryTable};
use crate::upstream::LoadRegistry;
use crate::wasm::{compile_plugins, HostOptions, PluginSet, WasmHost};

/// A snapshot as published: what requests see.
#[derive(Debug)]
pub struct Published {
    /// Starts at 1 for the first config and grows by one per applied change.
    pub generation: u64,
    pub snapshot: Snapshot,
    /// WasmPlugins, compiled (modules are compiled once and shared).
    pub plugins: PluginSet,
    /// AuthorizationPolicies by destination.
    pub authz: AuthzTable,
    /// Telemetry resources and MeshConfig access logs, by destination.
    pub telemetry: TelemetryTable,
    pub loaded_at: SystemTime,
}

/// One config compiled: everything a [`Published`] holds but its bookkeeping.
pub struct Built {
    pub snapshot: Snapshot,
    pub plugins: PluginSet,
    pub authz: AuthzTable,
    pub telemetry: TelemetryTable,
}

impl Built {
    fn same_as(&self, p: &Published) -> bool {
        p.snapshot == self.snapshot
            && p.plugins == self.plugins
            && p.authz == self.authz
            && p.telemetry == self.telemetry
    }

    fn publish(self, generation: u64) -> Published {
        Published {
            generation,
            snapshot: self.snapshot,
            plugins: self.plugins,
            authz: self.authz,
            telemetry: self.telemetry,
            loaded_at: SystemTime::now(),
        }
    }
}

/// The last rejected config, for `/config_dump`.
#[derive(Debug, Clone)]
pub struct RejectedConfig {
    pub at: SystemTime,
    pub errors: ConfigErrors,
}

/// One reload attempt, for the admin page's "recent reloads".
#[derive(Debug, Clone)]
pub struct ReloadRecord {
    pub at: SystemTime,
    /// The generation served after the attempt.
    pub generation: u64,
    /// False when the config was rejected (the old one keeps serving).
    pub ok: bool,
    /// True when the attempt published a new generation.
    pub changed: bool,
    /// Why the config was rejected.
    pub errors: Vec<String>,
}

/// How many reload attempts the admin page shows.
const RECENT_RELOADS: usize = 16;

/// Holds the served snapshot and the reload bookkeeping.
pub struct SnapshotStore {
    current: ArcSwap<Published>,
    last_error: Mutex<Option<RejectedConfig>>,
    /// The newest reload attempts, oldest first; written only at reload time.
    recent: Mutex<std::collections::VecDeque<ReloadRecord>>,
    /// Serialises reloads so two watchers' events cannot publish out of order.
    reload_lock: Mutex<()>,
    load: LoadRegistry,
    /// Keys fetched from `jwksUri`s, kept across reloads.
    jwks: Arc<JwksRegistry>,
    options: CompileOptions,
    settings: Arc<Settings>,
    source: Arc<dyn ConfigSource>,
    metrics: Arc<Metrics>,
    wasm: Arc<WasmHost>,
    /// Counts finished reload attempts, so callers can wait for one.
    attempts: tokio::sync::watch::Sender<u64>,
}

/// Loads and compiles the config at `settings.config_path`: routes,
/// WasmPlugins and AuthorizationPolicies, all or nothing.
pub fn build_snapshot(
    settings: &Settings,
    options: &CompileOptions,
    load: &LoadRegistry,
    wasm: &WasmHost,
) -> Result<Built, ConfigErrors> {
    let source = FileSource {
        path: settings.config_path.clone(),
    };
    build_snapshot_from(
        &source,
        settings,
        options,
        load,
        wasm,
        &JwksRegistry::default(),
    )
}

/// Loads `source` and compiles it: routes, WasmPlugins and
/// AuthorizationPolicies, all or nothing (a policy that cannot be enforced
/// as written still compiles: it denies what it targets).
pub fn build_snapshot_from(
    source: &dyn ConfigSource,
    settings: &Settings,
    options: &CompileOptions,
    load: &LoadRegistry,
    wasm: &WasmHost,
    jwks: &JwksRegistry,
) -> Result<Built, ConfigErrors> {
    let resources = Arc::new(source.load(&settings.namespace)?);
    let authz = AuthzTable::compile(&resources, &authz_options(settings), jwks);
    let snapshot = Snapshot::compile(resources.clone(), options, load);
    let plugins = compile_plugins(&resources, &source.base_dir(), wasm);
    let mut errors = ConfigErrors::default();
    let snapshot = snapshot.map_err(|e| errors.0.extend(e.0)).ok();
    let plugins = plugins.map_err(|e| errors.0.extend(e.0)).ok();
    let authz = authz.map_err(|e| errors.0.extend(e.0)).ok();
    let telemetry = TelemetryTable::compile(
        &resources,
        &telemetry_options(settings),
        SinkRegistry::global(),
    )
    .map_err(|e| errors.0.extend(e.0))
    .ok();
    match (snapshot, plugins, authz, telemetry) {
        (Some(snapshot), Some(plugins), Some(authz), Some(telemetry)) => Ok(Built {
            snapshot,
            plugins,
            authz,
            telemetry,
        }),
        _ => Err(errors),
    }
}

/// Who this waypoint is, for AuthorizationPolicy targets.
pub fn authz_options(settings: &Settings) -> AuthzOptions {
    AuthzOptions {
        gateway: NamespacedName::new(settings.namespace.clone(), settings.gateway_name.clone()),
        gateway_class: settings.gateway_class.clone(),
        root_namespace: settings.root_namespace.clone(),
        mesh: settings.mesh.clone(),
        trust_domain: settings.trust_domain.clone(),
        linkerd_default: settings.linkerd_default_inbound_policy.clone(),
    }
}

/// Who this waypoint is, for Telemetry targets and access logs.
pub fn telemetry_options(settings: &Settings) -> TelemetryOptions {
    TelemetryOptions {
        root_namespace: settings.root_namespace.clone(),
        gateway: NamespacedName::new(settings.namespace.clone(), settings.gateway_name.clone()),
        mesh: settings.mesh.clone(),
        stdout_json: settings.access_log,
    }
}

/// Compile options derived from the process settings.
pub fn compile_options(settings: &Settings) -> CompileOptions {
    CompileOptions {
        namespace: settings.namespace.clone(),
        cluster_domain: settings.cluster_domain.clone(),
        lb: settings.lb,
        trust_domain: settings.trust_domain.clone(),
        cluster_id: Arc::from(settings.cluster_id.as_str()),
    }
}

impl SnapshotStore {
    /// Loads the initial config from `settings.config_path`; fails when it is
    /// invalid (nothing to serve).
    pub fn open(settings: Arc<Settings>, metrics: Arc<Metrics>) -> Result<Self, ConfigErrors> {
        let source = Arc::new(FileSource {
            path: settings.config_path.clone(),
        });
        Self::open_source(settings, metrics, source)
    }

    /// Loads the initial config from `source`; fails when it is invalid.
    pub fn open_source(
        settings: Arc<Settings>,
        metrics: Arc<Metrics>,
        source: Arc<dyn ConfigSource>,
    ) -> Result<Self, ConfigErrors> {
        let load = LoadRegistry::default();
        let options = compile_options(&settings);
        let wasm = WasmHost::new(metrics.registry(), HostOptions::default());
        let jwks = Arc::new(JwksRegistry::default());
        let built = build_snapshot_from(source.as_ref(), &settings, &options, &load, &wasm, &jwks)?;
        metrics.record_reload(true, 1);
        Ok(Self {
            current: ArcSwap::from_pointee(built.publish(1)),
            last_error: Mutex::new(None),
            recent: Mutex::new(std::collections::VecDeque::from([ReloadRecord {
                at: SystemTime::now(),
                generation: 1,
                ok: true,
                changed: true,
                errors: Vec::new(),
            }])),
            reload_lock: Mutex::new(()),
            load,
            jwks,
            options,
            settings,
            source,
            metrics,
            wasm,
            attempts: tokio::sync::watch::Sender::new(0),
        })
    }

    /// Where the objects come from, for `/config_dump`.
    pub fn source(&self) -> &dyn ConfigSource {
        self.source.as_ref()
    }

    /// The snapshot to use for one whole request.
    pub fn load(&self) -> Arc<Published> {
        self.current.load_full()
    }

    /// The last rejected config, if the newest attempt failed or an older one did.
    pub fn last_error(&self) -> Option<RejectedConfig> {
        self.last_error
            .lock()
            .expect("last_error lock is never poisoned: no panics while held")
            .clone()
    }

    /// The newest reload attempts (at most 16), oldest first.
    pub fn recent_reloads(&self) -> Vec<ReloadRecord> {
        let recent = self.recent.lock().unwrap_or_else(|e| e.into_inner());
        recent.iter().cloned().collect()
    }

    fn remember(&self, record: ReloadRecord) {
        let mut recent = self.recent.lock().unwrap_or_else(|e| e.into_inner());
        if recent.len() == RECENT_RELOADS {
            recent.pop_front();
        }
        recent.push_back(record);
    }

    /// Follows the number of finished reload attempts (successful or not).
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.attempts.subscribe()
    }

    /// Re-reads the config and publishes it if valid and changed. Blocking:
    /// call from a blocking thread. Returns the generation now served.
    pub fn reload(&self) -> Result<u64, ConfigErrors> {
        let _serial = self
            .reload_lock
            .lock()
            .expect("reload lock is never poisoned: no panics while held");
        let result = self.reload_locked();
        self.attempts.send_modify(|n| *n += 1);
        result
    }

    fn reload_locked(&self) -> Result<u64, ConfigErrors> {
        let built = build_snapshot_from(
            self.source.as_ref(),
            &self.settings,
            &self.options,
            &self.load,
            &self.wasm,
            &self.jwks,
        );
        match built {
            Ok(built) => {
                let current = self.current.load();
                let changed = !built.same_as(&current);
                let generation = if !changed {
                    current.generation
                } else {
                    let generation = current.generation + 1;
                    self.current.store(Arc::new(built.publish(generation)));
                    info!(generation, "config reloaded");
                    generation
                };
                self.metrics.record_reload(true, generation);
                self.remember(ReloadRecord {
                    at: SystemTime::now(),
                    generation,
                    ok: true,
                    changed,
                    errors: Vec::new(),
                });
                Ok(generation)
            }
            Err(errors) => {
                error!(%errors, "config rejected; still serving the previous one");
                self.metrics
                    .record_reload(false, self.current.load().generation);
                *self
                    .last_error
                    .lock()
                    .expect("last_error lock is never poisoned: no panics while held") =
                    Some(RejectedConfig {
                        at: SystemTime::now(),
                        errors: errors.clone(),
                    });
                self.remember(ReloadRecord {
                    at: SystemTime::now(),
                    generation: self.current.load().generation,
                    ok: false,
                    changed: false,
                    errors: errors.0.iter().map(|e| e.to_string()).collect(),
                });
                Err(errors)
            }
        }
    }
}

/// The `--kube` source's watches call this after each settled burst of changes.
impl Reload for SnapshotStore {
    fn reload(&self) -> Result<u64, ConfigErrors> {
        SnapshotStore::reload(self)
    }
}
