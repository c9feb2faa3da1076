//! The SPIFFE workload identity `spiffe://<trust-domain>/ns/<namespace>/sa/<service-account>`.
//!
//! Owns parsing and printing only; where an identity comes from (a certificate's URI SAN, a
//! PROXY-protocol TLV) is the caller's business.

use std::fmt;
use std::str::FromStr;

use thiserror::Error;

const SCHEME: &str = "spiffe://";

/// A workload identity as Istio writes it in certificate URI SANs.
///
/// Built once (at the handshake, from the peer certificate) and passed around parsed; the
/// `spiffe://` string form exists only at the edges (`Display` / `FromStr` round trip).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Identity {
    trust_domain: String,
    namespace: String,
    service_account: String,
}

/// Why a string is not an Istio SPIFFE identity.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum IdentityParseError {
    /// The string does not start with `spiffe://`.
    #[error("identity {0:?} does not start with spiffe://")]
    Scheme(String),
    /// The path is not `/ns/<namespace>/sa/<service-account>`.
    #[error("identity {0:?} is not of the form spiffe://<trust-domain>/ns/<namespace>/sa/<service-account>")]
    Shape(String),
    /// A segment is empty or holds a character SPIFFE forbids.
    #[error("identity {0:?} has an empty or invalid segment")]
    Segment(String),
}

impl Identity {
    /// Builds an identity from its parts, checking each segment as `FromStr` does.
    pub fn new(
        trust_domain: &str,
        namespace: &str,
        service_account: &str,
    ) -> Result<Self, IdentityParseError> {
        let id = Identity {
            trust_domain: trust_domain.to_owned(),
            namespace: namespace.to_owned(),
            service_account: service_account.to_owned(),
        };
        if ![trust_domain, namespace, service_account]
            .iter()
            .all(|s| valid_segment(s))
        {
            return Err(IdentityParseError::Segment(id.to_string()));
        }
        Ok(id)
    }

    /// The trust domain, e.g. `cluster.local`.
    pub fn trust_domain(&self) -> &str {
        &self.trust_domain
    }

    /// The Kubernetes namespace of the workload.
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// The Kubernetes service account of the workload.
    pub fn service_account(&self) -> &str {
        &self.service_account
    }
}

/// SPIFFE allows letters, digits, `.`, `-`, `_` in path segments and trust domains
/// (spiffe-id.md §2.1, §2.2); Kubernetes names are a subset of that.
fn valid_segment(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
}

impl FromStr for Identity {
    type Err = IdentityParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let rest = s
            .strip_prefix(SCHEME)
            .ok_or_else(|| IdentityParseError::Scheme(s.to_owned()))?;
        let mut parts = rest.split('/');
        match (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
        ) {
            (Some(td), Some("ns"), Some(ns), Some("sa"), Some(sa), None) => {
                Identity::new(td, ns, sa).map_err(|_| IdentityParseError::Segment(s.to_owned()))
            }
            _ => Err(IdentityParseError::Shape(s.to_owned())),
        }
    }
}

impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{SCHEME}{}/ns/{}/sa/{}",
            self.trust_domain, self.namespace, self.service_account
        )
    }
}
