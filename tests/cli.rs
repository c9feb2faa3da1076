//! The `waypoint` binary as operators and external tests drive it:
//! `check`, `run` with SIGTERM drain, and `demo`.

mod common;

use std::io::Read;
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

const BIN: &str = env!("CARGO_BIN_EXE_waypoint");

fn free_port(ip: &str) -> SocketAddr {
    let l = std::net::TcpListener::bind(format!("{ip}:0")).unwrap();
    l.local_addr().unwrap()
}

/// Kills the child on drop so no test leaves a process behind.
struct Proc(Child);
impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn check_reports_a_valid_config_and_its_attachments() {
    let out = Command::new(BIN)
        .args(["check", "--config", concat!(env!("CARGO_MANIFEST_DIR"), "/config")])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("HTTPRoute bookinfo/reviews -> Service bookinfo/reviews:9080"), "{stdout}");
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
    assert!(stdout.contains("spec.rules[0].backendRefs[0].weight"), "{stdout}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_in_flight_requests_then_exits_0() {
    let backend = echo("slow", "127.0.11.11:9080").await;
    let config = ConfigDir::new(&service("d", "slow", 9080, 9080, &["127.0.11.11"]));
    let http = free_port("127.0.0.1");
    let admin = free_port("127.0.0.1");
    let child = Command::new(BIN)
        .args(["run", "--namespace", "d", "--drain-timeout", "5", "--config"])
        .arg(config.path())
        .args(["--http-listen", &http.to_string(), "--admin-listen", &admin.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut proc = Proc(child);

    // Ready once config is loaded and listeners are bound.
    let probe = TestClient::new(admin);
    let deadline = Instant::now() + STEP;
    loop {
        assert!(Instant::now() < deadline, "never became ready");
        if let Ok(Ok(resp)) = tokio::time::timeout(
            Duration::from_secs(1),
            tokio::net::TcpStream::connect(admin),
        )
        .await
        {
            drop(resp);
            if probe.get("admin", "/healthz/ready").await.status == 200 {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // A slow request is in flight when SIGTERM arrives.
    let client = TestClient::new(http);
    let slow = tokio::spawn(async move {
        client.send("GET", "slow:9080", "/slow", &[("x-echo-delay-ms", "1500")]).await
    });
    bounded("request reaches backend", backend.wait_for(1)).await;
    let pid = proc.0.id() as i32;
    assert_eq!(send_sigterm(pid), 0);

    let reply = bounded("slow request completes", slow).await.unwrap();
    assert_eq!(reply.status, 200, "in-flight request finished during drain");
    assert_eq!(reply.backend(), "slow");

    // New connections are refused once the listener has closed.
    let deadline = Instant::now() + STEP;
    let status = loop {
        if let Some(status) = proc.0.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "did not exit after drain");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(status.success(), "exit status {status:?}");
    let mut stderr = String::new();
    proc.0.stderr.take().unwrap().read_to_string(&mut stderr).unwrap();
    assert!(stderr.contains("SIGTERM"), "{stderr}");
    assert!(stderr.contains("draining"), "{stderr}");
}

fn send_sigterm(pid: i32) -> i32 {
    // No libc dependency for one call: use the kill(1) utility.
    let status = Command::new("kill").args(["-TERM", &pid.to_string()]).status().unwrap();
    if status.success() {
        0
    } else {
        1
    }
}

#[test]
fn demo_runs_and_shows_where_traffic_went() {
    let out = Command::new(BIN)
        .args(["demo", "--duration", "1", "--config", concat!(env!("CARGO_MANIFEST_DIR"), "/config")])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("reviews-v2 ×20"), "{stdout}");
    assert!(stdout.contains("reviews-v1 ×"), "{stdout}");
    assert!(stdout.contains("301 → http://productpage:9080/productpage/index.html"), "{stdout}");
    assert!(stdout.contains("404 from waypoint ×5"), "{stdout}");
}
