//! Tracing cost per request on the request path, as the proxy pays it:
//! `Tracer::start` (extract the caller's W3C or B3 context, decide sampling,
//! pick the span id, read custom tags), `ActiveSpan::inject` into the
//! upstream request, then what `observe::finish_trace` does (build the
//! span's facts, which it does for unsampled spans too) and `Tracer::finish`
//! (Istio's attributes, the `SpanData`, the queue's `try_send`).
//!
//! The export queue is drained by a thread that drops every span, so only
//! the request path is measured, never OTLP encoding or a collector. Not
//! measured: the destination's policy lookup in the snapshot
//! (`published.telemetry.find`), a hash lookup the request path pays with
//! tracing on.
//!
//! Rows: tracing off (no tracer: what every request pays without an
//! `opentelemetry` provider), then 100 %, 1 % and 0 % sampling with
//! - `w3c`: a `traceparent` whose sampled flag is set at the same rate (the
//!   first hop decided, as in a mesh where every proxy samples alike; the
//!   caller's decision wins over the waypoint's percentage);
//! - `b3`: `x-b3-traceid` / `x-b3-spanid` with no decision, so the waypoint
//!   samples at the percentage.

use std::hint::black_box;
use std::net::SocketAddr;
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, Criterion};
use pingora_http::RequestHeader;
use prometheus::{IntCounterVec, Opts};
use waypoint::telemetry::trace::{ProxyIdentity, SpanFacts, Tracer, TracingPolicy};

const SERVICE: &str = "reviews.default.svc.cluster.local";

/// A downstream request as a client sends it, with `extra` trace headers.
fn request(extra: &[(&'static str, &str)]) -> RequestHeader {
    let mut req = RequestHeader::build("GET", b"/reviews/0?page=1", None).expect("bench request");
    for (k, v) in [
        ("host", "reviews:9080"),
        ("user-agent", "curl/8.5.0"),
        ("accept", "*/*"),
        ("x-request-id", "3c5a2b9e-9a4f-4e55-8e7d-6a1f0c2b7d11"),
    ]
    .into_iter()
    .chain(extra.iter().copied())
    {
        req.insert_header(k, v).expect("bench header");
    }
    req
}

/// The request path's tracing work for one request; `tracer` is `None` when
/// tracing is off.
fn traced_request(
    tracer: Option<&Tracer>,
    policy: &TracingPolicy,
    downstream: &RequestHeader,
    upstream: &mut RequestHeader,
    client: SocketAddr,
) {
    // `Waypoint::start_trace`: one branch without a tracer.
    let Some(tracer) = tracer else {
        return;
    };
    let span = tracer.start(downstream, policy);
    // `prepare_upstream_request`.
    if let Some(span) = &span {
        span.inject(upstream);
    }
    // `observe::finish_trace`: the facts as it builds them, then `finish`.
    let Some(span) = span else {
        return;
    };
    let host = downstream
        .headers
        .get("host")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let path = downstream
        .uri
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/");
    let facts = SpanFacts {
        service_name: Arc::from(SERVICE),
        operation: format!("{SERVICE}:{}/*", 9080),
        method: downstream.method.as_str(),
        url: format!("http://{host}{path}"),
        protocol: "HTTP/1.1",
        status: 200,
        upstream_cluster: "outbound|9080||reviews.default.svc.cluster.local".to_string(),
        peer_address: client.to_string(),
        request_id: "3c5a2b9e-9a4f-4e55-8e7d-6a1f0c2b7d11",
        response_flags: "-".to_string(),
        request_size: 0,
        response_size: 1024,
        user_agent: downstream
            .headers
            .get(http::header::USER_AGENT)
            .and_then(|v| v.to_str().ok()),
    };
    tracer.finish(span, &facts);
}

fn policy(percent: f64) -> TracingPolicy {
    TracingPolicy {
        provider: Some(Arc::from("otel")),
        export: None,
        sampling_percent: percent,
        custom_tags: Vec::new(),
        disable_span_reporting: false,
    }
}

fn bench_tracing(c: &mut Criterion) {
    let dropped = IntCounterVec::new(Opts::new("dropped", "bench drops"), &["reason"])
        .expect("bench counter");
    let proxy = ProxyIdentity {
        canonical_service: "waypoint".into(),
        namespace: "default".into(),
        mesh_id: "cluster.local".into(),
        node_id: "waypoint~10.0.0.1~waypoint-0.default~default.svc.cluster.local".into(),
    };
    // A queue deep enough that the draining thread keeps it from filling.
    let (tracer, mut rx) = Tracer::for_test("otel", proxy, 1 << 16, dropped.clone());
    let drain = std::thread::spawn(move || while rx.blocking_recv().is_some() {});
    let client: SocketAddr = "10.0.0.7:51234".parse().expect("bench address");

    let sampled_w3c = request(&[(
        "traceparent",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
    )]);
    let unsampled_w3c = request(&[(
        "traceparent",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00",
    )]);
    let b3 = request(&[
        ("x-b3-traceid", "4bf92f3577b34da6a3ce929d0e0e4736"),
        ("x-b3-spanid", "00f067aa0ba902b7"),
    ]);
    let mut upstream = sampled_w3c.clone();

    let mut group = c.benchmark_group("tracing per request");
    let unused = policy(100.0);
    group.bench_function("off (no tracer)", |b| {
        b.iter(|| {
            traced_request(
                black_box(None),
                &unused,
                black_box(&sampled_w3c),
                &mut upstream,
                client,
            )
        })
    });
    for percent in [100.0, 1.0, 0.0] {
        let policy = policy(percent);
        // The caller sampled every (100 / percent)th request: 1 % is 1 in 100.
        let every = if percent > 0.0 {
            (100.0 / percent) as u64
        } else {
            0
        };
        group.bench_function(format!("{percent} %/w3c"), |b| {
            let mut n = 0u64;
            b.iter(|| {
                n += 1;
                let downstream = if every > 0 && n.is_multiple_of(every) {
                    &sampled_w3c
                } else {
                    &unsampled_w3c
                };
                traced_request(
                    Some(&tracer),
                    &policy,
                    black_box(downstream),
                    &mut upstream,
                    client,
                )
            })
        });
        group.bench_function(format!("{percent} %/b3"), |b| {
            b.iter(|| {
                traced_request(
                    Some(&tracer),
                    &policy,
                    black_box(&b3),
                    &mut upstream,
                    client,
                )
            })
        });
    }
    group.finish();

    // The spans went to the drain, not into drops: the figures are the request path's.
    let lost = dropped.with_label_values(&["queue_full"]).get();
    eprintln!("spans dropped on a full queue during the bench: {lost}");
    drop(tracer);
    drain.join().expect("the drain thread ends with the queue");
}

criterion_group!(benches, bench_tracing);
criterion_main!(benches);
