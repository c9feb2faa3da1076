use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::Arc;

use http::StatusCode;
use pingora_core::connectors::TransportConnector;
use pingora_core::upstreams::peer::HttpPeer;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::support::*;
use crate::hbone::{
    Baggage, Forwarded, HboneConnector, HboneError, HbonePool, OutboundHeaders, PoolConfig,
};

fn pool(mesh: &Mesh) -> HbonePool {
    HbonePool::new(mesh.waypoint.clone(), TD, PoolConfig::default())
}

fn target() -> SocketAddr {
    "127.0.1.11:8080".parse().expect("addr")
}

#[tokio::test]
async fn pool_reuses_one_connection_and_sends_metadata() {
    let mesh = Mesh::new();
    // The fake destination ztunnel is our own inbound server with the client identity.
    let mut ztunnel = Server::start(&mesh.client, Mode::Echo).await;
    let pool = pool(&mesh);
    let headers = OutboundHeaders {
        baggage: Some(Baggage {
            namespace: Some("app".into()),
            deployment: Some("waypoint".into()),
            ..Default::default()
        }),
        forwarded: Some(Forwarded::new("10.0.0.7:4444".parse().expect("addr"), None)),
        traceparent: Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".into()),
    };
    for i in 0..5u8 {
        let mut stream = within(pool.connect(ztunnel.addr, target(), &headers))
            .await
            .expect("connect");
        let back = within(round_trip(&mut stream, &[i; 10])).await;
        assert_eq!(back, [i; 10]);
    }
    assert_eq!(pool.connection_count(ztunnel.addr), 1);
    let mut peers = HashSet::new();
    for _ in 0..5 {
        let seen = within(ztunnel.seen.recv()).await.expect("seen");
        // The destination sees the waypoint's identity and our metadata.
        assert_eq!(seen.req.peer.to_string(), WAYPOINT_ID);
        assert_eq!(seen.req.target.addr(), Some(target()));
        assert_eq!(seen.req.baggage.workload_name(), Some("waypoint"));
        assert_eq!(
            seen.req.forwarded_for,
            Some("10.0.0.7".parse().expect("ip"))
        );
        assert!(seen.req.traceparent.is_some());
        peers.insert(seen.req.peer_addr);
    }
    assert_eq!(peers.len(), 1);
    ztunnel.stop().await;
}

#[tokio::test]
async fn pool_opens_a_second_connection_beyond_100_streams() {
    let mesh = Mesh::new();
    let mut ztunnel = Server::start(&mesh.client, Mode::Echo).await;
    let pool = pool(&mesh);
    let mut open_streams = Vec::new();
    for _ in 0..101 {
        let stream = within(pool.connect(ztunnel.addr, target(), &OutboundHeaders::default()))
            .await
            .expect("connect");
        open_streams.push(stream);
    }
    assert_eq!(pool.connection_count(ztunnel.addr), 2);
    let mut peers = HashSet::new();
    for _ in 0..101 {
        peers.insert(
            within(ztunnel.seen.recv())
                .await
                .expect("seen")
                .req
                .peer_addr,
        );
    }
    assert_eq!(peers.len(), 2);

    // Closing one stream frees a slot on the first connection: no third connection.
    drop(open_streams.remove(0));
    let _more = within(pool.connect(ztunnel.addr, target(), &OutboundHeaders::default()))
        .await
        .expect("connect");
    assert_eq!(pool.connection_count(ztunnel.addr), 2);
    ztunnel.stop().await;
}

#[tokio::test]
async fn pool_reports_non_200_and_connect_errors() {
    let mesh = Mesh::new();
    let ztunnel = Server::start(&mesh.client, Mode::Reject(StatusCode::SERVICE_UNAVAILABLE)).await;
    let pool = pool(&mesh);
    match within(pool.connect(ztunnel.addr, target(), &OutboundHeaders::default())).await {
        Err(HboneError::Status { status, .. }) => {
            assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE)
        }
        other => panic!("want Status error, got {other:?}"),
    }

    // Nothing listens on a port we just released.
    let closed = {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        l.local_addr().expect("addr")
    };
    match within(pool.connect(closed, target(), &OutboundHeaders::default())).await {
        Err(e @ HboneError::Connect { .. }) => {
            assert!(e.to_string().contains("15008"), "hint in {e}")
        }
        other => panic!("want Connect error, got {other:?}"),
    }
}

#[tokio::test]
async fn pool_refuses_a_ztunnel_from_another_trust_domain() {
    let mesh = Mesh::new();
    let dir = tempfile::tempdir().expect("tempdir");
    mesh.ca
        .write_cert_dir(dir.path(), "spiffe://other.domain/ns/x/sa/ztunnel");
    let foreign = crate::identity::IdentityStore::load(crate::identity::CertDir::new(dir.path()))
        .expect("load");
    // The server side trusts anything from our CA in "cluster.local"; the waypoint's client
    // config must refuse the server's foreign SAN.
    let ztunnel = Server::start(&foreign, Mode::Echo).await;
    match within(pool(&mesh).connect(ztunnel.addr, target(), &OutboundHeaders::default())).await {
        Err(HboneError::Tls { reason, .. }) => assert_eq!(reason, "trust domain mismatch"),
        other => panic!("want Tls error, got {other:?}"),
    }
}

#[tokio::test]
async fn pool_replaces_a_closed_connection() {
    let mesh = Mesh::new();
    let first = Server::start(&mesh.client, Mode::Echo).await;
    let addr = first.addr;
    let pool = pool(&mesh);
    let mut s = within(pool.connect(addr, target(), &OutboundHeaders::default()))
        .await
        .expect("connect");
    assert_eq!(within(round_trip(&mut s, b"one")).await, b"one");
    drop(s);
    // The ztunnel restarts on the same address: the old connection gets a GOAWAY and closes.
    first.stop().await;
    let second = Server::start_on(&mesh.client, Mode::Echo, addr).await;
    let mut s = within(pool.connect(addr, target(), &OutboundHeaders::default()))
        .await
        .expect("connect after restart");
    assert_eq!(within(round_trip(&mut s, b"two")).await, b"two");
    second.stop().await;
}

#[tokio::test]
async fn l4_connector_gives_pingora_a_working_stream() {
    let mesh = Mesh::new();
    let ztunnel = Server::start(&mesh.client, Mode::Echo).await;
    let connector = HboneConnector::new(
        pool(&mesh),
        ztunnel.addr,
        target(),
        OutboundHeaders::default(),
    );
    let mut peer = HttpPeer::new(target(), false, String::new());
    peer.options.custom_l4 = Some(Arc::new(connector));
    let transport = TransportConnector::new(None);
    let mut stream = within(transport.new_stream(&peer))
        .await
        .expect("pingora connect");
    stream.write_all(b"through pingora").await.expect("write");
    stream.flush().await.expect("flush");
    let mut back = [0u8; 15];
    within(stream.read_exact(&mut back)).await.expect("read");
    assert_eq!(&back, b"through pingora");
    ztunnel.stop().await;
}

#[tokio::test]
async fn idle_connections_are_reaped_and_busy_ones_kept() {
    let mesh = Mesh::new();
    let ztunnel = Server::start(&mesh.client, Mode::Echo).await;
    let cfg = PoolConfig {
        idle_timeout: std::time::Duration::ZERO,
        ..PoolConfig::default()
    };
    let pool = HbonePool::new(mesh.waypoint.clone(), TD, cfg);
    let busy = within(pool.connect(ztunnel.addr, target(), &OutboundHeaders::default()))
        .await
        .expect("connect");
    pool.reap_now();
    assert_eq!(
        pool.connection_count(ztunnel.addr),
        1,
        "a connection with a stream stays"
    );
    drop(busy);
    pool.reap_now();
    assert_eq!(
        pool.connection_count(ztunnel.addr),
        0,
        "an idle connection goes"
    );
    // The next call dials afresh.
    let mut s = within(pool.connect(ztunnel.addr, target(), &OutboundHeaders::default()))
        .await
        .expect("connect");
    assert_eq!(within(round_trip(&mut s, b"again")).await, b"again");
    ztunnel.stop().await;
}
