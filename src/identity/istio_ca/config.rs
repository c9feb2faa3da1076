//! What the CA client needs to know: where istiod is, what to trust, which token to send and
//! what to ask for. Fixed for the life of the process (part of `Settings`).

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use super::error::CaError;

/// Istio's default mount of the `istio-ca-root-cert` ConfigMap.
pub const DEFAULT_ROOT_CERT: &str = "/var/run/secrets/istio/root-cert.pem";
/// Istio's default projected service-account token (audience `istio-ca`).
pub const DEFAULT_TOKEN: &str = "/var/run/secrets/tokens/istio-token";
/// Istio's default cluster name (`values.global.multiCluster.clusterName`).
pub const DEFAULT_CLUSTER_ID: &str = "Kubernetes";
/// Istio's default workload certificate lifetime (`SECRET_TTL`).
pub const DEFAULT_CERT_LIFETIME: Duration = Duration::from_secs(24 * 3600);

/// The address of Istio's CA, `HOST:PORT` (istiod serves it on 15012).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaAddress {
    host: String,
    port: u16,
}

impl CaAddress {
    /// The host as written (a DNS name, an IPv4 address or a bracketed IPv6 address).
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The name to verify the CA's certificate against when none is configured: the host,
    /// without IPv6 brackets.
    pub fn default_server_name(&self) -> &str {
        self.host.trim_start_matches('[').trim_end_matches(']')
    }

    /// The `https://` URI tonic connects to.
    pub(crate) fn uri(&self) -> String {
        format!("https://{self}")
    }
}

impl FromStr for CaAddress {
    type Err = CaError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || CaError::BadAddress(s.to_owned());
        let authority: http::uri::Authority = s.parse().map_err(|_| bad())?;
        let port = authority.port_u16().ok_or_else(bad)?;
        if authority.host().is_empty() || authority.as_str().contains('@') {
            return Err(bad());
        }
        Ok(CaAddress {
            host: authority.host().to_owned(),
            port,
        })
    }
}

impl fmt::Display for CaAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.host, self.port)
    }
}

/// How to reach Istio's CA and what to ask it for (`waypoint run --ca-address …`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IstioCaConfig {
    /// istiod's CA endpoint, e.g. `istiod.istio-system.svc:15012`.
    pub address: CaAddress,
    /// Name the CA's certificate must carry; default: the host of `address`.
    pub server_name: Option<String>,
    /// PEM bundle the CA's certificate must chain to, and the mesh roots written to
    /// `root-cert.pem`. Default [`DEFAULT_ROOT_CERT`].
    pub root_cert: PathBuf,
    /// Projected service-account token sent as `authorization: Bearer …`; re-read on every
    /// request because the kubelet rotates it. Default [`DEFAULT_TOKEN`].
    pub token: PathBuf,
    /// The waypoint's Kubernetes service account; with the trust domain and namespace it
    /// makes the SPIFFE id requested in the CSR.
    pub service_account: String,
    /// Sent as the `clusterid` header, as istio-agent and ztunnel do: istiod uses it to pick
    /// the cluster whose API server reviews the token. Default [`DEFAULT_CLUSTER_ID`].
    pub cluster_id: String,
    /// Requested certificate lifetime; the CA may issue a shorter one. Default 24 h.
    pub cert_lifetime: Duration,
}

impl IstioCaConfig {
    /// A config for `address` and `service_account` with every other field at its default.
    pub fn new(address: CaAddress, service_account: impl Into<String>) -> Self {
        IstioCaConfig {
            address,
            server_name: None,
            root_cert: PathBuf::from(DEFAULT_ROOT_CERT),
            token: PathBuf::from(DEFAULT_TOKEN),
            service_account: service_account.into(),
            cluster_id: DEFAULT_CLUSTER_ID.to_owned(),
            cert_lifetime: DEFAULT_CERT_LIFETIME,
        }
    }

    /// The name the CA's TLS certificate is verified against.
    pub fn server_name(&self) -> &str {
        self.server_name
            .as_deref()
            .unwrap_or_else(|| self.address.default_server_name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_parse_and_print() {
        let cases = [
            (
                "istiod.istio-system.svc:15012",
                "istiod.istio-system.svc",
                15012,
            ),
            ("127.0.0.1:1", "127.0.0.1", 1),
            ("[::1]:15012", "::1", 15012),
        ];
        for (input, name, port) in cases {
            let addr: CaAddress = input.parse().unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(addr.default_server_name(), name, "{input}");
            assert_eq!(addr.port(), port, "{input}");
            assert_eq!(addr.to_string(), input, "{input}");
        }
    }

    #[test]
    fn addresses_without_a_port_or_with_a_scheme_are_refused() {
        for input in [
            "istiod",
            "https://istiod:15012",
            "istiod:http",
            "",
            "u@istiod:1",
        ] {
            assert!(input.parse::<CaAddress>().is_err(), "{input:?} accepted");
        }
    }

    #[test]
    fn server_name_defaults_to_the_host() {
        let mut cfg = IstioCaConfig::new("istiod.istio-system.svc:15012".parse().unwrap(), "wp");
        assert_eq!(cfg.server_name(), "istiod.istio-system.svc");
        cfg.server_name = Some("istiod.istio-system.svc.cluster.local".into());
        assert_eq!(cfg.server_name(), "istiod.istio-system.svc.cluster.local");
    }
}
