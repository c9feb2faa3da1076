//! The disturbances, each a task on its own period, each checked to have done what it
//! should (a config or certificate change the waypoint never picked up is a failure too):
//!
//! - reload: one Service's file rewritten (its response header value changes), then the
//!   admin's config `generation` must rise within 5 s;
//! - kill: the retried Service's first endpoint stops (refusing connections, its open ones
//!   closed) and starts again on the same address a few seconds later;
//! - rotation: the waypoint's cert dir gets a fresh leaf from the same CA; the certificate's
//!   lifetime in `/config_dump` must grow, and an HBONE request on a new handshake must pass.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::{sleep, sleep_until, Instant};
use waypoint::hbone::{HbonePool, PoolConfig};
use waypoint::identity::IdentityStore;
use waypoint::test_helpers::ca::TestCa;

use crate::clients::hbone_probe;
use crate::mesh::{rewrite_service, Backends, KILLED, SERVICES};
use crate::process::config_facts;
use crate::record::Event;

/// How long a change may take to show in `/config_dump` (the config watcher and the cert
/// watcher both debounce for a fraction of this).
const APPLY_WITHIN: Duration = Duration::from_secs(5);

/// What the chaos tasks act on.
pub struct Chaos {
    pub start: Instant,
    pub config_dir: PathBuf,
    pub backends: Arc<Backends>,
    pub admin: SocketAddr,
    pub hbone: SocketAddr,
    pub ca: TestCa,
    pub waypoint_cert_dir: PathBuf,
    pub waypoint_id: String,
    pub client: Arc<IdentityStore>,
    pub events: Mutex<Vec<Event>>,
}

impl Chaos {
    fn event(&self, what: String, ok: bool, detail: &str) {
        let t = self.start.elapsed().as_secs_f64();
        let mark = if ok { "ok" } else { "FAILED" };
        println!("event at {t:.1}s: {what}: {mark} {detail}");
        self.events
            .lock()
            .expect("events lock")
            .push(Event { t, what, ok });
    }

    /// The events so far.
    pub fn take_events(&self) -> Vec<Event> {
        std::mem::take(&mut *self.events.lock().expect("events lock"))
    }
}

/// Runs `act` every `every` (first after one period) until `stop`.
async fn every<F, Fut>(c: &Arc<Chaos>, every: Duration, mut stop: watch::Receiver<bool>, act: F)
where
    F: Fn(Arc<Chaos>, u64) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    for n in 1u64.. {
        let due = c.start + every * n as u32;
        tokio::select! {
            _ = sleep_until(due) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        tokio::select! {
            _ = act(c.clone(), n) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}

/// Waits up to [`APPLY_WITHIN`] for `check` to hold; polling, since the waypoint is another
/// process and `/config_dump` is all it tells.
async fn within<F, Fut>(check: F) -> bool
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + APPLY_WITHIN;
    while Instant::now() < deadline {
        if check().await {
            return true;
        }
        sleep(Duration::from_millis(100)).await;
    }
    false
}

/// Config reloads every `period`, cycling over the Services' files.
pub async fn reloads(c: Arc<Chaos>, period: Duration, stop: watch::Receiver<bool>) {
    every(&c, period, stop, |c, n| async move {
        let svc = &SERVICES[n as usize % SERVICES.len()];
        let before = match config_facts(c.admin).await {
            Ok(f) => f.generation,
            Err(e) => return c.event(format!("reload {}", svc.name), false, &format!("{e:#}")),
        };
        if let Err(e) = rewrite_service(&c.config_dir, svc, n) {
            return c.event(format!("reload {}", svc.name), false, &format!("{e:#}"));
        }
        let admin = c.admin;
        let seen = within(|| async move {
            config_facts(admin)
                .await
                .is_ok_and(|f| f.generation > before)
        })
        .await;
        let detail = match config_facts(c.admin).await {
            Ok(f) if seen => format!("generation {before} -> {}", f.generation),
            Ok(f) => format!(
                "generation still {}; last_error {}",
                f.generation,
                f.last_error.as_deref().unwrap_or("none")
            ),
            Err(e) => format!("{e:#}"),
        };
        c.event(format!("reload {}", svc.name), seen, &detail);
    })
    .await;
}

/// Kills the retried Service's first endpoint every `period`, for `down`.
pub async fn kills(c: Arc<Chaos>, period: Duration, down: Duration, stop: watch::Receiver<bool>) {
    let name = format!("{}-0", SERVICES[KILLED].name);
    every(&c, period, stop, |c, _| {
        let name = name.clone();
        async move {
            c.backends.kill(KILLED, 0);
            c.event(format!("kill {name}"), true, "");
            sleep(down).await;
            // The old listener is closed at once, but allow the kernel a moment to agree.
            let mut result = Err(anyhow::anyhow!("not tried"));
            for _ in 0..20 {
                result = c.backends.restart(KILLED, 0).await;
                if result.is_ok() {
                    break;
                }
                sleep(Duration::from_millis(100)).await;
            }
            let detail = result.as_ref().err().map(|e| format!("{e:#}"));
            c.event(
                format!("restart {name}"),
                result.is_ok(),
                detail.as_deref().unwrap_or(""),
            );
        }
    })
    .await;
}

/// Rotates the waypoint's certificate every `period`.
pub async fn rotations(c: Arc<Chaos>, period: Duration, stop: watch::Receiver<bool>) {
    every(&c, period, stop, |c, _| async move {
        let what = "cert rotation".to_owned();
        let before = match config_facts(c.admin).await {
            Ok(f) => f.seconds_to_expiry.unwrap_or(i64::MIN),
            Err(e) => return c.event(what, false, &format!("{e:#}")),
        };
        // Blocking file writes, but three small files.
        c.ca.write_cert_dir(&c.waypoint_cert_dir, &c.waypoint_id);
        let admin = c.admin;
        // The new leaf was issued at least one period after the old one, so it expires later.
        let applied = within(|| async move {
            config_facts(admin)
                .await
                .is_ok_and(|f| f.seconds_to_expiry.unwrap_or(i64::MIN) > before)
        })
        .await;
        if !applied {
            return c.event(what, false, "the waypoint kept its old certificate");
        }
        // A new pool: a new TLS handshake, which must get (and accept) the new certificate.
        let pool = HbonePool::new(c.client.clone(), "cluster.local", PoolConfig::default());
        match hbone_probe(&pool, c.hbone, &SERVICES[0]).await {
            Ok(()) => c.event(
                what,
                true,
                "new certificate served; HBONE request on a new connection passed",
            ),
            Err(e) => c.event(what, false, &format!("HBONE on a new connection: {e}")),
        }
    })
    .await;
}
