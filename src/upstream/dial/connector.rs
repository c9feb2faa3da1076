//! The dialer as a tower connector (`Service<Uri>`), for HTTP clients that
//! manage their own connections: tonic channels (the CUSTOM check's gRPC
//! flavour, the OTLP gRPC exporter) and hyper-util's pooling client (the OTLP
//! HTTP exporter). Each connection the client asks for is opened by
//! [`Dialer::connect`], so the one rule (HBONE to in-mesh endpoints) holds for
//! them too.
//!
//! What it does not own: which endpoint a host name means. The caller either
//! picked one already ([`DialConnector::to_endpoint`]) or hands over a
//! [`Resolve`] that the connector asks for every new connection.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use async_trait::async_trait;
use hyper_util::client::legacy::connect::{Connected, Connection};
use hyper_util::rt::TokioIo;
// tonic re-exports tower's `Service`, which hyper-util's client takes too.
use tonic::codegen::Service;

use super::{DialError, DialTarget, Dialer, Originator, UpstreamIo};

/// Finds the endpoint for a URI's authority (`host:port`) when a client
/// opens a connection. Implemented above the dialer, where the config is.
#[async_trait]
pub trait Resolve: Send + Sync {
    /// The endpoint to dial for `authority`.
    async fn resolve(&self, authority: &str) -> Result<DialTarget, DialError>;
}

/// Where a [`DialConnector`]'s connections go.
#[derive(Clone)]
enum To {
    /// One endpoint the caller picked.
    Endpoint(DialTarget),
    /// Whatever the resolver says for the requested URI, per connection.
    Resolved(Arc<dyn Resolve>),
}

/// Hands an HTTP client connections opened by the waypoint's dialer.
#[derive(Clone)]
pub struct DialConnector {
    dialer: Arc<Dialer>,
    to: To,
}

impl DialConnector {
    /// Every connection goes to `target` (whatever the URI says).
    pub fn to_endpoint(dialer: Arc<Dialer>, target: DialTarget) -> Self {
        Self {
            dialer,
            to: To::Endpoint(target),
        }
    }

    /// Each connection goes where `resolver` says the URI's authority is
    /// now: a long-lived client follows endpoint changes across reloads.
    pub fn resolving(dialer: Arc<Dialer>, resolver: Arc<dyn Resolve>) -> Self {
        Self {
            dialer,
            to: To::Resolved(resolver),
        }
    }
}

// By hand: the dialer and the resolver have nothing useful to print, and
// opentelemetry-http wants its client (which holds this connector) `Debug`.
impl fmt::Debug for DialConnector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.to {
            To::Endpoint(t) => f.debug_tuple("DialConnector").field(t).finish(),
            To::Resolved(_) => f.write_str("DialConnector(resolved per connection)"),
        }
    }
}

impl Service<http::Uri> for DialConnector {
    type Response = TokioIo<UpstreamIo>;
    type Error = DialError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: http::Uri) -> Self::Future {
        let (dialer, to) = (self.dialer.clone(), self.to.clone());
        Box::pin(async move {
            let target = match to {
                To::Endpoint(target) => target,
                To::Resolved(resolver) => {
                    let authority = uri.authority().map(|a| a.as_str()).unwrap_or_default();
                    resolver.resolve(authority).await?
                }
            };
            dialer
                .connect(target, &Originator::default())
                .await
                .map(TokioIo::new)
        })
    }
}

/// hyper-util's pooling client asks what it got; nothing beyond a byte
/// stream (no ALPN: the client's own settings pick HTTP/1.1 or HTTP/2).
impl Connection for UpstreamIo {
    fn connected(&self) -> Connected {
        Connected::new()
    }
}
