//! Linkerd's policy resources mapped onto the waypoint's authorization:
//! Servers, their AuthorizationPolicies with MeshTLSAuthentication, a
//! ServerAuthorization, and a Namespace's default inbound policy.

mod common;

use common::authz::*;
use common::mesh::Mesh;
use common::*;

fn linkerd_pod(name: &str, app: &str, ip: &str) -> String {
    format!("---\napiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, namespace: {NS}, labels: {{app: {app}}}}}\nspec:\n  containers: [{{name: app, ports: [{{name: http, containerPort: 9080}}]}}]\nstatus: {{podIP: {ip}}}\n")
}

fn linkerd(kind: &str, version: &str, name: &str, spec: &str) -> String {
    format!("---\napiVersion: policy.linkerd.io/{version}\nkind: {kind}\nmetadata: {{name: {name}, namespace: {NS}}}\nspec:\n{spec}\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn linkerd_servers_and_their_authorizations() {
    let [productpage, details, reviews] = backends(39).await;
    // Namespace default: authenticated callers only, for ports no Server covers.
    let base = format!("apiVersion: v1\nkind: Namespace\nmetadata: {{name: {NS}, annotations: {{config.linkerd.io/default-inbound-policy: all-authenticated}}}}\n")
        + &bookinfo(39)
        + &linkerd_pod("productpage-0", "productpage", "127.0.39.11")
        + &linkerd_pod("details-0", "details", "127.0.39.12")
        + &linkerd_pod("reviews-0", "reviews", "127.0.39.13")
        // productpage: a Server by port name, opened to one identity.
        + &linkerd("Server", "v1beta3", "productpage-http", "  podSelector: {matchLabels: {app: productpage}}\n  port: http\n  proxyProtocol: HTTP/1")
        + &linkerd("MeshTLSAuthentication", "v1alpha1", "sleep-only", "  identities: [sleep.client-ns.serviceaccount.identity.linkerd.cluster.local]")
        + &linkerd("AuthorizationPolicy", "v1alpha1", "productpage-authz", "  targetRef: {group: policy.linkerd.io, kind: Server, name: productpage-http}\n  requiredAuthenticationRefs: [{group: policy.linkerd.io, kind: MeshTLSAuthentication, name: sleep-only}]")
        // reviews: a Server by number that nobody authorizes.
        + &linkerd("Server", "v1beta1", "reviews", "  podSelector: {matchLabels: {app: reviews}}\n  port: 9080");
    let mesh = Mesh::start(&base, |_| {}).await;
    let plain = TestClient::new(mesh.wp.http_addr.unwrap());

    assert_eq!(
        mesh_get(&mesh, "10.96.30.1", "/").await.0,
        200,
        "sleep's identity"
    );
    assert_eq!(
        plain.get("productpage:9080", "/").await.status,
        403,
        "no identity"
    );
    assert_eq!(
        mesh_get(&mesh, "10.96.30.3", "/").await.0,
        403,
        "a Server with no authorization denies"
    );
    // details has no Server: the Namespace's all-authenticated default.
    assert_eq!(mesh_get(&mesh, "10.96.30.2", "/").await.0, 200);
    assert_eq!(plain.get("details:9080", "/").await.status, 403);
    assert_eq!(
        (productpage.count(), details.count(), reviews.count()),
        (1, 1, 0)
    );

    // A ServerAuthorization opens reviews to unauthenticated loopback clients.
    mesh.config.replace(&(base
        + &linkerd("ServerAuthorization", "v1beta1", "reviews-local", "  server: {name: reviews}\n  client:\n    unauthenticated: true\n    networks: [{cidr: 127.0.0.0/8, except: [127.0.0.2/32]}]")));
    until_reloaded(&mesh.wp, "ServerAuthorization applied", async || {
        (mesh.wp.store.load().generation == 2).then_some(())
    })
    .await;
    assert_eq!(plain.get("reviews:9080", "/").await.status, 200);
    assert_eq!(reviews.count(), 1);
    let (_, dump) = admin_get(&mesh.wp, "/config_dump").await;
    assert!(
        dump.contains("linkerd:shop/reviews"),
        "the mapped policy is dumped"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn linkerd_route_level_authorization() {
    let [productpage, _details, _reviews] = backends(41).await;
    let config = bookinfo(41)
        + &linkerd_pod("productpage-0", "productpage", "127.0.41.11")
        + &linkerd("Server", "v1beta3", "web", "  podSelector: {matchLabels: {app: productpage}}\n  port: 9080")
        // Two routes on the Server: /public for anyone local, /admin for sleep only.
        + &linkerd("HTTPRoute", "v1beta3", "public", "  parentRefs: [{group: policy.linkerd.io, kind: Server, name: web}]\n  rules: [{matches: [{path: {type: PathPrefix, value: /public}}]}]")
        + &linkerd("HTTPRoute", "v1beta3", "admin", "  parentRefs: [{group: policy.linkerd.io, kind: Server, name: web}]\n  rules: [{matches: [{path: {type: Exact, value: /admin}, method: POST}, {path: {value: /admin/}, headers: [{name: x-admin, value: \"yes\"}]}]}]")
        + &linkerd("NetworkAuthentication", "v1alpha1", "local", "  networks: [{cidr: 127.0.0.0/8}]")
        + &linkerd("MeshTLSAuthentication", "v1alpha1", "sleep", "  identityRefs: [{kind: ServiceAccount, name: sleep, namespace: client-ns}]")
        + &linkerd("AuthorizationPolicy", "v1alpha1", "public-local", "  targetRef: {group: policy.linkerd.io, kind: HTTPRoute, name: public}\n  requiredAuthenticationRefs: [{group: policy.linkerd.io, kind: NetworkAuthentication, name: local}]")
        + &linkerd("AuthorizationPolicy", "v1alpha1", "admin-sleep", "  targetRef: {group: policy.linkerd.io, kind: HTTPRoute, name: admin}\n  requiredAuthenticationRefs: [{group: policy.linkerd.io, kind: MeshTLSAuthentication, name: sleep}]");
    let mesh = Mesh::start(&config, |_| {}).await;
    let plain = TestClient::new(mesh.wp.http_addr.unwrap());

    assert_eq!(plain.get("productpage:9080", "/public/x").await.status, 200);
    assert_eq!(
        plain.get("productpage:9080", "/publicity").await.status,
        403,
        "prefixes are whole segments"
    );
    assert_eq!(
        plain.get("productpage:9080", "/other").await.status,
        403,
        "no route"
    );
    // /admin needs sleep's identity (HBONE); the anonymous caller is refused.
    assert_eq!(
        plain
            .send("POST", "productpage:9080", "/admin", &[])
            .await
            .status,
        403
    );
    assert_eq!(
        mesh_get(&mesh, "10.96.30.1", "/admin").await.0,
        403,
        "GET is not the route's method"
    );
    assert_eq!(
        mesh_send(&mesh, "10.96.30.1", "POST", "/admin", &[]).await,
        200
    );
    assert_eq!(
        mesh_send(
            &mesh,
            "10.96.30.1",
            "GET",
            "/admin/users",
            &[("x-admin", "yes")]
        )
        .await,
        200
    );
    assert_eq!(
        mesh_send(&mesh, "10.96.30.1", "GET", "/admin/users", &[]).await,
        403,
        "header condition"
    );
    assert_eq!(productpage.count(), 3);
}
