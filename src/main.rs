//! The `waypoint` command line. Parses arguments and calls the library.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use waypoint::config::source::kube::client::ApiServerOptions;
use waypoint::config::source::kube::KubeSourceOptions;
use waypoint::control::cli::{
    WaypointApplyArgs, WaypointDeleteArgs, WaypointGenerateArgs, WaypointListArgs,
    WaypointStatusArgs,
};
use waypoint::identity::istio_ca::{
    CaAddress, IstioCaConfig, DEFAULT_CLUSTER_ID, DEFAULT_ROOT_CERT, DEFAULT_TOKEN,
};
use waypoint::overload::{parse_bytes, OverloadConfig};
use waypoint::settings::Settings;
use waypoint::upstream::LbPolicy;

// Pingora's request path allocates per request; glibc malloc cost ~10 % of
// CPU at saturation (perf, see BENCHMARKS.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "waypoint",
    version,
    about = "A Pingora-based L7 waypoint for Istio ambient meshes"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the waypoint on a config file or directory of Kubernetes YAML, or on the
    /// objects of a Kubernetes cluster (--kube).
    Run(Box<RunArgs>),
    /// Validate a config; print every error (exit 1) or a summary (exit 0).
    Check {
        #[arg(long, short = 'c')]
        config: PathBuf,
        /// Namespace for objects without one (default $POD_NAMESPACE, else `default`).
        #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
        namespace: String,
        #[command(flatten)]
        mesh: MeshArgs,
    },
    /// Run the shipped demo mesh with echo workloads and show where traffic goes.
    Demo {
        /// Exit after this many seconds instead of waiting for Ctrl-C.
        #[arg(long)]
        duration: Option<u64>,
        /// Config to run (default: the shipped demo config, built into the binary).
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Print a waypoint Gateway (class pingora-waypoint) as YAML, like `istioctl waypoint generate`.
    Generate(WaypointGenerateArgs),
    /// Server-side apply a waypoint Gateway; optionally enroll its namespace and wait for it.
    Apply(WaypointApplyArgs),
    /// List waypoints (Gateways of class pingora-waypoint).
    List(WaypointListArgs),
    /// Delete waypoints by name, or all in a namespace.
    Delete(WaypointDeleteArgs),
    /// Show the conditions and addresses the controller reported for waypoints.
    Status(WaypointStatusArgs),
    /// Run the controller of the pingora-waypoint GatewayClass (one Deployment,
    /// Service and ServiceAccount per Gateway).
    Controller(waypoint::control::controller::ControllerArgs),
}

#[derive(Clone, Copy, ValueEnum)]
enum Lb {
    LeastRequest,
    RoundRobin,
    Random,
}

#[derive(Args)]
struct RunArgs {
    /// Config file or directory (every *.yaml / *.yml, recursively). Exactly one of
    /// --config and --kube.
    #[arg(
        long,
        short = 'c',
        required_unless_present = "kube",
        conflicts_with = "kube"
    )]
    config: Option<PathBuf>,
    #[command(flatten)]
    kube: KubeArgs,
    #[command(flatten)]
    mesh: MeshArgs,
    /// The waypoint's namespace; short Service names resolve here.
    #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
    namespace: String,
    /// Plain HTTP listener (off unless given), e.g. 127.0.0.1:8080.
    #[arg(long)]
    http_listen: Option<SocketAddr>,
    /// Admin listener: /stats/prometheus, /healthz/ready, /config_dump.
    #[arg(long, default_value = "127.0.0.1:15000")]
    admin_listen: SocketAddr,
    /// A listener serving only /stats/prometheus (e.g. 0.0.0.0:15020 in a pod).
    #[arg(long)]
    metrics_listen: Option<SocketAddr>,
    /// A listener serving only /healthz/ready (e.g. 0.0.0.0:15021 in a pod).
    #[arg(long)]
    health_listen: Option<SocketAddr>,
    /// Write one JSON access-log line per request to stdout.
    #[arg(long)]
    access_log: bool,
    /// Seconds in-flight requests may take to finish after SIGTERM.
    #[arg(long, default_value_t = 5)]
    drain_timeout: u64,
    /// An upgraded connection (WebSocket, …) is closed when either direction
    /// has carried no bytes for this long.
    #[arg(long, default_value = "1h", value_parser = humantime::parse_duration)]
    upgrade_idle_timeout: Duration,
    /// An HTTP/1.1 connection must deliver a whole request head this soon
    /// after the waiting for it starts (slowloris); else it is closed.
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    request_headers_timeout: Duration,
    /// Open downstream connections, all listeners together; past it a new
    /// connection is closed at once (0: no limit).
    #[arg(long, default_value_t = waypoint::overload::DEFAULT_MAX_CONNECTIONS)]
    max_downstream_connections: usize,
    /// Open HBONE connections of one caller identity (0: no limit).
    #[arg(long, default_value_t = 0)]
    max_connections_per_identity: usize,
    /// Requests in flight above which new requests get 503 `OM` (0: off).
    #[arg(long, default_value_t = 0)]
    overload_max_active_requests: usize,
    /// Resident memory above which new requests get 503 `OM` and no connection
    /// is accepted until it falls below 95 % of it, e.g. `400MiB` (off unless set).
    #[arg(long, value_parser = parse_bytes)]
    overload_max_rss: Option<u64>,
    /// Concurrent tunnels (CONNECT streams) per HBONE connection.
    #[arg(long, default_value_t = 200)]
    hbone_max_streams_per_connection: u32,
    /// Proxy worker threads.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Load balancing among endpoints.
    #[arg(long, value_enum, default_value = "least-request")]
    lb: Lb,
    /// Directory with cert-chain.pem, key.pem, root-cert.pem; enables HBONE.
    #[arg(long)]
    cert_dir: Option<PathBuf>,
    /// HBONE (mTLS HTTP/2 CONNECT) listener, used with --cert-dir.
    #[arg(long, default_value = "0.0.0.0:15008")]
    hbone_listen: SocketAddr,
    /// Trust domain of callers and destinations.
    #[arg(long, default_value = "cluster.local")]
    trust_domain: String,
    /// HBONE port of the destination ztunnels.
    #[arg(long, default_value_t = 15008)]
    hbone_upstream_port: u16,
    /// PROXY-protocol v2 listener (Istio's PROXY/15088 sandwich binding).
    #[arg(long)]
    proxy_protocol_listen: Option<SocketAddr>,
    /// Add x-forwarded-client-cert (By=<waypoint>;URI=<caller>) to requests.
    #[arg(long)]
    forward_client_cert: bool,
    /// The waypoint's own locality, `region/zone`, for locality-aware LB.
    #[arg(long)]
    locality: Option<String>,
    #[command(flatten)]
    ca: CaArgs,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing(cli.command.default_log_filter());
    match cli.command {
        Command::Run(args) => run(*args),
        Command::Check {
            config,
            namespace,
            mesh,
        } => {
            let mut settings = Settings::new(config);
            settings.namespace = namespace;
            if let Err(code) = mesh.apply(&mut settings) {
                return code;
            }
            let (ok, report) = waypoint::check::check_with(&settings);
            print!("{report}");
            if ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
        Command::Demo { duration, config } => {
            let runtime = runtime(2);
            match runtime.block_on(waypoint::demo::run(
                config.as_deref(),
                duration.map(Duration::from_secs),
            )) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("waypoint demo: {e:#}");
                    ExitCode::from(1)
                }
            }
        }
        Command::Generate(args) => waypoint_generate(args),
        Command::Apply(args) => waypoint_apply(args),
        Command::List(args) => waypoint_list(args),
        Command::Delete(args) => waypoint_delete(args),
        Command::Status(args) => waypoint_status(args),
        Command::Controller(args) => controller(args),
    }
}

fn waypoint_generate(args: WaypointGenerateArgs) -> ExitCode {
    kube_cli(waypoint::control::cli::generate(args))
}

fn waypoint_apply(args: WaypointApplyArgs) -> ExitCode {
    kube_cli(waypoint::control::cli::apply(args))
}

fn waypoint_list(args: WaypointListArgs) -> ExitCode {
    kube_cli(waypoint::control::cli::list(args))
}

fn waypoint_delete(args: WaypointDeleteArgs) -> ExitCode {
    kube_cli(waypoint::control::cli::delete(args))
}

fn waypoint_status(args: WaypointStatusArgs) -> ExitCode {
    kube_cli(waypoint::control::cli::status(args))
}

/// Runs one of the istioctl-style commands; a failure is one `error:` line, exit 1.
fn kube_cli(
    command: impl std::future::Future<Output = Result<(), waypoint::control::cli::CliError>>,
) -> ExitCode {
    match runtime(1).block_on(command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(1)
        }
    }
}

fn controller(args: waypoint::control::controller::ControllerArgs) -> ExitCode {
    match runtime(2).block_on(waypoint::control::controller::main(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("waypoint controller: {e}");
            ExitCode::from(1)
        }
    }
}

fn run(args: RunArgs) -> ExitCode {
    let mut settings = Settings::new(args.config.unwrap_or_default());
    if let Err(code) = args.mesh.apply(&mut settings) {
        return code;
    }
    settings.kube = args.kube.into_options(&settings.gateway_name);
    settings.namespace = args.namespace;
    settings.http_listen = args.http_listen;
    settings.admin_listen = args.admin_listen;
    settings.metrics_listen = args.metrics_listen;
    settings.health_listen = args.health_listen;
    settings.access_log = args.access_log;
    settings.drain_timeout = Duration::from_secs(args.drain_timeout);
    settings.upgrade_idle_timeout = args.upgrade_idle_timeout;
    settings.request_headers_timeout = args.request_headers_timeout;
    let limit = |n: usize| (n > 0).then_some(n);
    settings.overload = OverloadConfig {
        max_connections: limit(args.max_downstream_connections),
        max_connections_per_identity: limit(args.max_connections_per_identity),
        max_active_requests: limit(args.overload_max_active_requests),
        max_rss_bytes: args.overload_max_rss,
        ..OverloadConfig::default()
    };
    settings.hbone_max_streams_per_connection = args.hbone_max_streams_per_connection.max(1);
    settings.threads = args.threads.max(1);
    settings.lb = match args.lb {
        Lb::LeastRequest => LbPolicy::LeastRequest,
        Lb::RoundRobin => LbPolicy::RoundRobin,
        Lb::Random => LbPolicy::Random,
    };
    settings.cert_dir = args.cert_dir;
    settings.hbone_listen = args.hbone_listen;
    settings.trust_domain = args.trust_domain;
    settings.hbone_upstream_port = args.hbone_upstream_port;
    settings.proxy_protocol_listen = args.proxy_protocol_listen;
    settings.forward_client_cert = args.forward_client_cert;
    settings.locality = args.locality;
    settings.cluster_id = args.ca.cluster_id.clone();
    settings.ca = match args.ca.into_config() {
        Ok(ca) => ca,
        Err(e) => {
            eprintln!("waypoint: {e}");
            return ExitCode::from(2);
        }
    };
    let runtime = runtime(settings.threads);
    runtime.block_on(async move {
        match waypoint::server::start(settings).await {
            Ok(running) => {
                running.run_until_signal().await;
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("waypoint: {e}");
                ExitCode::from(1)
            }
        }
    })
}

fn runtime(threads: usize) -> tokio::runtime::Runtime {
    let mut builder = if threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut b = tokio::runtime::Builder::new_multi_thread();
        b.worker_threads(threads);
        b
    };
    builder
        .enable_all()
        .build()
        .expect("building the tokio runtime only fails when the OS refuses threads")
}

impl Command {
    /// Log filter unless WAYPOINT_LOG says otherwise. The istioctl-style
    /// commands report a failure as one line of their own, so the Kubernetes
    /// client's logs of the same failure stay off.
    fn default_log_filter(&self) -> &'static str {
        match self {
            Command::Generate(_)
            | Command::Apply(_)
            | Command::List(_)
            | Command::Delete(_)
            | Command::Status(_) => "warn,kube_client=off",
            _ => "info",
        }
    }
}

/// Logs to stderr through a filter the admin port's `/logging` can change.
fn init_tracing(default_filter: &str) {
    waypoint::telemetry::log_level::init(default_filter);
}

/// Certificates from Istio's CA (`waypoint run --ca-address …`).
#[derive(Args)]
struct CaArgs {
    /// Istio's CA, HOST:PORT (e.g. istiod.istio-system.svc:15012): request and renew the
    /// waypoint's certificate there, into --cert-dir
    /// (default /var/run/secrets/workload-spiffe-credentials).
    #[arg(long, value_name = "HOST:PORT")]
    ca_address: Option<CaAddress>,
    /// Name the CA's TLS certificate must carry (default: the host of --ca-address).
    #[arg(long, requires = "ca_address")]
    ca_server_name: Option<String>,
    /// Root certificate(s) to trust for the CA and to write as root-cert.pem (the
    /// istio-ca-root-cert ConfigMap mount).
    #[arg(long, default_value = DEFAULT_ROOT_CERT)]
    ca_root_cert: PathBuf,
    /// Projected service-account token (audience istio-ca), re-read for every request.
    #[arg(long, default_value = DEFAULT_TOKEN)]
    ca_token: PathBuf,
    /// The waypoint's service account; with --trust-domain and --namespace it makes the
    /// SPIFFE id requested.
    #[arg(long, env = "SERVICE_ACCOUNT")]
    service_account: Option<String>,
    /// The cluster this waypoint runs in (Istio's default: Kubernetes): the
    /// `destination_cluster` metric label, `source_cluster` for mesh callers whose
    /// ztunnel sent none, and the `clusterid` header sent to the CA.
    #[arg(long, env = "CLUSTER_ID", default_value = DEFAULT_CLUSTER_ID)]
    cluster_id: String,
    /// Requested certificate lifetime, e.g. 24h; renewed at ~80 % of it.
    #[arg(long, default_value = "24h", value_parser = humantime::parse_duration)]
    cert_lifetime: Duration,
}

impl CaArgs {
    fn into_config(self) -> Result<Option<IstioCaConfig>, String> {
        let Some(address) = self.ca_address else {
            return Ok(None);
        };
        let service_account = self
            .service_account
            .filter(|sa| !sa.is_empty())
            .ok_or("--ca-address needs --service-account (or SERVICE_ACCOUNT)")?;
        let mut config = IstioCaConfig::new(address, service_account);
        config.server_name = self.ca_server_name;
        config.root_cert = self.ca_root_cert;
        config.token = self.ca_token;
        config.cluster_id = self.cluster_id;
        config.cert_lifetime = self.cert_lifetime;
        Ok(Some(config))
    }
}

/// Config from the Kubernetes API server (`waypoint run --kube`).
#[derive(Args)]
struct KubeArgs {
    /// Watch the API server for the Services bound to this waypoint
    /// (istio.io/use-waypoint) and their routes and policies, instead of --config.
    #[arg(long)]
    kube: bool,
    /// Kubeconfig to use (default: KUBECONFIG, ~/.kube/config, else in-cluster).
    #[arg(long, requires = "kube")]
    kubeconfig: Option<PathBuf>,
    /// Kubeconfig context other than the current one.
    #[arg(long, requires = "kube")]
    context: Option<String>,
}

/// Who this waypoint is in the mesh, and the mesh-wide settings its
/// authorization reads.
#[derive(Args)]
struct MeshArgs {
    /// This waypoint's Gateway name, as in istio.io/use-waypoint=<name>; also which
    /// AuthorizationPolicy targetRefs name this waypoint.
    #[arg(long, default_value = "waypoint")]
    gateway_name: String,
    /// This waypoint's GatewayClass: root-namespace AuthorizationPolicies targeting it apply.
    #[arg(long, default_value = "pingora-waypoint")]
    gateway_class: String,
    /// Istio's root namespace, where GatewayClass-wide policies live (default: the
    /// mesh config's rootNamespace, else istio-system).
    #[arg(long)]
    root_namespace: Option<String>,
    /// Istio's MeshConfig (the istio ConfigMap, or the bare MeshConfig YAML): the
    /// extensionProviders CUSTOM AuthorizationPolicies name. Read at startup.
    #[arg(long, value_name = "PATH")]
    mesh_config: Option<PathBuf>,
    /// Linkerd's cluster default inbound policy for ports no Server covers
    /// (Namespace and Pod annotations config.linkerd.io/default-inbound-policy win).
    #[arg(long, value_parser = waypoint::authz::linkerd::DEFAULT_POLICIES)]
    linkerd_default_inbound_policy: Option<String>,
    /// How often RequestAuthentication jwksUri keys are fetched again (Istio's
    /// PILOT_JWT_PUB_KEY_REFRESH_INTERVAL).
    #[arg(long, default_value = "20m", value_parser = humantime::parse_duration)]
    jwks_refresh_interval: Duration,
}

impl MeshArgs {
    /// Puts these flags into `settings`; a mesh config that does not load
    /// is exit code 2.
    fn apply(&self, settings: &mut Settings) -> Result<(), ExitCode> {
        settings.gateway_name = self.gateway_name.clone();
        settings.gateway_class = self.gateway_class.clone();
        if let Some(path) = &self.mesh_config {
            match waypoint::config::MeshConfig::load(path) {
                Ok(mesh) => settings.mesh = std::sync::Arc::new(mesh),
                Err(e) => {
                    eprintln!("waypoint: --mesh-config {e}");
                    return Err(ExitCode::from(2));
                }
            }
        }
        settings.linkerd_default_inbound_policy = self.linkerd_default_inbound_policy.clone();
        settings.jwks_refresh_interval = self.jwks_refresh_interval;
        settings.root_namespace = self
            .root_namespace
            .clone()
            .or_else(|| settings.mesh.root_namespace.clone())
            .unwrap_or_else(|| "istio-system".to_string());
        Ok(())
    }
}

impl KubeArgs {
    fn into_options(self, gateway_name: &str) -> Option<KubeSourceOptions> {
        self.kube.then_some(KubeSourceOptions {
            gateway_name: gateway_name.to_string(),
            api_server: ApiServerOptions {
                kubeconfig: self.kubeconfig,
                context: self.context,
            },
        })
    }
}
