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
    /// The original client's port from `forwarded: for="ip:port"`, when sent (ztunnel
    /// sends it).
    pub forwarded_port: Option<u16>,
    /// The `traceparent` header, as sent.
    pub traceparent: Option<String>,
    /// The server name the client sent in the TLS handshake, if any.
    pub sni: Option<Arc<str>>,
}

impl TunnelRequest {
    /// The address Pingora should report as the client (the access log's
    /// `downstream_remote_address`): the original client from `forwarded`, with its port
    /// when the header carries one (0 when not), or else the ztunnel.
    pub fn client_addr(&self) -> SocketAddr {
        match self.forwarded_for {
            Some(ip) => SocketAddr::new(ip, self.forwarded_port.unwrap_or(0)),
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
    let forwarded = header("forwarded")
        .and_then(|v| v.parse::<Forwarded>().ok())
        .unwrap_or_default();
    Ok(TunnelRequest {
        peer: peer.clone(),
        peer_addr,
        target,
        baggage,
        forwarded_for: forwarded.for_ip,
        forwarded_port: forwarded.for_port.filter(|_| forwarded.for_ip.is_some()),
        traceparent: header("traceparent").map(str::to_owned),
        sni: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn connect(forwarded: Option<&str>) -> TunnelRequest {
        let mut req = Request::builder()
            .method(Method::CONNECT)
            .uri("10.96.0.12:9080");
        if let Some(f) = forwarded {
            req = req.header("forwarded", f);
        }
        let peer: Identity = "spiffe://cluster.local/ns/default/sa/sleep"
            .parse()
            .expect("identity");
        let ztunnel: SocketAddr = "10.1.0.2:50000".parse().expect("addr");
        parse_request(&req.body(()).expect("request"), &peer, ztunnel).expect("valid CONNECT")
    }

    #[test]
    fn client_addr_is_the_forwarded_client_with_its_port() {
        // ztunnel's form: the application's own source address and port.
        let req = connect(Some("for=\"10.0.0.7:41234\";host=reviews"));
        assert_eq!(req.client_addr(), "10.0.0.7:41234".parse().unwrap());
    }

    #[test]
    fn client_addr_without_a_forwarded_port_is_port_zero() {
        let req = connect(Some("for=10.0.0.7"));
        assert_eq!(req.client_addr(), "10.0.0.7:0".parse().unwrap());
    }

    #[test]
    fn client_addr_without_forwarded_is_the_ztunnel() {
        // An obfuscated `for=` names no address: the TCP peer is all we know.
        for f in [None, Some("for=_hidden")] {
            assert_eq!(connect(f).client_addr(), "10.1.0.2:50000".parse().unwrap());
        }
    }
}
