use super::*;
use crate::test_helpers::jwt::TestIssuer;
use pingora_http::RequestHeader;
use serde_json::json;

fn authn(issuer: &TestIssuer, extra: &str) -> String {
    format!(
        "apiVersion: security.istio.io/v1\nkind: RequestAuthentication\nmetadata: {{name: jwt, namespace: bookinfo}}\nspec:\n  targetRefs: [{{kind: Service, name: productpage}}]\n  jwtRules:\n  - issuer: {}\n    jwks: '{}'\n{extra}---\n",
        issuer.issuer,
        issuer.jwks()
    )
}

fn set(t: &AuthzTable) -> &PolicySet {
    t.for_destination(
        ServiceKind::Service,
        &NamespacedName::new(SVC.to_string(), "productpage".to_string()),
    )
    .expect("applies")
}

fn req(token: Option<&str>) -> RequestHeader {
    let mut r = RequestHeader::build("GET", b"/p?x=1", None).unwrap();
    if let Some(t) = token {
        r.insert_header("authorization", format!("Bearer {t}"))
            .unwrap();
    }
    r
}

fn claims(extra: serde_json::Value) -> serde_json::Value {
    let mut c = json!({"sub": "alice", "exp": TestIssuer::now_plus(600)});
    for (k, v) in extra.as_object().unwrap() {
        c[k] = v.clone();
    }
    c
}

#[test]
fn valid_tokens_of_each_algorithm_give_a_request_principal() {
    for issuer in [
        TestIssuer::es256("https://es.example", "k1"),
        TestIssuer::rs256("https://rs.example", "k2"),
        TestIssuer::ed25519("https://ed.example", "k3"),
    ] {
        let t = table(&authn(&issuer, ""));
        let token = issuer.sign(claims(json!({"groups": ["dev", "ops"]})));
        let mut r = req(Some(&token));
        let auth = set(&t)
            .authenticate(&mut r)
            .expect("valid")
            .expect("present");
        assert_eq!(auth.principal, format!("{}/alice", issuer.issuer));
        assert_eq!(auth.claim(&["groups".to_string()]), ["dev", "ops"]);
        assert!(
            r.headers.get("authorization").is_none(),
            "token removed by default"
        );
    }
}

#[test]
fn invalid_tokens_get_envoys_reasons() {
    let issuer = TestIssuer::es256("https://es.example", "k1");
    let other = TestIssuer::es256("https://other.example", "k9");
    let t = table(&authn(&issuer, "    audiences: [bookinfo]\n"));
    let check = |token: String| set(&t).authenticate(&mut req(Some(&token))).unwrap_err();
    assert_eq!(
        check(
            issuer.sign(json!({"sub": "a", "aud": "bookinfo", "exp": TestIssuer::now_plus(-3600)}))
        ),
        JwtFailure::Expired
    );
    assert_eq!(
        check(issuer.sign(json!({"sub": "a", "aud": "elsewhere"}))),
        JwtFailure::AudienceNotAllowed
    );
    assert_eq!(
        check(other.sign(json!({"sub": "a"}))),
        JwtFailure::UnknownIssuer
    );
    assert_eq!(check("not-a-jwt".to_string()), JwtFailure::BadFormat);
    // Signed by another key under the trusted issuer's name.
    let forged = TestIssuer::es256("https://es.example", "k1");
    assert_eq!(
        check(forged.sign(json!({"sub": "a", "aud": "bookinfo"}))),
        JwtFailure::VerificationFails
    );
    assert_eq!(
        JwtFailure::VerificationFails.to_string(),
        "Jwt verification fails"
    );
    assert!(
        set(&t).authenticate(&mut req(None)).unwrap().is_none(),
        "no token: no principal"
    );
}

#[test]
fn locations_and_output_headers() {
    let issuer = TestIssuer::es256("https://es.example", "k1");
    let t = table(&authn(
        &issuer,
        "    fromHeaders: [{name: x-jwt}]\n    fromParams: [token]\n    forwardOriginalToken: true\n    outputPayloadToHeader: x-jwt-payload\n    outputClaimToHeaders: [{header: x-org, claim: org.name}]\n",
    ));
    let token = issuer.sign(claims(json!({"org": {"name": "acme"}})));
    let mut r = req(None);
    r.insert_header("x-jwt", token.as_str()).unwrap();
    set(&t).authenticate(&mut r).unwrap().expect("from x-jwt");
    assert_eq!(r.headers["x-jwt"].to_str().unwrap(), token, "forwarded");
    assert_eq!(r.headers["x-org"], "acme");
    assert_eq!(
        r.headers["x-jwt-payload"].to_str().unwrap(),
        token.split('.').nth(1).unwrap()
    );
    let mut by_param =
        RequestHeader::build("GET", format!("/p?token={token}").as_bytes(), None).unwrap();
    assert!(set(&t).authenticate(&mut by_param).unwrap().is_some());
    // The default Authorization header is not a location once others are named.
    assert!(set(&t)
        .authenticate(&mut req(Some(&token)))
        .unwrap()
        .is_none());
}

#[test]
fn policies_read_request_principals_and_claims() {
    let issuer = TestIssuer::es256("https://es.example", "k1");
    let yaml = authn(&issuer, "")
        + &policy(
            "require-jwt",
            &format!("{TO_PRODUCTPAGE}\n  rules:\n  - from: [{{source: {{requestPrincipals: [\"https://es.example/*\"]}}}}]\n    when: [{{key: \"request.auth.claims[org][tier]\", values: [gold]}}]"),
        );
    let t = table(&yaml);
    let decide = |token: Option<String>| {
        let mut r = req(token.as_deref());
        let auth = set(&t).authenticate(&mut r).unwrap();
        let a = Attributes {
            principal: None,
            namespace: None,
            source_ip: None,
            remote_ip: None,
            destination_ip: None,
            destination_port: 9080,
            sni: None,
            http: Some(HttpAttributes {
                method: "GET",
                path: "/p",
                host: "productpage",
                headers: &r.headers,
            }),
            auth: auth.as_ref(),
        };
        set(&t).evaluate(&a).allowed
    };
    assert!(decide(Some(
        issuer.sign(claims(json!({"org": {"tier": "gold"}})))
    )));
    assert!(!decide(Some(
        issuer.sign(claims(json!({"org": {"tier": "free"}})))
    )));
    assert!(!decide(None), "no token, no request principal");
}

#[test]
fn bad_rules_reject_the_config() {
    let issuer = TestIssuer::es256("https://es.example", "k1");
    let bad_jwks = authn(&issuer, "").replace(&format!("'{}'", issuer.jwks()), "'nope'");
    let bad_header = authn(
        &issuer,
        "    outputClaimToHeaders: [{header: \"bad header\", claim: x}]\n",
    );
    for (yaml, field) in [
        (bad_jwks, "spec.jwtRules[0].jwks"),
        (bad_header, "outputClaimToHeaders[0].header"),
    ] {
        let err = compile_error(&yaml);
        assert!(err.contains(field), "{err}");
    }
    let https = authn(&issuer, "").replace(
        &format!("    jwks: '{}'\n", issuer.jwks()),
        "    jwksUri: https://idp.example/jwks\n",
    );
    let err = compile_error(&https);
    assert!(err.contains("only http://"), "{err}");
}
