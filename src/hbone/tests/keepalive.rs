//! The keep-alive lease: a tunnel is kept only when Pingora let go of it idle and the
//! request ended cleanly, whichever happens first; everything else closes it.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::AsyncWriteExt;

use super::support::*;
use crate::hbone::{HbonePool, OutboundHeaders, PoolConfig, TunnelKeepalive, TunnelKey};
use crate::policy::conn_reuse::ReuseLimits;

const IDLE: Duration = Duration::from_secs(60);

fn key(ztunnel: SocketAddr) -> TunnelKey {
    TunnelKey {
        ztunnel,
        target: "127.0.1.31:8080".parse().expect("addr"),
        client: None,
    }
}

async fn setup() -> (Server, HbonePool, TunnelKeepalive) {
    let mesh = Mesh::new();
    let ztunnel = Server::start(&mesh.client, Mode::Echo).await;
    let pool = HbonePool::new(mesh.waypoint.clone(), TD, PoolConfig::default());
    (ztunnel, pool, TunnelKeepalive::new(IDLE))
}

async fn open_stream(pool: &HbonePool, k: &TunnelKey) -> crate::hbone::TunnelStream {
    within(pool.connect(k.ztunnel, k.target, &OutboundHeaders::default()))
        .await
        .expect("connect")
}

#[tokio::test]
async fn kept_whether_the_verdict_or_the_release_comes_first() {
    let (ztunnel, pool, keepalive) = setup().await;
    let k = key(ztunnel.addr);
    for verdict_first in [true, false] {
        let lease = keepalive.lease(k.clone(), IDLE, ReuseLimits::default());
        let mut tunnel = lease.connect_side().wrap(open_stream(&pool, &k).await);
        // One exchange through the echoing destination.
        tunnel.write_all(b"ping").await.expect("write");
        let mut back = [0u8; 4];
        tokio::io::AsyncReadExt::read_exact(&mut tunnel, &mut back)
            .await
            .expect("read");
        if verdict_first {
            lease.finish(true);
            drop(tunnel);
        } else {
            drop(tunnel);
            lease.finish(true);
        }
        assert_eq!(keepalive.idle_count(), 1, "verdict first: {verdict_first}");
        let kept = keepalive
            .checkout(&k, ReuseLimits::default())
            .expect("a live kept tunnel");
        drop(kept);
    }
}

#[tokio::test]
async fn not_kept_after_a_failed_exchange_a_shutdown_or_unread_bytes() {
    let (ztunnel, pool, keepalive) = setup().await;
    let k = key(ztunnel.addr);

    // The request failed (or its lease was dropped unsettled).
    let lease = keepalive.lease(k.clone(), IDLE, ReuseLimits::default());
    drop(lease.connect_side().wrap(open_stream(&pool, &k).await));
    drop(lease);
    assert_eq!(keepalive.idle_count(), 0);

    // Pingora shut the connection down (it will not reuse it).
    let lease = keepalive.lease(k.clone(), IDLE, ReuseLimits::default());
    let mut tunnel = lease.connect_side().wrap(open_stream(&pool, &k).await);
    tunnel.shutdown().await.expect("shutdown");
    drop(tunnel);
    lease.finish(true);
    assert_eq!(keepalive.idle_count(), 0);

    // Mid-message: the destination's bytes arrived and nobody read them.
    let lease = keepalive.lease(k.clone(), IDLE, ReuseLimits::default());
    let mut stream = open_stream(&pool, &k).await;
    stream.write_all(b"unread").await.expect("write");
    within(stream.fill_peek(6, |_| false))
        .await
        .expect("echo arrives");
    drop(lease.connect_side().wrap(stream));
    lease.finish(true);
    assert_eq!(keepalive.idle_count(), 0, "unread bytes: not reusable");
}

#[tokio::test]
async fn a_tunnel_is_only_handed_to_its_own_key() {
    let (ztunnel, pool, keepalive) = setup().await;
    let k = key(ztunnel.addr);
    let lease = keepalive.lease(k.clone(), IDLE, ReuseLimits::default());
    drop(lease.connect_side().wrap(open_stream(&pool, &k).await));
    lease.finish(true);
    let other_client = TunnelKey {
        client: Some("10.0.0.9".parse().expect("ip")),
        ..k.clone()
    };
    assert!(keepalive
        .checkout(&other_client, ReuseLimits::default())
        .is_none());
    assert!(keepalive.checkout(&k, ReuseLimits::default()).is_some());
}

#[tokio::test]
async fn bytes_found_by_an_idle_probe_make_the_tunnel_unfit() {
    let (ztunnel, pool, keepalive) = setup().await;
    let k = key(ztunnel.addr);
    let lease = keepalive.lease(k.clone(), IDLE, ReuseLimits::default());
    let mut tunnel = lease.connect_side().wrap(open_stream(&pool, &k).await);
    tunnel.write_all(b"!").await.expect("write");
    // A one-byte read is how Pingora probes an idle connection; the echo answers it.
    let mut probe = [0u8; 1];
    let n = within(tokio::io::AsyncReadExt::read(&mut tunnel, &mut probe))
        .await
        .expect("read");
    assert_eq!(n, 1);
    drop(tunnel);
    lease.finish(true);
    assert_eq!(keepalive.idle_count(), 0, "stray bytes: not kept");
}
