//! Turning a WasmPlugin's `url` and `sha256` into a compiled module, off the
//! request path: resolve the local file, check its digest, compile (once per
//! digest), check the ABI version and that every import links.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use wasmtime::{InstancePre, Module};

use super::engine::{engine, linker};
use super::error::WasmError;
use super::host::HostState;

/// ABI versions we run; a module exports one of these as an empty function.
const ABI_VERSIONS: &[&str] = &["proxy_abi_version_0_2_1", "proxy_abi_version_0_2_0"];

/// A compiled module ready to instantiate.
#[derive(Clone)]
pub(crate) struct Compiled {
    pub(crate) pre: InstancePre<HostState>,
}

/// The local file `url` names. `file://` URLs and plain paths are local;
/// relative paths resolve against `base` (the config file's directory).
pub(crate) fn resolve_url(url: &str, base: &Path) -> Result<PathBuf, WasmError> {
    if url.is_empty() {
        return Err(WasmError::MissingUrl);
    }
    if let Some(path) = url.strip_prefix("file://") {
        return Ok(base.join(path));
    }
    if let Some((scheme, _)) = url.split_once("://") {
        return Err(WasmError::UnsupportedUrl {
            scheme: scheme.to_string(),
            url: url.to_string(),
        });
    }
    Ok(base.join(url))
}

/// Reads the module and checks `expected` (hex, any case) against its SHA-256.
pub(crate) fn read_checked(
    path: &Path,
    expected: Option<&str>,
) -> Result<(Vec<u8>, String), WasmError> {
    let bytes = std::fs::read(path).map_err(|e| WasmError::Read {
        path: path.display().to_string(),
        reason: e.to_string(),
    })?;
    let actual = hex(&Sha256::digest(&bytes));
    if let Some(expected) = expected.filter(|e| !e.is_empty()) {
        if !expected.eq_ignore_ascii_case(&actual) {
            return Err(WasmError::Sha256Mismatch {
                path: path.display().to_string(),
                expected: expected.to_string(),
                actual,
            });
        }
    }
    Ok((bytes, actual))
}

/// Compiles `bytes` and links it against the host.
pub(crate) fn compile(path: &Path, bytes: &[u8]) -> Result<Compiled, WasmError> {
    let shown = path.display().to_string();
    let module = Module::new(engine(), bytes).map_err(|e| WasmError::Compile {
        path: shown.clone(),
        reason: format!("{e:#}"),
    })?;
    let exports: Vec<&str> = module.exports().map(|e| e.name()).collect();
    if !ABI_VERSIONS.iter().any(|v| exports.contains(v)) {
        return Err(WasmError::AbiVersion { path: shown });
    }
    let host = linker();
    if let Some(reason) = host.missing_import(&module) {
        return Err(WasmError::Link {
            path: shown,
            reason,
        });
    }
    let pre = host
        .linker
        .instantiate_pre(&module)
        .map_err(|e| WasmError::Link {
            path: shown,
            reason: format!("{e:#}"),
        })?;
    Ok(Compiled { pre })
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
