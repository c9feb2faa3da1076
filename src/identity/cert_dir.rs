//! Loading Istio's certificate directory (`cert-chain.pem`, `key.pem`, `root-cert.pem`) into
//! ready-to-use rustls material.
//!
//! Owns file names, PEM decoding and consistency checks; does not own reloading (see
//! `store.rs`) or peer verification (see `verify.rs`).

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::danger::ClientCertVerifier;
use rustls::server::WebPkiClientVerifier;
use rustls::sign::CertifiedKey;
use rustls::RootCertStore;

use super::error::IdentityError;
use super::provider::crypto_provider;
use super::spiffe::Identity;
use super::x509::leaf_facts;

/// Istio's file name for the workload certificate chain (leaf first, then intermediates).
pub const CERT_CHAIN_FILE: &str = "cert-chain.pem";
/// Istio's file name for the workload private key (PKCS#8, PKCS#1 or SEC1 PEM).
pub const KEY_FILE: &str = "key.pem";
/// Istio's file name for the trust bundle (one or more root certificates).
pub const ROOT_CERT_FILE: &str = "root-cert.pem";

/// A directory holding the three certificate files under Istio's names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertDir {
    dir: PathBuf,
}

impl CertDir {
    /// Points at `dir`; nothing is read until [`CertDir::load`].
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        CertDir { dir: dir.into() }
    }

    /// The directory itself.
    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// Path of `cert-chain.pem`.
    pub fn cert_chain_path(&self) -> PathBuf {
        self.dir.join(CERT_CHAIN_FILE)
    }

    /// Path of `key.pem`.
    pub fn key_path(&self) -> PathBuf {
        self.dir.join(KEY_FILE)
    }

    /// Path of `root-cert.pem`.
    pub fn root_cert_path(&self) -> PathBuf {
        self.dir.join(ROOT_CERT_FILE)
    }

    /// Reads and checks all three files.
    ///
    /// Fails, naming the file, when one is missing, not PEM, empty, when the leaf has no
    /// SPIFFE URI SAN, or when the key does not match the leaf.
    pub fn load(&self) -> Result<CertMaterial, IdentityError> {
        // Phase 1: the chain and the facts of its leaf.
        let chain_file = self.cert_chain_path();
        let chain = read_certs(&chain_file)?;
        let facts = leaf_facts(&chain[0]).map_err(|reason| IdentityError::BadCertificate {
            file: chain_file.clone(),
            reason,
        })?;
        let uri = facts
            .uris
            .iter()
            .find(|u| u.starts_with("spiffe://"))
            .ok_or_else(|| IdentityError::NoSpiffeId {
                file: chain_file.clone(),
                reason: format!("URI SANs are {:?}", facts.uris),
            })?;
        let identity = uri
            .parse::<Identity>()
            .map_err(|source| IdentityError::BadSpiffeId {
                file: chain_file.clone(),
                source,
            })?;

        // Phase 2: the key, which must belong to the leaf.
        let key_file = self.key_path();
        let key_pem = read_file(&key_file)?;
        let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| IdentityError::Pem {
            file: key_file.clone(),
            reason: e.to_string(),
        })?;
        let signer = crypto_provider()
            .key_provider
            .load_private_key(key)
            .map_err(|e| IdentityError::BadKey {
                file: key_file.clone(),
                reason: e.to_string(),
            })?;
        let certified_key = CertifiedKey::new(chain, signer);
        match certified_key.keys_match() {
            Ok(()) | Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => {}
            Err(e) => {
                return Err(IdentityError::BadKey {
                    file: key_file,
                    reason: e.to_string(),
                })
            }
        }

        // Phase 3: the trust bundle and the client verifier built from it.
        let root_file = self.root_cert_path();
        let mut roots = RootCertStore::empty();
        for cert in read_certs(&root_file)? {
            roots.add(cert).map_err(|e| IdentityError::BadRoots {
                file: root_file.clone(),
                reason: e.to_string(),
            })?;
        }
        let roots = Arc::new(roots);
        let client_verifier =
            WebPkiClientVerifier::builder_with_provider(roots.clone(), crypto_provider())
                .build()
                .map_err(|e| IdentityError::BadRoots {
                    file: root_file,
                    reason: e.to_string(),
                })?;

        Ok(CertMaterial {
            identity,
            certified_key: Arc::new(certified_key),
            roots,
            client_verifier,
            not_after: facts.not_after,
            serial: facts.serial,
        })
    }
}

fn read_file(file: &Path) -> Result<Vec<u8>, IdentityError> {
    std::fs::read(file).map_err(|source| IdentityError::Read {
        file: file.to_owned(),
        source,
    })
}

fn read_certs(file: &Path) -> Result<Vec<CertificateDer<'static>>, IdentityError> {
    let pem = read_file(file)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| IdentityError::Pem {
            file: file.to_owned(),
            reason: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(IdentityError::NoCertificate {
            file: file.to_owned(),
        });
    }
    Ok(certs)
}

/// One consistent generation of the waypoint's certificate material.
///
/// Immutable; a reload builds a new one and swaps it in whole.
pub struct CertMaterial {
    identity: Identity,
    certified_key: Arc<CertifiedKey>,
    roots: Arc<RootCertStore>,
    client_verifier: Arc<dyn ClientCertVerifier>,
    not_after: SystemTime,
    serial: Vec<u8>,
}

impl CertMaterial {
    /// The waypoint's own identity: the leaf's SPIFFE URI SAN.
    pub fn identity(&self) -> &Identity {
        &self.identity
    }

    /// The leaf chain with its signing key, as rustls presents it.
    pub fn certified_key(&self) -> &Arc<CertifiedKey> {
        &self.certified_key
    }

    /// The trust bundle.
    pub fn roots(&self) -> &Arc<RootCertStore> {
        &self.roots
    }

    /// The chain-only client verifier built from the roots (no SPIFFE check).
    pub(crate) fn webpki_client_verifier(&self) -> &Arc<dyn ClientCertVerifier> {
        &self.client_verifier
    }

    /// End of the leaf's validity.
    pub fn not_after(&self) -> SystemTime {
        self.not_after
    }

    /// The leaf's serial number bytes, as encoded (useful to tell generations apart).
    pub fn serial(&self) -> &[u8] {
        &self.serial
    }
}

impl fmt::Debug for CertMaterial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CertMaterial")
            .field("identity", &self.identity.to_string())
            .field("not_after", &self.not_after)
            .field("serial", &self.serial)
            .field("roots", &self.roots.len())
            .finish_non_exhaustive()
    }
}
