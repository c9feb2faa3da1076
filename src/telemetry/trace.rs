//! Distributed tracing as Istio's waypoint (Envoy) does it: one server span
//! per HTTP request, the caller's W3C/B3 context continued, the waypoint's
//! span propagated upstream, Istio's span attributes, OTLP export off the
//! request path. The proxy calls [`Tracer::start`] once the destination is
//! known, [`ActiveSpan::inject`] on the upstream request and
//! [`Tracer::finish`] in the logging phase.
//!
//! Which provider and sampling apply is a per-destination-Service
//! [`TracingPolicy`], compiled with the config (MeshConfig's default under
//! Telemetry resources, `telemetry_api`) and passed in from the request's
//! snapshot: the tracer holds no per-Service state, so a reload takes effect
//! on the next request with no second swap to keep in step.

pub mod config;
pub mod export;
pub mod policy;
pub mod propagation;

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::SystemTime;

use opentelemetry::trace::{
    SpanContext, SpanId, SpanKind, Status, TraceFlags, TraceId, TraceState,
};
use opentelemetry::{InstrumentationScope, KeyValue};
use opentelemetry_sdk::trace::{SpanData, SpanEvents, SpanLinks};
use pingora_http::RequestHeader;
use prometheus::{IntCounterVec, Opts, Registry};

pub use config::{compile_mesh, MeshTracing, TraceConfigError};
pub use export::{CollectorTransport, ExportSettings, Protocol};
pub use policy::{CustomTag, ProviderExport, TracingPolicy};

use config::DEFAULT_MAX_TAG_LENGTH;

use export::{ExportQueue, Finished};
use propagation::{Formats, Outgoing};

/// Who the waypoint is, for the span tags Istio takes from the proxy's node
/// metadata (`istio.canonical_service`, `istio.namespace`, `istio.mesh_id`, `node_id`).
#[derive(Debug, Clone, Default)]
pub struct ProxyIdentity {
    pub canonical_service: String,
    pub namespace: String,
    pub mesh_id: String,
    pub node_id: String,
}

/// The tracing runtime: export queues and the proxy's own tags.
///
/// Queues are started per provider the first time a policy names it, and
/// replaced when a reload changes the provider's export settings: the
/// providers come with each snapshot's policies (MeshConfig from
/// `--mesh-config`, a `--config` file or, with `--kube`, the `istio`
/// ConfigMap), not from the process's start.
pub struct Tracer {
    queues: RwLock<HashMap<Arc<str>, ProviderQueue>>,
    /// Starts a provider's export task; `None` for a test tracer.
    factory: Option<QueueFactory>,
    proxy: ProxyIdentity,
    scope: InstrumentationScope,
}

/// One provider's queue and the settings it was started with.
struct ProviderQueue {
    /// `None`: a test tracer's queue, used whatever the policy says.
    export: Option<Arc<ProviderExport>>,
    queue: ExportQueue,
}

struct QueueFactory {
    settings: ExportSettings,
    dropped: IntCounterVec,
    transport: Arc<dyn CollectorTransport>,
}

impl Tracer {
    /// The tracer of this process: export tasks start on the current runtime
    /// as policies name providers, reaching collectors through `transport`;
    /// registers `waypoint_trace_spans_dropped_total` in `registry`.
    pub fn build(
        mesh: &MeshTracing,
        mut proxy: ProxyIdentity,
        registry: &Registry,
        settings: ExportSettings,
        transport: Arc<dyn CollectorTransport>,
    ) -> Arc<Tracer> {
        let dropped = IntCounterVec::new(
            Opts::new(
                "waypoint_trace_spans_dropped_total",
                "Spans not delivered to the tracing collector, by reason (queue_full: the export queue was full; export_failed: the collector refused or was unreachable).",
            ),
            &["reason"],
        )
        .expect("static metric definition is valid");
        // Two proxies of one process share the registry; the first registers.
        let _ = registry.register(Box::new(dropped.clone()));
        dropped.with_label_values(&["queue_full"]);
        dropped.with_label_values(&["export_failed"]);
        if let Some(id) = &mesh.mesh_id {
            proxy.mesh_id = id.clone();
        }
        Arc::new(Tracer {
            queues: RwLock::new(HashMap::new()),
            factory: Some(QueueFactory {
                settings,
                dropped,
                transport,
            }),
            proxy,
            scope: InstrumentationScope::builder("waypoint").build(),
        })
    }

    /// The provider's `maxTagLength` once its queue runs with `export`;
    /// `None` when nothing can export for it.
    fn ensure_queue(&self, name: &Arc<str>, export: Option<&Arc<ProviderExport>>) -> Option<usize> {
        let current = |q: &ProviderQueue| match (&q.export, export) {
            (None, _) => Some(DEFAULT_MAX_TAG_LENGTH),
            (Some(have), Some(want)) if Arc::ptr_eq(have, want) || have == want => {
                Some(have.max_tag_length)
            }
            _ => None,
        };
        if let Some(max) = self
            .queues
            .read()
            .expect("not poisoned")
            .get(name)
            .and_then(current)
        {
            return Some(max);
        }
        let (export, factory) = (export?, self.factory.as_ref()?);
        let mut queues = self.queues.write().expect("not poisoned");
        if let Some(max) = queues.get(name).and_then(current) {
            return Some(max);
        }
        // New or changed: the old queue (if any) is dropped, and its task
        // exports what it holds and ends.
        let queue = ExportQueue::start(
            export.destination.clone(),
            factory.settings,
            factory.dropped.clone(),
            factory.transport.clone(),
        );
        queues.insert(
            name.clone(),
            ProviderQueue {
                export: Some(export.clone()),
                queue,
            },
        );
        Some(export.max_tag_length)
    }

    /// Starts the span of a request under its destination's `policy`: reads
    /// the caller's trace context, decides sampling (the caller's decision
    /// wins, else `sampling_percent`), and picks the waypoint's span id.
    /// `None` when the policy traces nothing (no provider).
    pub fn start(&self, req: &RequestHeader, policy: &TracingPolicy) -> Option<ActiveSpan> {
        let provider = policy.provider.as_ref()?;
        let max_tag_length = self.ensure_queue(provider, policy.export.as_ref())?;
        let incoming = propagation::extract(&req.headers);
        let sampled = incoming
            .sampled
            .unwrap_or_else(|| sample(policy.sampling_percent));
        let (trace_id, parent) = match incoming.parent {
            Some((trace, span)) => (trace, Some(span)),
            None => (TraceId::from(nonzero_u128()), None),
        };
        let tags = if sampled && !policy.disable_span_reporting {
            policy
                .custom_tags
                .iter()
                .filter_map(|(name, tag)| {
                    tag.value(&req.headers)
                        .map(|v| KeyValue::new(name.to_string(), v.to_string()))
                })
                .collect()
        } else {
            Vec::new()
        };
        Some(ActiveSpan {
            out: Outgoing {
                trace_id,
                span_id: SpanId::from(nonzero_u64()),
                parent,
                sampled,
                formats: incoming.formats,
            },
            report: sampled && !policy.disable_span_reporting,
            provider: provider.clone(),
            max_tag_length,
            start: SystemTime::now(),
            tags,
        })
    }

    /// Ends the span with what the request came to and queues it for export
    /// (when sampled and reporting is on). Never waits.
    pub fn finish(&self, span: ActiveSpan, facts: &SpanFacts) {
        if !span.report {
            return;
        }
        let max = span.max_tag_length;
        let cut = |v: &str| -> String {
            let mut end = v.len().min(max);
            while !v.is_char_boundary(end) {
                end -= 1;
            }
            v[..end].to_string()
        };
        let error = facts.status >= 500 || facts.status == 0;
        let mut attributes = vec![
            KeyValue::new(
                "istio.canonical_service",
                self.proxy.canonical_service.clone(),
            ),
            KeyValue::new("istio.namespace", self.proxy.namespace.clone()),
            KeyValue::new("istio.mesh_id", self.proxy.mesh_id.clone()),
            KeyValue::new("node_id", self.proxy.node_id.clone()),
            KeyValue::new("component", "proxy"),
            KeyValue::new("http.method", facts.method.to_string()),
            KeyValue::new("http.url", cut(&facts.url)),
            KeyValue::new("http.protocol", facts.protocol),
            KeyValue::new("http.status_code", facts.status.to_string()),
            KeyValue::new("upstream_cluster", facts.upstream_cluster.clone()),
            KeyValue::new("upstream_cluster.name", facts.upstream_cluster.clone()),
            KeyValue::new("peer.address", facts.peer_address.clone()),
            KeyValue::new("guid:x-request-id", facts.request_id.to_string()),
            KeyValue::new("response_flags", facts.response_flags.clone()),
            KeyValue::new("request_size", facts.request_size as i64),
            KeyValue::new("response_size", facts.response_size as i64),
        ];
        if let Some(user_agent) = facts.user_agent {
            attributes.push(KeyValue::new("user_agent", cut(user_agent)));
        }
        if error {
            attributes.push(KeyValue::new("error", "true"));
        }
        attributes.extend(span.tags.into_iter().map(|kv| {
            let v = cut(kv.value.as_str().as_ref());
            KeyValue::new(kv.key, v)
        }));
        let out = span.out;
        let data = SpanData {
            span_context: SpanContext::new(
                out.trace_id,
                out.span_id,
                TraceFlags::SAMPLED,
                false,
                TraceState::NONE,
            ),
            parent_span_id: out.parent.unwrap_or(SpanId::INVALID),
            parent_span_is_remote: out.parent.is_some(),
            span_kind: SpanKind::Server,
            name: Cow::Owned(facts.operation.clone()),
            start_time: span.start,
            end_time: SystemTime::now(),
            attributes,
            dropped_attributes_count: 0,
            events: SpanEvents::default(),
            links: SpanLinks::default(),
            status: if error {
                Status::error("")
            } else {
                Status::Unset
            },
            instrumentation_scope: self.scope.clone(),
        };
        let finished = Finished {
            service_name: facts.service_name.clone(),
            span: data,
        };
        if let Some(q) = self
            .queues
            .read()
            .expect("not poisoned")
            .get(&span.provider)
        {
            q.queue.submit(finished);
        }
    }
}

#[cfg(any(test, feature = "testing"))]
impl Tracer {
    /// A tracer with the one provider `provider`, whose finished spans go to
    /// a queue of `max_queue` that the caller reads instead of an exporter:
    /// the request path's cost without a collector (benches/tracing.rs).
    /// Full-queue drops count in `dropped` under `queue_full`.
    pub fn for_test(
        provider: &str,
        proxy: ProxyIdentity,
        max_queue: usize,
        dropped: IntCounterVec,
    ) -> (Tracer, tokio::sync::mpsc::Receiver<Finished>) {
        let (queue, rx) = ExportQueue::for_test(max_queue, dropped);
        let tracer = Tracer {
            queues: RwLock::new(HashMap::from([(
                Arc::from(provider),
                ProviderQueue {
                    export: None,
                    queue,
                },
            )])),
            factory: None,
            proxy,
            scope: InstrumentationScope::builder("waypoint").build(),
        };
        (tracer, rx)
    }
}

/// One request's span while it is in flight (kept in the request context).
#[derive(Debug)]
pub struct ActiveSpan {
    out: Outgoing,
    /// Sampled and `disableSpanReporting` off: exported when finished.
    report: bool,
    provider: Arc<str>,
    /// The provider's `maxTagLength` when the span started.
    max_tag_length: usize,
    start: SystemTime,
    /// Custom tags, read from the request headers at the start.
    tags: Vec<KeyValue>,
}

impl ActiveSpan {
    /// Writes the waypoint's span as the parent the upstream sees, in the
    /// formats the request came with (W3C when none).
    pub fn inject(&self, req: &mut RequestHeader) {
        propagation::inject(&self.out, req);
    }

    /// The trace id (for logs).
    pub fn trace_id(&self) -> TraceId {
        self.out.trace_id
    }

    /// The waypoint's span id.
    pub fn span_id(&self) -> SpanId {
        self.out.span_id
    }

    /// Whether the trace is sampled.
    pub fn sampled(&self) -> bool {
        self.out.sampled
    }

    /// The formats the request came with.
    pub fn formats(&self) -> Formats {
        self.out.formats
    }
}

/// What a finished request came to, for its span.
pub struct SpanFacts<'a> {
    /// `service.name`: the destination Service's hostname, as Istio ≥ 1.28
    /// reports waypoint spans (istio/istio#57024).
    pub service_name: Arc<str>,
    /// Envoy's operation name for a waypoint route: `<host>:<port>/*`.
    pub operation: String,
    pub method: &'a str,
    pub url: String,
    pub protocol: &'static str,
    /// 0 when no response was written.
    pub status: u16,
    pub upstream_cluster: String,
    pub peer_address: String,
    pub request_id: &'a str,
    pub response_flags: String,
    pub request_size: u64,
    pub response_size: u64,
    pub user_agent: Option<&'a str>,
}

fn sample(percent: f64) -> bool {
    if percent >= 100.0 {
        return true;
    }
    if percent <= 0.0 {
        return false;
    }
    // 10^6 buckets: Envoy's sampling resolution (a fractional percent per million).
    (rand::random::<u32>() % 1_000_000) < (percent * 10_000.0) as u32
}

fn nonzero_u128() -> u128 {
    loop {
        let v = rand::random::<u128>();
        if v != 0 {
            return v;
        }
    }
}

fn nonzero_u64() -> u64 {
    loop {
        let v = rand::random::<u64>();
        if v != 0 {
            return v;
        }
    }
}

#[cfg(test)]
mod tests;
