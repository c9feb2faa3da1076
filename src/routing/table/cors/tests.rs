//! Envoy's CORS filter behaviour, one row per rule.

use super::*;

fn policy() -> CorsPolicy {
    CorsPolicy {
        allow_origins: vec![
            OriginMatch::Exact("https://a.example".into()),
            OriginMatch::Prefix("https://pre".into()),
            OriginMatch::Regex(Pattern::new(r"https://.*\.wild\.example").unwrap()),
        ],
        allow_methods: list_value(&["GET".into(), "POST".into()]).unwrap(),
        allow_headers: list_value(&["x-a".into()]).unwrap(),
        expose_headers: list_value(&["x-e".into()]).unwrap(),
        max_age: Some(HeaderValue::from_static("600")),
        allow_credentials: true,
        forward_unmatched_preflights: true,
    }
}

fn evaluate(p: &CorsPolicy, method: &str, headers: &[(&str, &str)]) -> CorsOutcome {
    let mut map = http::HeaderMap::new();
    for (k, v) in headers {
        map.append(
            HeaderName::from_bytes(k.as_bytes()).unwrap(),
            HeaderValue::from_str(v).unwrap(),
        );
    }
    p.evaluate(&RequestInfo {
        method,
        path_and_query: "/",
        headers: &map,
        scheme: "http",
        host: "svc",
        port: 80,
    })
}

fn names(h: &[(HeaderName, HeaderValue)]) -> Vec<(String, String)> {
    h.iter()
        .map(|(k, v)| (k.to_string(), v.to_str().unwrap().to_string()))
        .collect()
}

#[test]
fn without_origin_nothing_happens() {
    assert_eq!(evaluate(&policy(), "GET", &[]), CorsOutcome::Pass);
    assert_eq!(
        evaluate(
            &policy(),
            "OPTIONS",
            &[("access-control-request-method", "GET")]
        ),
        CorsOutcome::Pass,
        "no Origin: not a preflight, forwarded"
    );
}

#[test]
fn allowed_preflight_is_answered_with_every_allow_header() {
    let CorsOutcome::Preflight(h) = evaluate(
        &policy(),
        "OPTIONS",
        &[
            ("origin", "https://a.example"),
            ("access-control-request-method", "POST"),
        ],
    ) else {
        panic!("an allowed preflight is answered locally");
    };
    assert_eq!(
        names(&h),
        vec![
            (
                "access-control-allow-origin".into(),
                "https://a.example".into()
            ),
            ("access-control-allow-credentials".into(), "true".into()),
            ("access-control-allow-methods".into(), "GET,POST".into()),
            ("access-control-allow-headers".into(), "x-a".into()),
            ("access-control-max-age".into(), "600".into()),
        ]
    );
}

#[test]
fn origins_match_exactly_by_prefix_or_by_regex() {
    for (origin, allowed) in [
        ("https://a.example", true),
        ("https://a.example.evil", false),
        ("https://prefixed.example", true),
        ("https://x.wild.example", true),
        ("https://wild.example", false),
        ("http://a.example", false),
    ] {
        let outcome = evaluate(&policy(), "GET", &[("origin", origin)]);
        assert_eq!(
            matches!(outcome, CorsOutcome::Allowed(_)),
            allowed,
            "{origin}: {outcome:?}"
        );
    }
}

#[test]
fn an_allowed_request_gets_origin_credentials_and_expose_headers() {
    let CorsOutcome::Allowed(m) = evaluate(&policy(), "GET", &[("origin", "https://a.example")])
    else {
        panic!("allowed");
    };
    let mut resp = http::HeaderMap::new();
    m.apply(&mut resp);
    assert_eq!(resp["access-control-allow-origin"], "https://a.example");
    assert_eq!(resp["access-control-allow-credentials"], "true");
    assert_eq!(resp["access-control-expose-headers"], "x-e");
    assert!(
        !resp.contains_key("access-control-allow-methods"),
        "allow-methods belongs to preflight answers"
    );
}

#[test]
fn an_options_request_without_request_method_is_an_actual_request() {
    assert!(matches!(
        evaluate(&policy(), "OPTIONS", &[("origin", "https://a.example")]),
        CorsOutcome::Allowed(_)
    ));
}

#[test]
fn unmatched_preflights_are_forwarded_unless_ignored() {
    let preflight = [
        ("origin", "https://other.example"),
        ("access-control-request-method", "GET"),
    ];
    assert_eq!(
        evaluate(&policy(), "OPTIONS", &preflight),
        CorsOutcome::Pass,
        "Envoy's default: forward_not_matching_preflights"
    );
    let ignore = CorsPolicy {
        forward_unmatched_preflights: false,
        ..policy()
    };
    assert_eq!(
        evaluate(&ignore, "OPTIONS", &preflight),
        CorsOutcome::Preflight(Vec::new()),
        "IGNORE: answered 200 without access-control headers"
    );
}

#[test]
fn credentials_are_only_announced_when_allowed() {
    let p = CorsPolicy {
        allow_credentials: false,
        expose_headers: None,
        ..policy()
    };
    let CorsOutcome::Allowed(m) = evaluate(&p, "GET", &[("origin", "https://a.example")]) else {
        panic!("allowed");
    };
    let mut resp = http::HeaderMap::new();
    m.apply(&mut resp);
    assert_eq!(resp.len(), 1, "{resp:?}");
}
