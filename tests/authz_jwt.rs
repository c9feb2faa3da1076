//! RequestAuthentication through the waypoint: tokens signed by test keys,
//! inline `jwks` and a `jwksUri` served by a test upstream, policies reading
//! request principals and claims.

mod common;

use common::authz::*;
use common::mesh::Mesh;
use common::*;

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

/// `jwksUri` keys are fetched again every `--jwks-refresh-interval`; a failed
/// fetch keeps the keys already fetched.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwks_refresh_follows_rotation_and_serves_stale_keys_on_failure() {
    use serde_json::json;
    use std::sync::{Arc, Mutex};
    use waypoint::test_helpers::jwt::TestIssuer;
    let [_productpage, _details, _reviews] = backends(42).await;
    let old_key = TestIssuer::es256("https://idp.example", "old");
    let new_key = TestIssuer::es256("https://idp.example", "new");
    let serving: Arc<Mutex<Option<String>>> = Arc::new(Mutex::new(Some(old_key.jwks())));
    let state = serving.clone();
    let fetches = tiny_http("127.0.42.20:8080", move |_| {
        match state.lock().unwrap().clone() {
            Some(jwks) => response("200 OK", "content-type: application/json\r\n", &jwks),
            None => response("500 Internal Server Error", "", "down"),
        }
    })
    .await;
    let config = bookinfo(42)
        + &service(NS, "jwks", 8080, 8080, &["127.0.42.20"])
        + &format!(
            "---\napiVersion: security.istio.io/v1\nkind: RequestAuthentication\nmetadata: {{name: jwt, namespace: {NS}}}\nspec:\n{}\n  jwtRules: [{{issuer: https://idp.example, jwksUri: http://jwks.{NS}.svc.cluster.local:8080/keys}}]\n",
            to("productpage")
        )
        + &policy(
            "require-jwt",
            &format!("{}\n  rules: [{{from: [{{source: {{requestPrincipals: [\"*\"]}}}}]}}]", to("productpage")),
        );
    let mesh = Mesh::start(&config, |s| {
        s.jwks_refresh_interval = std::time::Duration::from_millis(200);
    })
    .await;
    let plain = TestClient::new(mesh.wp.http_addr.unwrap());
    let exp = TestIssuer::now_plus(600);
    let status = async |token: &str| {
        plain
            .send(
                "GET",
                "productpage:9080",
                "/",
                &[("authorization", &format!("Bearer {token}"))],
            )
            .await
            .status
    };
    let old_token = old_key.sign(json!({"sub": "a", "exp": exp}));
    let new_token = new_key.sign(json!({"sub": "a", "exp": exp}));
    eventually("old key fetched", async || match status(&old_token).await {
        200 => Ok(()),
        s => Err(s.to_string()),
    })
    .await;

    // The JWKS endpoint fails: refreshes fail, the keys already fetched stay.
    *serving.lock().unwrap() = None;
    let before = fetches.load(std::sync::atomic::Ordering::SeqCst);
    eventually("a failed refresh", async || {
        let now = fetches.load(std::sync::atomic::Ordering::SeqCst);
        (now >= before + 2).then_some(()).ok_or(now.to_string())
    })
    .await;
    assert_eq!(status(&old_token).await, 200, "stale keys still verify");
    assert_eq!(status(&new_token).await, 401);

    // Rotation: the next refresh brings the new key.
    *serving.lock().unwrap() = Some(new_key.jwks());
    eventually("new key fetched", async || match status(&new_token).await {
        200 => Ok(()),
        s => Err(s.to_string()),
    })
    .await;
}
