//! The load: a fixed total rate split evenly over HTTP/1.1 keep-alive, h2c (prior
//! knowledge) and HBONE clients, each request's outcome judged by the route it went to.
//!
//! Each worker owns its connections and sends on its own evenly spaced slots, the workers'
//! slots interleaved, so the rate is held without bursts. A worker's slots rotate over the
//! Services; every 20th request to the timeout Service asks the backend for a 1 s delay
//! (5 %, deterministic, so two runs send the same mix). HTTP/1.1 and h2c workers route by
//! `Host` over one connection; an HBONE worker keeps one CONNECT tunnel (HTTP/1.1 inside)
//! per Service, since the tunnel's target is the destination, all its tunnels multiplexed on
//! the HBONE pool's shared HTTP/2 connection, as a node's ztunnel does.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::StatusCode;
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::{sleep_until, timeout, Instant};
use waypoint::hbone::HbonePool;
use waypoint::test_helpers::ztunnel::ztunnel_headers;

use crate::mesh::{Behaviour, Service, SERVICES};
use crate::record::{Outcome, Proto, Recorder};

/// Upper bound for one request (the slowest legitimate one is the 200 ms route timeout).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// The backend delay asked for on the timeout route, well past its 200 ms.
const DELAY_MS: &str = "1000";
/// One request in this many to the timeout Service carries the delay.
const DELAY_EVERY: u64 = 20;

/// Where the clients go.
pub struct Targets {
    pub http: SocketAddr,
    pub hbone: SocketAddr,
    pub hbone_pool: HbonePool,
}

/// One worker's schedule.
#[derive(Clone, Copy)]
pub struct Plan {
    /// Slot 0 of worker 0.
    pub start: Instant,
    /// Time between two requests of one worker.
    pub period: Duration,
    /// This worker's first slot, after `start`.
    pub offset: Duration,
}

enum Sender {
    H1(http1::SendRequest<Empty<Bytes>>),
    H2(http2::SendRequest<Empty<Bytes>>),
}

impl Sender {
    /// Waits until the connection can take a request; an error means it is gone.
    async fn ready(&mut self) -> hyper::Result<()> {
        match self {
            Sender::H1(s) => s.ready().await,
            Sender::H2(s) => s.ready().await,
        }
    }

    async fn send(
        &mut self,
        req: http::Request<Empty<Bytes>>,
    ) -> hyper::Result<http::Response<hyper::body::Incoming>> {
        match self {
            Sender::H1(s) => s.send_request(req).await,
            Sender::H2(s) => s.send_request(req).await,
        }
    }
}

/// Opens the connection a worker of `proto` uses for `svc`.
async fn dial(proto: Proto, t: &Targets, svc: &Service, worker: usize) -> anyhow::Result<Sender> {
    Ok(match proto {
        Proto::Http1 => {
            let tcp = TcpStream::connect(t.http).await?;
            tcp.set_nodelay(true)?;
            let (send, conn) = http1::handshake(TokioIo::new(tcp)).await?;
            tokio::spawn(conn);
            Sender::H1(send)
        }
        Proto::H2c => {
            let tcp = TcpStream::connect(t.http).await?;
            tcp.set_nodelay(true)?;
            let (send, conn) = http2::handshake(TokioExecutor::new(), TokioIo::new(tcp)).await?;
            tokio::spawn(conn);
            Sender::H2(send)
        }
        Proto::Hbone => {
            // A distinct application client per worker, as `forwarded: for=` shows it.
            let client = SocketAddr::new(
                IpAddr::V4(Ipv4Addr::new(10, 1, 0, 1)),
                40_000 + worker as u16,
            );
            let stream = t
                .hbone_pool
                .connect(t.hbone, svc.authority(), &ztunnel_headers(client))
                .await?;
            let (send, conn) = http1::handshake(TokioIo::new(stream)).await?;
            tokio::spawn(conn);
            Sender::H1(send)
        }
    })
}

fn request(proto: Proto, svc: &Service, delayed: bool) -> http::Request<Empty<Bytes>> {
    let host = svc.host();
    let builder = match proto {
        // h2 carries the Host as `:authority`, from an absolute URI.
        Proto::H2c => http::Request::get(format!("http://{host}/")),
        Proto::Http1 | Proto::Hbone => http::Request::get("/").header(http::header::HOST, host),
    };
    let builder = if delayed {
        builder.header("x-echo-delay-ms", DELAY_MS)
    } else {
        builder
    };
    builder
        .body(Empty::new())
        .expect("static request parts are valid")
}

/// Judges an answer by the route it came from (see [`Behaviour`]).
fn judge(svc: &Service, delayed: bool, status: StatusCode) -> Outcome {
    match (svc.behaviour, status.as_u16()) {
        (Behaviour::Timeout, 504) if delayed => Outcome::Policy,
        (Behaviour::Timeout, code) if delayed => Outcome::Unexpected(format!(
            "status {code}: a 1 s delay passed the 200 ms timeout"
        )),
        (Behaviour::Fault, 418) => Outcome::Policy,
        (_, 200..=299) => Outcome::Answered,
        (_, code) => Outcome::Unexpected(format!("status {code}")),
    }
}

/// Sends one request; `Err` means the connection is unusable afterwards. For a non-2xx
/// answer, also what explains it: who answered (`x-backend` is the echo's) and the body's
/// start (the waypoint's local replies say why, e.g. `no healthy upstream`).
async fn exchange(
    send: &mut Sender,
    req: http::Request<Empty<Bytes>>,
) -> Result<(StatusCode, String), String> {
    let run = async {
        let resp = send.send(req).await?;
        let status = resp.status();
        let backend = resp
            .headers()
            .get("x-backend")
            .and_then(|v| v.to_str().ok())
            .map_or_else(|| "the waypoint".to_owned(), |b| format!("backend {b}"));
        let body = resp.into_body().collect().await?.to_bytes();
        let why = if status.is_success() {
            String::new()
        } else {
            let start = String::from_utf8_lossy(&body[..body.len().min(80)]).into_owned();
            format!("from {backend}, body {start:?}")
        };
        Ok::<_, hyper::Error>((status, why))
    };
    match timeout(REQUEST_TIMEOUT, run).await {
        Err(_) => Err("client timeout: no answer in 5 s".into()),
        Ok(Err(e)) => Err(format!("connection: {e}")),
        Ok(Ok(r)) => Ok(r),
    }
}

/// One client worker: sends on its slots until `stop` turns true.
pub async fn worker(
    proto: Proto,
    index: usize,
    targets: Arc<Targets>,
    rec: Arc<Recorder>,
    plan: Plan,
    mut stop: watch::Receiver<bool>,
) {
    // HTTP/1.1 and h2c share one connection over all Services; HBONE has one per Service.
    let mut conns: Vec<Option<Sender>> = (0..SERVICES.len()).map(|_| None).collect();
    let mut timeout_requests = 0u64;
    for slot in 0u32.. {
        // Phase 1: wait for the slot (or the stop).
        let due = plan.start + plan.offset + plan.period * slot;
        tokio::select! {
            _ = sleep_until(due) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        let svc_index = (slot as usize + index) % SERVICES.len();
        let svc = &SERVICES[svc_index];
        let delayed = svc.behaviour == Behaviour::Timeout && {
            timeout_requests += 1;
            timeout_requests.is_multiple_of(DELAY_EVERY)
        };
        let key = if proto == Proto::Hbone { svc_index } else { 0 };
        let sent = Instant::now();
        let t = sent - plan.start;

        // Phase 2: a usable connection. One found closed is re-dialled, not a failure: a
        // peer may close an idle keep-alive connection; a request it broke counts below.
        if let Some(conn) = conns[key].as_mut() {
            if conn.ready().await.is_err() {
                conns[key] = None;
                rec.reconnect();
            }
        }
        if conns[key].is_none() {
            match timeout(REQUEST_TIMEOUT, dial(proto, &targets, svc, index)).await {
                Ok(Ok(conn)) => conns[key] = Some(conn),
                Ok(Err(e)) => {
                    let o = Outcome::Unexpected(format!("connect: {e:#}"));
                    rec.record(t, proto, svc.name, sent.elapsed(), o);
                    continue;
                }
                Err(_) => {
                    let o = Outcome::Unexpected("connect: timed out".into());
                    rec.record(t, proto, svc.name, sent.elapsed(), o);
                    continue;
                }
            }
        }
        let conn = conns[key].as_mut().expect("dialled above");

        // Phase 3: the request, timed to the end of the body.
        let outcome = match exchange(conn, request(proto, svc, delayed)).await {
            Ok((status, why)) => match judge(svc, delayed, status) {
                Outcome::Unexpected(d) => Outcome::Unexpected(format!("{d}: {why}")),
                o => o,
            },
            Err(e) => {
                conns[key] = None;
                Outcome::Unexpected(e)
            }
        };
        rec.record(t, proto, svc.name, sent.elapsed(), outcome);
    }
}

/// One request to `svc` over a fresh HBONE pool (so a new TLS handshake): the check that
/// the waypoint's rotated certificate is served and accepted.
pub async fn hbone_probe(pool: &HbonePool, hbone: SocketAddr, svc: &Service) -> Result<(), String> {
    let targets = Targets {
        http: hbone,
        hbone,
        hbone_pool: pool.clone(),
    };
    let mut conn = timeout(REQUEST_TIMEOUT, dial(Proto::Hbone, &targets, svc, 999))
        .await
        .map_err(|_| "connect timed out".to_string())?
        .map_err(|e| format!("connect: {e:#}"))?;
    match exchange(&mut conn, request(Proto::Hbone, svc, false)).await? {
        (s, _) if s.is_success() => Ok(()),
        (s, _) => Err(format!("status {s}")),
    }
}
