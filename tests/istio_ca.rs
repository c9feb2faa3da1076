//! Certificates from Istio's CA: the waypoint requests its SPIFFE certificate from a fake
//! istiod (a real gRPC server over TLS), serves it on HBONE, renews it before expiry without
//! dropping open tunnels, and fails startup clearly when the CA is unreachable or refuses.

mod common;

use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use common::mesh::*;
use common::*;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use waypoint::identity::istio_ca::IstioCaConfig;
use waypoint::identity::{CertDir, IdentityStore};
use waypoint::server::{Running, StartError};
use waypoint::settings::Settings;
use waypoint::test_helpers::ca::{FakeCa, TestCa};

const TOKEN: &str = "projected-token-for-waypoint";
const ISTIOD: &str = "istiod.istio-system.svc";
const WAYPOINT_ID: &str = "spiffe://cluster.local/ns/shop/sa/waypoint";
const CLIENT_ID: &str = "spiffe://cluster.local/ns/client-ns/sa/sleep";

/// A pod's view of Istio: the root ConfigMap mount, the projected token, a cert dir.
struct Pod {
    dir: tempfile::TempDir,
}

impl Pod {
    fn new(ca: &TestCa, token: &str) -> Pod {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("root-cert.pem"), ca.root_pem()).unwrap();
        std::fs::write(dir.path().join("istio-token"), format!("{token}\n")).unwrap();
        Pod { dir }
    }

    /// Not created yet: the waypoint creates it.
    fn cert_dir(&self) -> PathBuf {
        self.dir.path().join("workload-spiffe-credentials")
    }

    fn ca_config(&self, ca_addr: SocketAddr, lifetime: Duration) -> IstioCaConfig {
        let mut cfg = IstioCaConfig::new(ca_addr.to_string().parse().unwrap(), "waypoint");
        cfg.server_name = Some(ISTIOD.into());
        cfg.root_cert = self.dir.path().join("root-cert.pem");
        cfg.token = self.dir.path().join("istio-token");
        cfg.cert_lifetime = lifetime;
        cfg
    }

    fn settings(&self, config: &ConfigDir, ca_addr: SocketAddr, lifetime: Duration) -> Settings {
        let mut s = settings(config, "shop");
        s.cert_dir = Some(self.cert_dir());
        s.hbone_listen = "127.0.0.1:0".parse().unwrap();
        s.ca = Some(self.ca_config(ca_addr, lifetime));
        s
    }
}

async fn fake_ca(ca: &Arc<TestCa>, ip: &str) -> FakeCa {
    bounded(
        "fake CA start",
        FakeCa::start(
            ca.clone(),
            format!("{ip}:0").parse().unwrap(),
            &[ISTIOD],
            TOKEN,
        ),
    )
    .await
    .expect("fake CA binds")
}

async fn start(s: Settings) -> Result<Running, StartError> {
    bounded("waypoint start", waypoint::server::start(s)).await
}

/// The leaf certificate the waypoint presents in a fresh HBONE handshake.
async fn presented_leaf(client: &IdentityStore, hbone: SocketAddr) -> Vec<u8> {
    let tcp = bounded("tcp connect", tokio::net::TcpStream::connect(hbone))
        .await
        .unwrap();
    let connector = tokio_rustls::TlsConnector::from(client.client_config("cluster.local"));
    let tls = bounded(
        "tls handshake",
        connector.connect(ServerName::IpAddress(hbone.ip().into()), tcp),
    )
    .await
    .expect("handshake with the waypoint");
    tls.get_ref().1.peer_certificates().expect("server cert")[0].to_vec()
}

fn uri_sans(der: &[u8]) -> Vec<String> {
    use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};
    let (_, cert) = X509Certificate::from_der(der).unwrap();
    let san = cert.subject_alternative_name().unwrap().expect("SAN");
    san.value
        .general_names
        .iter()
        .filter_map(|n| match n {
            GeneralName::URI(u) => Some((*u).to_owned()),
            _ => None,
        })
        .collect()
}

fn serial(der: &[u8]) -> Vec<u8> {
    use x509_parser::prelude::{FromDer, X509Certificate};
    X509Certificate::from_der(der)
        .unwrap()
        .1
        .raw_serial()
        .to_vec()
}

/// Waits until the waypoint's store holds the leaf the fake CA issued in request `index`.
async fn store_holds(running: &Running, fake: &FakeCa, index: usize) -> Vec<u8> {
    bounded(
        &format!("CA request #{index}"),
        fake.wait_for_requests(index + 1),
    )
    .await;
    let want = fake.requests()[index]
        .outcome
        .clone()
        .expect("request was answered with a certificate");
    let store = running.identity.as_ref().expect("HBONE identity");
    let mut generation = store.subscribe();
    bounded("store reload", async {
        while store.current().certified_key().cert[0].as_ref() != want.as_slice() {
            generation.changed().await.expect("store alive");
        }
    })
    .await;
    want
}

/// A TCP echo service on `ip:7000`, reached through the waypoint as `10.96.30.1:7000`.
async fn tcp_echo_mesh(ip: &str, vip: &str) -> ConfigDir {
    tcp_echo(&format!("{ip}:7000")).await;
    let yaml = service("shop", "db", 7000, 7000, &[ip])
        .replace("- name: http\n", "- name: tcp-db\n")
        .replace(
            "spec:\n  ports:",
            &format!("spec:\n  clusterIP: {vip}\n  ports:"),
        );
    ConfigDir::new(&yaml)
}

async fn echo_round(stream: &mut waypoint::hbone::TunnelStream, msg: &[u8]) {
    stream.write_all(msg).await.unwrap();
    let mut buf = vec![0u8; msg.len()];
    bounded("echo back", stream.read_exact(&mut buf))
        .await
        .expect("tunnel carries bytes");
    assert_eq!(buf, msg);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificate_from_the_ca_is_served_and_renewed_while_tunnels_stay_open() {
    let ca = Arc::new(TestCa::new("cluster.local"));
    let fake = fake_ca(&ca, "127.0.30.1").await;
    let pod = Pod::new(&ca, TOKEN);
    let config = tcp_echo_mesh("127.0.30.11", "10.96.30.1").await;
    let running = start(pod.settings(&config, fake.addr(), Duration::from_secs(4)))
        .await
        .expect("waypoint starts with a certificate from the CA");

    // The request istio-agent would send: our SPIFFE id in the CSR, the projected token,
    // the cluster id and the requested lifetime.
    let first = &fake.requests()[0];
    assert_eq!(first.sans, [WAYPOINT_ID]);
    assert_eq!(first.token.as_deref(), Some(TOKEN));
    assert_eq!(first.cluster_id.as_deref(), Some("Kubernetes"));
    assert_eq!(first.validity_seconds, 4);
    let issued_first = first.outcome.clone().expect("issued");

    // Written under Istio's names, the key private to its owner.
    let cert_dir = pod.cert_dir();
    for file in ["cert-chain.pem", "key.pem", "root-cert.pem"] {
        assert!(cert_dir.join(file).is_file(), "{file} written");
    }
    let mode = std::fs::metadata(cert_dir.join("key.pem"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    assert_eq!(
        std::fs::read_to_string(cert_dir.join("root-cert.pem")).unwrap(),
        ca.root_pem(),
        "root-cert.pem is the mounted mesh root"
    );

    // HBONE presents exactly the certificate the CA issued, for the waypoint's identity.
    let hbone = running.hbone_addr.expect("HBONE listener");
    let client = identity(&ca, pod.dir.path(), "client", CLIENT_ID);
    let presented = presented_leaf(&client, hbone).await;
    assert_eq!(presented, issued_first);
    assert_eq!(uri_sans(&presented), [WAYPOINT_ID]);

    // A tunnel opened with the first certificate.
    let headers = ztunnel_headers("10.0.0.9:1");
    let mut open = tunnel(&client, hbone, "10.96.30.1:7000", &headers)
        .await
        .expect("tunnel opens");
    echo_round(&mut open, b"before renewal").await;

    // At ~80 % of 4 s the waypoint asks again; new handshakes get the new certificate.
    let renewed = store_holds(&running, &fake, 1).await;
    let second = &fake.requests()[1];
    assert_eq!(second.sans, [WAYPOINT_ID]);
    assert_eq!(
        second.token.as_deref(),
        Some(TOKEN),
        "token re-read and sent again"
    );
    let presented = presented_leaf(&client, hbone).await;
    assert_ne!(serial(&presented), serial(&issued_first), "a new serial");
    assert!(
        fake.requests()
            .iter()
            .any(|r| r.outcome.as_deref() == Ok(presented.as_slice())),
        "the presented certificate was issued by the CA"
    );
    assert_ne!(renewed, issued_first);

    // The tunnel opened before the renewal still carries bytes, and new ones open.
    echo_round(&mut open, b"after renewal").await;
    let mut fresh = tunnel(&client, hbone, "10.96.30.1:7000", &headers)
        .await
        .expect("a new tunnel after renewal");
    echo_round(&mut fresh, b"new tunnel").await;
    drop((open, fresh));
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_renewal_is_retried_while_the_certificate_is_valid() {
    let ca = Arc::new(TestCa::new("cluster.local"));
    let fake = fake_ca(&ca, "127.0.30.2").await;
    let pod = Pod::new(&ca, TOKEN);
    let config = ConfigDir::new(&service("shop", "r", 80, 80, &["127.0.30.21"]));
    let running = start(pod.settings(&config, fake.addr(), Duration::from_secs(6)))
        .await
        .expect("waypoint starts");
    fake.refuse_next(1, tonic::Code::Unavailable);

    store_holds(&running, &fake, 2).await;
    let outcomes: Vec<_> = fake.requests().iter().map(|r| r.outcome.is_ok()).collect();
    assert_eq!(
        outcomes[..3],
        [true, false, true],
        "issued, refused, retried"
    );
    assert_eq!(fake.requests()[1].outcome, Err(tonic::Code::Unavailable));
    running.shutdown().await;
}

/// The certificate directory cannot be written (a full disk or a read-only mount) when a
/// renewal comes back: the files on disk stay a matching pair (no new key beside the old
/// certificate), the current certificate keeps serving, the renewal is retried, and once
/// the directory is writable again the new certificate is written and served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cert_dir_write_failure_keeps_the_current_certificate_and_retries() {
    let ca = Arc::new(TestCa::new("cluster.local"));
    let fake = fake_ca(&ca, "127.0.30.7").await;
    let pod = Pod::new(&ca, TOKEN);
    let config = ConfigDir::new(&service("shop", "r", 80, 80, &["127.0.30.71"]));
    // Renewed at ~80 % (9.6 s), retried 1 s after a failure: before it expires at 12 s.
    let running = start(pod.settings(&config, fake.addr(), Duration::from_secs(12)))
        .await
        .expect("waypoint starts");
    let issued_first = fake.requests()[0].outcome.clone().expect("issued");
    let cert_dir = pod.cert_dir();
    // Writing the certificate's temporary file fails from now on: its name is taken by
    // a directory the waypoint cannot remove (the same error path as ENOSPC or EROFS).
    let blocker = cert_dir.join(".cert-chain.pem.tmp");
    std::fs::create_dir(&blocker).unwrap();
    std::fs::write(blocker.join("in-the-way"), "x").unwrap();

    // The renewal is answered, its write fails, and it is retried: a third request.
    tokio::time::timeout(Duration::from_secs(20), fake.wait_for_requests(3))
        .await
        .expect("renewal retried within 20 s");
    let store = running.identity.as_ref().expect("HBONE identity");
    assert_eq!(
        store.current().certified_key().cert[0].as_ref(),
        issued_first.as_slice()
    );
    let on_disk = IdentityStore::load(CertDir::new(&cert_dir)).expect("the files still match");
    assert_eq!(
        on_disk.current().certified_key().cert[0].as_ref(),
        issued_first.as_slice()
    );
    assert!(
        !cert_dir.join(".key.pem.tmp").exists(),
        "no staged key left behind"
    );
    let client = identity(&ca, pod.dir.path(), "client", CLIENT_ID);
    let hbone = running.hbone_addr.expect("HBONE listener");
    assert_eq!(presented_leaf(&client, hbone).await, issued_first);

    std::fs::remove_dir_all(&blocker).unwrap();
    let mut generation = store.subscribe();
    bounded("a renewal written and served", async {
        while store.current().certified_key().cert[0].as_ref() == issued_first.as_slice() {
            generation.changed().await.expect("store alive");
        }
    })
    .await;
    assert_ne!(presented_leaf(&client, hbone).await, issued_first);
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_token_fails_startup_naming_the_ca() {
    let ca = Arc::new(TestCa::new("cluster.local"));
    let fake = fake_ca(&ca, "127.0.30.3").await;
    let pod = Pod::new(&ca, "a-token-istiod-does-not-accept");
    let config = ConfigDir::new(&service("shop", "r", 80, 80, &["127.0.30.31"]));
    let err = start(pod.settings(&config, fake.addr(), Duration::from_secs(60)))
        .await
        .err()
        .expect("startup fails");
    let msg = err.to_string();
    assert!(matches!(err, StartError::Ca(_)), "{msg}");
    assert!(msg.contains(&fake.addr().to_string()), "{msg}");
    assert!(msg.contains("Unauthenticated"), "{msg}");
    assert!(
        msg.contains("audience istio-ca"),
        "hint at the likely cause: {msg}"
    );
    let seen = fake.requests();
    assert_eq!(seen.len(), 1);
    assert_eq!(
        seen[0].token.as_deref(),
        Some("a-token-istiod-does-not-accept")
    );
    assert!(!pod.cert_dir().join("key.pem").exists(), "nothing written");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_ca_fails_startup_naming_the_address() {
    let ca = TestCa::new("cluster.local");
    let pod = Pod::new(&ca, TOKEN);
    // A port nobody listens on any more.
    let closed = std::net::TcpListener::bind("127.0.30.4:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let config = ConfigDir::new(&service("shop", "r", 80, 80, &["127.0.30.41"]));
    let err = start(pod.settings(&config, closed, Duration::from_secs(60)))
        .await
        .err()
        .expect("startup fails");
    let msg = err.to_string();
    assert!(
        msg.contains(&format!("cannot connect to the CA at {closed}")),
        "{msg}"
    );
    assert!(msg.to_lowercase().contains("connection refused"), "{msg}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ca_certificate_for_another_name_is_refused() {
    let ca = Arc::new(TestCa::new("cluster.local"));
    let fake = fake_ca(&ca, "127.0.30.5").await;
    let pod = Pod::new(&ca, TOKEN);
    let config = ConfigDir::new(&service("shop", "r", 80, 80, &["127.0.30.51"]));
    let mut s = pod.settings(&config, fake.addr(), Duration::from_secs(60));
    s.ca.as_mut().unwrap().server_name = Some("istiod.elsewhere.svc".into());
    let msg = start(s).await.err().expect("startup fails").to_string();
    assert!(msg.contains(&fake.addr().to_string()), "{msg}");
    assert!(msg.contains("istiod.elsewhere.svc"), "{msg}");
    assert!(
        fake.requests().is_empty(),
        "no request over an unverified connection"
    );
}

/// Runs the binary with `args` and returns (exit code, stderr), killing it after [`STEP`].
fn run_binary(args: &[&str]) -> (Option<i32>, String) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a test runtime");
    runtime.block_on(async {
        let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_waypoint"))
            .args(args)
            .env_remove("SERVICE_ACCOUNT")
            .env_remove("POD_NAMESPACE")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        // Exit, then stderr to its end; on timeout the dropped child is killed.
        let what = format!("waypoint {args:?} exits");
        let out = bounded(&what, child.wait_with_output()).await.unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    })
}

#[test]
fn the_cli_needs_a_service_account_and_names_an_unreachable_ca() {
    let ca = TestCa::new("cluster.local");
    let pod = Pod::new(&ca, TOKEN);
    let config = ConfigDir::new(&service("shop", "r", 80, 80, &["127.0.30.61"]));
    let closed = std::net::TcpListener::bind("127.0.30.6:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .to_string();
    let root = pod.dir.path().join("root-cert.pem");
    let token = pod.dir.path().join("istio-token");
    let cert_dir = pod.cert_dir();
    let config_path = config.path();
    let mut args = vec![
        "run",
        "--config",
        config_path.to_str().unwrap(),
        "--admin-listen",
        "127.0.0.1:0",
        "--hbone-listen",
        "127.0.0.1:0",
        "--cert-dir",
        cert_dir.to_str().unwrap(),
        "--ca-address",
        &closed,
        "--ca-root-cert",
        root.to_str().unwrap(),
        "--ca-token",
        token.to_str().unwrap(),
    ];
    let (code, stderr) = run_binary(&args);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("--service-account"), "{stderr}");

    args.extend(["--service-account", "waypoint", "--cert-lifetime", "1h"]);
    let (code, stderr) = run_binary(&args);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!("cannot connect to the CA at {closed}")),
        "{stderr}"
    );
}
