//! A `TunnelStream` handed to a Pingora HTTP app as its downstream connection: HTTP/1 and
//! h2c (detected through our `Peek`) inside the tunnel, with the caller visible through
//! `client_addr()` and the proxy digest's user data.

use std::sync::Arc;

use async_trait::async_trait;
use http::{Method, Request, Response, StatusCode};
use pingora_core::apps::http_app::{HttpServer, ServeHttp};
use pingora_core::apps::{HttpServerOptions, ServerApp};
use pingora_core::protocols::http::ServerSession;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;

use super::support::*;
use crate::hbone::{serve_inbound, ConnectHandler, InboundConfig, TunnelRequest, TunnelStream};

/// Answers with "<version> <client addr> <user data>".
struct Describe;

#[async_trait]
impl ServeHttp for Describe {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        let version = format!("{:?}", session.req_header().version);
        let client = session
            .client_addr()
            .map(|a| a.to_string())
            .unwrap_or_default();
        let caller = session
            .digest()
            .and_then(|d| d.proxy_digest.as_ref())
            .and_then(|p| p.user_data.as_ref())
            .and_then(|u| u.downcast_ref::<String>())
            .cloned()
            .unwrap_or_default();
        let body = format!("{version} {client} {caller}").into_bytes();
        Response::builder()
            .status(StatusCode::OK)
            .header("content-length", body.len())
            .body(body)
            .expect("response")
    }
}

struct ToPingora {
    app: Arc<HttpServer<Describe>>,
    shutdown: watch::Receiver<bool>,
}

#[async_trait]
impl ConnectHandler for ToPingora {
    type Accepted = ();

    async fn decide(&self, _req: &TunnelRequest) -> Result<(), http::StatusCode> {
        Ok(())
    }

    async fn serve(&self, req: TunnelRequest, _: (), mut stream: TunnelStream) {
        stream.set_user_data(Box::new(req.peer.to_string()));
        let mut next: Option<pingora_core::protocols::Stream> = Some(Box::new(stream));
        while let Some(s) = next {
            next = self.app.process_new(s, &self.shutdown).await;
        }
    }
}

#[tokio::test]
async fn pingora_serves_http1_and_h2c_inside_a_tunnel() {
    let mesh = Mesh::new();
    let mut http = HttpServer::new_app(Describe);
    let mut options = HttpServerOptions::default();
    options.h2c = true;
    http.server_options = Some(options);
    let (stop, shutdown) = watch::channel(false);
    let handler = Arc::new(ToPingora {
        app: Arc::new(http),
        shutdown: shutdown.clone(),
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let server = tokio::spawn(serve_inbound(
        listener,
        mesh.waypoint.server_config(TD),
        InboundConfig::default(),
        handler,
        shutdown,
    ));
    let client = within(h2_client(addr, &mesh.client)).await;
    let fwd = [("forwarded", "for=\"10.0.0.7:5555\"")];

    // HTTP/1.1 inside the tunnel.
    let (_, tunnel) = within(open(&client, Method::CONNECT, "10.0.0.1:80", &fwd)).await;
    let mut tunnel = tunnel.expect("tunnel");
    tunnel
        .write_all(b"GET / HTTP/1.1\r\nHost: svc\r\nConnection: close\r\n\r\n")
        .await
        .expect("write");
    let mut response = Vec::new();
    within(tunnel.read_to_end(&mut response))
        .await
        .expect("read");
    let response = String::from_utf8_lossy(&response);
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(
        response.ends_with(&format!("HTTP/1.1 10.0.0.7:5555 {ZTUNNEL_ID}")),
        "{response}"
    );

    // h2c (prior knowledge) inside another tunnel on the same connection.
    let (_, tunnel) = within(open(&client, Method::CONNECT, "10.0.0.1:80", &fwd)).await;
    let (inner, conn) = within(h2::client::handshake(tunnel.expect("tunnel")))
        .await
        .expect("h2c handshake");
    tokio::spawn(conn);
    let req = Request::builder()
        .uri("http://svc/")
        .body(())
        .expect("request");
    let mut inner = within(inner.ready()).await.expect("ready");
    let (resp, _) = inner.send_request(req, true).expect("send");
    let resp = within(resp).await.expect("response");
    assert_eq!(resp.status(), StatusCode::OK);
    let mut body = resp.into_body();
    let mut text = Vec::new();
    while let Some(chunk) = within(body.data()).await {
        let chunk = chunk.expect("chunk");
        body.flow_control()
            .release_capacity(chunk.len())
            .expect("release");
        text.extend_from_slice(&chunk);
    }
    assert_eq!(
        String::from_utf8_lossy(&text),
        format!("HTTP/2.0 10.0.0.7:5555 {ZTUNNEL_ID}")
    );

    let _ = stop.send(true);
    within(server).await.expect("server");
}
