//! ReferenceGrant for mesh routes: an HTTPRoute backendRef into another
//! namespace is refused (500, `ResolvedRefs=False` with `RefNotPermitted`
//! in `/config_dump` and `waypoint check`) until that namespace grants it,
//! and the grant takes effect on reload.

mod common;

use common::*;

const GRANT: &str = "---\napiVersion: gateway.networking.k8s.io/v1beta1\nkind: ReferenceGrant\nmetadata: {name: shop-routes, namespace: payments}\nspec:\n  from: [{group: gateway.networking.k8s.io, kind: HTTPRoute, namespace: shop}]\n  to: [{group: \"\", kind: Service, name: ledger}]\n";

/// `shop/cart` routed by a producer HTTPRoute to `payments/ledger`.
fn mesh() -> String {
    service("shop", "cart", 8080, 8080, &["127.0.111.10"])
        + &service("payments", "ledger", 8080, 8080, &["127.0.111.11"])
        + "---\napiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: to-ledger, namespace: shop}\nspec:\n  parentRefs: [{group: \"\", kind: Service, name: cart, port: 8080}]\n  rules:\n  - backendRefs: [{name: ledger, namespace: payments, port: 8080}]\n"
}

/// The `ResolvedRefs` condition of `shop/to-ledger` in `/config_dump`.
async fn resolved_refs(wp: &waypoint::server::Running) -> serde_json::Value {
    let (status, dump) = admin_get(wp, "/config_dump").await;
    assert_eq!(status, 200);
    let dump: serde_json::Value = serde_json::from_str(&dump).unwrap();
    let route = dump["snapshot"]["routes"]
        .as_array()
        .expect("snapshot.routes")
        .iter()
        .find(|r| r["kind"] == "HTTPRoute" && r["route"] == "shop/to-ledger")
        .cloned()
        .expect("the HTTPRoute in /config_dump");
    route["conditions"][0].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cross_namespace_backend_is_served_only_once_granted() {
    let _cart = echo("cart", "127.0.111.10:8080").await;
    let _ledger = echo("ledger", "127.0.111.11:8080").await;
    let config = ConfigDir::new(&mesh());
    let wp = waypoint(&config, "shop").await;
    let client = TestClient::new(wp.http_addr.unwrap());

    // No grant in payments: the reference is not permitted, the request 500s.
    let r = client.get("cart.shop:8080", "/pay").await;
    assert_eq!(r.status, 500, "{:?}", String::from_utf8_lossy(&r.body));
    let condition = resolved_refs(&wp).await;
    assert_eq!(condition["type"], "ResolvedRefs");
    assert_eq!(condition["status"], "False");
    assert_eq!(condition["reason"], "RefNotPermitted");
    assert!(
        condition["message"].as_str().unwrap().contains(
            "no ReferenceGrant in namespace payments allows HTTPRoute from namespace shop"
        ),
        "{condition}"
    );

    // payments grants shop's HTTPRoutes access to ledger: served from there.
    config.replace(&(mesh() + GRANT));
    until_reloaded(&wp, "grant loaded", async || {
        (wp.store.load().generation == 2).then_some(())
    })
    .await;
    assert_eq!(
        client.get("cart.shop:8080", "/pay").await.backend(),
        "ledger"
    );
    let condition = resolved_refs(&wp).await;
    assert_eq!(condition["status"], "True");
    assert_eq!(condition["reason"], "ResolvedRefs");

    // Removing the grant revokes the access, as the spec requires.
    config.replace(&mesh());
    until_reloaded(&wp, "grant removed", async || {
        (wp.store.load().generation == 3).then_some(())
    })
    .await;
    assert_eq!(client.get("cart.shop:8080", "/pay").await.status, 500);
}

#[test]
fn check_reports_the_refused_reference_and_passes_once_granted() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mesh.yaml");
    std::fs::write(&path, mesh()).unwrap();
    let (ok, report) = waypoint::check::check(&path, "shop");
    assert!(
        ok,
        "a refused reference is route status, not an invalid config: {report}"
    );
    assert!(
        report.contains("warning: HTTPRoute shop/to-ledger ResolvedRefs=False (RefNotPermitted): spec.rules[0].backendRefs[0]: backend Service payments/ledger: no ReferenceGrant in namespace payments allows HTTPRoute from namespace shop"),
        "{report}"
    );

    std::fs::write(&path, mesh() + GRANT).unwrap();
    let (ok, report) = waypoint::check::check(&path, "shop");
    assert!(ok, "{report}");
    assert!(report.contains("ReferenceGrant 1"), "{report}");
    assert!(!report.contains("ResolvedRefs=False"), "{report}");
}
