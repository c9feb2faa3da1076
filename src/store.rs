//! The one `ArcSwap` the request path reads: the compiled snapshot currently
//! served, with its generation. Reloads parse, validate and compile off the
//! request path and publish with a single store; a bad config never replaces
//! a good one.

use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use arc_swap::ArcSwap;
use tracing::{error, info};

use crate::config::{self, ConfigErrors};
use crate::routing::{CompileOptions, LoadRegistry, Snapshot};
use crate::settings::Settings;
use crate::telemetry::Metrics;
use crate::wasm::{compile_plugins, HostOptions, PluginSet, WasmHost};

/// A snapshot as published: what requests see.
#[derive(Debug)]
pub struct Published {
    /// Starts at 1 for the first config and grows by one per applied change.
    pub generation: u64,
    pub snapshot: Snapshot,
    /// WasmPlugins, compiled (modules are compiled once and shared).
    pub plugins: PluginSet,
    pub loaded_at: SystemTime,
}

/// The last rejected config, for `/config_dump`.
#[derive(Debug, Clone)]
pub struct RejectedConfig {
    pub at: SystemTime,
    pub errors: ConfigErrors,
}

/// Holds the served snapshot and the reload bookkeeping.
pub struct SnapshotStore {
    current: ArcSwap<Published>,
    last_error: Mutex<Option<RejectedConfig>>,
    /// Serialises reloads so two watchers' events cannot publish out of order.
    reload_lock: Mutex<()>,
    load: LoadRegistry,
    options: CompileOptions,
    settings: Arc<Settings>,
    metrics: Arc<Metrics>,
    wasm: Arc<WasmHost>,
    /// Counts finished reload attempts, so callers can wait for one.
    attempts: tokio::sync::watch::Sender<u64>,
}

/// Loads and compiles the config at `settings.config_path`: routes and
/// WasmPlugins, all or nothing.
pub fn build_snapshot(
    settings: &Settings,
    options: &CompileOptions,
    load: &LoadRegistry,
    wasm: &WasmHost,
) -> Result<(Snapshot, PluginSet), ConfigErrors> {
    let resources = Arc::new(config::load_path(
        &settings.config_path,
        &settings.namespace,
    )?);
    let snapshot = Snapshot::compile(resources.clone(), options, load);
    let config_dir = if settings.config_path.is_dir() {
        settings.config_path.clone()
    } else {
        settings
            .config_path
            .parent()
            .map(|p| p.to_path_buf())
            .unwrap_or_default()
    };
    let plugins = compile_plugins(&resources, &config_dir, wasm);
    match (snapshot, plugins) {
        (Ok(s), Ok(p)) => Ok((s, p)),
        (Err(mut a), Err(b)) => {
            a.0.extend(b.0);
            Err(a)
        }
        (Err(e), _) | (_, Err(e)) => Err(e),
    }
}

/// Compile options derived from the process settings.
pub fn compile_options(settings: &Settings) -> CompileOptions {
    CompileOptions {
        namespace: settings.namespace.clone(),
        cluster_domain: settings.cluster_domain.clone(),
        lb: settings.lb,
    }
}

impl SnapshotStore {
    /// Loads the initial config; fails when it is invalid (nothing to serve).
    pub fn open(settings: Arc<Settings>, metrics: Arc<Metrics>) -> Result<Self, ConfigErrors> {
        let load = LoadRegistry::default();
        let options = compile_options(&settings);
        let wasm = WasmHost::new(metrics.registry(), HostOptions::default());
        let (snapshot, plugins) = build_snapshot(&settings, &options, &load, &wasm)?;
        metrics.record_reload(true, 1);
        Ok(Self {
            current: ArcSwap::from_pointee(Published {
                generation: 1,
                snapshot,
                plugins,
                loaded_at: SystemTime::now(),
            }),
            last_error: Mutex::new(None),
            reload_lock: Mutex::new(()),
            load,
            options,
            settings,
            metrics,
            wasm,
            attempts: tokio::sync::watch::Sender::new(0),
        })
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
        match build_snapshot(&self.settings, &self.options, &self.load, &self.wasm) {
            Ok((snapshot, plugins)) => {
                let current = self.current.load();
                let generation = if current.snapshot == snapshot && current.plugins == plugins {
                    current.generation
                } else {
                    let generation = current.generation + 1;
                    self.current.store(Arc::new(Published {
                        generation,
                        snapshot,
                        plugins,
                        loaded_at: SystemTime::now(),
                    }));
                    info!(generation, "config reloaded");
                    generation
                };
                self.metrics.record_reload(true, generation);
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
                Err(errors)
            }
        }
    }
}
