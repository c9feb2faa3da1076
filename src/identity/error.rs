//! Errors of the identity module: loading the certificate directory and watching it.

use std::path::PathBuf;

use thiserror::Error;

use super::spiffe::IdentityParseError;

/// Why the waypoint's certificate material could not be loaded.
///
/// Every variant names the file at fault, so an operator can fix the right one.
#[derive(Debug, Error)]
pub enum IdentityError {
    /// The file is missing or unreadable.
    #[error("cannot read {}: {source}", file.display())]
    Read {
        /// The file that could not be read.
        file: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid PEM of the expected kind.
    #[error("{} is not valid PEM: {reason}", file.display())]
    Pem {
        /// The offending file.
        file: PathBuf,
        /// What the PEM parser said.
        reason: String,
    },
    /// A certificate file holds no `CERTIFICATE` block.
    #[error("{} holds no certificate", file.display())]
    NoCertificate {
        /// The empty file.
        file: PathBuf,
    },
    /// The leaf certificate cannot be parsed as X.509.
    #[error("{} holds an unparseable certificate: {reason}", file.display())]
    BadCertificate {
        /// The offending file.
        file: PathBuf,
        /// What the X.509 parser said.
        reason: String,
    },
    /// The leaf certificate carries no `spiffe://` URI SAN, or one that is not an Istio id.
    #[error("{}: leaf certificate has no usable SPIFFE URI SAN: {reason}", file.display())]
    NoSpiffeId {
        /// The certificate chain file.
        file: PathBuf,
        /// What was wrong.
        reason: String,
    },
    /// The SPIFFE id in the leaf is malformed.
    #[error("{}: {source}", file.display())]
    BadSpiffeId {
        /// The certificate chain file.
        file: PathBuf,
        /// The parse error.
        #[source]
        source: IdentityParseError,
    },
    /// The private key is unsupported or does not belong to the leaf certificate.
    #[error("{} holds an unusable private key: {reason}", file.display())]
    BadKey {
        /// The key file.
        file: PathBuf,
        /// What rustls said.
        reason: String,
    },
    /// The trust bundle cannot be used to verify peers.
    #[error("{} holds no usable root certificate: {reason}", file.display())]
    BadRoots {
        /// The root certificate file.
        file: PathBuf,
        /// What rustls said.
        reason: String,
    },
    /// A reload found a leaf that has already expired (a stale copy written back, a
    /// renewal that never happened): the current certificate stays in use.
    #[error("{}: the new leaf certificate expired {ago_secs} s ago; keeping the current one", file.display())]
    Expired {
        /// The certificate chain file.
        file: PathBuf,
        /// How long ago it expired.
        ago_secs: u64,
    },
    /// The file watcher could not be started.
    #[error("cannot watch certificate directory {}: {source}", dir.display())]
    Watch {
        /// The directory.
        dir: PathBuf,
        /// The notify error.
        #[source]
        source: notify::Error,
    },
}
