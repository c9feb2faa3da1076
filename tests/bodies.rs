//! Request and response bodies through the waypoint: content-length and
//! chunked framing, `Expect: 100-continue`, request bodies in RequestMirror
//! copies (bounded), retries replaying bodies up to Pingora's retry buffer.
//! The 1 GiB streams with the waypoint's RSS sampled are in `tests/big_bodies.rs`.

mod common;

use bytes::Bytes;
use common::*;
use http_body_util::Full;
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use waypoint::echo::EchoReply;

/// POSTs `body` to `path` with `Host: host`; the status and the echo's report.
async fn post(target: std::net::SocketAddr, host: &str, path: &str, body: Vec<u8>) -> Reply {
    let client: Client<HttpConnector, Full<Bytes>> =
        Client::builder(TokioExecutor::new()).build(HttpConnector::new());
    let req = http::Request::post(format!("http://{target}{path}"))
        .header("host", host)
        .body(Full::new(Bytes::from(body)))
        .unwrap();
    Reply::read(bounded("POST", client.request(req)).await.unwrap()).await
}

/// Writes `request` on a new connection and reads until a whole response
/// with a JSON echo body has arrived (or the connection closes).
async fn raw(target: std::net::SocketAddr, parts: &[&[u8]], wait_for_continue: bool) -> String {
    let mut tcp = tokio::net::TcpStream::connect(target).await.unwrap();
    let mut seen = Vec::new();
    let mut buf = [0u8; 8192];
    for (i, part) in parts.iter().enumerate() {
        tcp.write_all(part).await.unwrap();
        if i == 0 && wait_for_continue {
            // The interim answer must come before the body is sent.
            while !String::from_utf8_lossy(&seen).contains("\r\n\r\n") {
                let n = bounded("100 Continue", tcp.read(&mut buf)).await.unwrap();
                assert!(n > 0, "closed before 100 Continue");
                seen.extend_from_slice(&buf[..n]);
            }
            let text = String::from_utf8_lossy(&seen);
            assert!(text.starts_with("HTTP/1.1 100 Continue\r\n"), "{text}");
        }
    }
    while !String::from_utf8_lossy(&seen).contains("\"protocol\"") {
        let n = bounded("response", tcp.read(&mut buf)).await.unwrap();
        if n == 0 {
            break;
        }
        seen.extend_from_slice(&buf[..n]);
    }
    String::from_utf8_lossy(&seen).into_owned()
}

fn echo_of(response: &str) -> EchoReply {
    let json = &response[response.find('{').expect("a JSON body")..];
    serde_json::from_str(json).unwrap_or_else(|e| panic!("{e}: {response}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn content_length_chunked_and_expect_continue_bodies_reach_the_backend() {
    let _b = echo("body", "127.0.134.11:9080").await;
    let config = ConfigDir::new(&service("shop", "body", 9080, 9080, &["127.0.134.11"]));
    let wp = waypoint(&config, "shop").await;
    let addr = wp.http_addr.unwrap();

    let r = raw(
        addr,
        &[b"POST /cl HTTP/1.1\r\nHost: body.shop:9080\r\nContent-Length: 11\r\n\r\nhello world"],
        false,
    )
    .await;
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");
    assert_eq!(echo_of(&r).body_len, 11);

    let r = raw(
        addr,
        &[
            b"POST /chunked HTTP/1.1\r\nHost: body.shop:9080\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"5\r\nhello\r\n",
            b"6\r\n world\r\n0\r\n\r\n",
        ],
        false,
    )
    .await;
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");
    let seen = echo_of(&r);
    assert_eq!((seen.path.as_str(), seen.body_len), ("/chunked", 11));

    let r = raw(
        addr,
        &[
            b"POST /expect HTTP/1.1\r\nHost: body.shop:9080\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n",
            b"hello",
        ],
        true,
    )
    .await;
    let last = &r[r.rfind("HTTP/1.1 ").unwrap()..];
    assert!(last.starts_with("HTTP/1.1 200"), "{r}");
    assert_eq!(echo_of(&r).body_len, 5);
    wp.shutdown().await;
}

fn mirrored_web(main_ip: &str, shadow_ip: &str) -> String {
    let mut yaml = service("shop", "web", 9080, 9080, &[main_ip]);
    yaml += &service("shop", "shadow", 9080, 9080, &[shadow_ip]);
    yaml += "---\napiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: web, namespace: shop}\nspec:\n  parentRefs: [{group: \"\", kind: Service, name: web, port: 9080}]\n  rules:\n  - filters:\n    - type: RequestMirror\n      requestMirror:\n        backendRef: {name: shadow, port: 9080}\n    backendRefs: [{name: web, port: 9080}]\n";
    yaml
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mirror_copies_carry_request_bodies_up_to_the_limit() {
    let main = echo("main", "127.0.135.11:9080").await;
    let shadow = echo("shadow", "127.0.135.12:9080").await;
    let config = ConfigDir::new(&mirrored_web("127.0.135.11", "127.0.135.12"));
    let wp = waypoint(&config, "shop").await;
    let addr = wp.http_addr.unwrap();

    let small: Vec<u8> = (0..10_000u32).map(|i| i as u8).collect();
    let r = post(addr, "web.shop:9080", "/small", small).await;
    assert_eq!((r.status, r.backend()), (200, "main".to_string()));
    bounded("mirror copy", shadow.wait_for(1)).await;
    let copy = &shadow.received()[0];
    assert_eq!((copy.path.as_str(), copy.body_len), ("/small", 10_000));
    assert_eq!(copy.headers["host"], "web.shop-shadow:9080");
    assert_eq!(copy.headers["content-length"], "10000");

    // Over the limit (256 KiB): the backend gets it all, the mirror headers only.
    let large = vec![b'x'; 300 * 1024];
    let r = post(addr, "web.shop:9080", "/large", large).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.echo().unwrap().body_len, 300 * 1024);
    bounded("mirror copy", shadow.wait_for(2)).await;
    let copy = &shadow.received()[1];
    assert_eq!((copy.path.as_str(), copy.body_len), ("/large", 0));
    assert_eq!(main.count(), 2);

    // A GET has no body to wait for.
    let _ = TestClient::new(addr).get("web.shop:9080", "/get").await;
    bounded("mirror copy", shadow.wait_for(3)).await;

    let metrics = eventually("mirror metrics", async || {
        let (_, m) = admin_get(&wp, "/stats/prometheus").await;
        let ok = ["copied", "too_large", "none"].iter().all(|b| {
            m.contains(&format!(
                "waypoint_mirror_requests_total{{body=\"{b}\",destination_service=\"shadow.shop.svc.cluster.local\"}} 1"
            ))
        });
        if ok { Ok(m) } else { Err(m) }
    })
    .await;
    assert!(metrics.contains("waypoint_mirror_requests_total"));
    wp.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_replay_bodies_that_fit_the_buffer_and_not_larger_ones() {
    let flaky = echo("flaky", "127.0.136.11:9080").await;
    let mut yaml = service("shop", "flaky", 9080, 9080, &["127.0.136.11"]);
    yaml += "---\napiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: flaky, namespace: shop}\nspec:\n  hosts: [flaky]\n  http:\n  - retries: {attempts: 2, retryOn: 5xx}\n    route: [{destination: {host: flaky}}]\n";
    let config = ConfigDir::new(&yaml);
    let wp = waypoint(&config, "shop").await;
    let addr = wp.http_addr.unwrap();

    // 32 KiB fits Pingora's 64 KiB retry buffer: replayed whole.
    flaky.fail_next(1, 503);
    let r = post(addr, "flaky.shop:9080", "/fits", vec![b'a'; 32 * 1024]).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.echo().unwrap().body_len, 32 * 1024);
    assert_eq!(flaky.count(), 2, "one failure, one retry");

    // 1 MiB does not: the first answer stands, as Envoy does past its buffer.
    flaky.fail_next(1, 503);
    let r = post(addr, "flaky.shop:9080", "/large", vec![b'b'; 1024 * 1024]).await;
    assert_eq!(r.status, 503);
    assert_eq!(flaky.count(), 3, "not retried");
    wp.shutdown().await;
}

/// A workload whose response body is 40 chunks, 30 ms apart.
async fn dripping(addr: &str) {
    use futures::StreamExt;
    let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            tokio::spawn(async move {
                let service = hyper::service::service_fn(|_req| async {
                    let chunks = futures::stream::iter(0..40).then(|i| async move {
                        tokio::time::sleep(std::time::Duration::from_millis(30)).await;
                        Ok::<_, std::convert::Infallible>(hyper::body::Frame::data(Bytes::from(
                            format!("chunk {i}\n"),
                        )))
                    });
                    Ok::<_, std::convert::Infallible>(http::Response::new(
                        http_body_util::StreamBody::new(chunks),
                    ))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(tcp), service)
                    .await;
            });
        }
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_response_still_streaming_past_the_route_timeout_is_cut() {
    dripping("127.0.136.21:9080").await;
    let mut yaml = service("shop", "drip", 9080, 9080, &["127.0.136.21"]);
    yaml += "---\napiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: drip, namespace: shop}\nspec:\n  parentRefs: [{group: \"\", kind: Service, name: drip, port: 9080}]\n  rules:\n  - backendRefs: [{name: drip, port: 9080}]\n    timeouts: {request: 300ms}\n";
    let config = ConfigDir::new(&yaml);
    let wp = waypoint(&config, "shop").await;
    // A plain GET (the fast path), then the same with a body (the full proxy).
    for body in [None, Some("x")] {
        let mut request = String::from("GET /drip HTTP/1.1\r\nHost: drip.shop:9080\r\n");
        if let Some(b) = body {
            request += &format!("Content-Length: {}\r\n", b.len());
            request += "\r\n";
            request += b;
        } else {
            request += "\r\n";
        }
        let mut tcp = tokio::net::TcpStream::connect(wp.http_addr.unwrap())
            .await
            .unwrap();
        tcp.write_all(request.as_bytes()).await.unwrap();
        let mut seen = Vec::new();
        bounded("the waypoint closes", tcp.read_to_end(&mut seen))
            .await
            .unwrap_or_default();
        let text = String::from_utf8_lossy(&seen);
        assert!(text.starts_with("HTTP/1.1 200"), "{text}");
        assert!(!text.contains("chunk 39"), "cut before the end: {text}");
        assert!(
            !text.ends_with("0\r\n\r\n"),
            "never finished as if whole: {text}"
        );
    }
    requests_eventually(
        &wp,
        &["destination_service_name=\"drip\"", "response_flags=\"UT\""],
        2,
    )
    .await;
    wp.shutdown().await;
}
