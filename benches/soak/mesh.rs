//! The world the soak runs in: four Services with two echo endpoints each, their
//! VirtualServices (one per behaviour: plain, retried, fault-injected, timed out), the YAML
//! the waypoint loads, and the echo backends themselves.
//!
//! Endpoints are plain (not ambient): the soak exercises HBONE on the way in; the way out
//! over HBONE is the mesh-path bench's (`benches/mesh-load.sh`).

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::Path;
use std::sync::Mutex;

use anyhow::Context;
use waypoint::echo::EchoServer;

/// Namespace of every object, and the waypoint's `--namespace` (short Host names resolve here).
pub const NAMESPACE: &str = "soak";
/// Service port (what clients address) and the endpoints' port.
const SERVICE_PORT: u16 = 80;
const TARGET_PORT: u16 = 18080;

/// What a Service's route does to requests, and so which answers are the policy's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Behaviour {
    /// No policy: every answer must be 2xx.
    Plain,
    /// `retries` (3 attempts on connect-failure, refused-stream, reset, 503); one endpoint is
    /// killed and restarted every minute, so every answer must still be 2xx.
    Retried,
    /// `fault.abort` 418 for 5 % of requests; 418 is the policy's (the echo never sends it).
    Fault,
    /// `timeout: 200ms`; a request sent with a 1 s backend delay gets 504 from the policy.
    Timeout,
}

/// One Service: name, ClusterIP (the HBONE CONNECT target) and its two endpoints.
pub struct Service {
    pub name: &'static str,
    pub vip: Ipv4Addr,
    pub pods: [Ipv4Addr; 2],
    pub behaviour: Behaviour,
}

impl Service {
    /// `Host` of plain requests (`name:port`, resolved in [`NAMESPACE`]).
    pub fn host(&self) -> String {
        format!("{}:{SERVICE_PORT}", self.name)
    }

    /// The HBONE CONNECT authority: the Service's `VIP:port`.
    pub fn authority(&self) -> SocketAddr {
        SocketAddr::V4(SocketAddrV4::new(self.vip, SERVICE_PORT))
    }
}

/// ClusterIPs are only routing keys here (nothing listens on them); endpoints are on
/// 127.0.210.0/24, one loopback address per pod.
pub const SERVICES: [Service; 4] = [
    Service {
        name: "plain",
        vip: Ipv4Addr::new(10, 96, 210, 1),
        pods: [Ipv4Addr::new(127, 0, 210, 1), Ipv4Addr::new(127, 0, 210, 2)],
        behaviour: Behaviour::Plain,
    },
    Service {
        name: "retried",
        vip: Ipv4Addr::new(10, 96, 210, 2),
        pods: [Ipv4Addr::new(127, 0, 210, 3), Ipv4Addr::new(127, 0, 210, 4)],
        behaviour: Behaviour::Retried,
    },
    Service {
        name: "fault",
        vip: Ipv4Addr::new(10, 96, 210, 3),
        pods: [Ipv4Addr::new(127, 0, 210, 5), Ipv4Addr::new(127, 0, 210, 6)],
        behaviour: Behaviour::Fault,
    },
    Service {
        name: "timeout",
        vip: Ipv4Addr::new(10, 96, 210, 4),
        pods: [Ipv4Addr::new(127, 0, 210, 7), Ipv4Addr::new(127, 0, 210, 8)],
        behaviour: Behaviour::Timeout,
    },
];

/// The Service whose first endpoint is killed and restarted.
pub const KILLED: usize = 1;

/// The YAML of one Service: Service, EndpointSlice, VirtualService. `reload` goes into a
/// response header, so each rewrite is a real (if harmless) config change.
pub fn service_yaml(svc: &Service, reload: u64) -> String {
    let name = svc.name;
    let vip = svc.vip;
    let [a, b] = svc.pods;
    // Per the Istio VirtualService reference: `retries.retryOn` takes Envoy's conditions and
    // status codes; `reset` retries the requests a killed backend was serving (GETs, so safe).
    let policy = match svc.behaviour {
        Behaviour::Plain => String::new(),
        Behaviour::Retried => "    retries: {attempts: 3, perTryTimeout: 2s, retryOn: \"connect-failure,refused-stream,reset,503\"}\n".into(),
        Behaviour::Fault => "    fault: {abort: {httpStatus: 418, percentage: {value: 5}}}\n".into(),
        Behaviour::Timeout => "    timeout: 200ms\n".into(),
    };
    format!(
        "\
apiVersion: v1
kind: Service
metadata: {{name: {name}, namespace: {NAMESPACE}}}
spec:
  clusterIP: {vip}
  ports: [{{name: http, port: {SERVICE_PORT}, targetPort: {TARGET_PORT}}}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: {name}-1
  namespace: {NAMESPACE}
  labels: {{kubernetes.io/service-name: {name}}}
addressType: IPv4
ports: [{{name: http, port: {TARGET_PORT}}}]
endpoints:
- {{addresses: [{a}], conditions: {{ready: true}}}}
- {{addresses: [{b}], conditions: {{ready: true}}}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: {name}, namespace: {NAMESPACE}}}
spec:
  hosts: [{name}]
  http:
  - route: [{{destination: {{host: {name}, port: {{number: {SERVICE_PORT}}}}}}}]
    headers: {{response: {{set: {{x-soak-reload: \"{reload}\"}}}}}}
{policy}"
    )
}

/// Writes the Namespace and every Service's file into `dir`.
pub fn write_config(dir: &Path) -> anyhow::Result<()> {
    let ns = format!("apiVersion: v1\nkind: Namespace\nmetadata: {{name: {NAMESPACE}}}\n");
    write_atomic(&dir.join("namespace.yaml"), &ns)?;
    for svc in &SERVICES {
        rewrite_service(dir, svc, 0)?;
    }
    Ok(())
}

/// Rewrites one Service's file as a reload would see it: a temporary name, then a rename,
/// so the watcher never reads half a file.
pub fn rewrite_service(dir: &Path, svc: &Service, reload: u64) -> anyhow::Result<()> {
    write_atomic(
        &dir.join(format!("{}.yaml", svc.name)),
        &service_yaml(svc, reload),
    )
}

fn write_atomic(path: &Path, text: &str) -> anyhow::Result<()> {
    let name = path.file_name().context("a file name")?.to_string_lossy();
    // A dot name not ending in .yaml: the loader skips it while it exists.
    let tmp = path.with_file_name(format!(".{name}.tmp"));
    std::fs::write(&tmp, text).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("renaming to {}", path.display()))
}

/// The echo endpoints, by Service and pod; an endpoint is `None` while it is killed.
pub struct Backends {
    pods: Vec<[Mutex<Option<EchoServer>>; 2]>,
}

fn pod_addr(ip: Ipv4Addr) -> SocketAddr {
    SocketAddr::V4(SocketAddrV4::new(ip, TARGET_PORT))
}

async fn start_pod(svc: &Service, pod: usize) -> anyhow::Result<EchoServer> {
    let addr = pod_addr(svc.pods[pod]);
    EchoServer::start(&format!("{}-{pod}", svc.name), addr)
        .await
        .with_context(|| format!("echo backend on {addr}"))
}

impl Backends {
    /// Starts every endpoint of every Service.
    pub async fn start() -> anyhow::Result<Backends> {
        let mut pods = Vec::new();
        for svc in &SERVICES {
            let a = start_pod(svc, 0).await?;
            let b = start_pod(svc, 1).await?;
            pods.push([Mutex::new(Some(a)), Mutex::new(Some(b))]);
        }
        Ok(Backends { pods })
    }

    /// Stops endpoint `pod` of Service `svc`: it stops accepting and closes its connections,
    /// as a killed pod would (its address then refuses connections).
    pub fn kill(&self, svc: usize, pod: usize) {
        let server = self.pods[svc][pod].lock().expect("backends lock").take();
        drop(server);
    }

    /// Starts endpoint `pod` of Service `svc` again on the same address.
    pub async fn restart(&self, svc: usize, pod: usize) -> anyhow::Result<()> {
        let server = start_pod(&SERVICES[svc], pod).await?;
        *self.pods[svc][pod].lock().expect("backends lock") = Some(server);
        Ok(())
    }

    /// Forgets what every backend recorded (the driver never reads it); returns how many
    /// requests the backends had received since the last call.
    pub fn clear_logs(&self) -> usize {
        self.pods
            .iter()
            .flatten()
            .filter_map(|p| {
                p.lock()
                    .expect("backends lock")
                    .as_ref()
                    .map(EchoServer::clear_received)
            })
            .sum()
    }
}
