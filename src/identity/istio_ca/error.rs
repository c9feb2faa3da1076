//! Why a certificate could not be obtained from Istio's CA.

use std::path::PathBuf;

use thiserror::Error;

use super::super::error::IdentityError;
use super::super::spiffe::IdentityParseError;

/// A failure to request, check or store a certificate from Istio's CA.
///
/// Every variant that involves the CA names its address, so a startup error points at the
/// endpoint to check.
#[derive(Debug, Error)]
pub enum CaError {
    /// `--ca-address` is not `HOST:PORT`.
    #[error("invalid CA address {0:?}: expected HOST:PORT, e.g. istiod.istio-system.svc:15012")]
    BadAddress(String),
    /// `--cluster-id` cannot be sent as a header value.
    #[error("invalid cluster id {0:?}: must be printable ASCII")]
    BadClusterId(String),
    /// The SPIFFE id to request cannot be built from the trust domain, namespace and service
    /// account.
    #[error("cannot request a certificate for this identity: {0}")]
    Identity(#[from] IdentityParseError),
    /// The root certificate mount cannot be read.
    #[error("cannot read the CA root certificate {}: {source} (is the istio-ca-root-cert ConfigMap mounted?)", file.display())]
    ReadRoot {
        /// The root certificate file.
        file: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The root certificate mount holds no usable certificate.
    #[error("the CA root certificate {} is unusable: {reason}", file.display())]
    BadRoot {
        /// The root certificate file.
        file: PathBuf,
        /// What was wrong.
        reason: String,
    },
    /// The service-account token cannot be read, or is empty.
    #[error("cannot read the service-account token {}: {reason} (is the istio-token projected volume mounted?)", file.display())]
    ReadToken {
        /// The token file.
        file: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// The TLS client for the CA cannot be built (bad root PEM, bad server name).
    #[error("cannot set up TLS to the CA at {address}: {reason}")]
    Tls {
        /// The CA address.
        address: String,
        /// The cause, with its sources.
        reason: String,
    },
    /// No connection to the CA (refused, unreachable, TLS handshake failed).
    #[error("cannot connect to the CA at {address}: {reason} (is istiod reachable there, and does its certificate match the server name {server_name}?)")]
    Connect {
        /// The CA address.
        address: String,
        /// The name its certificate was checked against.
        server_name: String,
        /// The cause, with its sources.
        reason: String,
    },
    /// The CA answered the request with a gRPC error.
    #[error("the CA at {address} refused the certificate request: {code:?}: {message}{hint}")]
    Refused {
        /// The CA address.
        address: String,
        /// The gRPC status code.
        code: tonic::Code,
        /// The status message.
        message: String,
        /// A likely cause for well-known codes, starting with " (" — or empty.
        hint: &'static str,
    },
    /// The CA answered with no certificates.
    #[error("the CA at {address} returned an empty certificate chain")]
    EmptyChain {
        /// The CA address.
        address: String,
    },
    /// The issued leaf cannot be parsed.
    #[error("the CA at {address} returned an unusable certificate: {reason}")]
    BadCertificate {
        /// The CA address.
        address: String,
        /// What was wrong.
        reason: String,
    },
    /// The CA issued a certificate for another identity than the one requested.
    #[error("the CA at {address} issued a certificate for {got}, but {want} was requested (do --service-account and --namespace match the token's service account?)")]
    WrongIdentity {
        /// The CA address.
        address: String,
        /// The identity requested.
        want: String,
        /// The identity issued.
        got: String,
    },
    /// The key pair or CSR could not be generated.
    #[error("cannot generate a key pair and CSR: {0}")]
    Csr(String),
    /// A file of the certificate directory could not be written.
    #[error("cannot write {}: {source}", file.display())]
    Write {
        /// The file or directory.
        file: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The written directory could not be loaded.
    #[error("the new certificate cannot be loaded: {0}")]
    Load(#[from] IdentityError),
}

/// A likely cause for the gRPC codes a CA answers with.
pub(crate) fn hint_for(code: tonic::Code) -> &'static str {
    match code {
        tonic::Code::Unauthenticated => {
            " (is the token a projected service-account token with audience istio-ca?)"
        }
        tonic::Code::PermissionDenied => {
            " (istiod does not allow this service account to get this identity)"
        }
        tonic::Code::Unavailable => " (istiod is starting, overloaded or unreachable)",
        _ => "",
    }
}

/// An error and its sources on one line: tonic's transport errors say only "transport error"
/// at the top and keep the cause (connection refused, bad certificate) in the chain.
pub(crate) fn chain(err: &dyn std::error::Error) -> String {
    let mut out = err.to_string();
    let mut source = err.source();
    while let Some(e) = source {
        let text = e.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = e.source();
    }
    out
}
