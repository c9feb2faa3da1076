//! PROXY protocol v2 for the "sandwich" binding: the node ztunnel terminates HBONE and opens
//! plain TCP to the waypoint, starting with a PROXY v2 header that carries the client
//! address (source), the HBONE target (destination) and the client's SPIFFE id (TLV 0xD0).
//!
//! Reads exactly the header, nothing of the payload after it. A missing or malformed header
//! is an error; the caller closes the connection. Apply a timeout around the read.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use thiserror::Error;
use tokio::io::{AsyncRead, AsyncReadExt};

use crate::identity::{Identity, IdentityParseError};

/// The 12-byte v2 signature (haproxy proxy-protocol.txt §2.2).
pub const SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";
/// TLV type ztunnel uses for the source workload's SPIFFE id.
pub const TLV_PEER_IDENTITY: u8 = 0xD0;

const VERSION_2: u8 = 0x2;
const CMD_PROXY: u8 = 0x1;
const FAMILY_INET: u8 = 0x1;
const FAMILY_INET6: u8 = 0x2;
const TRANSPORT_STREAM: u8 = 0x1;
const INET_ADDRS_LEN: usize = 12;
const INET6_ADDRS_LEN: usize = 36;

/// What a PROXY v2 header says about the connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyHeader {
    /// The original client.
    pub source: SocketAddr,
    /// Where the client was going (the HBONE target).
    pub destination: SocketAddr,
    /// The client's SPIFFE id, from TLV 0xD0, when present.
    pub peer_identity: Option<Identity>,
}

/// Why a connection does not start with a usable PROXY v2 header.
#[derive(Debug, Error)]
pub enum ProxyProtocolError {
    /// The connection failed or ended inside the header.
    #[error("reading PROXY header: {0}")]
    Io(#[from] io::Error),
    /// The first 12 bytes are not the v2 signature (no PROXY header, or v1).
    #[error("connection does not start with a PROXY v2 signature")]
    BadSignature,
    /// The version nibble is not 2.
    #[error("unsupported PROXY protocol version {0}")]
    BadVersion(u8),
    /// The command is LOCAL (or unknown): no client address to use.
    #[error("unsupported PROXY command {0:#x} (only PROXY is accepted)")]
    UnsupportedCommand(u8),
    /// Not TCP over IPv4/IPv6.
    #[error("unsupported PROXY address family/transport {0:#04x}")]
    UnsupportedFamily(u8),
    /// The declared length cannot hold the addresses.
    #[error("PROXY header length {len} too short for its address family")]
    ShortAddresses {
        /// The declared length.
        len: usize,
    },
    /// A TLV runs past the end of the header.
    #[error("malformed PROXY TLV at offset {offset}")]
    BadTlv {
        /// Offset within the TLV area.
        offset: usize,
    },
    /// TLV 0xD0 is not a SPIFFE id.
    #[error("PROXY TLV 0xD0 is not a SPIFFE identity: {0}")]
    BadIdentity(String),
}

impl From<IdentityParseError> for ProxyProtocolError {
    fn from(e: IdentityParseError) -> Self {
        ProxyProtocolError::BadIdentity(e.to_string())
    }
}

/// Reads one PROXY v2 header from the start of `stream`, consuming exactly its bytes.
pub async fn read_proxy_v2<R: AsyncRead + Unpin>(
    stream: &mut R,
) -> Result<ProxyHeader, ProxyProtocolError> {
    // Phase 1: the fixed 16 bytes.
    let mut fixed = [0u8; 16];
    stream.read_exact(&mut fixed[..12]).await?;
    if fixed[..12] != SIGNATURE {
        return Err(ProxyProtocolError::BadSignature);
    }
    stream.read_exact(&mut fixed[12..]).await?;
    let (version, command) = (fixed[12] >> 4, fixed[12] & 0x0F);
    if version != VERSION_2 {
        return Err(ProxyProtocolError::BadVersion(version));
    }
    if command != CMD_PROXY {
        return Err(ProxyProtocolError::UnsupportedCommand(command));
    }
    let family = fixed[13];
    let addrs_len = match (family >> 4, family & 0x0F) {
        (FAMILY_INET, TRANSPORT_STREAM) => INET_ADDRS_LEN,
        (FAMILY_INET6, TRANSPORT_STREAM) => INET6_ADDRS_LEN,
        _ => return Err(ProxyProtocolError::UnsupportedFamily(family)),
    };
    let len = usize::from(u16::from_be_bytes([fixed[14], fixed[15]]));
    if len < addrs_len {
        return Err(ProxyProtocolError::ShortAddresses { len });
    }

    // Phase 2: addresses and TLVs, exactly `len` bytes.
    let mut rest = vec![0u8; len];
    stream.read_exact(&mut rest).await?;
    let (source, destination) = parse_addrs(&rest[..addrs_len]);
    let peer_identity = parse_tlvs(&rest[addrs_len..])?;
    Ok(ProxyHeader {
        source,
        destination,
        peer_identity,
    })
}

fn parse_addrs(b: &[u8]) -> (SocketAddr, SocketAddr) {
    let port = |i: usize| u16::from_be_bytes([b[i], b[i + 1]]);
    if b.len() == INET_ADDRS_LEN {
        let ip = |i: usize| IpAddr::V4(Ipv4Addr::new(b[i], b[i + 1], b[i + 2], b[i + 3]));
        (
            SocketAddr::new(ip(0), port(8)),
            SocketAddr::new(ip(4), port(10)),
        )
    } else {
        let ip = |i: usize| {
            let mut o = [0u8; 16];
            o.copy_from_slice(&b[i..i + 16]);
            IpAddr::V6(Ipv6Addr::from(o))
        };
        (
            SocketAddr::new(ip(0), port(32)),
            SocketAddr::new(ip(16), port(34)),
        )
    }
}

fn parse_tlvs(mut b: &[u8]) -> Result<Option<Identity>, ProxyProtocolError> {
    let total = b.len();
    let mut identity = None;
    while !b.is_empty() {
        let offset = total - b.len();
        if b.len() < 3 {
            return Err(ProxyProtocolError::BadTlv { offset });
        }
        let (kind, len) = (b[0], usize::from(u16::from_be_bytes([b[1], b[2]])));
        let value = b
            .get(3..3 + len)
            .ok_or(ProxyProtocolError::BadTlv { offset })?;
        if kind == TLV_PEER_IDENTITY {
            let text = std::str::from_utf8(value)
                .map_err(|e| ProxyProtocolError::BadIdentity(e.to_string()))?;
            identity = Some(text.parse::<Identity>()?);
        }
        b = &b[3 + len..];
    }
    Ok(identity)
}

/// Encodes a PROXY v2 header (PROXY command, TCP). Mixed IPv4/IPv6 addresses are sent as
/// IPv6 with the IPv4 one mapped. For tests and fake ztunnels.
pub fn encode_proxy_v2(header: &ProxyHeader) -> Vec<u8> {
    let mut tlvs = Vec::new();
    if let Some(id) = &header.peer_identity {
        let id = id.to_string();
        tlvs.push(TLV_PEER_IDENTITY);
        tlvs.extend_from_slice(&(id.len() as u16).to_be_bytes());
        tlvs.extend_from_slice(id.as_bytes());
    }
    let (src, dst) = (header.source, header.destination);
    let mut out = SIGNATURE.to_vec();
    out.push((VERSION_2 << 4) | CMD_PROXY);
    match (src.ip(), dst.ip()) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            out.push((FAMILY_INET << 4) | TRANSPORT_STREAM);
            out.extend_from_slice(&((INET_ADDRS_LEN + tlvs.len()) as u16).to_be_bytes());
            out.extend_from_slice(&s.octets());
            out.extend_from_slice(&d.octets());
        }
        (s, d) => {
            let v6 = |ip: IpAddr| match ip {
                IpAddr::V4(v4) => v4.to_ipv6_mapped(),
                IpAddr::V6(v6) => v6,
            };
            out.push((FAMILY_INET6 << 4) | TRANSPORT_STREAM);
            out.extend_from_slice(&((INET6_ADDRS_LEN + tlvs.len()) as u16).to_be_bytes());
            out.extend_from_slice(&v6(s).octets());
            out.extend_from_slice(&v6(d).octets());
        }
    }
    out.extend_from_slice(&src.port().to_be_bytes());
    out.extend_from_slice(&dst.port().to_be_bytes());
    out.extend_from_slice(&tlvs);
    out
}

#[cfg(test)]
mod tests;
