//! Test certificate authority: mints a CA and SPIFFE leaf certificates with `rcgen` and
//! writes them under Istio's file names; [`FakeCa`] serves it as Istio's CA over gRPC. For
//! unit tests, `tests/` and benches.

mod fake_ca;

pub use fake_ca::{CaRequestRecord, FakeCa};

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use rcgen::{
    BasicConstraints, Certificate, CertificateParams, CertificateSigningRequestParams,
    DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose, SanType,
    SerialNumber,
};

use crate::identity::{CERT_CHAIN_FILE, KEY_FILE, ROOT_CERT_FILE};

/// A self-signed mesh root that issues workload certificates.
///
/// ```ignore
/// let ca = TestCa::new("cluster.local");
/// ca.write_cert_dir(dir.path(), "spiffe://cluster.local/ns/a/sa/waypoint");
/// ```
pub struct TestCa {
    trust_domain: String,
    cert: Certificate,
    key: KeyPair,
    next_serial: AtomicU64,
}

/// A leaf certificate issued by a [`TestCa`].
#[derive(Debug, Clone)]
pub struct IssuedCert {
    /// The leaf certificate, PEM.
    pub cert_pem: String,
    /// The leaf's private key, PKCS#8 PEM.
    pub key_pem: String,
    /// The leaf certificate, DER (compare with what a peer presented).
    pub cert_der: Vec<u8>,
}

impl TestCa {
    /// A fresh CA for `trust_domain` (the trust domain is only used in its name).
    pub fn new(trust_domain: &str) -> Self {
        let key = KeyPair::generate().expect("ring can generate a P-256 key");
        let mut params =
            CertificateParams::new(Vec::<String>::new()).expect("empty SAN list is valid");
        params
            .distinguished_name
            .push(DnType::CommonName, format!("test root for {trust_domain}"));
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let cert = params.self_signed(&key).expect("self-signing a CA works");
        TestCa {
            trust_domain: trust_domain.to_owned(),
            cert,
            key,
            next_serial: AtomicU64::new(1000),
        }
    }

    /// The trust domain this CA was made for.
    pub fn trust_domain(&self) -> &str {
        &self.trust_domain
    }

    /// The root certificate, PEM (the content of `root-cert.pem`).
    pub fn root_pem(&self) -> String {
        self.cert.pem()
    }

    /// Issues a leaf with URI SAN `spiffe_id` (any string: tests pass bad ones on purpose),
    /// valid for a day, usable for client and server auth, with a fresh serial number.
    pub fn issue(&self, spiffe_id: &str) -> IssuedCert {
        self.issue_valid_for(spiffe_id, time::Duration::days(1))
    }

    /// As [`TestCa::issue`], valid from an hour ago for `validity`.
    pub fn issue_valid_for(&self, spiffe_id: &str, validity: time::Duration) -> IssuedCert {
        let key = KeyPair::generate().expect("ring can generate a P-256 key");
        let mut params =
            CertificateParams::new(Vec::<String>::new()).expect("empty SAN list is valid");
        params.subject_alt_names = vec![SanType::URI(
            spiffe_id
                .try_into()
                .expect("test SPIFFE ids are ASCII (IA5String)"),
        )];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        let now = time::OffsetDateTime::now_utc();
        params.not_before = now - time::Duration::hours(1);
        params.not_after = now + validity;
        params.serial_number = Some(SerialNumber::from(
            self.next_serial.fetch_add(1, Ordering::Relaxed),
        ));
        let cert = params
            .signed_by(&key, &self.cert, &self.key)
            .expect("signing a leaf works");
        IssuedCert {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            cert_der: cert.der().to_vec(),
        }
    }

    /// Signs a PEM certificate request as Istio's CA does for a workload: the CSR's key and
    /// SANs, an empty subject, client and server auth, valid from now for `validity`, a
    /// fresh serial. Returns the leaf, PEM; fails if the CSR does not parse or its signature
    /// is wrong.
    pub fn sign_csr(&self, csr_pem: &str, validity: time::Duration) -> Result<String, String> {
        let mut csr =
            CertificateSigningRequestParams::from_pem(csr_pem).map_err(|e| e.to_string())?;
        csr.params.distinguished_name = DistinguishedName::new();
        csr.params.is_ca = IsCa::ExplicitNoCa;
        csr.params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        csr.params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        let now = time::OffsetDateTime::now_utc();
        csr.params.not_before = now;
        csr.params.not_after = now + validity;
        csr.params.serial_number = Some(SerialNumber::from(
            self.next_serial.fetch_add(1, Ordering::Relaxed),
        ));
        let cert = csr
            .signed_by(&self.cert, &self.key)
            .map_err(|e| e.to_string())?;
        Ok(cert.pem())
    }

    /// Issues a TLS server certificate for `names` (DNS names, or IP addresses), valid for a
    /// day: what a fake control plane presents.
    pub fn issue_server_cert(&self, names: &[&str]) -> IssuedCert {
        let key = KeyPair::generate().expect("ring can generate a P-256 key");
        let mut params =
            CertificateParams::new(Vec::<String>::new()).expect("empty SAN list is valid");
        params.subject_alt_names = names
            .iter()
            .map(|n| match n.parse::<std::net::IpAddr>() {
                Ok(ip) => SanType::IpAddress(ip),
                Err(_) => SanType::DnsName(
                    (*n).try_into()
                        .expect("test server names are valid DNS names"),
                ),
            })
            .collect();
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let now = time::OffsetDateTime::now_utc();
        params.not_before = now - time::Duration::hours(1);
        params.not_after = now + time::Duration::days(1);
        params.serial_number = Some(SerialNumber::from(
            self.next_serial.fetch_add(1, Ordering::Relaxed),
        ));
        let cert = params
            .signed_by(&key, &self.cert, &self.key)
            .expect("signing a server certificate works");
        IssuedCert {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            cert_der: cert.der().to_vec(),
        }
    }

    /// Issues a leaf for `spiffe_id` and writes `cert-chain.pem`, `key.pem` and
    /// `root-cert.pem` into `dir` (which must exist), replacing any previous files.
    pub fn write_cert_dir(&self, dir: &Path, spiffe_id: &str) -> IssuedCert {
        let issued = self.issue(spiffe_id);
        issued.write_cert_dir(dir, &self.root_pem());
        issued
    }
}

impl IssuedCert {
    /// Writes this leaf, its key and `root_pem` under Istio's names into `dir`.
    ///
    /// Each file is written to a temporary name and renamed, so a watcher never reads a
    /// half-written file.
    pub fn write_cert_dir(&self, dir: &Path, root_pem: &str) {
        for (name, content) in [
            (KEY_FILE, &self.key_pem),
            (CERT_CHAIN_FILE, &self.cert_pem),
            (ROOT_CERT_FILE, &root_pem.to_owned()),
        ] {
            let tmp = dir.join(format!(".{name}.tmp"));
            std::fs::write(&tmp, content).expect("test cert dir is writable");
            std::fs::rename(&tmp, dir.join(name)).expect("rename within a directory works");
        }
    }
}
