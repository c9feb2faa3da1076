//! Distributed tracing end to end: requests through an in-process waypoint
//! whose MeshConfig names an OTLP collector, and a test collector on the
//! published OTLP protos (gRPC and HTTP) that keeps what it receives.
//! Addresses: 127.0.150.0/24, 127.0.151.0/24 and 127.0.198.0/24.

mod common;

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use common::mesh::*;
use common::*;
use http_body_util::{BodyExt, Full};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use prost::Message;
use waypoint::config::MeshConfig;
use waypoint::echo::EchoServer;
use waypoint::server::Running;
use waypoint::telemetry::trace::ExportSettings;

/// A span as the collector got it, flattened.
#[derive(Debug, Clone)]
struct Got {
    service_name: String,
    trace_id: String,
    span_id: String,
    parent_span_id: String,
    kind: i32,
    status_code: i32,
    attributes: BTreeMap<String, String>,
}

#[derive(Clone, Default)]
struct Collector(Arc<Mutex<Vec<Got>>>);

impl Collector {
    fn keep(&self, req: ExportTraceServiceRequest) {
        let mut all = self.0.lock().unwrap();
        for rs in req.resource_spans {
            let service_name = rs
                .resource
                .iter()
                .flat_map(|r| r.attributes.iter())
                .find(|kv| kv.key == "service.name")
                .map(|kv| text(kv.value.as_ref()))
                .unwrap_or_default();
            for ss in rs.scope_spans {
                for s in ss.spans {
                    all.push(Got {
                        service_name: service_name.clone(),
                        trace_id: hex(&s.trace_id),
                        span_id: hex(&s.span_id),
                        parent_span_id: hex(&s.parent_span_id),
                        kind: s.kind,
                        status_code: s.status.map(|st| st.code).unwrap_or(0),
                        attributes: s
                            .attributes
                            .iter()
                            .map(|kv| (kv.key.clone(), text(kv.value.as_ref())))
                            .collect(),
                    });
                }
            }
        }
    }

    fn spans(&self) -> Vec<Got> {
        self.0.lock().unwrap().clone()
    }

    /// Waits (bounded) until the span with `x-request-id` arrives.
    async fn span_for(&self, request_id: &str) -> Got {
        eventually("span exported", async || {
            self.spans()
                .into_iter()
                .find(|s| {
                    s.attributes.get("guid:x-request-id").map(String::as_str) == Some(request_id)
                })
                .ok_or_else(|| format!("no span for {request_id} among {:?}", self.spans().len()))
        })
        .await
    }

    /// An OTLP/gRPC collector on `addr`.
    async fn grpc(addr: &str) -> (Self, SocketAddr) {
        let c = Collector::default();
        let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
        let bound = listener.local_addr().unwrap();
        let incoming = futures::stream::unfold(listener, |l| async move {
            let conn = l.accept().await.map(|(s, _)| s);
            Some((conn, l))
        });
        let svc = TraceServiceServer::new(c.clone());
        tokio::spawn(async move {
            let _ = tonic::transport::Server::builder()
                .serve_with_incoming(svc, incoming)
                .await;
        });
        (c, bound)
    }

    /// An OTLP/HTTP (protobuf) collector on `addr`, answering `path`.
    async fn http(addr: &str, path: &'static str) -> (Self, SocketAddr) {
        let c = Collector::default();
        let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
        let bound = listener.local_addr().unwrap();
        let keep = c.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let keep = keep.clone();
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(
                        move |req: http::Request<hyper::body::Incoming>| {
                            let keep = keep.clone();
                            async move {
                                let ok = req.uri().path() == path
                                    && req.headers().get("content-type").map(|v| v.as_bytes())
                                        == Some(b"application/x-protobuf");
                                let body = req
                                    .into_body()
                                    .collect()
                                    .await
                                    .map(|b| b.to_bytes())
                                    .unwrap_or_default();
                                let status = match ExportTraceServiceRequest::decode(body) {
                                    Ok(r) if ok => {
                                        keep.keep(r);
                                        200
                                    }
                                    _ => 400,
                                };
                                let out = ExportTraceServiceResponse::default().encode_to_vec();
                                Ok::<_, Infallible>(
                                    http::Response::builder()
                                        .status(status)
                                        .header("content-type", "application/x-protobuf")
                                        .body(Full::new(Bytes::from(out)))
                                        .unwrap(),
                                )
                            }
                        },
                    );
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        (c, bound)
    }
}

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        self.keep(request.into_inner());
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

fn text(v: Option<&opentelemetry_proto::tonic::common::v1::AnyValue>) -> String {
    match v.and_then(|v| v.value.as_ref()) {
        Some(Value::StringValue(s)) => s.clone(),
        Some(Value::IntValue(i)) => i.to_string(),
        Some(Value::BoolValue(b)) => b.to_string(),
        other => format!("{other:?}"),
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// A waypoint for Service `reviews` (backend on `backend`) whose MeshConfig
/// sends spans to `provider` (an `opentelemetry` block) at `sampling` percent.
async fn traced_waypoint(
    backend: &str,
    provider: &str,
    sampling: f64,
) -> (Running, EchoServer, ConfigDir) {
    let b = echo("reviews-v1", &format!("{backend}:9080")).await;
    let config = ConfigDir::new(&service("default", "reviews", 9080, 9080, &[backend]));
    let wp = start_traced(&config, provider, sampling).await;
    (wp, b, config)
}

/// Starts a waypoint on `config` whose MeshConfig sends spans to `provider`
/// (an `opentelemetry` block) at `sampling` percent.
async fn start_traced(config: &ConfigDir, provider: &str, sampling: f64) -> Running {
    let mut s = settings(config, "default");
    s.mesh = Arc::new(
        MeshConfig::parse(&format!(
            "defaultConfig: {{tracing: {{sampling: {sampling}}}}}\ndefaultProviders: {{tracing: [otel]}}\nextensionProviders:\n- name: otel\n  opentelemetry: {provider}\n"
        ))
        .unwrap(),
    );
    // Small batches, flushed quickly: the test waits for spans, never for time.
    s.trace_export = ExportSettings {
        max_queue: 64,
        max_batch: 8,
        interval: Duration::from_millis(20),
    };
    bounded("waypoint start", waypoint::server::start(s))
        .await
        .expect("waypoint starts")
}

const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER_SPAN: &str = "00f067aa0ba902b7";
const HOST: &str = "reviews.default.svc.cluster.local";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn otlp_grpc_spans_continue_the_callers_trace_with_istio_attributes() {
    let (collector, at) = Collector::grpc("127.0.150.2:0").await;
    let provider = format!("{{service: {}, port: {}}}", at.ip(), at.port());
    let (wp, _b, _c) = traced_waypoint("127.0.150.11", &provider, 100.0).await;
    let mut one = OneConnection::open(wp.http_addr.unwrap()).await;

    // With a W3C parent: same trace, the caller's span as parent, and the
    // backend sees the waypoint's span as its parent.
    let tp = format!("00-{TRACE}-{CALLER_SPAN}-01");
    let r = one
        .get(
            "reviews:9080",
            "/r?x=1",
            &[("traceparent", &tp), ("x-request-id", "with-parent")],
        )
        .await;
    assert_eq!(r.status, 200);
    let seen = r.echo().unwrap().headers["traceparent"].clone();
    let span = collector.span_for("with-parent").await;
    assert_eq!(span.trace_id, TRACE);
    assert_eq!(span.parent_span_id, CALLER_SPAN);
    assert_eq!(seen, format!("00-{TRACE}-{}-01", span.span_id));
    assert_eq!(span.service_name, HOST);
    assert_eq!(span.kind, 2, "SPAN_KIND_SERVER");
    for (k, v) in [
        ("component", "proxy"),
        ("http.method", "GET"),
        ("http.url", "http://reviews:9080/r?x=1"),
        ("http.status_code", "200"),
        (
            "upstream_cluster",
            "outbound|9080||reviews.default.svc.cluster.local",
        ),
        ("response_flags", "-"),
        ("istio.namespace", "default"),
        ("istio.canonical_service", "waypoint"),
        ("istio.mesh_id", "cluster.local"),
    ] {
        assert_eq!(
            span.attributes.get(k).map(String::as_str),
            Some(v),
            "{k}: {span:?}"
        );
    }
    assert!(
        span.attributes["node_id"].starts_with("waypoint~"),
        "{span:?}"
    );
    assert!(
        span.attributes["peer.address"].starts_with("127.0.0.1"),
        "{span:?}"
    );

    // Without one: a new trace, no parent, W3C to the backend.
    let r = one
        .get("reviews:9080", "/r", &[("x-request-id", "no-parent")])
        .await;
    let seen = r.echo().unwrap().headers["traceparent"].clone();
    let span = collector.span_for("no-parent").await;
    assert_eq!(span.parent_span_id, "");
    assert_eq!(seen, format!("00-{}-{}-01", span.trace_id, span.span_id));

    // B3 in, B3 out (and no W3C header invented).
    let r = one
        .get(
            "reviews:9080",
            "/r",
            &[
                ("x-b3-traceid", TRACE),
                ("x-b3-spanid", CALLER_SPAN),
                ("x-b3-sampled", "1"),
                ("x-request-id", "b3"),
            ],
        )
        .await;
    let h = r.echo().unwrap().headers;
    let span = collector.span_for("b3").await;
    assert_eq!(
        (span.trace_id.as_str(), span.parent_span_id.as_str()),
        (TRACE, CALLER_SPAN)
    );
    assert_eq!(h["x-b3-traceid"], TRACE);
    assert_eq!(h["x-b3-spanid"], span.span_id);
    assert_eq!(h["x-b3-parentspanid"], CALLER_SPAN);
    assert_eq!(h["x-b3-sampled"], "1");
    assert!(!h.contains_key("traceparent"), "{h:?}");

    // A 5xx is an error span (Envoy: `error=true`, status ERROR).
    let r = one
        .get(
            "reviews:9080",
            "/r",
            &[("x-request-id", "status-500"), ("x-echo-status", "500")],
        )
        .await;
    assert_eq!(r.status, 500);
    let span = collector.span_for("status-500").await;
    assert_eq!(span.status_code, 2, "STATUS_CODE_ERROR");
    assert_eq!(
        span.attributes.get("http.status_code").map(String::as_str),
        Some("500")
    );
    assert_eq!(
        span.attributes.get("error").map(String::as_str),
        Some("true")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn otlp_http_and_sampling_zero() {
    let (collector, at) = Collector::http("127.0.150.3:0", "/otlp/v1/traces").await;
    let provider = format!(
        "{{service: {}, port: {}, http: {{path: /otlp/v1/traces, timeout: 5s}}}}",
        at.ip(),
        at.port()
    );
    let (wp, _b, _c) = traced_waypoint("127.0.150.12", &provider, 0.0).await;
    let mut one = OneConnection::open(wp.http_addr.unwrap()).await;
    // At 0 %: no span, but the backend still gets the waypoint's context, unsampled.
    for i in 0..5 {
        let r = one
            .get(
                "reviews:9080",
                "/r",
                &[("x-request-id", &format!("unsampled-{i}"))],
            )
            .await;
        assert_eq!(r.status, 200);
        let tp = r.echo().unwrap().headers["traceparent"].clone();
        assert!(tp.starts_with("00-") && tp.ends_with("-00"), "{tp}");
    }
    // A caller's sampled decision wins: this one is exported, and it is the only one.
    let tp = format!("00-{TRACE}-{CALLER_SPAN}-01");
    one.get(
        "reviews:9080",
        "/r",
        &[("traceparent", &tp), ("x-request-id", "caller-sampled")],
    )
    .await;
    let span = collector.span_for("caller-sampled").await;
    assert_eq!(span.trace_id, TRACE);
    assert_eq!(span.service_name, HOST);
    assert_eq!(collector.spans().len(), 1, "{:?}", collector.spans());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_collector_that_is_down_fails_no_request_and_drops_are_counted() {
    // Nothing listens there: bind and drop to get a free port.
    let gone = tokio::net::TcpListener::bind("127.0.150.4:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap();
    let provider = format!(
        "{{service: {}, port: {}, grpc: {{timeout: 1s}}}}",
        gone.ip(),
        gone.port()
    );
    let (wp, _b, _c) = traced_waypoint("127.0.150.13", &provider, 100.0).await;
    let client = TestClient::new(wp.http_addr.unwrap());
    for _ in 0..20 {
        assert_eq!(client.get("reviews:9080", "/r").await.status, 200);
    }
    eventually("dropped spans counted", async || {
        let (_, text) = admin_get(&wp, "/stats/prometheus").await;
        let dropped: u64 = text
            .lines()
            .filter(|l| l.starts_with("waypoint_trace_spans_dropped_total{"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .sum();
        if dropped > 0 {
            Ok(())
        } else {
            Err(format!("no drops yet:\n{text}"))
        }
    })
    .await;
}

/// A collector that is a Service in an ambient namespace: the exporter dials
/// it through the waypoint's dialer, so its spans arrive over an HBONE
/// CONNECT to the collector pod's ztunnel with the waypoint's identity, for
/// both OTLP transports.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_reach_an_in_mesh_collector_over_hbone() {
    for (pod_ip, backend, grpc) in [
        ("127.0.151.21", "127.0.151.11", true),
        ("127.0.151.22", "127.0.151.12", false),
    ] {
        let (collector, at) = if grpc {
            Collector::grpc(&format!("{pod_ip}:0")).await
        } else {
            Collector::http(&format!("{pod_ip}:0"), "/v1/traces").await
        };
        let ztunnel = ZtunnelListener::bind(pod_ip).await;
        let _reviews = echo("reviews-v1", &format!("{backend}:9080")).await;
        let mut yaml = ambient_namespace("observability");
        yaml += &service(
            "observability",
            "otel-collector",
            4317,
            at.port(),
            &[pod_ip],
        );
        yaml += &pod("observability", "otel-collector-0", pod_ip);
        yaml += &service("shop", "reviews", 9080, 9080, &[backend]);
        let transport = if grpc { "" } else { ", http: {}" };
        let mesh_config = format!(
            "defaultProviders: {{tracing: [otel]}}\nextensionProviders:\n- name: otel\n  opentelemetry: {{service: observability/otel-collector.observability.svc.cluster.local, port: 4317{transport}}}\n"
        );
        let mesh = Mesh::start(&yaml, |s| {
            s.hbone_upstream_port = ztunnel.port();
            s.mesh = Arc::new(MeshConfig::parse(&mesh_config).unwrap());
            s.trace_export = ExportSettings {
                max_queue: 64,
                max_batch: 8,
                interval: Duration::from_millis(20),
            };
        })
        .await;
        let fake = mesh.serve_ztunnel(ztunnel);
        let r = TestClient::new(mesh.wp.http_addr.unwrap())
            .send(
                "GET",
                "reviews:9080",
                "/r",
                &[
                    ("x-request-id", "in-mesh"),
                    ("traceparent", &format!("00-{TRACE}-{CALLER_SPAN}-01")),
                ],
            )
            .await;
        assert_eq!(r.status, 200);
        let span = collector.span_for("in-mesh").await;
        assert_eq!(span.trace_id, TRACE, "grpc: {grpc}");
        assert!(
            fake.seen()
                .contains(&(WAYPOINT_ID.to_string(), format!("{pod_ip}:{}", at.port()))),
            "grpc: {grpc}: the export was not tunnelled to the collector pod: {:?}",
            fake.seen()
        );
        mesh.wp.shutdown().await;
    }
}

/// A Telemetry in `default` targeting Service `name` with `tracing` lines.
fn telemetry(name: &str, tracing: &str) -> String {
    format!("---\napiVersion: telemetry.istio.io/v1\nkind: Telemetry\nmetadata: {{name: {name}, namespace: default}}\nspec:\n  targetRefs: [{{kind: Service, group: \"\", name: {name}}}]\n  tracing:\n  - {tracing}\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn telemetry_sets_sampling_and_tags_per_service_and_a_reload_changes_them() {
    let (collector, at) = Collector::grpc("127.0.198.2:0").await;
    let _reviews = echo("reviews-v1", "127.0.198.11:9080").await;
    let _ratings = echo("ratings-v1", "127.0.198.12:9080").await;
    let services = service("default", "reviews", 9080, 9080, &["127.0.198.11"])
        + &service("default", "ratings", 9080, 9080, &["127.0.198.12"]);
    // MeshConfig samples 100 %; Telemetry turns `ratings` off and tags `reviews`.
    let first = services.clone()
        + &telemetry("ratings", "randomSamplingPercentage: 0")
        + &telemetry(
            "reviews",
            "customTags: {team: {literal: {value: bookinfo}}}",
        );
    let config = ConfigDir::new(&first);
    let provider = format!("{{service: {}, port: {}}}", at.ip(), at.port());
    let wp = start_traced(&config, &provider, 100.0).await;
    let mut one = OneConnection::open(wp.http_addr.unwrap()).await;

    // One connection, one export queue: spans leave in request order, so once
    // the later request's span is in, the earlier one would be too.
    let quiet = one
        .get("ratings:9080", "/", &[("x-request-id", "ratings-1")])
        .await;
    assert_eq!(quiet.status, 200);
    let r = one
        .get("reviews:9080", "/", &[("x-request-id", "reviews-1")])
        .await;
    assert_eq!(r.status, 200);
    let span = collector.span_for("reviews-1").await;
    assert_eq!(span.service_name, HOST);
    assert_eq!(
        span.attributes.get("team").map(String::as_str),
        Some("bookinfo")
    );
    let ids = |c: &Collector| -> Vec<String> {
        c.spans()
            .iter()
            .filter_map(|s| s.attributes.get("guid:x-request-id").cloned())
            .collect()
    };
    assert_eq!(ids(&collector), ["reviews-1"], "ratings is sampled at 0 %");

    // Reload: now `reviews` is off and `ratings` back to MeshConfig's 100 %.
    let mut attempts = wp.store.subscribe();
    config.replace(&(services + &telemetry("reviews", "randomSamplingPercentage: 0")));
    bounded("reload", attempts.wait_for(|a| *a >= 1))
        .await
        .expect("store alive");
    let r = one
        .get("reviews:9080", "/", &[("x-request-id", "reviews-2")])
        .await;
    assert_eq!(r.status, 200);
    let r = one
        .get("ratings:9080", "/", &[("x-request-id", "ratings-2")])
        .await;
    assert_eq!(r.status, 200);
    let span = collector.span_for("ratings-2").await;
    assert_eq!(span.service_name, "ratings.default.svc.cluster.local");
    assert_eq!(span.attributes.get("team"), None);
    assert_eq!(ids(&collector), ["reviews-1", "ratings-2"]);
}

/// Requests the waypoint answers before it knows their destination (an unknown host,
/// too many headers) are traced too, under the mesh-wide policy, as Envoy traces its
/// local replies: the span carries the status and the response flag.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_before_routing_are_traced() {
    let (collector, at) = Collector::grpc("127.0.150.5:0").await;
    let provider = format!("{{service: {}, port: {}}}", at.ip(), at.port());
    let (wp, _b, _c) = traced_waypoint("127.0.150.15", &provider, 100.0).await;
    let c = TestClient::new(wp.http_addr.unwrap());

    let r = c
        .send("GET", "nowhere:9080", "/", &[("x-request-id", "no-route")])
        .await;
    assert_eq!(r.status, 404);
    let span = collector.span_for("no-route").await;
    assert_eq!(span.attributes["http.status_code"], "404");
    assert_eq!(span.attributes["response_flags"], "NR");

    let mut many: Vec<(String, String)> = (0..120)
        .map(|i| (format!("x-h{i}"), "v".to_string()))
        .collect();
    many.push(("x-request-id".into(), "too-many-headers".into()));
    let headers: Vec<(&str, &str)> = many.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let r = c.send("GET", "reviews:9080", "/", &headers).await;
    assert_eq!(r.status, 431);
    let span = collector.span_for("too-many-headers").await;
    assert_eq!(span.attributes["http.status_code"], "431");
    assert_eq!(span.attributes["response_flags"], "DPE");
}

/// Tracing providers that come with the config (the `istio` ConfigMap, as `--kube`
/// reads it; here from a `--config` file) rather than `--mesh-config`: spans go to the
/// provider it names, and when a reload points the provider at another collector, the
/// next spans go there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_from_the_istio_configmap_is_followed_across_reloads() {
    let (first, at_first) = Collector::grpc("127.0.150.6:0").await;
    let (second, at_second) = Collector::grpc("127.0.150.7:0").await;
    let _b = echo("reviews-v1", "127.0.150.16:9080").await;
    let svc = service("default", "reviews", 9080, 9080, &["127.0.150.16"]);
    let mesh = |at: std::net::SocketAddr| {
        format!("---\napiVersion: v1\nkind: ConfigMap\nmetadata: {{name: istio, namespace: istio-system}}\ndata:\n  mesh: |\n    defaultConfig: {{tracing: {{sampling: 100}}}}\n    defaultProviders: {{tracing: [otel]}}\n    extensionProviders:\n    - name: otel\n      opentelemetry: {{service: \"{}\", port: {}}}\n", at.ip(), at.port())
    };
    let config = ConfigDir::new(&format!("{svc}{}", mesh(at_first)));
    let mut s = settings(&config, "default");
    s.trace_export = ExportSettings {
        max_queue: 64,
        max_batch: 8,
        interval: Duration::from_millis(20),
    };
    let wp = bounded("waypoint start", waypoint::server::start(s))
        .await
        .expect("waypoint starts");
    let c = TestClient::new(wp.http_addr.unwrap());
    let r = c
        .send("GET", "reviews:9080", "/", &[("x-request-id", "to-first")])
        .await;
    assert_eq!(r.status, 200);
    first.span_for("to-first").await;

    let mut attempts = wp.store.subscribe();
    config.replace(&format!("{svc}{}", mesh(at_second)));
    bounded("reload", attempts.wait_for(|n| *n >= 1))
        .await
        .expect("store alive");
    let r = c
        .send("GET", "reviews:9080", "/", &[("x-request-id", "to-second")])
        .await;
    assert_eq!(r.status, 200);
    second.span_for("to-second").await;
    assert!(first
        .spans()
        .iter()
        .all(|s| s.attributes["guid:x-request-id"] != "to-second"));
}
