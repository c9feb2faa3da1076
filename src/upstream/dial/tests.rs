//! The dialer's one rule, and its errors: HBONE exactly for in-mesh endpoints
//! when the waypoint has an identity; a plain dial to a closed port fails
//! fast with the address named.

use std::sync::Arc;
use std::time::Duration;

use super::*;
use crate::identity::{CertDir, IdentityStore};
use crate::test_helpers::ca::TestCa;

const ADDR: &str = "127.0.9.1:9080";

fn target(in_mesh: bool) -> DialTarget {
    DialTarget {
        addr: ADDR.parse().unwrap(),
        in_mesh,
    }
}

fn identity(dir: &std::path::Path) -> Arc<IdentityStore> {
    let ca = TestCa::new("cluster.local");
    ca.write_cert_dir(dir, "spiffe://cluster.local/ns/shop/sa/waypoint");
    Arc::new(IdentityStore::load(CertDir::new(dir)).expect("test certs load"))
}

fn mesh_dialer(dir: &std::path::Path) -> Dialer {
    Dialer::with_hbone(
        identity(dir),
        "cluster.local",
        15008,
        Duration::from_secs(1),
    )
}

#[test]
fn without_an_identity_everything_is_plain() {
    let d = Dialer::plain(Duration::from_secs(1));
    assert_eq!(d.transport(target(true)), Transport::Plain);
    assert_eq!(d.transport(target(false)), Transport::Plain);
    assert!(d.own_identity().is_none());
}

#[tokio::test]
async fn in_mesh_endpoints_go_through_their_ztunnel() {
    let dir = tempfile::tempdir().unwrap();
    let d = mesh_dialer(dir.path());
    assert_eq!(
        d.transport(target(true)),
        Transport::Hbone {
            ztunnel: "127.0.9.1:15008".parse().unwrap()
        },
        "the ztunnel is on the pod's node: the pod IP at the HBONE port"
    );
    assert_eq!(d.transport(target(false)), Transport::Plain);
    assert_eq!(
        d.own_identity().map(|i| i.to_string()).as_deref(),
        Some("spiffe://cluster.local/ns/shop/sa/waypoint")
    );
}

#[tokio::test]
async fn an_hbone_peer_gets_the_tunnel_and_its_own_pool_group() {
    let dir = tempfile::tempdir().unwrap();
    let d = mesh_dialer(dir.path());
    let origin = Originator::default();
    let limit = Duration::from_secs(2);
    let mut plain = HttpPeer::new(ADDR, false, String::new());
    let lease = d.configure_peer(
        &mut plain,
        target(false),
        &origin,
        limit,
        ReuseLimits::default(),
    );
    assert!(lease.is_none(), "plain peers hold no tunnel lease");
    assert!(plain.options.custom_l4.is_none());
    let mut mesh = HttpPeer::new(ADDR, false, String::new());
    let lease = d.configure_peer(
        &mut mesh,
        target(true),
        &origin,
        limit,
        ReuseLimits::default(),
    );
    assert!(lease.is_some(), "HBONE peers hold a tunnel lease");
    assert!(mesh.options.custom_l4.is_some());
    assert_ne!(
        mesh.group_key, plain.group_key,
        "pooled plain connections never serve HBONE peers"
    );
    assert_eq!(mesh.options.total_connection_timeout, Some(limit));
    let mut h2 = HttpPeer::new(ADDR, false, String::new());
    h2.options.set_http_version(2, 2);
    let lease = d.configure_peer(
        &mut h2,
        target(true),
        &origin,
        limit,
        ReuseLimits::default(),
    );
    assert!(h2.options.custom_l4.is_some(), "HTTP/2 goes over HBONE too");
    assert!(
        lease.is_none(),
        "a tunnel that carried HTTP/2 is never kept"
    );
}

#[tokio::test]
async fn a_refused_plain_dial_names_the_address() {
    // Bind then drop: nothing listens on the port afterwards.
    let l = std::net::TcpListener::bind("127.0.9.2:0").unwrap();
    let addr = l.local_addr().unwrap();
    drop(l);
    let d = Dialer::plain(Duration::from_secs(2));
    let target = DialTarget {
        addr,
        in_mesh: false,
    };
    let err = d
        .connect(target, &Originator::default())
        .await
        .err()
        .expect("nothing listens");
    assert!(matches!(err, DialError::Tcp { .. }), "{err:?}");
    assert!(err.to_string().contains(&addr.to_string()), "{err}");
}
