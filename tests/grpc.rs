//! gRPC through the waypoint, end to end: h2c from the client (plain
//! listener, and inside HBONE), HTTP/2 to the backend, every kind of call
//! streaming both ways, trailers, `grpc-status` in the metrics, and the
//! gRPC answers the waypoint writes itself.
//!
//! Addresses: this file uses 127.0.100.0/24 only (waypoint on
//! 127.0.100.1, fake pods on 127.0.100.10+).

mod common;

use std::net::SocketAddr;

use common::{bounded, requests_eventually, ConfigDir};
use futures::StreamExt;
use tokio::sync::mpsc;
use tonic::{Code, Request};
use waypoint::server::Running;
use waypoint::test_helpers::grpc::{EchoClient, EchoRequest, GrpcEcho};

/// Waypoint listeners on this file's address.
const WAYPOINT_IP: &str = "127.0.100.1";

/// A Service `name` in `shop` with one gRPC port 9090 (`appProtocol: grpc`)
/// onto `target_port` of `ips`.
fn grpc_service(name: &str, ips: &[&str], target_port: u16) -> String {
    let endpoints: String = ips
        .iter()
        .map(|ip| format!("- addresses: [\"{ip}\"]\n  conditions: {{ready: true}}\n"))
        .collect();
    format!(
        "---\napiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: shop}}\nspec:\n  ports:\n  - name: grpc\n    port: 9090\n    targetPort: {target_port}\n    appProtocol: grpc\n---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: {name}-abc\n  namespace: shop\n  labels: {{kubernetes.io/service-name: {name}}}\naddressType: IPv4\nports:\n- name: grpc\n  port: {target_port}\nendpoints:\n{endpoints}"
    )
}

async fn backend(name: &str, addr: &str) -> GrpcEcho {
    let addr: SocketAddr = addr.parse().expect("test address");
    bounded("gRPC backend start", GrpcEcho::start(name, addr))
        .await
        .unwrap_or_else(|e| panic!("gRPC backend {name} on {addr}: {e}"))
}

async fn start(yaml: &str) -> (ConfigDir, Running) {
    let config = ConfigDir::new(yaml);
    let mut s = common::settings(&config, "shop");
    s.http_listen = Some(format!("{WAYPOINT_IP}:0").parse().unwrap());
    s.admin_listen = format!("{WAYPOINT_IP}:0").parse().unwrap();
    let wp = bounded("waypoint start", waypoint::server::start(s))
        .await
        .expect("waypoint starts");
    (config, wp)
}

/// The messages sent on `rx`, as a stream that ends when the sender is dropped.
fn receiver_stream(
    rx: mpsc::Receiver<EchoRequest>,
) -> impl futures::Stream<Item = EchoRequest> + Send + 'static {
    futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|m| (m, rx)) })
}

async fn client(wp: &Running, authority: &str) -> EchoClient {
    let addr = wp.http_addr.expect("plain listener");
    bounded("gRPC connect", EchoClient::connect(addr, authority))
        .await
        .expect("h2c connection to the waypoint")
}

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
