//! Workload identity: SPIFFE ids, the certificate directory (`cert-chain.pem`, `key.pem`,
//! `root-cert.pem`), rotation, and the rustls configs HBONE uses on both sides.
//!
//! Owns everything about certificates; does not own sockets or HTTP/2 (see `hbone`).

mod cert_dir;
mod error;
pub mod istio_ca;
mod provider;
mod resolver;
mod spiffe;
mod store;
mod verify;
mod watch;
mod x509;

#[cfg(test)]
mod tests;

pub use cert_dir::{CertDir, CertMaterial, CERT_CHAIN_FILE, KEY_FILE, ROOT_CERT_FILE};
pub use error::IdentityError;
#[cfg(any(test, feature = "testing"))]
pub(crate) use provider::crypto_provider;
pub use spiffe::{Identity, IdentityParseError};
pub use store::IdentityStore;
pub use verify::{handshake_failure_reason, peer_identity, PeerCertError};
pub use watch::CertWatcher;
