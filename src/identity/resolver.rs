//! Certificate resolvers that read the current material per handshake, so a rotated
//! certificate is used by the next handshake while open connections keep theirs.

use std::sync::Arc;

use arc_swap::ArcSwap;
use rustls::client::ResolvesClientCert;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::SignatureScheme;

use super::cert_dir::CertMaterial;

/// Presents the waypoint's current certificate as an HBONE server.
#[derive(Debug)]
pub(crate) struct CurrentServerCert(pub(crate) Arc<ArcSwap<CertMaterial>>);

impl ResolvesServerCert for CurrentServerCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.load().certified_key().clone())
    }
}

/// Presents the waypoint's current certificate as an HBONE client.
#[derive(Debug)]
pub(crate) struct CurrentClientCert(pub(crate) Arc<ArcSwap<CertMaterial>>);

impl ResolvesClientCert for CurrentClientCert {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _sigschemes: &[SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        Some(self.0.load().certified_key().clone())
    }

    fn has_certs(&self) -> bool {
        true
    }
}
