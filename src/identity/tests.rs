use std::io;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ServerConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::timeout;
use tokio_rustls::{TlsAcceptor, TlsConnector};

use super::provider::crypto_provider;
use super::verify::SpiffeServerVerifier;
use super::*;
use crate::test_helpers::ca::TestCa;

const TD: &str = "cluster.local";
const WAYPOINT: &str = "spiffe://cluster.local/ns/app/sa/waypoint";
const CLIENT: &str = "spiffe://cluster.local/ns/app/sa/client";
const T: Duration = Duration::from_secs(10);

fn store_for(ca: &TestCa, id: &str) -> (tempfile::TempDir, Arc<IdentityStore>) {
    let dir = tempfile::tempdir().expect("tempdir");
    ca.write_cert_dir(dir.path(), id);
    let store = IdentityStore::load(CertDir::new(dir.path())).expect("load cert dir");
    (dir, Arc::new(store))
}

// ---- Identity ----------------------------------------------------------------------------

#[test]
fn identity_round_trips() {
    let id: Identity = "spiffe://cluster.local/ns/default/sa/bookinfo-productpage"
        .parse()
        .expect("valid id");
    assert_eq!(id.trust_domain(), "cluster.local");
    assert_eq!(id.namespace(), "default");
    assert_eq!(id.service_account(), "bookinfo-productpage");
    assert_eq!(
        id.to_string(),
        "spiffe://cluster.local/ns/default/sa/bookinfo-productpage"
    );
    assert_eq!(id.to_string().parse::<Identity>(), Ok(id));
}

#[test]
fn identity_rejects_bad_input() {
    let cases = [
        ("http://cluster.local/ns/a/sa/b", "scheme"),
        ("spiffe://cluster.local/ns/a", "shape"),
        ("spiffe://cluster.local/ns/a/sa/b/extra", "shape"),
        ("spiffe://cluster.local/sa/a/ns/b", "shape"),
        ("spiffe:///ns/a/sa/b", "segment"),
        ("spiffe://cluster.local/ns//sa/b", "segment"),
        ("spiffe://cluster.local/ns/a/sa/b c", "segment"),
        ("", "scheme"),
    ];
    for (input, want) in cases {
        let got = input.parse::<Identity>();
        let kind = match got {
            Err(IdentityParseError::Scheme(_)) => "scheme",
            Err(IdentityParseError::Shape(_)) => "shape",
            Err(IdentityParseError::Segment(_)) => "segment",
            Ok(_) => "ok",
        };
        assert_eq!(kind, want, "input {input:?}");
    }
}

// ---- CertDir ------------------------------------------------------------------------------

#[test]
fn cert_dir_loads_identity_and_expiry() {
    let ca = TestCa::new(TD);
    let (_dir, store) = store_for(&ca, WAYPOINT);
    assert_eq!(store.identity().to_string(), WAYPOINT);
    let left = store.seconds_to_expiry();
    assert!(left > 23 * 3600 && left <= 24 * 3600, "expiry in {left}s");
}

#[test]
fn cert_dir_errors_name_the_file() {
    let ca = TestCa::new(TD);

    // Missing files.
    let dir = tempfile::tempdir().expect("tempdir");
    match CertDir::new(dir.path()).load() {
        Err(IdentityError::Read { file, .. }) => assert!(file.ends_with(CERT_CHAIN_FILE)),
        other => panic!("want Read error, got {other:?}"),
    }

    // Garbage chain.
    ca.write_cert_dir(dir.path(), WAYPOINT);
    std::fs::write(dir.path().join(CERT_CHAIN_FILE), "hello").expect("write");
    match CertDir::new(dir.path()).load() {
        Err(IdentityError::NoCertificate { file }) => assert!(file.ends_with(CERT_CHAIN_FILE)),
        other => panic!("want NoCertificate, got {other:?}"),
    }

    // Leaf without a SPIFFE SAN.
    ca.issue("https://example.com/not-spiffe")
        .write_cert_dir(dir.path(), &ca.root_pem());
    match CertDir::new(dir.path()).load() {
        Err(e @ IdentityError::NoSpiffeId { .. }) => {
            assert!(e.to_string().contains(CERT_CHAIN_FILE), "{e}")
        }
        other => panic!("want NoSpiffeId, got {other:?}"),
    }

    // Key of another certificate.
    ca.write_cert_dir(dir.path(), WAYPOINT);
    std::fs::write(dir.path().join(KEY_FILE), ca.issue(WAYPOINT).key_pem).expect("write");
    match CertDir::new(dir.path()).load() {
        Err(IdentityError::BadKey { file, .. }) => assert!(file.ends_with(KEY_FILE)),
        other => panic!("want BadKey, got {other:?}"),
    }

    // Missing key.
    ca.write_cert_dir(dir.path(), WAYPOINT);
    std::fs::remove_file(dir.path().join(KEY_FILE)).expect("rm");
    match CertDir::new(dir.path()).load() {
        Err(IdentityError::Read { file, .. }) => assert!(file.ends_with(KEY_FILE)),
        other => panic!("want Read error for key, got {other:?}"),
    }

    // Empty roots.
    ca.write_cert_dir(dir.path(), WAYPOINT);
    std::fs::write(dir.path().join(ROOT_CERT_FILE), "").expect("write");
    match CertDir::new(dir.path()).load() {
        Err(IdentityError::NoCertificate { file }) => assert!(file.ends_with(ROOT_CERT_FILE)),
        other => panic!("want NoCertificate for roots, got {other:?}"),
    }
}

#[test]
fn failed_reload_keeps_old_material() {
    let ca = TestCa::new(TD);
    let (dir, store) = store_for(&ca, WAYPOINT);
    let before = store.current().serial().to_vec();
    std::fs::write(dir.path().join(KEY_FILE), "garbage").expect("write");
    assert!(store.reload().is_err());
    assert_eq!(store.current().serial(), &before[..]);
}

// ---- Handshakes -----------------------------------------------------------------------------

/// Runs one handshake over loopback and a one-byte exchange, so a TLS 1.3 client also learns
/// about a refusal that happens after its own handshake finished.
async fn handshake(
    server: Arc<ServerConfig>,
    client: Arc<ClientConfig>,
) -> (
    Result<Option<Identity>, io::Error>,
    Result<Vec<u8>, io::Error>,
) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let server_side = async move {
        let (tcp, _) = listener.accept().await?;
        let mut tls = TlsAcceptor::from(server).accept(tcp).await?;
        let peer = peer_identity(tls.get_ref().1);
        tls.write_all(b"x").await?;
        tls.flush().await?;
        Ok(peer)
    };
    let client_side = async move {
        let tcp = TcpStream::connect(addr).await?;
        let name = ServerName::IpAddress(addr.ip().into());
        let mut tls = TlsConnector::from(client).connect(name, tcp).await?;
        let mut b = [0u8; 1];
        tls.read_exact(&mut b).await?;
        Ok(tls.get_ref().1.peer_certificates().expect("server cert")[0].to_vec())
    };
    timeout(T, async { tokio::join!(server_side, client_side) })
        .await
        .expect("handshake finished in time")
}

fn rustls_error(e: &io::Error) -> Option<&rustls::Error> {
    e.get_ref()?.downcast_ref::<rustls::Error>()
}

#[tokio::test]
async fn trusted_client_in_trust_domain_is_accepted() {
    let ca = TestCa::new(TD);
    let (_d1, waypoint) = store_for(&ca, WAYPOINT);
    let (_d2, client) = store_for(&ca, CLIENT);
    let (s, c) = handshake(waypoint.server_config(TD), client.client_config(TD)).await;
    let peer = s.expect("server accepted").expect("peer id");
    assert_eq!(peer.to_string(), CLIENT);
    assert!(c.is_ok(), "{c:?}");
}

#[tokio::test]
async fn client_from_untrusted_ca_is_refused() {
    let ca = TestCa::new(TD);
    let rogue = TestCa::new(TD);
    let (_d1, waypoint) = store_for(&ca, WAYPOINT);
    // The rogue client trusts our CA (so it gets past its own check) but its cert is rogue's.
    let dir = tempfile::tempdir().expect("tempdir");
    rogue
        .issue(CLIENT)
        .write_cert_dir(dir.path(), &ca.root_pem());
    let client = IdentityStore::load(CertDir::new(dir.path())).expect("load");
    let (s, c) = handshake(waypoint.server_config(TD), client.client_config(TD)).await;
    let err = s.expect_err("server must refuse");
    // The rogue root has the same subject as ours, so webpki may report a bad signature
    // rather than an unknown issuer; both are "not trusted".
    let reason = rustls_error(&err).map(handshake_failure_reason);
    assert_eq!(reason, Some("certificate not trusted"), "{err:?}");
    assert!(c.is_err());
}

#[tokio::test]
async fn client_from_other_trust_domain_is_refused() {
    let ca = TestCa::new(TD);
    let (_d1, waypoint) = store_for(&ca, WAYPOINT);
    let (_d2, client) = store_for(&ca, "spiffe://other.domain/ns/app/sa/client");
    let (s, c) = handshake(waypoint.server_config(TD), client.client_config(TD)).await;
    let err = s.expect_err("server must refuse");
    let reason = rustls_error(&err).map(handshake_failure_reason);
    assert_eq!(reason, Some("trust domain mismatch"), "{err:?}");
    assert!(c.is_err());
}

#[tokio::test]
async fn client_without_certificate_is_refused() {
    let ca = TestCa::new(TD);
    let (_d1, waypoint) = store_for(&ca, WAYPOINT);
    let verifier = SpiffeServerVerifier {
        material: Arc::new(arc_swap::ArcSwap::new(waypoint.current())),
        trust_domain: TD.to_owned(),
    };
    let mut client = ClientConfig::builder_with_provider(crypto_provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .expect("tls13")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    client.alpn_protocols = vec![b"h2".to_vec()];
    let (s, c) = handshake(waypoint.server_config(TD), Arc::new(client)).await;
    let err = s.expect_err("server must refuse");
    let reason = rustls_error(&err).map(handshake_failure_reason);
    assert_eq!(reason, Some("no client certificate"), "{err:?}");
    assert!(c.is_err());
}

#[tokio::test]
async fn client_refuses_server_from_other_trust_domain() {
    let ca = TestCa::new(TD);
    let (_d1, waypoint) = store_for(&ca, "spiffe://other.domain/ns/app/sa/waypoint");
    let (_d2, client) = store_for(&ca, CLIENT);
    let (_s, c) = handshake(
        waypoint.server_config("other.domain"),
        client.client_config(TD),
    )
    .await;
    let err = c.expect_err("client must refuse");
    let reason = rustls_error(&err).map(handshake_failure_reason);
    assert_eq!(reason, Some("trust domain mismatch"), "{err:?}");
}

// ---- Rotation -------------------------------------------------------------------------------

#[tokio::test]
async fn rotation_applies_to_new_handshakes_and_keeps_open_connections() {
    let ca = TestCa::new(TD);
    let dir = tempfile::tempdir().expect("tempdir");
    let first = ca.write_cert_dir(dir.path(), WAYPOINT);
    let waypoint = Arc::new(IdentityStore::load(CertDir::new(dir.path())).expect("load"));
    let (_d2, client) = store_for(&ca, CLIENT);
    let server_cfg = waypoint.server_config(TD);
    let client_cfg = client.client_config(TD);

    // An open connection made with the first certificate.
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let acceptor = TlsAcceptor::from(server_cfg.clone());
    let echo = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.expect("accept");
        let mut tls = acceptor.accept(tcp).await.expect("tls accept");
        let mut buf = [0u8; 5];
        for _ in 0..2 {
            tls.read_exact(&mut buf).await.expect("read");
            tls.write_all(&buf).await.expect("write");
            tls.flush().await.expect("flush");
        }
    });
    let tcp = TcpStream::connect(addr).await.expect("connect");
    let mut open = timeout(
        T,
        TlsConnector::from(client_cfg.clone())
            .connect(ServerName::IpAddress(addr.ip().into()), tcp),
    )
    .await
    .expect("in time")
    .expect("tls connect");
    let mut buf = [0u8; 5];
    open.write_all(b"hello").await.expect("write");
    timeout(T, open.read_exact(&mut buf))
        .await
        .expect("in time")
        .expect("read");

    // Rotate: the watcher picks up the new files and reloads.
    let _watcher = waypoint.watch().expect("watch");
    let mut generation = waypoint.subscribe();
    let second = ca.write_cert_dir(dir.path(), WAYPOINT);
    timeout(T, async {
        while waypoint.current().certified_key().cert[0].as_ref() != second.cert_der.as_slice() {
            generation.changed().await.expect("store alive");
        }
    })
    .await
    .expect("reload observed");

    // A new handshake sees the new certificate.
    let (s, c) = handshake(server_cfg, client_cfg).await;
    assert!(s.is_ok(), "{s:?}");
    let seen = c.expect("client handshake");
    assert_eq!(seen, second.cert_der);
    assert_ne!(seen, first.cert_der);

    // The connection opened before the rotation still works.
    open.write_all(b"again").await.expect("write");
    timeout(T, open.read_exact(&mut buf))
        .await
        .expect("in time")
        .expect("read");
    assert_eq!(&buf, b"again");
    timeout(T, echo).await.expect("in time").expect("echo task");
}
