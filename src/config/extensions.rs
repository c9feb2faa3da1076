//! Istio extension kinds: `extensions.istio.io/v1alpha1` WasmPlugin, field for
//! field as the API writes it. `src/wasm` validates and compiles these; here
//! we only parse.

use serde::Deserialize;

pub use super::istio_traffic::PortSelector;

use super::meta::ObjectMeta;

/// `extensions.istio.io/v1alpha1` WasmPlugin: a proxy-wasm module to run on
/// this waypoint's HTTP traffic.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct WasmPlugin {
    #[serde(default)]
    pub metadata: ObjectMeta,
    #[serde(default)]
    pub spec: WasmPluginSpec,
    /// Server-populated; ignored.
    #[serde(default)]
    pub status: Option<serde_yaml::Value>,
}

/// `spec` of a WasmPlugin.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct WasmPluginSpec {
    /// Workload selector; meaningless for a waypoint (Istio ignores it there
    /// too, attaching waypoint plugins through `targetRefs`). Warned about.
    #[serde(default)]
    pub selector: Option<serde_yaml::Value>,
    /// Deprecated single form of `targetRefs`.
    #[serde(default)]
    pub target_ref: Option<PolicyTargetReference>,
    /// What the plugin attaches to: the waypoint's Gateway (all its traffic)
    /// or a Service (only that Service's traffic). Empty: all traffic.
    #[serde(default)]
    pub target_refs: Vec<PolicyTargetReference>,
    /// `file:///abs/path.wasm` or a plain path; relative paths resolve against
    /// the config file's directory. `oci://`, `http://`, `https://` are not
    /// supported here.
    #[serde(default)]
    pub url: String,
    /// Hex SHA-256 of the module; a mismatch rejects the plugin.
    #[serde(default)]
    pub sha256: Option<String>,
    /// Ignored for local files.
    #[serde(default)]
    pub image_pull_policy: Option<String>,
    /// Ignored for local files.
    #[serde(default)]
    pub image_pull_secret: Option<String>,
    /// Ignored (signature verification is not supported).
    #[serde(default)]
    pub verification_key: Option<String>,
    /// Handed to `proxy_on_configure` as JSON. Default: none (empty buffer).
    #[serde(default)]
    pub plugin_config: Option<serde_json::Value>,
    /// The plugin's root id. Default: empty.
    #[serde(default)]
    pub plugin_name: Option<String>,
    /// Where in the filter chain the plugin runs. Default: unspecified
    /// (after AUTHZ, before STATS).
    #[serde(default)]
    pub phase: Option<PluginPhase>,
    /// Order within a phase: higher runs first. Default 0.
    #[serde(default)]
    pub priority: Option<i32>,
    /// What a request gets when the plugin fails. Default FAIL_CLOSE.
    #[serde(default)]
    pub fail_strategy: Option<FailStrategy>,
    /// VM settings; only `env` is used.
    #[serde(default)]
    pub vm_config: Option<VmConfig>,
    /// Which traffic the plugin sees; empty: all.
    #[serde(default, rename = "match")]
    pub matches: Vec<TrafficSelector>,
    /// HTTP (default) or NETWORK (not supported).
    #[serde(default, rename = "type")]
    pub plugin_type: Option<PluginType>,
}

/// A `targetRefs` entry.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PolicyTargetReference {
    /// `gateway.networking.k8s.io` for a Gateway, `""` (core) for a Service.
    #[serde(default)]
    pub group: String,
    /// `Gateway` or `Service`.
    #[serde(default)]
    pub kind: String,
    pub name: String,
    /// Must equal the plugin's namespace when set.
    #[serde(default)]
    pub namespace: Option<String>,
}

/// `phase`.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum PluginPhase {
    UnspecifiedPhase,
    Authn,
    Authz,
    Stats,
}

/// `failStrategy`.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum FailStrategy {
    /// A failing plugin answers 500.
    FailClose,
    /// A failing plugin is skipped.
    FailOpen,
}

/// `type`.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum PluginType {
    UnspecifiedPluginType,
    Http,
    Network,
}

/// `vmConfig`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct VmConfig {
    #[serde(default)]
    pub env: Vec<EnvVar>,
}

/// A `vmConfig.env` entry, visible to the module through WASI `environ_get`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct EnvVar {
    pub name: String,
    /// Used when `valueFrom` is INLINE (the default).
    #[serde(default)]
    pub value: Option<String>,
    /// `INLINE` (default) or `HOST` (the waypoint process's own variable).
    #[serde(default)]
    pub value_from: Option<EnvValueSource>,
}

/// `vmConfig.env[].valueFrom`.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum EnvValueSource {
    Inline,
    Host,
}

/// A `match` entry: traffic mode and ports.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct TrafficSelector {
    /// UNDEFINED, CLIENT, SERVER or CLIENT_AND_SERVER. Default: any.
    #[serde(default)]
    pub mode: Option<WorkloadMode>,
    /// Destination ports; empty: any.
    #[serde(default)]
    pub ports: Vec<PortSelector>,
}

/// `match[].mode`.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum WorkloadMode {
    Undefined,
    Client,
    Server,
    ClientAndServer,
}
