//! The value matchers of an AuthorizationPolicy, as Istio translates them
//! for Envoy's RBAC filter: strings with `*` as presence, prefix or suffix
//! wildcard; hosts (case-insensitive, port-agnostic when no port is given);
//! paths (those forms plus Istio's `{*}`/`{**}` templates); IP blocks.

use std::net::IpAddr;

use thiserror::Error;

/// Why a value in a policy cannot be matched as written.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum MatcherError {
    #[error("empty value")]
    Empty,
    #[error("{0:?} is not an IP address or CIDR block")]
    Cidr(String),
    #[error("{0:?} is not a port number")]
    Port(String),
    #[error("{0:?}: `*` may only stand at the start or the end of a value")]
    Wildcard(String),
    #[error("{0:?}: {1}")]
    Template(String, &'static str),
}

/// Istio's string match: `*` alone is presence (any non-empty value), `abc*`
/// a prefix, `*abc` a suffix, anything else exact.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StrMatch {
    Exact(String),
    Prefix(String),
    Suffix(String),
    Presence,
}

impl StrMatch {
    pub fn parse(value: &str) -> Result<Self, MatcherError> {
        if value.is_empty() {
            return Err(MatcherError::Empty);
        }
        let m = if value == "*" {
            StrMatch::Presence
        } else if let Some(prefix) = value.strip_suffix('*') {
            StrMatch::Prefix(prefix.to_string())
        } else if let Some(suffix) = value.strip_prefix('*') {
            StrMatch::Suffix(suffix.to_string())
        } else {
            StrMatch::Exact(value.to_string())
        };
        match &m {
            StrMatch::Exact(s) | StrMatch::Prefix(s) | StrMatch::Suffix(s) if s.contains('*') => {
                Err(MatcherError::Wildcard(value.to_string()))
            }
            _ => Ok(m),
        }
    }

    pub fn matches(&self, value: &str) -> bool {
        match self {
            StrMatch::Exact(s) => value == s,
            StrMatch::Prefix(s) => value.starts_with(s.as_str()),
            StrMatch::Suffix(s) => value.ends_with(s.as_str()),
            StrMatch::Presence => !value.is_empty(),
        }
    }

    /// The same match, ASCII case-insensitively (`value` is lower-cased by
    /// the caller; the pattern is lower-cased here).
    fn lowercase(self) -> Self {
        match self {
            StrMatch::Exact(s) => StrMatch::Exact(s.to_ascii_lowercase()),
            StrMatch::Prefix(s) => StrMatch::Prefix(s.to_ascii_lowercase()),
            StrMatch::Suffix(s) => StrMatch::Suffix(s.to_ascii_lowercase()),
            StrMatch::Presence => StrMatch::Presence,
        }
    }
}

/// `operation.hosts`: the request's authority, case-insensitively; a value
/// without a port matches the host with any port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostMatch {
    pattern: StrMatch,
    with_port: bool,
}

impl HostMatch {
    pub fn parse(value: &str) -> Result<Self, MatcherError> {
        let pattern = StrMatch::parse(value)?.lowercase();
        let with_port = split_port(value).1.is_some();
        Ok(HostMatch { pattern, with_port })
    }

    /// `authority` is lower case.
    pub fn matches(&self, authority: &str) -> bool {
        if self.with_port {
            self.pattern.matches(authority)
        } else {
            self.pattern.matches(split_port(authority).0)
        }
    }
}

/// `host` and `port` of `host[:port]` (IPv6 in brackets).
fn split_port(authority: &str) -> (&str, Option<&str>) {
    match authority.rfind(':') {
        Some(i)
            if !authority[i..].contains(']')
                && authority[i + 1..].bytes().all(|b| b.is_ascii_digit()) =>
        {
            (&authority[..i], Some(&authority[i + 1..]))
        }
        _ => (authority, None),
    }
}

/// `operation.paths`: Istio's string forms, or a path template whose
/// segments are literals, `{*}` (exactly one segment) or a final `{**}`
/// (any number of segments, none included).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathMatch {
    Str(StrMatch),
    Template(Vec<Segment>),
    /// Gateway API's `PathPrefix`: whole segments (`/a` matches `/a`, `/a/b`, not `/ab`).
    SegmentPrefix(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Segment {
    Literal(String),
    One,
    Rest,
}

impl PathMatch {
    pub fn parse(value: &str) -> Result<Self, MatcherError> {
        if !value.contains('{') {
            return StrMatch::parse(value).map(PathMatch::Str);
        }
        let bad = |why| MatcherError::Template(value.to_string(), why);
        let Some(rest) = value.strip_prefix('/') else {
            return Err(bad("a path template starts with /"));
        };
        let segments: Vec<Segment> = rest
            .split('/')
            .map(|s| match s {
                "{*}" => Ok(Segment::One),
                "{**}" => Ok(Segment::Rest),
                s if s.contains(['{', '}', '*']) => {
                    Err("`{*}` and `{**}` must be whole segments, without other wildcards")
                }
                s => Ok(Segment::Literal(s.to_string())),
            })
            .collect::<Result<_, _>>()
            .map_err(bad)?;
        if segments[..segments.len() - 1].contains(&Segment::Rest) {
            return Err(bad("`{**}` must be the last segment"));
        }
        Ok(PathMatch::Template(segments))
    }

    /// `path` is normalised and without its query.
    pub fn matches(&self, path: &str) -> bool {
        match self {
            PathMatch::Str(m) => m.matches(path),
            PathMatch::SegmentPrefix(p) => {
                let p = p.trim_end_matches('/');
                path == p
                    || p.is_empty()
                    || path
                        .strip_prefix(p)
                        .is_some_and(|rest| rest.starts_with('/'))
            }
            PathMatch::Template(segments) => {
                let Some(rest) = path.strip_prefix('/') else {
                    return false;
                };
                let mut parts = rest.split('/');
                for seg in segments {
                    match seg {
                        Segment::Rest => return true,
                        Segment::One => match parts.next() {
                            Some(p) if !p.is_empty() => {}
                            _ => return false,
                        },
                        Segment::Literal(l) => {
                            if parts.next() != Some(l.as_str()) {
                                return false;
                            }
                        }
                    }
                }
                parts.next().is_none()
            }
        }
    }
}

/// An IP address or CIDR block (`ipBlocks`, `source.ip`, …).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

impl Cidr {
    pub fn parse(value: &str) -> Result<Self, MatcherError> {
        let bad = || MatcherError::Cidr(value.to_string());
        let (addr, prefix) = match value.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (value, None),
        };
        let addr: IpAddr = addr.parse().map_err(|_| bad())?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(p) => p.parse::<u8>().ok().filter(|p| *p <= max).ok_or_else(bad)?,
            None => max,
        };
        Ok(Cidr { addr, prefix })
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        // An IPv4-mapped IPv6 client is its IPv4 address.
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
            v4 => v4,
        };
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                masked(u32::from(net) as u128, 32, self.prefix)
                    == masked(u32::from(ip) as u128, 32, self.prefix)
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                masked(u128::from(net), 128, self.prefix)
                    == masked(u128::from(ip), 128, self.prefix)
            }
            _ => false,
        }
    }
}

fn masked(bits: u128, width: u8, prefix: u8) -> u128 {
    if prefix == 0 {
        0
    } else {
        bits >> (width - prefix)
    }
}

/// A port number as policies write it (a string).
pub fn parse_port(value: &str) -> Result<u16, MatcherError> {
    value
        .parse::<u16>()
        .map_err(|_| MatcherError::Port(value.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_follow_istio_wildcards() {
        let m = |p: &str, v: &str| StrMatch::parse(p).unwrap().matches(v);
        assert!(m("GET", "GET") && !m("GET", "get"));
        assert!(m("cluster.local/ns/a/*", "cluster.local/ns/a/sa/x"));
        assert!(m("*/sa/x", "cluster.local/ns/a/sa/x"));
        assert!(m("*", "x") && !m("*", ""));
        assert_eq!(StrMatch::parse(""), Err(MatcherError::Empty));
        assert!(StrMatch::parse("a*b").is_err());
    }

    #[test]
    fn hosts_ignore_case_and_port_unless_given() {
        let m = |p: &str, v: &str| HostMatch::parse(p).unwrap().matches(v);
        assert!(m("Reviews.Example.com", "reviews.example.com:9080"));
        assert!(m("reviews.example.com:9080", "reviews.example.com:9080"));
        assert!(!m("reviews.example.com:80", "reviews.example.com:9080"));
        assert!(m("*.example.com", "a.example.com:80"));
        assert!(m("[::1]", "[::1]:80"));
    }

    #[test]
    fn paths_and_templates() {
        let m = |p: &str, v: &str| PathMatch::parse(p).unwrap().matches(v);
        assert!(m("/info*", "/info/x") && !m("/info*", "/inf"));
        assert!(m("*.html", "/a/b.html"));
        assert!(m("/store/{*}/items", "/store/7/items"));
        assert!(!m("/store/{*}/items", "/store/items"));
        assert!(!m("/store/{*}/items", "/store/7/8/items"));
        assert!(m("/api/{**}", "/api/a/b/c") && m("/api/{**}", "/api/"));
        assert!(!m("/api/{**}", "/apix/a"));
        assert!(PathMatch::parse("/a/{**}/b").is_err());
        assert!(PathMatch::parse("/a/x{*}").is_err());
        assert!(PathMatch::parse("a/{*}").is_err());
    }

    #[test]
    fn cidr_blocks() {
        let c = |p: &str, ip: &str| Cidr::parse(p).unwrap().contains(ip.parse().unwrap());
        assert!(c("10.0.0.0/8", "10.1.2.3") && !c("10.0.0.0/8", "11.0.0.1"));
        assert!(c("127.0.0.1", "127.0.0.1") && !c("127.0.0.1", "127.0.0.2"));
        assert!(c("0.0.0.0/0", "1.2.3.4"));
        assert!(c("10.0.0.0/8", "::ffff:10.0.0.1"));
        assert!(c("fd00::/8", "fd00::1") && !c("fd00::/8", "10.0.0.1"));
        assert!(Cidr::parse("10.0.0.0/33").is_err());
        assert!(Cidr::parse("ten").is_err());
    }
}
