//! Istio host names → destinations. Per the Istio docs, a short name
//! (`reviews`) "will be interpreted based on the namespace of the rule, not
//! the service"; we also accept `name.ns`, `name.ns.svc`, the FQDN
//! `name.ns.svc.<cluster domain>`, and ServiceEntry hosts as written.
//! Wildcard hosts (`*.example.com`) are not resolved.

use std::collections::HashMap;

use crate::routing::snapshot::TargetState;

/// Lower-case FQDN (Service) or host (ServiceEntry) → target index.
pub(crate) struct HostIndex<'a> {
    by_host: HashMap<String, usize>,
    cluster_domain: &'a str,
}

impl<'a> HostIndex<'a> {
    pub(crate) fn new(targets: &[TargetState], cluster_domain: &'a str) -> Self {
        let mut by_host = HashMap::new();
        for (i, t) in targets.iter().enumerate() {
            by_host
                .entry(t.target.hostname.to_ascii_lowercase())
                .or_insert(i);
        }
        Self {
            by_host,
            cluster_domain,
        }
    }

    /// The target `host` names for a rule in namespace `ns`.
    pub(crate) fn resolve(&self, host: &str, ns: &str) -> Option<usize> {
        let host = host.trim();
        let host = host.strip_suffix('.').unwrap_or(host).to_ascii_lowercase();
        if host.is_empty() || host.contains('*') {
            return None;
        }
        if let Some(&i) = self.by_host.get(&host) {
            return Some(i);
        }
        let domain = self.cluster_domain;
        let fqdn = match host.split('.').count() {
            1 => format!("{host}.{ns}.svc.{domain}"),
            2 => format!("{host}.svc.{domain}"),
            3 if host.ends_with(".svc") => format!("{host}.{domain}"),
            _ => return None,
        };
        self.by_host.get(&fqdn).copied()
    }
}
