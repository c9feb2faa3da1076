//! Certificates from Istio's CA: the waypoint asks istiod for its SPIFFE certificate with a
//! CSR (`IstioCertificateService/CreateCertificate`, authenticated by the projected
//! service-account token), writes the result into the certificate directory under Istio's
//! file names, and renews it at ~80 % of its lifetime.
//!
//! Owns the gRPC call, the key pair and CSR, writing the directory and the renewal schedule.
//! Does not own serving the certificate: [`IdentityStore`] loads the directory this module
//! writes, exactly as it loads a directory someone else fills, so HBONE does not know where
//! its certificate came from.

mod client;
mod config;
mod csr;
mod error;
mod files;
mod messages;
mod renewal;

use std::sync::Arc;

pub use client::{CaClient, IssuedCertificate, Validity};
pub use config::{
    CaAddress, IstioCaConfig, DEFAULT_CERT_LIFETIME, DEFAULT_CLUSTER_ID, DEFAULT_ROOT_CERT,
    DEFAULT_TOKEN,
};
pub use error::CaError;
pub use files::provision;
pub use messages::{
    IstioCertificateRequest, IstioCertificateResponse, CREATE_CERTIFICATE_PATH,
    ISTIO_CERTIFICATE_SERVICE,
};
pub use renewal::{renewal_delay, retry_delay, CertRenewer};

use super::store::IdentityStore;

/// Istio's default directory for workload certificates in a pod
/// (`/var/run/secrets/workload-spiffe-credentials`); used with `--ca-address` when no
/// `--cert-dir` is given.
pub const DEFAULT_CA_CERT_DIR: &str = "/var/run/secrets/workload-spiffe-credentials";

impl IdentityStore {
    /// Starts renewing this store's certificate from Istio's CA; `current` is the validity of
    /// the certificate [`provision`] just wrote. Each renewal writes the directory and then
    /// reloads the store, so new handshakes use the new certificate while open connections
    /// keep theirs. Dropping the returned guard stops renewing.
    pub fn renew_from_ca(self: &Arc<Self>, client: CaClient, current: Validity) -> CertRenewer {
        renewal::spawn(client, self.clone(), current)
    }
}
