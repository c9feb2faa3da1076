//! The few X.509 facts we read from certificates: URI SANs, expiry, serial.
//!
//! rustls verifies chains but does not expose SANs, so this small wrapper over `x509-parser`
//! is the one place that decodes certificate fields.

use std::time::{Duration, SystemTime};

use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};

use super::spiffe::Identity;

/// The fields of a leaf certificate the identity module needs.
#[derive(Debug, Clone)]
pub(crate) struct LeafFacts {
    /// All URI SANs, in certificate order.
    pub uris: Vec<String>,
    /// Start of the validity period.
    pub not_before: SystemTime,
    /// End of the validity period.
    pub not_after: SystemTime,
    /// The raw serial number bytes (big-endian, as encoded).
    pub serial: Vec<u8>,
}

/// Decodes the fields we need from a DER certificate.
pub(crate) fn leaf_facts(der: &[u8]) -> Result<LeafFacts, String> {
    let (_, cert) = X509Certificate::from_der(der).map_err(|e| e.to_string())?;
    let uris = match cert.subject_alternative_name().map_err(|e| e.to_string())? {
        Some(san) => san
            .value
            .general_names
            .iter()
            .filter_map(|n| match n {
                GeneralName::URI(u) => Some((*u).to_owned()),
                _ => None,
            })
            .collect(),
        None => Vec::new(),
    };
    // Certificates before 1970 do not occur in practice; clamp rather than fail.
    let at = |ts: i64| SystemTime::UNIX_EPOCH + Duration::from_secs(u64::try_from(ts).unwrap_or(0));
    Ok(LeafFacts {
        uris,
        not_before: at(cert.validity().not_before.timestamp()),
        not_after: at(cert.validity().not_after.timestamp()),
        serial: cert.raw_serial().to_vec(),
    })
}

/// The single SPIFFE identity in a certificate's URI SANs.
///
/// Istio certificates carry exactly one `spiffe://` URI; we take the first one that parses
/// as an Istio identity and report why when none does.
pub(crate) fn spiffe_identity(der: &[u8]) -> Result<Identity, String> {
    let facts = leaf_facts(der)?;
    let mut last_err = None;
    for uri in facts.uris.iter().filter(|u| u.starts_with("spiffe://")) {
        match uri.parse::<Identity>() {
            Ok(id) => return Ok(id),
            Err(e) => last_err = Some(e.to_string()),
        }
    }
    Err(last_err.unwrap_or_else(|| "no spiffe:// URI SAN".to_owned()))
}
