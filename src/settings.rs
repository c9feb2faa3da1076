//! Process settings: fixed for the life of the process, apart from the mesh
//! config (which is reloaded). Built by the CLI, read by every component.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::config::source::kube::KubeSourceOptions;
use crate::config::MeshConfig;
use crate::identity::istio_ca::IstioCaConfig;
use crate::overload::OverloadConfig;
use crate::telemetry::trace::ExportSettings;
use crate::upstream::LbPolicy;

/// What `waypoint run` was asked to do.
#[derive(Debug, Clone)]
pub struct Settings {
    /// File or directory of Kubernetes YAML. Unused when `kube` is set.
    pub config_path: PathBuf,
    /// Config from the Kubernetes API server (`--kube`) instead of `config_path`.
    pub kube: Option<KubeSourceOptions>,
    /// The waypoint's namespace; short Service names resolve here.
    pub namespace: String,
    /// Plain HTTP listener (development, tests, PROXY sandwich); off when `None`.
    pub http_listen: Option<SocketAddr>,
    /// Admin listener (`/stats/prometheus`, `/healthz/ready`, `/config_dump`).
    pub admin_listen: SocketAddr,
    /// A listener serving only `/stats/prometheus` (pods expose it as port 15020).
    pub metrics_listen: Option<SocketAddr>,
    /// A listener serving only `/healthz/ready` (the pods' readiness probe, 15021).
    pub health_listen: Option<SocketAddr>,
    /// One JSON access-log line per request on stdout.
    pub access_log: bool,
    /// How long in-flight requests may take to finish after SIGTERM.
    pub drain_timeout: Duration,
    /// Worker threads of the proxy runtime.
    pub threads: usize,
    /// Kubernetes cluster domain used in Service FQDNs.
    pub cluster_domain: String,
    /// Load-balancing policy among a Service's endpoints.
    pub lb: LbPolicy,
    /// Upstream TCP connect timeout (Envoy's and Istio's default: 10 s).
    pub connect_timeout: Duration,
    /// Largest request header block accepted, in bytes (Envoy's default 60 KiB);
    /// larger ones get 431.
    pub max_request_headers_bytes: usize,
    /// Most request headers accepted (Envoy's `max_headers_count` default,
    /// 100); more get 431.
    pub max_request_headers_count: usize,
    /// Directory with `cert-chain.pem`, `key.pem`, `root-cert.pem` (Istio's
    /// names). Enables HBONE in and out.
    pub cert_dir: Option<PathBuf>,
    /// HBONE listener (used when `cert_dir` is set). Istio's port 15008.
    pub hbone_listen: SocketAddr,
    /// Trust domain callers and destinations must belong to.
    pub trust_domain: String,
    /// The cluster this waypoint runs in (`--cluster-id`, Istio's `CLUSTER_ID`, default
    /// `Kubernetes`): the `destination_cluster` label, and `source_cluster` for mesh callers
    /// whose ztunnel sent none.
    pub cluster_id: String,
    /// Port of the destination ztunnels' HBONE listener.
    pub hbone_upstream_port: u16,
    /// PROXY-protocol v2 listener (Istio's `PROXY/15088` sandwich binding).
    pub proxy_protocol_listen: Option<SocketAddr>,
    /// Add Envoy's `x-forwarded-client-cert` with the caller's identity.
    pub forward_client_cert: bool,
    /// The waypoint's own `region/zone`, for locality-aware load balancing.
    pub locality: Option<String>,
    /// Certificates from Istio's CA (`--ca-address`): fetched into `cert_dir` (default
    /// `/var/run/secrets/workload-spiffe-credentials`) before HBONE starts, then renewed.
    /// Off when `None`: the cert dir is filled by someone else.
    pub ca: Option<IstioCaConfig>,
    /// This waypoint's Gateway, in `namespace` (`istio.io/use-waypoint=<name>`):
    /// AuthorizationPolicies targeting it apply to all its traffic.
    pub gateway_name: String,
    /// This waypoint's GatewayClass: root-namespace policies targeting it apply.
    pub gateway_class: String,
    /// Istio's root namespace (MeshConfig `rootNamespace`).
    pub root_namespace: String,
    /// `--mesh-config`: Istio's MeshConfig (extension providers), read at startup.
    pub mesh: Arc<MeshConfig>,
    /// Linkerd's cluster default inbound policy (`all-unauthenticated`, …), if any.
    pub linkerd_default_inbound_policy: Option<String>,
    /// How often `jwksUri` keys are fetched again (Istio's default 20 minutes).
    pub jwks_refresh_interval: Duration,
    /// An upgraded connection (WebSocket, …) is closed when either direction
    /// has carried no bytes for this long.
    pub upgrade_idle_timeout: Duration,
    /// How long an HTTP/1.1 connection may take, from the moment the waypoint
    /// waits for its next request, to deliver the whole request head (a
    /// slowloris defence, as nginx's `client_header_timeout`). Past it the
    /// connection is closed and `waypoint_downstream_limits_total` counts it.
    pub request_headers_timeout: Duration,
    /// How finished spans are batched for the collector (queue size, batch
    /// size, flush interval); the OpenTelemetry SDK's defaults.
    pub trace_export: ExportSettings,
    /// Connection caps and the overload manager's thresholds.
    pub overload: OverloadConfig,
    /// SETTINGS_MAX_CONCURRENT_STREAMS of an HBONE connection: ztunnel's own server
    /// limit, so one caller's connection cannot hold unbounded tunnels.
    pub hbone_max_streams_per_connection: u32,
}

impl Settings {
    /// Settings with every option at its documented default.
    pub fn new(config_path: impl Into<PathBuf>) -> Self {
        Self {
            config_path: config_path.into(),
            kube: None,
            namespace: std::env::var("POD_NAMESPACE")
                .ok()
                .filter(|ns| !ns.is_empty())
                .unwrap_or_else(|| "default".to_string()),
            http_listen: None,
            admin_listen: SocketAddr::from(([127, 0, 0, 1], 15000)),
            metrics_listen: None,
            health_listen: None,
            access_log: false,
            drain_timeout: Duration::from_secs(5),
            threads: 1,
            cluster_domain: "cluster.local".to_string(),
            lb: LbPolicy::LeastRequest,
            connect_timeout: Duration::from_secs(10),
            max_request_headers_bytes: 60 * 1024,
            max_request_headers_count: 100,
            cert_dir: None,
            hbone_listen: SocketAddr::from(([0, 0, 0, 0], 15008)),
            trust_domain: "cluster.local".to_string(),
            cluster_id: crate::identity::istio_ca::DEFAULT_CLUSTER_ID.to_string(),
            hbone_upstream_port: 15008,
            proxy_protocol_listen: None,
            forward_client_cert: false,
            locality: None,
            ca: None,
            gateway_name: "waypoint".to_string(),
            gateway_class: "pingora-waypoint".to_string(),
            root_namespace: "istio-system".to_string(),
            mesh: Arc::default(),
            linkerd_default_inbound_policy: None,
            jwks_refresh_interval: Duration::from_secs(20 * 60),
            upgrade_idle_timeout: Duration::from_secs(60 * 60),
            request_headers_timeout: Duration::from_secs(60),
            trace_export: ExportSettings::default(),
            overload: OverloadConfig::default(),
            hbone_max_streams_per_connection: 200,
        }
    }
}
