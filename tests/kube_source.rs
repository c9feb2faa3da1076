//! `waypoint run --kube`: config from a (fake) Kubernetes API server. The
//! waypoint runs in-process against `FakeApiServer`, with echo backends as
//! the pods; tests change objects on the fake and wait (bounded) for the
//! routing a client sees to follow: after each reload the store finishes, or
//! for what the fake saw. Each test uses its own 127.0.4x.y
//! addresses so tests run in parallel.

mod common;

use std::path::Path;
use std::time::Duration;

use common::*;
use serde_json::{json, Value};
use waypoint::config::source::kube::client::ApiServerOptions;
use waypoint::config::source::kube::KubeSourceOptions;
use waypoint::server::Running;
use waypoint::settings::Settings;
use waypoint::test_helpers::fake_api::{FakeApiServer, FaultRule};

const NS: &str = "shop";

async fn fake_api(ip: &str) -> FakeApiServer {
    bounded(
        "fake API server",
        FakeApiServer::start(format!("{ip}:0").parse().unwrap()),
    )
    .await
    .expect("fake API server starts")
}

/// Starts a waypoint named `waypoint` in [`NS`] on `--kube` against `fake`.
async fn kube_waypoint(fake: &FakeApiServer, dir: &Path) -> Running {
    let kubeconfig = fake.write_kubeconfig(dir, NS).expect("write kubeconfig");
    let mut s = Settings::new("");
    s.kube = Some(KubeSourceOptions {
        gateway_name: "waypoint".to_string(),
        api_server: ApiServerOptions {
            kubeconfig: Some(kubeconfig),
            context: None,
        },
    });
    s.namespace = NS.to_string();
    s.http_listen = Some("127.0.0.1:0".parse().unwrap());
    s.admin_listen = "127.0.0.1:0".parse().unwrap();
    s.drain_timeout = Duration::from_secs(2);
    bounded("waypoint start", waypoint::server::start(s))
        .await
        .expect("waypoint starts")
}

fn namespace(name: &str, labels: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels}})
}

/// A Service on port 9080 named `http`.
fn service(ns: &str, name: &str, labels: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "Service",
           "metadata": {"name": name, "namespace": ns, "labels": labels},
           "spec": {"ports": [{"name": "http", "port": 9080, "targetPort": 9080}]}})
}

/// The Service's EndpointSlice: every `ip` ready on 9080.
fn endpoints(ns: &str, service: &str, ips: &[&str]) -> Value {
    let endpoints: Vec<Value> = ips
        .iter()
        .map(|ip| json!({"addresses": [ip], "conditions": {"ready": true}}))
        .collect();
    json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
           "metadata": {"name": format!("{service}-abc"), "namespace": ns,
                        "labels": {"kubernetes.io/service-name": service}},
           "addressType": "IPv4",
           "ports": [{"name": "http", "port": 9080}],
           "endpoints": endpoints})
}

/// An HTTPRoute attached to Service `parent`.
fn route(ns: &str, name: &str, parent: &str, rules: Value) -> Value {
    json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
           "metadata": {"name": name, "namespace": ns},
           "spec": {"parentRefs": [{"group": "", "kind": "Service", "name": parent, "port": 9080}],
                    "rules": rules}})
}

fn to(backend: &str) -> Value {
    json!({"backendRefs": [{"name": backend, "port": 9080}]})
}

/// Seeds Service + EndpointSlice.
fn put_service(fake: &FakeApiServer, ns: &str, name: &str, ips: &[&str]) {
    fake.put(service(ns, name, json!({})));
    fake.put(endpoints(ns, name, ips));
}

/// Waits until `/healthz/ready` answers 200 (polled: readiness has no notification).
async fn ready(wp: &Running) {
    eventually("readiness", async || {
        match admin_get(wp, "/healthz/ready").await.0 {
            200 => Ok(()),
            other => Err(other.to_string()),
        }
    })
    .await
}

/// Requests per check in [`served_by`]: a new endpoint shares the traffic with the old
/// ones (least request, ties broken at random), so one request may miss it; 32 all miss
/// one of two endpoints with a chance of 2⁻³².
const TRIES: usize = 32;

/// Waits until a request for `host` with `headers` is answered by `backend`: checked now
/// and after every reload attempt of `wp`'s store.
async fn served_by(
    wp: &Running,
    c: &TestClient,
    host: &str,
    headers: &[(&str, &str)],
    backend: &str,
) {
    let what = format!("{host} {headers:?} served by {backend}");
    until_reloaded(wp, &what, async || {
        for _ in 0..TRIES {
            let r = c.send("GET", host, "/", headers).await;
            if r.echo().is_some_and(|e| e.backend == backend) {
                return Some(());
            }
        }
        None
    })
    .await
}

async fn config_dump(wp: &Running) -> Value {
    serde_json::from_str(&admin_get(wp, "/config_dump").await.1).expect("config_dump is JSON")
}

/// Number of `/httproutes` watch requests the fake has seen.
fn route_watches(fake: &FakeApiServer) -> usize {
    fake.requests()
        .iter()
        .filter(|r| r.path.ends_with("/httproutes") && r.query.contains("watch=true"))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follows_routes_endpoints_and_reconnects() {
    let _own = echo("reviews-own", "127.0.40.11:9080").await;
    let _v1 = echo("reviews-v1", "127.0.40.12:9080").await;
    let _v2 = echo("reviews-v2", "127.0.40.13:9080").await;
    let _v3 = echo("reviews-v3", "127.0.40.14:9080").await;
    let _ratings = echo("ratings-a", "127.0.40.15:9080").await;
    let _ratings_b = echo("ratings-b", "127.0.40.16:9080").await;
    let fake = fake_api("127.0.40.1").await;
    fake.put(namespace(NS, json!({"istio.io/use-waypoint": "waypoint"})));
    put_service(&fake, NS, "reviews", &["127.0.40.11"]);
    put_service(&fake, NS, "reviews-v1", &["127.0.40.12"]);
    put_service(&fake, NS, "reviews-v2", &["127.0.40.13"]);
    put_service(&fake, NS, "reviews-v3", &["127.0.40.14"]);
    put_service(&fake, NS, "ratings", &["127.0.40.15"]);
    let jason = json!({"matches": [{"headers": [{"name": "end-user", "value": "jason"}]}],
                       "backendRefs": [{"name": "reviews-v2", "port": 9080}]});
    fake.put(route(
        NS,
        "reviews",
        "reviews",
        json!([jason, to("reviews-v1")]),
    ));

    let dir = tempfile::tempdir().unwrap();
    let wp = kube_waypoint(&fake, dir.path()).await;
    ready(&wp).await;
    let c = TestClient::new(wp.http_addr.unwrap());
    let as_jason = [("end-user", "jason")];
    assert_eq!(
        c.send("GET", "reviews:9080", "/", &as_jason)
            .await
            .backend(),
        "reviews-v2"
    );
    assert_eq!(c.get("reviews:9080", "/").await.backend(), "reviews-v1");
    let dump = config_dump(&wp).await;
    assert_eq!(dump["source"]["type"], "kube", "{dump}");
    assert_eq!(dump["source"]["synced"], true, "{dump}");
    assert_eq!(dump["source"]["kinds"]["HTTPRoute"]["objects"], 1, "{dump}");
    assert_eq!(dump["source"]["kinds"]["Service"]["objects"], 5, "{dump}");

    // Update the route: the new backend answers.
    fake.put(route(
        NS,
        "reviews",
        "reviews",
        json!([jason, to("reviews-v3")]),
    ));
    served_by(&wp, &c, "reviews:9080", &[], "reviews-v3").await;
    assert_eq!(
        c.send("GET", "reviews:9080", "/", &as_jason)
            .await
            .backend(),
        "reviews-v2"
    );

    // Add a route, then delete it: back to the Service's own endpoints.
    assert_eq!(c.get("ratings:9080", "/").await.backend(), "ratings-a");
    fake.put(route(NS, "ratings", "ratings", json!([to("reviews-v1")])));
    served_by(&wp, &c, "ratings:9080", &[], "reviews-v1").await;
    fake.delete(
        "gateway.networking.k8s.io/v1",
        "HTTPRoute",
        Some(NS),
        "ratings",
    );
    served_by(&wp, &c, "ratings:9080", &[], "ratings-a").await;

    // Add an endpoint: it gets traffic.
    fake.put(endpoints(NS, "ratings", &["127.0.40.15", "127.0.40.16"]));
    served_by(&wp, &c, "ratings:9080", &[], "ratings-b").await;

    // Every watch dropped (API server restart): re-watched, changes followed.
    fake.drop_watches();
    fake.put(route(
        NS,
        "reviews",
        "reviews",
        json!([jason, to("reviews-v1")]),
    ));
    served_by(&wp, &c, "reviews:9080", &[], "reviews-v1").await;

    // Disconnected while the route is deleted, and the history compacted: the
    // resumed watch gets 410 Gone, the relist notices the route is gone.
    fake.fail(FaultRule::new("/httproutes", 503).method(http::Method::GET));
    let watches = route_watches(&fake);
    fake.drop_watches();
    bounded(
        "route watch refused",
        fake.wait_until(|f| (route_watches(f) != watches).then_some(())),
    )
    .await;
    fake.delete(
        "gateway.networking.k8s.io/v1",
        "HTTPRoute",
        Some(NS),
        "reviews",
    );
    fake.compact();
    fake.clear_faults();
    served_by(&wp, &c, "reviews:9080", &as_jason, "reviews-own").await;
    assert_eq!(c.get("reviews:9080", "/").await.backend(), "reviews-own");
    let (_, metrics) = admin_get(&wp, "/stats/prometheus").await;
    assert!(
        metrics.contains("waypoint_config_reloads_total{result=\"failure\"} 0"),
        "{metrics}"
    );
    wp.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_route_rejected_only_when_it_is_ours() {
    let _blue = echo("blue", "127.0.41.11:9080").await;
    let _green = echo("green", "127.0.41.12:9080").await;
    let fake = fake_api("127.0.41.1").await;
    fake.put(namespace(NS, json!({"istio.io/use-waypoint": "waypoint"})));
    fake.put(namespace("elsewhere", json!({})));
    put_service(&fake, NS, "app", &["127.0.41.11"]);
    put_service(&fake, NS, "blue", &["127.0.41.11"]);
    put_service(&fake, NS, "green", &["127.0.41.12"]);
    fake.put(route(NS, "app", "app", json!([to("blue")])));
    // Bound to another waypoint: the Service's own label wins over none.
    fake.put(service(
        "elsewhere",
        "theirs",
        json!({"istio.io/use-waypoint": "other-waypoint"}),
    ));

    let dir = tempfile::tempdir().unwrap();
    let wp = kube_waypoint(&fake, dir.path()).await;
    ready(&wp).await;
    let c = TestClient::new(wp.http_addr.unwrap());
    assert_eq!(c.get("app:9080", "/").await.backend(), "blue");
    let generation = config_dump(&wp).await["generation"].as_u64().unwrap();

    // One bad field in a route of a bound Service: rejected whole.
    let mut bad = route(NS, "bad", "app", json!([to("green")]));
    bad["spec"]["rules"][0]["backendRefs"][0]["weight"] = json!(-3);
    fake.put(bad);
    let dump = until_reloaded(&wp, "rejection", async || {
        let dump = config_dump(&wp).await;
        (!dump["last_error"].is_null()).then_some(dump)
    })
    .await;
    let err = dump["last_error"]["errors"][0].as_str().unwrap();
    assert!(
        err.contains("kube:HTTPRoute/shop/bad")
            && err.contains("HTTPRoute shop/bad")
            && err.contains("spec.rules[0].backendRefs[0].weight"),
        "{err}"
    );
    assert_eq!(dump["generation"].as_u64(), Some(generation));
    assert_eq!(
        c.get("app:9080", "/").await.backend(),
        "blue",
        "old routing serves"
    );
    let (_, metrics) = admin_get(&wp, "/stats/prometheus").await;
    assert!(
        metrics.contains("waypoint_config_reloads_total{result=\"failure\"} 1"),
        "{metrics}"
    );

    // Fixed; then an invalid route for another waypoint's Service changes
    // nothing: our route update is still accepted.
    fake.delete("gateway.networking.k8s.io/v1", "HTTPRoute", Some(NS), "bad");
    let mut theirs = route("elsewhere", "theirs", "theirs", json!([to("x")]));
    theirs["spec"]["rules"][0]["backendRefs"][0]["weight"] = json!(-3);
    fake.put(theirs);
    fake.put(route(NS, "app", "app", json!([to("green")])));
    served_by(&wp, &c, "app:9080", &[], "green").await;
    let (_, metrics) = admin_get(&wp, "/stats/prometheus").await;
    assert!(
        metrics.contains("waypoint_config_reloads_total{result=\"failure\"} 1"),
        "{metrics}"
    );
    assert!(config_dump(&wp).await["generation"].as_u64().unwrap() > generation);
    wp.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn not_ready_until_every_kind_has_synced() {
    let _blue = echo("blue", "127.0.42.11:9080").await;
    let fake = fake_api("127.0.42.1").await;
    fake.put(namespace(NS, json!({"istio.io/use-waypoint": "waypoint"})));
    put_service(&fake, NS, "app", &["127.0.42.11"]);
    // Listing EndpointSlices fails until the fault is cleared.
    fake.fail(FaultRule::new("/endpointslices", 500));

    let dir = tempfile::tempdir().unwrap();
    let wp = kube_waypoint(&fake, dir.path()).await;
    bounded(
        "failed list",
        fake.wait_until(|f| {
            f.requests()
                .iter()
                .any(|r| r.path.ends_with("/endpointslices"))
                .then_some(())
        }),
    )
    .await;
    assert_eq!(admin_get(&wp, "/healthz/ready").await.0, 503);
    let dump = config_dump(&wp).await;
    assert_eq!(dump["source"]["synced"], false, "{dump}");
    assert!(
        dump["source"]["kinds"]["EndpointSlice"]["last_sync"].is_null(),
        "{dump}"
    );

    fake.clear_faults();
    ready(&wp).await;
    let c = TestClient::new(wp.http_addr.unwrap());
    assert_eq!(c.get("app:9080", "/").await.backend(), "blue");
    let dump = config_dump(&wp).await;
    assert_eq!(dump["source"]["synced"], true, "{dump}");
    assert_eq!(
        dump["source"]["kinds"]["EndpointSlice"]["objects"], 1,
        "{dump}"
    );
    wp.shutdown().await;
}

/// Istio's `istio` ConfigMap (MeshConfig) is read from the root namespace and
/// followed: a CUSTOM policy's provider comes and goes with it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mesh_config_from_the_istio_configmap() {
    let fake = fake_api("127.0.48.1").await;
    let dir = tempfile::tempdir().unwrap();
    fake.put(namespace(NS, json!({"istio.io/use-waypoint": "waypoint"})));
    fake.put(namespace("istio-system", json!({})));
    put_service(&fake, NS, "reviews", &["127.0.48.11"]);
    let mesh = |providers: &str| {
        json!({"apiVersion": "v1", "kind": "ConfigMap",
               "metadata": {"name": "istio", "namespace": "istio-system"},
               "data": {"mesh": format!("defaultConfig: {{discoveryAddress: istiod:15012}}\nextensionProviders: {providers}\n")}})
    };
    fake.put(mesh(
        "[{name: ext, envoyExtAuthzHttp: {service: authz.shop.svc.cluster.local, port: 8000}}]",
    ));
    // Another ConfigMap, in the root namespace too, is none of our business.
    fake.put(json!({"apiVersion": "v1", "kind": "ConfigMap",
                    "metadata": {"name": "other", "namespace": "istio-system"},
                    "data": {"mesh": "not: [valid"}}));
    fake.put(
        json!({"apiVersion": "security.istio.io/v1", "kind": "AuthorizationPolicy",
                    "metadata": {"name": "ext", "namespace": NS},
                    "spec": {"targetRefs": [{"kind": "Service", "name": "reviews"}],
                             "action": "CUSTOM", "provider": {"name": "ext"}, "rules": [{}]}}),
    );
    let wp = kube_waypoint(&fake, dir.path()).await;
    ready(&wp).await;
    let policy = |dump: &Value| dump["authorization"]["policies"][0].clone();
    let dump = config_dump(&wp).await;
    assert_eq!(policy(&dump)["provider"]["name"], "ext", "{dump}");
    assert!(policy(&dump)["rejected"].is_null());

    // The provider leaves the mesh config: the policy fails closed.
    fake.put(mesh("[]"));
    until_reloaded(&wp, "mesh config without the provider", async || {
        let dump = config_dump(&wp).await;
        policy(&dump)["rejected"]
            .as_str()
            .is_some_and(|r| r.contains("no extension provider \"ext\""))
            .then_some(())
    })
    .await;
    assert!(fake
        .requests()
        .iter()
        .any(|r| r.path == "/api/v1/namespaces/istio-system/configmaps"
            && r.query.contains("fieldSelector=metadata.name%3Distio")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reference_grant_from_the_api_opens_and_closes_a_cross_namespace_backend() {
    let _cart = echo("cart", "127.0.113.11:9080").await;
    let _ledger = echo("ledger", "127.0.113.12:9080").await;
    let fake = fake_api("127.0.113.1").await;
    fake.put(namespace(NS, json!({"istio.io/use-waypoint": "waypoint"})));
    fake.put(namespace("payments", json!({})));
    put_service(&fake, NS, "cart", &["127.0.113.11"]);
    put_service(&fake, "payments", "ledger", &["127.0.113.12"]);
    fake.put(route(
        NS,
        "to-ledger",
        "cart",
        json!([{"backendRefs": [{"name": "ledger", "namespace": "payments", "port": 9080}]}]),
    ));
    let dir = tempfile::tempdir().unwrap();
    let wp = kube_waypoint(&fake, dir.path()).await;
    ready(&wp).await;
    let c = TestClient::new(wp.http_addr.unwrap());
    assert_eq!(c.get("cart:9080", "/").await.status, 500, "no grant yet");

    let grant = json!({"apiVersion": "gateway.networking.k8s.io/v1beta1", "kind": "ReferenceGrant",
        "metadata": {"name": "shop-routes", "namespace": "payments"},
        "spec": {"from": [{"group": "gateway.networking.k8s.io", "kind": "HTTPRoute", "namespace": NS}],
                 "to": [{"group": "", "kind": "Service"}]}});
    fake.put(grant);
    served_by(&wp, &c, "cart:9080", &[], "ledger").await;
    let dump = config_dump(&wp).await;
    assert_eq!(
        dump["source"]["kinds"]["ReferenceGrant"]["objects"], 1,
        "{dump}"
    );

    // Deleting the grant revokes the access, as the Gateway API requires.
    fake.delete(
        "gateway.networking.k8s.io/v1beta1",
        "ReferenceGrant",
        Some("payments"),
        "shop-routes",
    );
    until_reloaded(&wp, "grant revoked", async || {
        (c.get("cart:9080", "/").await.status == 500).then_some(())
    })
    .await;
}

/// Telemetry resources are watched: a root-namespace default's metric override applies
/// as it appears and stops when it is deleted; another namespace's namespace-wide
/// Telemetry is for its own proxies, not ours.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn telemetry_resources_from_the_api() {
    let _b = echo("reviews", "127.0.49.11:9080").await;
    let fake = fake_api("127.0.49.1").await;
    let dir = tempfile::tempdir().unwrap();
    fake.put(namespace(NS, json!({"istio.io/use-waypoint": "waypoint"})));
    fake.put(namespace("istio-system", json!({})));
    fake.put(namespace("elsewhere", json!({})));
    put_service(&fake, NS, "reviews", &["127.0.49.11"]);
    let remove = |ns: &str, name: &str, label: &str| {
        json!({"apiVersion": "telemetry.istio.io/v1", "kind": "Telemetry",
               "metadata": {"name": name, "namespace": ns},
               "spec": {"metrics": [{"overrides": [{"tagOverrides": {label: {"operation": "REMOVE"}}}]}]}})
    };
    fake.put(remove("elsewhere", "theirs", "source_cluster"));
    let wp = kube_waypoint(&fake, dir.path()).await;
    ready(&wp).await;
    let c = TestClient::new(wp.http_addr.unwrap());
    let count = async |needle: &str| {
        let (_, text) = admin_get(&wp, "/stats/prometheus").await;
        requests_total(&text, &["destination_service_name=\"reviews\"", needle])
    };

    fake.put(remove("istio-system", "mesh-default", "request_protocol"));
    until_reloaded(&wp, "the root namespace's Telemetry", async || {
        assert_eq!(c.get("reviews:9080", "/").await.status, 200);
        (count("request_protocol=\"\"").await > 0).then_some(())
    })
    .await;
    assert_eq!(
        count("source_cluster=\"\"").await,
        0,
        "another namespace's Telemetry applied"
    );

    fake.delete(
        "telemetry.istio.io/v1",
        "Telemetry",
        Some("istio-system"),
        "mesh-default",
    );
    until_reloaded(&wp, "the Telemetry deleted", async || {
        assert_eq!(c.get("reviews:9080", "/").await.status, 200);
        (count("request_protocol=\"http\"").await > 0).then_some(())
    })
    .await;
    wp.shutdown().await;
}

/// The API server goes away (every request refused, every watch cut) for many retry
/// rounds: the waypoint keeps serving its last config and stays ready, as Envoy does
/// while istiod is away, retries (with kube-runtime's backoff), and follows what changed once the
/// API server is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_api_server_outage_keeps_the_last_config_serving() {
    let _one = echo("one", "127.0.47.11:9080").await;
    let _two = echo("two", "127.0.47.12:9080").await;
    let fake = fake_api("127.0.47.1").await;
    let dir = tempfile::tempdir().unwrap();
    fake.put(namespace(NS, json!({"istio.io/use-waypoint": "waypoint"})));
    put_service(&fake, NS, "app", &["127.0.47.11"]);
    let wp = kube_waypoint(&fake, dir.path()).await;
    ready(&wp).await;
    let c = TestClient::new(wp.http_addr.unwrap());
    assert_eq!(c.get("app:9080", "/").await.backend(), "one");

    let before = fake.requests().len();
    fake.fail(FaultRule::new("/", 503));
    fake.drop_watches();
    let refused_slice_requests = |f: &FakeApiServer| {
        f.requests()[before..]
            .iter()
            .filter(|r| r.path.ends_with("/endpointslices"))
            .count()
    };
    // Several retry rounds of the EndpointSlice watch, all refused.
    for round in 1..=6 {
        bounded(
            "a refused retry",
            fake.wait_until(|f| (refused_slice_requests(f) >= round).then_some(())),
        )
        .await;
        assert_eq!(c.get("app:9080", "/").await.backend(), "one");
        assert_eq!(admin_get(&wp, "/healthz/ready").await.0, 200);
    }
    // Changed while away; followed once the API server answers again.
    fake.put(endpoints(NS, "app", &["127.0.47.12"]));
    fake.clear_faults();
    served_by(&wp, &c, "app:9080", &[], "two").await;
    let (_, metrics) = admin_get(&wp, "/stats/prometheus").await;
    assert!(
        metrics.contains("waypoint_config_reloads_total{result=\"failure\"} 0"),
        "{metrics}"
    );
    wp.shutdown().await;
}
