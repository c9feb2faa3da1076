//! Errors of loading a WasmPlugin; `plugin_set` turns each into a config
//! error with the WasmPlugin's location and field.

/// Why a plugin could not be loaded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WasmError {
    /// `oci://`, `http://`, `https://` or another remote scheme.
    #[error("{scheme}:// URLs are not supported here: use file:// or a path to a local .wasm file (url {url})")]
    UnsupportedUrl { scheme: String, url: String },
    #[error("url is required")]
    MissingUrl,
    #[error("cannot read module {path}: {reason}")]
    Read { path: String, reason: String },
    #[error("sha256 mismatch for {path}: spec.sha256 is {expected} but the module's is {actual}")]
    Sha256Mismatch {
        path: String,
        expected: String,
        actual: String,
    },
    #[error("module {path} does not compile: {reason}")]
    Compile { path: String, reason: String },
    /// An import the host does not provide, e.g.
    /// `module "env" import "proxy_foo" is not provided`.
    #[error("module {path}: {reason}")]
    Link { path: String, reason: String },
    #[error("module {path} exports no supported proxy-wasm ABI version (need proxy_abi_version_0_2_1 or _0_2_0)")]
    AbiVersion { path: String },
    /// Instantiation, `_initialize`, `proxy_on_vm_start` or `proxy_on_configure` failed.
    #[error("plugin does not start: {0}")]
    Start(String),
    #[error("type NETWORK is not supported: the waypoint runs HTTP plugins only")]
    NetworkType,
}
