//! `waypoint check`: validate a config the way `waypoint run` would load it
//! and say what it understood.

use std::fmt::Write;
use std::path::Path;
use std::sync::Arc;

use crate::config;
use crate::routing::{CompileOptions, LbPolicy, LoadRegistry, Snapshot};

/// Loads and compiles `path`. Returns whether it is valid and the report to
/// print: every error, or a summary of the objects and route attachments.
pub fn check(path: &Path, namespace: &str) -> (bool, String) {
    let mut out = String::new();
    let resources = match config::load_path(path, namespace) {
        Ok(r) => r,
        Err(errors) => return (false, error_report(path, &errors)),
    };
    let options = CompileOptions {
        namespace: namespace.to_string(),
        cluster_domain: "cluster.local".to_string(),
        lb: LbPolicy::LeastRequest,
    };
    let snapshot = match Snapshot::compile(Arc::new(resources), &options, &LoadRegistry::default())
    {
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
