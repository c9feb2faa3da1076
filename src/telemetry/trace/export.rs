//! Getting finished spans to a collector off the request path: one bounded
//! queue and one export task per provider. The request path only
//! `try_send`s; a full queue drops the span and counts it, so a collector
//! that is down or slow never slows a request.
//!
//! The SDK's `BatchSpanProcessor` keeps its drop count private and gives
//! every span one `Resource`; we need the count as a metric and
//! `service.name` per destination Service, so the batching is ours and the
//! OTLP encoding is `opentelemetry-otlp`'s.
//!
//! What it does not own: connections. Its gRPC channel and HTTP client come
//! from a [`CollectorTransport`] the process builds on the one dialer, so a
//! collector in the mesh is reached over HBONE like any other upstream.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use opentelemetry::KeyValue;
use opentelemetry_http::{Bytes, HttpClient, HttpError, Request, Response};
use opentelemetry_otlp::{WithExportConfig, WithHttpConfig, WithTonicConfig};
use opentelemetry_sdk::trace::{SpanData, SpanExporter as _};
use opentelemetry_sdk::Resource;
use prometheus::IntCounterVec;
use tokio::sync::mpsc;
use tonic::transport::Channel;
use tracing::{debug, warn};

/// How the exporter reaches collectors: implemented above this layer, on the
/// one dialer (`upstream::dial`), because the telemetry layer opens no
/// connections of its own.
pub trait CollectorTransport: Send + Sync {
    /// A gRPC channel to `endpoint` (`http://host:port`) that connects on
    /// first use, each call bounded by `timeout`.
    fn grpc_channel(
        &self,
        endpoint: &str,
        timeout: Duration,
    ) -> Result<Channel, tonic::transport::Error>;

    /// An HTTP client for OTLP/HTTP, each request bounded by `timeout`.
    fn http_client(&self, timeout: Duration) -> Arc<dyn HttpClient>;
}

/// Why a provider's exporter could not be built (its spans are then dropped
/// and counted).
#[derive(Debug, thiserror::Error)]
pub enum ExportBuildError {
    #[error("grpc.initialMetadata {key}: not valid gRPC metadata")]
    Metadata { key: String },
    #[error("collector endpoint {endpoint}: {source}")]
    Endpoint {
        endpoint: String,
        #[source]
        source: tonic::transport::Error,
    },
    #[error(transparent)]
    Otlp(#[from] opentelemetry_otlp::ExporterBuildError),
}

/// How spans are batched. Defaults follow the OpenTelemetry SDK's.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ExportSettings {
    /// Spans waiting for export; beyond it new spans are dropped (2048).
    pub max_queue: usize,
    /// Spans per export call (512).
    pub max_batch: usize,
    /// Longest a span waits for its batch to fill (5 s).
    pub interval: Duration,
}

impl Default for ExportSettings {
    fn default() -> Self {
        Self {
            max_queue: 2048,
            max_batch: 512,
            interval: Duration::from_secs(5),
        }
    }
}

/// Where and how one provider's spans are sent.
#[derive(Debug, Clone, PartialEq)]
pub struct Destination {
    /// `http://host:port` (gRPC) or `http://host:port/path` (HTTP).
    pub endpoint: String,
    pub protocol: Protocol,
    pub timeout: Duration,
    /// HTTP headers or gRPC metadata for every export.
    pub headers: Vec<(String, String)>,
    /// Resource attributes beside `service.name` (`resourceDetectors.environment`).
    pub resource: Vec<KeyValue>,
}

/// OTLP transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Grpc,
    HttpProtobuf,
}

/// A finished span and the `service.name` it reports under.
pub struct Finished {
    pub service_name: Arc<str>,
    pub span: SpanData,
}

/// The request path's end of one provider's queue.
#[derive(Clone)]
pub struct ExportQueue {
    tx: mpsc::Sender<Finished>,
    dropped: IntCounterVec,
}

impl ExportQueue {
    /// Starts the export task for `dest` on the current tokio runtime; it
    /// reaches the collector through `transport`.
    pub fn start(
        dest: Destination,
        settings: ExportSettings,
        dropped: IntCounterVec,
        transport: Arc<dyn CollectorTransport>,
    ) -> Self {
        let (tx, rx) = mpsc::channel(settings.max_queue.max(1));
        tokio::spawn(run(dest, settings, rx, dropped.clone(), transport));
        Self { tx, dropped }
    }

    /// Queues a span, or drops and counts it when the queue is full. Never waits.
    pub fn submit(&self, finished: Finished) {
        if self.tx.try_send(finished).is_err() {
            self.dropped.with_label_values(&["queue_full"]).inc();
        }
    }
}

async fn run(
    dest: Destination,
    settings: ExportSettings,
    mut rx: mpsc::Receiver<Finished>,
    dropped: IntCounterVec,
    transport: Arc<dyn CollectorTransport>,
) {
    let mut exporter = match build(&dest, transport.as_ref()) {
        Ok(e) => e,
        Err(e) => {
            // Every span of this provider is dropped (and counted) from here on.
            warn!(endpoint = %dest.endpoint, error = %e, "tracing: cannot build the OTLP exporter");
            while rx.recv().await.is_some() {
                dropped.with_label_values(&["export_failed"]).inc();
            }
            return;
        }
    };
    let mut resources: HashMap<Arc<str>, Resource> = HashMap::new();
    let mut batch = Vec::with_capacity(settings.max_batch);
    loop {
        // Phase 1: wait for a first span, then fill the batch until it is
        // full or the interval passes.
        let Some(first) = rx.recv().await else {
            return;
        };
        batch.push(first);
        let deadline = tokio::time::sleep(settings.interval);
        tokio::pin!(deadline);
        while batch.len() < settings.max_batch {
            tokio::select! {
                next = rx.recv() => match next {
                    Some(f) => batch.push(f),
                    None => break,
                },
                _ = &mut deadline => break,
            }
        }
        // Phase 2: one export per service.name, since OTLP's resource is per batch.
        let mut by_service: HashMap<Arc<str>, Vec<SpanData>> = HashMap::new();
        for f in batch.drain(..) {
            by_service.entry(f.service_name).or_default().push(f.span);
        }
        for (service, spans) in by_service {
            let resource = resources
                .entry(service.clone())
                .or_insert_with(|| {
                    Resource::builder_empty()
                        .with_service_name(service.to_string())
                        .with_attributes(dest.resource.iter().cloned())
                        .build()
                })
                .clone();
            exporter.set_resource(&resource);
            let n = spans.len() as u64;
            if let Err(e) = exporter.export(spans).await {
                debug!(endpoint = %dest.endpoint, error = %e, spans = n, "tracing: export failed");
                dropped.with_label_values(&["export_failed"]).inc_by(n);
            }
        }
    }
}

fn build(
    dest: &Destination,
    transport: &dyn CollectorTransport,
) -> Result<opentelemetry_otlp::SpanExporter, ExportBuildError> {
    let built = match dest.protocol {
        Protocol::Grpc => {
            let mut metadata = tonic::metadata::MetadataMap::new();
            for (k, v) in &dest.headers {
                let invalid = || ExportBuildError::Metadata { key: k.clone() };
                let key = tonic::metadata::MetadataKey::from_bytes(k.as_bytes())
                    .map_err(|_| invalid())?;
                metadata.insert(key, v.parse().map_err(|_| invalid())?);
            }
            let channel = transport
                .grpc_channel(&dest.endpoint, dest.timeout)
                .map_err(|source| ExportBuildError::Endpoint {
                    endpoint: dest.endpoint.clone(),
                    source,
                })?;
            // The crate's docs: a custom channel's timeout must match the exporter's.
            opentelemetry_otlp::SpanExporter::builder()
                .with_tonic()
                .with_channel(channel)
                .with_timeout(dest.timeout)
                .with_metadata(metadata)
                .build()
        }
        Protocol::HttpProtobuf => opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_http_client(SharedClient(transport.http_client(dest.timeout)))
            .with_endpoint(dest.endpoint.clone())
            .with_timeout(dest.timeout)
            .with_headers(dest.headers.iter().cloned().collect())
            .build(),
    };
    Ok(built?)
}

/// `with_http_client` takes a concrete client; the transport hands out a
/// shared one.
#[derive(Debug)]
struct SharedClient(Arc<dyn HttpClient>);

#[async_trait]
impl HttpClient for SharedClient {
    async fn send_bytes(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        self.0.send_bytes(request).await
    }
}

#[cfg(any(test, feature = "testing"))]
impl ExportQueue {
    /// A queue whose spans the test (or bench) reads instead of a collector.
    pub fn for_test(max_queue: usize, dropped: IntCounterVec) -> (Self, mpsc::Receiver<Finished>) {
        let (tx, rx) = mpsc::channel(max_queue);
        (Self { tx, dropped }, rx)
    }
}
