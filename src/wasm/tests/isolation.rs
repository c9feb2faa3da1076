//! Failures stay inside the plugin: runaway loops, traps and the memory cap
//! fail the request per failStrategy, are counted, and the next request is
//! served by a fresh instance; reloads under load fail nothing.

use std::sync::Arc;

use arc_swap::ArcSwap;

use super::*;
use crate::test_helpers::wasm_filters::filter_wasm;

/// Loads a WAT failure module with `failStrategy`.
fn failing_set(
    dir: &Path,
    host: &WasmHost,
    name: &str,
    misbehave: &str,
    strategy: &str,
) -> PluginSet {
    let file = write_module(dir, name, &wat_module("", misbehave));
    let doc = plugin_yaml(name, &file, &format!("  failStrategy: {strategy}\n"));
    compile(dir, &[doc], host).expect("module loads")
}

async fn check_failure(name: &str, misbehave: &str, reason: FailureReason) {
    let dir = tempfile::tempdir().expect("tempdir");
    let (host, _) = host();
    let closed = failing_set(
        dir.path(),
        &host,
        &format!("{name}-closed"),
        misbehave,
        "FAIL_CLOSE",
    );
    let out = exchange(&closed, &[("x-bad", "1")], None).await;
    match out.request {
        Verdict::Respond(r) => assert_eq!(r.status, 500, "FAIL_CLOSE answers 500"),
        other => panic!("expected 500, got {other:?}"),
    }
    assert_eq!(
        host.metrics()
            .failures(&format!("default.{name}-closed"), reason),
        1
    );
    // The host keeps serving: every later request runs on a live instance.
    for _ in 0..4 {
        let out = exchange(&closed, &[], None).await;
        assert_eq!(out.request, Verdict::Continue);
        assert_eq!(
            values(&out.request_headers, "x-ok"),
            ["1"],
            "the plugin ran"
        );
    }

    let open = failing_set(
        dir.path(),
        &host,
        &format!("{name}-open"),
        misbehave,
        "FAIL_OPEN",
    );
    let out = exchange(&open, &[("x-bad", "1")], None).await;
    assert_eq!(out.request, Verdict::Continue, "FAIL_OPEN skips the plugin");
    assert!(out.request_headers.get("x-ok").is_none());
    assert_eq!(
        host.metrics()
            .failures(&format!("default.{name}-open"), reason),
        1
    );
    let out = exchange(&open, &[], None).await;
    assert_eq!(values(&out.request_headers, "x-ok"), ["1"]);
}

#[tokio::test]
async fn an_endless_loop_hits_the_epoch_deadline() {
    check_failure(
        "loop",
        "(loop $forever (br $forever))",
        FailureReason::Timeout,
    )
    .await;
}

#[tokio::test]
async fn a_trap_discards_the_instance() {
    check_failure("trap", "unreachable", FailureReason::Trap).await;
}

#[tokio::test]
async fn growing_past_the_memory_cap_fails_the_plugin() {
    // 1000 pages = 64 MiB, over the tests' 16 MiB cap.
    check_failure(
        "grow",
        "(drop (memory.grow (i32.const 1000)))",
        FailureReason::MemoryLimit,
    )
    .await;
}

#[tokio::test]
async fn an_unknown_import_is_a_clear_load_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (host, _) = host();
    let bytes = wat_module(r#"(import "env" "proxy_foo" (func (param i32)))"#, "nop");
    let file = write_module(dir.path(), "unknown", &bytes);
    let err = compile(dir.path(), &[plugin_yaml("unknown", &file, "")], &host)
        .expect_err("must not load");
    let text = err.to_string();
    assert!(
        text.contains(r#"module "env" import "proxy_foo" is not provided"#),
        "{text}"
    );
    assert!(text.contains("WasmPlugin default/unknown"), "{text}");
    assert_eq!(err.0[0].location.field.as_deref(), Some("spec.url"));
}

#[tokio::test]
async fn a_sha256_mismatch_rejects_the_plugin() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (host, _) = host();
    let file = write_module(dir.path(), "sha", &wat_module("", "nop"));
    let doc = plugin_yaml("sha", &file, &format!("  sha256: {}\n", "ab".repeat(32)));
    let err = compile(dir.path(), &[doc], &host).expect_err("digest differs");
    assert_eq!(err.0[0].location.field.as_deref(), Some("spec.sha256"));
    assert!(err.to_string().contains("sha256 mismatch"), "{err}");
    // The right digest loads.
    let digest: String = {
        use sha2::Digest;
        sha2::Sha256::digest(std::fs::read(dir.path().join(&file)).expect("written"))
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    };
    let doc = plugin_yaml(
        "sha",
        &file,
        &format!("  sha256: {}\n", digest.to_uppercase()),
    );
    compile(dir.path(), &[doc], &host).expect("matching digest loads");
}

#[tokio::test]
async fn reloading_a_plugin_under_load_fails_no_request() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (host, _) = host();
    let url = filter_wasm("header_filter").display().to_string();
    let version = |v: u32| {
        plugin_yaml(
            "reloaded",
            &url,
            &format!("  pluginConfig:\n    request:\n      set: {{x-version: \"v{v}\"}}\n"),
        )
    };
    let current = Arc::new(ArcSwap::from_pointee(
        compile(dir.path(), &[version(0)], &host).expect("v0"),
    ));
    let unchanged = compile(dir.path(), &[version(0)], &host).expect("v0 again");
    assert!(
        **current.load() == unchanged,
        "an unchanged reload compares equal"
    );

    let mut workers = Vec::new();
    for _ in 0..4 {
        let current = Arc::clone(&current);
        workers.push(tokio::spawn(async move {
            let mut seen = std::collections::BTreeSet::new();
            for _ in 0..200 {
                let set = current.load_full();
                let out = exchange(&set, &[], None).await;
                assert_eq!(out.request, Verdict::Continue);
                let v = values(&out.request_headers, "x-version");
                assert_eq!(v.len(), 1, "exactly one version per request");
                seen.insert(v[0].clone());
                tokio::task::yield_now().await;
            }
            seen
        }));
    }
    for v in 1..=5 {
        let next = compile(dir.path(), &[version(v)], &host).expect("reload compiles");
        current.store(Arc::new(next));
        tokio::task::yield_now().await;
    }
    for w in workers {
        let seen = tokio::time::timeout(STEP, w)
            .await
            .expect("worker finishes")
            .expect("no panic");
        assert!(!seen.is_empty());
    }
    let out = exchange(&current.load_full(), &[], None).await;
    assert_eq!(values(&out.request_headers, "x-version"), ["v5"]);
}
