//! The admin listener: `/stats/prometheus`, `/healthz/ready` and
//! `/config_dump`. It runs beside the proxy, on its own small server, so a
//! saturated proxy worker never hides the metrics.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tracing::{debug, info};

use crate::identity::IdentityStore;
use crate::store::SnapshotStore;
use crate::telemetry::access_log::format_start_time;
use crate::telemetry::Metrics;

/// Readiness as Kubernetes probes see it: ready once the config is loaded and
/// every listener is bound, not ready again while draining.
#[derive(Debug, Default)]
pub struct Readiness {
    listeners_bound: AtomicBool,
    draining: AtomicBool,
    /// Set while a config source has not delivered its first full config
    /// (`--kube` before the first sync).
    waiting_for_config: AtomicBool,
}

impl Readiness {
    pub fn set_listening(&self) {
        self.listeners_bound.store(true, Ordering::Release);
    }
    pub fn set_draining(&self) {
        self.draining.store(true, Ordering::Release);
    }
    /// Not ready until [`Readiness::set_config_loaded`].
    pub fn set_waiting_for_config(&self) {
        self.waiting_for_config.store(true, Ordering::Release);
    }
    pub fn set_config_loaded(&self) {
        self.waiting_for_config.store(false, Ordering::Release);
    }
    pub fn is_ready(&self) -> bool {
        self.listeners_bound.load(Ordering::Acquire)
            && !self.draining.load(Ordering::Acquire)
            && !self.waiting_for_config.load(Ordering::Acquire)
    }
}

/// What the admin endpoints read.
pub struct AdminState {
    pub store: Arc<SnapshotStore>,
    pub metrics: Arc<Metrics>,
    pub readiness: Arc<Readiness>,
    pub identity: Option<Arc<IdentityStore>>,
}

/// One path of the admin listener, served alone on its own port
/// (`--metrics-listen`, `--health-listen`) so a pod can expose it without
/// exposing `/config_dump`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServedPath {
    /// `/stats/prometheus` only.
    Metrics,
    /// `/healthz/ready` only.
    Health,
}

/// Serves the admin endpoints on `listener` until `shutdown` turns true.
pub async fn serve(listener: TcpListener, state: Arc<AdminState>, shutdown: watch::Receiver<bool>) {
    info!(addr = ?listener.local_addr().ok(), "admin listening");
    serve_endpoints(listener, state, None, shutdown).await
}

/// Serves only `path` on `listener` until `shutdown` turns true.
pub async fn serve_only(
    listener: TcpListener,
    state: Arc<AdminState>,
    path: ServedPath,
    shutdown: watch::Receiver<bool>,
) {
    info!(addr = ?listener.local_addr().ok(), endpoint = ?path, "listening");
    serve_endpoints(listener, state, Some(path), shutdown).await
}

async fn serve_endpoints(
    listener: TcpListener,
    state: Arc<AdminState>,
    only: Option<ServedPath>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let (stream, _) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => { debug!(error = %e, "admin accept failed"); continue; }
            },
            _ = shutdown.changed() => return,
        };
        let state = state.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| {
                let state = state.clone();
                async move { Ok::<_, Infallible>(handle(&state, only, req)) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

fn handle(
    state: &AdminState,
    only: Option<ServedPath>,
    req: Request<Incoming>,
) -> Response<Full<Bytes>> {
    let path = req.uri().path();
    let allowed = match only {
        None => true,
        Some(ServedPath::Metrics) => path == "/stats/prometheus",
        Some(ServedPath::Health) => path == "/healthz/ready",
    };
    if !allowed {
        return respond(
            StatusCode::NOT_FOUND,
            "text/plain",
            match only {
                Some(ServedPath::Metrics) => "this listener serves /stats/prometheus only\n",
                Some(ServedPath::Health) => "this listener serves /healthz/ready only\n",
                None => "",
            }
            .into(),
        );
    }
    match path {
        "/stats/prometheus" | "/metrics" => {
            if let Some(id) = &state.identity {
                state.metrics.set_cert_expiry(id.seconds_to_expiry());
            }
            respond(
                StatusCode::OK,
                "text/plain; version=0.0.4",
                state.metrics.encode(),
            )
        }
        "/healthz/ready" | "/ready" => {
            if state.readiness.is_ready() {
                respond(StatusCode::OK, "text/plain", "ready\n".into())
            } else {
                respond(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "text/plain",
                    "not ready\n".into(),
                )
            }
        }
        "/config_dump" => respond(
            StatusCode::OK,
            "application/json",
            serde_json::to_string_pretty(&config_dump(&state.store, state.identity.as_deref()))
                .unwrap_or_default(),
        ),
        _ => respond(
            StatusCode::NOT_FOUND,
            "text/plain",
            "admin endpoints: /stats/prometheus /healthz/ready /config_dump\n".into(),
        ),
    }
}

fn respond(status: StatusCode, content_type: &str, body: String) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header(http::header::CONTENT_TYPE, content_type)
        .body(Full::new(Bytes::from(body)))
        .expect("static response parts are valid")
}

/// The JSON behind `/config_dump`: generation, last error, loaded objects and
/// the compiled routes per Service port.
pub fn config_dump(store: &SnapshotStore, identity: Option<&IdentityStore>) -> serde_json::Value {
    let published = store.load();
    let resources = published.snapshot.resources();
    let counts: serde_json::Map<String, serde_json::Value> = resources
        .counts()
        .into_iter()
        .map(|(kind, n)| (kind.to_string(), n.into()))
        .collect();
    let last_error = store.last_error().map(|e| {
        serde_json::json!({
            "at": format_start_time(e.at),
            "errors": e.errors.0.iter().map(|e| e.to_string()).collect::<Vec<_>>(),
        })
    });
    serde_json::json!({
        "generation": published.generation,
        "loaded_at": format_start_time(published.loaded_at),
        "last_error": last_error,
        "source": store.source().describe(),
        "objects": counts,
        "identity": identity.map(|id| serde_json::json!({
            "spiffe_id": id.identity().to_string(),
            "seconds_to_expiry": id.seconds_to_expiry(),
        })),
        "snapshot": published.snapshot.dump(),
        "authorization": published.authz.dump(),
    })
}

/// Binds the admin listener (separately, so startup fails early on a taken port).
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await
}
