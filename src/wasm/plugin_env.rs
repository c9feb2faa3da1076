//! What every instance and host call knows about the plugin it runs in ([`PluginEnv`]),
//! the settings all plugins of a host share ([`HostOptions`]), and the messages to a
//! plugin's service thread ([`ServiceEvent`]).
//!
//! Plain data below `host`, `instance` and `plugin`, so the store's state can name its
//! plugin without depending on the code that runs it.

use std::collections::BTreeMap;
use std::sync::mpsc::Sender;
use std::sync::Arc;
use std::time::Duration;

use super::metrics::WasmMetrics;

/// Settings every plugin of a host shares.
#[derive(Debug, Clone, PartialEq)]
pub struct HostOptions {
    /// Instances per plugin; requests are spread over them. Default: the
    /// number of CPUs (Pingora's worker threads), at most 8.
    pub instances_per_plugin: usize,
    /// Linear-memory cap per instance, bytes. Default 64 MiB.
    pub memory_limit: usize,
    /// Longest a single callback may run before it is trapped. Default 500 ms.
    pub callback_timeout: Duration,
    /// `node.metadata.*` properties (Istio's NAMESPACE, WORKLOAD_NAME,
    /// CLUSTER_ID, MESH_ID, …).
    pub node_metadata: BTreeMap<String, String>,
}

impl Default for HostOptions {
    fn default() -> Self {
        let cpus = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1);
        Self {
            instances_per_plugin: cpus.clamp(1, 8),
            memory_limit: 64 << 20,
            callback_timeout: Duration::from_millis(500),
            node_metadata: BTreeMap::new(),
        }
    }
}

/// Messages to a plugin's service thread.
#[derive(Debug)]
pub(crate) enum ServiceEvent {
    /// An instance (re)started; read its tick period.
    Reschedule {
        slot: usize,
    },
    QueueReady {
        slot: usize,
        context_id: u32,
        queue_id: u32,
    },
    Stop,
}

/// What host calls need to know about the plugin they run in.
pub(crate) struct PluginEnv {
    /// `namespace.name` of the WasmPlugin: Istio's `plugin_name`, and the
    /// name in logs and metrics.
    pub(crate) name: String,
    /// `pluginName`: the root id the SDKs dispatch on.
    pub(crate) root_id: String,
    /// Shared data and queues are keyed by this.
    pub(crate) vm_id: String,
    pub(crate) plugin_config: Vec<u8>,
    pub(crate) vm_config: Vec<u8>,
    /// `vmConfig.env`, resolved.
    pub(crate) env: Vec<(String, String)>,
    pub(crate) node_metadata: Arc<BTreeMap<String, String>>,
    pub(crate) metrics: Arc<WasmMetrics>,
    pub(crate) events: Sender<ServiceEvent>,
}

impl Default for PluginEnv {
    fn default() -> Self {
        Self {
            name: String::new(),
            root_id: String::new(),
            vm_id: String::new(),
            plugin_config: Vec::new(),
            vm_config: Vec::new(),
            env: Vec::new(),
            node_metadata: Arc::default(),
            metrics: Arc::new(WasmMetrics::new(&prometheus::Registry::new())),
            events: std::sync::mpsc::channel().0,
        }
    }
}
