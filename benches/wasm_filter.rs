//! Per-request overhead of a proxy-wasm filter: a header-adding plugin
//! (our `header-filter`, built from `wasm-filters/`) through
//! `HttpFilters`: start, request headers, response headers, log.
//!
//! Run: `cargo bench --features testing --bench wasm_filter`.

use std::sync::Arc;

use criterion::{criterion_group, criterion_main, Criterion};
use http::HeaderMap;
use waypoint::config::{load_str, NamespacedName};
use waypoint::test_helpers::wasm_filters::filter_wasm;
use waypoint::wasm::{
    compile_plugins, HostOptions, HttpFilters, PluginSet, RequestProps, Verdict, WasmHost,
};

fn plugin_set(host: &WasmHost) -> PluginSet {
    let url = filter_wasm("header_filter");
    let yaml = format!(
        "apiVersion: extensions.istio.io/v1alpha1\nkind: WasmPlugin\nmetadata: {{name: bench, namespace: default}}\nspec:\n  targetRefs: [{{group: gateway.networking.k8s.io, kind: Gateway, name: waypoint}}]\n  url: {}\n  pluginConfig:\n    request: {{add: {{x-wasm: request}}}}\n    response: {{add: {{x-wasm: response}}}}\n",
        url.display()
    );
    let resources = load_str(&yaml, "bench.yaml", "default").expect("bench plugin parses");
    compile_plugins(&resources, std::path::Path::new("."), host).expect("bench plugin compiles")
}

fn request(c: &mut Criterion) {
    let registry = prometheus::Registry::new();
    let host = WasmHost::new(
        &registry,
        HostOptions {
            instances_per_plugin: 1,
            ..Default::default()
        },
    );
    let set = plugin_set(&host);
    let service = NamespacedName::new("default", "reviews");
    let props = RequestProps {
        method: "GET".into(),
        scheme: "http".into(),
        authority: "reviews".into(),
        path: "/".into(),
        ..Default::default()
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let mut base_req = HeaderMap::new();
    base_req.insert("user-agent", "bench".parse().expect("literal"));
    base_req.insert("accept", "*/*".parse().expect("literal"));
    let mut base_resp = HeaderMap::new();
    base_resp.insert("content-type", "text/plain".parse().expect("literal"));

    let run = |chain: Arc<[Arc<waypoint::wasm::Plugin>]>| {
        let mut req = base_req.clone();
        let mut resp = base_resp.clone();
        rt.block_on(async {
            let mut filters = HttpFilters::start(chain, props.clone(), None);
            assert_eq!(
                filters.on_request_headers(&mut req, true).await,
                Verdict::Continue
            );
            assert_eq!(
                filters.on_response_headers(200, &mut resp, false).await,
                Verdict::Continue
            );
            filters.on_log();
        });
        (req, resp)
    };
    let (req, resp) = run(set.chain_for(&service, 80));
    assert_eq!(
        req.get("x-wasm").map(|v| v.as_bytes()),
        Some(&b"request"[..])
    );
    assert_eq!(
        resp.get("x-wasm").map(|v| v.as_bytes()),
        Some(&b"response"[..])
    );

    let mut group = c.benchmark_group("wasm_filter");
    group.bench_function("no_plugins", |b| b.iter(|| run(Arc::from(Vec::new()))));
    group.bench_function("header_filter_request_and_response", |b| {
        b.iter(|| run(set.chain_for(&service, 80)))
    });
    group.finish();
}

criterion_group!(benches, request);
criterion_main!(benches);
