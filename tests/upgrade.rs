//! HTTP upgrades through the waypoint: WebSocket routed by the HTTPRoute that
//! matches the upgrade request, then frames both ways until a close handshake,
//! on the plain listener and through HBONE in and out; the idle timeout of an
//! upgraded connection.

mod common;

use std::sync::{Arc, Mutex};

use common::mesh::*;
use common::*;
use futures::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

/// A WebSocket echo workload: answers the handshake with `x-backend: name`,
/// echoes every text and binary message, and answers a close.
struct WsEcho {
    /// Paths of the upgrade requests it accepted.
    paths: Arc<Mutex<Vec<String>>>,
}

async fn ws_echo(name: &'static str, addr: &str) -> WsEcho {
    let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
    let paths = Arc::new(Mutex::new(Vec::new()));
    let seen = paths.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let seen = seen.clone();
            tokio::spawn(async move {
                // tungstenite's callback type, whose error is a whole response.
                #[allow(clippy::result_large_err)]
                let callback = |req: &Request, mut resp: Response| {
                    seen.lock().unwrap().push(req.uri().path().to_string());
                    resp.headers_mut()
                        .insert("x-backend", HeaderValue::from_static(name));
                    Ok(resp)
                };
                let Ok(mut ws) = tokio_tungstenite::accept_hdr_async(tcp, callback).await else {
                    return;
                };
                // tungstenite answers pings and the close itself.
                while let Some(Ok(msg)) = ws.next().await {
                    if (msg.is_text() || msg.is_binary()) && ws.send(msg).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    WsEcho { paths }
}

/// The WebSocket handshake for `ws://{host}{path}` over `io`; the backend that
/// accepted it (its `x-backend` header) and the socket.
async fn ws_connect<S>(io: S, host: &str, path: &str) -> (String, WebSocketStream<S>)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let url = format!("ws://{host}{path}");
    let (ws, resp) = bounded(
        "websocket handshake",
        tokio_tungstenite::client_async(url, io),
    )
    .await
    .expect("upgrade accepted");
    assert_eq!(resp.status(), 101);
    let backend = resp
        .headers()
        .get("x-backend")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    (backend, ws)
}

/// Sends `n` messages, alternating text and binary, each answered before the
/// next; then the close handshake, which the client must see completed.
async fn exchange_and_close<S>(mut ws: WebSocketStream<S>, n: usize)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    for i in 0..n {
        let msg = if i % 2 == 0 {
            Message::text(format!("message {i}"))
        } else {
            Message::binary(vec![i as u8; 1 + i % 300])
        };
        bounded("send", ws.send(msg.clone())).await.unwrap();
        let echoed = bounded("echo", ws.next())
            .await
            .expect("open")
            .unwrap_or_else(|e| panic!("message {i}: {e}"));
        assert_eq!(echoed, msg, "message {i}");
    }
    bounded("close", ws.close(None)).await.unwrap();
    // The peer's close frame comes back through the waypoint, then the end.
    match bounded("close reply", ws.next()).await {
        Some(Ok(Message::Close(frame))) => {
            assert!(
                frame.as_ref().is_none_or(|f| f.code == CloseCode::Normal),
                "{frame:?}"
            )
        }
        None => {}
        other => panic!("expected the close handshake, got {other:?}"),
    }
}

/// Service `chat` (9080) on 127.0.130.11, Service `chat-v2` on 127.0.130.12,
/// and an HTTPRoute sending `/v2/…` to `chat-v2`.
fn chat_yaml(chat_ip: &str, v2_ip: &str) -> String {
    let mut yaml = service("shop", "chat", 9080, 9080, &[chat_ip]).replace(
        "spec:\n  ports:",
        "spec:\n  clusterIP: 10.96.130.1\n  ports:",
    );
    yaml += &service("shop", "chat-v2", 9080, 9080, &[v2_ip]);
    yaml += "---\napiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: chat, namespace: shop}\nspec:\n  parentRefs: [{group: \"\", kind: Service, name: chat, port: 9080}]\n  rules:\n  - matches: [{path: {type: PathPrefix, value: /v2}}]\n    backendRefs: [{name: chat-v2, port: 9080}]\n  - backendRefs: [{name: chat, port: 9080}]\n";
    yaml
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_on_the_plain_listener_is_routed_and_spliced() {
    let v1 = ws_echo("chat-v1", "127.0.130.11:9080").await;
    let v2 = ws_echo("chat-v2", "127.0.130.12:9080").await;
    let config = ConfigDir::new(&chat_yaml("127.0.130.11", "127.0.130.12"));
    let wp = waypoint(&config, "shop").await;
    let addr = wp.http_addr.unwrap();

    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (backend, ws) = ws_connect(tcp, "chat.shop:9080", "/v2/room").await;
    assert_eq!(backend, "chat-v2", "routed by the HTTPRoute's path match");
    exchange_and_close(ws, 1000).await;

    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (backend, ws) = ws_connect(tcp, "chat.shop:9080", "/room").await;
    assert_eq!(backend, "chat-v1");
    exchange_and_close(ws, 10).await;

    // Handshakes answered at loopback speed, each used at once: the 101 must
    // never overtake the end of the (empty) upgrade request.
    for i in 0..30 {
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (_, mut ws) = ws_connect(tcp, "chat.shop:9080", "/room").await;
        let msg = Message::text(format!("hello {i}"));
        bounded("send", ws.send(msg.clone())).await.unwrap();
        let echoed = bounded("echo", ws.next()).await.expect("open");
        assert_eq!(
            echoed.unwrap_or_else(|e| panic!("connection {i}: {e}")),
            msg
        );
    }

    assert_eq!(*v2.paths.lock().unwrap(), ["/v2/room"]);
    assert_eq!(v1.paths.lock().unwrap().len(), 31);
    let metrics = requests_eventually(
        &wp,
        &[
            "destination_service_name=\"chat-v2\"",
            "response_code=\"101\"",
        ],
        1,
    )
    .await;
    assert!(metrics.contains("istio_requests_total"), "{metrics}");
    wp.shutdown().await;
}

/// The chat Services in an ambient namespace on `net` (`127.0.X.`): chat-v2's
/// pod is in the mesh, so the waypoint reaches it over HBONE through its fake
/// ztunnel; and a CONNECT stream to the chat VIP through the waypoint, as a
/// client's ztunnel opens it.
struct ChatMesh {
    mesh: Mesh,
    ztunnel: FakeZtunnelHandle,
    v2: WsEcho,
    _v1: WsEcho,
}

impl ChatMesh {
    async fn start(net: &str) -> ChatMesh {
        let (v1_ip, v2_ip) = (format!("{net}11"), format!("{net}12"));
        let _v1 = ws_echo("chat-v1", &format!("{v1_ip}:9080")).await;
        let v2 = ws_echo("chat-v2", &format!("{v2_ip}:9080")).await;
        let ztunnel = ZtunnelListener::bind(&v2_ip).await;
        let mut yaml = ambient_namespace("shop");
        yaml += &chat_yaml(&v1_ip, &v2_ip);
        yaml += &pod("shop", "chat-v2-7d9c", &v2_ip);
        let mesh = Mesh::start(&yaml, |s| s.hbone_upstream_port = ztunnel.port()).await;
        let ztunnel = mesh.serve_ztunnel(ztunnel);
        ChatMesh {
            mesh,
            ztunnel,
            v2,
            _v1,
        }
    }

    async fn tunnel(&self, net: &str) -> waypoint::hbone::TunnelStream {
        tunnel(
            &self.mesh.client(),
            self.mesh.hbone(),
            "10.96.130.1:9080",
            &ztunnel_headers(&format!("{net}50:40000")),
        )
        .await
        .expect("CONNECT accepted")
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_through_hbone_in_and_out() {
    let chat = ChatMesh::start("127.0.131.").await;
    let (fake, v2) = (&chat.ztunnel, &chat.v2);
    let stream = chat.tunnel("127.0.131.").await;
    let (backend, ws) = ws_connect(stream, "chat.shop:9080", "/v2/room").await;
    assert_eq!(backend, "chat-v2");
    exchange_and_close(ws, 1000).await;

    assert_eq!(*v2.paths.lock().unwrap(), ["/v2/room"]);
    let seen = fake.seen();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(
        seen[0],
        (WAYPOINT_ID.to_string(), "127.0.131.12:9080".into())
    );
    chat.mesh.wp.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quiet_upgraded_connection_is_closed_after_the_idle_timeout() {
    let _v1 = ws_echo("chat-v1", "127.0.132.11:9080").await;
    let _v2 = ws_echo("chat-v2", "127.0.132.12:9080").await;
    // A route timeout shorter than the idle timeout: it must not cut the
    // upgraded connection (it covers a request, not a WebSocket).
    let yaml = chat_yaml("127.0.132.11", "127.0.132.12").replace(
        "  - backendRefs: [{name: chat, port: 9080}]\n",
        "  - backendRefs: [{name: chat, port: 9080}]\n    timeouts: {request: 50ms}\n",
    );
    let config = ConfigDir::new(&yaml);
    let mut s = settings(&config, "shop");
    s.upgrade_idle_timeout = std::time::Duration::from_secs(1);
    let wp = bounded("start", waypoint::server::start(s)).await.unwrap();

    let tcp = tokio::net::TcpStream::connect(wp.http_addr.unwrap())
        .await
        .unwrap();
    let (backend, mut ws) = ws_connect(tcp, "chat.shop:9080", "/room").await;
    assert_eq!(backend, "chat-v1");
    // Busy for longer than the route timeout, each gap well under the idle timeout.
    for i in 0..20 {
        let msg = Message::text(format!("m{i}"));
        bounded("send", ws.send(msg.clone())).await.unwrap();
        assert_eq!(bounded("echo", ws.next()).await.unwrap().unwrap(), msg);
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    // Then silent: the waypoint closes it (well within the step bound; the
    // default, 1 h, or Pingora's own 60 s would time the test out).
    let end = bounded("closed by the idle timeout", ws.next()).await;
    assert!(
        !matches!(end, Some(Ok(Message::Text(_) | Message::Binary(_)))),
        "{end:?}"
    );
    wp.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upgrade_the_backend_declines_gets_its_answer() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    // A plain HTTP workload: it answers the upgrade request with a 200.
    let _b = echo("plain", "127.0.133.11:9080").await;
    let config = ConfigDir::new(&service("shop", "plain", 9080, 9080, &["127.0.133.11"]));
    let wp = waypoint(&config, "shop").await;
    let mut tcp = tokio::net::TcpStream::connect(wp.http_addr.unwrap())
        .await
        .unwrap();
    tcp.write_all(
        b"GET /chat HTTP/1.1\r\nHost: plain.shop:9080\r\nConnection: Upgrade\r\n\
          Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n\
          Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
    )
    .await
    .unwrap();
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&seen).contains("\"backend\"") {
        let n = bounded("response", tcp.read(&mut buf)).await.unwrap();
        assert!(n > 0, "closed early: {}", String::from_utf8_lossy(&seen));
        seen.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&seen);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text.contains("\"backend\":\"plain\""), "{text}");
    wp.shutdown().await;
}

/// An RFC 8441 WebSocket stream as bytes: the request's DATA frames out, the
/// response's in.
struct H2Io {
    send: h2::SendStream<bytes::Bytes>,
    recv: h2::RecvStream,
    pending: bytes::Bytes,
}

impl AsyncRead for H2Io {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        use std::task::Poll;
        while self.pending.is_empty() {
            match self.recv.poll_data(cx) {
                Poll::Ready(Some(Ok(data))) => {
                    let _ = self.recv.flow_control().release_capacity(data.len());
                    self.pending = data;
                }
                Poll::Ready(Some(Err(e))) => return Poll::Ready(Err(std::io::Error::other(e))),
                Poll::Ready(None) => return Poll::Ready(Ok(())),
                Poll::Pending => return Poll::Pending,
            }
        }
        let n = self.pending.len().min(buf.remaining());
        buf.put_slice(&self.pending.split_to(n));
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for H2Io {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        data: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        use std::task::Poll;
        self.send.reserve_capacity(data.len());
        match self.send.poll_capacity(cx) {
            Poll::Ready(Some(Ok(n))) => {
                let n = n.min(data.len());
                self.send
                    .send_data(bytes::Bytes::copy_from_slice(&data[..n]), false)
                    .map_err(std::io::Error::other)?;
                Poll::Ready(Ok(n))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Err(std::io::Error::other(e))),
            Poll::Ready(None) => Poll::Ready(Err(std::io::ErrorKind::BrokenPipe.into())),
            Poll::Pending => Poll::Pending,
        }
    }
    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let _ = self.send.send_data(bytes::Bytes::new(), true);
        std::task::Poll::Ready(Ok(()))
    }
}

/// An RFC 8441 WebSocket for `authority` + `path` over an HTTP/2 connection
/// on `io`: the status and headers of the answer, and the WebSocket when it
/// was accepted.
async fn ws_over_h2<S>(
    io: S,
    authority: &str,
    path: &str,
) -> (u16, http::HeaderMap, Option<WebSocketStream<H2Io>>)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (client, conn) = bounded("h2 handshake", h2::client::handshake(io))
        .await
        .unwrap();
    tokio::spawn(conn);
    let mut client = bounded("ready", client.ready()).await.unwrap();
    // One ordinary request first: by its answer the server's SETTINGS
    // (SETTINGS_ENABLE_CONNECT_PROTOCOL among them) have been read.
    let probe = http::Request::get(format!("http://{authority}/probe"))
        .body(())
        .unwrap();
    let (probe, _) = client.send_request(probe, true).unwrap();
    let _ = bounded("probe", probe).await.unwrap();
    assert!(
        client.is_extended_connect_protocol_enabled(),
        "the waypoint advertises RFC 8441"
    );
    let mut client = bounded("ready", client.ready()).await.unwrap();
    let mut req = http::Request::builder()
        .method(http::Method::CONNECT)
        .uri(format!("http://{authority}{path}"))
        .header("sec-websocket-version", "13")
        .body(())
        .unwrap();
    req.extensions_mut()
        .insert(h2::ext::Protocol::from_static("websocket"));
    let (resp, send) = client.send_request(req, false).unwrap();
    let resp = bounded("extended CONNECT", resp).await.unwrap();
    let (parts, recv) = resp.into_parts();
    if parts.status != 200 {
        return (parts.status.as_u16(), parts.headers, None);
    }
    let io = H2Io {
        send,
        recv,
        pending: bytes::Bytes::new(),
    };
    let ws = WebSocketStream::from_raw_socket(
        io,
        tokio_tungstenite::tungstenite::protocol::Role::Client,
        None,
    )
    .await;
    (200, parts.headers, Some(ws))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_over_http2_is_routed_and_spliced() {
    let v1 = ws_echo("chat-v1", "127.0.140.11:9080").await;
    let v2 = ws_echo("chat-v2", "127.0.140.12:9080").await;
    let config = ConfigDir::new(&chat_yaml("127.0.140.11", "127.0.140.12"));
    let wp = waypoint(&config, "shop").await;
    let addr = wp.http_addr.unwrap();

    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (status, headers, ws) = ws_over_h2(tcp, "chat.shop:9080", "/v2/room").await;
    assert_eq!(status, 200);
    assert_eq!(headers["x-backend"], "chat-v2", "routed as a GET upgrade");
    exchange_and_close(ws.unwrap(), 1000).await;
    assert_eq!(*v2.paths.lock().unwrap(), ["/v2/room"]);

    // A classic CONNECT is not proxied.
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (client, conn) = h2::client::handshake(tcp).await.unwrap();
    tokio::spawn(conn);
    let mut client = client.ready().await.unwrap();
    let req = http::Request::builder()
        .method(http::Method::CONNECT)
        .uri("chat.shop:9080")
        .body(())
        .unwrap();
    let (resp, _send) = client.send_request(req, false).unwrap();
    assert_eq!(bounded("CONNECT", resp).await.unwrap().status(), 400);
    assert!(v1.paths.lock().unwrap().is_empty());
    wp.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_over_http2_through_hbone_in_and_out() {
    let chat = ChatMesh::start("127.0.141.").await;
    let stream = chat.tunnel("127.0.141.").await;
    let (status, headers, ws) = ws_over_h2(stream, "chat.shop:9080", "/v2/room").await;
    assert_eq!(status, 200);
    assert_eq!(headers["x-backend"], "chat-v2");
    exchange_and_close(ws.unwrap(), 1000).await;
    assert_eq!(*chat.v2.paths.lock().unwrap(), ["/v2/room"]);
    let seen = chat.ztunnel.seen();
    assert!(!seen.is_empty());
    assert!(seen
        .iter()
        .all(|(peer, target)| peer == WAYPOINT_ID && target == "127.0.141.12:9080"));
    chat.mesh.wp.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quiet_http2_websocket_is_ended_after_the_idle_timeout() {
    let _v1 = ws_echo("chat-v1", "127.0.142.11:9080").await;
    let _v2 = ws_echo("chat-v2", "127.0.142.12:9080").await;
    let config = ConfigDir::new(&chat_yaml("127.0.142.11", "127.0.142.12"));
    let mut s = settings(&config, "shop");
    s.upgrade_idle_timeout = std::time::Duration::from_secs(1);
    let wp = bounded("start", waypoint::server::start(s)).await.unwrap();
    let tcp = tokio::net::TcpStream::connect(wp.http_addr.unwrap())
        .await
        .unwrap();
    let (_, _, ws) = ws_over_h2(tcp, "chat.shop:9080", "/room").await;
    let mut ws = ws.unwrap();
    let msg = Message::text("one");
    bounded("send", ws.send(msg.clone())).await.unwrap();
    assert_eq!(bounded("echo", ws.next()).await.unwrap().unwrap(), msg);
    // Silent from here: the waypoint ends the stream.
    let end = bounded("ended by the idle timeout", ws.next()).await;
    assert!(
        !matches!(end, Some(Ok(Message::Text(_) | Message::Binary(_)))),
        "{end:?}"
    );
    wp.shutdown().await;
}
