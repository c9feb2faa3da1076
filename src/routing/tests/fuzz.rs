//! Fuzz targets for routing: any YAML beside the test mesh compiles or is
//! rejected with located errors, and any request (method, path, query,
//! headers) gets a decision from a table that uses every match and rewrite
//! kind. Under `cargo test` each replays its corpus
//! (`__fuzz__/<target>/corpus`) and a batch of random inputs;
//! `cargo bolero test` runs them longer (README "Fuzzing").

use std::sync::{Arc, OnceLock};

use http::{HeaderMap, HeaderName, HeaderValue};

use super::super::test_support::{opts, route_yaml, snapshot, MESH};
use super::*;
use crate::config;
use crate::upstream::LoadRegistry;

/// Any YAML after the mesh's: a snapshot or errors, never a panic.
#[test]
fn config_documents() {
    bolero::check!().for_each(|input: &[u8]| {
        let text = format!("{MESH}\n---\n{}", String::from_utf8_lossy(input));
        if let Ok(resources) = config::load_str(&text, "fuzz.yaml", "bookinfo") {
            let _ = Snapshot::compile(Arc::new(resources), &opts(), &LoadRegistry::default());
        }
    });
}

/// The golden configs (`tests/golden/*/config.yaml`, the seeds) edited line by line —
/// a line dropped, doubled, moved, or its value replaced — so the inputs
/// stay close to YAML the loader accepts and reach the compilers.
#[test]
fn config_mutations() {
    bolero::check!()
        .with_type::<(u8, Vec<(u16, u8, String)>)>()
        .for_each(|(seed, edits)| {
            let seeds = seed_configs();
            let mut lines: Vec<String> = seeds[usize::from(*seed) % seeds.len()]
                .lines()
                .map(str::to_string)
                .collect();
            for (at, op, text) in edits {
                if lines.is_empty() {
                    break;
                }
                let i = usize::from(*at) % lines.len();
                match op % 5 {
                    0 => {
                        lines.remove(i);
                    }
                    1 => lines.insert(i, lines[i].clone()),
                    2 => {
                        if let Some(colon) = lines[i].find(": ") {
                            lines[i].truncate(colon + 2);
                            lines[i].push_str(text);
                        }
                    }
                    3 => lines.insert(i, text.clone()),
                    _ => {
                        let j = (i + 1) % lines.len();
                        lines.swap(i, j);
                    }
                }
            }
            let text = format!("{MESH}\n---\n{}", lines.join("\n"));
            if let Ok(resources) = config::load_str(&text, "fuzz.yaml", "bookinfo") {
                let _ = Snapshot::compile(Arc::new(resources), &opts(), &LoadRegistry::default());
            }
        });
}

fn seed_configs() -> &'static [String] {
    static SEEDS: OnceLock<Vec<String>> = OnceLock::new();
    SEEDS.get_or_init(|| {
        let golden = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/golden");
        let mut seeds: Vec<String> = std::fs::read_dir(golden)
            .expect("the golden configs")
            .map(|e| e.expect("golden entry").path().join("config.yaml"))
            .filter(|p| p.is_file())
            .map(|p| std::fs::read_to_string(p).expect("UTF-8"))
            .collect();
        seeds.sort();
        assert!(
            !seeds.is_empty(),
            "no tests/golden/*/config.yaml to seed from"
        );
        seeds
    })
}

/// An HTTPRoute on `reviews` and a VirtualService on `productpage` using
/// every match kind, rewrite and redirect.
fn table() -> &'static Snapshot {
    static SNAP: OnceLock<Snapshot> = OnceLock::new();
    SNAP.get_or_init(|| {
        let http_route = route_yaml(
            "fuzz",
            None,
            r#"  - matches: [{path: {type: RegularExpression, value: "/r/[a-z]+(/.*)?"}, headers: [{name: x-v, type: RegularExpression, value: "v[0-9]+"}]}]
    filters: [{type: URLRewrite, urlRewrite: {path: {type: ReplaceFullPath, replaceFullPath: /full}}}]
    backendRefs: [{name: reviews-v1, port: 9080}]
  - matches: [{path: {type: PathPrefix, value: /p}, queryParams: [{name: q, value: "1"}], method: POST}, {path: {type: PathPrefix, value: /p/}}]
    filters: [{type: URLRewrite, urlRewrite: {hostname: internal, path: {type: ReplacePrefixMatch, replacePrefixMatch: /}}}]
    backendRefs: [{name: reviews-v2, port: 9080}]
  - matches: [{path: {type: PathPrefix, value: /old}}]
    filters: [{type: RequestRedirect, requestRedirect: {scheme: https, path: {type: ReplacePrefixMatch, replacePrefixMatch: /new}, statusCode: 301}}]
  - matches: [{path: {type: Exact, value: /}}]
    backendRefs: [{name: reviews-v1, port: 9080, weight: 1}, {name: reviews-v2, port: 9080, weight: 3}]"#,
        );
        let vs = r#"---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: fuzz, namespace: bookinfo}
spec:
  hosts: [productpage]
  http:
  - match: [{uri: {regex: "/svc/[^/]+.*"}, headers: {x-a: {prefix: a}}, queryParams: {k: {exact: v}}}]
    rewrite: {uriRegexRewrite: {match: "^/svc/([^/]+)", rewrite: "/\\1/v1"}}
    route: [{destination: {host: reviews-v1}}]
  - match: [{uri: {prefix: /old}, ignoreUriCase: true}]
    rewrite: {uri: /new, authority: internal}
    route: [{destination: {host: reviews-v1}}]
  - match: [{uri: {exact: /go}}]
    redirect: {uri: /gone, authority: example.com}
  - match: [{method: {exact: DELETE}}]
    redirect: {scheme: https, derivePort: FROM_PROTOCOL_DEFAULT, redirectCode: 308}
  - route: [{destination: {host: reviews-v2}}]
"#;
        snapshot(&format!("{http_route}\n{vs}"))
    })
}

/// Any request on either port: a decision, and a rewritten or redirected
/// path that is still a valid HTTP path.
#[test]
fn route_requests() {
    bolero::check!()
        .with_type::<(u8, String, String, Vec<(u8, String)>)>()
        .for_each(|(which, method, tail, headers)| {
            // Start from the table's own prefixes so the tail reaches the
            // matchers and rewrites rather than only the fallbacks.
            let starts = ["/", "/r/", "/p", "/old", "/OLD/", "/svc/", "/go", "/?q=1&"];
            let path = &format!("{}{tail}", starts[usize::from(*which / 2) % starts.len()]);
            let method = if method.is_empty() {
                "GET"
            } else {
                method.as_str()
            };
            let mut map = HeaderMap::new();
            for (name, value) in headers {
                let names = ["x-v", "x-a", "cookie", "x-other"];
                let name = HeaderName::from_static(names[usize::from(*name) % names.len()]);
                if let Ok(v) = HeaderValue::from_str(value) {
                    map.append(name, v);
                }
            }
            // Only what a parsed request can carry reaches routing.
            if path.parse::<http::uri::PathAndQuery>().is_err()
                || http::Method::from_bytes(method.as_bytes()).is_err()
            {
                return;
            }
            // Read from the static inside: the closure must be unwind-safe.
            let snap = table();
            let host =
                ["reviews.bookinfo:9080", "productpage.bookinfo:9080"][usize::from(*which) % 2];
            let dest = &snap.find_destination_by_host(host).expect("in the mesh");
            let info = RequestInfo {
                method,
                path_and_query: path,
                headers: &map,
                scheme: "http",
                host: "reviews.bookinfo",
                port: 9080,
            };
            if let RouteDecision::Forward(plan) = snap.route(dest, &info, None) {
                if let Some(p) = plan.rewrite.and_then(|r| r.path_and_query) {
                    assert!(
                        p.parse::<http::uri::PathAndQuery>().is_ok(),
                        "{path:?} rewritten to an invalid path {p:?}"
                    );
                }
            }
        });
}
