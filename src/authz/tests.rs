use std::net::IpAddr;

use http::HeaderMap;

use super::*;
use crate::config::load_str;

const SVC: &str = "bookinfo";

fn table(yaml: &str) -> AuthzTable {
    let resources = load_str(yaml, "test.yaml", SVC).expect("loads");
    let opts = AuthzOptions {
        gateway: NamespacedName::new(SVC.to_string(), "waypoint".to_string()),
        ..AuthzOptions::default()
    };
    AuthzTable::compile(&resources, &opts, &JwksRegistry::default()).expect("compiles")
}

fn policy(name: &str, spec: &str) -> String {
    format!(
        "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {{name: {name}, namespace: bookinfo}}\nspec:\n{spec}\n---\n"
    )
}

struct Req {
    principal: Option<&'static str>,
    ip: &'static str,
    method: &'static str,
    path: &'static str,
    headers: HeaderMap,
    tcp: bool,
}

impl Req {
    fn get(path: &'static str) -> Self {
        Req {
            principal: Some("cluster.local/ns/default/sa/sleep"),
            ip: "10.0.0.7",
            method: "GET",
            path,
            headers: HeaderMap::new(),
            tcp: false,
        }
    }

    fn decide(&self, t: &AuthzTable, service: &str) -> Option<Decision> {
        let key = NamespacedName::new(SVC.to_string(), service.to_string());
        let set = t.for_destination(ServiceKind::Service, &key)?;
        let ip: IpAddr = self.ip.parse().unwrap();
        let http = HttpAttributes {
            method: self.method,
            path: self.path,
            host: "productpage.bookinfo.svc.cluster.local:9080",
            headers: &self.headers,
        };
        let a = Attributes {
            principal: self.principal,
            namespace: self.principal.map(|p| p.split('/').nth(2).unwrap()),
            source_ip: Some(ip),
            remote_ip: Some(ip),
            destination_ip: None,
            destination_port: 9080,
            sni: None,
            http: (!self.tcp).then_some(http),
            auth: None,
        };
        Some(set.evaluate(&a))
    }

    fn allowed(&self, t: &AuthzTable, service: &str) -> bool {
        self.decide(t, service).map(|d| d.allowed).unwrap_or(true)
    }
}

const TO_PRODUCTPAGE: &str = "  targetRefs: [{kind: Service, group: \"\", name: productpage}]";

#[test]
fn allow_nothing_denies_everything_it_targets() {
    let t = table(&policy(
        "allow-nothing",
        "  targetRefs: [{kind: Gateway, group: gateway.networking.k8s.io, name: waypoint}]",
    ));
    let d = Req::get("/").decide(&t, "productpage").expect("applies");
    assert!(!d.allowed);
    assert_eq!(
        d.details().unwrap(),
        "rbac_access_denied_matched_policy[none]"
    );
    assert!(!Req::get("/").allowed(&t, "reviews"), "gateway-wide");
}

#[test]
fn empty_rule_allows_everything() {
    let t = table(&policy(
        "allow-all",
        &format!("{TO_PRODUCTPAGE}\n  rules: [{{}}]"),
    ));
    assert!(Req::get("/").allowed(&t, "productpage"));
    assert!(t
        .for_destination(
            ServiceKind::Service,
            &NamespacedName::new(SVC.to_string(), "reviews".to_string())
        )
        .is_none());
}

#[test]
fn productpage_viewer_allows_get_only() {
    let t = table(&policy(
        "productpage-viewer",
        &format!("{TO_PRODUCTPAGE}\n  action: ALLOW\n  rules: [{{to: [{{operation: {{methods: [GET]}}}}]}}]"),
    ));
    assert!(Req::get("/productpage").allowed(&t, "productpage"));
    let mut post = Req::get("/productpage");
    post.method = "POST";
    assert!(!post.allowed(&t, "productpage"));
}

#[test]
fn deny_wins_over_allow_and_names_its_rule() {
    let yaml = policy("allow-all", &format!("{TO_PRODUCTPAGE}\n  rules: [{{}}]"))
        + &policy(
            "deny-bad-header",
            &format!(
                "{TO_PRODUCTPAGE}\n  action: DENY\n  rules:\n  - to: [{{operation: {{paths: [/x]}}}}]\n  - when: [{{key: \"request.headers[x-token]\", values: [\"bad*\"]}}]"
            ),
        );
    let t = table(&yaml);
    let mut bad = Req::get("/ok");
    bad.headers.insert("x-token", "bad-123".parse().unwrap());
    let d = bad.decide(&t, "productpage").unwrap();
    assert!(!d.allowed);
    assert_eq!(
        d.details().unwrap(),
        "rbac_access_denied_matched_policy[ns[bookinfo]-policy[deny-bad-header]-rule[1]]"
    );
    assert!(Req::get("/ok").allowed(&t, "productpage"));
}

#[test]
fn principals_namespaces_and_not_fields() {
    let t = table(&policy(
        "reviews-viewer",
        "  targetRefs: [{kind: Service, name: reviews}]\n  rules:\n  - from:\n    - source: {principals: [cluster.local/ns/default/sa/bookinfo-*], notNamespaces: [blocked]}",
    ));
    let mut pp = Req::get("/");
    pp.principal = Some("cluster.local/ns/default/sa/bookinfo-productpage");
    assert!(pp.allowed(&t, "reviews"));
    assert!(
        !Req::get("/").allowed(&t, "reviews"),
        "sleep is not bookinfo-*"
    );
    let mut plain = Req::get("/");
    plain.principal = None;
    assert!(!plain.allowed(&t, "reviews"), "no mTLS, no principal");
}

#[test]
fn not_principals_match_callers_without_identity() {
    let t = table(&policy(
        "deny-others",
        &format!("{TO_PRODUCTPAGE}\n  action: DENY\n  rules: [{{from: [{{source: {{notPrincipals: [\"*\"]}}}}]}}]"),
    ));
    let mut plain = Req::get("/");
    plain.principal = None;
    assert!(!plain.allowed(&t, "productpage"));
    assert!(Req::get("/").allowed(&t, "productpage"));
}

#[test]
fn ip_blocks_and_paths_templates() {
    let t = table(&policy(
        "p",
        &format!("{TO_PRODUCTPAGE}\n  rules:\n  - from: [{{source: {{ipBlocks: [10.0.0.0/24]}}}}]\n    to: [{{operation: {{paths: [\"/api/{{*}}/items\"]}}}}]"),
    ));
    assert!(Req::get("/api/7/items").allowed(&t, "productpage"));
    assert!(!Req::get("/api/7/8/items").allowed(&t, "productpage"));
    let mut far = Req::get("/api/7/items");
    far.ip = "10.0.1.7";
    assert!(!far.allowed(&t, "productpage"));
}

#[test]
fn tcp_allow_rules_with_http_fields_never_match_and_deny_rules_drop_them() {
    let allow = table(&policy(
        "a",
        &format!("{TO_PRODUCTPAGE}\n  rules: [{{to: [{{operation: {{methods: [GET]}}}}]}}]"),
    ));
    let mut tcp = Req::get("/");
    tcp.tcp = true;
    assert!(!tcp.allowed(&allow, "productpage"));
    let deny = table(&policy(
        "d",
        &format!("{TO_PRODUCTPAGE}\n  action: DENY\n  rules: [{{to: [{{operation: {{methods: [GET], ports: [\"9080\"]}}}}]}}]"),
    ));
    assert!(!tcp.allowed(&deny, "productpage"), "denies more on TCP");
    let mut post = Req::get("/");
    post.method = "POST";
    assert!(post.allowed(&deny, "productpage"));
}

#[test]
fn audit_and_dry_run_never_change_the_outcome() {
    let yaml = policy(
        "audit-all",
        &format!("{TO_PRODUCTPAGE}\n  action: AUDIT\n  rules: [{{}}]"),
    ) + &policy(
        "dry-deny",
        &format!("{TO_PRODUCTPAGE}\n  action: DENY\n  rules: [{{}}]"),
    )
    .replace("metadata: {name: dry-deny, namespace: bookinfo}", "metadata: {name: dry-deny, namespace: bookinfo, annotations: {istio.io/dry-run: \"true\"}}");
    let t = table(&yaml);
    let d = Req::get("/").decide(&t, "productpage").unwrap();
    assert!(d.allowed);
    let results: Vec<_> = d
        .records()
        .map(|r| (r.policy_name().to_string(), r.result))
        .collect();
    assert_eq!(
        results,
        [
            ("bookinfo/audit-all".to_string(), "audited"),
            ("bookinfo/dry-deny".to_string(), "dry_run_denied")
        ]
    );
}

#[test]
fn unreadable_policies_fail_closed() {
    let yaml = policy(
        "typo",
        &format!("{TO_PRODUCTPAGE}\n  action: ALLOW\n  rules: [{{to: [{{operation: {{method: [GET]}}}}]}}]"),
    ) + &policy(
        "bad-key",
        "  targetRefs: [{kind: Service, name: reviews}]\n  action: DENY\n  rules: [{when: [{key: experimental.envoy.filters.x, values: [a]}]}]",
    ) + &policy("custom", "  targetRefs: [{kind: Service, name: details}]\n  action: CUSTOM\n  provider: {name: ext}\n  rules: [{}]");
    let t = table(&yaml);
    for svc in ["productpage", "reviews", "details"] {
        let d = Req::get("/").decide(&t, svc).expect("applies");
        assert!(!d.allowed, "{svc}");
    }
    let reasons: Vec<_> = t
        .policies
        .iter()
        .map(|(p, _)| p.rejected.clone().unwrap())
        .collect();
    assert!(
        reasons[0].contains("spec.rules[0].to[0].operation") && reasons[0].contains("method"),
        "{}",
        reasons[0]
    );
    assert!(
        reasons[1].contains("unsupported condition key"),
        "{}",
        reasons[1]
    );
    assert!(
        reasons[2].contains("no extension provider \"ext\""),
        "{}",
        reasons[2]
    );
}

#[test]
fn selector_and_namespace_wide_policies_are_ignored() {
    let yaml = policy("sel", "  selector: {matchLabels: {app: productpage}}")
        + &policy("ns-wide", "  action: DENY\n  rules: [{}]")
        + &policy(
            "other-gw",
            "  targetRefs: [{kind: Gateway, group: gateway.networking.k8s.io, name: other}]",
        );
    let t = table(&yaml);
    assert!(Req::get("/").decide(&t, "productpage").is_none());
    let reasons: Vec<_> = t
        .policies
        .iter()
        .map(|(_, a)| match a {
            Applies::Ignored(why) => why.clone(),
            Applies::To(_) => panic!("applies"),
        })
        .collect();
    assert!(reasons[0].contains("selector"));
    assert!(reasons[1].contains("namespace-wide"));
    assert!(reasons[2].contains("Gateway bookinfo/other"));
}

#[test]
fn unreadable_targets_reject_the_config() {
    let resources = load_str(
        &policy(
            "x",
            "  targetRefs: [{kind: HTTPRoute, group: gateway.networking.k8s.io, name: r}]",
        ),
        "t.yaml",
        SVC,
    )
    .unwrap();
    let err = AuthzTable::compile(
        &resources,
        &AuthzOptions::default(),
        &JwksRegistry::default(),
    )
    .unwrap_err();
    assert!(err.to_string().contains("spec.targetRefs[0]"), "{err}");
    let garbled = load_str(&policy("y", "  targetRefs: 7"), "t.yaml", SVC).unwrap_err();
    assert!(garbled.to_string().contains("targetRefs"), "{garbled}");
}

mod jwt_rules {
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
                issuer.sign(
                    json!({"sub": "a", "aud": "bookinfo", "exp": TestIssuer::now_plus(-3600)})
                )
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
            let resources = load_str(&yaml, "t.yaml", SVC).unwrap();
            let err = AuthzTable::compile(
                &resources,
                &AuthzOptions::default(),
                &JwksRegistry::default(),
            )
            .unwrap_err()
            .to_string();
            assert!(err.contains(field), "{err}");
        }
        let https = authn(&issuer, "").replace(
            &format!("    jwks: '{}'\n", issuer.jwks()),
            "    jwksUri: https://idp.example/jwks\n",
        );
        let resources = load_str(&https, "t.yaml", SVC).unwrap();
        let err = AuthzTable::compile(
            &resources,
            &AuthzOptions::default(),
            &JwksRegistry::default(),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("only http://"), "{err}");
    }
}

#[test]
fn custom_policies_name_their_provider_when_their_rules_match() {
    let resources = load_str(
        &policy(
            "ext",
            &format!("{TO_PRODUCTPAGE}\n  action: CUSTOM\n  provider: {{name: ext}}\n  rules: [{{to: [{{operation: {{paths: [\"/headers*\"]}}}}]}}]"),
        ),
        "t.yaml",
        SVC,
    )
    .unwrap();
    let opts = AuthzOptions {
        gateway: NamespacedName::new(SVC.to_string(), "waypoint".to_string()),
        mesh: Arc::new(
            crate::config::MeshConfig::parse(
                "extensionProviders: [{name: ext, envoyExtAuthzHttp: {service: authz.bookinfo.svc.cluster.local, port: 8000}}]",
            )
            .unwrap(),
        ),
        ..AuthzOptions::default()
    };
    let t = AuthzTable::compile(&resources, &opts, &JwksRegistry::default()).unwrap();
    let d = Req::get("/headers").decide(&t, "productpage").unwrap();
    assert!(d.allowed, "no ALLOW policy: RBAC allows");
    let custom = d.custom.expect("the CUSTOM rule matched");
    assert_eq!(custom.policy_name(), "bookinfo/ext");
    assert!(Req::get("/other")
        .decide(&t, "productpage")
        .unwrap()
        .custom
        .is_none());
}

mod linkerd_mapping {
    use super::*;

    const POD: &str = "---\napiVersion: v1\nkind: Pod\nmetadata: {name: web-0, namespace: bookinfo, labels: {app: web, tier: front}}\nspec:\n  containers: [{name: c, ports: [{name: admin, containerPort: 9990}, {name: http, containerPort: 8080}]}]\nstatus: {podIP: 10.1.0.5}\n";

    fn web(ports: &str) -> String {
        format!("---\napiVersion: v1\nkind: Service\nmetadata: {{name: web, namespace: bookinfo}}\nspec:\n  ports: {ports}\n---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {{name: web-1, namespace: bookinfo, labels: {{kubernetes.io/service-name: web}}}}\naddressType: IPv4\nports: [{{name: http, port: 8080}}, {{name: admin, port: 9990}}]\nendpoints: [{{addresses: [10.1.0.5]}}]\n{POD}")
    }

    fn linkerd(kind: &str, version: &str, name: &str, spec: &str) -> String {
        format!("---\napiVersion: policy.linkerd.io/{version}\nkind: {kind}\nmetadata: {{name: {name}, namespace: bookinfo}}\nspec:\n{spec}\n")
    }

    fn decide(t: &AuthzTable, principal: Option<&'static str>, port: u16) -> bool {
        let set = t.for_destination(
            ServiceKind::Service,
            &NamespacedName::new(SVC.to_string(), "web".to_string()),
        );
        let Some(set) = set else { return true };
        let headers = HeaderMap::new();
        let a = Attributes {
            principal,
            namespace: principal.map(|p| p.split('/').nth(2).unwrap()),
            source_ip: Some("10.9.0.1".parse().unwrap()),
            remote_ip: Some("10.9.0.1".parse().unwrap()),
            destination_ip: None,
            destination_port: port,
            sni: None,
            http: Some(HttpAttributes {
                method: "GET",
                path: "/",
                host: "web",
                headers: &headers,
            }),
            auth: None,
        };
        set.evaluate(&a).allowed
    }

    const PORTS: &str = "[{name: http, port: 80, targetPort: 8080}, {name: admin, port: 9990}]";

    #[test]
    fn a_server_by_port_name_guards_only_its_service_port() {
        let yaml = web(PORTS)
            + &linkerd("Server", "v1beta1", "web-http", "  podSelector: {matchExpressions: [{key: tier, operator: In, values: [front]}]}\n  port: http")
            + &linkerd("ServerAuthorization", "v1beta1", "web-sleep", "  server: {name: web-http}\n  client: {meshTLS: {identities: [\"*.default.serviceaccount.identity.linkerd.cluster.local\"]}}");
        let t = table(&yaml);
        assert!(decide(&t, Some("cluster.local/ns/default/sa/sleep"), 80));
        assert!(!decide(&t, Some("cluster.local/ns/other/sa/sleep"), 80));
        assert!(!decide(&t, None, 80));
        assert!(
            decide(&t, None, 9990),
            "no Server covers admin, no default: left alone"
        );
    }

    #[test]
    fn unsupported_linkerd_fields_reject_the_config() {
        let yaml = web(PORTS)
            + &linkerd(
                "Server",
                "v1beta1",
                "web-http",
                "  podSelector: {matchLabels: {app: web}}\n  port: 8080",
            )
            + &linkerd(
                "ServerAuthorization",
                "v1beta1",
                "tls",
                "  server: {name: web-http}\n  client: {meshTLS: {unauthenticatedTLS: true}}",
            );
        let resources = load_str(&yaml, "t.yaml", SVC).unwrap();
        let err = AuthzTable::compile(
            &resources,
            &AuthzOptions::default(),
            &JwksRegistry::default(),
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("ServerAuthorization bookinfo/tls") && err.contains("unauthenticatedTLS"),
            "{err}"
        );
        let bad_id = web(PORTS)
            + &linkerd("Server", "v1beta1", "web-http", "  podSelector: {matchLabels: {app: web}}\n  port: 8080")
            + &linkerd("MeshTLSAuthentication", "v1alpha1", "m", "  identities: [spiffe://cluster.local/ns/a/sa/b]")
            + &linkerd("AuthorizationPolicy", "v1alpha1", "p", "  targetRef: {group: policy.linkerd.io, kind: Server, name: web-http}\n  requiredAuthenticationRefs: [{group: policy.linkerd.io, kind: MeshTLSAuthentication, name: m}]");
        let resources = load_str(&bad_id, "t.yaml", SVC).unwrap();
        let err = AuthzTable::compile(
            &resources,
            &AuthzOptions::default(),
            &JwksRegistry::default(),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("serviceaccount.identity.linkerd"), "{err}");
    }

    #[test]
    fn default_inbound_policies() {
        let opts = |d: &str| AuthzOptions {
            linkerd_default: Some(d.to_string()),
            ..AuthzOptions::default()
        };
        let resources = load_str(&web(PORTS), "t.yaml", SVC).unwrap();
        let compile =
            |d: &str| AuthzTable::compile(&resources, &opts(d), &JwksRegistry::default()).unwrap();
        let me = Some("cluster.local/ns/default/sa/sleep");
        assert!(decide(&compile("all-unauthenticated"), None, 80));
        assert!(!decide(&compile("all-authenticated"), None, 80));
        assert!(decide(&compile("all-authenticated"), me, 80));
        assert!(
            decide(&compile("cluster-authenticated"), me, 80),
            "10.9.0.1 is in 10.0.0.0/8"
        );
        assert!(!decide(&compile("deny"), me, 80));
    }
}
