//! VirtualService `directResponse` and `corsPolicy`: YAML in, decisions out.

use crate::routing::test_support::{compile_errors, reviews, snapshot, Req};
use crate::routing::{LocalReply, RouteDecision, Snapshot};

fn vs(http: &str) -> String {
    format!("apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: reviews, namespace: bookinfo}}\nspec:\n  hosts: [reviews]\n  http:\n{http}")
}

fn decide(snap: &Snapshot, req: &Req) -> RouteDecision {
    snap.route(&reviews(snap), &req.info(), None)
}

fn reply(d: RouteDecision) -> LocalReply {
    match d {
        RouteDecision::Respond { reply, .. } => reply,
        other => panic!("expected a local answer, got {other:?}"),
    }
}

fn header<'a>(reply: &'a LocalReply, name: &str) -> Option<&'a str> {
    reply
        .headers
        .iter()
        .find(|(k, _)| k.as_str() == name)
        .and_then(|(_, v)| v.to_str().ok())
}

#[test]
fn direct_response_answers_with_status_body_text_plain_and_response_headers() {
    let snap = snapshot(&vs(r#"  - match: [{uri: {prefix: /down}}]
    directResponse: {status: 503, body: {string: "maintenance"}}
    headers: {response: {set: {x-why: planned}}}
  - match: [{uri: {prefix: /bytes}}]
    directResponse: {status: 200, body: {bytes: aGVsbG8=}}
  - match: [{uri: {prefix: /empty}}]
    directResponse: {status: 204}
  - route: [{destination: {host: reviews}}]
"#));
    let down = reply(decide(&snap, &Req::get("/down/x")));
    assert_eq!(down.status, 503);
    assert_eq!(&down.body[..], b"maintenance");
    assert_eq!(header(&down, "content-type"), Some("text/plain"));
    assert_eq!(down.details, "direct_response");
    assert_eq!(down.response_headers.len(), 1, "headers.response applies");

    let bytes = reply(decide(&snap, &Req::get("/bytes")));
    assert_eq!(&bytes.body[..], b"hello", "body.bytes is base64");

    let empty = reply(decide(&snap, &Req::get("/empty")));
    assert_eq!(empty.status, 204);
    assert!(empty.body.is_empty());
    assert_eq!(header(&empty, "content-type"), None, "no body, no type");

    assert!(matches!(
        decide(&snap, &Req::get("/other")),
        RouteDecision::Forward(_)
    ));
}

#[test]
fn invalid_direct_responses_and_cors_policies_are_rejected_at_their_field() {
    let errors = compile_errors(&vs(r#"  - directResponse: {body: {string: x}}
  - directResponse: {status: 200, body: {string: x, bytes: eA==}}
  - directResponse: {status: 200, body: {bytes: "not base64!"}}
  - directResponse: {status: 200}
    route: [{destination: {host: reviews}}]
  - corsPolicy: {allowOrigins: [{regex: "("}], maxAge: soon, unmatchedPreflights: MAYBE}
    route: [{destination: {host: reviews}}]
"#));
    let mut got: Vec<String> = errors
        .0
        .iter()
        .map(|e| e.location.field.clone().unwrap_or_default())
        .collect();
    got.sort();
    let mut want = vec![
        "spec.http[0].directResponse.status",
        "spec.http[1].directResponse.body",
        "spec.http[2].directResponse.body.bytes",
        "spec.http[3]",
        "spec.http[4].corsPolicy.allowOrigins[0].regex",
        "spec.http[4].corsPolicy.maxAge",
        "spec.http[4].corsPolicy.unmatchedPreflights",
    ];
    want.sort();
    assert_eq!(got, want, "{errors:?}");
}

const CORS: &str = r#"  - corsPolicy:
      allowOrigins: [{exact: "https://shop.example"}, {prefix: "https://dev-"}, {regex: "https://.*[.]corp[.]example"}]
      allowMethods: [GET, POST]
      allowHeaders: [x-token]
      exposeHeaders: [x-trace]
      maxAge: 24h
      allowCredentials: true
    route: [{destination: {host: reviews}}]
"#;

#[test]
fn cors_preflight_from_an_allowed_origin_is_answered_locally() {
    let snap = snapshot(&vs(CORS));
    let preflight = Req::get("/")
        .method("OPTIONS")
        .header("origin", "https://dev-42.example")
        .header("access-control-request-method", "POST");
    let answer = reply(decide(&snap, &preflight));
    assert_eq!(answer.status, 200);
    assert_eq!(answer.details, "cors_response");
    assert_eq!(
        header(&answer, "access-control-allow-origin"),
        Some("https://dev-42.example")
    );
    assert_eq!(
        header(&answer, "access-control-allow-methods"),
        Some("GET,POST")
    );
    assert_eq!(
        header(&answer, "access-control-allow-headers"),
        Some("x-token")
    );
    assert_eq!(header(&answer, "access-control-max-age"), Some("86400"));
    assert_eq!(
        header(&answer, "access-control-allow-credentials"),
        Some("true")
    );
}

#[test]
fn cors_actual_requests_are_forwarded_with_response_headers_added_last() {
    let snap = snapshot(&vs(CORS));
    let req = Req::get("/").header("origin", "https://a.corp.example");
    let RouteDecision::Forward(plan) = decide(&snap, &req) else {
        panic!("an actual CORS request is forwarded");
    };
    let mut resp = http::HeaderMap::new();
    for m in &plan.response_headers {
        m.apply(&mut resp);
    }
    assert_eq!(
        resp["access-control-allow-origin"],
        "https://a.corp.example"
    );
    assert_eq!(resp["access-control-expose-headers"], "x-trace");

    let other = Req::get("/").header("origin", "https://evil.example");
    let RouteDecision::Forward(plan) = decide(&snap, &other) else {
        panic!("a request from another origin is forwarded");
    };
    assert!(plan.response_headers.is_empty(), "no CORS headers for it");

    let unmatched = Req::get("/")
        .method("OPTIONS")
        .header("origin", "https://evil.example")
        .header("access-control-request-method", "GET");
    assert!(
        matches!(decide(&snap, &unmatched), RouteDecision::Forward(_)),
        "an unmatched preflight is forwarded by default"
    );
    let ignoring = snapshot(&vs(&CORS.replace(
        "allowCredentials: true",
        "allowCredentials: true\n      unmatchedPreflights: IGNORE",
    )));
    let answer = reply(decide(&ignoring, &unmatched));
    assert_eq!((answer.status, answer.headers.len()), (200, 0));
}

#[test]
fn cors_is_bypassed_on_a_direct_response_route() {
    // Envoy: the CORS filter "will be bypassed if a direct response or route
    // redirect is configured for the route".
    let snap = snapshot(&vs(
        r#"  - corsPolicy: {allowOrigins: [{exact: "https://app.test"}]}
    directResponse: {status: 204}
"#,
    ));
    let preflight = Req::get("/")
        .method("OPTIONS")
        .header("origin", "https://app.test")
        .header("access-control-request-method", "GET");
    let answer = reply(decide(&snap, &preflight));
    assert_eq!((answer.status, answer.details), (204, "direct_response"));
    assert!(answer.response_headers.is_empty(), "no CORS headers");
}
