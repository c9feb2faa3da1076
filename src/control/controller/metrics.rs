//! The controller's own metrics and readiness, and the two small HTTP
//! listeners that serve them (`/stats/prometheus`, `/healthz/ready`), the
//! same paths the waypoint pods use.

use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use prometheus::{Encoder, IntCounterVec, IntGauge, Opts, Registry, TextEncoder};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tracing::debug;

/// Counters by outcome, and whether the first watch sync is done.
pub struct ControllerMetrics {
    registry: Registry,
    reconciles: IntCounterVec,
    applies: IntCounterVec,
    ready_gauge: IntGauge,
    ready: AtomicBool,
}

impl Default for ControllerMetrics {
    fn default() -> Self {
        Self::new()
    }
}

impl ControllerMetrics {
    pub fn new() -> Self {
        let registry = Registry::new();
        let reconciles = IntCounterVec::new(
            Opts::new(
                "waypoint_controller_reconciles_total",
                "Reconcile passes by kind (Gateway, GatewayClass) and result (success, error).",
            ),
            &["kind", "result"],
        )
        .expect("static metric options are valid");
        let applies = IntCounterVec::new(
            Opts::new(
                "waypoint_controller_applies_total",
                "Server-side applies that succeeded, by kind of object.",
            ),
            &["kind"],
        )
        .expect("static metric options are valid");
        let ready_gauge = IntGauge::new(
            "waypoint_controller_ready",
            "1 once the first list of Gateways and GatewayClasses is in.",
        )
        .expect("static metric options are valid");
        for c in [
            Box::new(reconciles.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(applies.clone()),
            Box::new(ready_gauge.clone()),
        ] {
            registry
                .register(c)
                .expect("each metric is registered once");
        }
        Self {
            registry,
            reconciles,
            applies,
            ready_gauge,
            ready: AtomicBool::new(false),
        }
    }

    pub fn reconciled(&self, kind: &str, ok: bool) {
        let result = if ok { "success" } else { "error" };
        self.reconciles.with_label_values(&[kind, result]).inc();
    }

    pub fn applied(&self, kind: &str) {
        self.applies.with_label_values(&[kind]).inc();
    }

    pub fn set_ready(&self) {
        self.ready.store(true, Ordering::Release);
        self.ready_gauge.set(1);
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    pub fn encode(&self) -> String {
        let mut out = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut out)
            .expect("text encoding into a Vec cannot fail");
        String::from_utf8(out).expect("the text encoder writes UTF-8")
    }
}

/// Which HTTP path a controller listener serves (one per listener).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServedPath {
    /// `/healthz/ready`: 503 until the first sync, then 200.
    Health,
    /// `/stats/prometheus`.
    Metrics,
}

/// Serves the `served` path on `listener` until `shutdown` turns true. The listener
/// is bound before the controller connects, so probes get TCP from startup.
pub async fn serve(
    listener: TcpListener,
    served: ServedPath,
    metrics: Arc<ControllerMetrics>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let (stream, _) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => { debug!(error = %e, "accept failed"); continue; }
            },
            _ = shutdown.wait_for(|stop| *stop) => return,
        };
        let metrics = metrics.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| {
                let metrics = metrics.clone();
                async move { Ok::<_, Infallible>(handle(served, &metrics, &req)) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

fn handle(
    served: ServedPath,
    metrics: &ControllerMetrics,
    req: &Request<Incoming>,
) -> Response<Full<Bytes>> {
    match (served, req.uri().path()) {
        (ServedPath::Health, "/healthz/ready") if metrics.is_ready() => {
            respond(StatusCode::OK, "text/plain", "ready\n".into())
        }
        (ServedPath::Health, "/healthz/ready") => respond(
            StatusCode::SERVICE_UNAVAILABLE,
            "text/plain",
            "not ready: waiting for the first sync with the API server\n".into(),
        ),
        (ServedPath::Metrics, "/stats/prometheus") => respond(
            StatusCode::OK,
            "text/plain; version=0.0.4",
            metrics.encode(),
        ),
        (ServedPath::Health, _) => not_found("/healthz/ready"),
        (ServedPath::Metrics, _) => not_found("/stats/prometheus"),
    }
}

fn not_found(path: &str) -> Response<Full<Bytes>> {
    respond(
        StatusCode::NOT_FOUND,
        "text/plain",
        format!("this listener serves {path} only\n"),
    )
}

fn respond(status: StatusCode, content_type: &str, body: String) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header(http::header::CONTENT_TYPE, content_type)
        .body(Full::new(Bytes::from(body)))
        .expect("static response parts are valid")
}
