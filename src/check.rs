//! `waypoint check`: validate a config the way `waypoint run` would load it
//! and say what it understood.

use std::fmt::Write;
use std::path::Path;

use crate::authz::{Applies, AuthzTable, Target};
use crate::config::{self, NamespacedName};
use crate::routing::{ServiceKind, Snapshot};
use crate::settings::Settings;
use crate::store::{build_snapshot, compile_options, Built};
use crate::telemetry::Metrics;
use crate::upstream::LoadRegistry;
use crate::wasm::{HostOptions, WasmHost};

/// Loads and compiles `path`. Returns whether it is valid and the report to
/// print: every error, or a summary of the objects and route attachments.
pub fn check(path: &Path, namespace: &str) -> (bool, String) {
    let mut settings = Settings::new(path);
    settings.namespace = namespace.to_string();
    check_with(&settings)
}

/// [`check`] with every setting `waypoint run` would use (the Gateway name,
/// root namespace and mesh config decide which policies apply).
pub fn check_with(settings: &Settings) -> (bool, String) {
    let path = settings.config_path.as_path();
    let mut out = String::new();
    // Same loading and compiling as `waypoint run`, WasmPlugins included.
    let metrics = Metrics::new();
    let wasm = WasmHost::new(metrics.registry(), HostOptions::default());
    let built = build_snapshot(
        settings,
        &compile_options(settings),
        &LoadRegistry::default(),
        &wasm,
    );
    let Built {
        snapshot,
        plugins,
        authz,
        telemetry,
    } = match built {
        Ok(b) => b,
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
                "  {} {} -> Service {}:{}{}{}",
                a.kind.as_str(),
                a.route,
                a.service,
                a.port,
                if a.consumer { " (consumer route)" } else { "" },
                if a.conflicted {
                    " (ignored: Conflicted, a GRPCRoute is attached to this port; GEP-1426)"
                } else {
                    ""
                }
            );
            if let Some(note) = a.note {
                let _ = writeln!(out, "    {note}");
            }
        }
    }
    // Gateway API's ResolvedRefs=False: traffic to those backends is refused.
    for status in snapshot.route_status() {
        if !status.unresolved.is_empty() {
            let _ = writeln!(out, "  warning: {status}");
        }
    }
    authorization_report(&mut out, &snapshot, &authz);
    // Telemetry resources a waypoint does not act on (selector form, other namespaces).
    for (key, why) in &telemetry.ignored {
        let _ = writeln!(out, "  warning: Telemetry {key} ignored: {why}");
    }
    (true, out)
}

/// Which AuthorizationPolicies apply to what, and warnings for those that
/// do not do what their author may think.
fn authorization_report(out: &mut String, snapshot: &Snapshot, authz: &AuthzTable) {
    if authz.policies.is_empty() && authz.authentications.is_empty() {
        return;
    }
    let resources = snapshot.resources();
    let served = |kind: ServiceKind, key: &NamespacedName| match kind {
        ServiceKind::Service => resources.services.iter().any(|s| &s.key == key),
        ServiceKind::ServiceEntry => resources.service_entries.iter().any(|s| &s.key == key),
    };
    let _ = writeln!(out, "authorization:");
    for (policy, applies) in &authz.policies {
        let mode = if policy.dry_run { " (dry-run)" } else { "" };
        match applies {
            Applies::To(targets) => {
                let names: Vec<String> = targets.iter().map(|t| t.to_string()).collect();
                let _ = writeln!(
                    out,
                    "  AuthorizationPolicy {} {}{mode} -> {}",
                    policy.name,
                    policy.action.as_str(),
                    names.join(", ")
                );
                if let Some(why) = &policy.rejected {
                    let _ = writeln!(
                        out,
                        "    error: cannot be enforced as written, so it denies all traffic it targets: {why}"
                    );
                }
                for t in targets {
                    if let Target::Destination(kind, key) = t {
                        if !served(*kind, key) {
                            let _ = writeln!(
                                out,
                                "    warning: targets {t}, which this config does not define: no traffic reaches it through this waypoint"
                            );
                        }
                    }
                }
            }
            Applies::Ignored(why) => {
                let _ = writeln!(
                    out,
                    "  warning: AuthorizationPolicy {} is ignored by this waypoint: it {why}",
                    policy.name
                );
            }
        }
    }
    let required = authz.policies.iter().any(|(p, a)| {
        matches!(a, Applies::To(_)) && p.rules.iter().any(|r| r.reads_request_auth())
    });
    for (name, providers, applies) in &authz.authentications {
        let issuers: Vec<&str> = providers.iter().map(|p| p.issuer.as_str()).collect();
        match applies {
            Applies::To(targets) => {
                let names: Vec<String> = targets.iter().map(|t| t.to_string()).collect();
                let _ = writeln!(
                    out,
                    "  RequestAuthentication {name} (issuers {}) -> {}",
                    issuers.join(", "),
                    names.join(", ")
                );
                if !required {
                    let _ = writeln!(
                        out,
                        "    warning: no AuthorizationPolicy requires requestPrincipals: invalid tokens are refused, but requests without a token are allowed"
                    );
                }
            }
            Applies::Ignored(why) => {
                let _ = writeln!(
                    out,
                    "  warning: RequestAuthentication {name} is ignored by this waypoint: it {why}"
                );
            }
        }
    }
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

#[cfg(test)]
mod tests {
    use super::check;

    #[test]
    fn says_which_policies_apply_and_warns_about_the_rest() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/golden/authorization/config.yaml");
        let (ok, report) = check(&path, "shop");
        assert!(ok, "{report}");
        assert!(report.contains(
            "AuthorizationPolicy shop/productpage-viewer ALLOW -> Service shop/productpage"
        ));
        assert!(report.contains("AuthorizationPolicy istio-system/mesh-class AUDIT -> all traffic"));
        assert!(report.contains(
            "warning: AuthorizationPolicy shop/sidecar-style is ignored by this waypoint: it has a selector"
        ));
        assert!(report.contains(
            "shop/other-waypoint is ignored by this waypoint: it targets Gateway shop/east"
        ));
    }

    #[test]
    fn marks_an_httproute_that_lost_its_port_to_a_grpcroute() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/golden/grpc-route/config.yaml");
        let (ok, report) = check(&path, "shop");
        assert!(ok, "{report}");
        assert!(
            report.contains("GRPCRoute shop/echo-rpc -> Service shop/echo:9090\n"),
            "{report}"
        );
        assert!(
            report.contains("HTTPRoute shop/echo-web -> Service shop/echo:9090 (ignored: Conflicted, a GRPCRoute is attached to this port; GEP-1426)"),
            "{report}"
        );
        assert!(
            report.contains("HTTPRoute shop/echo-web -> Service shop/echo:8080\n"),
            "{report}"
        );
        assert!(report.contains("GRPCRoute"), "{report}");
    }

    #[test]
    fn the_gateway_name_decides_which_policies_are_this_waypoints() {
        let mut settings = crate::settings::Settings::new(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/golden/authorization/config.yaml"),
        );
        settings.namespace = "shop".to_string();
        settings.gateway_name = "east".to_string();
        let (ok, report) = super::check_with(&settings);
        assert!(ok, "{report}");
        assert!(
            report.contains("AuthorizationPolicy shop/other-waypoint DENY -> all traffic"),
            "{report}"
        );
        assert!(
            report.contains(
                "shop/allow-nothing is ignored by this waypoint: it targets Gateway shop/waypoint"
            ),
            "{report}"
        );
    }

    #[test]
    fn flags_unenforceable_policies_and_missing_targets() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.yaml");
        std::fs::write(
            &path,
            "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: p, namespace: shop}\nspec:\n  targetRefs: [{kind: Service, name: ghost}]\n  action: CUSTOM\n  provider: {name: ext-authz}\n  rules: [{}]\n",
        )
        .unwrap();
        let (ok, report) = check(&path, "shop");
        assert!(ok, "{report}");
        assert!(
            report.contains(
                "error: cannot be enforced as written, so it denies all traffic it targets"
            ),
            "{report}"
        );
        assert!(report.contains("CUSTOM"), "{report}");
        assert!(
            report
                .contains("warning: targets Service shop/ghost, which this config does not define"),
            "{report}"
        );
    }
}
