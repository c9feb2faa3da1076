//! Our wasm-filters through HttpFilters with real header maps.

use std::sync::Arc;

use super::*;
use crate::echo::EchoServer;
use crate::test_helpers::wasm_filters::filter_wasm;

fn url(name: &str) -> String {
    filter_wasm(name).display().to_string()
}

#[tokio::test]
async fn header_filter_sets_adds_and_removes_on_both_sides() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (host, _) = host();
    let doc = plugin_yaml(
        "headers",
        &url("header_filter"),
        "  pluginConfig:\n    request:\n      set: {x-team: payments}\n      add: {x-trace: wasm}\n      remove: [x-debug]\n    response:\n      set: {x-served-by: waypoint}\n      remove: [server]\n",
    );
    let set = compile(dir.path(), &[doc], &host).expect("plugin compiles");
    let out = exchange(
        &set,
        &[("x-debug", "1"), ("x-trace", "client"), ("x-team", "old")],
        None,
    )
    .await;
    assert_eq!(out.request, Verdict::Continue);
    assert_eq!(values(&out.request_headers, "x-team"), ["payments"]);
    assert_eq!(values(&out.request_headers, "x-trace"), ["client", "wasm"]);
    assert!(out.request_headers.get("x-debug").is_none());
    assert_eq!(out.response, Some(Verdict::Continue));
    assert_eq!(values(&out.response_headers, "x-served-by"), ["waypoint"]);
    assert!(out.response_headers.get("server").is_none());
}

#[tokio::test]
async fn rate_limit_answers_429_per_key_and_counts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (host, registry) = host();
    let doc = plugin_yaml(
        "ratelimit-429",
        &url("rate_limit"),
        "  pluginConfig: {header: x-user, tokens_per_fill: 1, fill_interval_ms: 3600000, max_tokens: 2}\n",
    );
    let set = compile(dir.path(), &[doc], &host).expect("plugin compiles");
    // Two instances share the bucket through shared data: requests are
    // spread over both and still see one budget.
    for _ in 0..2 {
        let out = exchange(&set, &[("x-user", "alice")], None).await;
        assert_eq!(out.request, Verdict::Continue);
    }
    let out = exchange(&set, &[("x-user", "alice")], None).await;
    match out.request {
        Verdict::Respond(r) => {
            assert_eq!(r.status, 429);
            assert_eq!(&r.body[..], b"rate limited\n");
            assert!(r
                .headers
                .iter()
                .any(|(k, v)| k == "x-rate-limited" && v == "true"));
        }
        other => panic!("expected 429, got {other:?}"),
    }
    let out = exchange(&set, &[("x-user", "bob")], None).await;
    assert_eq!(
        out.request,
        Verdict::Continue,
        "another key has its own bucket"
    );
    let text = {
        let mut buf = Vec::new();
        prometheus::Encoder::encode(
            &prometheus::TextEncoder::new(),
            &registry.gather(),
            &mut buf,
        )
        .expect("encodes");
        String::from_utf8(buf).expect("utf8")
    };
    assert!(text.contains("wasm_rate_limit_rejected 1"), "{text}");
}

#[tokio::test]
async fn ext_auth_allows_on_200_and_denies_otherwise() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (host, _) = host();
    let auth = EchoServer::start("auth", "127.0.5.1:0".parse().expect("literal"))
        .await
        .expect("auth server starts");
    let addr = auth.addr;
    let cluster = format!("outbound|{}||auth.default.svc.cluster.local", addr.port());
    let caller: Arc<dyn HttpCaller> = Arc::new(HyperHttpCaller::new(move |c| {
        let (host, _) = parse_cluster(c);
        (host == "auth.default.svc.cluster.local").then_some(addr)
    }));
    let doc = plugin_yaml(
        "ext-auth",
        &url("ext_auth"),
        &format!("  pluginConfig:\n    cluster: \"{cluster}\"\n    path: /check\n    timeout_ms: 2000\n    forward_headers: [x-echo-status, x-user]\n"),
    );
    let set = compile(dir.path(), &[doc], &host).expect("plugin compiles");

    let out = exchange(&set, &[("x-user", "alice")], Some(caller.clone())).await;
    assert_eq!(out.request, Verdict::Continue, "auth answered 200");
    let seen = auth.received();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].path, "/check");
    assert_eq!(
        seen[0].headers.get("x-user").map(String::as_str),
        Some("alice")
    );

    let out = exchange(&set, &[("x-echo-status", "403")], Some(caller.clone())).await;
    match out.request {
        Verdict::Respond(r) => assert_eq!(r.status, 403),
        other => panic!("expected 403, got {other:?}"),
    }

    // An unknown cluster: the SDK gets BadArgument and the filter denies.
    let doc = plugin_yaml(
        "ext-auth-nowhere",
        &url("ext_auth"),
        "  pluginConfig: {cluster: \"outbound|1||nowhere\"}\n",
    );
    let set = compile(dir.path(), &[doc], &host).expect("plugin compiles");
    let out = exchange(&set, &[], Some(caller)).await;
    assert!(
        matches!(out.request, Verdict::Respond(ref r) if r.status == 403),
        "{:?}",
        out.request
    );
}

#[tokio::test]
async fn phases_and_priorities_order_the_chain_as_istio_does() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (host, _) = host();
    let add = |name: &str, extra: &str| {
        plugin_yaml(
            name,
            &url("header_filter"),
            &format!("{extra}  pluginConfig:\n    request:\n      add: {{x-order: {name}}}\n"),
        )
    };
    let docs = [
        add("stats", "  phase: STATS\n  priority: 100\n"),
        add("authn-low", "  phase: AUTHN\n  priority: 1\n"),
        add("none-b", ""),
        add("authz", "  phase: AUTHZ\n"),
        add("authn-high", "  phase: AUTHN\n  priority: 10\n"),
        add("none-a", ""),
    ];
    let set = compile(dir.path(), &docs, &host).expect("plugins compile");
    let out = exchange(&set, &[], None).await;
    assert_eq!(
        values(&out.request_headers, "x-order"),
        [
            "authn-high",
            "authn-low",
            "authz",
            "none-a",
            "none-b",
            "stats"
        ]
    );
}

#[tokio::test]
async fn service_target_and_port_match_select_the_chain() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (host, _) = host();
    let doc = |name: &str, target: &str, extra: &str| {
        format!(
            "apiVersion: extensions.istio.io/v1alpha1\nkind: WasmPlugin\nmetadata: {{name: {name}, namespace: default}}\nspec:\n  targetRefs: [{target}]\n  url: {}\n{extra}",
            url("header_filter")
        )
    };
    let docs = [
        doc(
            "for-reviews",
            "{kind: Service, group: \"\", name: reviews}",
            "",
        ),
        doc(
            "for-ratings",
            "{kind: Service, group: \"\", name: ratings}",
            "",
        ),
        doc(
            "port-8080",
            "{kind: Gateway, group: gateway.networking.k8s.io, name: waypoint}",
            "  match: [{ports: [{number: 8080}]}]\n",
        ),
        doc(
            "client-only",
            "{kind: Gateway, group: gateway.networking.k8s.io, name: waypoint}",
            "  match: [{mode: CLIENT}]\n",
        ),
    ];
    let set = compile(dir.path(), &docs, &host).expect("plugins compile");
    let names = |svc: &str, port: u16| -> Vec<String> {
        set.chain_for(&crate::config::NamespacedName::new("default", svc), port)
            .iter()
            .map(|p| p.key().name.clone())
            .collect()
    };
    assert_eq!(names("reviews", 9080), ["for-reviews"]);
    assert_eq!(names("ratings", 8080), ["for-ratings", "port-8080"]);
    assert!(names("details", 9080).is_empty());
}
