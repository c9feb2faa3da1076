//! The soak run, driven by `benches/soak.sh`: the release waypoint as a child process,
//! HTTP/1.1, h2c and HBONE clients at a fixed total rate over routes with retries, a fault
//! and a timeout, while the config is rewritten every 10 s, a backend is killed and restarted
//! every minute and the waypoint's certificate rotates every 5 minutes.
//!
//! Every request is judged: answered (2xx), failed by policy (the fault's 418, the timeout's
//! 504 for a request that asked for a longer backend delay) or failed unexpectedly (anything
//! else, which must never happen). Every 10 s it samples the waypoint's RSS, open fds, CPU
//! and the window's p50/p99; at the end it writes `soak.csv`, `soak.svg` and `summary.md`
//! and exits non-zero on any unexpected failure, a chaos event that did not take, an unclean
//! waypoint exit, or RSS growing more than `--max-rss-growth` percent after warm-up.
//!
//! A `harness = false` bench so it is built with the release profile and never by
//! `cargo test`; `cargo bench` alone only prints where to start.

mod chaos;
mod clients;
mod mesh;
mod plot;
#[path = "../mesh_path/proc_stat.rs"]
mod proc_stat;
mod process;
mod record;
mod summary;

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::watch;
use tokio::time::{sleep_until, Instant};
use waypoint::hbone::{HbonePool, PoolConfig};
use waypoint::identity::{CertDir, IdentityStore};
use waypoint::test_helpers::ca::TestCa;

use crate::chaos::Chaos;
use crate::clients::{Plan, Targets};
use crate::mesh::{Backends, NAMESPACE};
use crate::process::{WaypointArgs, WaypointProcess};
use crate::record::{quantile_ms, Proto, Recorder, Sample};

#[derive(Parser)]
#[command(name = "soak", about = "waypoint soak run (see benches/soak.sh)")]
pub struct Args {
    /// The waypoint binary.
    #[arg(long)]
    waypoint: PathBuf,
    /// Length of the run, seconds.
    #[arg(long, default_value_t = 1800)]
    duration: u64,
    /// Total requests/s over all clients.
    #[arg(long, default_value_t = 300)]
    rate: u32,
    /// Seconds after which RSS and fds must stay flat (pools, caches and the allocator fill up
    /// before).
    #[arg(long, default_value_t = 60)]
    warmup: u64,
    /// Directory for soak.csv, soak.svg, summary.md and waypoint.log.
    #[arg(long)]
    out: PathBuf,
    /// Client workers (connections) per protocol.
    #[arg(long, default_value_t = 8)]
    workers: usize,
    /// Sampling period, seconds.
    #[arg(long, default_value_t = 10)]
    sample_every: u64,
    /// Config rewrite period, seconds.
    #[arg(long, default_value_t = 10)]
    reload_every: u64,
    /// Backend kill period, seconds.
    #[arg(long, default_value_t = 60)]
    kill_every: u64,
    /// How long a killed backend stays down, seconds.
    #[arg(long, default_value_t = 5)]
    kill_for: u64,
    /// Certificate rotation period, seconds.
    #[arg(long, default_value_t = 300)]
    rotate_every: u64,
    /// Fail when RSS at the end exceeds the first sample after warm-up by this many percent.
    #[arg(long, default_value_t = 20.0)]
    max_rss_growth: f64,
    /// The waypoint's address: HTTP on :15001, admin :15000, HBONE :15008.
    #[arg(long, default_value = "127.0.209.1")]
    ip: Ipv4Addr,
    /// Clock ticks per second of /proc (`getconf CLK_TCK`).
    #[arg(long, default_value_t = 100)]
    clk_tck: u64,
}

const WAYPOINT_ID: &str = "spiffe://cluster.local/ns/soak/sa/waypoint";
const CLIENT_ID: &str = "spiffe://cluster.local/ns/client-ns/sa/sleep";

fn main() -> anyhow::Result<()> {
    // `cargo bench` runs every bench target with `--bench`; this one needs the script.
    if std::env::args().nth(1).as_deref() == Some("--bench") {
        println!("soak: run benches/soak.sh (this program is its driver)");
        return Ok(());
    }
    let args = Args::parse();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let passed = runtime.block_on(run(args))?;
    if !passed {
        std::process::exit(1);
    }
    Ok(())
}

/// The whole run; `Ok(false)` when the verdict is a failure.
async fn run(args: Args) -> anyhow::Result<bool> {
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    let work = tempfile::tempdir()?;
    let addr = |port| SocketAddr::V4(SocketAddrV4::new(args.ip, port));

    // Phase 1: certificates, backends, config, the waypoint.
    let ca = TestCa::new("cluster.local");
    let wp_certs = work.path().join("waypoint-certs");
    let client_certs = work.path().join("client-certs");
    let config_dir = work.path().join("config");
    for dir in [&wp_certs, &client_certs, &config_dir] {
        std::fs::create_dir_all(dir)?;
    }
    ca.write_cert_dir(&wp_certs, WAYPOINT_ID);
    ca.write_cert_dir(&client_certs, CLIENT_ID);
    let client =
        Arc::new(IdentityStore::load(CertDir::new(&client_certs)).context("client certs")?);
    let backends = Arc::new(Backends::start().await?);
    mesh::write_config(&config_dir)?;
    let wp_args = WaypointArgs {
        bin: args.waypoint.clone(),
        config_dir: config_dir.clone(),
        cert_dir: wp_certs.clone(),
        http: addr(15001),
        admin: addr(15000),
        hbone: addr(15008),
        namespace: NAMESPACE.into(),
        log: args.out.join("waypoint.log"),
    };
    let mut wp = WaypointProcess::start(&wp_args).await?;
    println!(
        "waypoint pid {} ready; {} req/s for {} s (warm-up {} s); log {}",
        wp.pid(),
        args.rate,
        args.duration,
        args.warmup,
        wp.log().display()
    );

    // Phase 2: clients and chaos, on one clock.
    let start = Instant::now() + Duration::from_millis(100);
    let end = start + Duration::from_secs(args.duration);
    let (stop_tx, stop_rx) = watch::channel(false);
    let rec = Arc::new(Recorder::default());
    let targets = Arc::new(Targets {
        http: wp_args.http,
        hbone: wp_args.hbone,
        hbone_pool: HbonePool::new(client.clone(), "cluster.local", PoolConfig::default()),
    });
    let n_workers = Proto::ALL.len() * args.workers.max(1);
    let gap = Duration::from_secs_f64(1.0 / f64::from(args.rate.max(1)));
    let mut tasks = Vec::new();
    for (p, proto) in Proto::ALL.into_iter().enumerate() {
        for i in 0..args.workers.max(1) {
            let global = i * Proto::ALL.len() + p;
            let plan = Plan {
                start,
                period: gap * n_workers as u32,
                offset: gap * global as u32,
            };
            tasks.push(tokio::spawn(clients::worker(
                proto,
                global,
                targets.clone(),
                rec.clone(),
                plan,
                stop_rx.clone(),
            )));
        }
    }
    let chaos = Arc::new(Chaos {
        start,
        config_dir,
        backends: backends.clone(),
        admin: wp.admin(),
        hbone: wp_args.hbone,
        ca,
        waypoint_cert_dir: wp_certs,
        waypoint_id: WAYPOINT_ID.into(),
        client,
        events: Mutex::default(),
    });
    let secs = Duration::from_secs;
    tasks.push(tokio::spawn(chaos::reloads(
        chaos.clone(),
        secs(args.reload_every),
        stop_rx.clone(),
    )));
    tasks.push(tokio::spawn(chaos::kills(
        chaos.clone(),
        secs(args.kill_every),
        secs(args.kill_for),
        stop_rx.clone(),
    )));
    tasks.push(tokio::spawn(chaos::rotations(
        chaos.clone(),
        secs(args.rotate_every),
        stop_rx.clone(),
    )));

    // Phase 3: sample until the end, a signal, or the waypoint dying.
    let mut sigint = signal(SignalKind::interrupt())?;
    let mut sigterm = signal(SignalKind::terminate())?;
    let mut sampler = Sampler::new(wp.pid(), args.clk_tck)?;
    let mut samples = Vec::new();
    let mut stopped_early = None;
    for n in 1u64.. {
        let due = (start + secs(args.sample_every * n)).min(end);
        tokio::select! {
            _ = sleep_until(due) => {}
            _ = sigint.recv() => stopped_early = Some("interrupted (SIGINT)".to_owned()),
            _ = sigterm.recv() => stopped_early = Some("interrupted (SIGTERM)".to_owned()),
        }
        if let Some(status) = wp.exited() {
            stopped_early = Some(format!("the waypoint exited mid-run ({status})"));
            break;
        }
        let generation = process::config_facts(wp.admin())
            .await
            .map_or(0, |f| f.generation);
        let t = (Instant::now() - start).as_secs_f64();
        samples.push(sampler.sample(t, &rec, generation)?);
        backends.clear_logs();
        let s = samples.last().expect("pushed above");
        println!(
            "t={:>5.0}s sent {} answered {} policy {} unexpected {} | p50 {} p99 {} ms | RSS {:.1} MiB, {} fds, {:.2} cores",
            s.t,
            s.counts.sent,
            s.counts.answered,
            s.counts.policy,
            s.counts.unexpected,
            fmt_ms(s.p50_ms),
            fmt_ms(s.p99_ms),
            s.rss_mib,
            s.fds,
            s.waypoint_cores,
        );
        if stopped_early.is_some() || due >= end {
            break;
        }
    }

    // Phase 4: stop the load, then the waypoint (gracefully: its exit status is checked).
    let _ = stop_tx.send(true);
    for t in tasks {
        let _ = t.await;
    }
    let exit = wp.stop().await;
    let events = chaos.take_events();
    let verdict = summary::Verdict {
        args: &args,
        samples: &samples,
        events: &events,
        rec: &rec,
        waypoint_exit: exit.map_err(|e| format!("{e:#}")).and_then(|s| {
            if s.success() {
                Ok(())
            } else {
                Err(format!("waypoint exited with {s}"))
            }
        }),
        stopped_early,
    };
    verdict.write()
}

fn fmt_ms(v: Option<f64>) -> String {
    v.map_or("-".into(), |v| format!("{v:.2}"))
}

/// Reads the waypoint's /proc entries and the recorder each period.
struct Sampler {
    pid: u32,
    clk_tck: u64,
    last: Option<(f64, u64, u64)>,
}

impl Sampler {
    fn new(pid: u32, clk_tck: u64) -> anyhow::Result<Sampler> {
        let mut s = Sampler {
            pid,
            clk_tck,
            last: None,
        };
        s.last = Some((
            0.0,
            proc_stat::cpu_ticks(pid)?,
            proc_stat::machine_task_ticks()?,
        ));
        Ok(s)
    }

    fn sample(&mut self, t: f64, rec: &Recorder, generation: u64) -> anyhow::Result<Sample> {
        let (counts, mut window) = rec.take_window();
        window.sort_unstable();
        let cpu = proc_stat::cpu_ticks(self.pid)?;
        let machine = proc_stat::machine_task_ticks()?;
        let (t0, cpu0, machine0) = self
            .last
            .replace((t, cpu, machine))
            .unwrap_or((0.0, cpu, machine));
        let cores = |ticks: u64| ticks as f64 / self.clk_tck as f64 / (t - t0).max(1e-3);
        let fds = std::fs::read_dir(format!("/proc/{}/fd", self.pid))
            .with_context(|| format!("listing /proc/{}/fd", self.pid))?
            .count();
        Ok(Sample {
            t,
            counts,
            window_answered: window.len(),
            p50_ms: quantile_ms(&window, 0.50),
            p99_ms: quantile_ms(&window, 0.99),
            rss_mib: proc_stat::rss_kib(self.pid)? as f64 / 1024.0,
            fds,
            waypoint_cores: cores(cpu - cpu0),
            machine_cores: cores(machine - machine0),
            generation,
        })
    }
}
