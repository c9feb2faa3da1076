//! `mint` and `serve`: the mesh around the waypoint. The backends are minimal HTTP/1.1
//! servers (a fixed body, `x-backend: <name>`) so that the load generator's core is spent on
//! the load and on the fake ztunnel, not on the backends; the fake destination ztunnel is the
//! tests' [`FakeZtunnel`], forwarding each CONNECT to its authority (the pod's address).

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use anyhow::Context;
use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::signal::unix::{signal, SignalKind};
use waypoint::identity::{CertDir, IdentityStore};
use waypoint::test_helpers::ca::TestCa;
use waypoint::test_helpers::ztunnel::FakeZtunnel;

/// Cert dir names under the `mint` directory, and the SPIFFE id each one holds.
const IDENTITIES: [(&str, &str); 3] = [
    ("waypoint", "ns/bench/sa/waypoint"),
    // The namespace matches the `baggage` the client sends (`client-ns`).
    ("client", "ns/client-ns/sa/sleep"),
    ("ztunnel", "ns/istio-system/sa/ztunnel"),
];

/// Writes a fresh CA's cert dirs (Istio's file names) for every identity under `dir`.
pub fn mint(dir: &Path, trust_domain: &str) -> anyhow::Result<()> {
    let ca = TestCa::new(trust_domain);
    for (name, path) in IDENTITIES {
        let sub = dir.join(name);
        std::fs::create_dir_all(&sub).with_context(|| format!("creating {}", sub.display()))?;
        ca.write_cert_dir(&sub, &format!("spiffe://{trust_domain}/{path}"));
    }
    Ok(())
}

/// Arguments of `serve`.
#[derive(clap::Args)]
pub struct ServeArgs {
    /// Cert dir of the fake destination ztunnel.
    #[arg(long)]
    certs: PathBuf,
    /// Listen address of the fake destination ztunnel (the pod IP, port 15008).
    #[arg(long)]
    ztunnel: SocketAddr,
    /// A backend as NAME=ADDR (repeatable), e.g. `mesh-pod=127.0.77.10:18080`.
    #[arg(long = "backend", required = true, value_parser = parse_backend)]
    backends: Vec<(String, SocketAddr)>,
    /// Response body size in bytes (Istio quotes its waypoint figures for 1 KB payloads).
    #[arg(long, default_value_t = 1024)]
    body_bytes: usize,
    /// Trust domain of the callers the ztunnel accepts.
    #[arg(long, default_value = "cluster.local")]
    trust_domain: String,
}

fn parse_backend(s: &str) -> Result<(String, SocketAddr), String> {
    let (name, addr) = s.split_once('=').ok_or("want NAME=ADDR")?;
    let addr = addr.parse().map_err(|e| format!("{addr}: {e}"))?;
    Ok((name.to_owned(), addr))
}

/// Serves until SIGINT or SIGTERM, then prints what the ztunnel and backends saw.
pub async fn run(args: ServeArgs) -> anyhow::Result<()> {
    let body = Bytes::from(vec![b'x'; args.body_bytes]);
    let mut counts = Vec::new();
    for (name, addr) in args.backends {
        let listener = TcpListener::bind(addr)
            .await
            .with_context(|| format!("backend {name} on {addr}"))?;
        let served = Arc::new(AtomicU64::new(0));
        counts.push((name.clone(), served.clone()));
        tokio::spawn(backend(listener, name, body.clone(), served));
    }

    let identity = IdentityStore::load(CertDir::new(&args.certs))
        .with_context(|| format!("ztunnel certs in {}", args.certs.display()))?;
    let listener = TcpListener::bind(args.ztunnel)
        .await
        .with_context(|| format!("fake ztunnel on {}", args.ztunnel))?;
    let ztunnel = Arc::new(FakeZtunnel::default());
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let serving = tokio::spawn(ztunnel.serve(listener, &identity, &args.trust_domain, stop_rx));
    // The script waits for this line.
    println!("ready");

    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    let _ = stop_tx.send(true);
    let _ = serving.await;

    // What went where: proves the mesh rows really crossed the fake ztunnel.
    let mut streams: BTreeMap<(String, String), u64> = BTreeMap::new();
    for seen in ztunnel.seen() {
        *streams.entry(seen).or_default() += 1;
    }
    for ((peer, target), n) in streams {
        println!("fake ztunnel: {n} CONNECT streams from {peer} to {target}");
    }
    for (name, served) in counts {
        println!(
            "backend {name}: {} requests",
            served.load(Ordering::Relaxed)
        );
    }
    Ok(())
}

/// Answers every request on `listener` with `200`, `x-backend: name` and `body`.
async fn backend(listener: TcpListener, name: String, body: Bytes, served: Arc<AtomicU64>) {
    let name = http::HeaderValue::from_str(&name).expect("backend names are header-safe");
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let (name, body, served) = (name.clone(), body.clone(), served.clone());
        let service = service_fn(move |_req: Request<Incoming>| {
            served.fetch_add(1, Ordering::Relaxed);
            let resp = Response::builder()
                .header("x-backend", name.clone())
                .body(Full::new(body.clone()))
                .expect("static response parts are valid");
            async move { Ok::<_, Infallible>(resp) }
        });
        tokio::spawn(
            hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(tcp), service),
        );
    }
}
