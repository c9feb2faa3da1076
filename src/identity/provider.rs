//! The one crypto provider every HBONE TLS config uses.
//!
//! rustls would pick aws-lc-rs by default if another crate enabled it; we always pass ring
//! explicitly. The cipher suites are ztunnel's: TLS 1.3 with AES-256-GCM or AES-128-GCM.

use std::sync::{Arc, OnceLock};

use rustls::crypto::{ring, CryptoProvider};

/// ring, restricted to the TLS 1.3 AES-GCM suites ztunnel offers.
pub(crate) fn crypto_provider() -> Arc<CryptoProvider> {
    static PROVIDER: OnceLock<Arc<CryptoProvider>> = OnceLock::new();
    PROVIDER
        .get_or_init(|| {
            let mut provider = ring::default_provider();
            provider.cipher_suites = vec![
                ring::cipher_suite::TLS13_AES_256_GCM_SHA384,
                ring::cipher_suite::TLS13_AES_128_GCM_SHA256,
            ];
            Arc::new(provider)
        })
        .clone()
}
