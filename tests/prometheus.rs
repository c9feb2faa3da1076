//! What operators see of the waypoint, end to end, with the `waypoint` binary:
//! the labels Kiali needs (destination principal and cluster), the access
//! log's client address for HBONE callers, TCP probes of the HBONE port, and a
//! real Prometheus (Debian's `prometheus`, installed by `.ci/run`) scraping
//! the metrics port while every kind of traffic flows, so that every query of
//! the shipped Grafana dashboard is run and must return data.
//!
//! Addresses: 127.0.180.0/24 and 127.0.181.0/24, one lane per test.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use waypoint::hbone::{Baggage, Forwarded, OutboundHeaders};
use waypoint::test_helpers::ca::TestCa;
use waypoint::test_helpers::ztunnel::FakeZtunnel;

use common::mesh::{http1_over, identity, tcp_echo, tunnel, CLIENT_ID, WAYPOINT_ID};
use common::{bounded, echo, eventually, ConfigDir, TestClient};

const BIN: &str = env!("CARGO_BIN_EXE_waypoint");
const CLUSTER: &str = "east-1";
const REVIEWS_PRINCIPAL: &str = "spiffe://cluster.local/ns/shop/sa/bookinfo-reviews";

fn free_port(ip: &str) -> SocketAddr {
    let l = std::net::TcpListener::bind(format!("{ip}:0")).expect("bind a free port");
    l.local_addr().expect("bound")
}

/// A child process in its own process group, killed (the whole group) on drop.
struct Proc(tokio::process::Child);

impl Proc {
    fn spawn(cmd: &mut tokio::process::Command) -> Proc {
        cmd.stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        Proc(cmd.spawn().expect("spawn"))
    }

    fn signal(&self, sig: &str) {
        if let Some(pid) = self.0.id() {
            let _ = std::process::Command::new("kill")
                .args([sig, "--", &format!("-{pid}")])
                .status();
        }
    }

    /// SIGTERM, then everything it wrote (stdout, stderr), bounded.
    async fn stop(mut self) -> (String, String) {
        self.signal("-TERM");
        let (mut out, mut err) = (String::new(), String::new());
        let mut stdout = self.0.stdout.take().expect("piped");
        let mut stderr = self.0.stderr.take().expect("piped");
        bounded("stdout", stdout.read_to_string(&mut out))
            .await
            .expect("stdout");
        bounded("stderr", stderr.read_to_string(&mut err))
            .await
            .expect("stderr");
        let _ = bounded("exit", self.0.wait()).await;
        (out, err)
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.signal("-KILL");
    }
}

/// Namespace `shop` in ambient: `reviews` (VIP `.10`, ports 9080 http and
/// 9000 tcp) on an in-mesh pod `.11` with service account `bookinfo-reviews`;
/// `web` (9080) on an out-of-mesh endpoint `.12`, with a connection pool of one
/// connection and one pending request (overflow → 503 `UO`); a Wasm plugin
/// that traps on requests carrying `x-trap` (failStrategy FAIL_OPEN).
fn mesh_yaml(net: &str, wasm: &Path) -> String {
    format!(
        r#"apiVersion: v1
kind: Namespace
metadata: {{name: shop, labels: {{istio.io/dataplane-mode: ambient}}}}
---
apiVersion: v1
kind: Service
metadata: {{name: reviews, namespace: shop}}
spec:
  clusterIP: {net}.10
  ports:
  - {{name: http, port: 9080, targetPort: 9080}}
  - {{name: tcp-echo, port: 9000, targetPort: 9000}}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {{name: reviews-abc, namespace: shop, labels: {{kubernetes.io/service-name: reviews}}}}
addressType: IPv4
ports: [{{name: http, port: 9080}}, {{name: tcp-echo, port: 9000}}]
endpoints: [{{addresses: ["{net}.11"], conditions: {{ready: true}}}}]
---
apiVersion: v1
kind: Pod
metadata: {{name: reviews-v1-5d8f9b7c6d-x1y2z, namespace: shop, labels: {{app: reviews, version: v1, pod-template-hash: 5d8f9b7c6d}}}}
spec: {{serviceAccountName: bookinfo-reviews}}
status: {{podIP: {net}.11}}
---
apiVersion: v1
kind: Service
metadata: {{name: web, namespace: shop}}
spec:
  ports: [{{name: http, port: 9080, targetPort: 9080}}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {{name: web-abc, namespace: shop, labels: {{kubernetes.io/service-name: web}}}}
addressType: IPv4
ports: [{{name: http, port: 9080}}]
endpoints: [{{addresses: ["{net}.12"], conditions: {{ready: true}}}}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: web, namespace: shop}}
spec:
  host: web
  trafficPolicy:
    connectionPool:
      tcp: {{maxConnections: 1}}
      http: {{http1MaxPendingRequests: 1}}
---
apiVersion: extensions.istio.io/v1alpha1
kind: WasmPlugin
metadata: {{name: trap, namespace: shop}}
spec:
  targetRefs: [{{group: gateway.networking.k8s.io, kind: Gateway, name: waypoint}}]
  url: file://{}
  failStrategy: FAIL_OPEN
"#,
        wasm.display()
    )
}

/// A proxy-wasm module whose request-header callback traps (`unreachable`)
/// when the request has an `x-trap` header, and does nothing otherwise.
fn trap_module() -> Vec<u8> {
    wat::parse_str(
        r#"(module
  (import "env" "proxy_get_header_map_value" (func $get (param i32 i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 16) "x-trap")
  (global $heap (mut i32) (i32.const 4096))
  (func (export "proxy_abi_version_0_2_1"))
  (func (export "proxy_on_memory_allocate") (param $n i32) (result i32)
    (local $p i32)
    (local.set $p (global.get $heap))
    (global.set $heap (i32.add (global.get $heap) (local.get $n)))
    (local.get $p))
  (func (export "proxy_on_context_create") (param i32 i32))
  (func (export "proxy_on_vm_start") (param i32 i32) (result i32) (i32.const 1))
  (func (export "proxy_on_configure") (param i32 i32) (result i32) (i32.const 1))
  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
    (if (i32.eqz (call $get (i32.const 0) (i32.const 16) (i32.const 6) (i32.const 64) (i32.const 68)))
      (then unreachable))
    (i32.const 0)))"#,
    )
    .expect("test WAT is valid")
}

/// The waypoint binary on lane `net`, with its backends and the pod's fake ztunnel.
struct Lane {
    net: String,
    ca: TestCa,
    dir: tempfile::TempDir,
    _config: ConfigDir,
    wp: Proc,
    http: SocketAddr,
    hbone: SocketAddr,
    metrics: SocketAddr,
    _stop_ztunnel: tokio::sync::watch::Sender<bool>,
    _echoes: Vec<waypoint::echo::EchoServer>,
}

impl Lane {
    async fn start(net: &str) -> Lane {
        let ca = TestCa::new("cluster.local");
        let dir = tempfile::tempdir().expect("tempdir");
        let wasm = dir.path().join("trap.wasm");
        std::fs::write(&wasm, trap_module()).expect("write module");
        let echoes = vec![
            echo("reviews-v1", &format!("{net}.11:9080")).await,
            echo("web", &format!("{net}.12:9080")).await,
        ];
        tcp_echo(&format!("{net}.11:9000")).await;
        // The pod's ztunnel, on a port of its own IP.
        let zt_listener = tokio::net::TcpListener::bind(format!("{net}.11:0"))
            .await
            .expect("bind the fake ztunnel");
        let zt_port = zt_listener.local_addr().expect("bound").port();
        let zt_id = identity(
            &ca,
            dir.path(),
            "ztunnel",
            "spiffe://cluster.local/ns/istio-system/sa/ztunnel",
        );
        let (stop, stop_rx) = tokio::sync::watch::channel(false);
        tokio::spawn(Arc::new(FakeZtunnel::default()).serve(
            zt_listener,
            &zt_id,
            "cluster.local",
            stop_rx,
        ));

        let certs = dir.path().join("waypoint");
        std::fs::create_dir_all(&certs).expect("cert dir");
        ca.write_cert_dir(&certs, WAYPOINT_ID);
        let config = ConfigDir::new(&mesh_yaml(net, &wasm));
        let ip = format!("{net}.1");
        let (http, hbone, admin, metrics) = (
            free_port(&ip),
            free_port(&ip),
            free_port(&ip),
            free_port(&ip),
        );
        let mut cmd = tokio::process::Command::new(BIN);
        cmd.args(["run", "--namespace", "shop", "--access-log", "--config"])
            .arg(config.path())
            .arg("--cert-dir")
            .arg(&certs)
            .args(["--cluster-id", CLUSTER])
            .args(["--hbone-upstream-port", &zt_port.to_string()])
            .args(["--http-listen", &http.to_string()])
            .args(["--hbone-listen", &hbone.to_string()])
            .args(["--admin-listen", &admin.to_string()])
            .args(["--metrics-listen", &metrics.to_string()])
            .env_remove("WAYPOINT_LOG");
        let wp = Proc::spawn(&mut cmd);
        common::binary_ready(admin).await;
        Lane {
            net: net.to_string(),
            ca,
            dir,
            _config: config,
            wp,
            http,
            hbone,
            metrics,
            _stop_ztunnel: stop,
            _echoes: echoes,
        }
    }

    /// What a source ztunnel sends for the application connection from `client`,
    /// without a cluster in its baggage (as a PROXY-protocol or older ztunnel caller).
    fn headers(client: &str) -> OutboundHeaders {
        OutboundHeaders {
            baggage: Some(Baggage::parse(
                "k8s.namespace.name=client-ns,k8s.deployment.name=sleep,service.name=sleep,service.version=v7",
            )),
            forwarded: Some(Forwarded::new(client.parse().expect("addr"), None)),
            traceparent: None,
        }
    }

    /// One HTTP request over HBONE to `reviews`, from application address `client`.
    async fn hbone_get(&self, client: &str) {
        let id = identity(&self.ca, self.dir.path(), "client", CLIENT_ID);
        let target = format!("{}.10:9080", self.net);
        let stream = tunnel(&id, self.hbone, &target, &Self::headers(client))
            .await
            .expect("CONNECT accepted");
        let (status, _, body) = http1_over(stream, "reviews.shop.svc.cluster.local", "/h").await;
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    }

    /// One TCP passthrough connection over HBONE to `reviews`'s tcp port.
    async fn hbone_tcp(&self) {
        let id = identity(&self.ca, self.dir.path(), "client", CLIENT_ID);
        let target = format!("{}.10:9000", self.net);
        let mut stream = tunnel(&id, self.hbone, &target, &Self::headers("10.9.9.9:1234"))
            .await
            .expect("CONNECT accepted");
        stream.write_all(b"ping").await.expect("write");
        let mut back = [0u8; 4];
        bounded("tcp echo", stream.read_exact(&mut back))
            .await
            .expect("echo");
        assert_eq!(&back, b"ping");
        stream.shutdown().await.expect("close");
        let mut rest = Vec::new();
        let _ = bounded("tcp close", stream.read_to_end(&mut rest)).await;
    }

    /// Six concurrent slow requests to `web` (one connection, one pending):
    /// at least one overflows (503 `UO`).
    async fn overflow(&self) {
        let c = TestClient::new(self.http);
        let mut tasks = Vec::new();
        for _ in 0..6 {
            let c = c.clone();
            tasks.push(tokio::spawn(async move {
                c.send("GET", "web:9080", "/", &[("x-echo-delay-ms", "300")])
                    .await
                    .status
            }));
        }
        let mut overflowed = 0;
        for t in tasks {
            if bounded("pooled request", t).await.expect("task") == 503 {
                overflowed += 1;
            }
        }
        assert!(overflowed >= 1, "the pool overflows");
    }

    async fn scrape(&self) -> String {
        let r = TestClient::new(self.metrics)
            .get("metrics", "/stats/prometheus")
            .await;
        String::from_utf8_lossy(&r.body).into_owned()
    }
}

/// The value of the one sample of `metric` whose labels contain every needle.
fn sample(metrics: &str, metric: &str, needles: &[&str]) -> Option<f64> {
    metrics
        .lines()
        .filter(|l| l.starts_with(&format!("{metric}{{")))
        .filter(|l| needles.iter().all(|n| l.contains(n)))
        .find_map(|l| l.rsplit(' ').next()?.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hbone_callers_get_their_address_principals_and_clusters_and_probes_stay_quiet() {
    let lane = Lane::start("127.0.180").await;
    lane.hbone_get("127.0.180.20:40123").await;
    lane.hbone_tcp().await;
    // A kubelet tcpSocket probe: connect, close, no TLS.
    drop(
        bounded("probe", tokio::net::TcpStream::connect(lane.hbone))
            .await
            .expect("connect"),
    );
    // A real handshake failure: a client certificate of another trust domain.
    let bad = identity(
        &lane.ca,
        lane.dir.path(),
        "stranger",
        "spiffe://other.example/ns/x/sa/y",
    );
    let target = format!("{}.10:9080", lane.net);
    assert!(
        tunnel(&bad, lane.hbone, &target, &Lane::headers("10.1.1.1:1"))
            .await
            .is_err()
    );

    let metrics = eventually("labels and counters", async || {
        let m = lane.scrape().await;
        let http = sample(
            &m,
            "istio_requests_total",
            &[
                &format!("destination_principal=\"{REVIEWS_PRINCIPAL}\""),
                &format!("destination_cluster=\"{CLUSTER}\""),
                &format!("source_cluster=\"{CLUSTER}\""),
                "destination_workload=\"reviews-v1\"",
                "reporter=\"waypoint\"",
            ],
        );
        let tcp = sample(
            &m,
            "istio_tcp_connections_closed_total",
            &[
                &format!("destination_principal=\"{REVIEWS_PRINCIPAL}\""),
                &format!("destination_cluster=\"{CLUSTER}\""),
            ],
        );
        let probes = sample(
            &m,
            "waypoint_hbone_handshake_failures_total",
            &["reason=\"closed_before_client_hello\""],
        );
        let bad = sample(
            &m,
            "waypoint_hbone_handshake_failures_total",
            &["reason=\"bad_certificate\""],
        );
        match (http, tcp, probes, bad) {
            (Some(1.0), Some(1.0), Some(1.0), Some(1.0)) => Ok(m),
            seen => Err(format!("{seen:?}\n{m}")),
        }
    })
    .await;
    // Out-of-mesh endpoints have no authenticated identity, but the cluster is ours.
    assert!(
        !metrics.contains("destination_principal=\"spiffe://cluster.local/ns/shop/sa/default\"")
    );

    let (stdout, stderr) = lane.wp.stop().await;
    let hbone_line = stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|l| l["path"] == "/h")
        .unwrap_or_else(|| panic!("no access-log line for /h in\n{stdout}"));
    assert_eq!(
        hbone_line["downstream_remote_address"], "127.0.180.20:40123",
        "the forwarded client, with its port"
    );
    // The probe is counted, not logged at INFO; the bad certificate still is.
    let refused: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("HBONE handshake refused"))
        .collect();
    assert_eq!(refused.len(), 1, "{stderr}");
    assert!(refused[0].contains("certificate"), "{}", refused[0]);
    assert!(!stderr.contains("ClientHello"), "{stderr}");
}

/// A running `prometheus` scraping the lane's metrics port every second,
/// with the labels the Helm chart's PodMonitor adds.
struct Prometheus {
    proc: Proc,
    _dir: tempfile::TempDir,
    api: SocketAddr,
}

impl Prometheus {
    async fn start(ip: &str, target: SocketAddr) -> Prometheus {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = dir.path().join("prometheus.yml");
        // The PodMonitor (deploy/helm/.../podmonitor.yaml) scrapes /stats/prometheus;
        // the operator adds `namespace` and `pod`, the chart's relabelling the
        // Gateway name the dashboard's `waypoint` variable reads.
        std::fs::write(
            &config,
            format!(
                "global: {{scrape_interval: 1s, evaluation_interval: 1s}}\n\
                 scrape_configs:\n\
                 - job_name: waypoint\n  \
                   metrics_path: /stats/prometheus\n  \
                   static_configs:\n  \
                   - targets: ['{target}']\n    \
                     labels: {{namespace: shop, pod: waypoint-7f9c-abcde, gateway_networking_k8s_io_gateway_name: waypoint}}\n"
            ),
        )
        .expect("write prometheus.yml");
        let api = free_port(ip);
        let mut cmd = tokio::process::Command::new("prometheus");
        cmd.arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address={api}"))
            .arg("--log.level=warn");
        let proc = Proc::spawn(&mut cmd);
        Prometheus {
            proc,
            _dir: dir,
            api,
        }
    }

    /// `/api/v1/query` for `promql`: the result vector, or why there is none.
    async fn query(&self, promql: &str) -> Result<Vec<serde_json::Value>, String> {
        if let Err(e) = tokio::net::TcpStream::connect(self.api).await {
            return Err(format!("prometheus not listening yet: {e}"));
        }
        let uri = format!("/api/v1/query?query={}", percent_encode(promql));
        let r = TestClient::new(self.api).get("prometheus", &uri).await;
        let body: serde_json::Value = serde_json::from_slice(&r.body)
            .map_err(|e| format!("{e}: {}", String::from_utf8_lossy(&r.body)))?;
        if body["status"] != "success" {
            return Err(body.to_string());
        }
        Ok(body["data"]["result"]
            .as_array()
            .cloned()
            .unwrap_or_default())
    }
}

/// `s` as a URL query value: everything but unreserved characters escaped.
fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Every query of the shipped dashboard (rows' panels included), with
/// Grafana's variables as a user selecting the lane's waypoint sets them.
fn dashboard_queries() -> Vec<(String, String)> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/grafana/waypoint-dashboard.json");
    let dashboard: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).expect("dashboard")).expect("JSON");
    let mut out = Vec::new();
    let mut todo: Vec<&serde_json::Value> = dashboard["panels"]
        .as_array()
        .expect("panels")
        .iter()
        .collect();
    while let Some(p) = todo.pop() {
        todo.extend(p["panels"].as_array().into_iter().flatten());
        for t in p["targets"].as_array().into_iter().flatten() {
            if let Some(expr) = t["expr"].as_str() {
                let promql = expr
                    .replace("$namespace", "shop")
                    .replace("$waypoint", "waypoint")
                    // 4 × the scrape interval, as Grafana computes it.
                    .replace("$__rate_interval", "4s")
                    .replace("$__interval", "1s")
                    .replace("$__range", "1m");
                out.push((p["title"].as_str().unwrap_or("?").to_string(), promql));
            }
        }
    }
    // The template variables' own queries (label_values(...) reads these series).
    out.push((
        "variable namespace/waypoint".into(),
        "waypoint_config_generation{namespace=~\"shop\", gateway_networking_k8s_io_gateway_name=~\"waypoint\"}".into(),
    ));
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_dashboard_query_returns_data_from_a_real_prometheus() {
    if std::process::Command::new("prometheus")
        .arg("--version")
        .output()
        .is_err()
    {
        panic!("prometheus is not installed: .ci/run installs Debian's `prometheus` package");
    }
    let lane = Lane::start("127.0.181").await;
    let prom = Prometheus::start("127.0.181.2", lane.metrics).await;
    // Polled: Prometheus is another process; its first scrape has no signal.
    eventually("prometheus scrapes the waypoint", async || {
        match prom.query("up{job=\"waypoint\"} == 1").await {
            Ok(r) if !r.is_empty() => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;

    // Traffic of every kind, twice, a few scrapes apart, so rates have two samples.
    for round in 0..2 {
        let c = TestClient::new(lane.http);
        assert_eq!(c.get("web:9080", "/plain").await.status, 200);
        let trapped = c.send("GET", "web:9080", "/wasm", &[("x-trap", "1")]).await;
        assert_eq!(trapped.status, 200, "FAIL_OPEN: the request goes on");
        lane.hbone_get(&format!("127.0.181.20:{}", 40000 + round))
            .await;
        lane.hbone_tcp().await;
        lane.overflow().await;
        // why: real time on purpose — Prometheus scrapes every second on its own
        // clock, and a rate needs samples from two scrapes of each series.
        tokio::time::sleep(Duration::from_secs(2)).await;
    }

    let queries = dashboard_queries();
    assert!(queries.len() >= 20, "{queries:?}");
    for (title, promql) in &queries {
        // Polled: samples reach Prometheus on its own scrape clock.
        let result = eventually(&format!("{title}: {promql}"), async || {
            match prom.query(promql).await {
                Ok(r) if !r.is_empty() => Ok(r),
                other => Err(format!("{other:?}")),
            }
        })
        .await;
        assert!(!result.is_empty());
    }
    // Kiali's graph query for a waypoint namespace (graph/telemetry/istio): its
    // group-by labels exist and the cluster labels are known, or Kiali drops
    // the sample as bad telemetry.
    let kiali = prom
        .query(
            "sum(rate(istio_requests_total{reporter=~\"waypoint|destination\",destination_workload_namespace=\"shop\"}[10s])) by (source_cluster,source_workload_namespace,source_workload,source_canonical_service,source_canonical_revision,destination_cluster,destination_service_namespace,destination_service,destination_service_name,destination_workload_namespace,destination_workload,destination_canonical_service,destination_canonical_revision,request_protocol,response_code,grpc_response_status,response_flags)"
        )
        .await
        .expect("kiali query");
    assert!(!kiali.is_empty());
    for series in &kiali {
        assert_eq!(series["metric"]["destination_cluster"], CLUSTER, "{series}");
    }
    drop(prom.proc);
    let _ = lane.wp.stop().await;
}
