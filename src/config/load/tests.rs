use super::*;

const ROUTE: &str = r#"
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata:
  name: reviews
spec:
  parentRefs:
  - group: ""
    kind: Service
    name: reviews
    port: 9080
  rules:
  - matches:
    - headers:
      - name: end-user
        value: jason
    backendRefs:
    - name: reviews-v2
      port: 9080
"#;

#[test]
fn loads_documents_and_defaults_namespace() {
    let text = format!("{ROUTE}\n---\napiVersion: v1\nkind: Service\nmetadata: {{name: reviews, namespace: bookinfo}}\nspec:\n  ports: [{{port: 9080, name: http}}]\n");
    let r = load_str(&text, "mesh.yaml", "default").expect("loads");
    assert_eq!(r.http_routes.len(), 1);
    assert_eq!(r.http_routes[0].key.to_string(), "default/reviews");
    assert_eq!(r.services[0].key.to_string(), "bookinfo/reviews");
    assert_eq!(r.services[0].origin.document, 1);
    let rule = &r.http_routes[0].object.spec.rules[0];
    assert_eq!(rule.backend_refs[0].backend.name, "reviews-v2");
    assert_eq!(rule.matches[0].headers[0].value, "jason");
}

#[test]
fn kubectl_list_with_status_and_managed_fields_loads() {
    let text = r#"
apiVersion: v1
kind: List
metadata:
  resourceVersion: ""
items:
- apiVersion: v1
  kind: Service
  metadata:
    name: productpage
    namespace: bookinfo
    uid: 0b6f
    resourceVersion: "1234"
    creationTimestamp: "2024-05-01T10:00:00Z"
    managedFields:
    - manager: kubectl
      operation: Update
  spec:
    clusterIP: 10.96.0.10
    clusterIPs: [10.96.0.10]
    ports:
    - name: http
      port: 9080
      protocol: TCP
      targetPort: 9080
  status:
    loadBalancer: {}
- apiVersion: v1
  kind: ConfigMap
  metadata: {name: ignored}
"#;
    let r = load_str(text, "list.yaml", "default").expect("loads");
    assert_eq!(r.services.len(), 1);
    assert_eq!(
        r.services[0].object.spec.cluster_ip.as_deref(),
        Some("10.96.0.10")
    );
}

#[test]
fn malformed_known_kind_names_file_document_object_and_field() {
    let text = format!(
        "{ROUTE}---\n{}",
        ROUTE
            .replace("name: reviews\nspec", "name: bad\nspec")
            .replace("port: 9080\n", "port: ninety\n")
    );
    let errs = load_str(&text, "routes.yaml", "default").unwrap_err();
    let msg = errs.to_string();
    assert!(msg.contains("routes.yaml"), "{msg}");
    assert!(msg.contains("document 1"), "{msg}");
    assert!(msg.contains("HTTPRoute default/bad"), "{msg}");
    assert!(msg.contains("spec.parentRefs[0].port"), "{msg}");
}

#[test]
fn list_item_errors_carry_the_items_index() {
    let text = "apiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: Service\n  metadata: {name: a}\n  spec: {ports: [{port: -1}]}\n";
    let errs = load_str(text, "l.yaml", "ns").unwrap_err();
    assert!(
        errs.to_string().contains("items[0].spec.ports[0].port"),
        "{errs}"
    );
}

#[test]
fn unknown_kinds_are_skipped_and_unknown_fields_tolerated() {
    let text = "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: x}\n---\napiVersion: v1\nkind: Namespace\nmetadata: {name: bookinfo, labels: {istio.io/dataplane-mode: ambient}}\nspec: {}\nfancyNewField: 1\n";
    let r = load_str(text, "x.yaml", "default").expect("loads");
    assert_eq!(r.namespaces.len(), 1);
    assert_eq!(r.namespaces[0].key.namespace, "");
}

#[test]
fn missing_name_duplicate_and_bad_version_are_errors() {
    let no_name = "apiVersion: v1\nkind: Service\nmetadata: {}\n";
    assert!(load_str(no_name, "a.yaml", "d")
        .unwrap_err()
        .to_string()
        .contains("metadata.name"));
    let dup = format!("{ROUTE}---{ROUTE}");
    assert!(load_str(&dup, "a.yaml", "d")
        .unwrap_err()
        .to_string()
        .contains("duplicate"));
    let v = ROUTE.replace(
        "gateway.networking.k8s.io/v1",
        "gateway.networking.k8s.io/v1alpha9",
    );
    assert!(load_str(&v, "a.yaml", "d")
        .unwrap_err()
        .to_string()
        .contains("unsupported apiVersion"));
}

#[test]
fn invalid_yaml_is_an_error_with_the_file() {
    let errs = load_str("kind: [unclosed", "broken.yaml", "d").unwrap_err();
    assert!(errs.to_string().contains("broken.yaml"));
    assert!(errs.to_string().contains("invalid YAML"));
}

#[test]
fn directory_loads_yaml_recursively_and_ignores_other_files() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("sub")).unwrap();
    std::fs::write(dir.path().join("sub/route.yml"), ROUTE).unwrap();
    std::fs::write(
        dir.path().join("ns.yaml"),
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: a}\n",
    )
    .unwrap();
    std::fs::write(dir.path().join("README.md"), "not yaml: [").unwrap();
    let r = load_path(dir.path(), "default").expect("loads");
    assert_eq!(r.http_routes.len(), 1);
    assert_eq!(r.namespaces.len(), 1);
}

#[test]
fn a_directory_without_yaml_is_refused_but_an_empty_file_loads() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("README.md"), "notes").unwrap();
    let err = load_path(dir.path(), "default").unwrap_err().to_string();
    assert!(err.contains("no *.yaml or *.yml files"), "{err}");
    std::fs::write(dir.path().join("empty.yaml"), "").unwrap();
    let r = load_path(dir.path(), "default").expect("an empty file is an empty config");
    assert!(r.http_routes.is_empty());
}

#[test]
fn parsed_objects_load_with_their_origin_in_errors() {
    let route = |port: serde_json::Value| {
        serde_json::json!({
            "apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
            "metadata": {"name": "r", "namespace": "shop"},
            "spec": {"rules": [{"backendRefs": [{"name": "b", "port": port}]}]}
        })
    };
    let ok = load_objects(
        [("kube:HTTPRoute/shop/r".to_string(), route(80.into()))],
        "default",
    )
    .unwrap();
    assert_eq!(ok.http_routes[0].key.to_string(), "shop/r");
    assert_eq!(&*ok.http_routes[0].origin.file, "kube:HTTPRoute/shop/r");

    let errors = load_objects(
        [("kube:HTTPRoute/shop/r".to_string(), route("eighty".into()))],
        "default",
    )
    .unwrap_err();
    let message = errors.0[0].to_string();
    assert!(
        message.starts_with("kube:HTTPRoute/shop/r: ")
            && message.contains(
                "HTTPRoute shop/r: field spec.rules[0].backendRefs[0].port: invalid type"
            ),
        "{message}"
    );
}

#[test]
fn grpc_routes_load_in_v1_and_v1alpha2() {
    let route = |version: &str| {
        format!("---\napiVersion: gateway.networking.k8s.io/{version}\nkind: GRPCRoute\nmetadata: {{name: rpc-{version}, namespace: shop}}\nspec:\n  parentRefs: [{{group: \"\", kind: Service, name: echo, port: 9090}}]\n  rules:\n  - matches: [{{method: {{service: test.Echo, method: Unary}}, headers: [{{name: x-a, value: b}}]}}]\n    backendRefs: [{{name: echo-v1, port: 9090, weight: 90}}]\n")
    };
    let r = load_str(&(route("v1") + &route("v1alpha2")), "mesh.yaml", "default").expect("loads");
    assert_eq!(r.grpc_routes.len(), 2);
    let m = &r.grpc_routes[0].object.spec.rules[0].matches[0];
    let method = m.method.as_ref().expect("method match");
    assert_eq!(method.service.as_deref(), Some("test.Echo"));
    assert_eq!(method.method.as_deref(), Some("Unary"));
    assert_eq!(m.headers[0].name, "x-a");
    assert_eq!(
        r.grpc_routes[0].object.spec.rules[0].backend_refs[0].weight,
        Some(90)
    );
    let err = load_str(&route("v9"), "mesh.yaml", "default").expect_err("unknown version");
    assert!(
        err.to_string()
            .contains("unsupported apiVersion gateway.networking.k8s.io/v9 for GRPCRoute"),
        "{err}"
    );
}
