//! What compiled filters compute per request: paths, redirect locations,
//! rewrites, header edits, mirror sampling.

use http::{HeaderMap, HeaderName, HeaderValue};

use super::*;
use crate::routing::test_support::Req;

#[test]
fn replace_prefix_match_table() {
    // The Gateway API HTTPPathModifier table (request, prefix, replacement, result).
    let rows = [
        ("/foo/bar", "/foo", "/xyz", "/xyz/bar"),
        ("/foo/bar", "/foo", "/xyz/", "/xyz/bar"),
        ("/foo/bar", "/foo/", "/xyz", "/xyz/bar"),
        ("/foo/bar", "/foo/", "/xyz/", "/xyz/bar"),
        ("/foo", "/foo", "/xyz", "/xyz"),
        ("/foo/", "/foo", "/xyz", "/xyz/"),
        ("/foo/bar", "/foo", "", "/bar"),
        ("/foo/", "/foo", "", "/"),
        ("/foo", "/foo", "", "/"),
        ("/foo/", "/foo", "/", "/"),
        ("/foo", "/foo", "/", "/"),
        // Not in the table: prefix "/" keeps the whole path after the replacement.
        ("/foo/bar", "/", "/xyz", "/xyz/foo/bar"),
    ];
    for (path, prefix, replacement, want) in rows {
        let m = PathModifier::ReplacePrefixMatch(replacement.to_string());
        assert_eq!(
            m.apply(path, Some(prefix)),
            want,
            "{path} prefix {prefix} -> {replacement}"
        );
    }
    assert_eq!(
        PathModifier::ReplaceFullPath("/new".into()).apply("/foo/bar", Some("/foo")),
        "/new"
    );
}

fn redirect(
    scheme: Option<&str>,
    hostname: Option<&str>,
    port: Option<u16>,
    path: Option<PathModifier>,
) -> RedirectFilter {
    RedirectFilter {
        scheme: scheme.map(String::from),
        hostname: hostname.map(String::from),
        port,
        path,
        status: 302,
        derive_port: None,
    }
}

#[test]
fn redirect_location_table() {
    let full = || Some(PathModifier::ReplaceFullPath("/new".into()));
    let prefix = || Some(PathModifier::ReplacePrefixMatch("/v2".into()));
    // (filter, request port, expected Location, spec rule); request is
    // http://reviews.bookinfo:<port>/api/x?q=1 matched by PathPrefix /api.
    let rows = [
        (
            redirect(None, None, None, None),
            9080,
            "http://reviews.bookinfo:9080/api/x?q=1",
            "scheme and port unset: the listener (Service) port",
        ),
        (
            redirect(None, None, None, None),
            80,
            "http://reviews.bookinfo/api/x?q=1",
            "port 80 omitted for http",
        ),
        (
            redirect(Some("https"), None, None, None),
            9080,
            "https://reviews.bookinfo/api/x?q=1",
            "scheme set, port unset: scheme's well-known port (443, omitted)",
        ),
        (
            redirect(Some("http"), None, None, None),
            9080,
            "http://reviews.bookinfo/api/x?q=1",
            "scheme http: port 80, omitted",
        ),
        (
            redirect(Some("https"), None, Some(8443), None),
            9080,
            "https://reviews.bookinfo:8443/api/x?q=1",
            "explicit port kept",
        ),
        (
            redirect(Some("https"), None, Some(443), None),
            9080,
            "https://reviews.bookinfo/api/x?q=1",
            "explicit 443 omitted for https",
        ),
        (
            redirect(None, Some("example.com"), None, None),
            9080,
            "http://example.com:9080/api/x?q=1",
            "hostname replaced",
        ),
        (
            redirect(None, None, Some(80), full()),
            9080,
            "http://reviews.bookinfo/new?q=1",
            "ReplaceFullPath, query kept",
        ),
        (
            redirect(None, None, Some(80), prefix()),
            9080,
            "http://reviews.bookinfo/v2/x?q=1",
            "ReplacePrefixMatch uses the matched prefix",
        ),
    ];
    for (filter, port, want, rule) in rows {
        let mut req = Req::get("/api/x?q=1");
        req.port = port;
        assert_eq!(filter.location(&req.info(), Some("/api")), want, "{rule}");
    }
}

#[test]
fn url_rewrite_keeps_query_and_sets_authority() {
    let f = UrlRewriteFilter {
        hostname: Some("elsewhere".into()),
        path: Some(PathModifier::ReplacePrefixMatch("/".into())),
    };
    let r = f.rewrite(&Req::get("/api/items?x=1").info(), Some("/api"));
    assert_eq!(r.path_and_query.as_deref(), Some("/items?x=1"));
    assert_eq!(r.authority.as_deref(), Some("elsewhere"));
    let host_only = UrlRewriteFilter {
        hostname: Some("h".into()),
        path: None,
    };
    assert_eq!(
        host_only
            .rewrite(&Req::get("/a").info(), None)
            .path_and_query,
        None
    );
}

fn hv(s: &str) -> HeaderValue {
    HeaderValue::from_str(s).expect("valid")
}

fn hn(s: &str) -> HeaderName {
    HeaderName::from_bytes(s.as_bytes()).expect("valid")
}

#[test]
fn header_modifier_set_add_remove() {
    let m = HeaderModifier {
        set: vec![(hn("x-set"), hv("s"))],
        add: vec![(hn("x-add"), hv("b")), (hn("x-new"), hv("n"))],
        remove: vec![hn("x-remove")],
    };
    let mut h = HeaderMap::new();
    h.append("x-set", hv("old1"));
    h.append("x-set", hv("old2"));
    h.insert("x-add", hv("a"));
    h.insert("X-Remove", hv("gone"));
    h.insert("x-keep", hv("k"));
    m.apply(&mut h);
    let all = |name: &str| -> Vec<&str> {
        h.get_all(name)
            .iter()
            .map(|v| v.to_str().unwrap_or("?"))
            .collect()
    };
    assert_eq!(all("x-set"), ["s"], "set replaces every value");
    assert_eq!(
        all("x-add"),
        ["a,b"],
        "add appends to the existing value with a comma (conformance)"
    );
    assert_eq!(all("x-new"), ["n"], "add on an absent header sets it");
    assert!(all("x-remove").is_empty(), "remove is case-insensitive");
    assert_eq!(all("x-keep"), ["k"]);
}

#[test]
fn mirror_sampling_respects_fraction() {
    let never = MirrorFilter {
        target: Err("unresolved".into()),
        numerator: 100,
        denominator: 100,
    };
    assert!(never.sample().is_none(), "an unresolved mirror is skipped");
}

#[test]
fn mirror_fraction_is_sampled_per_request() {
    let snap = crate::routing::test_support::snapshot("");
    let dest = crate::routing::test_support::reviews(&snap);
    let endpoints = Arc::new(EndpointSet::empty(crate::upstream::LbPolicy::default()));
    let mirror = |numerator, denominator| MirrorFilter {
        target: Ok((dest.clone(), endpoints.clone())),
        numerator,
        denominator,
    };
    let n = 10_000;
    // (numerator, denominator, expected share)
    for (num, den, want) in [(0, 100, 0.0), (100, 100, 1.0), (1, 4, 0.25), (50, 100, 0.5)] {
        let m = mirror(num, den);
        let hits = (0..n).filter(|_| m.sample().is_some()).count();
        let share = hits as f64 / n as f64;
        assert!((share - want).abs() < 0.02, "{num}/{den}: {share}");
    }
}
