//! Peer certificate verification for HBONE: chain to the mesh roots, then a SPIFFE id in our
//! trust domain. Also extracts the peer identity after a handshake.
//!
//! Neither verifier checks DNS names: ztunnel and workload certificates carry SPIFFE URI SANs
//! only, so the identity check replaces the name check.

use std::sync::Arc;

use arc_swap::ArcSwap;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::ParsedCertificate;
use rustls::{
    CertificateError, CommonState, DigitallySignedStruct, DistinguishedName, OtherError,
    SignatureScheme,
};
use thiserror::Error;
use tracing::{debug, info};

use super::cert_dir::CertMaterial;
use super::provider::crypto_provider;
use super::spiffe::Identity;
use super::x509::spiffe_identity;

/// Why a chain-valid peer certificate was still refused.
///
/// Carried inside `rustls::Error::InvalidCertificate(CertificateError::Other(..))`, so the
/// handshake error that reaches the accept loop's log says it in words.
#[derive(Debug, Error)]
pub enum PeerCertError {
    /// The certificate has no parseable `spiffe://…/ns/…/sa/…` URI SAN.
    #[error("peer certificate has no SPIFFE identity: {0}")]
    NoSpiffeId(String),
    /// The SPIFFE id belongs to another trust domain.
    #[error("trust domain mismatch: peer {peer} is not in trust domain {expected}")]
    TrustDomain {
        /// The peer's identity.
        peer: Identity,
        /// Our trust domain.
        expected: String,
    },
}

fn refuse(e: PeerCertError) -> rustls::Error {
    rustls::Error::InvalidCertificate(CertificateError::Other(OtherError(Arc::new(e))))
}

/// Checks that `end_entity` names a SPIFFE identity in `trust_domain`.
fn check_identity(
    end_entity: &CertificateDer<'_>,
    trust_domain: &str,
) -> Result<Identity, PeerCertError> {
    let peer = spiffe_identity(end_entity).map_err(PeerCertError::NoSpiffeId)?;
    if peer.trust_domain() != trust_domain {
        return Err(PeerCertError::TrustDomain {
            peer,
            expected: trust_domain.to_owned(),
        });
    }
    Ok(peer)
}

/// The handshake-signature methods both verifier traits require: identical
/// for client and server side (the ring provider's algorithms).
macro_rules! handshake_signature_methods {
    () => {
        fn verify_tls12_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            verify_tls12_signature(
                message,
                cert,
                dss,
                &crypto_provider().signature_verification_algorithms,
            )
        }

        fn verify_tls13_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            verify_tls13_signature(
                message,
                cert,
                dss,
                &crypto_provider().signature_verification_algorithms,
            )
        }

        fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
            crypto_provider()
                .signature_verification_algorithms
                .supported_schemes()
        }
    };
}

/// Verifies HBONE clients (ztunnels presenting workload certs) on the inbound listener.
///
/// Reads the current roots per handshake, so a reload applies to the next handshake.
#[derive(Debug)]
pub(crate) struct SpiffeClientVerifier {
    pub(crate) material: Arc<ArcSwap<CertMaterial>>,
    pub(crate) trust_domain: String,
}

impl ClientCertVerifier for SpiffeClientVerifier {
    fn client_auth_mandatory(&self) -> bool {
        true
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        // The hints would have to borrow from the swappable material; ztunnel sends its
        // certificate without hints, so we send none.
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let material = self.material.load();
        if let Err(e) =
            material
                .webpki_client_verifier()
                .verify_client_cert(end_entity, intermediates, now)
        {
            info!(error = %e, "client certificate not trusted");
            return Err(e);
        }
        match check_identity(end_entity, &self.trust_domain) {
            Ok(peer) => {
                debug!(%peer, "client certificate accepted");
                Ok(ClientCertVerified::assertion())
            }
            Err(e) => {
                info!(error = %e, "client certificate refused");
                Err(refuse(e))
            }
        }
    }

    handshake_signature_methods!();
}

/// Verifies the destination ztunnel's server certificate on HBONE outbound.
#[derive(Debug)]
pub(crate) struct SpiffeServerVerifier {
    pub(crate) material: Arc<ArcSwap<CertMaterial>>,
    pub(crate) trust_domain: String,
}

impl ServerCertVerifier for SpiffeServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let material = self.material.load();
        let cert = ParsedCertificate::try_from(end_entity)?;
        if let Err(e) = rustls::client::verify_server_cert_signed_by_trust_anchor(
            &cert,
            material.roots(),
            intermediates,
            now,
            crypto_provider().signature_verification_algorithms.all,
        ) {
            info!(error = %e, "server certificate not trusted");
            return Err(e);
        }
        match check_identity(end_entity, &self.trust_domain) {
            Ok(_) => Ok(ServerCertVerified::assertion()),
            Err(e) => {
                info!(error = %e, "server certificate refused");
                Err(refuse(e))
            }
        }
    }

    handshake_signature_methods!();
}

/// The peer's SPIFFE identity after a completed handshake (client or server side).
///
/// `None` when the peer sent no certificate or its leaf has no Istio SPIFFE URI SAN; with
/// the verifiers above that cannot happen on an established HBONE connection.
pub fn peer_identity(conn: &CommonState) -> Option<Identity> {
    let leaf = conn.peer_certificates()?.first()?;
    spiffe_identity(leaf).ok()
}

/// A short, stable phrase for why a handshake failed, for logs and metrics labels.
///
/// Distinguishes the refusals an operator acts on differently: an untrusted CA (wrong mesh
/// root), a foreign trust domain, a missing client certificate, an expired one.
pub fn handshake_failure_reason(err: &rustls::Error) -> &'static str {
    use rustls::Error as E;
    match err {
        E::NoCertificatesPresented => "no client certificate",
        E::InvalidCertificate(CertificateError::Other(other)) => {
            match other.0.downcast_ref::<PeerCertError>() {
                Some(PeerCertError::TrustDomain { .. }) => "trust domain mismatch",
                Some(PeerCertError::NoSpiffeId(_)) => "certificate has no SPIFFE id",
                None => "certificate refused",
            }
        }
        E::InvalidCertificate(
            CertificateError::Expired | CertificateError::ExpiredContext { .. },
        ) => "certificate expired",
        E::InvalidCertificate(
            CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. },
        ) => "certificate not valid yet",
        E::InvalidCertificate(_) => "certificate not trusted",
        E::NoApplicationProtocol => "ALPN h2 not offered",
        E::PeerIncompatible(_) => "TLS version or cipher suite not supported (TLS 1.3 only)",
        E::AlertReceived(_) => "peer sent a TLS alert",
        _ => "TLS handshake failed",
    }
}
