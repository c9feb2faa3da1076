//! What an inbound CONNECT asks for (`TunnelRequest`) and the contract with the code that
//! decides and serves it (`ConnectHandler`).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use async_trait::async_trait;
use http::{Method, Request, StatusCode};
use thiserror::Error;

use super::headers::{Baggage, Forwarded};
use super::stream::TunnelStream;
use super::target::{ConnectTarget, TargetParseError};
use crate::identity::Identity;

/// One accepted HBONE CONNECT, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TunnelRequest {
    /// The caller's identity, from its client certificate (the *source workload*'s SPIFFE
    /// id: ztunnel presents the workload's certificate).
    pub peer: Identity,
    /// The TCP peer: the source node's ztunnel.
    pub peer_addr: SocketAddr,
    /// The `:authority`: where the application wanted to go.
    pub target: ConnectTarget,
    /// The `baggage` header (empty when absent).
    pub baggage: Baggage,
    /// The original client IP from `forwarded: for=…`, when present.
    pub forwarded_for: Option<IpAddr>,
    /// The `traceparent` header, as sent.
    pub traceparent: Option<String>,
    /// The server name the client sent in the TLS handshake, if any.
    pub sni: Option<Arc<str>>,
}

impl TunnelRequest {
    /// The address Pingora should report as the client: the original client from
    /// `forwarded` (port 0, since the header's port is the client's ephemeral port and not
    /// always sent) or else the ztunnel.
    pub fn client_addr(&self) -> SocketAddr {
        match self.forwarded_for {
            Some(ip) => SocketAddr::new(ip, 0),
            None => self.peer_addr,
        }
    }
}

/// Decides and serves inbound CONNECT streams. Implemented by the proxy.
///
/// What `decide` learned (for the proxy: the destination, resolved in one config snapshot)
/// is handed to `serve` as [`ConnectHandler::Accepted`], so a stream never resolves its
/// target twice against configs that may differ.
#[async_trait]
pub trait ConnectHandler: Send + Sync {
    /// What an accepted CONNECT carries from `decide` to `serve`.
    type Accepted: Send;

    /// Called once per well-formed CONNECT, before any response is sent. `Ok` answers `200`
    /// and hands the stream to [`ConnectHandler::serve`]; `Err(status)` answers with that
    /// status (e.g. 503 when nothing serves the target) and ends the stream.
    async fn decide(&self, req: &TunnelRequest) -> Result<Self::Accepted, StatusCode>;

    /// Called after `200` was sent, on the stream's own task. The stream's socket addresses
    /// are preset (peer = [`TunnelRequest::client_addr`], local = the target if it is an
    /// address); set user data before handing it to Pingora.
    async fn serve(&self, req: TunnelRequest, accepted: Self::Accepted, stream: TunnelStream);
}

/// Why a request on the HBONE port is answered 400 without asking the handler.
#[derive(Debug, Error, PartialEq, Eq)]
pub(crate) enum BadRequest {
    #[error("method {0} is not CONNECT")]
    NotConnect(Method),
    #[error("CONNECT without :authority")]
    MissingAuthority,
    #[error(transparent)]
    BadAuthority(#[from] TargetParseError),
}

/// Validates and parses a request received on the HBONE port.
pub(crate) fn parse_request<B>(
    req: &Request<B>,
    peer: &Identity,
    peer_addr: SocketAddr,
) -> Result<TunnelRequest, BadRequest> {
    if req.method() != Method::CONNECT {
        return Err(BadRequest::NotConnect(req.method().clone()));
    }
    let authority = req.uri().authority().ok_or(BadRequest::MissingAuthority)?;
    let target: ConnectTarget = authority.as_str().parse()?;
    let header = |name: &str| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|v| !v.is_empty())
    };
    let baggage = header("baggage").map(Baggage::parse).unwrap_or_default();
    let forwarded_for = header("forwarded")
        .and_then(|v| v.parse::<Forwarded>().ok())
        .and_then(|f| f.for_ip);
    Ok(TunnelRequest {
        peer: peer.clone(),
        peer_addr,
        target,
        baggage,
        forwarded_for,
        traceparent: header("traceparent").map(str::to_owned),
        sni: None,
    })
}
