//! HTTPRoute matches: compiled from YAML, tested against requests, errors
//! reported at their field.

use std::sync::Arc;

use super::*;
use crate::config::{ConfigErrors, ObjectRef, Origin};
use crate::routing::table::matcher::{prefix_matches, split_path_query};
use crate::routing::test_support::Req;

fn compile(yaml: &str) -> (Vec<CompiledMatch>, ConfigErrors) {
    let matches: Vec<HttpRouteMatch> = serde_yaml::from_str(yaml).expect("test YAML");
    let origin = Origin {
        file: Arc::from("t.yaml"),
        document: 0,
    };
    let mut errors = ConfigErrors::default();
    let object = ObjectRef {
        kind: "HTTPRoute".into(),
        namespace: Some("ns".into()),
        name: "r".into(),
    };
    let compiled = compile_matches(
        &matches,
        "spec.rules[0]",
        &mut ErrorSink::new(&origin, object, &mut errors),
    );
    (compiled, errors)
}

fn one(yaml: &str) -> CompiledMatch {
    let (mut m, errors) = compile(yaml);
    assert!(errors.is_empty(), "{errors}");
    assert_eq!(m.len(), 1);
    m.remove(0)
}

fn matches(m: &CompiledMatch, req: &Req) -> bool {
    let info = req.info();
    let (path, query) = split_path_query(info.path_and_query);
    m.is_match(&info, path, query)
}

#[test]
fn path_prefix_matches_whole_elements() {
    // Per the Gateway API: "/abc, /abc/, and /abc/def would all match the
    // prefix /abc, but the path /abcd would not"; a trailing / in the value is
    // ignored; / matches everything.
    let rows = [
        ("/abc", "/abc", true),
        ("/abc", "/abc/", true),
        ("/abc", "/abc/def", true),
        ("/abc", "/abcd", false),
        ("/abc/", "/abc", true),
        ("/abc/", "/abc/def", true),
        ("/abc/", "/abcd", false),
        ("/", "/", true),
        ("/", "/anything/at/all", true),
        ("/abc/def", "/abc", false),
        ("/ABC", "/abc", false),
    ];
    for (prefix, path, want) in rows {
        assert_eq!(
            prefix_matches(prefix, path),
            want,
            "prefix {prefix} path {path}"
        );
    }
}

#[test]
fn match_conditions_table() {
    // (match YAML, request, expected, spec rule)
    let rows: Vec<(&str, Req, bool, &str)> = vec![
        ("[{}]", Req::get("/x"), true, "default path is PathPrefix /"),
        (
            "[{path: {type: Exact, value: /a}}]",
            Req::get("/a?x=1"),
            true,
            "path matched without the query string",
        ),
        (
            "[{path: {type: Exact, value: /a}}]",
            Req::get("/a/"),
            false,
            "Exact is exact",
        ),
        (
            "[{path: {type: RegularExpression, value: '/a/[0-9]+'}}]",
            Req::get("/a/12"),
            true,
            "regex full match",
        ),
        (
            "[{path: {type: RegularExpression, value: '/a/[0-9]+'}}]",
            Req::get("/a/12/x"),
            false,
            "regex is anchored at the end",
        ),
        (
            "[{path: {type: RegularExpression, value: '[0-9]+'}}]",
            Req::get("/12"),
            false,
            "regex is anchored at the start",
        ),
        (
            "[{headers: [{name: X-User, value: jason}]}]",
            Req::get("/").header("x-user", "jason"),
            true,
            "header names case-insensitive",
        ),
        (
            "[{headers: [{name: x-user, value: jason}]}]",
            Req::get("/").header("x-user", "Jason"),
            false,
            "header values case-sensitive",
        ),
        (
            "[{headers: [{name: x-user, value: jason}]}]",
            Req::get("/"),
            false,
            "absent header does not match",
        ),
        (
            "[{headers: [{type: RegularExpression, name: x-v, value: 'v[12]'}]}]",
            Req::get("/").header("x-v", "v2"),
            true,
            "header regex",
        ),
        (
            "[{headers: [{name: x-a, value: '1'}, {name: X-A, value: '2'}]}]",
            Req::get("/").header("x-a", "1"),
            true,
            "only the first entry of an equivalent header name counts",
        ),
        (
            "[{queryParams: [{name: q, value: '1'}]}]",
            Req::get("/?a=2&q=1"),
            true,
            "query param",
        ),
        (
            "[{queryParams: [{name: Q, value: '1'}]}]",
            Req::get("/?q=1"),
            false,
            "query param names case-sensitive",
        ),
        (
            "[{queryParams: [{name: q, value: '1'}]}]",
            Req::get("/?q=2&q=1"),
            false,
            "first value of the param",
        ),
        (
            "[{queryParams: [{name: q, value: 'a b'}]}]",
            Req::get("/?q=a%20b"),
            true,
            "percent-decoded",
        ),
        (
            "[{queryParams: [{type: RegularExpression, name: q, value: '[a-c]+'}]}]",
            Req::get("/?q=abc"),
            true,
            "query regex",
        ),
        (
            "[{method: POST}]",
            Req::get("/"),
            false,
            "method must match",
        ),
        (
            "[{method: POST}]",
            Req::get("/").method("POST"),
            true,
            "method",
        ),
        (
            "[{path: {value: /a}, method: GET, headers: [{name: h, value: v}]}]",
            Req::get("/a").header("h", "x"),
            false,
            "AND within a match",
        ),
    ];
    for (yaml, req, want, rule) in rows {
        assert_eq!(
            matches(&one(yaml), &req),
            want,
            "{yaml} vs {}: {rule}",
            req.path_and_query
        );
    }
}

#[test]
fn or_across_matches_and_empty_list_is_prefix_slash() {
    let (m, errors) =
        compile("[{path: {type: Exact, value: /a}}, {path: {type: Exact, value: /b}}]");
    assert!(errors.is_empty());
    assert!(m.iter().any(|m| matches(m, &Req::get("/b"))));
    let (m, _) = compile("[]");
    assert_eq!(m.len(), 1);
    assert_eq!(m[0].path, PathMatch::Prefix("/".into()));
}

#[test]
fn invalid_matches_are_reported_at_their_field() {
    let (_, errors) = compile(
        "[{path: {type: RegularExpression, value: '('}}, {path: {value: x}}, {queryParams: [{type: X, name: q, value: v}]}, {headers: [{name: 'a b', value: v}]}]",
    );
    let fields: Vec<&str> = errors
        .0
        .iter()
        .filter_map(|e| e.location.field.as_deref())
        .collect();
    assert_eq!(
        fields,
        [
            "spec.rules[0].matches[0].path.value",
            "spec.rules[0].matches[1].path.value",
            "spec.rules[0].matches[2].queryParams[0].type",
            "spec.rules[0].matches[3].headers[0].name",
        ]
    );
}

#[test]
fn patterns_compare_by_source() {
    assert_eq!(
        Pattern::new("/a+").expect("valid"),
        Pattern::new("/a+").expect("valid")
    );
    assert_ne!(
        Pattern::new("/a+").expect("valid"),
        Pattern::new("/a*").expect("valid")
    );
}
