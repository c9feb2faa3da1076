//! One `CreateCertificate` call to Istio's CA: a fresh key and CSR, the bearer token, TLS to
//! istiod trusting the mesh root, and checks on what comes back.
//!
//! Each call opens its own connection. Calls are rare (once per certificate lifetime, plus
//! retries), and a new connection picks up a rotated root from the ConfigMap mount.

use std::time::{Duration, SystemTime};

use http::uri::PathAndQuery;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use tonic::metadata::MetadataValue;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};
use tonic_prost::ProstCodec;
use tracing::debug;

use super::super::spiffe::Identity;
use super::super::x509::leaf_facts;
use super::config::{CaAddress, IstioCaConfig};
use super::csr;
use super::error::{chain, hint_for, CaError};
use super::messages::{IstioCertificateRequest, IstioCertificateResponse, CREATE_CERTIFICATE_PATH};

/// TCP + TLS connect timeout to the CA.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Deadline of one `CreateCertificate` call, connection included.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// A client for Istio's CA, requesting certificates for one identity.
#[derive(Debug, Clone)]
pub struct CaClient {
    config: IstioCaConfig,
    identity: Identity,
}

/// A certificate's validity period (notBefore, notAfter); renewal is scheduled from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Validity {
    /// Start of validity.
    pub not_before: SystemTime,
    /// End of validity.
    pub not_after: SystemTime,
}

/// A certificate issued by the CA, with the key it was requested for.
#[derive(Debug, Clone)]
pub struct IssuedCertificate {
    /// The private key, PKCS#8 PEM.
    pub key_pem: String,
    /// The leaf and its intermediates, PEM each, leaf first; the CA's root (the chain's
    /// last element) is left out, since peers trust the roots of `root-cert.pem`.
    pub chain: Vec<String>,
    /// The leaf's serial number bytes.
    pub serial: Vec<u8>,
    /// The leaf's validity period.
    pub validity: Validity,
}

impl IssuedCertificate {
    /// The content of `cert-chain.pem`.
    pub fn chain_pem(&self) -> String {
        let mut out = String::new();
        for pem in &self.chain {
            out.push_str(pem.trim_end());
            out.push('\n');
        }
        out
    }
}

impl CaClient {
    /// A client requesting `spiffe://<trust_domain>/ns/<namespace>/sa/<service account>`.
    pub fn new(
        config: IstioCaConfig,
        trust_domain: &str,
        namespace: &str,
    ) -> Result<Self, CaError> {
        let identity = Identity::new(trust_domain, namespace, &config.service_account)?;
        Ok(CaClient { config, identity })
    }

    /// The identity this client requests.
    pub fn identity(&self) -> &Identity {
        &self.identity
    }

    /// The CA's address.
    pub fn address(&self) -> &CaAddress {
        &self.config.address
    }

    /// Reads the mesh root bundle from the `istio-ca-root-cert` mount.
    ///
    /// Fails unless it holds at least one well-formed PEM certificate, so an empty or
    /// half-written mount is reported as such rather than as a TLS failure.
    pub(crate) fn read_root_pem(&self) -> Result<String, CaError> {
        let file = &self.config.root_cert;
        let pem = std::fs::read_to_string(file).map_err(|source| CaError::ReadRoot {
            file: file.clone(),
            source,
        })?;
        let bad = |reason: String| CaError::BadRoot {
            file: file.clone(),
            reason,
        };
        let roots = CertificateDer::pem_slice_iter(pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| bad(e.to_string()))?;
        if roots.is_empty() {
            return Err(bad("no certificate in it".into()));
        }
        Ok(pem)
    }

    /// Reads the projected token; the kubelet rotates it, so it is read for every call.
    fn read_bearer(&self) -> Result<MetadataValue<tonic::metadata::Ascii>, CaError> {
        let file = &self.config.token;
        let bad = |reason: String| CaError::ReadToken {
            file: file.clone(),
            reason,
        };
        let token = std::fs::read_to_string(file).map_err(|e| bad(e.to_string()))?;
        let token = token.trim();
        if token.is_empty() {
            return Err(bad("the file is empty".into()));
        }
        format!("Bearer {token}")
            .parse()
            .map_err(|_| bad("the token is not printable ASCII".into()))
    }

    /// Requests a new certificate: generates a key and CSR, calls `CreateCertificate`, and
    /// checks that the leaf names the requested identity.
    pub async fn fetch_certificate(&self) -> Result<IssuedCertificate, CaError> {
        // Phase 1: everything local, so a missing mount fails before any network I/O.
        let root_pem = self.read_root_pem()?;
        let bearer = self.read_bearer()?;
        let cluster_id = self
            .config
            .cluster_id
            .parse()
            .map_err(|_| CaError::BadClusterId(self.config.cluster_id.clone()))?;
        let key_csr = csr::generate(&self.identity)?;

        // Phase 2: the call.
        let channel = self.connect(&root_pem).await?;
        let mut request = tonic::Request::new(IstioCertificateRequest {
            csr: key_csr.csr_pem,
            validity_duration: i64::try_from(self.config.cert_lifetime.as_secs())
                .unwrap_or(i64::MAX),
        });
        request.metadata_mut().insert("authorization", bearer);
        request.metadata_mut().insert("clusterid", cluster_id);
        let mut grpc = tonic::client::Grpc::new(channel);
        grpc.ready().await.map_err(|e| self.connect_error(&e))?;
        let response: IstioCertificateResponse = grpc
            .unary(
                request,
                PathAndQuery::from_static(CREATE_CERTIFICATE_PATH),
                ProstCodec::default(),
            )
            .await
            .map_err(|status| CaError::Refused {
                address: self.address().to_string(),
                code: status.code(),
                message: status.message().to_owned(),
                hint: hint_for(status.code()),
            })?
            .into_inner();

        // Phase 3: check the answer.
        self.check(response, key_csr.key_pem)
    }

    async fn connect(&self, root_pem: &str) -> Result<Channel, CaError> {
        let tls_err = |e: &dyn std::error::Error| CaError::Tls {
            address: self.address().to_string(),
            reason: chain(e),
        };
        let tls = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(root_pem))
            .domain_name(self.config.server_name());
        let endpoint = Endpoint::from_shared(self.address().uri())
            .map_err(|e| tls_err(&e))?
            .tls_config(tls)
            .map_err(|e| tls_err(&e))?
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(CALL_TIMEOUT);
        debug!(ca = %self.address(), server_name = self.config.server_name(), "connecting to the CA");
        endpoint.connect().await.map_err(|e| self.connect_error(&e))
    }

    fn connect_error(&self, e: &dyn std::error::Error) -> CaError {
        CaError::Connect {
            address: self.address().to_string(),
            server_name: self.config.server_name().to_owned(),
            reason: chain(e),
        }
    }

    fn check(
        &self,
        response: IstioCertificateResponse,
        key_pem: String,
    ) -> Result<IssuedCertificate, CaError> {
        let address = self.address().to_string();
        let mut chain = response.cert_chain;
        let leaf_pem = chain.first().ok_or_else(|| CaError::EmptyChain {
            address: address.clone(),
        })?;
        let bad = |reason: String| CaError::BadCertificate {
            address: address.clone(),
            reason,
        };
        let leaf = CertificateDer::from_pem_slice(leaf_pem.as_bytes())
            .map_err(|e| bad(format!("leaf is not PEM: {e}")))?;
        let facts = leaf_facts(&leaf).map_err(bad)?;
        let issued: Vec<Identity> = facts
            .uris
            .iter()
            .filter_map(|u| u.parse::<Identity>().ok())
            .collect();
        if !issued.contains(&self.identity) {
            return Err(CaError::WrongIdentity {
                address,
                want: self.identity.to_string(),
                got: if facts.uris.is_empty() {
                    "no URI SAN".to_owned()
                } else {
                    facts.uris.join(", ")
                },
            });
        }
        // Per ca.proto the root is the last element; keep it out of cert-chain.pem.
        if chain.len() > 1 {
            chain.pop();
        }
        Ok(IssuedCertificate {
            key_pem,
            chain,
            serial: facts.serial,
            validity: Validity {
                not_before: facts.not_before,
                not_after: facts.not_after,
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_helpers::ca::TestCa;

    const WAYPOINT: &str = "spiffe://cluster.local/ns/shop/sa/waypoint";

    fn client(token_dir: &std::path::Path) -> CaClient {
        let mut cfg = IstioCaConfig::new("127.0.0.1:15012".parse().unwrap(), "waypoint");
        cfg.token = token_dir.join("istio-token");
        CaClient::new(cfg, "cluster.local", "shop").unwrap()
    }

    #[test]
    fn the_identity_comes_from_trust_domain_namespace_and_service_account() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(client(dir.path()).identity().to_string(), WAYPOINT);
        let cfg = IstioCaConfig::new("istiod:15012".parse().unwrap(), "bad/sa");
        assert!(matches!(
            CaClient::new(cfg, "cluster.local", "shop"),
            Err(CaError::Identity(_))
        ));
    }

    #[test]
    fn the_chain_keeps_leaf_and_intermediates_and_drops_the_root() {
        let ca = TestCa::new("cluster.local");
        let leaf = ca.issue(WAYPOINT);
        let dir = tempfile::tempdir().unwrap();
        let issued = client(dir.path())
            .check(
                IstioCertificateResponse {
                    cert_chain: vec![leaf.cert_pem.clone(), ca.root_pem()],
                },
                "KEY".into(),
            )
            .unwrap();
        assert_eq!(issued.chain, std::slice::from_ref(&leaf.cert_pem));
        assert_eq!(
            issued.chain_pem(),
            format!("{}\n", leaf.cert_pem.trim_end())
        );
        assert!(issued.validity.not_before < issued.validity.not_after);
        assert!(!issued.serial.is_empty());
        // A lone leaf (no root appended) is kept as it is.
        let issued = client(dir.path())
            .check(
                IstioCertificateResponse {
                    cert_chain: vec![leaf.cert_pem.clone()],
                },
                "KEY".into(),
            )
            .unwrap();
        assert_eq!(issued.chain, [leaf.cert_pem]);
    }

    #[test]
    fn answers_without_our_identity_are_refused() {
        let ca = TestCa::new("cluster.local");
        let dir = tempfile::tempdir().unwrap();
        let c = client(dir.path());
        let other = ca.issue("spiffe://cluster.local/ns/shop/sa/default");
        let err = c
            .check(
                IstioCertificateResponse {
                    cert_chain: vec![other.cert_pem, ca.root_pem()],
                },
                "KEY".into(),
            )
            .unwrap_err();
        match err {
            CaError::WrongIdentity { want, got, .. } => {
                assert_eq!(want, WAYPOINT);
                assert_eq!(got, "spiffe://cluster.local/ns/shop/sa/default");
            }
            other => panic!("{other}"),
        }
        let empty = c.check(IstioCertificateResponse::default(), "KEY".into());
        assert!(matches!(empty, Err(CaError::EmptyChain { .. })));
        let garbage = c.check(
            IstioCertificateResponse {
                cert_chain: vec!["not a certificate".into()],
            },
            "KEY".into(),
        );
        assert!(matches!(garbage, Err(CaError::BadCertificate { .. })));
    }

    #[test]
    fn the_root_mount_must_hold_a_certificate() {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = IstioCaConfig::new("istiod:15012".parse().unwrap(), "waypoint");
        cfg.root_cert = dir.path().join("root-cert.pem");
        let c = CaClient::new(cfg, "cluster.local", "shop").unwrap();
        assert!(matches!(c.read_root_pem(), Err(CaError::ReadRoot { .. })));
        std::fs::write(dir.path().join("root-cert.pem"), "\n").unwrap();
        assert!(matches!(c.read_root_pem(), Err(CaError::BadRoot { .. })));
        let root = TestCa::new("cluster.local").root_pem();
        std::fs::write(dir.path().join("root-cert.pem"), &root).unwrap();
        assert_eq!(c.read_root_pem().unwrap(), root);
    }

    #[test]
    fn the_token_is_read_fresh_and_trimmed() {
        let dir = tempfile::tempdir().unwrap();
        let c = client(dir.path());
        assert!(matches!(c.read_bearer(), Err(CaError::ReadToken { .. })));
        std::fs::write(dir.path().join("istio-token"), "").unwrap();
        assert!(matches!(c.read_bearer(), Err(CaError::ReadToken { .. })));
        std::fs::write(dir.path().join("istio-token"), "first\n").unwrap();
        assert_eq!(c.read_bearer().unwrap(), "Bearer first");
        // The kubelet rotated it.
        std::fs::write(dir.path().join("istio-token"), "second").unwrap();
        assert_eq!(c.read_bearer().unwrap(), "Bearer second");
    }
}
