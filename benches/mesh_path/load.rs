//! `load`: drives one path for a warm-up and a measured window, either at a fixed total
//! rate (requests evenly spaced over the connections, so 1,000 req/s is one request per
//! millisecond, not bursts) or closed-loop at saturation, and reports one JSON line.
//!
//! Each worker owns one HTTP/1.1 keep-alive connection: a TCP connection on the plain
//! path, a CONNECT stream on the HBONE path (one stream per application connection, as
//! ztunnel does), the streams spread over `--conns` HTTP/2 connections. Latency is measured
//! from the moment a request is sent to the end of its response body; in rate mode, a
//! request sent more than one period after its slot counts as `late` (the rate was not
//! held).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use serde_json::json;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::time::{sleep_until, timeout, Instant};
use waypoint::hbone::{HbonePool, PoolConfig};
use waypoint::identity::{CertDir, IdentityStore};
use waypoint::test_helpers::ztunnel::ztunnel_headers;

use crate::proc_stat::{cpu_ticks, machine_task_ticks, rss_kib};

/// Upper bound for one request, so a stuck target cannot hang the run.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// How often the measured process's RSS is read.
const RSS_EVERY: Duration = Duration::from_millis(250);

/// How the load reaches its target.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum Via {
    /// HTTP/1.1 over TCP to `--addr`.
    Http,
    /// HBONE: mTLS HTTP/2 CONNECT `--authority` through the HBONE peer at `--addr`, then
    /// HTTP/1.1 inside the stream.
    Hbone,
}

/// Arguments of `load`.
#[derive(clap::Args)]
pub struct LoadArgs {
    /// Test label (`rate`, `sat`).
    #[arg(long)]
    test: String,
    /// Row name.
    #[arg(long)]
    name: String,
    /// The row whose latency this row's "added" figures are measured against.
    #[arg(long)]
    baseline: Option<String>,
    #[arg(long, value_enum)]
    via: Via,
    /// Address dialled: the HTTP server, or the HBONE peer (waypoint or ztunnel).
    #[arg(long)]
    addr: SocketAddr,
    /// HBONE only: the CONNECT authority (Service `VIP:port` or `podIP:port`).
    #[arg(long)]
    authority: Option<SocketAddr>,
    /// HBONE only: the client's cert dir.
    #[arg(long)]
    certs: Option<PathBuf>,
    /// HBONE only: trust domain of the peer.
    #[arg(long, default_value = "cluster.local")]
    trust_domain: String,
    /// `Host` header of every request.
    #[arg(long)]
    host: String,
    /// Every response must carry this `x-backend` (else it counts as an error).
    #[arg(long)]
    expect_backend: Option<String>,
    /// HBONE only: HTTP/2 connections (client ztunnels) the streams are spread over.
    #[arg(long, default_value_t = 4)]
    conns: usize,
    /// Concurrent HTTP/1.1 connections (HBONE: CONNECT streams).
    #[arg(long, default_value_t = 16)]
    streams: usize,
    /// Total requests/s; 0 = closed loop (saturation).
    #[arg(long, default_value_t = 0)]
    rate: u32,
    /// Measured window, seconds.
    #[arg(long, default_value_t = 10)]
    duration: u64,
    /// Warm-up before the window, seconds (not counted).
    #[arg(long, default_value_t = 1)]
    warmup: u64,
    /// The proxy under test: its CPU over the window and its RSS are reported.
    #[arg(long)]
    pid: Option<u32>,
    /// Other processes of the run (backends, fake ztunnel): their CPU is reported.
    #[arg(long)]
    serve_pid: Option<u32>,
    /// Clock ticks per second of /proc (`getconf CLK_TCK`).
    #[arg(long, default_value_t = 100)]
    clk_tck: u64,
    /// Append the JSON line to this file too.
    #[arg(long)]
    out: Option<PathBuf>,
}

/// Opens the keep-alive connection of one worker.
enum Dialer {
    Http(SocketAddr),
    Hbone {
        pools: Vec<HbonePool>,
        peer: SocketAddr,
        authority: SocketAddr,
    },
}

type Sender = SendRequest<Empty<Bytes>>;

impl Dialer {
    fn new(args: &LoadArgs) -> anyhow::Result<Dialer> {
        Ok(match args.via {
            Via::Http => Dialer::Http(args.addr),
            Via::Hbone => {
                let certs = args.certs.as_ref().context("--certs is needed for hbone")?;
                let authority = args.authority.context("--authority is needed for hbone")?;
                let store = Arc::new(
                    IdentityStore::load(CertDir::new(certs))
                        .with_context(|| format!("client certs in {}", certs.display()))?,
                );
                // One pool per client ztunnel: each pool holds its own HTTP/2 connection.
                let pools = (0..args.conns.max(1))
                    .map(|_| {
                        HbonePool::new(store.clone(), &args.trust_domain, PoolConfig::default())
                    })
                    .collect();
                Dialer::Hbone {
                    pools,
                    peer: args.addr,
                    authority,
                }
            }
        })
    }

    async fn open(&self, worker: usize) -> anyhow::Result<Sender> {
        match self {
            Dialer::Http(addr) => {
                let tcp = TcpStream::connect(addr).await?;
                tcp.set_nodelay(true)?;
                handshake(tcp).await
            }
            Dialer::Hbone {
                pools,
                peer,
                authority,
            } => {
                // A distinct application client per stream, as `forwarded: for=` shows it.
                let port = 40_000 + (worker % 20_000) as u16;
                let client = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 1, 0, 1)), port);
                let stream = pools[worker % pools.len()]
                    .connect(*peer, *authority, &ztunnel_headers(client))
                    .await?;
                handshake(stream).await
            }
        }
    }
}

async fn handshake<T>(io: T) -> anyhow::Result<Sender>
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io)).await?;
    tokio::spawn(conn);
    Ok(send)
}

/// When each worker sends.
#[derive(Clone, Copy)]
struct Plan {
    start: Instant,
    measure_from: Instant,
    end: Instant,
    /// Rate mode: time between two requests of one worker, and this worker's first slot.
    paced: Option<(Duration, Duration)>,
}

/// What one worker saw inside the measured window.
#[derive(Default)]
struct Tally {
    latencies_ns: Vec<u64>,
    errors: u64,
    late: u64,
    first_error: Option<String>,
}

impl Tally {
    fn error(&mut self, in_window: bool, what: String) {
        if in_window {
            self.errors += 1;
        }
        self.first_error.get_or_insert(what);
    }
}

enum Outcome {
    Ok,
    /// The response was wrong; the connection is still usable.
    Wrong(String),
    /// The connection is gone.
    Broken(String),
}

async fn send_one(send: &mut Sender, host: &str, expect: Option<&str>) -> Outcome {
    let exchange = async {
        send.ready().await?;
        let req = http::Request::get("/")
            .header(http::header::HOST, host)
            .body(Empty::<Bytes>::new())
            .expect("static request parts are valid");
        let resp = send.send_request(req).await?;
        let status = resp.status();
        let backend = resp.headers().get("x-backend").cloned();
        resp.into_body().collect().await?;
        Ok::<_, hyper::Error>((status, backend))
    };
    match timeout(REQUEST_TIMEOUT, exchange).await {
        Err(_) => Outcome::Broken("request timed out".into()),
        Ok(Err(e)) => Outcome::Broken(e.to_string()),
        Ok(Ok((status, _))) if status != http::StatusCode::OK => {
            Outcome::Wrong(format!("status {status}"))
        }
        Ok(Ok((_, backend))) => match expect {
            Some(want) if backend.as_ref().and_then(|b| b.to_str().ok()) != Some(want) => {
                Outcome::Wrong(format!("x-backend {backend:?}, want {want}"))
            }
            _ => Outcome::Ok,
        },
    }
}

async fn worker(
    index: usize,
    mut conn: Option<Sender>,
    dialer: Arc<Dialer>,
    args: Arc<LoadArgs>,
    plan: Plan,
) -> Tally {
    let mut tally = Tally::default();
    let mut slot = 0u32;
    sleep_until(plan.start).await;
    loop {
        // Phase 1: wait for this worker's next slot (rate mode).
        if let Some((period, offset)) = plan.paced {
            let due = plan.start + offset + period * slot;
            slot += 1;
            if due >= plan.end {
                break;
            }
            let now = Instant::now();
            if due > now {
                sleep_until(due).await;
            } else if now - due > period && now >= plan.measure_from {
                tally.late += 1;
            }
        }
        let sent = Instant::now();
        if sent >= plan.end {
            break;
        }
        let in_window = sent >= plan.measure_from;
        // Phase 2: a connection (again, if the last one broke).
        let send = match conn.as_mut() {
            Some(send) => send,
            None => match dialer.open(index).await {
                Ok(send) => conn.insert(send),
                Err(e) => {
                    tally.error(in_window, format!("connect: {e:#}"));
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
        };
        // Phase 3: one request, timed to the end of its body.
        match send_one(send, &args.host, args.expect_backend.as_deref()).await {
            Outcome::Ok if in_window => {
                tally.latencies_ns.push(sent.elapsed().as_nanos() as u64);
            }
            Outcome::Ok => {}
            Outcome::Wrong(e) => tally.error(in_window, e),
            Outcome::Broken(e) => {
                tally.error(in_window, e);
                conn = None;
            }
        }
    }
    tally
}

/// CPU of each measured process over the window, and the machine's, in ticks.
#[derive(Default, Clone, Copy)]
struct CpuSnapshot {
    proxy: u64,
    serve: u64,
    client: u64,
    machine: u64,
}

fn snapshot(args: &LoadArgs) -> anyhow::Result<CpuSnapshot> {
    Ok(CpuSnapshot {
        proxy: args.pid.map(cpu_ticks).transpose()?.unwrap_or(0),
        serve: args.serve_pid.map(cpu_ticks).transpose()?.unwrap_or(0),
        client: cpu_ticks(std::process::id())?,
        machine: machine_task_ticks()?,
    })
}

/// Reads the proxy's RSS every [`RSS_EVERY`] until `end`; returns (first, max), KiB.
async fn watch_rss(pid: Option<u32>, end: Instant) -> anyhow::Result<(u64, u64)> {
    let Some(pid) = pid else {
        return Ok((0, 0));
    };
    let first = rss_kib(pid)?;
    let mut max = first;
    let mut next = Instant::now();
    while next < end {
        max = max.max(rss_kib(pid)?);
        next += RSS_EVERY;
        sleep_until(next.min(end)).await;
    }
    Ok((first, max.max(rss_kib(pid)?)))
}

fn percentile(sorted: &[u64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1] as f64 / 1e6
}

/// Runs one load test and prints its JSON line.
pub async fn run(args: LoadArgs) -> anyhow::Result<()> {
    if args.streams == 0 || args.duration == 0 {
        bail!("--streams and --duration must be positive");
    }
    let args = Arc::new(args);
    let dialer = Arc::new(Dialer::new(&args)?);

    // Phase 1: every connection is open before the clock starts.
    let mut conns = Vec::with_capacity(args.streams);
    for i in 0..args.streams {
        let send = timeout(REQUEST_TIMEOUT, dialer.open(i))
            .await
            .map_err(|_| anyhow::anyhow!("connection {i} timed out"))?
            .with_context(|| format!("opening connection {i} to {}", args.addr))?;
        conns.push(send);
    }

    // Phase 2: the schedule. Slots of the workers interleave evenly.
    let start = Instant::now() + Duration::from_millis(50);
    let measure_from = start + Duration::from_secs(args.warmup);
    let end = measure_from + Duration::from_secs(args.duration);
    let pace = |i: usize| {
        (args.rate > 0).then(|| {
            let gap = Duration::from_secs_f64(1.0 / f64::from(args.rate));
            (gap * args.streams as u32, gap * i as u32)
        })
    };
    let workers: Vec<_> = conns
        .into_iter()
        .enumerate()
        .map(|(i, send)| {
            let plan = Plan {
                start,
                measure_from,
                end,
                paced: pace(i),
            };
            tokio::spawn(worker(i, Some(send), dialer.clone(), args.clone(), plan))
        })
        .collect();

    // Phase 3: measure the processes over the window while the workers run.
    let rss = tokio::spawn(watch_rss(args.pid, end));
    sleep_until(measure_from).await;
    let before = snapshot(&args)?;
    sleep_until(end).await;
    let after = snapshot(&args)?;
    let mut tally = Tally::default();
    for w in workers {
        let t = w.await?;
        tally.latencies_ns.extend(t.latencies_ns);
        tally.errors += t.errors;
        tally.late += t.late;
        if tally.first_error.is_none() {
            tally.first_error = t.first_error;
        }
    }
    let (rss_first, rss_max) = rss.await??;

    // Phase 4: the figures.
    let secs = args.duration as f64;
    let ticks = |f: fn(&CpuSnapshot) -> u64| (f(&after) - f(&before)) as f64 / args.clk_tck as f64;
    let proxy_cores = ticks(|s| s.proxy) / secs;
    let serve_cores = ticks(|s| s.serve) / secs;
    let client_cores = ticks(|s| s.client) / secs;
    let machine_cores = ticks(|s| s.machine) / secs;
    let foreign_cores = (machine_cores - proxy_cores - serve_cores - client_cores).max(0.0);
    let lat = &mut tally.latencies_ns;
    lat.sort_unstable();
    let requests = lat.len() as u64;
    let rps = requests as f64 / secs;
    let line = json!({
        "test": args.test,
        "name": args.name,
        "baseline": args.baseline,
        "via": format!("{:?}", args.via).to_lowercase(),
        "rate_target": args.rate,
        "conns": if matches!(args.via, Via::Hbone) { args.conns } else { args.streams },
        "streams": args.streams,
        "duration_s": args.duration,
        "requests": requests,
        "errors": tally.errors,
        "first_error": tally.first_error,
        "late": tally.late,
        "rps": rps,
        "p50_ms": percentile(lat, 0.50),
        "p90_ms": percentile(lat, 0.90),
        "p99_ms": percentile(lat, 0.99),
        "max_ms": percentile(lat, 1.0),
        "proxy_cores": args.pid.map(|_| proxy_cores),
        "proxy_cores_per_1k_rps": args.pid.map(|_| proxy_cores / (rps / 1000.0)),
        "proxy_cpu_us_per_request": args.pid.map(|_| proxy_cores * 1e6 / rps),
        "proxy_rss_first_kib": args.pid.map(|_| rss_first),
        "proxy_rss_max_kib": args.pid.map(|_| rss_max),
        "serve_cores": serve_cores,
        "client_cores": client_cores,
        "foreign_cores": foreign_cores,
    });
    let text = line.to_string();
    println!("{text}");
    if let Some(out) = &args.out {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(out)
            .with_context(|| format!("appending to {}", out.display()))?;
        writeln!(f, "{text}")?;
    }
    Ok(())
}
