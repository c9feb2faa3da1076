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
use crate::config::watch::ConfigWatcher;
use crate::config::ConfigErrors;
use crate::proxy::listener::{self, ConnectionTracker, Proxies};
use crate::proxy::Waypoint;
use crate::settings::Settings;
use crate::store::SnapshotStore;
use crate::telemetry::Metrics;

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
}

/// A running waypoint. Drop it or call [`Running::shutdown`] to stop.
pub struct Running {
    /// Bound address of the plain HTTP listener, when enabled.
    pub http_addr: Option<SocketAddr>,
    /// Bound address of the admin listener.
    pub admin_addr: SocketAddr,
    pub store: Arc<SnapshotStore>,
    pub metrics: Arc<Metrics>,
    readiness: Arc<Readiness>,
    settings: Arc<Settings>,
    proxies: Proxies,
    tracker: Arc<ConnectionTracker>,
    shutdown: watch::Sender<bool>,
    admin_stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    _watcher: Option<ConfigWatcher>,
}

/// Loads the config, binds every listener and starts serving on the current
/// tokio runtime. Readiness turns 200 once this returns.
pub async fn start(settings: Settings) -> Result<Running, StartError> {
    let settings = Arc::new(settings);
    let metrics = Arc::new(Metrics::new());
    let store = Arc::new(SnapshotStore::open(settings.clone(), metrics.clone())?);
    info!(generation = 1, path = %settings.config_path.display(), "config loaded");

    let readiness = Arc::new(Readiness::default());
    let (shutdown, shutdown_rx) = watch::channel(false);

    let admin_listener = bind(settings.admin_listen).await?;
    let admin_addr = local_addr(&admin_listener, settings.admin_listen);
    let http_listener = match settings.http_listen {
        Some(addr) => Some(bind(addr).await?),
        None => None,
    };
    let http_addr = http_listener
        .as_ref()
        .zip(settings.http_listen)
        .map(|(l, a)| local_addr(l, a));

    let proxies = Proxies {
        http1: Arc::new(build_proxy(
            store.clone(),
            metrics.clone(),
            settings.clone(),
            false,
        )),
        h2c: Arc::new(build_proxy(
            store.clone(),
            metrics.clone(),
            settings.clone(),
            true,
        )),
    };
    let tracker = Arc::new(ConnectionTracker::default());
    let mut tasks = Vec::new();
    let admin_state = Arc::new(AdminState {
        store: store.clone(),
        metrics: metrics.clone(),
        readiness: readiness.clone(),
    });
    // The admin server outlives the drain so probes can see readiness turn 503.
    let (admin_stop, admin_stop_rx) = watch::channel(false);
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
            shutdown_rx.clone(),
        )));
    }

    let watcher = {
        let store = store.clone();
        ConfigWatcher::start(&settings.config_path, move || {
            let _ = store.reload();
        })
        .map_err(|source| StartError::Watch {
            path: settings.config_path.display().to_string(),
            source,
        })?
    };

    readiness.set_listening();
    Ok(Running {
        http_addr,
        admin_addr,
        store,
        metrics,
        readiness,
        settings,
        proxies,
        tracker,
        shutdown,
        admin_stop,
        tasks,
        _watcher: Some(watcher),
    })
}

fn build_proxy(
    store: Arc<SnapshotStore>,
    metrics: Arc<Metrics>,
    settings: Arc<Settings>,
    h2c: bool,
) -> HttpProxy<Waypoint> {
    let conf = Arc::new(ServerConf::default());
    let mut proxy = pingora_proxy::http_proxy(&conf, Waypoint::new(store, metrics, settings));
    let mut options = HttpServerOptions::default();
    options.h2c = h2c;
    proxy.server_options = Some(options);
    proxy
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
