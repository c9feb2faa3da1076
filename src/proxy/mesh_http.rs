//! One HTTP/1.1 exchange with a Service or ServiceEntry of the config, made
//! by the waypoint itself (a `jwksUri` fetch, an external authorization
//! check): the host resolved in the request's snapshot, one endpoint picked,
//! the connection from the one dialer (HBONE to in-mesh endpoints). Also the
//! same resolution for long-lived clients ([`ConfigResolver`]: the OTLP span
//! exporter), done again for each connection in the current snapshot.

use std::net::SocketAddr;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::rt::TokioIo;

use crate::store::{Published, SnapshotStore};
use crate::upstream::dial::{DialError, DialTarget, Dialer, Originator, Resolve};
use crate::upstream::Picked;

/// Why an exchange failed (connection, protocol, or an answer too large).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ExchangeError(String);

fn err(e: impl std::fmt::Display) -> ExchangeError {
    ExchangeError(e.to_string())
}

/// An endpoint of `authority` (`host:port`, a Service or ServiceEntry host in
/// `published`) to dial; the pick counts as active until dropped.
pub fn endpoint(
    published: &Published,
    authority: &str,
) -> Result<(DialTarget, Picked), ExchangeError> {
    let snapshot = &published.snapshot;
    let destination = snapshot
        .find_destination_by_host(authority)
        .ok_or_else(|| err(format!("no Service or ServiceEntry serves {authority}")))?;
    let endpoints = snapshot
        .endpoints(&destination)
        .ok_or_else(|| err(format!("no endpoints for {authority}")))?;
    let picked = endpoints
        .pick(&[])
        .ok_or_else(|| err(format!("no healthy endpoint for {authority}")))?;
    let target = DialTarget {
        addr: picked.endpoint.addr,
        in_mesh: picked.endpoint.in_mesh,
    };
    Ok((target, picked))
}

/// Resolves `host:port` for a client that keeps its connections (the OTLP
/// exporter's) in the store's current snapshot, for each new connection:
/// a Service or ServiceEntry host (or VIP) of the config becomes one of its
/// endpoints, as for the CUSTOM check. A host the config does not know is
/// dialled plain: an IP address as it is, a name through DNS, as the
/// exporter did before it dialled through the dialer.
///
/// The pick is not held for the connection's life: the exporter's few
/// long-lived connections do not count as active requests for balancing.
pub struct ConfigResolver {
    store: Arc<SnapshotStore>,
}

impl ConfigResolver {
    /// Resolves in `store`'s snapshot at each connection.
    pub fn new(store: Arc<SnapshotStore>) -> Self {
        Self { store }
    }
}

#[async_trait]
impl Resolve for ConfigResolver {
    async fn resolve(&self, authority: &str) -> Result<DialTarget, DialError> {
        let unresolved = |reason: String| DialError::Unresolved {
            authority: authority.to_string(),
            reason,
        };
        let published = self.store.load();
        if published
            .snapshot
            .find_destination_by_host(authority)
            .is_some()
        {
            let (target, _picked) =
                endpoint(&published, authority).map_err(|e| unresolved(e.to_string()))?;
            return Ok(target);
        }
        if let Ok(addr) = authority.parse::<SocketAddr>() {
            return Ok(DialTarget {
                addr,
                in_mesh: false,
            });
        }
        let mut addrs = tokio::net::lookup_host(authority).await.map_err(|e| {
            unresolved(format!(
                "not a Service or ServiceEntry of the config, and DNS failed: {e}"
            ))
        })?;
        let addr = addrs
            .next()
            .ok_or_else(|| unresolved("DNS returned no address".to_string()))?;
        Ok(DialTarget {
            addr,
            in_mesh: false,
        })
    }
}

/// Sends `req` to `authority` (`host:port`, a Service or ServiceEntry host
/// in `published`) and reads the whole answer, at most `max_body` bytes.
pub async fn exchange(
    published: &Published,
    dialer: &Dialer,
    authority: &str,
    req: http::Request<Full<Bytes>>,
    max_body: usize,
) -> Result<http::Response<Bytes>, ExchangeError> {
    let (target, picked) = endpoint(published, authority)?;
    let stream = dialer
        .connect(target, &Originator::default())
        .await
        .map_err(err)?;
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(err)?;
    tokio::spawn(conn);
    let resp = send.send_request(req).await.map_err(err)?;
    let (parts, body) = resp.into_parts();
    let body = Limited::new(body, max_body)
        .collect()
        .await
        .map_err(err)?
        .to_bytes();
    drop(picked);
    Ok(http::Response::from_parts(parts, body))
}
