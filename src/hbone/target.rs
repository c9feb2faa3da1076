//! The CONNECT target: the `:authority` of an HBONE stream, i.e. the address the application
//! dialled (`VIP:port`, `podIP:port`) or, from other networks, `hostname:port`.

use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;

use thiserror::Error;

/// Where a CONNECT stream wants to go.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ConnectTarget {
    /// An IP address and port (`10.0.0.1:80`, `[fd00::1]:80`).
    Addr(SocketAddr),
    /// A hostname and port (`reviews.default.svc.cluster.local:9080`).
    Host {
        /// The hostname, as sent (not resolved).
        name: String,
        /// The port.
        port: u16,
    },
}

/// Why an `:authority` is not a usable `host:port`.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum TargetParseError {
    /// No `:port` part.
    #[error("authority {0:?} has no port (want host:port)")]
    MissingPort(String),
    /// The port is not a number in 1..=65535.
    #[error("authority {0:?} has an invalid port")]
    BadPort(String),
    /// The host is neither an IP address nor a DNS name.
    #[error("authority {0:?} has an invalid host")]
    BadHost(String),
}

impl ConnectTarget {
    /// The port part.
    pub fn port(&self) -> u16 {
        match self {
            ConnectTarget::Addr(a) => a.port(),
            ConnectTarget::Host { port, .. } => *port,
        }
    }

    /// The socket address, when the target is an IP address.
    pub fn addr(&self) -> Option<SocketAddr> {
        match self {
            ConnectTarget::Addr(a) => Some(*a),
            ConnectTarget::Host { .. } => None,
        }
    }
}

/// DNS names: dot-separated labels of letters, digits, `-` and `_` (the latter appears in
/// SRV-style and some Kubernetes names), no empty label.
fn valid_hostname(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name.trim_end_matches('.').split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

impl FromStr for ConnectTarget {
    type Err = TargetParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if let Ok(addr) = s.parse::<SocketAddr>() {
            if addr.port() == 0 {
                return Err(TargetParseError::BadPort(s.to_owned()));
            }
            return Ok(ConnectTarget::Addr(addr));
        }
        let (host, port) = s
            .rsplit_once(':')
            .ok_or_else(|| TargetParseError::MissingPort(s.to_owned()))?;
        let port = match port.parse::<u16>() {
            Ok(p) if p != 0 && !port.starts_with('+') => p,
            _ => return Err(TargetParseError::BadPort(s.to_owned())),
        };
        // An IPv6 address must be bracketed; a bare one splits at its last colon and lands
        // here with colons in the "host".
        if !valid_hostname(host) {
            return Err(TargetParseError::BadHost(s.to_owned()));
        }
        Ok(ConnectTarget::Host {
            name: host.to_owned(),
            port,
        })
    }
}

impl fmt::Display for ConnectTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConnectTarget::Addr(a) => a.fmt(f),
            ConnectTarget::Host { name, port } => write!(f, "{name}:{port}"),
        }
    }
}
