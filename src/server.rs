//! Starting and stopping a waypoint: load the config, bind the listeners,
//! serve, and drain on shutdown. Used by `waypoint run`, the demo and the
//! integration tests, which all run the same code in-process.

use std::net::SocketAddr;
use std::sync::Arc;

use pingora_core::apps::HttpServerOptions;
use pingora_core::server::configuration::ServerConf;
use pingora_proxy::HttpProxy;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{info, warn};

use crate::admin::{self, AdminState, Readiness};
use crate::config::source::kube::client::{ApiServer, KubeError};
use crate::config::source::kube::{self as kube_source, KubeSource, KubeWatch};
use crate::config::watch::ConfigWatcher;
use crate::config::ConfigErrors;
use crate::hbone::InboundConfig;
use crate::identity::istio_ca::{self, CaClient, CaError, CertRenewer};
use crate::identity::{CertDir, CertWatcher, IdentityError, IdentityStore};
use crate::inbound::listener::{self, ConnectionTracker, Proxies};
use crate::inbound::passthrough::Passthrough;
use crate::inbound::proxy_protocol;
use crate::inbound::tunnel::TunnelHandler;
use crate::overload::Overload;
use crate::proxy::direct::Front;
use crate::proxy::Waypoint;
use crate::settings::Settings;
use crate::store::SnapshotStore;
use crate::telemetry::{HandshakeFailures, Metrics};
use crate::upstream::dial::{DialConnector, Dialer};

/// Why the waypoint could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("invalid config: {0}")]
    Config(#[from] ConfigErrors),
    #[error("cannot listen on {addr}: {source} (is another process using the port?)")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot watch config path {path}: {source}")]
    Watch { path: String, source: notify::Error },
    #[error("certificates: {0}")]
    Identity(#[from] IdentityError),
    #[error("MeshConfig tracing: {0}")]
    Tracing(#[from] crate::telemetry::trace::TraceConfigError),
    #[error("certificates from Istio's CA: {0}")]
    Ca(#[from] CaError),
    #[error("config from the Kubernetes API: {0}")]
    Kube(#[from] KubeError),
}

/// A running waypoint. Drop it or call [`Running::shutdown`] to stop.
pub struct Running {
    /// Bound address of the plain HTTP listener, when enabled.
    pub http_addr: Option<SocketAddr>,
    /// Bound address of the HBONE listener, when a cert dir is given.
    pub hbone_addr: Option<SocketAddr>,
    /// Bound address of the PROXY-protocol listener, when enabled.
    pub proxy_protocol_addr: Option<SocketAddr>,
    /// Bound address of the admin listener.
    pub admin_addr: SocketAddr,
    /// Bound address of the metrics-only listener, when enabled.
    pub metrics_addr: Option<SocketAddr>,
    /// Bound address of the readiness-only listener, when enabled.
    pub health_addr: Option<SocketAddr>,
    pub store: Arc<SnapshotStore>,
    pub metrics: Arc<Metrics>,
    /// The waypoint's certificates, when a cert dir is given.
    pub identity: Option<Arc<IdentityStore>>,
    readiness: Arc<Readiness>,
    settings: Arc<Settings>,
    proxies: Proxies<Front>,
    tracker: Arc<ConnectionTracker>,
    shutdown: watch::Sender<bool>,
    admin_stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    _watchers: (Option<ConfigWatcher>, Option<CertWatcher>),
    _cert_renewer: Option<CertRenewer>,
    _kube_watch: Option<KubeWatch>,
}

/// Loads the config and certificates, binds every listener and starts
/// serving on the current tokio runtime. Readiness turns 200 once this returns
/// (with `--kube`: once every watched kind has synced and the first snapshot
/// built from them is published).
pub async fn start(settings: Settings) -> Result<Running, StartError> {
    let settings = Arc::new(settings);
    let metrics = Arc::new(Metrics::new());
    let (store, kube) = open_store(&settings, &metrics).await?;
    let (identity, cert_watcher, cert_renewer) = load_identity(&settings).await?;
    // The one dialer: routed requests, mirrors, Wasm calls and passthrough.
    let dialer = Arc::new(match &identity {
        Some(id) => Dialer::with_hbone(
            id.clone(),
            &settings.trust_domain,
            settings.hbone_upstream_port,
            settings.connect_timeout,
        ),
        None => Dialer::plain(settings.connect_timeout),
    });

    let overload = Overload::new(settings.overload.clone(), metrics.clone());
    let readiness = Arc::new(Readiness::default());
    readiness.set_overload(overload.clone());
    if kube.is_some() {
        readiness.set_waiting_for_config();
    }
    let (shutdown, shutdown_rx) = watch::channel(false);

    // Bind everything first: a taken port fails startup before serving.
    let admin_listener = bind(settings.admin_listen).await?;
    let admin_addr = local_addr(&admin_listener, settings.admin_listen);
    let metrics_listener = bind_opt(settings.metrics_listen).await?;
    let health_listener = bind_opt(settings.health_listen).await?;
    let (metrics_addr, health_addr) = (
        metrics_listener.as_ref().and_then(|l| l.local_addr().ok()),
        health_listener.as_ref().and_then(|l| l.local_addr().ok()),
    );
    let http_listener = bind_opt(settings.http_listen).await?;
    let hbone_listener = bind_opt(identity.as_ref().map(|_| settings.hbone_listen)).await?;
    let pp_listener = bind_opt(settings.proxy_protocol_listen).await?;
    let addr_of = |l: &Option<TcpListener>| l.as_ref().and_then(|l| l.local_addr().ok());
    let (http_addr, hbone_addr, proxy_protocol_addr) = (
        addr_of(&http_listener),
        addr_of(&hbone_listener),
        addr_of(&pp_listener),
    );

    // Span export dials its collectors through the same dialer, resolving
    // the collector's host in the current snapshot at each connection.
    let collectors = DialConnector::resolving(
        dialer.clone(),
        Arc::new(crate::proxy::mesh_http::ConfigResolver::new(store.clone())),
    );
    let tracer = build_tracer(&settings, &metrics, Arc::new(collectors))?;
    let waypoint = || {
        Waypoint::new(
            store.clone(),
            metrics.clone(),
            settings.clone(),
            dialer.clone(),
        )
        .with_tracer(tracer.clone())
        .with_overload(overload.clone())
    };
    let proxies = Proxies {
        http1: Arc::new(Front::http1(waypoint(), build_proxy(waypoint(), false))),
        h2c: Arc::new(Front::proxy_only(build_proxy(waypoint(), true))),
    };
    let tracker = Arc::new(ConnectionTracker::default());
    let mut tasks = vec![tokio::spawn(
        overload.clone().watch_memory(shutdown_rx.clone()),
    )];
    // RequestAuthentication `jwksUri`s, fetched through the same dialer.
    tasks.push(tokio::spawn(crate::proxy::jwks::keep_fetched(
        store.clone(),
        dialer.clone(),
        settings.jwks_refresh_interval,
        shutdown_rx.clone(),
    )));
    let admin_state = Arc::new(AdminState {
        store: store.clone(),
        metrics: metrics.clone(),
        readiness: readiness.clone(),
        identity: identity.clone(),
        listeners: [
            ("admin", Some(admin_addr)),
            ("metrics", metrics_addr),
            ("health", health_addr),
            ("http", http_addr),
            ("hbone", hbone_addr),
            ("proxy-protocol", proxy_protocol_addr),
        ]
        .into_iter()
        .filter_map(|(name, addr)| Some(admin::Listener { name, addr: addr? }))
        .collect(),
    });
    // The admin server outlives the drain so probes can see readiness turn 503.
    let (admin_stop, admin_stop_rx) = watch::channel(false);
    for (listener, endpoint) in [
        (metrics_listener, admin::ServedPath::Metrics),
        (health_listener, admin::ServedPath::Health),
    ] {
        if let Some(l) = listener {
            tasks.push(tokio::spawn(admin::serve_only(
                l,
                admin_state.clone(),
                endpoint,
                admin_stop_rx.clone(),
            )));
        }
    }
    tasks.push(tokio::spawn(admin::serve(
        admin_listener,
        admin_state,
        admin_stop_rx,
    )));
    if let Some(l) = http_listener {
        tasks.push(tokio::spawn(listener::run_plain(
            l,
            proxies.clone(),
            tracker.clone(),
            overload.clone(),
            shutdown_rx.clone(),
        )));
    }
    let tunnels = Arc::new(TunnelHandler {
        store: store.clone(),
        proxies: proxies.clone(),
        tracker: tracker.clone(),
        shutdown: shutdown_rx.clone(),
        passthrough: Arc::new(Passthrough {
            dialer: dialer.clone(),
            metrics: metrics.clone(),
        }),
    });
    if let (Some(l), Some(id)) = (hbone_listener, &identity) {
        let tls = id.server_config(&settings.trust_domain);
        let cfg = InboundConfig {
            handshake_failures: HandshakeFailures::registered(metrics.registry()),
            max_concurrent_streams: settings.hbone_max_streams_per_connection,
            overload: overload.clone(),
            ..InboundConfig::default()
        };
        tasks.push(tokio::spawn(crate::hbone::serve_inbound(
            l,
            tls,
            cfg,
            tunnels.clone(),
            shutdown_rx.clone(),
        )));
    }
    if let Some(l) = pp_listener {
        tasks.push(tokio::spawn(proxy_protocol::run_proxy_protocol(
            l,
            tunnels.clone(),
            tracker.clone(),
            overload.clone(),
            shutdown_rx.clone(),
        )));
    }

    let (watcher, kube_watch) = match kube {
        Some((api_server, source)) => {
            let ready = readiness.clone();
            let watch = kube_source::start(
                api_server.client,
                api_server.url,
                source,
                store.clone(),
                move || ready.set_config_loaded(),
            );
            (None, Some(watch))
        }
        None => {
            let store = store.clone();
            let watcher = ConfigWatcher::start(&settings.config_path, move || {
                let _ = store.reload();
            })
            .map_err(|source| StartError::Watch {
                path: settings.config_path.display().to_string(),
                source,
            })?;
            (Some(watcher), None)
        }
    };

    readiness.set_listening();
    Ok(Running {
        http_addr,
        hbone_addr,
        proxy_protocol_addr,
        admin_addr,
        metrics_addr,
        health_addr,
        store,
        metrics,
        identity,
        readiness,
        settings,
        proxies,
        tracker,
        shutdown,
        admin_stop,
        tasks,
        _watchers: (watcher, cert_watcher),
        _cert_renewer: cert_renewer,
        _kube_watch: kube_watch,
    })
}

/// The snapshot store on the configured source. Files are loaded now (an
/// invalid config fails startup); with `--kube` the store starts empty and
/// the API server is not contacted yet: the watches started later retry
/// until it answers, and readiness waits for them.
async fn open_store(
    settings: &Arc<Settings>,
    metrics: &Arc<Metrics>,
) -> Result<(Arc<SnapshotStore>, Option<(ApiServer, Arc<KubeSource>)>), StartError> {
    let Some(options) = &settings.kube else {
        let store = SnapshotStore::open(settings.clone(), metrics.clone())?;
        info!(generation = 1, path = %settings.config_path.display(), "config loaded");
        return Ok((Arc::new(store), None));
    };
    let api_server = ApiServer::connect(&options.api_server).await?;
    let source = Arc::new(
        KubeSource::new(
            &options.gateway_name,
            &settings.namespace,
            &settings.cluster_domain,
            &api_server.url,
        )
        .with_policy_scope(&settings.root_namespace, &settings.gateway_class),
    );
    info!(api_server = %api_server.url, gateway = %options.gateway_name, namespace = %settings.namespace, "config from the Kubernetes API");
    let store = SnapshotStore::open_source(settings.clone(), metrics.clone(), source.clone())?;
    Ok((Arc::new(store), Some((api_server, source))))
}

/// The waypoint's certificates, when HBONE is on: from Istio's CA (fetched now, then renewed
/// by a task that reloads the store) or from a cert dir filled by someone else (watched).
async fn load_identity(
    settings: &Settings,
) -> Result<
    (
        Option<Arc<IdentityStore>>,
        Option<CertWatcher>,
        Option<CertRenewer>,
    ),
    StartError,
> {
    let dir = match (&settings.cert_dir, &settings.ca) {
        (Some(dir), _) => CertDir::new(dir),
        (None, Some(_)) => CertDir::new(istio_ca::DEFAULT_CA_CERT_DIR),
        (None, None) => return Ok((None, None, None)),
    };
    let Some(ca) = &settings.ca else {
        let identity = Arc::new(IdentityStore::load(dir)?);
        info!(identity = %identity.identity(), expires_in_s = identity.seconds_to_expiry(), "certificates loaded");
        let watcher = identity.watch()?;
        return Ok((Some(identity), Some(watcher), None));
    };
    // The first certificate before anything listens: a CA that is unreachable or refuses
    // fails startup, naming its address. The renewer writes the directory and reloads the
    // store itself, so no file watcher is needed.
    let client = CaClient::new(ca.clone(), &settings.trust_domain, &settings.namespace)?;
    let validity = istio_ca::provision(&client, &dir).await?;
    let identity = Arc::new(IdentityStore::load(dir)?);
    let renewer = identity.renew_from_ca(client, validity);
    Ok((Some(identity), None, Some(renewer)))
}

fn build_proxy(waypoint: Waypoint, h2c: bool) -> HttpProxy<Waypoint> {
    let conf = Arc::new(ServerConf::default());
    let mut proxy = pingora_proxy::http_proxy(&conf, waypoint);
    let mut options = HttpServerOptions::default();
    options.h2c = h2c;
    if h2c {
        // RFC 8441 WebSockets: advertise extended CONNECT and let CONNECT
        // requests reach `request_filter`, which serves `:protocol: websocket`
        // and refuses every other CONNECT.
        options.allow_connect_method_proxying = true;
        let mut h2 = pingora_core::protocols::http::v2::server::default_h2_options();
        h2.enable_connect_protocol();
        proxy.h2_options = Some(h2);
    }
    proxy.server_options = Some(options);
    proxy
}

async fn bind_opt(addr: Option<SocketAddr>) -> Result<Option<TcpListener>, StartError> {
    match addr {
        Some(a) => bind(a).await.map(Some),
        None => Ok(None),
    }
}

async fn bind(addr: SocketAddr) -> Result<TcpListener, StartError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| StartError::Bind { addr, source })
}

fn local_addr(l: &TcpListener, fallback: SocketAddr) -> SocketAddr {
    l.local_addr().unwrap_or(fallback)
}

impl Running {
    /// Graceful shutdown: readiness turns 503, listeners stop accepting,
    /// idle keep-alive connections close, in-flight requests get up to
    /// `--drain-timeout` to finish.
    pub async fn shutdown(mut self) {
        self.readiness.set_draining();
        info!(open = self.tracker.open(), "draining");
        let _ = self.shutdown.send(true);
        // Wakes keep-alive connections parked waiting for their next request.
        self.proxies.cleanup().await;
        if !self.tracker.drained(self.settings.drain_timeout).await {
            warn!(
                open = self.tracker.open(),
                "drain timeout; closing remaining connections"
            );
        }
        let _ = self.admin_stop.send(true);
        for t in self.tasks.drain(..) {
            t.abort();
        }
        // The drained requests' access-log lines are still queued to the writers.
        let _ = tokio::task::spawn_blocking(|| {
            crate::telemetry::access_log::sink::SinkRegistry::global()
                .flush_all(std::time::Duration::from_secs(2))
        })
        .await;
        info!("stopped");
    }

    /// Serves until SIGTERM or SIGINT, then shuts down gracefully.
    pub async fn run_until_signal(self) {
        wait_for_signal().await;
        self.shutdown().await;
    }
}

/// Resolves on SIGTERM or SIGINT (Ctrl-C).
pub async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term =
        signal(SignalKind::terminate()).expect("installing a SIGTERM handler cannot fail");
    tokio::select! {
        _ = term.recv() => info!("SIGTERM received"),
        _ = tokio::signal::ctrl_c() => info!("SIGINT received"),
    }
}

/// The tracer for MeshConfig's tracing providers, with the span tags Istio
/// takes from the proxy's node metadata (`POD_NAME`, `INSTANCE_IP` as Istio
/// injects them), exporting through `transport`.
fn build_tracer(
    settings: &Settings,
    metrics: &Metrics,
    transport: Arc<dyn crate::telemetry::trace::CollectorTransport>,
) -> Result<Option<Arc<crate::telemetry::trace::Tracer>>, StartError> {
    use crate::telemetry::trace::{compile_mesh, ProxyIdentity, Tracer};
    let mesh = compile_mesh(&settings.mesh)?;
    let ns = &settings.namespace;
    let env = |name: &str, default: &str| {
        std::env::var(name)
            .ok()
            .filter(|v| !v.is_empty())
            .unwrap_or_else(|| default.to_string())
    };
    let pod = env("POD_NAME", &settings.gateway_name);
    let ip = env("INSTANCE_IP", "0.0.0.0");
    let proxy = ProxyIdentity {
        canonical_service: settings.gateway_name.clone(),
        namespace: ns.clone(),
        mesh_id: settings.trust_domain.clone(),
        node_id: format!(
            "waypoint~{ip}~{pod}.{ns}~{ns}.svc.{}",
            settings.cluster_domain
        ),
    };
    Ok(Some(Tracer::build(
        &mesh,
        proxy,
        metrics.registry(),
        settings.trace_export,
        transport,
    )))
}
