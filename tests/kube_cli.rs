//! The istioctl-style commands (`generate`, `apply`, `list`, `delete`,
//! `status`) as a user runs them: the real binary, pointed by `--kubeconfig`
//! at the fake API server running in the test's runtime.

mod common;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use common::bounded;
use serde_json::{json, Value};
use tempfile::TempDir;
use waypoint::test_helpers::fake_api::{FakeApiServer, FaultRule};

const BIN: &str = env!("CARGO_BIN_EXE_waypoint");
const GW: &str = "gateway.networking.k8s.io/v1";

/// A fake cluster plus a kubeconfig for it (context namespace `default`).
struct Cluster {
    fake: FakeApiServer,
    dir: TempDir,
    kubeconfig: PathBuf,
}

impl Cluster {
    async fn start(namespaces: &[Value]) -> Cluster {
        let fake = FakeApiServer::start("127.0.0.1:0".parse().unwrap())
            .await
            .expect("fake API server starts");
        for ns in namespaces {
            fake.put(ns.clone());
        }
        let dir = TempDir::new().unwrap();
        let kubeconfig = fake.write_kubeconfig(dir.path(), "default").unwrap();
        Cluster {
            fake,
            dir,
            kubeconfig,
        }
    }

    fn command(&self, args: &[&str]) -> tokio::process::Command {
        let mut cmd = isolated(self.dir.path());
        cmd.arg(args[0])
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .args(&args[1..]);
        cmd
    }

    async fn run(&self, args: &[&str]) -> Output {
        run(self.command(args)).await
    }

    fn gateway(&self, ns: &str, name: &str) -> Option<Value> {
        self.fake.get(GW, "Gateway", Some(ns), name)
    }

    fn namespace_label(&self, ns: &str, label: &str) -> Option<String> {
        let ns = self.fake.get("v1", "Namespace", None, ns).unwrap();
        ns["metadata"]["labels"][label].as_str().map(str::to_string)
    }
}

/// The binary with no way to find a cluster but what the test passes.
fn isolated(home: &Path) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(BIN);
    cmd.env_remove("KUBECONFIG")
        .env_remove("KUBERNETES_SERVICE_HOST")
        .env_remove("KUBERNETES_SERVICE_PORT")
        .env_remove("WAYPOINT_LOG")
        .env("HOME", home)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    cmd
}

struct Output {
    success: bool,
    stdout: String,
    stderr: String,
}

impl Output {
    /// The failure's message, asserting it is exactly one line.
    fn error_line(&self) -> &str {
        assert!(!self.success, "expected failure; stdout:\n{}", self.stdout);
        let lines: Vec<&str> = self.stderr.lines().collect();
        assert_eq!(lines.len(), 1, "one stderr line, got:\n{}", self.stderr);
        lines[0]
    }

    fn ok(&self) -> &Self {
        assert!(
            self.success,
            "command failed\nstdout:\n{}\nstderr:\n{}",
            self.stdout, self.stderr
        );
        self
    }
}

async fn run(cmd: tokio::process::Command) -> Output {
    let child = { cmd }.spawn().expect("waypoint binary starts");
    finish(child).await
}

async fn finish(child: tokio::process::Child) -> Output {
    let out = tokio::time::timeout(Duration::from_secs(30), child.wait_with_output())
        .await
        .expect("waypoint exits within 30 s")
        .expect("waypoint output");
    Output {
        success: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn namespace(name: &str, labels: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels}})
}

fn gateway(ns: &str, name: &str, class: &str, labels: Value, status: Value) -> Value {
    json!({"apiVersion": GW, "kind": "Gateway",
           "metadata": {"name": name, "namespace": ns, "labels": labels},
           "spec": {"gatewayClassName": class,
                    "listeners": [{"name": "mesh", "port": 15008, "protocol": "HBONE"}]},
           "status": status})
}

fn programmed(status: &str) -> Value {
    json!({"conditions": [{"type": "Programmed", "status": status, "reason": "Programmed",
                           "message": "", "lastTransitionTime": "2026-01-01T00:00:00Z"}]})
}

#[tokio::test]
async fn generate_matches_the_golden_files() {
    let home = TempDir::new().unwrap();
    let cases: [(&[&str], &str); 3] = [
        (&[], "generate-default.yaml"),
        (
            &[
                "--for",
                "workload",
                "--revision",
                "canary",
                "-n",
                "bookinfo",
                "--name",
                "wp",
            ],
            "generate-workload-canary.yaml",
        ),
        (&["--for", "all", "-n", "team"], "generate-all.yaml"),
    ];
    for (args, golden) in cases {
        // No kubeconfig anywhere: the namespace falls back to `default`.
        let mut cmd = isolated(home.path());
        cmd.arg("generate").args(args);
        let out = run(cmd).await;
        out.ok();
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/golden")
            .join(golden);
        let want = std::fs::read_to_string(&path).unwrap();
        assert_eq!(out.stdout, want, "waypoint generate {args:?} vs {golden}");
    }
}

#[tokio::test]
async fn generate_takes_the_namespace_from_the_kubeconfig_context() {
    // The cluster is never contacted: the kubeconfig only names a namespace.
    let cluster = Cluster::start(&[]).await;
    let kubeconfig = cluster
        .fake
        .write_kubeconfig(cluster.dir.path(), "team")
        .unwrap();
    drop(cluster.fake);
    let mut cmd = isolated(cluster.dir.path());
    cmd.arg("generate").arg("--kubeconfig").arg(&kubeconfig);
    let out = run(cmd).await;
    out.ok();
    assert!(
        out.stdout.contains("\n  namespace: team\n"),
        "{}",
        out.stdout
    );

    let mut cmd = isolated(cluster.dir.path());
    cmd.args(["generate", "--name", "none"]);
    let line = run(cmd).await.error_line().to_string();
    assert!(line.contains("invalid waypoint name \"none\""), "{line}");
}

#[tokio::test]
async fn apply_creates_the_gateway_by_server_side_apply() {
    let cluster = Cluster::start(&[namespace("default", json!({}))]).await;
    let out = cluster.run(&["apply", "--for", "workload"]).await;
    out.ok();
    assert_eq!(out.stdout, "✅ waypoint default/waypoint applied\n");

    let gw = cluster
        .gateway("default", "waypoint")
        .expect("Gateway created");
    assert_eq!(gw["spec"]["gatewayClassName"], "pingora-waypoint");
    assert_eq!(
        gw["spec"]["listeners"],
        json!([{"name": "mesh", "port": 15008, "protocol": "HBONE"}])
    );
    assert_eq!(
        gw["metadata"]["labels"]["istio.io/waypoint-for"],
        "workload"
    );

    let patch = cluster
        .fake
        .requests()
        .into_iter()
        .find(|r| r.method == "PATCH" && r.path.ends_with("/gateways/waypoint"))
        .expect("a PATCH of the Gateway");
    assert_eq!(
        patch.content_type.as_deref(),
        Some("application/apply-patch+yaml")
    );
    assert!(
        patch.query.contains("fieldManager=waypoint"),
        "{}",
        patch.query
    );
    assert!(patch.query.contains("force=true"), "{}", patch.query);

    // Applying again is a no-op success; the label set follows the flags.
    cluster
        .run(&["apply", "--for", "all", "-r", "canary"])
        .await
        .ok();
    let gw = cluster.gateway("default", "waypoint").unwrap();
    assert_eq!(gw["metadata"]["labels"]["istio.io/waypoint-for"], "all");
    assert_eq!(gw["metadata"]["labels"]["istio.io/rev"], "canary");
}

#[tokio::test]
async fn enroll_labels_the_namespace_and_warns_when_it_is_not_ambient() {
    let cluster = Cluster::start(&[
        namespace("bookinfo", json!({"team": "books"})),
        namespace("mesh", json!({"istio.io/dataplane-mode": "ambient"})),
    ])
    .await;

    let out = cluster
        .run(&["apply", "-n", "bookinfo", "--enroll-namespace"])
        .await;
    out.ok();
    assert_eq!(
        out.stdout,
        "✅ waypoint bookinfo/waypoint applied\n\
         ✅ namespace bookinfo labeled with \"istio.io/use-waypoint: waypoint\"\n"
    );
    assert!(
        out.stderr
            .contains("namespace bookinfo is not in the ambient mesh")
            && out
                .stderr
                .contains("kubectl label namespace bookinfo istio.io/dataplane-mode=ambient"),
        "{}",
        out.stderr
    );
    assert_eq!(
        cluster.namespace_label("bookinfo", "istio.io/use-waypoint"),
        Some("waypoint".into())
    );
    assert_eq!(
        cluster.namespace_label("bookinfo", "team"),
        Some("books".into())
    );

    let out = cluster
        .run(&["apply", "-n", "mesh", "--enroll-namespace"])
        .await;
    out.ok();
    assert!(!out.stderr.contains("warning"), "{}", out.stderr);
    assert_eq!(
        cluster.namespace_label("mesh", "istio.io/use-waypoint"),
        Some("waypoint".into())
    );
}

#[tokio::test]
async fn enrolling_another_waypoint_needs_overwrite() {
    let cluster = Cluster::start(&[namespace(
        "default",
        json!({"istio.io/dataplane-mode": "ambient", "istio.io/use-waypoint": "waypoint"}),
    )])
    .await;

    let out = cluster
        .run(&["apply", "--name", "other", "--enroll-namespace"])
        .await;
    let line = out.error_line();
    assert!(
        line.contains("namespace default already uses waypoint waypoint")
            && line.contains("--overwrite"),
        "{line}"
    );
    assert_eq!(out.stdout, "");
    assert_eq!(
        cluster.namespace_label("default", "istio.io/use-waypoint"),
        Some("waypoint".into())
    );
    assert!(
        cluster.gateway("default", "other").is_none(),
        "a refused enrollment applies nothing"
    );

    // Re-enrolling the same waypoint is fine without --overwrite.
    cluster.run(&["apply", "--enroll-namespace"]).await.ok();

    cluster
        .run(&[
            "apply",
            "--name",
            "other",
            "--enroll-namespace",
            "--overwrite",
        ])
        .await
        .ok();
    assert_eq!(
        cluster.namespace_label("default", "istio.io/use-waypoint"),
        Some("other".into())
    );
    assert!(cluster.gateway("default", "other").is_some());
}

#[tokio::test]
async fn apply_wait_returns_once_the_controller_reports_programmed() {
    let cluster = Cluster::start(&[namespace("default", json!({}))]).await;
    let child = cluster
        .command(&["apply", "--wait", "--timeout", "30s"])
        .spawn()
        .unwrap();

    // Play the controller: once the Gateway exists, mark it Programmed.
    let mut gw = bounded(
        "Gateway applied",
        cluster
            .fake
            .wait_until(|_| cluster.gateway("default", "waypoint")),
    )
    .await;
    gw["status"] = programmed("True");
    cluster.fake.put(gw);

    let out = finish(child).await;
    out.ok();
    assert_eq!(
        out.stdout,
        "✅ waypoint default/waypoint applied\n✅ waypoint default/waypoint is ready\n"
    );
}

#[tokio::test]
async fn apply_wait_times_out_naming_the_last_status() {
    let cluster = Cluster::start(&[namespace("default", json!({}))]).await;
    let mut pending = gateway(
        "default",
        "waypoint",
        "pingora-waypoint",
        json!({}),
        programmed("False"),
    );
    pending["status"]["conditions"][0]["reason"] = json!("Pending");
    pending["status"]["conditions"][0]["message"] = json!("deployment not ready");
    cluster.fake.put(pending);

    let out = cluster.run(&["apply", "--wait", "--timeout", "2s"]).await;
    assert_eq!(
        out.error_line(),
        "error: timed out after 2s waiting for waypoint default/waypoint to be programmed \
         (Programmed=False, reason Pending: deployment not ready)"
    );
}

#[tokio::test]
async fn list_shows_only_our_waypoints() {
    let cluster = Cluster::start(&[
        namespace("default", json!({})),
        namespace("bookinfo", json!({})),
        namespace("empty", json!({})),
    ])
    .await;
    cluster.fake.put(gateway(
        "default",
        "waypoint",
        "pingora-waypoint",
        json!({}),
        json!({}),
    ));
    cluster.fake.put(gateway(
        "default",
        "istio-wp",
        "istio-waypoint",
        json!({}),
        programmed("True"),
    ));
    cluster.fake.put(gateway(
        "bookinfo",
        "reviews-wp",
        "pingora-waypoint",
        json!({"istio.io/waypoint-for": "workload", "istio.io/rev": "canary"}),
        programmed("True"),
    ));

    let out = cluster.run(&["list"]).await;
    out.ok();
    assert_eq!(
        out.stdout,
        "NAME       REVISION   TRAFFIC TYPE   PROGRAMMED\n\
         waypoint   default    service        False\n"
    );

    let out = cluster.run(&["list", "-A"]).await;
    out.ok();
    assert_eq!(
        out.stdout,
        "NAMESPACE   NAME         REVISION   TRAFFIC TYPE   PROGRAMMED\n\
         bookinfo    reviews-wp   canary     workload       True\n\
         default     waypoint     default    service        False\n"
    );

    let out = cluster.run(&["list", "-n", "empty"]).await;
    out.ok();
    assert_eq!(out.stdout, "No waypoints found.\n");
}

#[tokio::test]
async fn delete_removes_named_or_all_of_our_waypoints_only() {
    let cluster = Cluster::start(&[namespace("default", json!({}))]).await;
    for name in ["a", "b", "c"] {
        cluster.fake.put(gateway(
            "default",
            name,
            "pingora-waypoint",
            json!({}),
            json!({}),
        ));
    }
    cluster
        .fake
        .put(gateway("default", "ingress", "istio", json!({}), json!({})));

    let out = cluster.run(&["delete", "a"]).await;
    out.ok();
    assert_eq!(out.stdout, "✅ waypoint default/a deleted\n");
    assert!(cluster.gateway("default", "a").is_none());
    assert!(cluster.gateway("default", "b").is_some());

    // A foreign Gateway or a missing name deletes nothing, even next to a good name.
    let out = cluster.run(&["delete", "b", "ingress"]).await;
    let line = out.error_line();
    assert!(
        line.contains("gateway default/ingress has class \"istio\"")
            && line.contains("not one of our waypoints"),
        "{line}"
    );
    let out = cluster.run(&["delete", "b", "nope"]).await;
    assert_eq!(out.error_line(), "error: waypoint default/nope not found");
    assert!(cluster.gateway("default", "b").is_some());
    assert!(cluster.gateway("default", "ingress").is_some());

    let out = cluster.run(&["delete", "--all"]).await;
    out.ok();
    assert_eq!(
        out.stdout,
        "✅ waypoint default/b deleted\n✅ waypoint default/c deleted\n"
    );
    let left: Vec<String> = cluster
        .fake
        .list(GW, "Gateway")
        .iter()
        .map(|g| g["metadata"]["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(left, ["ingress"]);

    let out = cluster.run(&["delete", "--all"]).await;
    out.ok();
    assert_eq!(out.stdout, "No waypoints found.\n");
}

#[tokio::test]
async fn status_shows_conditions_and_addresses() {
    let cluster = Cluster::start(&[namespace("default", json!({}))]).await;
    cluster.fake.put(gateway(
        "default",
        "waypoint",
        "pingora-waypoint",
        json!({}),
        json!({
            "addresses": [{"type": "Hostname", "value": "waypoint.default.svc.cluster.local"}],
            "conditions": [
                {"type": "Programmed", "status": "False", "reason": "Pending",
                 "message": "0/1 replicas ready"},
                {"type": "Accepted", "status": "True", "reason": "Accepted",
                 "message": "accepted by pingora-waypoint"}
            ]
        }),
    ));
    cluster.fake.put(gateway(
        "default",
        "fresh",
        "pingora-waypoint",
        json!({}),
        json!({}),
    ));

    let out = cluster.run(&["status"]).await;
    out.ok();
    assert_eq!(
        out.stdout,
        "NAME       STATUS   TYPE         REASON     ADDRESSES                            MESSAGE\n\
         fresh      -        -            -          -                                    no status yet: is the waypoint controller running?\n\
         waypoint   True     Accepted     Accepted   waypoint.default.svc.cluster.local   accepted by pingora-waypoint\n\
         waypoint   False    Programmed   Pending    waypoint.default.svc.cluster.local   0/1 replicas ready\n"
    );

    let out = cluster.run(&["status", "--name", "fresh"]).await;
    out.ok();
    assert!(!out.stdout.contains("waypoint.default"), "{}", out.stdout);
    assert!(out.stdout.contains("fresh "), "{}", out.stdout);
}

#[tokio::test]
async fn an_unknown_namespace_fails_up_front() {
    let cluster = Cluster::start(&[namespace("default", json!({}))]).await;
    for args in [
        &["apply", "-n", "nope"][..],
        &["apply", "-n", "nope", "--enroll-namespace"],
        &["list", "-n", "nope"],
        &["delete", "--all", "-n", "nope"],
        &["status", "-n", "nope"],
    ] {
        let out = cluster.run(args).await;
        assert_eq!(
            out.error_line(),
            "error: namespace nope not found",
            "{args:?}"
        );
    }
    assert!(
        !cluster
            .fake
            .requests()
            .iter()
            .any(|r| r.path.contains("/gateways")),
        "nothing touched Gateways"
    );
}

#[tokio::test]
async fn forbidden_is_one_permission_denied_line() {
    let cluster = Cluster::start(&[namespace("default", json!({}))]).await;
    cluster.fake.fail(FaultRule::new("/gateways", 403));
    for args in [
        &["apply"][..],
        &["list"],
        &["list", "-A"],
        &["delete", "--all"],
    ] {
        let out = cluster.run(args).await;
        let line = out.error_line();
        assert!(
            line.starts_with("error: permission denied: "),
            "{args:?}: {line}"
        );
    }
    assert!(cluster.gateway("default", "waypoint").is_none());
}

#[tokio::test]
async fn an_unreachable_api_server_is_one_line_naming_it() {
    let cluster = Cluster::start(&[]).await;
    // A loopback port nobody listens on.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let yaml = cluster
        .fake
        .kubeconfig_yaml("default")
        .replace(&cluster.fake.url(), &url);
    std::fs::write(&cluster.kubeconfig, yaml).unwrap();

    for args in [&["apply"][..], &["list", "-A"], &["status"]] {
        let out = cluster.run(args).await;
        let line = out.error_line();
        assert!(
            line.starts_with(&format!(
                "error: cannot reach the Kubernetes API server at {url}"
            )),
            "{args:?}: {line}"
        );
    }
}

#[tokio::test]
async fn a_missing_kubeconfig_is_one_line() {
    let home = TempDir::new().unwrap();
    let mut cmd = isolated(home.path());
    cmd.arg("list");
    let line = run(cmd).await.error_line().to_string();
    assert!(line.starts_with("error: no usable kubeconfig"), "{line}");
}

#[tokio::test]
async fn an_unknown_context_is_one_line() {
    let cluster = Cluster::start(&[namespace("default", json!({}))]).await;
    let line = cluster
        .run(&["list", "--context", "nope"])
        .await
        .error_line()
        .to_string();
    assert!(line.starts_with("error: no usable kubeconfig"), "{line}");
    assert!(line.contains("nope"), "{line}");
    assert!(cluster.fake.requests().is_empty(), "no request was made");
}
