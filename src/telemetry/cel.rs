//! The subset of CEL that Istio's Telemetry API takes in `accessLogging[].filter.expression`
//! and `metrics[].overrides[].tagOverrides.*.value`: Envoy's request attributes compared with
//! literals, combined with `&&`, `||`, `!` and parentheses. Parsed once at config load into an
//! [`Expr`]; evaluated per request against [`Attributes`] without allocating.
//!
//! Anything outside the subset (functions, arithmetic, `in`, other attributes) is refused with
//! the expression and what was not understood, so a user never gets a filter that silently
//! matches nothing. We do not pull in a full CEL interpreter: the forms users write here are few,
//! and `cel-interpreter` brings a parser generator runtime, `chrono` and more for them.

use std::borrow::Cow;
use std::fmt;

use http::HeaderName;

/// Why an expression was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("CEL expression {expr:?}: {reason}")]
pub struct CelError {
    pub expr: String,
    pub reason: String,
}

/// An attribute of the request (Envoy's attribute names).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attr {
    /// `request.headers['name']` (lower-cased).
    RequestHeader(HeaderName),
    /// `response.headers['name']`.
    ResponseHeader(HeaderName),
    /// `request.host`: the `Host` header (`:authority`).
    RequestHost,
    /// `request.method`.
    RequestMethod,
    /// `request.path`: path and query.
    RequestPath,
    /// `request.url_path`: the path without the query.
    RequestUrlPath,
    /// `request.scheme`.
    RequestScheme,
    /// `request.protocol`: `HTTP/1.1`, `HTTP/2`.
    RequestProtocol,
    /// `request.id`: `x-request-id`.
    RequestId,
    /// `response.code`.
    ResponseCode,
    /// `response.flags`, Envoy's short form (`UH`, `NR,URX`, `-`).
    ResponseFlags,
    /// `response.code_details`.
    ResponseCodeDetails,
    /// `response.grpc_status`.
    ResponseGrpcStatus,
    /// `connection.mtls`: the caller came over mutual TLS.
    ConnectionMtls,
    /// `connection.requested_server_name`.
    ConnectionSni,
    /// `source.principal`: the caller's SPIFFE id.
    SourcePrincipal,
    /// `source.address`: the caller's IP.
    SourceAddress,
    /// `destination.port`: the Service port.
    DestinationPort,
    /// `destination.service.host` (Istio's `destination_service`).
    DestinationServiceHost,
    /// `destination.service.name`.
    DestinationServiceName,
    /// `destination.service.namespace`.
    DestinationServiceNamespace,
    /// `upstream.address`: the endpoint chosen.
    UpstreamAddress,
}

/// The static type of an attribute or literal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ty {
    Int,
    Str,
    Bool,
}

impl Attr {
    fn parse(path: &[&str], key: Option<&str>) -> Option<Attr> {
        let header = |k: &str| HeaderName::from_bytes(k.to_ascii_lowercase().as_bytes()).ok();
        Some(match (path, key) {
            (["request", "headers"], Some(k)) => Attr::RequestHeader(header(k)?),
            (["response", "headers"], Some(k)) => Attr::ResponseHeader(header(k)?),
            (_, Some(_)) => return None,
            (["request", "host"], None) => Attr::RequestHost,
            (["request", "method"], None) => Attr::RequestMethod,
            (["request", "path"], None) => Attr::RequestPath,
            (["request", "url_path"], None) => Attr::RequestUrlPath,
            (["request", "scheme"], None) => Attr::RequestScheme,
            (["request", "protocol"], None) => Attr::RequestProtocol,
            (["request", "id"], None) => Attr::RequestId,
            (["response", "code"], None) => Attr::ResponseCode,
            (["response", "flags"], None) => Attr::ResponseFlags,
            (["response", "code_details"], None) => Attr::ResponseCodeDetails,
            (["response", "grpc_status"], None) => Attr::ResponseGrpcStatus,
            (["connection", "mtls"], None) => Attr::ConnectionMtls,
            (["connection", "requested_server_name"], None) => Attr::ConnectionSni,
            (["source", "principal"], None) => Attr::SourcePrincipal,
            (["source", "address"], None) => Attr::SourceAddress,
            (["destination", "port"], None) => Attr::DestinationPort,
            (["destination", "service", "host"], None) => Attr::DestinationServiceHost,
            (["destination", "service", "name"], None) => Attr::DestinationServiceName,
            (["destination", "service", "namespace"], None) => Attr::DestinationServiceNamespace,
            (["upstream", "address"], None) => Attr::UpstreamAddress,
            _ => return None,
        })
    }

    fn ty(&self) -> Ty {
        match self {
            Attr::ResponseCode | Attr::DestinationPort | Attr::ResponseGrpcStatus => Ty::Int,
            Attr::ConnectionMtls => Ty::Bool,
            _ => Ty::Str,
        }
    }
}

/// A value an attribute has for one request; `Absent` for a missing header or an unknown
/// fact (CEL's "no such key": comparisons with it are false).
#[derive(Debug, Clone, PartialEq)]
pub enum Value<'a> {
    Int(i64),
    Str(Cow<'a, str>),
    Bool(bool),
    Absent,
}

impl fmt::Display for Value<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Int(i) => write!(f, "{i}"),
            Value::Str(s) => f.write_str(s),
            Value::Bool(b) => write!(f, "{b}"),
            Value::Absent => Ok(()),
        }
    }
}

/// Where the evaluator reads attributes: the finished request.
pub trait Attributes {
    fn attr(&self, attr: &Attr) -> Value<'_>;
}

/// Comparison operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CmpOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

/// A parsed expression of the subset.
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    Int(i64),
    Str(String),
    Bool(bool),
    Attr(Attr),
    Not(Box<Expr>),
    And(Box<Expr>, Box<Expr>),
    Or(Box<Expr>, Box<Expr>),
    Cmp(CmpOp, Box<Expr>, Box<Expr>),
}

impl Expr {
    /// Parses a boolean expression (`accessLogging[].filter.expression`).
    pub fn parse_condition(text: &str) -> Result<Expr, CelError> {
        let expr = Parser::run(text)?;
        match expr.ty() {
            Ty::Bool => Ok(expr),
            _ => Err(err(
                text,
                "the expression must be a condition (true or false)",
            )),
        }
    }

    /// Parses a tag value: a quoted string literal or an attribute
    /// (`tagOverrides.*.value`).
    pub fn parse_value(text: &str) -> Result<Expr, CelError> {
        match Parser::run(text)? {
            e @ (Expr::Str(_) | Expr::Attr(_)) => Ok(e),
            _ => Err(err(
                text,
                "a tag value must be a quoted string or an attribute such as request.headers['x']",
            )),
        }
    }

    fn ty(&self) -> Ty {
        match self {
            Expr::Int(_) => Ty::Int,
            Expr::Str(_) => Ty::Str,
            Expr::Attr(a) => a.ty(),
            _ => Ty::Bool,
        }
    }

    /// Evaluates a condition; an absent attribute makes its comparison false.
    pub fn matches(&self, attrs: &dyn Attributes) -> bool {
        match self {
            Expr::Bool(b) => *b,
            Expr::Attr(a) => matches!(attrs.attr(a), Value::Bool(true)),
            Expr::Not(e) => !e.matches(attrs),
            Expr::And(a, b) => a.matches(attrs) && b.matches(attrs),
            Expr::Or(a, b) => a.matches(attrs) || b.matches(attrs),
            Expr::Cmp(op, a, b) => compare(*op, &a.value(attrs), &b.value(attrs)),
            Expr::Int(_) | Expr::Str(_) => false,
        }
    }

    /// The expression's value (for a tag value).
    pub fn value<'a>(&'a self, attrs: &'a dyn Attributes) -> Value<'a> {
        match self {
            Expr::Int(i) => Value::Int(*i),
            Expr::Str(s) => Value::Str(Cow::Borrowed(s)),
            Expr::Attr(a) => attrs.attr(a),
            other => Value::Bool(other.matches(attrs)),
        }
    }
}

fn compare(op: CmpOp, a: &Value, b: &Value) -> bool {
    use std::cmp::Ordering;
    let ord = match (a, b) {
        (Value::Int(x), Value::Int(y)) => x.cmp(y),
        (Value::Str(x), Value::Str(y)) => x.cmp(y),
        (Value::Bool(x), Value::Bool(y)) => x.cmp(y),
        _ => return false,
    };
    match op {
        CmpOp::Eq => ord == Ordering::Equal,
        CmpOp::Ne => ord != Ordering::Equal,
        CmpOp::Lt => ord == Ordering::Less,
        CmpOp::Le => ord != Ordering::Greater,
        CmpOp::Gt => ord == Ordering::Greater,
        CmpOp::Ge => ord != Ordering::Less,
    }
}

fn err(text: &str, reason: impl Into<String>) -> CelError {
    CelError {
        expr: text.to_string(),
        reason: reason.into(),
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    Int(i64),
    Str(String),
    Op(&'static str),
}

fn tokenize(text: &str) -> Result<Vec<Tok>, CelError> {
    const OPS: [&str; 15] = [
        "==", "!=", "<=", ">=", "&&", "||", "<", ">", "!", "(", ")", "[", "]", ".", ",",
    ];
    let mut toks = Vec::new();
    let mut rest = text;
    'next: while let Some(c) = rest.chars().next() {
        if c.is_whitespace() {
            rest = &rest[c.len_utf8()..];
            continue;
        }
        if c == '\'' || c == '"' {
            let Some(end) = rest[1..].find(c) else {
                return Err(err(text, "unterminated string"));
            };
            toks.push(Tok::Str(rest[1..1 + end].to_string()));
            rest = &rest[end + 2..];
            continue;
        }
        if c.is_ascii_digit() || (c == '-' && rest[1..].starts_with(|d: char| d.is_ascii_digit())) {
            let len = 1 + rest[1..]
                .find(|d: char| !d.is_ascii_digit())
                .unwrap_or(rest.len() - 1);
            let n = rest[..len]
                .parse()
                .map_err(|_| err(text, format!("bad number {}", &rest[..len])))?;
            toks.push(Tok::Int(n));
            rest = &rest[len..];
            continue;
        }
        if c.is_ascii_alphabetic() || c == '_' {
            let len = rest
                .find(|d: char| !(d.is_ascii_alphanumeric() || d == '_'))
                .unwrap_or(rest.len());
            toks.push(Tok::Ident(rest[..len].to_string()));
            rest = &rest[len..];
            continue;
        }
        for op in OPS {
            if let Some(after) = rest.strip_prefix(op) {
                toks.push(Tok::Op(op));
                rest = after;
                continue 'next;
            }
        }
        return Err(err(text, format!("unsupported character {c:?}")));
    }
    Ok(toks)
}

/// Recursive descent over CEL's precedence: `||` < `&&` < `!` < comparison < primary.
struct Parser<'t> {
    text: &'t str,
    toks: Vec<Tok>,
    at: usize,
}

impl Parser<'_> {
    fn run(text: &str) -> Result<Expr, CelError> {
        let mut p = Parser {
            text,
            toks: tokenize(text)?,
            at: 0,
        };
        if p.toks.is_empty() {
            return Err(err(text, "empty expression"));
        }
        let e = p.or()?;
        match p.toks.get(p.at) {
            None => Ok(e),
            Some(t) => Err(p.unsupported(t)),
        }
    }

    fn unsupported(&self, t: &Tok) -> CelError {
        let what = match t {
            Tok::Ident(s) => s.clone(),
            Tok::Int(i) => i.to_string(),
            Tok::Str(s) => format!("'{s}'"),
            Tok::Op(o) => o.to_string(),
        };
        err(self.text, format!("unsupported at {what:?}"))
    }

    fn eat(&mut self, op: &'static str) -> bool {
        if self.toks.get(self.at) == Some(&Tok::Op(op)) {
            self.at += 1;
            true
        } else {
            false
        }
    }

    fn or(&mut self) -> Result<Expr, CelError> {
        let mut e = self.and()?;
        while self.eat("||") {
            let r = self.and()?;
            e = Expr::Or(Box::new(self.boolean(e)?), Box::new(self.boolean(r)?));
        }
        Ok(e)
    }

    fn and(&mut self) -> Result<Expr, CelError> {
        let mut e = self.unary()?;
        while self.eat("&&") {
            let r = self.unary()?;
            e = Expr::And(Box::new(self.boolean(e)?), Box::new(self.boolean(r)?));
        }
        Ok(e)
    }

    fn boolean(&self, e: Expr) -> Result<Expr, CelError> {
        match e.ty() {
            Ty::Bool => Ok(e),
            _ => Err(err(self.text, "&&, || and ! take conditions")),
        }
    }

    fn unary(&mut self) -> Result<Expr, CelError> {
        if self.eat("!") {
            let e = self.unary()?;
            return Ok(Expr::Not(Box::new(self.boolean(e)?)));
        }
        self.comparison()
    }

    fn comparison(&mut self) -> Result<Expr, CelError> {
        let left = self.primary()?;
        let op = match self.toks.get(self.at) {
            Some(Tok::Op("==")) => CmpOp::Eq,
            Some(Tok::Op("!=")) => CmpOp::Ne,
            Some(Tok::Op("<")) => CmpOp::Lt,
            Some(Tok::Op("<=")) => CmpOp::Le,
            Some(Tok::Op(">")) => CmpOp::Gt,
            Some(Tok::Op(">=")) => CmpOp::Ge,
            _ => return Ok(left),
        };
        self.at += 1;
        let right = self.primary()?;
        if left.ty() != right.ty() {
            return Err(err(
                self.text,
                format!("cannot compare a {:?} with a {:?}", left.ty(), right.ty()).to_lowercase(),
            ));
        }
        Ok(Expr::Cmp(op, Box::new(left), Box::new(right)))
    }

    fn primary(&mut self) -> Result<Expr, CelError> {
        let Some(t) = self.toks.get(self.at).cloned() else {
            return Err(err(self.text, "unexpected end"));
        };
        self.at += 1;
        match t {
            Tok::Int(i) => Ok(Expr::Int(i)),
            Tok::Str(s) => Ok(Expr::Str(s)),
            Tok::Op("(") => {
                let e = self.or()?;
                if !self.eat(")") {
                    return Err(err(self.text, "missing )"));
                }
                Ok(e)
            }
            Tok::Ident(id) if id == "true" => Ok(Expr::Bool(true)),
            Tok::Ident(id) if id == "false" => Ok(Expr::Bool(false)),
            Tok::Ident(first) => self.attribute(first),
            other => Err(self.unsupported(&other)),
        }
    }

    fn attribute(&mut self, first: String) -> Result<Expr, CelError> {
        let mut path = vec![first];
        while self.eat(".") {
            match self.toks.get(self.at).cloned() {
                Some(Tok::Ident(id)) => {
                    self.at += 1;
                    path.push(id);
                }
                _ => return Err(err(self.text, "a name must follow '.'")),
            }
        }
        let mut key = None;
        if self.eat("[") {
            match self.toks.get(self.at).cloned() {
                Some(Tok::Str(k)) => {
                    self.at += 1;
                    key = Some(k);
                }
                _ => return Err(err(self.text, "a quoted key must follow '['")),
            }
            if !self.eat("]") {
                return Err(err(self.text, "missing ]"));
            }
        }
        if self.toks.get(self.at) == Some(&Tok::Op("(")) {
            return Err(err(
                self.text,
                format!("function {} is not supported", path.join(".")),
            ));
        }
        let parts: Vec<&str> = path.iter().map(String::as_str).collect();
        Attr::parse(&parts, key.as_deref())
            .map(Expr::Attr)
            .ok_or_else(|| {
                let shown = match &key {
                    Some(k) => format!("{}['{k}']", path.join(".")),
                    None => path.join("."),
                };
                err(self.text, format!("unsupported attribute {shown}"))
            })
    }
}

#[cfg(test)]
mod tests;
