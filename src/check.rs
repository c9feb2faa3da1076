//! `waypoint check`: validate a config the way `waypoint run` would load it
//! and say what it understood.

use std::fmt::Write;
use std::path::Path;

use crate::config;
use crate::settings::Settings;
use crate::store::{build_snapshot, compile_options};
use crate::telemetry::Metrics;
use crate::upstream::LoadRegistry;
use crate::wasm::{HostOptions, WasmHost};

/// Loads and compiles `path`. Returns whether it is valid and the report to
/// print: every error, or a summary of the objects and route attachments.
pub fn check(path: &Path, namespace: &str) -> (bool, String) {
    let mut out = String::new();
    let mut settings = Settings::new(path);
    settings.namespace = namespace.to_string();
    // Same loading and compiling as `waypoint run`, WasmPlugins included.
    let metrics = Metrics::new();
    let wasm = WasmHost::new(metrics.registry(), HostOptions::default());
    let built = build_snapshot(
        &settings,
        &compile_options(&settings),
        &LoadRegistry::default(),
        &wasm,
    );
    let (snapshot, plugins) = match built {
        Ok(s) => s,
        Err(errors) => return (false, error_report(path, &errors)),
    };
    let _ = writeln!(out, "{}: valid", path.display());
    let _ = writeln!(out, "loaded:");
    for (kind, n) in snapshot.resources().counts() {
        if n > 0 {
            let _ = writeln!(out, "  {kind:<14} {n}");
        }
    }
    for p in plugins.plugins() {
        let _ = writeln!(out, "  WasmPlugin {} compiled", p.key());
    }
    let attachments = snapshot.attachments();
    if attachments.is_empty() {
        let _ = writeln!(
            out,
            "routes: none attached (every Service routes to its own endpoints)"
        );
    } else {
        let _ = writeln!(out, "routes:");
        for a in attachments {
            let _ = writeln!(
                out,
                "  {} {} -> Service {}:{}{}",
                a.kind.as_str(),
                a.route,
                a.service,
                a.port,
                if a.consumer { " (consumer route)" } else { "" }
            );
        }
    }
    (true, out)
}

fn error_report(path: &Path, errors: &config::ConfigErrors) -> String {
    let mut out = format!(
        "{}: invalid ({} error{})\n",
        path.display(),
        errors.0.len(),
        if errors.0.len() == 1 { "" } else { "s" }
    );
    for e in &errors.0 {
        let _ = writeln!(out, "  error: {e}");
    }
    out
}
