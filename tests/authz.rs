//! AuthorizationPolicy through the waypoint: Istio's bookinfo examples in
//! their ambient form (`targetRefs` to the Service or the waypoint's
//! Gateway), with real identities on HBONE, the plain listener's anonymous
//! callers, TCP passthrough, and reloads under load.

mod common;

use common::authz::*;
use common::mesh::{tunnel, ztunnel_headers, Mesh, CLIENT_ID};
use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bookinfo_allow_nothing_then_viewers() {
    let [productpage, details, reviews] = backends(31).await;
    let mesh = Mesh::start(
        &(bookinfo(31) + &policy("allow-nothing", ALLOW_NOTHING)),
        |_| {},
    )
    .await;
    let plain = TestClient::new(mesh.wp.http_addr.unwrap());

    // allow-nothing: every request through the waypoint is denied, with Envoy's answer.
    let (status, body) = mesh_get(&mesh, "10.96.30.1", "/productpage").await;
    assert_eq!((status, body.as_str()), (403, "RBAC: access denied"));
    let r = plain.get("productpage:9080", "/").await;
    assert_eq!(r.status, 403);
    assert_eq!(r.header("content-type"), Some("text/plain"));
    assert_eq!(productpage.count(), 0, "a denial never reaches the backend");
    let metrics = requests_eventually(&mesh.wp, &["response_code=\"403\""], 2).await;
    assert_eq!(
        metric(
            &metrics,
            "waypoint_authz_decisions_total",
            &["policy=\"none\"", "action=\"ALLOW\"", "result=\"denied\""]
        ),
        2
    );

    // productpage-viewer (GET only), details-viewer and reviews-viewer (principals);
    // reviews-viewer in its selector form, which a waypoint ignores.
    let viewers = policy("allow-nothing", ALLOW_NOTHING)
        + &policy(
            "productpage-viewer",
            &format!(
                "{}\n  action: ALLOW\n  rules: [{{to: [{{operation: {{methods: [GET]}}}}]}}]",
                to("productpage")
            ),
        )
        + &policy(
            "details-viewer",
            &format!(
                "{}\n  rules:\n  - from: [{{source: {{principals: [\"cluster.local/ns/client-ns/sa/sleep\"]}}}}]\n    to: [{{operation: {{methods: [GET]}}}}]",
                to("details")
            ),
        )
        + &policy(
            "reviews-viewer",
            "  selector: {matchLabels: {app: reviews}}\n  rules:\n  - from: [{source: {principals: [\"cluster.local/ns/client-ns/sa/sleep\"]}}]",
        );
    mesh.config.replace(&(bookinfo(31) + &viewers));
    until_reloaded(&mesh.wp, "viewers applied", async || {
        (mesh.wp.store.load().authz.policies.len() == 4).then_some(())
    })
    .await;

    assert_eq!(mesh_get(&mesh, "10.96.30.1", "/productpage").await.0, 200);
    assert_eq!(plain.get("productpage:9080", "/").await.status, 200);
    let post = plain.send("POST", "productpage:9080", "/", &[]).await;
    assert_eq!(post.status, 403, "GET only");
    assert_eq!(productpage.count(), 2);

    // details: the mesh client's principal is allowed; the plain listener has none.
    assert_eq!(mesh_get(&mesh, "10.96.30.2", "/details/0").await.0, 200);
    assert_eq!(plain.get("details:9080", "/details/0").await.status, 403);
    assert_eq!(details.count(), 1);
    assert!(CLIENT_ID.ends_with("client-ns/sa/sleep"));

    // reviews: its only policy has a selector, so allow-nothing still denies.
    assert_eq!(mesh_get(&mesh, "10.96.30.3", "/reviews/0").await.0, 403);
    assert_eq!(reviews.count(), 0);
    let (_, dump) = admin_get(&mesh.wp, "/config_dump").await;
    let dump: serde_json::Value = serde_json::from_str(&dump).unwrap();
    let ignored = dump["authorization"]["policies"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "shop/reviews-viewer")
        .expect("dumped")["ignored"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(ignored.contains("selector"), "{ignored}");

    let (_, metrics) = admin_get(&mesh.wp, "/stats/prometheus").await;
    assert_eq!(
        metric(
            &metrics,
            "waypoint_authz_decisions_total",
            &["policy=\"shop/details-viewer\"", "result=\"allowed\""]
        ),
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deny_on_a_header_wins_on_both_paths_and_grpc_gets_permission_denied() {
    let [productpage, _details, _reviews] = backends(32).await;
    let config = bookinfo(32)
        + &policy("allow-all", &format!("{}\n  rules: [{{}}]", to("productpage")))
        + &policy(
            "deny-blocked",
            &format!(
                "{}\n  action: DENY\n  rules:\n  - when: [{{key: \"request.headers[x-user]\", values: [\"blocked*\"]}}]\n  - to: [{{operation: {{paths: [\"/admin/*\"]}}}}]",
                to("productpage")
            ),
        );
    let mesh = Mesh::start(&config, |_| {}).await;
    let wp = &mesh.wp;
    let plain = TestClient::new(wp.http_addr.unwrap());

    // Fast path (a bodiless GET) and full proxy (a POST with a body), alike.
    assert_eq!(plain.get("productpage:9080", "/ok").await.status, 200);
    let blocked = [("x-user", "blocked-7")];
    assert_eq!(
        plain
            .send("GET", "productpage:9080", "/ok", &blocked)
            .await
            .status,
        403
    );
    assert_eq!(
        plain
            .send("POST", "productpage:9080", "/ok", &blocked)
            .await
            .status,
        403
    );
    // The path a policy judges is normalised, and forwarded that way.
    let sneaky = plain.get("productpage:9080", "/public/../admin/x").await;
    assert_eq!(sneaky.status, 403);
    let dotted = plain.get("productpage:9080", "/a/./b/../c?q=1").await;
    assert_eq!(dotted.status, 200);
    let seen = dotted.echo().unwrap();
    assert_eq!((seen.path.as_str(), seen.query.as_str()), ("/a/c", "q=1"));

    // A gRPC caller gets a trailers-only PERMISSION_DENIED.
    let grpc = plain
        .send(
            "POST",
            "productpage:9080",
            "/pkg.Svc/Method",
            &[("content-type", "application/grpc"), ("x-user", "blocked")],
        )
        .await;
    assert_eq!(grpc.status, 200);
    assert_eq!(grpc.header("grpc-status"), Some("7"));
    assert_eq!(grpc.header("content-type"), Some("application/grpc"));
    assert!(grpc.body.is_empty());
    assert_eq!(
        productpage.count(),
        2,
        "only the two allowed requests arrived"
    );

    let metrics = requests_eventually(wp, &["response_code=\"403\""], 3).await;
    assert_eq!(
        metric(
            &metrics,
            "waypoint_authz_decisions_total",
            &[
                "policy=\"shop/deny-blocked\"",
                "action=\"DENY\"",
                "result=\"denied\""
            ]
        ),
        4
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreadable_policy_denies_what_it_targets_and_says_why() {
    let [productpage, details, _reviews] = backends(33).await;
    // `method` is not a field: the policy cannot be enforced as written.
    let config = bookinfo(33)
        + &policy(
            "typo",
            &format!(
                "{}\n  rules: [{{to: [{{operation: {{method: [GET]}}}}]}}]",
                to("productpage")
            ),
        );
    let mesh = Mesh::start(&config, |_| {}).await;
    let wp = &mesh.wp;
    let plain = TestClient::new(wp.http_addr.unwrap());
    assert_eq!(plain.get("productpage:9080", "/").await.status, 403);
    assert_eq!(
        plain.get("details:9080", "/").await.status,
        200,
        "the rest serves"
    );
    assert_eq!((productpage.count(), details.count()), (0, 1));
    let (_, dump) = admin_get(wp, "/config_dump").await;
    let dump: serde_json::Value = serde_json::from_str(&dump).unwrap();
    let rejected = dump["authorization"]["policies"][0]["rejected"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        rejected.contains("spec.rules[0].to[0].operation") && rejected.contains("method"),
        "{rejected}"
    );

    // A dry-run policy is evaluated and recorded, never enforced.
    let dry = bookinfo(33)
        + &policy(
            "deny-all",
            &format!("{}\n  action: DENY\n  rules: [{{}}]", to("details")),
        )
        .replace(
            "namespace: shop}",
            "namespace: shop, annotations: {istio.io/dry-run: \"true\"}}",
        );
    mesh.config.replace(&dry);
    until_reloaded(wp, "dry-run policy applied", async || {
        (wp.store
            .load()
            .authz
            .policies
            .first()
            .map(|(p, _)| p.dry_run)
            == Some(true))
        .then_some(())
    })
    .await;
    assert_eq!(plain.get("details:9080", "/").await.status, 200);
    let (_, metrics) = admin_get(wp, "/stats/prometheus").await;
    assert_eq!(
        metric(
            &metrics,
            "waypoint_authz_decisions_total",
            &["policy=\"shop/deny-all\"", "result=\"dry_run_denied\""]
        ),
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_connections_are_authorized_on_l4_attributes() {
    common::mesh::tcp_echo("127.0.30.21:9000").await;
    let tcp = service(NS, "db", 9000, 9000, &["127.0.30.21"])
        .replace("name: http", "name: tcp")
        .replace(
            "spec:\n  ports:",
            "spec:\n  clusterIP: 10.96.30.9\n  ports:",
        );
    // ALLOW for another caller only; the GET-only rule can never match TCP.
    let config = tcp.clone()
        + &policy(
            "db-allow",
            &format!(
                "{}\n  rules:\n  - from: [{{source: {{principals: [\"cluster.local/ns/other/sa/x\"]}}}}]\n  - to: [{{operation: {{methods: [GET]}}}}]",
                to("db")
            ),
        );
    let mesh = mesh_with_providers(
        &config,
        "extensionProviders: [{name: ext, envoyExtAuthzHttp: {service: authz.shop.svc.cluster.local, port: 8000}}]",
    )
    .await;
    let echo_once = async |mesh: &Mesh| {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut s = tunnel(
            &mesh.client(),
            mesh.hbone(),
            "10.96.30.9:9000",
            &ztunnel_headers("10.1.2.3:40000"),
        )
        .await
        .expect("CONNECT accepted");
        // A TCP port is not sniffed: a denied connection may close before the write.
        if s.write_all(b"ping").await.is_err() {
            return Vec::new();
        }
        let mut buf = [0u8; 4];
        bounded("echo or close", s.read(&mut buf))
            .await
            .map(|n| buf[..n].to_vec())
            .unwrap_or_default()
    };
    assert_eq!(echo_once(&mesh).await, b"", "denied: closed without a byte");

    // Our caller allowed by principal: the bytes come back.
    mesh.config.replace(
        &(tcp.clone()
            + &policy(
                "db-allow",
                &format!(
                    "{}\n  rules: [{{from: [{{source: {{principals: [\"{}\"]}}}}]}}]",
                    to("db"),
                    CLIENT_ID.trim_start_matches("spiffe://")
                ),
            )),
    );
    until_reloaded(&mesh.wp, "policy replaced", async || {
        (mesh.wp.store.load().generation == 2).then_some(())
    })
    .await;
    assert_eq!(echo_once(&mesh).await, b"ping");

    // A CUSTOM policy cannot check raw TCP: it denies rather than being skipped.
    mesh.config.replace(
        &(tcp
            + &policy(
                "db-custom",
                &format!(
                    "{}\n  action: CUSTOM\n  provider: {{name: ext}}\n  rules: [{{}}]",
                    to("db")
                ),
            )),
    );
    until_reloaded(&mesh.wp, "CUSTOM policy", async || {
        (mesh.wp.store.load().generation == 3).then_some(())
    })
    .await;
    assert_eq!(echo_once(&mesh).await, b"");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_policy_reloaded_under_load_flips_the_outcome_without_failures() {
    let [productpage, _details, _reviews] = backends(35).await;
    let allow = bookinfo(35) + &policy("gate", &format!("{}\n  rules: [{{}}]", to("productpage")));
    let mesh = Mesh::start(&allow, |_| {}).await;
    let addr = mesh.wp.http_addr.unwrap();
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let load: Vec<_> = (0..4)
        .map(|_| {
            let mut stopped = stopped.clone();
            tokio::spawn(async move {
                let client = TestClient::new(addr);
                let mut statuses = Vec::new();
                while !*stopped.borrow_and_update() {
                    statuses.push(client.get("productpage:9080", "/").await.status);
                }
                statuses
            })
        })
        .collect();
    // Let some requests through, then deny everything mid-load.
    eventually("requests flowing", async || {
        (productpage.count() >= 20)
            .then_some(())
            .ok_or(productpage.count().to_string())
    })
    .await;
    mesh.config
        .replace(&(bookinfo(35) + &policy("gate", &to("productpage"))));
    until_reloaded(&mesh.wp, "deny-all applied", async || {
        (mesh.wp.store.load().generation == 2).then_some(())
    })
    .await;
    let after = TestClient::new(addr)
        .get("productpage:9080", "/")
        .await
        .status;
    stop.send(true).unwrap();
    let mut all = Vec::new();
    for task in load {
        all.extend(bounded("load task", task).await.unwrap());
    }
    assert_eq!(after, 403);
    assert!(all.iter().all(|s| *s == 200 || *s == 403), "{all:?}");
    let denied = all.iter().filter(|s| **s == 403).count();
    assert_eq!(
        all.len() - denied,
        productpage.count(),
        "every 200 came from the backend"
    );
}

/// Istio's filter order: WasmPlugins in the AUTHN and AUTHZ phases run before
/// authorization (their header edits are what a policy judges), the others after.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authn_phase_plugins_run_before_authorization() {
    let [productpage, _details, _reviews] = backends(43).await;
    let deny_flagged = policy(
        "deny-flagged",
        &format!(
            "{}\n  action: DENY\n  rules: [{{when: [{{key: \"request.headers[x-flag]\", values: [\"set-by-wasm\"]}}]}}]",
            to("productpage")
        ),
    );
    let plugin = |phase: &str| {
        wasm_plugin(
            NS,
            "flag",
            "header_filter",
            &format!("  phase: {phase}\n  pluginConfig:\n    request: {{set: {{x-flag: set-by-wasm}}}}\n"),
        )
    };
    let mesh = Mesh::start(&(bookinfo(43) + &deny_flagged + &plugin("AUTHN")), |_| {}).await;
    let plain = TestClient::new(mesh.wp.http_addr.unwrap());
    assert_eq!(
        plain.get("productpage:9080", "/").await.status,
        403,
        "AUTHN plugin, then RBAC"
    );

    // In the STATS phase the plugin runs after authorization: its header is not judged.
    mesh.config
        .replace(&(bookinfo(43) + &deny_flagged + &plugin("STATS")));
    until_reloaded(&mesh.wp, "STATS plugin", async || {
        (mesh.wp.store.load().generation == 2).then_some(())
    })
    .await;
    let r = plain.get("productpage:9080", "/").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.echo().unwrap().headers["x-flag"], "set-by-wasm");
    assert_eq!(productpage.count(), 1);
}
