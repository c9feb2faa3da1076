//! The admin listener: `/stats/prometheus`, `/stats`, `/stats/live`,
//! `/clusters`, `/logging`, `/healthz/ready` (`/ready`), `/config_dump` and
//! the live admin page at `/`. It runs beside the proxy, on its own small
//! server, so a saturated proxy worker never hides the metrics. This file
//! routes requests; each endpoint is its own module.

mod clusters;
mod config_dump;
mod live;
mod logging;
mod page;
mod readiness;
mod stats_text;

pub use config_dump::config_dump;
pub use readiness::Readiness;

use std::convert::Infallible;
use std::net::SocketAddr;
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
use crate::routing::percent_decode;
use crate::store::SnapshotStore;
use crate::telemetry::Metrics;

/// What the admin endpoints read.
pub struct AdminState {
    pub store: Arc<SnapshotStore>,
    pub metrics: Arc<Metrics>,
    pub readiness: Arc<Readiness>,
    pub identity: Option<Arc<IdentityStore>>,
    /// The bound listeners, for the admin page and `?resource=listeners`.
    pub listeners: Vec<Listener>,
}

/// One bound listener of the process.
#[derive(Debug, Clone)]
pub struct Listener {
    /// `http`, `hbone`, `proxy-protocol`, `admin`, `metrics`, `health`.
    pub name: &'static str,
    pub addr: SocketAddr,
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
    let query = Query::parse(req.uri().query());
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
        "/stats" => stats(state, &query),
        "/stats/live" => json(StatusCode::OK, &live::render(state)),
        "/clusters" => match query.get("format") {
            Some("json") => json(StatusCode::OK, &clusters::json(&state.store)),
            _ => respond(StatusCode::OK, "text/plain", clusters::text(&state.store)),
        },
        "/logging" => logging::handle(req.method(), &query),
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
        "/config_dump" => match query.get("resource") {
            None => json(
                StatusCode::OK,
                &config_dump(&state.store, state.identity.as_deref()),
            ),
            Some(resource) => match config_dump::filtered(state, resource) {
                Ok(v) => json(StatusCode::OK, &v),
                Err(e) => respond(StatusCode::BAD_REQUEST, "text/plain", e),
            },
        },
        "/" => respond(
            StatusCode::OK,
            "text/html; charset=utf-8",
            page::PAGE.into(),
        ),
        _ => respond(
            StatusCode::NOT_FOUND,
            "text/plain",
            "admin endpoints: / /stats /stats/live /stats/prometheus /clusters /logging /ready /healthz/ready /config_dump\n".into(),
        ),
    }
}

/// `/stats`, with Envoy's `?filter=REGEX`.
fn stats(state: &AdminState, query: &Query) -> Response<Full<Bytes>> {
    let filter = match query.get("filter").map(regex::Regex::new).transpose() {
        Ok(f) => f,
        Err(e) => {
            return respond(
                StatusCode::BAD_REQUEST,
                "text/plain",
                format!("invalid filter regex: {e}\n"),
            )
        }
    };
    respond(
        StatusCode::OK,
        "text/plain",
        stats_text::render(state, filter.as_ref()),
    )
}

/// A request's query parameters, percent-decoded.
pub(crate) struct Query(Vec<(String, String)>);

impl Query {
    fn parse(query: Option<&str>) -> Self {
        let pairs = query
            .unwrap_or("")
            .split('&')
            .filter(|p| !p.is_empty())
            .map(|p| {
                let (k, v) = p.split_once('=').unwrap_or((p, ""));
                (percent_decode(k), percent_decode(v))
            })
            .collect();
        Query(pairs)
    }

    /// The first value of `name`.
    pub(crate) fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

fn json(status: StatusCode, value: &serde_json::Value) -> Response<Full<Bytes>> {
    respond(
        status,
        "application/json",
        serde_json::to_string_pretty(value).unwrap_or_default(),
    )
}

pub(crate) fn respond(
    status: StatusCode,
    content_type: &str,
    body: String,
) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header(http::header::CONTENT_TYPE, content_type)
        .body(Full::new(Bytes::from(body)))
        .expect("static response parts are valid")
}

/// Binds the admin listener (separately, so startup fails early on a taken port).
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await
}
