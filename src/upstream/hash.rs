//! Consistent-hash keys (DestinationRule `loadBalancer.consistentHash`): what
//! a request is hashed on, and the hash itself. The hash only has to be
//! stable within one process (it picks among endpoints by rendezvous
//! hashing), so a fixed FNV-1a is enough; it is not a security boundary.

use std::net::IpAddr;

use crate::addr::ClientIp;
use std::time::Duration;

use http::HeaderName;

/// What a request is hashed on, as Istio's `consistentHash` names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HashKey {
    /// `httpHeaderName`: the value(s) of this header.
    Header(HeaderName),
    /// `httpCookie`: the value of this cookie. Envoy generates the cookie
    /// when absent and `ttl` is set; that is the proxy's job.
    Cookie {
        name: String,
        path: Option<String>,
        ttl: Option<Duration>,
    },
    /// `useSourceIp`: the client's address.
    SourceIp,
    /// `httpQueryParameterName`: the value of this query parameter.
    QueryParam(String),
}

/// The hash of `key` for one request, or `None` when the request lacks the
/// key (Envoy then picks as if no hash policy were set).
pub fn request_hash(
    key: &HashKey,
    headers: &http::HeaderMap,
    path_and_query: &str,
    client_ip: Option<ClientIp>,
) -> Option<u64> {
    match key {
        HashKey::Header(name) => {
            let mut values = headers.get_all(name).iter().peekable();
            values.peek()?;
            let mut h = Fnv::new();
            for (i, v) in values.enumerate() {
                if i > 0 {
                    h.write(b",");
                }
                h.write(v.as_bytes());
            }
            Some(h.finish())
        }
        HashKey::Cookie { name, .. } => headers
            .get_all(http::header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .find_map(|pair| {
                let (k, v) = pair.trim().split_once('=')?;
                (k == name).then(|| fnv1a(v.as_bytes()))
            }),
        HashKey::SourceIp => client_ip.map(|ip| match ip.ip() {
            IpAddr::V4(v4) => fnv1a(&v4.octets()),
            IpAddr::V6(v6) => fnv1a(&v6.octets()),
        }),
        HashKey::QueryParam(name) => {
            let (_, query) = path_and_query.split_once('?')?;
            query.split('&').find_map(|pair| {
                let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
                (k == name).then(|| fnv1a(v.as_bytes()))
            })
        }
    }
}

/// 64-bit FNV-1a of `bytes`.
pub fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h = Fnv::new();
    h.write(bytes);
    h.finish()
}

/// Mixes two hashes into one well-distributed value (splitmix64's
/// finaliser), for rendezvous hashing: `mix(request, endpoint)`.
pub fn mix(a: u64, b: u64) -> u64 {
    let mut z = a ^ b.rotate_left(32) ^ 0x9e37_79b9_7f4a_7c15;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

struct Fnv(u64);

impl Fnv {
    fn new() -> Self {
        Self(0xcbf2_9ce4_8422_2325)
    }

    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 ^= u64::from(*b);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

#[cfg(test)]
mod tests;
