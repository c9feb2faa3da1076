//! 1 GiB up and 1 GiB down through the `waypoint` binary, its resident memory
//! sampled from `/proc` meanwhile: bodies stream with backpressure, so the
//! waypoint's RSS stays bounded whatever the body size.

mod common;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::*;
use futures::stream::{self, StreamExt};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::{TokioExecutor, TokioIo};

const GIB: u64 = 1 << 30;
const CHUNK: usize = 64 * 1024;
/// The bound the README quotes for the waypoint's RSS while 1 GiB passes.
const RSS_BOUND_KIB: u64 = 64 * 1024;

type Streamed = StreamBody<stream::BoxStream<'static, Result<Frame<Bytes>, Infallible>>>;

/// `total` bytes in 64 KiB frames, made as they are read.
fn bytes_stream(total: u64) -> Streamed {
    let chunk = Bytes::from(vec![b'z'; CHUNK]);
    let frames = (total / CHUNK as u64) as usize;
    StreamBody::new(
        stream::iter(0..frames)
            .map(move |_| Ok(Frame::data(chunk.clone())))
            .boxed(),
    )
}

/// A workload that counts what it is sent (`POST /upload` → the count) and
/// streams what is asked for (`GET /download` → 1 GiB).
async fn sink_and_source(addr: &str) {
    let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            tokio::spawn(async move {
                let service =
                    hyper::service::service_fn(|req: http::Request<Incoming>| async move {
                        let body: Streamed = if req.uri().path() == "/download" {
                            bytes_stream(GIB)
                        } else {
                            let mut body = req.into_body();
                            let mut n = 0u64;
                            while let Some(frame) = body.frame().await {
                                if let Ok(data) = frame.map(|f| f.into_data()) {
                                    n += data.map(|d| d.len() as u64).unwrap_or(0);
                                }
                            }
                            let text = Bytes::from(n.to_string());
                            StreamBody::new(
                                stream::once(async move { Ok(Frame::data(text)) }).boxed(),
                            )
                        };
                        Ok::<_, Infallible>(http::Response::new(body))
                    });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tcp), service)
                    .await;
            });
        }
    });
}

fn vm_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn free_port() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gibibyte_each_way_streams_with_bounded_rss() {
    sink_and_source("127.0.137.11:9080").await;
    let config = ConfigDir::new(&service("shop", "bulk", 9080, 9080, &["127.0.137.11"]));
    let http = free_port();
    let admin = free_port();
    let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_waypoint"))
        .args(["run", "--namespace", "shop", "--config"])
        .arg(config.path())
        .args(["--http-listen", &http.to_string()])
        .args(["--admin-listen", &admin.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let pid = child.id().unwrap();
    // Polled: the binary is another process, seen only over the network.
    eventually("ready", async || {
        tokio::net::TcpStream::connect(http)
            .await
            .map(drop)
            .map_err(|e| e.to_string())
    })
    .await;
    let idle_kib = vm_rss_kib(pid).unwrap();

    // Sample the waypoint's RSS while the transfers run.
    let done = Arc::new(AtomicBool::new(false));
    let peak = Arc::new(AtomicU64::new(idle_kib));
    let sampler = tokio::spawn({
        let (done, peak) = (done.clone(), peak.clone());
        async move {
            while !done.load(Ordering::Relaxed) {
                if let Some(kib) = vm_rss_kib(pid) {
                    peak.fetch_max(kib, Ordering::Relaxed);
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    });

    let client: Client<HttpConnector, Streamed> =
        Client::builder(TokioExecutor::new()).build(HttpConnector::new());
    let transfers = async {
        let up = http::Request::post(format!("http://{http}/upload"))
            .header("host", "bulk.shop:9080")
            .header("content-length", GIB.to_string())
            .body(bytes_stream(GIB))
            .unwrap();
        let resp = client.request(up).await.unwrap();
        assert_eq!(resp.status(), 200);
        let counted = resp.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(String::from_utf8_lossy(&counted), GIB.to_string());

        let down = http::Request::get(format!("http://{http}/download"))
            .header("host", "bulk.shop:9080")
            .body(bytes_stream(0))
            .unwrap();
        let resp = client.request(down).await.unwrap();
        assert_eq!(resp.status(), 200);
        let mut body = resp.into_body();
        let mut received = 0u64;
        while let Some(frame) = body.frame().await {
            received += frame
                .unwrap()
                .into_data()
                .map(|d| d.len() as u64)
                .unwrap_or(0);
        }
        assert_eq!(received, GIB);
    };
    // Bounded like every step, with room for a debug build on a busy machine.
    tokio::time::timeout(Duration::from_secs(240), transfers)
        .await
        .expect("2 GiB through the waypoint within 4 minutes");
    done.store(true, Ordering::Relaxed);
    sampler.await.unwrap();
    drop(child);

    let peak_kib = peak.load(Ordering::Relaxed);
    eprintln!("waypoint RSS: idle {idle_kib} KiB, peak {peak_kib} KiB while 1 GiB went each way");
    assert!(
        peak_kib < RSS_BOUND_KIB,
        "peak RSS {peak_kib} KiB (idle {idle_kib} KiB) over the {RSS_BOUND_KIB} KiB bound"
    );
}
