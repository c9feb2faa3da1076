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

/// Why `yaml` loads but does not compile (default options).
fn compile_error(yaml: &str) -> String {
    let resources = load_str(yaml, "t.yaml", SVC).expect("loads");
    AuthzTable::compile(
        &resources,
        &AuthzOptions::default(),
        &JwksRegistry::default(),
    )
    .expect_err("does not compile")
    .to_string()
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
    let err = compile_error(&policy(
        "x",
        "  targetRefs: [{kind: HTTPRoute, group: gateway.networking.k8s.io, name: r}]",
    ));
    assert!(err.contains("spec.targetRefs[0]"), "{err}");
    let garbled = load_str(&policy("y", "  targetRefs: 7"), "t.yaml", SVC).unwrap_err();
    assert!(garbled.to_string().contains("targetRefs"), "{garbled}");
}

mod fuzz;
mod jwt_rules;

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

mod linkerd_mapping;
