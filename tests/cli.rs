//! The `waypoint` binary as operators and external tests drive it:
//! `check`, `run` with SIGTERM drain, and `demo`.

mod common;

use std::net::SocketAddr;
use std::process::{Command, Stdio};

use common::*;
use tokio::io::AsyncReadExt;

const BIN: &str = env!("CARGO_BIN_EXE_waypoint");

fn free_port(ip: &str) -> SocketAddr {
    let l = std::net::TcpListener::bind(format!("{ip}:0")).unwrap();
    l.local_addr().unwrap()
}

/// A `waypoint run` child, killed on drop (`kill_on_drop`) so no test leaves a process behind.
struct Proc(tokio::process::Child);

impl Proc {
    fn pid(&self) -> i32 {
        self.0.id().expect("still running: not waited for yet") as i32
    }

    /// Waits (bounded) for the process to exit.
    async fn exited(&mut self, what: &str) -> std::process::ExitStatus {
        bounded(what, self.0.wait()).await.unwrap()
    }

    /// Everything the process wrote to stdout (bounded: read until it closes).
    async fn stdout(&mut self) -> String {
        read_to_end("stdout", self.0.stdout.take().expect("stdout piped")).await
    }

    /// Everything the process wrote to stderr (bounded: read until it closes).
    async fn stderr(&mut self) -> String {
        read_to_end("stderr", self.0.stderr.take().expect("stderr piped")).await
    }
}

async fn read_to_end(what: &str, mut pipe: impl tokio::io::AsyncRead + Unpin) -> String {
    let mut out = String::new();
    bounded(what, pipe.read_to_string(&mut out)).await.unwrap();
    out
}

#[test]
fn check_reports_a_valid_config_and_its_attachments() {
    let out = Command::new(BIN)
        .args([
            "check",
            "--config",
            concat!(env!("CARGO_MANIFEST_DIR"), "/config"),
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("HTTPRoute bookinfo/reviews -> Service bookinfo/reviews:9080"),
        "{stdout}"
    );
    assert!(stdout.contains("HTTPRoute"), "{stdout}");
}

#[test]
fn check_prints_every_error_and_exits_1() {
    let config = ConfigDir::new(
        "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: r, namespace: x}\nspec:\n  parentRefs: [{group: \"\", kind: Service, name: s}]\n  rules:\n  - matches: [{path: {type: RegularExpression, value: \"(\"}}]\n    backendRefs: [{name: s, port: 80, weight: -1}]\n",
    );
    let out = Command::new(BIN)
        .args(["check", "--config"])
        .arg(config.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("mesh.yaml"), "{stdout}");
    assert!(stdout.contains("document 0"), "{stdout}");
    assert!(stdout.contains("HTTPRoute x/r"), "{stdout}");
    assert!(stdout.contains("spec.rules[0].matches[0].path"), "{stdout}");
    assert!(
        stdout.contains("spec.rules[0].backendRefs[0].weight"),
        "{stdout}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_in_flight_requests_then_exits_0() {
    let backend = echo("slow", "127.0.11.11:9080").await;
    let config = ConfigDir::new(&service("d", "slow", 9080, 9080, &["127.0.11.11"]));
    // Ready once config is loaded and listeners are bound.
    let (mut proc, http, admin) = run_binary(&config, "d", &["--drain-timeout", "5"]).await;

    // A slow request is in flight when SIGTERM arrives.
    let client = TestClient::new(http);
    let slow = tokio::spawn(async move {
        client
            .send("GET", "slow:9080", "/slow", &[("x-echo-delay-ms", "1500")])
            .await
    });
    bounded("request reaches backend", backend.wait_for(1)).await;
    send_sigterm(proc.pid());

    // Draining: readiness turns 503 while the request is still in flight (polled: the
    // binary is another process, seen only over HTTP).
    eventually("readiness turns 503", async || {
        match TestClient::new(admin)
            .get("admin", "/healthz/ready")
            .await
            .status
        {
            503 => Ok(()),
            other => Err(other.to_string()),
        }
    })
    .await;
    assert!(
        !slow.is_finished(),
        "the slow request was still in flight during drain"
    );

    let reply = bounded("slow request completes", slow).await.unwrap();
    assert_eq!(reply.status, 200, "in-flight request finished during drain");
    assert_eq!(reply.backend(), "slow");

    let status = proc.exited("exit after drain").await;
    assert!(status.success(), "exit status {status:?}");
    let stderr = proc.stderr().await;
    assert!(stderr.contains("SIGTERM"), "{stderr}");
    assert!(stderr.contains("draining"), "{stderr}");
}

fn send_sigterm(pid: i32) {
    // No libc dependency for one call: use the kill(1) utility.
    let status = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success(), "kill -TERM {pid}");
}

/// Starts `waypoint run` on `config` with extra args; waits until ready.
async fn run_binary(
    config: &ConfigDir,
    ns: &str,
    extra: &[&str],
) -> (Proc, SocketAddr, SocketAddr) {
    let http = free_port("127.0.0.1");
    let admin = free_port("127.0.0.1");
    let child = tokio::process::Command::new(BIN)
        .args(["run", "--namespace", ns, "--config"])
        .arg(config.path())
        .args([
            "--http-listen",
            &http.to_string(),
            "--admin-listen",
            &admin.to_string(),
        ])
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let proc = Proc(child);
    common::binary_ready(admin).await;
    (proc, http, admin)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_log_writes_one_envoy_json_line_per_request() {
    let _b = echo("logged", "127.0.11.21:9080").await;
    let config = ConfigDir::new(&service("al", "logged", 9080, 9080, &["127.0.11.21"]));
    let (mut proc, http, _) = run_binary(&config, "al", &["--access-log"]).await;
    let c = TestClient::new(http);
    c.send(
        "GET",
        "logged:9080",
        "/a?b=c",
        &[("x-request-id", "req-1"), ("user-agent", "t")],
    )
    .await;
    c.get("nowhere:9080", "/missing").await;
    send_sigterm(proc.pid());
    let stdout = proc.stdout().await;
    let lines: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert_eq!(lines.len(), 2, "{stdout}");
    let ok = &lines[0];
    assert_eq!(ok["method"], "GET");
    assert_eq!(ok["path"], "/a?b=c");
    assert_eq!(ok["protocol"], "HTTP/1.1");
    assert_eq!(ok["response_code"], 200);
    assert_eq!(ok["response_flags"], "-");
    assert_eq!(ok["upstream_host"], "127.0.11.21:9080");
    assert_eq!(ok["request_id"], "req-1");
    assert_eq!(ok["authority"], "logged:9080");
    assert!(ok["bytes_sent"].as_u64().unwrap() > 0);
    assert!(ok["start_time"].as_str().unwrap().ends_with('Z'));
    for field in ["bytes_received", "duration", "route_name"] {
        assert!(ok.get(field).is_some(), "{field} missing");
    }
    let nr = &lines[1];
    assert_eq!(nr["response_code"], 404);
    assert_eq!(nr["response_flags"], "NR");
}

#[test]
fn demo_runs_from_any_directory_and_shows_where_traffic_went() {
    // No --config, and a working directory without `config/`: the shipped
    // config is built into the binary.
    let elsewhere = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .args(["demo", "--duration", "1"])
        .current_dir(elsewhere.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("reviews-v2 ×20"), "{stdout}");
    assert!(stdout.contains("reviews-v1 ×"), "{stdout}");
    assert!(
        stdout.contains("301 → http://productpage:9080/productpage/index.html"),
        "{stdout}"
    );
    assert!(stdout.contains("404 from waypoint ×5"), "{stdout}");
}
