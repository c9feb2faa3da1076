//! `waypoint demo`: the shipped demo mesh, end to end on one machine. Starts
//! an echo workload for every endpoint in the config (each pod is a loopback
//! address), starts the waypoint in front of them, sends a short burst of
//! traffic and prints which backend answered each kind of request.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;

use crate::config;
use crate::echo::EchoServer;
use crate::settings::Settings;

/// The demo's namespace: short names like `reviews` resolve in it.
const NAMESPACE: &str = "bookinfo";

/// (label, Host, path, extra header, how many).
type DemoCase<'a> = (&'a str, &'a str, &'a str, Option<(&'a str, &'a str)>, usize);

/// The shipped demo config (`config/` in the repository), built into the
/// binary so `waypoint demo` runs from any directory.
const SHIPPED: &[(&str, &str)] = &[
    ("namespace.yaml", include_str!("../config/namespace.yaml")),
    ("routes.yaml", include_str!("../config/routes.yaml")),
    ("workloads.yaml", include_str!("../config/workloads.yaml")),
];

/// The shipped config written out to a private directory for the run: the
/// waypoint reads and watches a config directory, and the demo runs it the
/// same way a user's `--config` would be run. Removed when dropped.
struct ShippedConfig(PathBuf);

impl ShippedConfig {
    fn write() -> anyhow::Result<Self> {
        let dir = std::env::temp_dir().join(format!("waypoint-demo-{}", std::process::id()));
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let shipped = ShippedConfig(dir);
        for (name, yaml) in SHIPPED {
            let path = shipped.0.join(name);
            std::fs::write(&path, yaml).with_context(|| format!("writing {}", path.display()))?;
        }
        Ok(shipped)
    }
}

impl Drop for ShippedConfig {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs the demo on `config` (the shipped config when `None`); returns after
/// `duration`, or on Ctrl-C when `None`.
pub async fn run(config: Option<&Path>, duration: Option<Duration>) -> anyhow::Result<()> {
    let (config_path, _shipped) = match config {
        Some(path) => (path.to_path_buf(), None),
        None => {
            let shipped = ShippedConfig::write()?;
            (shipped.0.clone(), Some(shipped))
        }
    };
    let config_path = config_path.as_path();
    let resources = config::load_path(config_path, NAMESPACE)
        .map_err(|e| anyhow::anyhow!("{e}"))
        .with_context(|| format!("loading {}", config_path.display()))?;
    let workloads = start_workloads(&resources).await?;
    println!("started {} echo workloads:", workloads.len());
    for w in &workloads {
        println!("  {:<14} {}", w.name, w.addr);
    }

    let mut settings = Settings::new(config_path);
    settings.namespace = NAMESPACE.to_string();
    settings.http_listen = Some(free_or_any("127.0.0.1:18080").await);
    settings.admin_listen = free_or_any("127.0.0.1:15000").await;
    let running = crate::server::start(settings)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let http = running.http_addr.context("plain listener is enabled")?;
    println!(
        "\nwaypoint listening on http://{http} (admin http://{})\n",
        running.admin_addr
    );

    let client = Client::builder(TokioExecutor::new()).build(HttpConnector::new());
    let cases: &[DemoCase] = &[
        (
            "reviews, end-user: jason",
            "reviews:9080",
            "/reviews/1",
            Some(("end-user", "jason")),
            20,
        ),
        (
            "reviews, anyone else (90/10 canary)",
            "reviews:9080",
            "/reviews/1",
            None,
            200,
        ),
        (
            "productpage (header added)",
            "productpage:9080",
            "/productpage",
            None,
            10,
        ),
        (
            "productpage /old/… (redirect)",
            "productpage:9080",
            "/old/index.html",
            None,
            5,
        ),
        ("unknown host", "nope:9080", "/", None, 5),
    ];
    println!("{:<38} {:>5}  answered by", "request", "sent");
    println!("{}", "-".repeat(78));
    for (label, host, path, header, n) in cases {
        let mut answered: BTreeMap<String, usize> = BTreeMap::new();
        for _ in 0..*n {
            let outcome = send(&client, http, host, path, *header).await;
            *answered.entry(outcome).or_default() += 1;
        }
        let summary: Vec<String> = answered.iter().map(|(k, v)| format!("{k} ×{v}")).collect();
        println!("{label:<38} {n:>5}  {}", summary.join(", "));
    }
    println!(
        "\nTry it:  curl -H 'Host: reviews:9080' -H 'end-user: jason' http://{http}/reviews/1\n\
         Metrics: curl http://{}/stats/prometheus | grep istio_requests_total\n\
         Config:  curl http://{}/config_dump\n",
        running.admin_addr, running.admin_addr
    );
    match duration {
        Some(d) => {
            println!("serving for {}s …", d.as_secs());
            tokio::select! {
                _ = tokio::time::sleep(d) => {}
                _ = crate::server::wait_for_signal() => {}
            }
        }
        None => {
            println!("serving until Ctrl-C …");
            crate::server::wait_for_signal().await;
        }
    }
    running.shutdown().await;
    drop(workloads);
    Ok(())
}

/// One echo server per distinct endpoint address in the EndpointSlices.
async fn start_workloads(resources: &config::Resources) -> anyhow::Result<Vec<EchoServer>> {
    let mut wanted: BTreeMap<SocketAddr, String> = BTreeMap::new();
    for slice in &resources.endpoint_slices {
        let s = &slice.object;
        for ep in &s.endpoints {
            let name = ep
                .target_ref
                .as_ref()
                .and_then(|r| r.name.clone())
                .map(|pod| workload_name(&pod))
                .unwrap_or_else(|| slice.key.name.clone());
            for addr in &ep.addresses {
                let Ok(ip) = addr.parse::<IpAddr>() else {
                    continue;
                };
                for port in s.ports.iter().filter_map(|p| p.port) {
                    wanted
                        .entry(SocketAddr::new(ip, port))
                        .or_insert_with(|| name.clone());
                }
            }
        }
    }
    let mut servers = Vec::new();
    for (addr, name) in wanted {
        let server = EchoServer::start(&name, addr)
            .await
            .with_context(|| format!("starting echo workload {name} on {addr}"))?;
        servers.push(server);
    }
    Ok(servers)
}

/// `reviews-v1-7d9f8c6b5-a1b2c` → `reviews-v1` (Deployment pods' naming).
fn workload_name(pod: &str) -> String {
    let parts: Vec<&str> = pod.split('-').collect();
    if parts.len() > 2 {
        parts[..parts.len() - 2].join("-")
    } else {
        pod.to_string()
    }
}

async fn free_or_any(preferred: &str) -> SocketAddr {
    let addr: SocketAddr = preferred.parse().expect("literal address");
    match tokio::net::TcpListener::bind(addr).await {
        Ok(l) => {
            drop(l);
            addr
        }
        Err(_) => SocketAddr::new(addr.ip(), 0),
    }
}

async fn send(
    client: &Client<HttpConnector, Empty<Bytes>>,
    waypoint: SocketAddr,
    host: &str,
    path: &str,
    header: Option<(&str, &str)>,
) -> String {
    let mut req = http::Request::get(format!("http://{waypoint}{path}")).header("host", host);
    if let Some((k, v)) = header {
        req = req.header(k, v);
    }
    let Ok(req) = req.body(Empty::new()) else {
        return "bad request".into();
    };
    match client.request(req).await {
        Ok(resp) => {
            let status = resp.status().as_u16();
            let backend = resp
                .headers()
                .get("x-backend")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            let location = resp
                .headers()
                .get("location")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            let _ = resp.into_body().collect().await;
            match (backend, location) {
                (Some(b), _) => b,
                (None, Some(l)) => format!("{status} → {l}"),
                (None, None) => format!("{status} from waypoint"),
            }
        }
        Err(e) => format!("error: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_file_of_the_shipped_config_is_built_in() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
        let mut on_disk: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        on_disk.sort();
        let built_in: Vec<&str> = SHIPPED.iter().map(|(name, _)| *name).collect();
        assert_eq!(on_disk, built_in);
    }

    #[test]
    fn the_written_config_loads_and_is_removed_afterwards() {
        let shipped = ShippedConfig::write().unwrap();
        let dir = shipped.0.clone();
        let resources = config::load_path(&dir, NAMESPACE).unwrap();
        assert!(!resources.http_routes.is_empty());
        drop(shipped);
        assert!(!dir.exists());
    }
}
