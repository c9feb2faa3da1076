//! HTTPRoute filters end to end: header modifiers (what the backend saw and
//! what the client got), redirects (the Location), rewrites (the path and
//! Host the backend saw) and mirrors (the mirror backend got a copy).

mod common;

use common::*;

fn route(rules: &str) -> String {
    format!(
        "---\napiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {{name: web, namespace: f}}\nspec:\n  parentRefs:\n  - {{group: \"\", kind: Service, name: web, port: 9080}}\n  rules:\n{rules}"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn header_modifiers_at_rule_and_backend_level() {
    let _b = echo("web", "127.0.3.11:9080").await;
    let mut yaml = service("f", "web", 9080, 9080, &["127.0.3.11"]);
    yaml += &route(
        r#"  - filters:
    - type: RequestHeaderModifier
      requestHeaderModifier:
        set: [{name: x-set, value: rule}]
        add: [{name: x-add, value: added}]
        remove: [x-remove]
    - type: ResponseHeaderModifier
      responseHeaderModifier:
        set: [{name: x-resp-set, value: "1"}]
        add: [{name: x-resp-add, value: "2"}]
        remove: [content-type]
    backendRefs:
    - name: web
      port: 9080
      filters:
      - type: RequestHeaderModifier
        requestHeaderModifier:
          set: [{name: x-backend-level, value: "yes"}]
"#,
    );
    let config = ConfigDir::new(&yaml);
    let wp = waypoint(&config, "f").await;
    let c = TestClient::new(wp.http_addr.unwrap());
    let r = c
        .send(
            "GET",
            "web:9080",
            "/",
            &[
                ("x-set", "client"),
                ("x-add", "client"),
                ("x-remove", "gone"),
            ],
        )
        .await;
    let seen = r.echo().unwrap();
    assert_eq!(seen.headers["x-set"], "rule");
    assert_eq!(
        seen.headers["x-add"], "client,added",
        "add appends with a comma"
    );
    assert!(!seen.headers.contains_key("x-remove"));
    assert_eq!(seen.headers["x-backend-level"], "yes");
    assert_eq!(r.header("x-resp-set"), Some("1"));
    assert_eq!(r.header("x-resp-add"), Some("2"));
    assert_eq!(r.header("content-type"), None);
    wp.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirects_build_the_location_per_spec() {
    let _b = echo("web", "127.0.3.21:9080").await;
    let mut yaml = service("f", "web", 9080, 9080, &["127.0.3.21"]);
    let redirect = |prefix: &str, body: &str| {
        format!(
            "  - matches: [{{path: {{type: PathPrefix, value: {prefix}}}}}]\n    filters:\n    - type: RequestRedirect\n      requestRedirect: {body}\n"
        )
    };
    let mut rules = String::new();
    rules += &redirect("/https", "{scheme: https, hostname: secure.example.com}");
    rules += &redirect("/port", "{port: 8443, hostname: example.com}");
    rules += &redirect(
        "/full",
        "{path: {type: ReplaceFullPath, replaceFullPath: /replaced}, statusCode: 301}",
    );
    rules += &redirect(
        "/prefix",
        "{path: {type: ReplacePrefixMatch, replacePrefixMatch: /new}, statusCode: 308}",
    );
    rules += &redirect(
        "/http80",
        "{scheme: http, hostname: plain.example.com, port: 80}",
    );
    yaml += &route(&rules);
    let config = ConfigDir::new(&yaml);
    let wp = waypoint(&config, "f").await;
    let c = TestClient::new(wp.http_addr.unwrap());
    let cases: &[(&str, u16, &str)] = &[
        (
            "/https/a?x=1",
            302,
            "https://secure.example.com/https/a?x=1",
        ),
        ("/port", 302, "http://example.com:8443/port"),
        ("/full/a/b", 301, "http://web:9080/replaced"),
        ("/prefix/a/b", 308, "http://web:9080/new/a/b"),
        ("/http80/z", 302, "http://plain.example.com/http80/z"),
    ];
    for (path, status, location) in cases {
        let r = c.get("web:9080", path).await;
        assert_eq!(r.status, *status, "{path}");
        assert_eq!(r.header("location"), Some(*location), "{path}");
    }
    wp.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn url_rewrite_changes_what_the_backend_sees() {
    let _b = echo("web", "127.0.3.31:9080").await;
    let mut yaml = service("f", "web", 9080, 9080, &["127.0.3.31"]);
    let rewrite = |prefix: &str, body: &str| {
        format!(
            "  - matches: [{{path: {{type: PathPrefix, value: {prefix}}}}}]\n    filters:\n    - type: URLRewrite\n      urlRewrite: {body}\n    backendRefs: [{{name: web, port: 9080}}]\n"
        )
    };
    let mut rules = String::new();
    rules += &rewrite(
        "/v1/api",
        "{path: {type: ReplacePrefixMatch, replacePrefixMatch: /api}}",
    );
    rules += &rewrite(
        "/strip",
        "{path: {type: ReplacePrefixMatch, replacePrefixMatch: /}}",
    );
    rules += &rewrite(
        "/full",
        "{path: {type: ReplaceFullPath, replaceFullPath: /one}}",
    );
    rules += &rewrite("/host", "{hostname: internal.example.com}");
    yaml += &route(&rules);
    let config = ConfigDir::new(&yaml);
    let wp = waypoint(&config, "f").await;
    let c = TestClient::new(wp.http_addr.unwrap());
    let cases: &[(&str, &str, &str)] = &[
        ("/v1/api/users?id=3", "/api/users", "id=3"),
        ("/v1/api", "/api", ""),
        ("/strip/x", "/x", ""),
        ("/strip", "/", ""),
        ("/full/a/b?q=1", "/one", "q=1"),
    ];
    for (path, want_path, want_query) in cases {
        let seen = c.get("web:9080", path).await.echo().unwrap();
        assert_eq!(seen.path, *want_path, "{path}");
        assert_eq!(seen.query, *want_query, "{path}");
    }
    let seen = c.get("web:9080", "/host/x").await.echo().unwrap();
    assert_eq!(seen.headers["host"], "internal.example.com");
    assert_eq!(seen.path, "/host/x");
    wp.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mirror_gets_a_copy_and_never_delays_the_response() {
    let main = echo("main", "127.0.3.41:9080").await;
    // The mirror reads the copy and never answers: the main response must not wait for it.
    let hanging = tokio::net::TcpListener::bind("127.0.3.42:9080")
        .await
        .unwrap();
    let (copy_tx, copy_rx) = tokio::sync::oneshot::channel::<String>();
    tokio::spawn(async move {
        use tokio::io::AsyncReadExt;
        let (mut sock, _) = hanging.accept().await.unwrap();
        let mut buf = vec![0u8; 4096];
        let n = sock.read(&mut buf).await.unwrap();
        let _ = copy_tx.send(String::from_utf8_lossy(&buf[..n]).into_owned());
        // Hold the connection open without answering, until the test's runtime ends.
        std::future::pending::<()>().await;
        drop(sock);
    });
    let mut yaml = service("f", "web", 9080, 9080, &["127.0.3.41"]);
    yaml += &service("f", "shadow", 9080, 9080, &["127.0.3.42"]);
    yaml += &route(
        "  - filters:\n    - type: RequestMirror\n      requestMirror:\n        backendRef: {name: shadow, port: 9080}\n    backendRefs: [{name: web, port: 9080}]\n",
    );
    let config = ConfigDir::new(&yaml);
    let wp = waypoint(&config, "f").await;
    let c = TestClient::new(wp.http_addr.unwrap());
    let r = c.get("web:9080", "/copy?me=1").await;
    assert_eq!(r.backend(), "main");
    let copy = bounded("mirror copy", copy_rx).await.unwrap();
    assert!(copy.starts_with("GET /copy?me=1 HTTP/1.1\r\n"), "{copy}");
    assert!(
        copy.to_ascii_lowercase()
            .contains("host: web-shadow:9080\r\n"),
        "{copy}"
    );
    assert_eq!(main.count(), 1);
    // Another request is not held up by the hanging mirror either.
    assert_eq!(c.get("web:9080", "/again").await.backend(), "main");
    wp.shutdown().await;
}
