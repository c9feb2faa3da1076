//! AuthorizationPolicy through the waypoint: Istio's bookinfo examples in
//! their ambient form (`targetRefs` to the Service or the waypoint's
//! Gateway), with real identities on HBONE, the plain listener's anonymous
//! callers, TCP passthrough, and reloads under load.

mod common;

use common::mesh::{http1_over, tunnel, ztunnel_headers, Mesh, CLIENT_ID};
use common::*;
use waypoint::echo::EchoServer;

const NS: &str = "shop";

fn svc(name: &str, vip: &str, pod: &str) -> String {
    service(NS, name, 9080, 9080, &[pod]).replace(
        "spec:\n  ports:",
        &format!("spec:\n  clusterIP: {vip}\n  ports:"),
    )
}

/// productpage, details and reviews, each with a VIP and one echo pod on
/// `127.0.<lane>.x` (a lane per test: they run in parallel).
fn bookinfo(lane: u8) -> String {
    svc("productpage", "10.96.30.1", &format!("127.0.{lane}.11"))
        + &svc("details", "10.96.30.2", &format!("127.0.{lane}.12"))
        + &svc("reviews", "10.96.30.3", &format!("127.0.{lane}.13"))
}

fn policy(name: &str, spec: &str) -> String {
    format!("---\napiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {{name: {name}, namespace: {NS}}}\nspec:\n{spec}\n")
}

const ALLOW_NOTHING: &str =
    "  targetRefs: [{group: gateway.networking.k8s.io, kind: Gateway, name: waypoint}]";

fn to(service: &str) -> String {
    format!("  targetRefs: [{{group: \"\", kind: Service, name: {service}}}]")
}

async fn backends(lane: u8) -> [EchoServer; 3] {
    [
        echo("productpage", &format!("127.0.{lane}.11:9080")).await,
        echo("details", &format!("127.0.{lane}.12:9080")).await,
        echo("reviews", &format!("127.0.{lane}.13:9080")).await,
    ]
}

/// `GET path` over a fresh HBONE tunnel to `vip` as the mesh's client identity.
async fn mesh_get(mesh: &Mesh, vip: &str, path: &str) -> (u16, String) {
    let stream = tunnel(
        &mesh.client(),
        mesh.hbone(),
        &format!("{vip}:9080"),
        &ztunnel_headers("10.1.2.3:40000"),
    )
    .await
    .expect("CONNECT accepted: authorization is per request");
    let (status, _, body) = http1_over(stream, "svc", path).await;
    (status, String::from_utf8_lossy(&body).into_owned())
}

fn metric(metrics: &str, name: &str, needles: &[&str]) -> u64 {
    metrics
        .lines()
        .filter(|l| l.starts_with(name) && needles.iter().all(|n| l.contains(n)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

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
    let mesh = Mesh::start(&config, |_| {}).await;
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
        s.write_all(b"ping").await.unwrap();
        let mut buf = [0u8; 4];
        bounded("echo or close", s.read(&mut buf))
            .await
            .map(|n| buf[..n].to_vec())
            .unwrap_or_default()
    };
    assert_eq!(echo_once(&mesh).await, b"", "denied: closed without a byte");

    // Our caller allowed by principal: the bytes come back.
    mesh.config.replace(
        &(tcp
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

/// A one-purpose HTTP/1.1 server on `addr`: `answer` turns each request head
/// into a whole response; the connection closes after it. Counts requests.
async fn tiny_http(
    addr: &str,
    answer: impl Fn(&str) -> String + Send + Sync + 'static,
) -> std::sync::Arc<std::sync::atomic::AtomicUsize> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let served = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let l = tokio::net::TcpListener::bind(addr).await.unwrap();
    let count = served.clone();
    let answer = std::sync::Arc::new(answer);
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            let (count, answer) = (count.clone(), answer.clone());
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                let mut seen = Vec::new();
                while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => seen.extend_from_slice(&buf[..n]),
                    }
                }
                count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let resp = answer(&String::from_utf8_lossy(&seen));
                let _ = s.write_all(resp.as_bytes()).await;
            });
        }
    });
    served
}

fn response(status: &str, headers: &str, body: &str) -> String {
    format!(
        "HTTP/1.1 {status}\r\n{headers}content-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
}

/// A JWKS endpoint: answers every request with `jwks`.
async fn jwks_server(addr: &str, jwks: String) -> std::sync::Arc<std::sync::atomic::AtomicUsize> {
    tiny_http(addr, move |_| {
        response("200 OK", "content-type: application/json\r\n", &jwks)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwt_request_principals_and_claims_with_inline_and_fetched_keys() {
    use serde_json::json;
    use waypoint::test_helpers::jwt::TestIssuer;
    let [productpage, _details, _reviews] = backends(37).await;
    let fetched_issuer = TestIssuer::rs256("https://idp.example", "rsa-1");
    let inline_issuer = TestIssuer::es256("https://inline.example", "ec-1");
    let served = jwks_server("127.0.37.20:8080", fetched_issuer.jwks()).await;
    let config = bookinfo(37)
        + &service(NS, "jwks", 8080, 8080, &["127.0.37.20"])
        + &format!(
            "---\napiVersion: security.istio.io/v1\nkind: RequestAuthentication\nmetadata: {{name: jwt, namespace: {NS}}}\nspec:\n{}\n  jwtRules:\n  - issuer: https://idp.example\n    jwksUri: http://jwks.{NS}.svc.cluster.local:8080/keys\n  - issuer: https://inline.example\n    jwks: '{}'\n    audiences: [bookinfo]\n",
            to("productpage"),
            inline_issuer.jwks()
        )
        + &policy(
            "require-admins",
            &format!(
                "{}\n  rules:\n  - from: [{{source: {{requestPrincipals: [\"https://idp.example/*\"]}}}}]\n    when: [{{key: \"request.auth.claims[groups]\", values: [admins]}}]\n  - from: [{{source: {{requestPrincipals: [\"https://inline.example/alice\"]}}}}]",
                to("productpage")
            ),
        );
    let mesh = Mesh::start(&config, |_| {}).await;
    let plain = TestClient::new(mesh.wp.http_addr.unwrap());
    let bearer = |t: &str| format!("Bearer {t}");
    let exp = TestIssuer::now_plus(600);
    let admin = fetched_issuer.sign(json!({"sub": "root", "groups": ["admins"], "exp": exp}));

    // The keys come from the JWKS Service, fetched through the waypoint's dialer.
    let allowed = eventually("JWKS fetched", async || {
        let r = plain
            .send(
                "GET",
                "productpage:9080",
                "/",
                &[("authorization", &bearer(&admin))],
            )
            .await;
        if r.status == 200 {
            Ok(r)
        } else {
            Err(format!("{} {:?}", r.status, r.body))
        }
    })
    .await;
    assert!(served.load(std::sync::atomic::Ordering::SeqCst) >= 1);
    let seen = allowed.echo().unwrap();
    assert!(
        !seen.headers.contains_key("authorization"),
        "the token is not forwarded"
    );

    // No token: no request principal, so the ALLOW policy denies.
    assert_eq!(plain.get("productpage:9080", "/").await.status, 403);
    // A valid token without the claim: 403; the inline issuer's alice: 200.
    let user = fetched_issuer.sign(json!({"sub": "bob", "groups": ["dev"], "exp": exp}));
    let r = plain
        .send(
            "GET",
            "productpage:9080",
            "/",
            &[("authorization", &bearer(&user))],
        )
        .await;
    assert_eq!(r.status, 403);
    let alice = inline_issuer.sign(json!({"sub": "alice", "aud": "bookinfo", "exp": exp}));
    let r = plain
        .send(
            "GET",
            "productpage:9080",
            "/",
            &[("authorization", &bearer(&alice))],
        )
        .await;
    assert_eq!(r.status, 200);

    // Invalid tokens: 401 with Envoy's reason, never the backend.
    let before = productpage.count();
    let expired = fetched_issuer
        .sign(json!({"sub": "root", "groups": ["admins"], "exp": TestIssuer::now_plus(-3600)}));
    let r = plain
        .send(
            "GET",
            "productpage:9080",
            "/",
            &[("authorization", &bearer(&expired))],
        )
        .await;
    assert_eq!((r.status, &r.body[..]), (401, &b"Jwt is expired"[..]));
    assert!(r.header("www-authenticate").unwrap().starts_with("Bearer"));
    let wrong_aud = inline_issuer.sign(json!({"sub": "alice", "aud": "other", "exp": exp}));
    let r = plain
        .send(
            "GET",
            "productpage:9080",
            "/",
            &[("authorization", &bearer(&wrong_aud))],
        )
        .await;
    assert_eq!(
        (r.status, &r.body[..]),
        (401, &b"Audiences in Jwt are not allowed"[..])
    );
    let stranger = TestIssuer::es256("https://stranger.example", "x").sign(json!({"sub": "s"}));
    let r = plain
        .send(
            "GET",
            "productpage:9080",
            "/",
            &[("authorization", &bearer(&stranger))],
        )
        .await;
    assert_eq!(
        (r.status, &r.body[..]),
        (401, &b"Jwt issuer is not configured"[..])
    );
    let grpc = plain
        .send(
            "POST",
            "productpage:9080",
            "/pkg.Svc/M",
            &[
                ("content-type", "application/grpc"),
                ("authorization", &bearer(&expired)),
            ],
        )
        .await;
    assert_eq!((grpc.status, grpc.header("grpc-status")), (200, Some("16")));
    assert_eq!(productpage.count(), before);
}

/// Istio's ext-authz sample, in short: allows when `x-ext-authz: allow`.
async fn ext_authz_service(addr: &str) -> std::sync::Arc<std::sync::atomic::AtomicUsize> {
    tiny_http(addr, |head| {
        let head = head.to_ascii_lowercase();
        if head.contains("\r\nx-ext-authz: allow\r\n") && head.starts_with("get /check/") {
            response("200 OK", "x-ext-authz-check-result: allowed\r\n", "")
        } else {
            response(
                "403 Forbidden",
                "x-ext-authz-check-result: denied\r\nx-internal: secret\r\n",
                "denied by ext_authz for not found header `x-ext-authz: allow` in the request",
            )
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn custom_action_asks_the_ext_authz_service() {
    let [productpage, details, reviews] = backends(38).await;
    let checks = ext_authz_service("127.0.38.20:8000").await;
    let mesh_config = "extensionProviders:\n- name: ext\n  envoyExtAuthzHttp: {service: ext-authz.shop.svc.cluster.local, port: 8000, pathPrefix: /check, includeRequestHeadersInCheck: [x-ext-authz], headersToUpstreamOnAllow: [x-ext-authz-check-result], headersToDownstreamOnDeny: [x-ext-authz-check-result]}\n- name: ext-open\n  envoyExtAuthzHttp: {service: authz-down.shop.svc.cluster.local, port: 8000, failOpen: true, timeout: 2s}\n- name: ext-closed\n  envoyExtAuthzHttp: {service: authz-down.shop.svc.cluster.local, port: 8000, statusOnError: '503', timeout: 2s}\n";
    let custom = |name: &str, service: &str, provider: &str, rules: &str| {
        policy(
            name,
            &format!(
                "{}\n  action: CUSTOM\n  provider: {{name: {provider}}}\n  rules: {rules}",
                to(service)
            ),
        )
    };
    let config = bookinfo(38)
        + &service(NS, "ext-authz", 8000, 8000, &["127.0.38.20"])
        + &service(NS, "authz-down", 8000, 8000, &["127.0.38.99"])
        + &custom(
            "ext-headers",
            "productpage",
            "ext",
            "[{to: [{operation: {paths: [\"/headers*\"]}}]}]",
        )
        + &custom("ext-open", "details", "ext-open", "[{}]")
        + &custom("ext-closed", "reviews", "ext-closed", "[{}]");
    let mesh = Mesh::start(&config, |s| {
        s.mesh = std::sync::Arc::new(waypoint::config::MeshConfig::parse(mesh_config).unwrap());
    })
    .await;
    let plain = TestClient::new(mesh.wp.http_addr.unwrap());

    // Allowed by the service: its result header reaches the backend.
    let ok = plain
        .send(
            "GET",
            "productpage:9080",
            "/headers",
            &[("x-ext-authz", "allow")],
        )
        .await;
    assert_eq!(ok.status, 200);
    assert_eq!(
        ok.echo().unwrap().headers["x-ext-authz-check-result"],
        "allowed"
    );
    // Denied: the service's status, body and the headers the provider passes on.
    let no = plain.get("productpage:9080", "/headers").await;
    assert_eq!(no.status, 403);
    assert!(String::from_utf8_lossy(&no.body).starts_with("denied by ext_authz"));
    assert_eq!(no.header("x-ext-authz-check-result"), Some("denied"));
    assert_eq!(
        no.header("x-internal"),
        None,
        "only the headers the provider names"
    );
    // A path the policy's rules do not match is not checked at all.
    let unchecked = plain.get("productpage:9080", "/other").await;
    assert_eq!(unchecked.status, 200);
    assert_eq!(checks.load(std::sync::atomic::Ordering::SeqCst), 2);
    assert_eq!(productpage.count(), 2, "the denied request never arrived");

    // The service unreachable: failOpen lets the request through, otherwise statusOnError.
    assert_eq!(plain.get("details:9080", "/").await.status, 200);
    assert_eq!(plain.get("reviews:9080", "/").await.status, 503);
    assert_eq!((details.count(), reviews.count()), (1, 0));

    let metrics = requests_eventually(&mesh.wp, &["response_flags=\"UAEX\""], 2).await;
    for (policy, result) in [
        ("shop/ext-headers", "allowed"),
        ("shop/ext-headers", "denied"),
        ("shop/ext-open", "error_allowed"),
        ("shop/ext-closed", "error_denied"),
    ] {
        let needles = [
            format!("policy=\"{policy}\""),
            format!("result=\"{result}\""),
        ];
        let needles: Vec<&str> = needles.iter().map(String::as_str).collect();
        assert_eq!(
            metric(&metrics, "waypoint_authz_decisions_total", &needles),
            1,
            "{policy} {result}"
        );
    }
}

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

mod grpc_ext_authz {
    use std::convert::Infallible;
    use std::sync::{Arc, Mutex};
    use std::task::{Context, Poll};

    use tonic::body::Body;
    use tonic::codegen::{BoxFuture, Service};
    use tonic::server::UnaryService;
    use tonic::{Request, Response, Status};
    use tonic_prost::ProstCodec;
    use waypoint::authz::ext_authz_proto as pb;

    /// An `envoy.service.auth.v3.Authorization` server: allows requests with
    /// `x-ext-authz: allow`; keeps every CheckRequest.
    #[derive(Clone, Default)]
    pub struct AuthzServer(pub Arc<Mutex<Vec<pb::CheckRequest>>>);

    impl AuthzServer {
        pub async fn start(addr: &str) -> Self {
            let server = AuthzServer::default();
            let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
            let incoming = futures::stream::unfold(listener, |l| async move {
                let conn = l.accept().await.map(|(s, _)| s);
                Some((conn, l))
            });
            let svc = server.clone();
            tokio::spawn(async move {
                let _ = tonic::transport::Server::builder()
                    .serve_with_incoming(svc, incoming)
                    .await;
            });
            server
        }
    }

    impl Service<http::Request<Body>> for AuthzServer {
        type Response = http::Response<Body>;
        type Error = Infallible;
        type Future = BoxFuture<Self::Response, Self::Error>;

        fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
            Poll::Ready(Ok(()))
        }

        fn call(&mut self, req: http::Request<Body>) -> Self::Future {
            let me = self.clone();
            Box::pin(async move {
                if req.uri().path() != pb::CHECK_PATH {
                    return Ok(Status::unimplemented(req.uri().path().to_owned()).into_http());
                }
                let mut grpc = tonic::server::Grpc::new(ProstCodec::<
                    pb::CheckResponse,
                    pb::CheckRequest,
                >::default());
                Ok(grpc.unary(me, req).await)
            })
        }
    }

    impl tonic::server::NamedService for AuthzServer {
        const NAME: &'static str = "envoy.service.auth.v3.Authorization";
    }

    impl UnaryService<pb::CheckRequest> for AuthzServer {
        type Response = pb::CheckResponse;
        type Future = BoxFuture<Response<Self::Response>, Status>;

        fn call(&mut self, req: Request<pb::CheckRequest>) -> Self::Future {
            let me = self.clone();
            Box::pin(async move {
                let check = req.into_inner();
                let allow = check
                    .attributes
                    .as_ref()
                    .and_then(|a| a.request.as_ref())
                    .and_then(|r| r.http.as_ref())
                    .and_then(|h| h.headers.get("x-ext-authz"))
                    .is_some_and(|v| v == "allow");
                me.0.lock().unwrap().push(check);
                let header = |v: &str| pb::HeaderValueOption {
                    header: Some(pb::HeaderValue {
                        key: "x-ext-authz-check-result".to_string(),
                        value: v.to_string(),
                    }),
                };
                Ok(Response::new(if allow {
                    pb::CheckResponse {
                        status: Some(pb::RpcStatus::default()),
                        ok_response: Some(pb::OkHttpResponse {
                            headers: vec![header("allowed")],
                            headers_to_remove: vec!["x-ext-authz".to_string()],
                        }),
                        ..Default::default()
                    }
                } else {
                    pb::CheckResponse {
                        status: Some(pb::RpcStatus {
                            code: 7,
                            message: "denied".to_string(),
                        }),
                        denied_response: Some(pb::DeniedHttpResponse {
                            status: Some(pb::HttpStatus { code: 401 }),
                            headers: vec![header("denied")],
                            body: "denied by grpc ext_authz".to_string(),
                        }),
                        ..Default::default()
                    }
                }))
            })
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn custom_action_over_grpc_check() {
    let [productpage, _details, _reviews] = backends(40).await;
    let server = grpc_ext_authz::AuthzServer::start("127.0.40.20:9000").await;
    let mesh_config = "extensionProviders:\n- name: ext-grpc\n  envoyExtAuthzGrpc: {service: ext-authz-grpc.shop.svc.cluster.local, port: 9000, timeout: 2s}\n";
    let config = bookinfo(40)
        + &service(NS, "ext-authz-grpc", 9000, 9000, &["127.0.40.20"])
        + &policy(
            "ext-grpc",
            &format!(
                "{}\n  action: CUSTOM\n  provider: {{name: ext-grpc}}\n  rules: [{{}}]",
                to("productpage")
            ),
        );
    let mesh = Mesh::start(&config, |s| {
        s.mesh = std::sync::Arc::new(waypoint::config::MeshConfig::parse(mesh_config).unwrap());
    })
    .await;
    let plain = TestClient::new(mesh.wp.http_addr.unwrap());

    let ok = plain
        .send(
            "GET",
            "productpage:9080",
            "/p?q=1",
            &[("x-ext-authz", "allow")],
        )
        .await;
    assert_eq!(ok.status, 200);
    let seen = ok.echo().unwrap();
    assert_eq!(seen.headers["x-ext-authz-check-result"], "allowed");
    assert!(
        !seen.headers.contains_key("x-ext-authz"),
        "headers_to_remove applied"
    );

    let no = plain.get("productpage:9080", "/p").await;
    assert_eq!(
        (no.status, &no.body[..]),
        (401, &b"denied by grpc ext_authz"[..])
    );
    assert_eq!(no.header("x-ext-authz-check-result"), Some("denied"));

    // Over HBONE the check carries the caller's SPIFFE id and original address.
    assert_eq!(mesh_get(&mesh, "10.96.30.1", "/from-mesh").await.0, 401);
    let checks = server.0.lock().unwrap().clone();
    let last = checks.last().unwrap().attributes.clone().unwrap();
    let source = last.source.unwrap();
    assert_eq!(source.principal, CLIENT_ID);
    assert_eq!(
        source.address.unwrap().socket_address.unwrap().address,
        "10.1.2.3"
    );
    let http = last.request.unwrap().http.unwrap();
    assert_eq!(
        (http.method.as_str(), http.path.as_str()),
        ("GET", "/from-mesh")
    );
    assert_eq!(checks.len(), 3);
    assert_eq!(productpage.count(), 1);
}
