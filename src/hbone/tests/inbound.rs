use std::collections::HashSet;
use std::net::SocketAddr;

use h2::Reason;
use http::{Method, Request, StatusCode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::support::*;
use crate::hbone::{ConnectTarget, InboundConfig, Sniffed};

#[tokio::test]
async fn connect_is_answered_200_and_bytes_echo_with_eof() {
    let mesh = Mesh::new();
    let mut server = Server::start(&mesh.waypoint, Mode::Echo).await;
    let client = within(h2_client(server.addr, &mesh.client)).await;
    let headers = [
        (
            "baggage",
            "k8s.cluster.name=Kubernetes,k8s.namespace.name=default,k8s.deployment.name=sleep,service.name=sleep,service.version=v1",
        ),
        ("forwarded", "for=\"10.0.0.7:41234\";host=reviews.default.svc.cluster.local"),
        ("traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"),
    ];
    let (status, stream) =
        within(open(&client, Method::CONNECT, "10.96.0.12:9080", &headers)).await;
    assert_eq!(status, StatusCode::OK);
    let mut stream = stream.expect("tunnel");

    // Both directions, then EOF each way: our END_STREAM ends the server's read loop, its
    // END_STREAM ends ours.
    let payload: Vec<u8> = (0..200_000u32).map(|i| i as u8).collect();
    let back = within(round_trip(&mut stream, &payload)).await;
    assert_eq!(back.len(), payload.len());
    assert!(back == payload);

    let seen = within(server.seen.recv()).await.expect("seen");
    assert_eq!(seen.req.peer.to_string(), ZTUNNEL_ID);
    assert_eq!(
        seen.req.target,
        ConnectTarget::Addr("10.96.0.12:9080".parse().expect("addr"))
    );
    assert_eq!(seen.req.baggage.namespace.as_deref(), Some("default"));
    assert_eq!(seen.req.baggage.workload_name(), Some("sleep"));
    assert_eq!(seen.req.baggage.service_version.as_deref(), Some("v1"));
    assert_eq!(
        seen.req.forwarded_for,
        Some("10.0.0.7".parse().expect("ip"))
    );
    assert!(seen
        .req
        .traceparent
        .as_deref()
        .is_some_and(|t| t.starts_with("00-0af7")));
    assert_eq!(seen.req.peer_addr.ip(), server.addr.ip());
    // Pingora's client address is the original client from `forwarded`, with its port.
    assert_eq!(
        seen.digest_peer,
        Some("10.0.0.7:41234".parse().expect("addr"))
    );
    server.stop().await;
}

#[tokio::test]
async fn hostname_target_is_accepted_and_client_addr_falls_back_to_ztunnel() {
    let mesh = Mesh::new();
    let mut server = Server::start(&mesh.waypoint, Mode::Echo).await;
    let client = within(h2_client(server.addr, &mesh.client)).await;
    let (status, stream) = within(open(
        &client,
        Method::CONNECT,
        "reviews.default.svc.cluster.local:9080",
        &[],
    ))
    .await;
    assert_eq!(status, StatusCode::OK);
    drop(stream);
    let seen = within(server.seen.recv()).await.expect("seen");
    assert_eq!(
        seen.req.target,
        ConnectTarget::Host {
            name: "reviews.default.svc.cluster.local".into(),
            port: 9080
        }
    );
    assert_eq!(seen.digest_peer, Some(seen.req.peer_addr));
}

#[tokio::test]
async fn non_connect_is_400() {
    let mesh = Mesh::new();
    let server = Server::start(&mesh.waypoint, Mode::Echo).await;
    let client = within(h2_client(server.addr, &mesh.client)).await;
    let (status, _) = within(open(&client, Method::GET, "https://10.0.0.1:80/", &[])).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = within(open(&client, Method::POST, "http://example.com/x", &[])).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn bad_authority_is_400() {
    let mesh = Mesh::new();
    let server = Server::start(&mesh.waypoint, Mode::Echo).await;
    let client = within(h2_client(server.addr, &mesh.client)).await;
    for authority in [
        "example.com",
        "10.0.0.1",
        "10.0.0.1:0",
        "bad_host!:80",
        "host:99999",
    ] {
        let (status, _) = within(open(&client, Method::CONNECT, authority, &[])).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "authority {authority}");
    }
}

#[tokio::test]
async fn handler_reject_is_sent_as_status() {
    let mesh = Mesh::new();
    let mut server = Server::start(
        &mesh.waypoint,
        Mode::Reject(StatusCode::SERVICE_UNAVAILABLE),
    )
    .await;
    let client = within(h2_client(server.addr, &mesh.client)).await;
    let (status, stream) = within(open(&client, Method::CONNECT, "10.0.0.1:80", &[])).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(stream.is_none());
    assert!(within(server.seen.recv()).await.is_some());
}

#[tokio::test]
async fn sniff_and_peek_see_the_first_bytes_and_reads_replay_them() {
    let mesh = Mesh::new();
    let mut server = Server::start(&mesh.waypoint, Mode::SniffThenEcho).await;
    let client = within(h2_client(server.addr, &mesh.client)).await;
    let cases: [(&[u8], Sniffed); 3] = [
        (b"GET / HTTP/1.1\r\nHost: a\r\n\r\n", Sniffed::Http1),
        (b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04", Sniffed::H2c),
        (b"\x16\x03\x01\x02\x00\x01", Sniffed::Other),
    ];
    for (bytes, want) in cases {
        let (_, stream) = within(open(&client, Method::CONNECT, "10.0.0.1:80", &[])).await;
        let mut stream = stream.expect("tunnel");
        let back = within(round_trip(&mut stream, bytes)).await;
        assert_eq!(back, bytes, "echo replays sniffed bytes");
        let seen = within(server.seen.recv()).await.expect("seen");
        assert_eq!(seen.sniffed, Some(want));
    }

    // A stream that ends before deciding is Other.
    let (_, stream) = within(open(&client, Method::CONNECT, "10.0.0.1:80", &[])).await;
    let back = within(round_trip(&mut stream.expect("tunnel"), b"GE")).await;
    assert_eq!(back, b"GE");
    assert_eq!(
        within(server.seen.recv()).await.expect("seen").sniffed,
        Some(Sniffed::Other)
    );
}

#[tokio::test]
async fn pingora_peek_and_proxy_digest() {
    let mesh = Mesh::new();
    let server = Server::start(&mesh.waypoint, Mode::Echo).await;
    let client = within(h2_client(server.addr, &mesh.client)).await;
    let (_, stream) = within(open(&client, Method::CONNECT, "10.0.0.1:80", &[])).await;
    let mut stream = stream.expect("tunnel");
    stream
        .write_all(b"GET / HTTP/1.1\r\n")
        .await
        .expect("write");

    // Our stream as Pingora would hold it (the client side is a TunnelStream too).
    stream.set_user_data(Box::new(String::from("caller")));
    let mut boxed: pingora_core::protocols::Stream = Box::new(stream);
    let user = boxed.get_proxy_digest().expect("proxy digest");
    let user = user.user_data.as_ref().expect("user data");
    assert_eq!(
        user.downcast_ref::<String>().map(String::as_str),
        Some("caller")
    );

    // Echoed bytes arrive; a 24-byte peek (Pingora's h2c probe) returns early on a mismatch
    // and does not consume.
    let mut probe = [0u8; 24];
    assert!(within(boxed.try_peek(&mut probe)).await.expect("peek"));
    assert_eq!(&probe[..3], b"GET");
    let mut line = [0u8; 16];
    within(boxed.read_exact(&mut line)).await.expect("read");
    assert_eq!(&line, b"GET / HTTP/1.1\r\n");
}

#[tokio::test]
async fn as_many_concurrent_streams_as_the_limit_on_one_connection() {
    let mesh = Mesh::new();
    let mut server = Server::start(&mesh.waypoint, Mode::Echo).await;
    let client = within(h2_client(server.addr, &mesh.client)).await;
    let mut tasks = Vec::new();
    // The server's SETTINGS_MAX_CONCURRENT_STREAMS (200, ztunnel's); a client that
    // opened more before reading the SETTINGS would see the excess refused.
    let n = InboundConfig::default().max_concurrent_streams;
    for i in 0..n {
        let client = client.clone();
        tasks.push(tokio::spawn(async move {
            let (status, stream) = open(&client, Method::CONNECT, "10.0.0.1:80", &[]).await;
            assert_eq!(status, StatusCode::OK);
            let mut stream = stream.expect("tunnel");
            let msg = i.to_be_bytes();
            // Echo first, then EOF both ways: exercises data and END_STREAM on every stream.
            stream.write_all(&msg).await.expect("write");
            let mut back = [0u8; 4];
            stream.read_exact(&mut back).await.expect("read");
            assert_eq!(back, msg);
            stream.shutdown().await.expect("shutdown");
            let mut rest = Vec::new();
            stream.read_to_end(&mut rest).await.expect("eof");
            assert!(rest.is_empty());
        }));
    }
    for t in tasks {
        within(t).await.expect("stream task");
    }
    let mut peers = HashSet::<SocketAddr>::new();
    for _ in 0..n {
        peers.insert(
            within(server.seen.recv())
                .await
                .expect("seen")
                .req
                .peer_addr,
        );
    }
    assert_eq!(peers.len(), 1, "all streams on one connection");
}

#[tokio::test]
async fn rapid_reset_does_not_wedge_the_server() {
    let mesh = Mesh::new();
    let cfg = InboundConfig::default();
    let server = Server::start_with(&mesh.waypoint, Mode::Echo, cfg).await;
    let attacker = within(h2_client(server.addr, &mesh.client)).await;

    // Open and immediately reset streams, tightly, a bounded number of times. The server
    // may close the attacking connection (ENHANCE_YOUR_CALM); either way this ends.
    let attack = async {
        let mut sent = 0u32;
        for _ in 0..5000 {
            let Ok(mut ready) = attacker.clone().ready().await else {
                break;
            };
            let req = Request::builder()
                .method(Method::CONNECT)
                .uri("10.0.0.1:80")
                .body(())
                .expect("request");
            let Ok((_resp, mut send)) = ready.send_request(req, false) else {
                break;
            };
            send.send_reset(Reason::CANCEL);
            sent += 1;
        }
        sent
    };
    let sent = within(attack).await;
    assert!(sent > 0);

    // Another client is still served promptly.
    let client = within(h2_client(server.addr, &mesh.client)).await;
    let (status, stream) = within(open(&client, Method::CONNECT, "10.0.0.1:80", &[])).await;
    assert_eq!(status, StatusCode::OK);
    let back = within(round_trip(&mut stream.expect("tunnel"), b"still here")).await;
    assert_eq!(back, b"still here");
    server.stop().await;
}

#[tokio::test]
async fn untrusted_client_never_reaches_the_handler() {
    let mesh = Mesh::new();
    let rogue = crate::test_helpers::ca::TestCa::new(TD);
    let dir = tempfile::tempdir().expect("tempdir");
    rogue
        .issue(ZTUNNEL_ID)
        .write_cert_dir(dir.path(), &mesh.ca.root_pem());
    let store = crate::identity::IdentityStore::load(crate::identity::CertDir::new(dir.path()))
        .expect("load");
    let mut server = Server::start(&mesh.waypoint, Mode::Echo).await;
    let attempt = async {
        let tcp = tokio::net::TcpStream::connect(server.addr).await?;
        let tls = tokio_rustls::TlsConnector::from(store.client_config(TD))
            .connect(
                rustls::pki_types::ServerName::IpAddress(server.addr.ip().into()),
                tcp,
            )
            .await?;
        // TLS 1.3 clients finish their handshake before the server checks their
        // certificate, so the refusal shows on the first request.
        let (sender, conn) = h2::client::handshake(tls)
            .await
            .map_err(std::io::Error::other)?;
        tokio::spawn(conn);
        let req = Request::builder()
            .method(Method::CONNECT)
            .uri("10.0.0.1:80")
            .body(())
            .expect("request");
        let mut ready = sender.ready().await.map_err(std::io::Error::other)?;
        let (resp, _send) = ready
            .send_request(req, false)
            .map_err(std::io::Error::other)?;
        resp.await.map_err(std::io::Error::other)?;
        Ok::<_, std::io::Error>(())
    };
    assert!(within(attempt).await.is_err());
    assert!(server.seen.try_recv().is_err());
    server.stop().await;
}
