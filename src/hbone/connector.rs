//! `HboneConnector`: Pingora's `L4Connect` over an HBONE CONNECT stream, for
//! `PeerOptions.custom_l4`. Pingora then speaks HTTP to the destination workload through
//! the tunnel as if it were a TCP connection. With a lease, a tunnel kept from an earlier
//! exchange is used first and the new one is kept afterwards (see `keepalive.rs`).

use std::net::SocketAddr;

use async_trait::async_trait;
use pingora_core::connectors::L4Connect;
use pingora_core::protocols::l4::socket::SocketAddr as PingoraAddr;
use pingora_core::protocols::l4::stream::Stream;
use pingora_core::protocols::l4::virt::VirtualSocketStream;
use pingora_error::{Error, ErrorType};

use super::error::HboneError;
use super::headers::OutboundHeaders;
use super::keepalive::{LeaseRef, OutboundTunnel};
use super::pool::HbonePool;

/// Opens an HBONE stream to `target` through the ztunnel at `ztunnel` whenever Pingora
/// connects to the peer it is attached to.
///
/// The address Pingora passes in is ignored: the tunnel's ends are fixed at construction.
/// Set the peer's `group_key` so Pingora's own pool never hands a plain connection to the
/// same address to an HBONE peer (custom_l4 is not part of the pool key), and use
/// `total_connection_timeout` (Pingora does not apply `connection_timeout` to custom L4).
#[derive(Debug, Clone)]
pub struct HboneConnector {
    pool: HbonePool,
    ztunnel: SocketAddr,
    target: SocketAddr,
    headers: OutboundHeaders,
    lease: Option<LeaseRef>,
}

impl HboneConnector {
    /// A connector for one (ztunnel, target) pair.
    pub fn new(
        pool: HbonePool,
        ztunnel: SocketAddr,
        target: SocketAddr,
        headers: OutboundHeaders,
    ) -> Self {
        HboneConnector {
            pool,
            ztunnel,
            target,
            headers,
            lease: None,
        }
    }

    /// Uses and returns kept tunnels through `lease`.
    pub fn with_lease(mut self, lease: LeaseRef) -> Self {
        self.lease = Some(lease);
        self
    }
}

/// Pingora's error type for an HBONE failure, so its retry and logging logic see the
/// right kind of connect error.
fn error_type(e: &HboneError) -> ErrorType {
    match e {
        HboneError::Timeout { .. } => ErrorType::ConnectTimedout,
        HboneError::Connect { .. } => ErrorType::ConnectRefused,
        HboneError::Tls { .. } | HboneError::NoH2 { .. } => ErrorType::TLSHandshakeFailure,
        HboneError::Status { .. } => ErrorType::ConnectProxyFailure,
        HboneError::H2 { .. } => ErrorType::ConnectError,
        HboneError::Request { .. } => ErrorType::InternalError,
    }
}

#[async_trait]
impl L4Connect for HboneConnector {
    async fn connect(&self, _addr: &PingoraAddr) -> pingora_error::Result<Stream> {
        let wrap = |stream| -> Stream {
            let tunnel = match &self.lease {
                Some(lease) => lease.wrap(stream),
                None => OutboundTunnel::closing(stream),
            };
            Stream::from(VirtualSocketStream::new(Box::new(tunnel)))
        };
        if let Some(kept) = self.lease.as_ref().and_then(LeaseRef::checkout) {
            return Ok(wrap(kept));
        }
        match self
            .pool
            .connect(self.ztunnel, self.target, &self.headers)
            .await
        {
            Ok(stream) => Ok(wrap(stream)),
            Err(e) => {
                let etype = error_type(&e);
                let retry = e.is_retryable();
                let mut err = Error::because(
                    etype,
                    format!("HBONE CONNECT {} via {}", self.target, self.ztunnel),
                    e,
                );
                err.set_retry(retry);
                Err(err)
            }
        }
    }
}
