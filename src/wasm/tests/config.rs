//! WasmPlugin validation: url schemes, type, relative paths.

use super::*;

#[tokio::test]
async fn remote_urls_are_not_supported_here() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (host, _) = host();
    for url in [
        "oci://ghcr.io/acme/filter:1",
        "https://example.com/f.wasm",
        "http://x/f.wasm",
    ] {
        let err =
            compile(dir.path(), &[plugin_yaml("remote", url, "")], &host).expect_err("remote url");
        assert!(err.to_string().contains("not supported here"), "{err}");
        assert_eq!(err.0[0].location.field.as_deref(), Some("spec.url"));
    }
}

#[tokio::test]
async fn network_plugins_and_missing_files_are_config_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (host, _) = host();
    let err = compile(
        dir.path(),
        &[plugin_yaml("net", "f.wasm", "  type: NETWORK\n")],
        &host,
    )
    .expect_err("network");
    assert!(err.to_string().contains("not supported"), "{err}");
    assert_eq!(err.0[0].location.field.as_deref(), Some("spec.type"));
    let err = compile(
        dir.path(),
        &[plugin_yaml("missing", "file://missing.wasm", "")],
        &host,
    )
    .expect_err("no file");
    assert!(err.to_string().contains("cannot read module"), "{err}");
    let err = compile(
        dir.path(),
        &[plugin_yaml("bad", "f.wasm", "  failStrategy: SOMETIMES\n")],
        &host,
    )
    .expect_err("bad enum");
    assert!(err.to_string().contains("failStrategy"), "{err}");
}

#[tokio::test]
async fn relative_and_file_urls_resolve_against_the_config_dir() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (host, _) = host();
    let file = write_module(dir.path(), "rel", &wat_module("", "nop"));
    let set = compile(dir.path(), &[plugin_yaml("rel", &file, "")], &host).expect("relative path");
    assert_eq!(set.plugins().len(), 1);
    let set = compile(
        dir.path(),
        &[plugin_yaml("rel", &format!("file://{file}"), "")],
        &host,
    )
    .expect("file url");
    assert_eq!(set.plugins().len(), 1);
    let abs = format!("file://{}", dir.path().join(&file).display());
    compile(dir.path(), &[plugin_yaml("rel", &abs, "")], &host).expect("absolute file url");
}

#[tokio::test]
async fn plugins_without_target_refs_do_not_attach_to_a_waypoint() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (host, _) = host();
    let file = write_module(dir.path(), "untargeted", &wat_module("", "nop"));
    let doc = format!(
        "apiVersion: extensions.istio.io/v1alpha1\nkind: WasmPlugin\nmetadata: {{name: untargeted}}\nspec:\n  selector: {{matchLabels: {{app: x}}}}\n  url: {file}\n"
    );
    let set = compile(dir.path(), &[doc], &host).expect("loads");
    assert!(set.plugins().is_empty());
}
