//! gRPC through the waypoint, end to end: h2c from the client (plain
//! listener, and inside HBONE), HTTP/2 to the backend, every kind of call
//! streaming both ways, trailers, `grpc-status` in the metrics, and the
//! gRPC answers the waypoint writes itself.
//!
//! Addresses: this file uses 127.0.100.0/24 only (waypoint on
//! 127.0.100.1, fake pods on 127.0.100.10+); helpers in `common/grpc.rs`.

mod common;

use common::grpc::*;
use common::{bounded, requests_eventually};
use futures::StreamExt;
use tokio::sync::mpsc;
use tonic::{Code, Request};
use waypoint::test_helpers::grpc::{EchoClient, EchoRequest};

#[tokio::test]
async fn every_kind_of_call_streams_through_the_plain_listener() {
    let _b = backend("grpc-a", "127.0.100.10:9080").await;
    let (_c, wp) = start(&grpc_service("echo", &["127.0.100.10"], 9080)).await;
    let mut c = client(&wp, "echo.shop:9090").await;

    // Unary: the reply and the backend's response header come back.
    let resp = bounded("unary", c.unary(Request::new(EchoRequest::new("hi"))))
        .await
        .expect("unary OK");
    assert_eq!(resp.get_ref().message, "hi");
    assert_eq!(resp.get_ref().backend, "grpc-a");
    assert_eq!(resp.metadata().get("x-backend").unwrap(), "grpc-a");

    // Server streaming, ending in a status carried by trailers after the data.
    let req = EchoRequest {
        replies: 3,
        fail_code: Code::Aborted as i32,
        ..EchoRequest::new("s")
    };
    let mut stream = bounded("server stream", c.server_stream(Request::new(req)))
        .await
        .expect("stream opens")
        .into_inner();
    let mut got = Vec::new();
    let status = loop {
        match bounded("next reply", stream.message()).await {
            Ok(Some(m)) => got.push(m.message),
            Ok(None) => panic!("stream ended without the status the backend sent"),
            Err(status) => break status,
        }
    };
    assert_eq!(got, ["s-0", "s-1", "s-2"]);
    assert_eq!(
        status.code(),
        Code::Aborted,
        "grpc-status trailer passed through"
    );
    assert_eq!(
        status.metadata().get("x-trailer").unwrap(),
        "grpc-a",
        "custom trailer passed through"
    );

    // Client streaming.
    let msgs = futures::stream::iter(["a", "b", "c"].map(EchoRequest::new));
    let resp = bounded("client stream", c.client_stream(Request::new(msgs)))
        .await
        .expect("client stream OK");
    assert_eq!(resp.get_ref().message, "a,b,c");

    // Bidi in lock step: the next message is sent only once the previous
    // reply arrived, so a proxy buffering either direction hangs here.
    let (tx, rx) = mpsc::channel(1);
    let mut replies = bounded("bidi opens", c.bidi(Request::new(receiver_stream(rx))))
        .await
        .expect("bidi opens")
        .into_inner();
    for i in 0..5 {
        let text = format!("m{i}");
        tx.send(EchoRequest::new(&text)).await.unwrap();
        let reply = bounded("bidi reply", replies.next())
            .await
            .expect("a reply per message")
            .expect("reply OK");
        assert_eq!(reply.message, text);
    }
    drop(tx);
    assert!(bounded("bidi end", replies.next()).await.is_none());

    // Istio's labels: request_protocol grpc, grpc_response_status from the trailers.
    requests_eventually(
        &wp,
        &[
            "request_protocol=\"grpc\"",
            "grpc_response_status=\"10\"",
            "response_code=\"200\"",
        ],
        1,
    )
    .await;
    requests_eventually(
        &wp,
        &["request_protocol=\"grpc\"", "grpc_response_status=\"0\""],
        3,
    )
    .await;
}

#[tokio::test]
async fn unavailable_is_retried_per_retry_on() {
    let b = backend("grpc-r", "127.0.100.20:9080").await;
    let mut yaml = grpc_service("retry", &["127.0.100.20"], 9080);
    yaml += &vs(
        "retry",
        "  - retries: {attempts: 2, retryOn: unavailable}\n    route: [{destination: {host: retry}}]\n",
    );
    let (_c, wp) = start(&yaml).await;
    let mut c = client(&wp, "retry.shop:9090").await;

    // UNAVAILABLE (a trailers-only answer) is retried: the client sees the retry's OK.
    b.fail_next(1, Code::Unavailable);
    let resp = bounded("unary", c.unary(Request::new(EchoRequest::new("again"))))
        .await
        .expect("the retry answered");
    assert_eq!(resp.get_ref().message, "again");
    assert_eq!(b.calls(), 2, "one failed attempt, one retry");

    // INTERNAL is not in retryOn: the client gets it as the backend said it.
    b.fail_next(1, Code::Internal);
    let status = bounded("unary", c.unary(Request::new(EchoRequest::new("x"))))
        .await
        .expect_err("INTERNAL passed through");
    assert_eq!(status.code(), Code::Internal);
    assert_eq!(b.calls(), 3, "not retried");

    // Retries spent: the last answer, flagged URX.
    b.fail_next(3, Code::Unavailable);
    let status = bounded("unary", c.unary(Request::new(EchoRequest::new("x"))))
        .await
        .expect_err("retries exhausted");
    assert_eq!(status.code(), Code::Unavailable);
    assert_eq!(b.calls(), 6, "first attempt and two retries");
    requests_eventually(
        &wp,
        &["grpc_response_status=\"14\"", "response_flags=\"URX\""],
        1,
    )
    .await;
}

#[tokio::test]
async fn internal_is_retried_when_retry_on_names_it() {
    let b = backend("grpc-i", "127.0.100.21:9080").await;
    let mut yaml = grpc_service("internal", &["127.0.100.21"], 9080);
    yaml += &vs(
        "internal",
        "  - retries: {attempts: 1, retryOn: internal}\n    route: [{destination: {host: internal}}]\n",
    );
    let (_c, wp) = start(&yaml).await;
    let mut c = client(&wp, "internal.shop:9090").await;
    b.fail_next(1, Code::Internal);
    let resp = bounded("unary", c.unary(Request::new(EchoRequest::new("ok"))))
        .await
        .expect("the retry answered");
    assert_eq!(resp.get_ref().backend, "grpc-i");
    assert_eq!(b.calls(), 2);
}

#[tokio::test]
async fn grpc_timeout_is_the_deadline_and_ends_in_deadline_exceeded() {
    let b = backend("grpc-t", "127.0.100.22:9080").await;
    let mut yaml = grpc_service("slow", &["127.0.100.22"], 9080);
    yaml += &grpc_service("capped", &["127.0.100.22"], 9080);
    yaml += &vs(
        "capped",
        "  - timeout: 1s\n    route: [{destination: {host: capped}}]\n",
    );
    let (_c, wp) = start(&yaml).await;

    // No route timeout: the call's own grpc-timeout is the deadline. Sent
    // raw: tonic's client would enforce the same header itself and win.
    let stall = EchoRequest {
        stall: true,
        ..EchoRequest::new("wait")
    };
    let (status, headers) = raw_unary(&wp, "slow.shop:9090", &stall, "200m").await;
    assert_eq!(status, 200, "trailers-only");
    assert_eq!(
        headers.get("grpc-status").unwrap(),
        "4",
        "DEADLINE_EXCEEDED"
    );
    assert_eq!(
        headers.get("grpc-message").unwrap(),
        "upstream request timeout"
    );
    b.wait_for_calls(1).await;
    requests_eventually(
        &wp,
        &[
            "request_protocol=\"grpc\"",
            "grpc_response_status=\"4\"",
            "response_code=\"200\"",
            "response_flags=\"UT\"",
        ],
        1,
    )
    .await;

    // The backend is told the time left, never more than the route's timeout.
    let mut c = client(&wp, "capped.shop:9090").await;
    let resp = bounded(
        "capped call",
        c.unary(with_header(
            Request::new(EchoRequest::new("t")),
            "grpc-timeout",
            "10S",
        )),
    )
    .await
    .expect("answered in time");
    let seen = waypoint::policy::deadline::parse_grpc_timeout(&resp.get_ref().grpc_timeout)
        .expect("the backend got a grpc-timeout");
    assert!(
        seen <= std::time::Duration::from_secs(1) && !seen.is_zero(),
        "grpc-timeout forwarded as the time left under the 1s route timeout: {seen:?}"
    );
}

#[tokio::test]
async fn a_grpc_status_fault_abort_is_a_trailers_only_answer() {
    let b = backend("grpc-f", "127.0.100.23:9080").await;
    let mut yaml = grpc_service("faulty", &["127.0.100.23"], 9080);
    yaml += &vs(
        "faulty",
        "  - fault: {abort: {grpcStatus: RESOURCE_EXHAUSTED, percentage: {value: 100}}}\n    route: [{destination: {host: faulty}}]\n",
    );
    let (_c, wp) = start(&yaml).await;
    let mut c = client(&wp, "faulty.shop:9090").await;
    let status = bounded("aborted call", c.unary(Request::new(EchoRequest::new("x"))))
        .await
        .expect_err("aborted");
    assert_eq!(status.code(), Code::ResourceExhausted);
    assert_eq!(status.message(), "fault filter abort");
    assert_eq!(b.calls(), 0, "never reached the backend");
    requests_eventually(
        &wp,
        &["grpc_response_status=\"8\"", "response_flags=\"FI\""],
        1,
    )
    .await;
}

#[tokio::test]
async fn the_waypoints_own_answers_to_grpc_calls_are_grpc() {
    let mut yaml = grpc_service("empty", &[], 9080);
    yaml += &grpc_service("down", &["127.0.100.24"], 9080);
    let (_c, wp) = start(&yaml).await;

    // Unknown host: 404 NR → UNIMPLEMENTED.
    let mut c = client(&wp, "nowhere.shop:9090").await;
    let status = bounded("unknown host", c.unary(Request::new(EchoRequest::new("x"))))
        .await
        .expect_err("no such Service");
    assert_eq!(status.code(), Code::Unimplemented, "{status:?}");

    // No endpoints: 503 UH → UNAVAILABLE.
    let mut c = client(&wp, "empty.shop:9090").await;
    let status = bounded("no endpoints", c.unary(Request::new(EchoRequest::new("x"))))
        .await
        .expect_err("no healthy upstream");
    assert_eq!(status.code(), Code::Unavailable);
    assert_eq!(status.message(), "no healthy upstream");

    // Nothing listens: 503 UF → UNAVAILABLE, after Istio's default retries.
    let mut c = client(&wp, "down.shop:9090").await;
    let status = bounded("refused", c.unary(Request::new(EchoRequest::new("x"))))
        .await
        .expect_err("connect failure");
    assert_eq!(status.code(), Code::Unavailable);
    requests_eventually(
        &wp,
        &["grpc_response_status=\"14\"", "response_flags=\"UF,URX\""],
        1,
    )
    .await;
}

/// A GRPCRoute on Service `echo` port 9090: `Unary` split 90/10 between
/// `echo-v1` and `echo-v2` with header filters; every other method of
/// `test.Echo` to `echo-v2`.
const SPLIT_ROUTE: &str = r#"---
apiVersion: gateway.networking.k8s.io/v1
kind: GRPCRoute
metadata: {name: echo-split, namespace: shop}
spec:
  parentRefs: [{group: "", kind: Service, name: echo, port: 9090}]
  rules:
  - matches: [{method: {service: test.Echo, method: Unary}}]
    filters:
    - type: RequestHeaderModifier
      requestHeaderModifier: {set: [{name: x-route, value: grpc-split}]}
    - type: ResponseHeaderModifier
      responseHeaderModifier: {add: [{name: x-waypoint-route, value: echo-split}]}
    backendRefs:
    - {name: echo-v1, port: 9090, weight: 90}
    - {name: echo-v2, port: 9090, weight: 10}
  - matches: [{method: {service: test.Echo}}]
    backendRefs: [{name: echo-v2, port: 9090}]
"#;

fn split_mesh(front_vip: &str, v1: &str, v2: &str) -> String {
    let mut yaml = grpc_service_vip("echo", front_vip, &[]);
    yaml += &grpc_service("echo-v1", &[v1], 9080);
    yaml += &grpc_service("echo-v2", &[v2], 9080);
    yaml += SPLIT_ROUTE;
    yaml
}

/// 200 `Unary` calls on `c`; answers per backend, checking the filters on each.
async fn unary_split(c: &mut EchoClient) -> std::collections::BTreeMap<String, usize> {
    let mut tally = std::collections::BTreeMap::new();
    for _ in 0..200 {
        let req = EchoRequest {
            echo_header: "x-route".into(),
            ..EchoRequest::new("split")
        };
        let resp = bounded("unary", c.unary(Request::new(req)))
            .await
            .expect("unary OK");
        assert_eq!(
            resp.get_ref().header_value,
            "grpc-split",
            "RequestHeaderModifier"
        );
        assert_eq!(
            resp.metadata().get("x-waypoint-route").unwrap(),
            "echo-split",
            "ResponseHeaderModifier"
        );
        *tally.entry(resp.get_ref().backend.clone()).or_insert(0) += 1;
    }
    tally
}

fn assert_90_10(tally: &std::collections::BTreeMap<String, usize>) {
    let v1 = tally.get("echo-v1").copied().unwrap_or(0);
    let v2 = tally.get("echo-v2").copied().unwrap_or(0);
    assert_eq!(v1 + v2, 200, "{tally:?}");
    // Binomial(200, 0.1): mean 20, sd 4.2; 5..=40 is beyond 3.5 sd both ways.
    assert!((5..=40).contains(&v2), "90/10 split: {tally:?}");
}

#[tokio::test]
async fn a_grpc_route_splits_by_method_on_the_plain_listener() {
    let _v1 = backend("echo-v1", "127.0.100.30:9080").await;
    let _v2 = backend("echo-v2", "127.0.100.31:9080").await;
    let (_c, wp) = start(&split_mesh("10.96.100.1", "127.0.100.30", "127.0.100.31")).await;
    let mut c = client(&wp, "echo.shop:9090").await;

    assert_90_10(&unary_split(&mut c).await);

    // Another method of the service: the second rule, all to v2.
    let req = EchoRequest {
        replies: 2,
        ..EchoRequest::new("s")
    };
    let mut stream = bounded("server stream", c.server_stream(Request::new(req)))
        .await
        .expect("stream opens")
        .into_inner();
    while let Some(m) = bounded("reply", stream.message()).await.expect("OK") {
        assert_eq!(m.backend, "echo-v2");
    }
    let (_, dump) = common::admin_get(&wp, "/config_dump").await;
    assert!(
        dump.contains("\"GRPCRoute\": 1") || dump.contains("\"GRPCRoute\":1"),
        "{dump}"
    );
}

#[tokio::test]
async fn grpc_inside_hbone_routes_and_streams() {
    let _v1 = backend("echo-v1", "127.0.100.40:9080").await;
    let _v2 = backend("echo-v2", "127.0.100.41:9080").await;
    let mesh = common::mesh::Mesh::start(
        &split_mesh("10.96.100.2", "127.0.100.40", "127.0.100.41"),
        |s| {
            s.http_listen = Some(format!("{WAYPOINT_IP}:0").parse().unwrap());
            s.admin_listen = format!("{WAYPOINT_IP}:0").parse().unwrap();
            s.hbone_listen = format!("{WAYPOINT_IP}:0").parse().unwrap();
        },
    )
    .await;
    let connector = HboneConnector {
        client: mesh.client(),
        waypoint: mesh.hbone(),
        target: "10.96.100.2:9090".to_string(),
    };
    let channel = bounded(
        "gRPC over HBONE",
        tonic::transport::Endpoint::from_static("http://echo.shop:9090")
            .connect_with_connector(connector),
    )
    .await
    .expect("h2c inside the CONNECT stream");
    let mut c = EchoClient::new(channel);

    let tally = unary_split(&mut c).await;
    assert_90_10(&tally);

    // Bidi in lock step through the tunnel, routed by the second rule.
    let (tx, rx) = mpsc::channel(1);
    let mut replies = bounded("bidi opens", c.bidi(Request::new(receiver_stream(rx))))
        .await
        .expect("bidi opens")
        .into_inner();
    for i in 0..3 {
        let text = format!("b{i}");
        tx.send(EchoRequest::new(&text)).await.unwrap();
        let reply = bounded("bidi reply", replies.next())
            .await
            .expect("a reply per message")
            .expect("reply OK");
        assert_eq!(
            (reply.message.as_str(), reply.backend.as_str()),
            (text.as_str(), "echo-v2")
        );
    }
    drop(tx);
    assert!(bounded("bidi end", replies.next()).await.is_none());

    requests_eventually(
        &mesh.wp,
        &[
            "request_protocol=\"grpc\"",
            "grpc_response_status=\"0\"",
            "connection_security_policy=\"mutual_tls\"",
            "destination_service_name=\"echo-v2\"",
        ],
        // The unary calls v2 answered, and the bidi call.
        tally["echo-v2"] as u64 + 1,
    )
    .await;
}

/// Without `appProtocol`, Istio reads the port name's prefix: `grpc-*` and
/// `http2-*` ports get HTTP/2 upstreams (the backend speaks only HTTP/2).
#[tokio::test]
async fn a_port_named_grpc_or_http2_is_an_http2_upstream() {
    let _b = backend("named", "127.0.100.50:9080").await;
    let named = |name: &str, port: &str| {
        grpc_service(name, &["127.0.100.50"], 9080)
            .replace("    appProtocol: grpc\n", "")
            .replace("name: grpc\n", &format!("name: {port}\n"))
    };
    let yaml = named("by-grpc-name", "grpc-api") + &named("by-http2-name", "http2-web");
    assert!(!yaml.contains("appProtocol"));
    let (_c, wp) = start(&yaml).await;
    for host in ["by-grpc-name.shop:9090", "by-http2-name.shop:9090"] {
        let mut c = client(&wp, host).await;
        let resp = bounded("unary", c.unary(Request::new(EchoRequest::new("n"))))
            .await
            .unwrap_or_else(|s| panic!("{host}: {s:?}"));
        assert_eq!(resp.get_ref().backend, "named", "{host}");
    }
}

#[tokio::test]
async fn a_grpc_route_mirror_sends_the_call_with_its_message_over_http2() {
    let primary = backend("echo-v1", "127.0.100.60:9080").await;
    let shadow = backend("echo-shadow", "127.0.100.61:9080").await;
    let mut yaml = grpc_service_vip("echo", "10.96.100.6", &[]);
    yaml += &grpc_service("echo-v1", &["127.0.100.60"], 9080);
    yaml += &grpc_service("echo-shadow", &["127.0.100.61"], 9080);
    yaml += r#"---
apiVersion: gateway.networking.k8s.io/v1
kind: GRPCRoute
metadata: {name: echo-mirror, namespace: shop}
spec:
  parentRefs: [{group: "", kind: Service, name: echo, port: 9090}]
  rules:
  - filters:
    - type: RequestMirror
      requestMirror: {backendRef: {name: echo-shadow, port: 9090}}
    backendRefs: [{name: echo-v1, port: 9090}]
"#;
    let (_c, wp) = start(&yaml).await;
    let mut c = client(&wp, "echo.shop:9090").await;
    let resp = bounded("unary", c.unary(Request::new(EchoRequest::new("copy me"))))
        .await
        .expect("unary OK");
    assert_eq!(resp.get_ref().backend, "echo-v1");
    assert_eq!(resp.get_ref().message, "copy me");
    // The shadow, an HTTP/2-only gRPC server, got the call, message and all
    // (a call it could not decode would not count).
    bounded("mirrored call", shadow.wait_for_calls(1)).await;
    assert_eq!(primary.calls(), 1);
    requests_eventually(&wp, &["grpc_response_status=\"0\""], 1).await;
    let (_, metrics) = common::admin_get(&wp, "/stats/prometheus").await;
    assert!(
        metrics.contains("waypoint_mirror_requests_total{body=\"copied\",destination_service=\"echo-shadow.shop.svc.cluster.local\"} 1"),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_stream_still_sending_past_its_deadline_is_cut() {
    let b = backend("grpc-drip", "127.0.100.70:9080").await;
    let (_c, wp) = start(&grpc_service("drip", &["127.0.100.70"], 9080)).await;
    let mut c = client(&wp, "drip.shop:9090").await;
    // 40 replies 30 ms apart: every wait is well inside the deadline, the
    // whole stream (1.2 s) is not.
    let req = EchoRequest {
        replies: 40,
        interval_ms: 30,
        ..EchoRequest::new("drip")
    };
    let mut stream = bounded(
        "stream opens",
        c.server_stream(with_header(Request::new(req), "grpc-timeout", "400m")),
    )
    .await
    .expect("headers")
    .into_inner();
    let mut got = 0;
    let end = loop {
        match bounded("next reply", stream.message()).await {
            Ok(Some(_)) => got += 1,
            Ok(None) => break Ok(()),
            Err(status) => break Err(status),
        }
    };
    assert!(end.is_err(), "cut, not finished: {got} replies");
    assert!(got < 40, "{got} replies");
    b.wait_for_calls(1).await;
    requests_eventually(
        &wp,
        &["destination_service_name=\"drip\"", "response_flags=\"UT\""],
        1,
    )
    .await;
}

/// An HTTP/2 workload that answers with the request trailers it received,
/// as response headers `x-saw-<name>`, and the body length in `x-body-bytes`;
/// the first request for `/once` gets a 503 after its body is read.
async fn trailer_reporter(addr: &str) {
    use http_body_util::BodyExt;
    let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            tokio::spawn(async move {
                let service = hyper::service::service_fn(
                    |req: http::Request<hyper::body::Incoming>| async move {
                        static FAILED_ONCE: std::sync::atomic::AtomicBool =
                            std::sync::atomic::AtomicBool::new(false);
                        let once = req.uri().path() == "/once";
                        let got = req.into_body().collect().await.unwrap();
                        let mut resp = http::Response::builder();
                        if once && !FAILED_ONCE.swap(true, std::sync::atomic::Ordering::SeqCst) {
                            resp = resp.status(503);
                        }
                        for (name, value) in got.trailers().into_iter().flatten() {
                            resp = resp.header(format!("x-saw-{name}"), value);
                        }
                        let resp = resp.header("x-body-bytes", got.to_bytes().len().to_string());
                        Ok::<_, std::convert::Infallible>(resp.body(String::new()).unwrap())
                    },
                );
                let _ =
                    hyper::server::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
                        .serve_connection(hyper_util::rt::TokioIo::new(tcp), service)
                        .await;
            });
        }
    });
}

/// A client's request trailers reach an HTTP/2 backend after the whole
/// body, on the plain listener and when a retry resends the request.
#[tokio::test]
async fn request_trailers_reach_an_http2_backend() {
    use http_body_util::StreamBody;
    use hyper::body::Frame;
    trailer_reporter("127.0.100.80:9080").await;
    let mut yaml = grpc_service("sink", &["127.0.100.80"], 9080);
    yaml += &vs(
        "sink",
        "  - match: [{uri: {exact: /once}}]\n    retries: {attempts: 1, retryOn: 5xx}\n    route: [{destination: {host: sink}}]\n  - route: [{destination: {host: sink}}]\n",
    );
    let (_c, wp) = start(&yaml).await;
    let mut send = h2c_connection(&wp).await;
    for (path, chunks) in [("/upload", 1usize), ("/upload", 5), ("/once", 1)] {
        let mut trailers = http::HeaderMap::new();
        trailers.insert("x-checksum", format!("sum-{chunks}").parse().unwrap());
        let frames = (0..chunks)
            .map(|_| Frame::data(bytes::Bytes::from(vec![b'q'; 10_000])))
            .chain([Frame::trailers(trailers)])
            .map(Ok::<_, std::convert::Infallible>);
        let req = http::Request::post(format!("http://sink.shop:9090{path}"))
            .header("te", "trailers")
            .body(StreamBody::new(futures::stream::iter(frames)))
            .unwrap();
        let resp = bounded("request with trailers", send.send_request(req))
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "{path}: a 503 is retried");
        assert_eq!(
            resp.headers()["x-body-bytes"],
            (chunks * 10_000).to_string().as_str(),
            "the body arrived whole"
        );
        assert_eq!(
            resp.headers()
                .get("x-saw-x-checksum")
                .map(|v| v.to_str().unwrap()),
            Some(format!("sum-{chunks}").as_str()),
            "the backend saw the client's trailer"
        );
    }
}
