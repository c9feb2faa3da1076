//! Validation: every invalid field is reported with file, document, object
//! and field path.

use std::collections::BTreeSet;

use crate::routing::test_support::{compile_errors, route_yaml};

#[test]
fn validation_reports_every_error_with_its_field_path() {
    let rules = r#"
  - matches:
    - path: {type: RegularExpression, value: "(unclosed"}
    - path: {type: Exact, value: no-slash}
    - path: {type: Glob, value: /x}
    - headers: [{type: Fuzzy, name: x, value: y}]
      method: BREW
    backendRefs:
    - {name: reviews-v1, port: 9080, weight: -1}
    - {name: reviews-v2, weight: 2000000}
  - filters:
    - {type: RequestRedirect, requestRedirect: {statusCode: 404, scheme: ftp}}
    - {type: ExtensionRef, extensionRef: {group: x, kind: y, name: z}}
    - {type: CORS}
    - {type: RequestMirror, requestMirror: {backendRef: {name: reviews-v2, port: 9080}, percent: 101}}
    - {type: RequestMirror, requestMirror: {backendRef: {name: reviews-v2, port: 9080}, fraction: {numerator: 3, denominator: 2}}}
    - {type: RequestMirror, requestMirror: {backendRef: {name: reviews-v2, port: 9080}, fraction: {numerator: 0, denominator: 0}}}
  - matches: [{path: {type: Exact, value: /e}}]
    filters:
    - {type: URLRewrite, urlRewrite: {path: {type: ReplacePrefixMatch, replacePrefixMatch: /x}}}
    backendRefs: [{name: reviews-v1, port: 9080}]
  - filters:
    - {type: URLRewrite, urlRewrite: {path: {type: ReplaceFullPath, replacePrefixMatch: /x}}}
    - {type: RequestHeaderModifier, requestHeaderModifier: {set: [{name: "bad name", value: v}]}}
    - {type: RequestHeaderModifier}
    backendRefs: [{name: reviews-v1, port: 9080}]
    timeouts: {request: "10", backendRequest: 1h}
    retry: {codes: [200], attempts: -1, backoff: soon}
  - timeouts: {request: 1s, backendRequest: 2s}"#;
    let errors = compile_errors(&route_yaml("bad", None, rules));
    for e in &errors.0 {
        assert_eq!(e.location.file.as_deref(), Some("mesh.yaml"));
        // MESH has 12 documents (0..=11), then an empty one, then the route.
        assert_eq!(e.location.document, Some(13));
        let object = e.location.object.as_ref().expect("object");
        assert_eq!(
            (
                object.kind.as_str(),
                object.namespace.as_deref(),
                object.name.as_str()
            ),
            ("HTTPRoute", Some("bookinfo"), "bad")
        );
    }
    let fields: Vec<&str> = errors
        .0
        .iter()
        .map(|e| e.location.field.as_deref().unwrap_or(""))
        .collect();
    let want = [
        "spec.rules[0].matches[0].path.value",      // invalid regex
        "spec.rules[0].matches[1].path.value",      // must start with '/'
        "spec.rules[0].matches[2].path.type",       // unknown path match type
        "spec.rules[0].matches[3].headers[0].type", // unknown header match type
        "spec.rules[0].matches[3].method",          // unknown method
        "spec.rules[0].backendRefs[0].weight",      // negative weight
        "spec.rules[0].backendRefs[1].weight",      // weight > 1_000_000
        "spec.rules[1].filters[0].requestRedirect.statusCode",
        "spec.rules[1].filters[0].requestRedirect.scheme",
        "spec.rules[1].filters[1].type", // ExtensionRef unsupported
        "spec.rules[1].filters[2].cors", // CORS without its settings
        "spec.rules[1].filters[3].requestMirror.percent",
        "spec.rules[1].filters[4].requestMirror.fraction",
        "spec.rules[1].filters[5].requestMirror.fraction",
        "spec.rules[2].filters[0].urlRewrite.path", // ReplacePrefixMatch without PathPrefix match
        "spec.rules[3].filters[0].urlRewrite.path", // type/field mismatch
        "spec.rules[3].filters[1].requestHeaderModifier.set[0].name",
        "spec.rules[3].filters[2].type", // duplicate RequestHeaderModifier
        "spec.rules[3].timeouts.request",
        "spec.rules[3].retry.codes[0]",
        "spec.rules[3].retry.attempts",
        "spec.rules[3].retry.backoff",
        "spec.rules[4].timeouts.backendRequest", // backendRequest > request
    ];
    let got: BTreeSet<&str> = fields.iter().copied().collect();
    let want_set: BTreeSet<&str> = want.iter().copied().collect();
    assert_eq!(got, want_set, "errors: {errors}");
}

#[test]
fn missing_filter_config_and_backend_port_are_errors() {
    let rules = r#"
  - filters: [{type: RequestMirror}]
    backendRefs: [{name: reviews-v1}]
  - filters: [{type: RequestRedirect, requestRedirect: {}}]
    backendRefs: [{name: reviews-v1, port: 9080, filters: [{type: RequestRedirect, requestRedirect: {}}]}]"#;
    let errors = compile_errors(&route_yaml("bad", None, rules));
    let fields: BTreeSet<&str> = errors
        .0
        .iter()
        .filter_map(|e| e.location.field.as_deref())
        .collect();
    let want: BTreeSet<&str> = [
        "spec.rules[0].filters[0].requestMirror",
        "spec.rules[0].backendRefs[0].port",
        "spec.rules[1].backendRefs", // redirect together with backendRefs
        "spec.rules[1].backendRefs[0].filters[0].type", // redirect at backendRef level
    ]
    .into_iter()
    .collect();
    assert_eq!(fields, want, "errors: {errors}");
}
