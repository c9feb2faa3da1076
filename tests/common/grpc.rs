//! gRPC helpers for the integration tests: Services with gRPC ports, the
//! `test.Echo` backend, a waypoint on this suite's addresses, tonic clients
//! over h2c or through an HBONE tunnel, and a bare HTTP/2 call for what
//! tonic's own client would get in the way of (it enforces `grpc-timeout`
//! itself).
//!
//! Addresses: `tests/grpc.rs` owns 127.0.100.0/24 (the waypoint on
//! 127.0.100.1, fake pods on 127.0.100.10+).

#![allow(dead_code)]

use std::net::SocketAddr;

use tokio::sync::mpsc;
use tonic::Request;
use waypoint::server::Running;
use waypoint::test_helpers::grpc::{EchoClient, EchoRequest, GrpcEcho};

use super::{bounded, ConfigDir};

/// Waypoint listeners on this suite's address.
pub const WAYPOINT_IP: &str = "127.0.100.1";

/// A Service `name` in `shop` with one gRPC port 9090 (`appProtocol: grpc`)
/// onto `target_port` of `ips`.
pub fn grpc_service(name: &str, ips: &[&str], target_port: u16) -> String {
    let endpoints: String = ips
        .iter()
        .map(|ip| format!("- addresses: [\"{ip}\"]\n  conditions: {{ready: true}}\n"))
        .collect();
    format!(
        "---\napiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: shop}}\nspec:\n  ports:\n  - name: grpc\n    port: 9090\n    targetPort: {target_port}\n    appProtocol: grpc\n---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: {name}-abc\n  namespace: shop\n  labels: {{kubernetes.io/service-name: {name}}}\naddressType: IPv4\nports:\n- name: grpc\n  port: {target_port}\nendpoints:\n{endpoints}"
    )
}

pub async fn backend(name: &str, addr: &str) -> GrpcEcho {
    let addr: SocketAddr = addr.parse().expect("test address");
    bounded("gRPC backend start", GrpcEcho::start(name, addr))
        .await
        .unwrap_or_else(|e| panic!("gRPC backend {name} on {addr}: {e}"))
}

pub async fn start(yaml: &str) -> (ConfigDir, Running) {
    let config = ConfigDir::new(yaml);
    let mut s = super::settings(&config, "shop");
    s.http_listen = Some(format!("{WAYPOINT_IP}:0").parse().unwrap());
    s.admin_listen = format!("{WAYPOINT_IP}:0").parse().unwrap();
    let wp = bounded("waypoint start", waypoint::server::start(s))
        .await
        .expect("waypoint starts");
    (config, wp)
}

/// The messages sent on `rx`, as a stream that ends when the sender is dropped.
pub fn receiver_stream(
    rx: mpsc::Receiver<EchoRequest>,
) -> impl futures::Stream<Item = EchoRequest> + Send + 'static {
    futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|m| (m, rx)) })
}

pub async fn client(wp: &Running, authority: &str) -> EchoClient {
    let addr = wp.http_addr.expect("plain listener");
    bounded("gRPC connect", EchoClient::connect(addr, authority))
        .await
        .expect("h2c connection to the waypoint")
}

/// A VirtualService for `host` in `shop` with these `http` entries.
pub fn vs(host: &str, http: &str) -> String {
    format!("---\napiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: {host}, namespace: shop}}\nspec:\n  hosts: [{host}]\n  http:\n{http}")
}

pub fn with_header(
    mut req: Request<EchoRequest>,
    name: &'static str,
    value: &str,
) -> Request<EchoRequest> {
    req.metadata_mut()
        .insert(name, value.parse().expect("ASCII header value"));
    req
}

/// One unary `test.Echo/Unary` call with `grpc-timeout: timeout`, over a
/// bare HTTP/2 client; the response status and headers (a trailers-only
/// answer carries its grpc-status there).
pub async fn raw_unary(
    wp: &Running,
    authority: &str,
    msg: &EchoRequest,
    timeout: &str,
) -> (u16, http::HeaderMap) {
    use prost::Message;
    let mut send = h2c_connection(wp).await;
    let payload = msg.encode_to_vec();
    let mut frame = vec![0u8];
    frame.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    frame.extend_from_slice(&payload);
    let req = http::Request::post(format!("http://{authority}/test.Echo/Unary"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .header("grpc-timeout", timeout)
        .body(http_body_util::Full::new(bytes::Bytes::from(frame)))
        .unwrap();
    let resp = bounded("raw gRPC call", send.send_request(req))
        .await
        .unwrap();
    (resp.status().as_u16(), resp.headers().clone())
}

/// A bare HTTP/2 (h2c) connection to the waypoint's plain listener.
pub async fn h2c_connection<B>(wp: &Running) -> hyper::client::conn::http2::SendRequest<B>
where
    B: hyper::body::Body + Unpin + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let tcp = tokio::net::TcpStream::connect(wp.http_addr.unwrap())
        .await
        .unwrap();
    let (send, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(tcp),
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    send
}

/// `grpc_service` with a ClusterIP, for HBONE CONNECTs to `vip:9090`.
pub fn grpc_service_vip(name: &str, vip: &str, ips: &[&str]) -> String {
    grpc_service(name, ips, 9080).replacen(
        "spec:\n  ports:",
        &format!("spec:\n  clusterIP: {vip}\n  ports:"),
        1,
    )
}

/// Opens a fresh HBONE CONNECT to `target` for each connection tonic makes.
#[derive(Clone)]
pub struct HboneConnector {
    pub client: std::sync::Arc<waypoint::identity::IdentityStore>,
    pub waypoint: SocketAddr,
    pub target: String,
}

impl tonic::codegen::Service<http::Uri> for HboneConnector {
    type Response = hyper_util::rt::TokioIo<waypoint::hbone::TunnelStream>;
    type Error = waypoint::hbone::HboneError;
    type Future = std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<Self::Response, Self::Error>> + Send>,
    >;

    fn poll_ready(
        &mut self,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, _uri: http::Uri) -> Self::Future {
        let this = self.clone();
        Box::pin(async move {
            let headers = super::mesh::ztunnel_headers("10.1.2.3:40000");
            super::mesh::tunnel(&this.client, this.waypoint, &this.target, &headers)
                .await
                .map(hyper_util::rt::TokioIo::new)
        })
    }
}
