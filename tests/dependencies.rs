//! Dependency hygiene (SECURITY.md "Dependencies"): `cargo deny` checks
//! bans (no OpenSSL), licenses (permissive only) and sources (crates.io and
//! the vendored Pingora only) against `deny.toml`, offline. `.ci/run`
//! installs cargo-deny; without it this check is skipped with a note.

use std::process::Command;

#[test]
fn cargo_deny_bans_licenses_sources() {
    let manifest_dir = env!("CARGO_MANIFEST_DIR");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
    if Command::new(&cargo)
        .args(["deny", "--version"])
        .output()
        .map(|o| !o.status.success())
        .unwrap_or(true)
    {
        eprintln!(
            "cargo-deny is not installed: dependency check skipped (`cargo install cargo-deny`)"
        );
        return;
    }
    let out = Command::new(&cargo)
        .current_dir(manifest_dir)
        .args(["deny", "--offline", "check", "bans", "licenses", "sources"])
        .output()
        .expect("runs cargo deny");
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "cargo deny found problems:\n{report}");
    assert!(
        report.contains("bans ok")
            && report.contains("licenses ok")
            && report.contains("sources ok"),
        "{report}"
    );
}
