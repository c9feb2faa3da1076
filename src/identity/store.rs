//! `IdentityStore`: the waypoint's current certificate material, swappable on rotation, and
//! the rustls configs for HBONE built on top of it.

use std::sync::Arc;
use std::time::SystemTime;

use arc_swap::ArcSwap;
use rustls::client::Resumption;
use rustls::server::NoServerSessionStorage;
use rustls::{ClientConfig, ServerConfig};
use tokio::sync::watch;
use tracing::info;

use super::cert_dir::{CertDir, CertMaterial};
use super::error::IdentityError;
use super::provider::crypto_provider;
use super::resolver::{CurrentClientCert, CurrentServerCert};
use super::spiffe::Identity;
use super::verify::{SpiffeClientVerifier, SpiffeServerVerifier};

/// ALPN for HBONE: HTTP/2 over TLS.
const ALPN_H2: &[u8] = b"h2";

/// Holds the current certificate material of one [`CertDir`].
///
/// The material sits in an `ArcSwap`: [`IdentityStore::reload`] swaps a fully checked new
/// generation in, or keeps the old one on error. TLS configs built here read the swap on
/// every handshake, so they never need rebuilding.
#[derive(Debug)]
pub struct IdentityStore {
    dir: CertDir,
    material: Arc<ArcSwap<CertMaterial>>,
    generation: watch::Sender<u64>,
    /// The last reload's refusal (`/config_dump`'s `identity.last_reload_error`), cleared
    /// by a good reload: a rotation that did not take is visible without reading logs.
    last_error: std::sync::Mutex<Option<String>>,
}

impl IdentityStore {
    /// Loads the directory once; fails with the file at fault.
    pub fn load(dir: CertDir) -> Result<Self, IdentityError> {
        let material = dir.load()?;
        info!(identity = %material.identity(), dir = %dir.path().display(), "certificates loaded");
        Ok(IdentityStore {
            dir,
            material: Arc::new(ArcSwap::from_pointee(material)),
            generation: watch::Sender::new(0),
            last_error: std::sync::Mutex::new(None),
        })
    }

    /// Why the last reload was refused, when it was (the current material stays).
    pub fn last_reload_error(&self) -> Option<String> {
        self.last_error.lock().expect("not poisoned").clone()
    }

    /// The directory this store reads.
    pub fn cert_dir(&self) -> &CertDir {
        &self.dir
    }

    /// The current material generation.
    pub fn current(&self) -> Arc<CertMaterial> {
        self.material.load_full()
    }

    /// The waypoint's own identity (the current leaf's SPIFFE URI SAN).
    pub fn identity(&self) -> Identity {
        self.material.load().identity().clone()
    }

    /// Seconds until the current leaf expires; negative once it has.
    pub fn seconds_to_expiry(&self) -> i64 {
        let not_after = self.material.load().not_after();
        match not_after.duration_since(SystemTime::now()) {
            Ok(left) => i64::try_from(left.as_secs()).unwrap_or(i64::MAX),
            Err(past) => -i64::try_from(past.duration().as_secs()).unwrap_or(i64::MAX),
        }
    }

    /// Re-reads the directory and swaps the new material in.
    ///
    /// On error the previous material stays in use and the error is returned for the caller
    /// to log or count.
    pub fn reload(&self) -> Result<(), IdentityError> {
        let result = self.try_reload();
        *self.last_error.lock().expect("not poisoned") =
            result.as_ref().err().map(|e| e.to_string());
        result
    }

    fn try_reload(&self) -> Result<(), IdentityError> {
        let material = self.dir.load()?;
        // Swapping in a dead leaf would fail every handshake; the current one may still
        // be good (and if not, nothing is lost by keeping it).
        if let Err(past) = material.not_after().duration_since(SystemTime::now()) {
            return Err(IdentityError::Expired {
                file: self.dir.cert_chain_path(),
                ago_secs: past.duration().as_secs(),
            });
        }
        info!(identity = %material.identity(), serial = ?material.serial(), "certificates reloaded");
        self.material.store(Arc::new(material));
        self.generation.send_modify(|g| *g += 1);
        Ok(())
    }

    /// A receiver whose value increases after each successful reload.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.generation.subscribe()
    }

    /// rustls config for the HBONE inbound listener.
    ///
    /// TLS 1.3 only, ALPN `h2`, no session resumption (as ztunnel), a client certificate is
    /// required, must chain to the current roots and carry a SPIFFE id in `trust_domain`.
    pub fn server_config(&self, trust_domain: &str) -> Arc<ServerConfig> {
        let verifier = SpiffeClientVerifier {
            material: self.material.clone(),
            trust_domain: trust_domain.to_owned(),
        };
        let mut cfg = ServerConfig::builder_with_provider(crypto_provider())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .expect("ring supports TLS 1.3")
            .with_client_cert_verifier(Arc::new(verifier))
            .with_cert_resolver(Arc::new(CurrentServerCert(self.material.clone())));
        cfg.alpn_protocols = vec![ALPN_H2.to_vec()];
        cfg.session_storage = Arc::new(NoServerSessionStorage {});
        cfg.send_tls13_tickets = 0;
        Arc::new(cfg)
    }

    /// rustls config for HBONE outbound to a destination ztunnel.
    ///
    /// Presents our certificate, TLS 1.3 only, ALPN `h2`, no SNI, no resumption; the server
    /// certificate must chain to the roots and carry a SPIFFE id in `trust_domain`. Any
    /// `ServerName` may be passed to the connector (the IP is fine): names are not checked.
    pub fn client_config(&self, trust_domain: &str) -> Arc<ClientConfig> {
        let verifier = SpiffeServerVerifier {
            material: self.material.clone(),
            trust_domain: trust_domain.to_owned(),
        };
        let mut cfg = ClientConfig::builder_with_provider(crypto_provider())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .expect("ring supports TLS 1.3")
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(verifier))
            .with_client_cert_resolver(Arc::new(CurrentClientCert(self.material.clone())));
        cfg.alpn_protocols = vec![ALPN_H2.to_vec()];
        cfg.resumption = Resumption::disabled();
        cfg.enable_sni = false;
        Arc::new(cfg)
    }
}
