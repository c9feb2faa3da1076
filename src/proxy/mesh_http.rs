//! One HTTP/1.1 exchange with a Service or ServiceEntry of the config, made
//! by the waypoint itself (a `jwksUri` fetch, an external authorization
//! check): the host resolved in the request's snapshot, one endpoint picked,
//! the connection from the one dialer (HBONE to in-mesh endpoints).

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::rt::TokioIo;

use crate::store::Published;
use crate::upstream::dial::{DialTarget, Dialer, Originator};
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
