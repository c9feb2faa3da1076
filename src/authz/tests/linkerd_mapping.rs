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
    let err = compile_error(&yaml);
    assert!(
        err.contains("ServerAuthorization bookinfo/tls") && err.contains("unauthenticatedTLS"),
        "{err}"
    );
    let bad_id = web(PORTS)
        + &linkerd("Server", "v1beta1", "web-http", "  podSelector: {matchLabels: {app: web}}\n  port: 8080")
        + &linkerd("MeshTLSAuthentication", "v1alpha1", "m", "  identities: [spiffe://cluster.local/ns/a/sa/b]")
        + &linkerd("AuthorizationPolicy", "v1alpha1", "p", "  targetRef: {group: policy.linkerd.io, kind: Server, name: web-http}\n  requiredAuthenticationRefs: [{group: policy.linkerd.io, kind: MeshTLSAuthentication, name: m}]");
    let err = compile_error(&bad_id);
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
