//! Istio's Telemetry resources on the waypoint: access-log filters, the precedence of
//! root-namespace, namespace and targetRef levels, and a bad expression rejected while
//! the old config keeps serving.

mod common;

use std::sync::Arc;

use common::*;
use waypoint::config::MeshConfig;

fn telemetry(ns: &str, name: &str, spec: &str) -> String {
    format!("---\napiVersion: telemetry.istio.io/v1\nkind: Telemetry\nmetadata: {{name: {name}, namespace: {ns}}}\nspec:\n{spec}")
}

/// MeshConfig with two file providers: `a` and `b`, each `authority code`.
fn mesh(a: &std::path::Path, b: &std::path::Path) -> String {
    let provider = |name: &str, p: &std::path::Path| {
        format!("- name: {name}\n  envoyFileAccessLog:\n    path: {}\n    logFormat: {{text: \"%REQ(:AUTHORITY)% %RESPONSE_CODE%\\n\"}}\n", p.display())
    };
    format!(
        "extensionProviders:\n{}{}",
        provider("a", a),
        provider("b", b)
    )
}

async fn start(config: &ConfigDir, mesh: &str) -> waypoint::server::Running {
    let mut s = settings(config, "tel");
    s.mesh = Arc::new(MeshConfig::parse(mesh).expect("mesh config"));
    bounded("waypoint start", waypoint::server::start(s))
        .await
        .expect("waypoint starts")
}

fn read(path: &std::path::Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

/// Waits until the log at `path` holds `want` (the writer thread writes just after the
/// response; a marker request sent last tells us everything before it was written).
async fn log_is(path: &std::path::Path, want: &[&str]) {
    eventually(&format!("{} = {want:?}", path.display()), async || {
        let got = read(path);
        if got == want {
            Ok(())
        } else {
            Err(format!("{got:?}"))
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_filter_on_response_code_logs_only_5xx() {
    let _ok = echo("fine", "127.0.161.11:9080").await;
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a.log"), dir.path().join("b.log"));
    let yaml = [
        service("tel", "fine", 9080, 9080, &["127.0.161.11"]),
        // Nothing listens there: the waypoint answers 503.
        service("tel", "broken", 9080, 9080, &["127.0.161.12"]),
        telemetry("istio-system", "mesh-default", "  accessLogging:\n  - providers: [{name: a}]\n    filter: {expression: 'response.code >= 500'}\n"),
    ]
    .concat();
    let config = ConfigDir::new(&yaml);
    let wp = start(&config, &mesh(&a, &b)).await;
    let c = TestClient::new(wp.http_addr.unwrap());
    for _ in 0..3 {
        assert_eq!(c.get("fine:9080", "/").await.status, 200);
    }
    assert_eq!(c.get("broken:9080", "/").await.status, 503);
    assert_eq!(c.get("fine:9080", "/").await.status, 200);
    assert_eq!(c.get("broken:9080", "/").await.status, 503);
    log_is(&a, &["broken:9080 503", "broken:9080 503"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn root_namespace_then_namespace_then_target_ref() {
    let _one = echo("one", "127.0.162.11:9080").await;
    let _two = echo("two", "127.0.162.12:9080").await;
    let _three = echo("three", "127.0.162.13:9080").await;
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a.log"), dir.path().join("b.log"));
    let yaml = [
        service("tel", "one", 9080, 9080, &["127.0.162.11"]),
        service("tel", "two", 9080, 9080, &["127.0.162.12"]),
        service("tel", "three", 9080, 9080, &["127.0.162.13"]),
        // Root: log everything to `a`.
        telemetry("istio-system", "mesh-default", "  accessLogging:\n  - providers: [{name: a}]\n"),
        // The waypoint's namespace: only requests with x-log: yes (providers inherited).
        telemetry("tel", "ns-default", "  accessLogging:\n  - filter: {expression: \"request.headers['x-log'] == 'yes'\"}\n"),
        // Service two: to `b` instead (filter inherited); Service three: off.
        telemetry("tel", "two", "  targetRefs: [{group: \"\", kind: Service, name: two}]\n  accessLogging:\n  - providers: [{name: b}]\n"),
        telemetry("tel", "three", "  targetRefs: [{group: \"\", kind: Service, name: three}]\n  accessLogging:\n  - disabled: true\n"),
    ]
    .concat();
    let config = ConfigDir::new(&yaml);
    let wp = start(&config, &mesh(&a, &b)).await;
    let c = TestClient::new(wp.http_addr.unwrap());
    let yes = [("x-log", "yes")];
    for host in ["one:9080", "two:9080", "three:9080"] {
        assert_eq!(c.get(host, "/").await.status, 200);
        assert_eq!(c.send("GET", host, "/", &yes).await.status, 200);
    }
    log_is(&a, &["one:9080 200"]).await;
    log_is(&b, &["two:9080 200"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_expression_is_rejected_and_the_old_config_keeps_logging() {
    let _b = echo("kept", "127.0.163.11:9080").await;
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a.log"), dir.path().join("b.log"));
    let base = service("tel", "kept", 9080, 9080, &["127.0.163.11"]);
    let good = telemetry(
        "istio-system",
        "mesh-default",
        "  accessLogging:\n  - providers: [{name: a}]\n",
    );
    let config = ConfigDir::new(&format!("{base}{good}"));
    let wp = start(&config, &mesh(&a, &b)).await;
    let c = TestClient::new(wp.http_addr.unwrap());
    c.get("kept:9080", "/").await;
    log_is(&a, &["kept:9080 200"]).await;

    let bad = telemetry("istio-system", "mesh-default", "  accessLogging:\n  - providers: [{name: a}]\n    filter: {expression: 'size(request.headers) > 2'}\n");
    config.replace(&format!("{base}{bad}"));
    let mut attempts = wp.store.subscribe();
    bounded("reload", attempts.wait_for(|n| *n >= 1))
        .await
        .expect("store alive");
    let (_, dump) = admin_get(&wp, "/config_dump").await;
    let dump: serde_json::Value = serde_json::from_str(&dump).unwrap();
    assert_eq!(dump["generation"], 1);
    let err = dump["last_error"]["errors"][0].as_str().unwrap();
    assert!(
        err.contains("mesh.yaml")
            && err.contains("Telemetry istio-system/mesh-default")
            && err.contains("spec.accessLogging[0].filter.expression")
            && err.contains("size(request.headers) > 2"),
        "{err}"
    );
    c.get("kept:9080", "/again").await;
    log_is(&a, &["kept:9080 200", "kept:9080 200"]).await;
}

/// `metrics[].overrides` as users write them: a label removed mesh-wide, a label's value
/// taken from a request header for one Service, and REQUEST_COUNT disabled for another.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metric_overrides_remove_upsert_and_disable() {
    let _plain = echo("plain", "127.0.164.11:9080").await;
    let _tenant = echo("tenant", "127.0.164.12:9080").await;
    let _quiet = echo("quiet", "127.0.164.13:9080").await;
    let dir = tempfile::tempdir().unwrap();
    let yaml = [
        service("tel", "plain", 9080, 9080, &["127.0.164.11"]),
        service("tel", "tenant", 9080, 9080, &["127.0.164.12"]),
        service("tel", "quiet", 9080, 9080, &["127.0.164.13"]),
        telemetry("istio-system", "mesh-default", "  metrics:\n  - providers: [{name: prometheus}]\n    overrides:\n    - tagOverrides: {request_protocol: {operation: REMOVE}}\n"),
        telemetry("tel", "tenant", "  targetRefs: [{group: \"\", kind: Service, name: tenant}]\n  metrics:\n  - overrides:\n    - match: {metric: REQUEST_COUNT}\n      tagOverrides: {destination_canonical_revision: {value: \"request.headers['x-tenant']\"}}\n"),
        telemetry("tel", "quiet", "  targetRefs: [{group: \"\", kind: Service, name: quiet}]\n  metrics:\n  - overrides:\n    - match: {metric: REQUEST_COUNT}\n      disabled: true\n"),
    ]
    .concat();
    let config = ConfigDir::new(&yaml);
    let wp = start(&config, &mesh(&dir.path().join("a"), &dir.path().join("b"))).await;
    let c = TestClient::new(wp.http_addr.unwrap());
    for host in ["plain:9080", "quiet:9080", "quiet:9080"] {
        assert_eq!(c.get(host, "/").await.status, 200);
    }
    for tenant in ["acme", "acme", "globex"] {
        let r = c
            .send("GET", "tenant:9080", "/", &[("x-tenant", tenant)])
            .await;
        assert_eq!(r.status, 200);
    }
    assert_eq!(c.get("tenant:9080", "/").await.status, 200);

    let (_, text) = admin_get(&wp, "/stats/prometheus").await;
    let plain = "destination_service_name=\"plain\"";
    assert_eq!(requests_total(&text, &[plain, "request_protocol=\"\""]), 1);
    assert_eq!(
        requests_total(&text, &[plain, "request_protocol=\"http\""]),
        0
    );
    let tenant = "destination_service_name=\"tenant\"";
    let revision = |r: &str| format!("destination_canonical_revision=\"{r}\"");
    assert_eq!(requests_total(&text, &[tenant, &revision("acme")]), 2);
    assert_eq!(requests_total(&text, &[tenant, &revision("globex")]), 1);
    // No header: `unknown`, as Istio labels what it cannot know.
    assert_eq!(requests_total(&text, &[tenant, &revision("unknown")]), 1);
    // The root level's REMOVE is inherited by the Service level.
    assert_eq!(requests_total(&text, &[tenant, "request_protocol=\"\""]), 4);
    // Disabled for `quiet`: not counted, while its other metrics still record.
    let quiet = "destination_service_name=\"quiet\"";
    assert_eq!(requests_total(&text, &[quiet]), 0);
    let durations = text
        .lines()
        .filter(|l| {
            l.starts_with("istio_request_duration_milliseconds_count{") && l.contains(quiet)
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum::<u64>();
    assert_eq!(durations, 2, "{text}");
}
