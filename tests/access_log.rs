//! Access logs the way Istio users turn them on: MeshConfig `accessLogFile` with Istio's
//! default TEXT line or JSON, and `envoyFileAccessLog` providers with their own formats.

mod common;

use std::sync::Arc;

use common::*;
use waypoint::config::MeshConfig;

/// A waypoint on `yaml` with `mesh` as `--mesh-config`.
async fn start(yaml: &str, mesh: &str) -> (ConfigDir, waypoint::server::Running) {
    let config = ConfigDir::new(yaml);
    let mut s = settings(&config, "logs");
    s.mesh = Arc::new(MeshConfig::parse(mesh).expect("mesh config"));
    let running = bounded("waypoint start", waypoint::server::start(s))
        .await
        .expect("waypoint starts");
    (config, running)
}

/// Waits until `path` holds `n` lines (the writer thread writes just after the response).
async fn lines(path: &std::path::Path, n: usize) -> Vec<String> {
    eventually(&format!("{n} lines in {}", path.display()), async || {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let lines: Vec<String> = text.lines().map(str::to_string).collect();
        if lines.len() >= n {
            Ok(lines)
        } else {
            Err(text)
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_log_file_writes_istios_default_text_line() {
    let _b = echo("ratings", "127.0.160.11:9080").await;
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    let yaml = service("logs", "ratings", 9080, 9080, &["127.0.160.11"]);
    let (_c, wp) = start(&yaml, &format!("accessLogFile: {}\n", log.display())).await;
    let c = TestClient::new(wp.http_addr.expect("http listener"));
    let r = c
        .send(
            "GET",
            "ratings:9080",
            "/r/1",
            &[("x-request-id", "rid-text"), ("user-agent", "t/1")],
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(c.get("nowhere:9080", "/x").await.status, 404);
    let got = lines(&log, 2).await;
    // [start] "GET /r/1 HTTP/1.1" 200 - via_upstream - "-" 0 N D - "-" "t/1" "rid-text"
    // "ratings:9080" "127.0.160.11:9080" outbound|9080||ratings.logs.svc.cluster.local - local remote - route
    let ok = &got[0];
    assert!(ok.starts_with('['), "{ok}");
    let quoted: Vec<&str> = ok.split('"').collect();
    assert_eq!(quoted[1], "GET /r/1 HTTP/1.1", "{ok}");
    let after: Vec<&str> = quoted[2].split_whitespace().collect();
    assert_eq!(after[..2], ["200", "-"], "status and flags: {ok}");
    assert_eq!(quoted[7], "t/1");
    assert_eq!(quoted[9], "rid-text");
    assert_eq!(quoted[11], "ratings:9080");
    assert_eq!(quoted[13], "127.0.160.11:9080", "upstream host: {ok}");
    let tail: Vec<&str> = quoted[14].split_whitespace().collect();
    assert_eq!(tail[0], "outbound|9080||ratings.logs.svc.cluster.local");
    assert_eq!(
        tail.len(),
        6,
        "cluster, upstream local, local, remote, sni, route: {ok}"
    );
    let nr: Vec<&str> = got[1].split('"').collect();
    let after: Vec<&str> = nr[2].split_whitespace().collect();
    assert_eq!(after[..2], ["404", "NR"], "{}", got[1]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_log_encoding_json_writes_istios_labels() {
    let _b = echo("details", "127.0.160.21:9080").await;
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.json");
    let yaml = service("logs", "details", 9080, 9080, &["127.0.160.21"]);
    let mesh = format!(
        "accessLogFile: {}\naccessLogEncoding: JSON\n",
        log.display()
    );
    let (_c, wp) = start(&yaml, &mesh).await;
    let c = TestClient::new(wp.http_addr.expect("http listener"));
    c.send("GET", "details:9080", "/d", &[("x-request-id", "rid-json")])
        .await;
    let got = lines(&log, 1).await;
    let v: serde_json::Value = serde_json::from_str(&got[0]).unwrap();
    assert_eq!(v["response_code"], 200);
    assert_eq!(v["request_id"], "rid-json");
    assert_eq!(v["upstream_host"], "127.0.160.21:9080");
    assert_eq!(
        v["upstream_cluster"],
        "outbound|9080||details.logs.svc.cluster.local"
    );
    assert_eq!(v["method"], "GET");
    assert!(v["x_forwarded_for"].is_null());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn envoy_file_access_log_provider_text_and_labels() {
    let _b = echo("reviews", "127.0.160.31:9080").await;
    let dir = tempfile::tempdir().unwrap();
    let text_log = dir.path().join("text.log");
    let json_log = dir.path().join("labels.log");
    let mesh = format!(
        "extensionProviders:\n- name: mytext\n  envoyFileAccessLog:\n    path: {}\n    logFormat:\n      text: \"foo=%REQ(X-FOO)% ct=%RESP(CONTENT-TYPE)% code=%RESPONSE_CODE% ms=%DURATION%\\n\"\n- name: mylabels\n  envoyFileAccessLog:\n    path: {}\n    logFormat:\n      labels: {{foo: \"%REQ(X-FOO)%\", code: \"%RESPONSE_CODE%\", host: \"%UPSTREAM_HOST%\"}}\ndefaultProviders:\n  accessLogging: [mytext, mylabels]\n",
        text_log.display(),
        json_log.display()
    );
    let yaml = service("logs", "reviews", 9080, 9080, &["127.0.160.31"]);
    let (_c, wp) = start(&yaml, &mesh).await;
    let c = TestClient::new(wp.http_addr.expect("http listener"));
    c.send("GET", "reviews:9080", "/", &[("x-foo", "bar")])
        .await;
    let text = lines(&text_log, 1).await;
    let fields: Vec<&str> = text[0].split(' ').collect();
    assert_eq!(fields[0], "foo=bar");
    assert_eq!(fields[1], "ct=application/json", "{}", text[0]);
    assert_eq!(fields[2], "code=200");
    assert!(
        fields[3]
            .strip_prefix("ms=")
            .unwrap()
            .parse::<u64>()
            .is_ok(),
        "{}",
        text[0]
    );
    let json = lines(&json_log, 1).await;
    let v: serde_json::Value = serde_json::from_str(&json[0]).unwrap();
    assert_eq!(
        v,
        serde_json::json!({"foo": "bar", "code": 200, "host": "127.0.160.31:9080"})
    );
}
