//! Host tests: our filters and failure modules through the per-request API
//! with real header maps. Helpers here; scenarios in `tests/`.

mod abi_fuzz;
mod config;
mod filters;
mod isolation;
mod sdk_examples;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use http::HeaderMap;
use prometheus::Registry;

use super::*;
use crate::config::{load_path, ConfigErrors};

/// Every await in these tests is bounded by this.
const STEP: Duration = Duration::from_secs(10);

fn options() -> HostOptions {
    HostOptions {
        instances_per_plugin: 2,
        memory_limit: 16 << 20,
        callback_timeout: Duration::from_millis(100),
        ..Default::default()
    }
}

/// A host with its own registry.
fn host() -> (Arc<WasmHost>, Registry) {
    let registry = Registry::new();
    (WasmHost::new(&registry, options()), registry)
}

/// A WasmPlugin document attached to the waypoint Gateway.
fn plugin_yaml(name: &str, url: &str, extra: &str) -> String {
    format!(
        "apiVersion: extensions.istio.io/v1alpha1\nkind: WasmPlugin\nmetadata:\n  name: {name}\n  namespace: default\nspec:\n  targetRefs:\n  - group: gateway.networking.k8s.io\n    kind: Gateway\n    name: waypoint\n  url: {url}\n{extra}"
    )
}

/// Writes `docs` as one YAML file in `dir`, loads and compiles it.
fn compile(dir: &Path, docs: &[String], host: &WasmHost) -> Result<PluginSet, ConfigErrors> {
    let file = dir.join("plugins.yaml");
    std::fs::write(&file, docs.join("---\n")).expect("temp dir is writable");
    let resources = load_path(&file, "default")?;
    compile_plugins(&resources, dir, host)
}

fn props() -> RequestProps {
    RequestProps {
        request_id: "req-1".into(),
        method: "GET".into(),
        scheme: "http".into(),
        authority: "reviews.default.svc.cluster.local".into(),
        path: "/reviews/1?x=1".into(),
        protocol: "HTTP/1.1".into(),
        source: Some("127.0.0.1:40000".parse().expect("literal")),
        source_principal: Some("spiffe://cluster.local/ns/default/sa/productpage".into()),
        destination: Some("10.0.0.7:9080".parse().expect("literal")),
        destination_service: Some(crate::config::NamespacedName::new("default", "reviews")),
    }
}

fn reviews() -> crate::config::NamespacedName {
    crate::config::NamespacedName::new("default", "reviews")
}

/// What one request saw.
struct Outcome {
    request: Verdict,
    request_headers: HeaderMap,
    response: Option<Verdict>,
    response_headers: HeaderMap,
}

/// Runs request headers and (if they continue) response headers through
/// the chain for `service`:9080.
async fn exchange(
    set: &PluginSet,
    headers: &[(&str, &str)],
    caller: Option<Arc<dyn HttpCaller>>,
) -> Outcome {
    let chain = set.chain_for(&reviews(), 9080);
    let mut filters = HttpFilters::start(chain, props(), caller);
    let mut request_headers = HeaderMap::new();
    for (k, v) in headers {
        request_headers.append(
            http::HeaderName::from_bytes(k.as_bytes()).expect("valid test header"),
            v.parse().expect("valid test value"),
        );
    }
    let request =
        tokio::time::timeout(STEP, filters.on_request_headers(&mut request_headers, true))
            .await
            .expect("request headers phase finishes");
    let mut response_headers = HeaderMap::new();
    response_headers.insert("server", "echo".parse().expect("literal"));
    let mut response = None;
    if request == Verdict::Continue {
        response = Some(
            tokio::time::timeout(
                STEP,
                filters.on_response_headers(200, &mut response_headers, false),
            )
            .await
            .expect("response headers phase finishes"),
        );
    }
    filters.on_log();
    Outcome {
        request,
        request_headers,
        response,
        response_headers,
    }
}

fn values(map: &HeaderMap, name: &str) -> Vec<String> {
    map.get_all(name)
        .iter()
        .map(|v| v.to_str().expect("ascii").to_string())
        .collect()
}

/// A minimal ABI 0.2.1 module in WAT whose request-headers callback runs
/// `misbehave` when the request has an `x-bad` header, and otherwise adds
/// `x-ok: 1`. `extra` adds module fields (imports must come first: pass them
/// in `imports`).
fn wat_module(imports: &str, misbehave: &str) -> Vec<u8> {
    let text = format!(
        r#"(module
  (import "env" "proxy_get_header_map_value" (func $get (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_add_header_map_value" (func $add (param i32 i32 i32 i32 i32) (result i32)))
  {imports}
  (memory (export "memory") 1)
  (data (i32.const 16) "x-bad")
  (data (i32.const 32) "x-ok1")
  (global $heap (mut i32) (i32.const 4096))
  (func (export "proxy_abi_version_0_2_1"))
  (func (export "proxy_on_memory_allocate") (param $n i32) (result i32)
    (local $p i32)
    (local.set $p (global.get $heap))
    (global.set $heap (i32.add (global.get $heap) (local.get $n)))
    (local.get $p))
  (func (export "proxy_on_context_create") (param i32 i32))
  (func (export "proxy_on_vm_start") (param i32 i32) (result i32) (i32.const 1))
  (func (export "proxy_on_configure") (param i32 i32) (result i32) (i32.const 1))
  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
    (if (i32.eqz (call $get (i32.const 0) (i32.const 16) (i32.const 5) (i32.const 64) (i32.const 68)))
      (then {misbehave}))
    (drop (call $add (i32.const 0) (i32.const 32) (i32.const 4) (i32.const 36) (i32.const 1)))
    (i32.const 0))
)"#
    );
    wat::parse_str(text).expect("test WAT is valid")
}

/// Writes a WAT-built module into `dir` and returns its file name.
fn write_module(dir: &Path, name: &str, bytes: &[u8]) -> String {
    let file = format!("{name}.wasm");
    std::fs::write(dir.join(&file), bytes).expect("temp dir is writable");
    file
}
