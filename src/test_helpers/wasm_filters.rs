//! Our proxy-wasm filters for unit tests, `tests/` and benches: builds the `wasm-filters/`
//! workspace for `wasm32-wasip1`, once per process. The Wasm host itself is `crate::wasm`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The path of one of our filters (`header_filter`, `rate_limit`,
/// `ext_auth`), building the `wasm-filters` workspace on first use.
///
/// Panics with cargo's output when the build fails (a missing
/// `wasm32-wasip1` target says so: `rustup target add wasm32-wasip1`).
pub fn filter_wasm(name: &str) -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    let dir = BUILT.get_or_init(|| {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("wasm-filters");
        let target = root.join("target");
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let output = Command::new(cargo)
            .args([
                "build",
                "--release",
                "--target",
                "wasm32-wasip1",
                "--manifest-path",
            ])
            .arg(root.join("Cargo.toml"))
            // Our own target dir: the outer build's (maybe shared) one is
            // locked by it, and its flags are for the host target.
            .env("CARGO_TARGET_DIR", &target)
            .env_remove("RUSTFLAGS")
            .env_remove("CARGO_ENCODED_RUSTFLAGS")
            .output()
            .expect("cargo runs");
        assert!(
            output.status.success(),
            "building wasm-filters failed:\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
        target.join("wasm32-wasip1").join("release")
    });
    dir.join(format!("{name}.wasm"))
}
