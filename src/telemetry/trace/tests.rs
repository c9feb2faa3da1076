use super::*;

/// A tracer and the policy the request's snapshot would hand it.
struct Bound {
    tracer: Tracer,
    policy: TracingPolicy,
}

impl Bound {
    fn start(&self, req: &RequestHeader) -> Option<ActiveSpan> {
        self.tracer.start(req, &self.policy)
    }

    fn finish(&self, span: ActiveSpan, facts: &SpanFacts) {
        self.tracer.finish(span, facts)
    }
}

fn tracer(
    policy: TracingPolicy,
    max_queue: usize,
) -> (Bound, tokio::sync::mpsc::Receiver<Finished>, IntCounterVec) {
    let dropped = IntCounterVec::new(Opts::new("d", "d"), &["reason"]).unwrap();
    let proxy = ProxyIdentity {
        canonical_service: "waypoint".into(),
        namespace: "default".into(),
        mesh_id: "cluster.local".into(),
        node_id: "waypoint~10.0.0.1~waypoint-0.default~default.svc.cluster.local".into(),
    };
    let (tracer, rx) = Tracer::for_test("otel", proxy, max_queue, dropped.clone());
    (Bound { tracer, policy }, rx, dropped)
}

fn on(percent: f64) -> TracingPolicy {
    TracingPolicy {
        provider: Some(Arc::from("otel")),
        export: None,
        sampling_percent: percent,
        custom_tags: Vec::new(),
        disable_span_reporting: false,
    }
}

fn facts(status: u16) -> SpanFacts<'static> {
    SpanFacts {
        service_name: Arc::from("reviews.default.svc.cluster.local"),
        operation: "reviews.default.svc.cluster.local:9080/*".into(),
        method: "GET",
        url: "http://reviews:9080/r".into(),
        protocol: "HTTP/1.1",
        status,
        upstream_cluster: "outbound|9080||reviews.default.svc.cluster.local".into(),
        peer_address: "10.0.0.9".into(),
        request_id: "req-1",
        response_flags: "-".into(),
        request_size: 10,
        response_size: 20,
        user_agent: None,
    }
}

fn attr(span: &SpanData, key: &str) -> Option<String> {
    span.attributes
        .iter()
        .find(|kv| kv.key.as_str() == key)
        .map(|kv| kv.value.as_str().to_string())
}

fn request(headers: &[(&str, &str)]) -> RequestHeader {
    let mut req = RequestHeader::build("GET", b"/r", None).unwrap();
    for (k, v) in headers {
        req.insert_header(k.to_string(), *v).unwrap();
    }
    req
}

#[test]
fn custom_tags_land_on_the_span() {
    let mut policy = on(100.0);
    policy.custom_tags = vec![
        (Arc::from("team"), CustomTag::Literal(Arc::from("payments"))),
        (
            Arc::from("user"),
            CustomTag::Header {
                name: http::HeaderName::from_static("x-user"),
                default: Some(Arc::from("anonymous")),
            },
        ),
        (
            Arc::from("zone"),
            CustomTag::environment("WAYPOINT_TRACE_TEST_UNSET", Some("z1")),
        ),
    ];
    let (tracer, mut rx, _) = tracer(policy, 8);
    let span = tracer.start(&request(&[("x-user", "alice")])).unwrap();
    tracer.finish(span, &facts(200));
    let got = rx.try_recv().unwrap();
    assert_eq!(&*got.service_name, "reviews.default.svc.cluster.local");
    assert_eq!(attr(&got.span, "team").as_deref(), Some("payments"));
    assert_eq!(attr(&got.span, "user").as_deref(), Some("alice"));
    assert_eq!(attr(&got.span, "zone").as_deref(), Some("z1"));
    assert_eq!(attr(&got.span, "component").as_deref(), Some("proxy"));
    assert_eq!(
        attr(&got.span, "guid:x-request-id").as_deref(),
        Some("req-1")
    );
    assert_eq!(got.span.span_kind, SpanKind::Server);
    assert_eq!(got.span.status, Status::Unset);
}

#[test]
fn disable_span_reporting_propagates_but_exports_nothing() {
    let mut policy = on(100.0);
    policy.disable_span_reporting = true;
    let (tracer, mut rx, _) = tracer(policy, 8);
    let span = tracer.start(&request(&[])).unwrap();
    let mut up = request(&[]);
    span.inject(&mut up);
    assert!(up
        .headers
        .get("traceparent")
        .unwrap()
        .to_str()
        .unwrap()
        .ends_with("-01"));
    tracer.finish(span, &facts(200));
    assert!(rx.try_recv().is_err());
}

#[test]
fn the_callers_sampling_decision_wins_over_the_percentage() {
    let (tracer, mut rx, _) = tracer(on(0.0), 8);
    let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let span = tracer.start(&request(&[("traceparent", tp)])).unwrap();
    assert!(span.sampled());
    assert_eq!(
        span.trace_id(),
        TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736").unwrap()
    );
    tracer.finish(span, &facts(503));
    let got = rx.try_recv().unwrap();
    assert_eq!(
        got.span.parent_span_id,
        SpanId::from_hex("00f067aa0ba902b7").unwrap()
    );
    assert!(matches!(got.span.status, Status::Error { .. }));
    assert_eq!(attr(&got.span, "error").as_deref(), Some("true"));

    let (tracer, _, _) = tracer_pair(on(100.0));
    let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00";
    assert!(!tracer
        .start(&request(&[("traceparent", tp)]))
        .unwrap()
        .sampled());
    assert!(!tracer_pair(on(0.0))
        .0
        .start(&request(&[]))
        .unwrap()
        .sampled());
}

fn tracer_pair(
    policy: TracingPolicy,
) -> (Bound, tokio::sync::mpsc::Receiver<Finished>, IntCounterVec) {
    tracer(policy, 8)
}

#[test]
fn a_full_queue_drops_and_counts() {
    let (tracer, _rx, dropped) = tracer(on(100.0), 1);
    for _ in 0..3 {
        let span = tracer.start(&request(&[])).unwrap();
        tracer.finish(span, &facts(200));
    }
    assert_eq!(dropped.with_label_values(&["queue_full"]).get(), 2);
}

#[test]
fn a_policy_without_a_known_provider_is_not_traced() {
    let (bound, _, _) = tracer(on(100.0), 8);
    assert!(bound.start(&request(&[])).is_some());
    assert!(bound
        .tracer
        .start(&request(&[]), &TracingPolicy::off())
        .is_none());
    let mut elsewhere = on(100.0);
    elsewhere.provider = Some(Arc::from("not-built"));
    assert!(bound.tracer.start(&request(&[]), &elsewhere).is_none());
}
