//! Compiled rules and how one request is matched against them, with
//! Istio's semantics: a rule matches when its `from`, `to` and `when` all
//! match; `from`/`to` entries are alternatives; within a source or an
//! operation every field set must match, a field by any of its values, a
//! `not…` field by none of its values.
//!
//! TCP connections have no HTTP attributes. As Istio does for them, an ALLOW
//! rule that needs one never matches, and a DENY (or AUDIT) rule is read
//! without its HTTP-only fields, so it denies more rather than less.

use std::borrow::Cow;
use std::net::IpAddr;

use http::HeaderMap;

use super::jwt::RequestAuth;
use super::matcher::{Cidr, HostMatch, PathMatch, StrMatch};

/// What a request offers to a policy.
#[derive(Debug, Clone, Copy)]
pub struct Attributes<'a> {
    /// `source.principal`: the caller's SPIFFE id without `spiffe://`
    /// (`cluster.local/ns/x/sa/y`); `None` without mutual TLS.
    pub principal: Option<&'a str>,
    /// `source.namespace`: the namespace of that identity.
    pub namespace: Option<&'a str>,
    /// `source.ip`: the client address (the tunnel's `forwarded: for=`, else the peer).
    pub source_ip: Option<IpAddr>,
    /// `remote.ip`: the same while no proxy in front is trusted (Istio's
    /// default `numTrustedProxies: 0`).
    pub remote_ip: Option<IpAddr>,
    pub destination_ip: Option<IpAddr>,
    pub destination_port: u16,
    /// `connection.sni`: the server name of the downstream TLS handshake.
    pub sni: Option<&'a str>,
    /// `None` for a TCP connection.
    pub http: Option<HttpAttributes<'a>>,
    /// What a verified JWT says (RequestAuthentication); `None` without one.
    pub auth: Option<&'a RequestAuth>,
}

/// The HTTP part of [`Attributes`].
#[derive(Debug, Clone, Copy)]
pub struct HttpAttributes<'a> {
    pub method: &'a str,
    /// Normalised, without the query (`authz::path`).
    pub path: &'a str,
    /// The authority, lower case.
    pub host: &'a str,
    pub headers: &'a HeaderMap,
}

/// How a rule reads an attribute a TCP connection does not have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TcpReading {
    /// ALLOW: the rule cannot match.
    NoMatch,
    /// DENY, AUDIT: the field is left out.
    Ignore,
}

/// Values and `not…` values of one field.
#[derive(Debug, Clone, PartialEq)]
pub struct Field<T> {
    pub any: Vec<T>,
    pub none: Vec<T>,
}

impl<T> Default for Field<T> {
    fn default() -> Self {
        Field {
            any: Vec::new(),
            none: Vec::new(),
        }
    }
}

impl<T> Field<T> {
    /// Values, no `not…` values.
    pub fn of(any: Vec<T>) -> Self {
        Field {
            any,
            none: Vec::new(),
        }
    }

    fn is_set(&self) -> bool {
        !self.any.is_empty() || !self.none.is_empty()
    }

    /// `test` says whether one value matches the request's attribute.
    fn matches(&self, test: impl Fn(&T) -> bool) -> bool {
        (self.any.is_empty() || self.any.iter().any(&test)) && !self.none.iter().any(&test)
    }
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct SourceMatch {
    pub principals: Field<StrMatch>,
    pub request_principals: Field<StrMatch>,
    pub namespaces: Field<StrMatch>,
    pub ip_blocks: Field<Cidr>,
    pub remote_ip_blocks: Field<Cidr>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct OperationMatch {
    pub hosts: Field<HostMatch>,
    pub ports: Field<u16>,
    pub methods: Field<StrMatch>,
    pub paths: Field<PathMatch>,
}

/// A `when` key.
#[derive(Debug, Clone, PartialEq)]
pub enum Attr {
    Header(http::HeaderName),
    SourceIp,
    RemoteIp,
    SourceNamespace,
    SourcePrincipal,
    /// `request.auth.principal`: `iss/sub` of a verified JWT.
    AuthPrincipal,
    AuthAudiences,
    AuthPresenter,
    /// `request.auth.claims[a][b]`: a claim by its path.
    AuthClaim(Vec<String>),
    DestinationIp,
    DestinationPort,
    Sni,
}

impl Attr {
    fn http_only(&self) -> bool {
        !matches!(
            self,
            Attr::SourceIp
                | Attr::RemoteIp
                | Attr::SourceNamespace
                | Attr::SourcePrincipal
                | Attr::DestinationIp
                | Attr::DestinationPort
                | Attr::Sni
        )
    }
}

/// A `when` value, typed by its key.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Str(StrMatch),
    Ip(Cidr),
    Port(u16),
}

#[derive(Debug, Clone, PartialEq)]
pub struct ConditionMatch {
    pub attr: Attr,
    pub values: Field<Value>,
}

/// One compiled `rules[]` entry.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Rule {
    pub from: Vec<SourceMatch>,
    pub to: Vec<OperationMatch>,
    pub when: Vec<ConditionMatch>,
}

impl Rule {
    /// A rule that matches every request (`rules: [{}]`).
    pub fn any() -> Self {
        Rule::default()
    }

    /// Whether it reads what a JWT says (`requestPrincipals`, `request.auth.*`).
    pub fn reads_request_auth(&self) -> bool {
        self.from.iter().any(|s| s.request_principals.is_set())
            || self.when.iter().any(|c| {
                matches!(
                    c.attr,
                    Attr::AuthPrincipal
                        | Attr::AuthAudiences
                        | Attr::AuthPresenter
                        | Attr::AuthClaim(_)
                )
            })
    }

    pub fn matches(&self, a: &Attributes<'_>, tcp: TcpReading) -> bool {
        (self.from.is_empty() || self.from.iter().any(|s| s.matches(a, tcp)))
            && (self.to.is_empty() || self.to.iter().any(|o| o.matches(a, tcp)))
            && self.when.iter().all(|c| c.matches(a, tcp))
    }
}

/// An HTTP-only field on a TCP connection.
fn without_http<T>(field: &Field<T>, tcp: TcpReading) -> bool {
    !field.is_set() || tcp == TcpReading::Ignore
}

fn opt_str(m: &StrMatch, v: Option<&str>) -> bool {
    v.is_some_and(|v| m.matches(v))
}

fn opt_ip(c: &Cidr, ip: Option<IpAddr>) -> bool {
    ip.is_some_and(|ip| c.contains(ip))
}

impl SourceMatch {
    fn matches(&self, a: &Attributes<'_>, tcp: TcpReading) -> bool {
        let request_principals = match a.http {
            Some(_) => self
                .request_principals
                .matches(|m| opt_str(m, a.auth.map(|x| x.principal.as_str()))),
            None => without_http(&self.request_principals, tcp),
        };
        request_principals
            && self.principals.matches(|m| opt_str(m, a.principal))
            && self.namespaces.matches(|m| opt_str(m, a.namespace))
            && self.ip_blocks.matches(|c| opt_ip(c, a.source_ip))
            && self.remote_ip_blocks.matches(|c| opt_ip(c, a.remote_ip))
    }
}

impl OperationMatch {
    fn matches(&self, a: &Attributes<'_>, tcp: TcpReading) -> bool {
        let ports = self.ports.matches(|p| *p == a.destination_port);
        match &a.http {
            Some(h) => {
                ports
                    && self.hosts.matches(|m| m.matches(h.host))
                    && self.methods.matches(|m| m.matches(h.method))
                    && self.paths.matches(|m| m.matches(h.path))
            }
            None => {
                ports
                    && without_http(&self.hosts, tcp)
                    && without_http(&self.methods, tcp)
                    && without_http(&self.paths, tcp)
            }
        }
    }
}

impl ConditionMatch {
    fn matches(&self, a: &Attributes<'_>, tcp: TcpReading) -> bool {
        if a.http.is_none() && self.attr.http_only() {
            return tcp == TcpReading::Ignore;
        }
        self.values.matches(|v| self.value_matches(v, a))
    }

    fn value_matches(&self, v: &Value, a: &Attributes<'_>) -> bool {
        match (&self.attr, v) {
            (Attr::Header(name), Value::Str(m)) => {
                let headers = a.http.map(|h| h.headers);
                header_value(headers, name).is_some_and(|v| m.matches(&v))
            }
            (Attr::SourceIp, Value::Ip(c)) => opt_ip(c, a.source_ip),
            (Attr::RemoteIp, Value::Ip(c)) => opt_ip(c, a.remote_ip),
            (Attr::DestinationIp, Value::Ip(c)) => opt_ip(c, a.destination_ip),
            (Attr::DestinationPort, Value::Port(p)) => *p == a.destination_port,
            (Attr::SourceNamespace, Value::Str(m)) => opt_str(m, a.namespace),
            (Attr::SourcePrincipal, Value::Str(m)) => opt_str(m, a.principal),
            (Attr::Sni, Value::Str(m)) => opt_str(m, a.sni),
            (Attr::AuthPrincipal, Value::Str(m)) => {
                opt_str(m, a.auth.map(|x| x.principal.as_str()))
            }
            (Attr::AuthAudiences, Value::Str(m)) => a
                .auth
                .is_some_and(|x| x.audiences.iter().any(|v| m.matches(v))),
            (Attr::AuthPresenter, Value::Str(m)) => {
                opt_str(m, a.auth.and_then(|x| x.presenter.as_deref()))
            }
            (Attr::AuthClaim(path), Value::Str(m)) => a
                .auth
                .is_some_and(|x| x.claim(path).iter().any(|v| m.matches(v))),
            _ => false,
        }
    }
}

/// A header's values joined with `,`, as Envoy's header matcher reads a
/// repeated header; borrowed when it is sent once (the usual case).
fn header_value<'a>(
    headers: Option<&'a HeaderMap>,
    name: &http::HeaderName,
) -> Option<Cow<'a, str>> {
    let mut values = headers?.get_all(name).iter();
    let first = String::from_utf8_lossy(values.next()?.as_bytes());
    let mut rest = values.peekable();
    if rest.peek().is_none() {
        return Some(first);
    }
    let mut out = first.into_owned();
    for v in rest {
        out.push(',');
        out.push_str(&String::from_utf8_lossy(v.as_bytes()));
    }
    Some(Cow::Owned(out))
}
