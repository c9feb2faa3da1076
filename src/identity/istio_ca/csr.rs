//! A fresh key pair and a PKCS#10 request for one SPIFFE identity, shaped like istio-agent's:
//! ECDSA P-256 with SHA-256, the SPIFFE id as the only (URI) SAN, an empty subject.

use rcgen::{CertificateParams, DistinguishedName, KeyPair, SanType};

use super::super::spiffe::Identity;
use super::error::CaError;

/// A private key and the CSR signed with it, both PEM.
pub(crate) struct KeyAndCsr {
    /// PKCS#8 private key, PEM (what `key.pem` will hold).
    pub key_pem: String,
    /// The certificate request, PEM (what the CA receives).
    pub csr_pem: String,
}

/// Generates a new P-256 key and a CSR for `identity`. A new key per certificate, as Istio
/// does, so a renewal also rotates the key.
pub(crate) fn generate(identity: &Identity) -> Result<KeyAndCsr, CaError> {
    let key = KeyPair::generate().map_err(|e| CaError::Csr(e.to_string()))?;
    let mut params = CertificateParams::default();
    // rcgen fills a placeholder common name by default; Istio's CSRs carry none (the SAN is
    // the identity).
    params.distinguished_name = DistinguishedName::new();
    let uri = identity
        .to_string()
        .try_into()
        .map_err(|e: rcgen::Error| CaError::Csr(e.to_string()))?;
    params.subject_alt_names = vec![SanType::URI(uri)];
    let csr = params
        .serialize_request(&key)
        .map_err(|e| CaError::Csr(e.to_string()))?;
    Ok(KeyAndCsr {
        key_pem: key.serialize_pem(),
        csr_pem: csr.pem().map_err(|e| CaError::Csr(e.to_string()))?,
    })
}

#[cfg(test)]
mod tests {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::CertificateSigningRequestDer;
    use x509_parser::prelude::{FromDer, GeneralName, ParsedExtension, X509CertificationRequest};

    use super::*;

    #[test]
    fn csr_carries_the_spiffe_id_as_its_only_san_and_a_p256_key() {
        let id: Identity = "spiffe://cluster.local/ns/shop/sa/waypoint"
            .parse()
            .unwrap();
        let out = generate(&id).unwrap();
        assert!(out.key_pem.starts_with("-----BEGIN PRIVATE KEY-----"));
        let der = CertificateSigningRequestDer::from_pem_slice(out.csr_pem.as_bytes()).unwrap();
        let (_, csr) = X509CertificationRequest::from_der(der.as_ref()).unwrap();
        csr.verify_signature()
            .expect("self-signed with the new key");
        assert_eq!(
            csr.certification_request_info.subject.iter().count(),
            0,
            "empty subject"
        );
        // id-ecPublicKey with the prime256v1 curve.
        let spki = &csr.certification_request_info.subject_pki;
        assert_eq!(spki.algorithm.algorithm.to_id_string(), "1.2.840.10045.2.1");
        let curve = spki
            .algorithm
            .parameters
            .as_ref()
            .unwrap()
            .as_oid()
            .unwrap();
        assert_eq!(curve.to_id_string(), "1.2.840.10045.3.1.7");
        let sans: Vec<String> = csr
            .requested_extensions()
            .into_iter()
            .flatten()
            .filter_map(|ext| match ext {
                ParsedExtension::SubjectAlternativeName(san) => Some(san),
                _ => None,
            })
            .flat_map(|san| san.general_names.iter())
            .map(|name| match name {
                GeneralName::URI(u) => format!("URI:{u}"),
                other => format!("{other:?}"),
            })
            .collect();
        assert_eq!(sans, ["URI:spiffe://cluster.local/ns/shop/sa/waypoint"]);
    }

    #[test]
    fn every_call_makes_a_new_key() {
        let id: Identity = "spiffe://cluster.local/ns/a/sa/b".parse().unwrap();
        assert_ne!(
            generate(&id).unwrap().key_pem,
            generate(&id).unwrap().key_pem
        );
    }
}
