//! Typed addresses for values whose role a bare `IpAddr` would hide. A leaf:
//! every layer may use it.

use std::fmt;
use std::net::IpAddr;

/// The original client's IP as the waypoint learned it: `forwarded: for=`
/// on an HBONE CONNECT, the PROXY header's source, or the TCP peer on the
/// plain listener — never the source ztunnel's own address. It feeds
/// `x-forwarded-for`, `forwarded` on outbound tunnels, `source.ip` for
/// plugins and the `useSourceIp` consistent hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ClientIp(pub IpAddr);

impl ClientIp {
    pub fn ip(self) -> IpAddr {
        self.0
    }
}

impl From<IpAddr> for ClientIp {
    fn from(ip: IpAddr) -> Self {
        ClientIp(ip)
    }
}

impl fmt::Display for ClientIp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}
