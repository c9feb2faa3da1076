//! Compiled request matches (HTTPRoute `matches[]`, VirtualService
//! `match[]`): path, header, query, method and the VirtualService-only
//! conditions, tested against one request, and each match's precedence key.
//! Compiling API matches into these is `compile::matches` and
//! `istio::vs_match`; ordering candidates is `rule::RouteTable`.

use std::cmp::Reverse;
use std::fmt;

use http::HeaderName;
use regex::Regex;

use crate::routing::error::RouteConfigError;
use crate::routing::request::RequestInfo;

/// A regular expression compiled for a full (anchored) match; compares and
/// prints as the pattern the user wrote.
#[derive(Clone)]
pub struct Pattern {
    source: String,
    regex: Regex,
}

impl Pattern {
    /// Compiles `source` so that it must match the whole input.
    pub fn new(source: &str) -> Result<Self, RouteConfigError> {
        let regex =
            Regex::new(&format!("^(?:{source})$")).map_err(|e| RouteConfigError::InvalidRegex {
                pattern: source.to_string(),
                source: Box::new(e),
            })?;
        Ok(Self {
            source: source.to_string(),
            regex,
        })
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// True when the whole of `input` matches.
    pub fn is_match(&self, input: &str) -> bool {
        self.regex.is_match(input)
    }
}

impl PartialEq for Pattern {
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source
    }
}

impl fmt::Debug for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "/{}/", self.source)
    }
}

/// `match.path`.
#[derive(Debug, Clone, PartialEq)]
pub enum PathMatch {
    /// The whole path equals the value.
    Exact(String),
    /// The path starts with the value's elements (the value as written).
    Prefix(String),
    /// The whole path matches.
    Regex(Pattern),
    /// The path starts with the value as raw bytes, not element-wise
    /// (VirtualService `uri.prefix`, Envoy's `prefix`: `/api` matches
    /// `/apis`).
    RawPrefix(String),
    /// Any path (a VirtualService match without `uri`).
    Any,
}

/// The value test of a header or query-parameter match.
#[derive(Debug, Clone, PartialEq)]
pub enum ValueMatch {
    /// Equal bytes.
    Exact(String),
    /// Full regex match.
    Regex(Pattern),
    /// Starts with the value (VirtualService `prefix`).
    Prefix(String),
    /// Any value, as long as the header or parameter is present (a
    /// VirtualService match with no `exact`/`prefix`/`regex`).
    Present,
}

impl ValueMatch {
    pub(crate) fn is_match(&self, value: &str) -> bool {
        match self {
            ValueMatch::Exact(v) => v == value,
            ValueMatch::Regex(p) => p.is_match(value),
            ValueMatch::Prefix(v) => value.starts_with(v.as_str()),
            ValueMatch::Present => true,
        }
    }
}

/// `match.headers[]`; the name is case-insensitive.
#[derive(Debug, Clone, PartialEq)]
pub struct HeaderMatch {
    pub name: HeaderName,
    pub value: ValueMatch,
}

/// `match.queryParams[]`; the name is case-sensitive.
#[derive(Debug, Clone, PartialEq)]
pub struct QueryParamMatch {
    pub name: String,
    pub value: ValueMatch,
}

/// One `matches[]` entry: every present condition must hold.
#[derive(Debug, Clone, PartialEq)]
pub struct CompiledMatch {
    pub path: PathMatch,
    pub headers: Vec<HeaderMatch>,
    pub query_params: Vec<QueryParamMatch>,
    /// HTTPRoute `method` compiles to `Exact`.
    pub method: Option<ValueMatch>,
    /// VirtualService `ignoreUriCase`: `Exact` and `RawPrefix` path matches
    /// compare ASCII case-insensitively (Istio: "the case will be ignored
    /// only in the case of exact and prefix URI matches").
    pub ignore_uri_case: bool,
    /// VirtualService `withoutHeaders`: matches only when none of these hold.
    pub without_headers: Vec<HeaderMatch>,
    /// VirtualService `authority`, tested against the Host without its port.
    pub authority: Option<ValueMatch>,
    /// VirtualService `scheme`.
    pub scheme: Option<ValueMatch>,
    /// VirtualService `port`: the destination Service port.
    pub port: Option<u16>,
    /// GRPCRoute `method` (compiled into `path`): the characters of its
    /// service and method, which rank it by GRPCRoute's precedence.
    pub grpc_method: Option<GrpcMethodRank>,
}

/// What GRPCRoute precedence reads of a method match: "Characters in a
/// matching service", then "Characters in a matching method".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GrpcMethodRank {
    pub service_chars: usize,
    pub method_chars: usize,
}

/// Per the Gateway API: "the paths /abc, /abc/, and /abc/def would all match
/// the prefix /abc, but the path /abcd would not" — prefixes match whole path
/// elements and a trailing `/` in the value is ignored.
pub(crate) fn prefix_matches(prefix: &str, path: &str) -> bool {
    let prefix = prefix.trim_end_matches('/');
    match path.strip_prefix(prefix) {
        Some(rest) => rest.is_empty() || rest.starts_with('/'),
        None => false,
    }
}

/// The length of `prefix` when `path` starts with it byte for byte (ASCII
/// case-insensitively when `fold`).
pub(crate) fn raw_prefix_len(prefix: &str, path: &str, fold: bool) -> Option<usize> {
    let (p, s) = (prefix.as_bytes(), path.as_bytes());
    let head = s.get(..p.len())?;
    let same = if fold {
        head.eq_ignore_ascii_case(p)
    } else {
        head == p
    };
    same.then_some(p.len())
}

/// Splits `path?query`; the fragment never reaches a proxy.
pub(crate) fn split_path_query(path_and_query: &str) -> (&str, Option<&str>) {
    match path_and_query.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (path_and_query, None),
    }
}

/// The first value of query parameter `name` (compared after
/// percent-decoding both sides' `%XX` and `+`).
fn query_value(query: &str, name: &str) -> Option<String> {
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (percent_decode(k) == name).then(|| percent_decode(v))
    })
}

/// `%XX` and `+` decoding of a query component; an invalid escape is kept.
pub(crate) fn percent_decode(s: &str) -> String {
    if !s.contains(['%', '+']) {
        return s.to_string();
    }
    let hex = |b: u8| (b as char).to_digit(16);
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push((h * 16 + l) as u8);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// True when header `h` is present and its value (repeated headers joined
/// with ",", as Envoy and so Istio match them) passes.
fn header_holds(h: &HeaderMatch, headers: &http::HeaderMap) -> bool {
    let mut values = headers.get_all(&h.name).iter();
    let Some(first) = values.next() else {
        return false;
    };
    let mut joined = String::from_utf8_lossy(first.as_bytes()).into_owned();
    for v in values {
        joined.push(',');
        joined.push_str(&String::from_utf8_lossy(v.as_bytes()));
    }
    h.value.is_match(&joined)
}

impl CompiledMatch {
    /// A match on `path` alone.
    pub(crate) fn path_only(path: PathMatch) -> Self {
        Self {
            path,
            headers: Vec::new(),
            query_params: Vec::new(),
            method: None,
            ignore_uri_case: false,
            without_headers: Vec::new(),
            authority: None,
            scheme: None,
            port: None,
            grpc_method: None,
        }
    }

    /// True when `req` (whose path and query are already split) meets every
    /// condition.
    pub(crate) fn is_match(&self, req: &RequestInfo<'_>, path: &str, query: Option<&str>) -> bool {
        let fold = self.ignore_uri_case;
        let path_ok = match &self.path {
            PathMatch::Exact(v) if fold => v.eq_ignore_ascii_case(path),
            PathMatch::Exact(v) => v == path,
            PathMatch::Prefix(v) => prefix_matches(v, path),
            PathMatch::Regex(p) => p.is_match(path),
            PathMatch::RawPrefix(v) => raw_prefix_len(v, path, fold).is_some(),
            PathMatch::Any => true,
        };
        if !path_ok {
            return false;
        }
        let opt =
            |m: &Option<ValueMatch>, value: &str| m.as_ref().is_none_or(|m| m.is_match(value));
        if !opt(&self.method, req.method)
            || !opt(&self.authority, req.host)
            || !opt(&self.scheme, req.scheme)
            || self.port.is_some_and(|p| p != req.port)
        {
            return false;
        }
        if !self.headers.iter().all(|h| header_holds(h, req.headers))
            || self
                .without_headers
                .iter()
                .any(|h| header_holds(h, req.headers))
        {
            return false;
        }
        self.query_params.iter().all(|q| {
            query
                .and_then(|query| query_value(query, &q.name))
                .is_some_and(|v| q.value.is_match(&v))
        })
    }

    /// The `PathPrefix` (or raw prefix) value, for prefix rewrites.
    pub(crate) fn prefix(&self) -> Option<&str> {
        match &self.path {
            PathMatch::Prefix(v) | PathMatch::RawPrefix(v) => Some(v),
            _ => None,
        }
    }

    /// Sort key for precedence within equal route age and name. Per the
    /// Gateway API, precedence goes to: an "Exact" path match; a "Prefix" path
    /// match with the largest number of characters; a method match; the
    /// largest number of header matches; the largest number of query param
    /// matches. RegularExpression precedence is implementation-specific: like
    /// Istio we put it between Exact and Prefix. A GRPCRoute match ranks by
    /// GRPCRoute's rules instead: the most characters in the matching
    /// service, then in the method, then the most header matches.
    #[allow(clippy::type_complexity)]
    pub(super) fn precedence(
        &self,
    ) -> (
        u8,
        Reverse<usize>,
        Reverse<usize>,
        bool,
        Reverse<usize>,
        Reverse<usize>,
    ) {
        if let Some(rank) = self.grpc_method {
            return (
                0,
                Reverse(rank.service_chars),
                Reverse(rank.method_chars),
                true,
                Reverse(self.headers.len()),
                Reverse(0),
            );
        }
        let (kind, len) = match &self.path {
            PathMatch::Exact(_) => (0, 0),
            PathMatch::Regex(_) => (1, 0),
            PathMatch::Prefix(v) | PathMatch::RawPrefix(v) => (2, v.len()),
            PathMatch::Any => (2, 0),
        };
        (
            kind,
            Reverse(len),
            Reverse(0),
            self.method.is_none(),
            Reverse(self.headers.len()),
            Reverse(self.query_params.len()),
        )
    }
}
