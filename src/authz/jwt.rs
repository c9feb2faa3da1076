//! RequestAuthentication: find a JWT in the request, verify it against the
//! rule for its issuer, and hand AuthorizationPolicy the request principal
//! (`iss/sub`), audiences, presenter and claims. Failures carry Envoy's
//! `jwt_authn` messages, which users grep for.

use std::collections::HashSet;
use std::sync::Arc;

use arc_swap::ArcSwapOption;
use http::HeaderName;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use pingora_http::RequestHeader;
use serde_json::Value;

/// Envoy's clock skew allowance for `exp` and `nbf`.
const LEEWAY_SECS: u64 = 60;

/// Why a present token was refused: 401 with this message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum JwtFailure {
    #[error("Jwt is not in the form of Header.Payload.Signature with two dots and 3 sections")]
    BadFormat,
    #[error("Jwt is expired")]
    Expired,
    #[error("Jwt not yet valid")]
    NotYetValid,
    #[error("Jwt issuer is not configured")]
    UnknownIssuer,
    #[error("Audiences in Jwt are not allowed")]
    AudienceNotAllowed,
    #[error("Jwt verification fails")]
    VerificationFails,
    #[error("Jwks doesn't have key to match kid or alg from Jwt")]
    NoMatchingKey,
    #[error("Jwks remote fetch is failed")]
    JwksUnavailable,
}

/// What a verified token says about the request, for AuthorizationPolicy.
#[derive(Debug, Clone, PartialEq)]
pub struct RequestAuth {
    /// `iss/sub`.
    pub principal: String,
    pub audiences: Vec<String>,
    /// `azp`.
    pub presenter: Option<String>,
    pub claims: Value,
}

impl RequestAuth {
    /// A claim by its path (`["groups"]`, `["realm", "roles"]`) as strings:
    /// a string is one value, a list of strings several, others their JSON.
    pub fn claim(&self, path: &[String]) -> Vec<String> {
        let mut v = &self.claims;
        for key in path {
            match v.get(key) {
                Some(next) => v = next,
                None => return Vec::new(),
            }
        }
        match v {
            Value::String(s) => vec![s.clone()],
            Value::Array(items) => items
                .iter()
                .map(|i| match i {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                })
                .collect(),
            Value::Null => Vec::new(),
            other => vec![other.to_string()],
        }
    }
}

/// Where a token may be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenLocation {
    Header { name: HeaderName, prefix: String },
    Param(String),
    Cookie(String),
}

impl TokenLocation {
    /// Istio's default: `Authorization: Bearer …` and `?access_token=…`.
    pub fn defaults() -> Vec<TokenLocation> {
        vec![
            TokenLocation::Header {
                name: http::header::AUTHORIZATION,
                prefix: "Bearer ".to_string(),
            },
            TokenLocation::Param("access_token".to_string()),
        ]
    }

    fn find(&self, req: &RequestHeader) -> Option<String> {
        match self {
            TokenLocation::Header { name, prefix } => {
                let v = req.headers.get(name)?.to_str().ok()?;
                let token = if prefix.is_empty() {
                    v
                } else {
                    // Envoy matches the prefix case-sensitively but for the scheme's case.
                    let head = v.get(..prefix.len())?;
                    if !head.eq_ignore_ascii_case(prefix) {
                        return None;
                    }
                    &v[prefix.len()..]
                };
                Some(token.trim().to_string()).filter(|t| !t.is_empty())
            }
            TokenLocation::Param(name) => {
                let query = req.uri.query()?;
                query.split('&').find_map(|pair| {
                    let (k, v) = pair.split_once('=')?;
                    (k == name && !v.is_empty()).then(|| v.to_string())
                })
            }
            TokenLocation::Cookie(name) => req
                .headers
                .get_all(http::header::COOKIE)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .flat_map(|v| v.split(';'))
                .find_map(|c| {
                    let (k, v) = c.trim().split_once('=')?;
                    (k == name && !v.is_empty()).then(|| v.to_string())
                }),
        }
    }
}

/// A key of a JSON Web Key Set, ready to verify with.
pub struct Key {
    kid: Option<String>,
    alg: Option<Algorithm>,
    key: DecodingKey,
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Key")
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .finish()
    }
}

/// Parses a JSON Web Key Set; keys of unsupported types are an error.
pub fn parse_jwks(text: &str) -> Result<Vec<Key>, String> {
    let set: JwkSet = serde_json::from_str(text).map_err(|e| format!("invalid JWKS: {e}"))?;
    if set.keys.is_empty() {
        return Err("the JWKS has no keys".to_string());
    }
    set.keys
        .iter()
        .map(|jwk| {
            let key = DecodingKey::from_jwk(jwk).map_err(|e| format!("unusable JWK: {e}"))?;
            let alg = jwk
                .common
                .key_algorithm
                .and_then(|a| a.to_string().parse::<Algorithm>().ok());
            Ok(Key {
                kid: jwk.common.key_id.clone(),
                alg,
                key,
            })
        })
        .collect()
}

/// The keys of one rule: inline, or fetched from `jwksUri` (absent until the
/// first fetch succeeds; kept when a later one fails).
#[derive(Debug)]
pub enum Keys {
    Inline(Vec<Key>),
    Remote(Arc<RemoteKeys>),
}

/// Keys fetched from a `jwksUri`, shared by every rule and config that names it.
#[derive(Debug, Default)]
pub struct RemoteKeys {
    pub uri: String,
    pub keys: ArcSwapOption<Vec<Key>>,
}

/// One compiled `jwtRules[]` entry.
#[derive(Debug)]
pub struct JwtProvider {
    /// `namespace/name` of the RequestAuthentication.
    pub name: Arc<str>,
    pub issuer: String,
    pub audiences: Vec<String>,
    pub keys: Keys,
    pub locations: Vec<TokenLocation>,
    pub forward_original_token: bool,
    pub output_payload_to_header: Option<HeaderName>,
    pub output_claim_to_headers: Vec<(HeaderName, Vec<String>)>,
}

impl PartialEq for JwtProvider {
    fn eq(&self, other: &Self) -> bool {
        // Keys come from the same text (or URI) whenever the rest is equal.
        self.name == other.name
            && self.issuer == other.issuer
            && self.audiences == other.audiences
            && self.locations == other.locations
            && self.forward_original_token == other.forward_original_token
            && self.output_payload_to_header == other.output_payload_to_header
            && self.output_claim_to_headers == other.output_claim_to_headers
            && match (&self.keys, &other.keys) {
                (Keys::Remote(a), Keys::Remote(b)) => a.uri == b.uri,
                (Keys::Inline(a), Keys::Inline(b)) => a.len() == b.len(),
                _ => false,
            }
    }
}

impl JwtProvider {
    fn verify(&self, token: &str, alg: Algorithm, kid: Option<&str>) -> Result<Value, JwtFailure> {
        let remote;
        let keys: &[Key] = match &self.keys {
            Keys::Inline(keys) => keys,
            Keys::Remote(r) => {
                remote = r.keys.load_full().ok_or(JwtFailure::JwksUnavailable)?;
                &remote
            }
        };
        let candidates = keys.iter().filter(|k| {
            kid.is_none_or(|kid| k.kid.as_deref().is_none_or(|k| k == kid))
                && k.alg.is_none_or(|a| a == alg)
        });
        let mut validation = Validation::new(alg);
        validation.set_issuer(&[&self.issuer]);
        validation.leeway = LEEWAY_SECS;
        validation.required_spec_claims = HashSet::new();
        validation.validate_nbf = true;
        if self.audiences.is_empty() {
            validation.validate_aud = false;
        } else {
            validation.set_audience(&self.audiences);
        }
        let mut last = JwtFailure::NoMatchingKey;
        for k in candidates {
            match jsonwebtoken::decode::<Value>(token, &k.key, &validation) {
                Ok(data) => return Ok(data.claims),
                Err(e) => {
                    last = match e.kind() {
                        ErrorKind::ExpiredSignature => return Err(JwtFailure::Expired),
                        ErrorKind::ImmatureSignature => return Err(JwtFailure::NotYetValid),
                        ErrorKind::InvalidAudience => return Err(JwtFailure::AudienceNotAllowed),
                        ErrorKind::InvalidIssuer => return Err(JwtFailure::UnknownIssuer),
                        ErrorKind::InvalidToken
                        | ErrorKind::Base64(_)
                        | ErrorKind::Json(_)
                        | ErrorKind::Utf8(_) => return Err(JwtFailure::BadFormat),
                        _ => JwtFailure::VerificationFails,
                    }
                }
            }
        }
        Err(last)
    }
}

/// Finds and verifies the request's JWT against `providers`. `Ok(None)`: no
/// token (the request goes on without a request principal). On success the
/// token is removed unless a rule forwards it, and the rule's output headers
/// are set.
pub fn authenticate(
    providers: &[Arc<JwtProvider>],
    req: &mut RequestHeader,
) -> Result<Option<RequestAuth>, JwtFailure> {
    let Some((token, location)) = providers
        .iter()
        .flat_map(|p| p.locations.iter())
        .find_map(|l| l.find(req).map(|t| (t, l.clone())))
    else {
        return Ok(None);
    };
    let mut parts = token.split('.');
    let (Some(_), Some(payload), Some(_), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(JwtFailure::BadFormat);
    };
    let header = jsonwebtoken::decode_header(&token).map_err(|_| JwtFailure::BadFormat)?;
    let unverified: Value = base64_json(payload).ok_or(JwtFailure::BadFormat)?;
    let issuer = unverified.get("iss").and_then(Value::as_str).unwrap_or("");
    let provider = providers
        .iter()
        .find(|p| p.issuer == issuer)
        .ok_or(JwtFailure::UnknownIssuer)?;
    let claims = provider.verify(&token, header.alg, header.kid.as_deref())?;

    let text = |v: &Value| match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let sub = claims.get("sub").map(text).unwrap_or_default();
    let audiences = match claims.get("aud") {
        Some(Value::Array(a)) => a.iter().map(text).collect(),
        Some(v) => vec![text(v)],
        None => Vec::new(),
    };
    let auth = RequestAuth {
        principal: format!("{issuer}/{sub}"),
        audiences,
        presenter: claims.get("azp").map(text),
        claims,
    };
    if !provider.forward_original_token {
        if let TokenLocation::Header { name, .. } = &location {
            req.remove_header(name);
        }
    }
    if let Some(name) = &provider.output_payload_to_header {
        let _ = req.insert_header(name.clone(), payload);
    }
    for (name, path) in &provider.output_claim_to_headers {
        let values = auth.claim(path);
        if !values.is_empty() {
            let _ = req.insert_header(name.clone(), values.join(","));
        }
    }
    Ok(Some(auth))
}

/// A base64url (unpadded) JSON segment.
fn base64_json(segment: &str) -> Option<Value> {
    use base64::Engine;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(segment.trim_end_matches('='))
        .ok()?;
    serde_json::from_slice(&bytes).ok()
}
