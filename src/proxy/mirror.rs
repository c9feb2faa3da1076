//! RequestMirror: a copy of the request goes to the mirror backend, fire and
//! forget. The mirror's response is read and dropped, and the main request
//! never waits for it. As Envoy does, the mirrored Host gets a `-shadow`
//! suffix so the mirror can tell copies from real traffic.
//!
//! The dialer decides the transport, as for every upstream connection: an
//! in-mesh mirror endpoint gets the copy over HBONE (a CONNECT stream per
//! copy, on a pooled mTLS connection to its ztunnel); a plain one over a
//! pooled HTTP/1.1 connection. A mirror port that speaks HTTP/2 (gRPC) gets
//! the copy over HTTP/2, on a connection of its own.
//!
//! Request bodies are mirrored up to [`MIRROR_BODY_LIMIT`]: a request with a
//! body is copied once its body has been read (as it streams to the backend,
//! never held up by the mirror). A larger body is not buffered further: the
//! copy goes with headers only (and no body framing), counted in
//! `waypoint_mirror_requests_total{body="too_large"}`.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::{TokioExecutor, TokioIo};
use pingora_http::RequestHeader;
use tracing::debug;

use crate::routing::Mirror;
use crate::telemetry::Metrics;
use crate::upstream::dial::{DialTarget, Dialer, Originator, Transport};

/// The largest request body a mirror copy carries.
pub const MIRROR_BODY_LIMIT: usize = 256 * 1024;

/// Sends mirrored requests; cheap to clone.
#[derive(Clone)]
pub struct Mirrorer {
    dialer: Arc<Dialer>,
    /// Pooled plain connections (the dialer chose plain for these endpoints).
    plain: Client<HttpConnector, Full<Bytes>>,
    metrics: Arc<Metrics>,
}

/// What a copy carries of the request body (the `body` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BodyCopy {
    /// The request had none.
    None,
    /// All of it.
    Copied,
    /// It was over [`MIRROR_BODY_LIMIT`]: headers only.
    TooLarge,
}

impl BodyCopy {
    fn label(self) -> &'static str {
        match self {
            BodyCopy::None => "none",
            BodyCopy::Copied => "copied",
            BodyCopy::TooLarge => "too_large",
        }
    }
}

/// Mirror copies waiting for the request body (see the module docs).
pub struct PendingMirror {
    mirrors: Vec<Mirror>,
    header: RequestHeader,
    on_behalf_of: Originator,
    body: BytesMut,
}

impl PendingMirror {
    /// Takes the next chunk of the body as sent upstream; the copies go when
    /// the body ends, or headers-only once it outgrows the limit. `None` once
    /// sent.
    pub fn push(mut self, mirrorer: &Mirrorer, chunk: Option<&Bytes>, end: bool) -> Option<Self> {
        if let Some(chunk) = chunk {
            if self.body.len() + chunk.len() > MIRROR_BODY_LIMIT {
                mirrorer.send_now(&self.mirrors, &self.header, &self.on_behalf_of, None);
                return None;
            }
            self.body.extend_from_slice(chunk);
        }
        if end {
            let body = self.body.freeze();
            mirrorer.send_now(&self.mirrors, &self.header, &self.on_behalf_of, Some(body));
            return None;
        }
        Some(self)
    }

    /// A retry replays the body from its start.
    pub fn restart(&mut self) {
        self.body.clear();
    }
}

impl Mirrorer {
    pub fn new(dialer: Arc<Dialer>, metrics: Arc<Metrics>) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(dialer.connect_timeout()));
        Self {
            dialer,
            plain: Client::builder(TokioExecutor::new()).build(connector),
            metrics,
        }
    }

    /// Copies `req` to every mirror: now when it has no body, else once the
    /// body has been read (the caller feeds it to the returned
    /// [`PendingMirror`]).
    pub fn start(
        &self,
        mirrors: &[Mirror],
        req: &RequestHeader,
        on_behalf_of: &Originator,
        has_body: bool,
    ) -> Option<PendingMirror> {
        if !has_body {
            self.send_now(mirrors, req, on_behalf_of, Some(Bytes::new()));
            return None;
        }
        Some(PendingMirror {
            mirrors: mirrors.to_vec(),
            header: req.clone(),
            on_behalf_of: on_behalf_of.clone(),
            body: BytesMut::new(),
        })
    }

    /// Spawns one copy of `req` per mirror with `body` (`None`: it was too
    /// large to copy).
    fn send_now(
        &self,
        mirrors: &[Mirror],
        req: &RequestHeader,
        on_behalf_of: &Originator,
        body: Option<Bytes>,
    ) {
        let copy = match &body {
            None => BodyCopy::TooLarge,
            Some(b) if b.is_empty() => BodyCopy::None,
            Some(_) => BodyCopy::Copied,
        };
        let body = body.unwrap_or_default();
        for mirror in mirrors {
            let Some(picked) = mirror.endpoints.pick(&[]) else {
                debug!(backend = %mirror.backend.service.key, "mirror has no endpoints");
                continue;
            };
            let target = DialTarget {
                addr: picked.endpoint.addr,
                in_mesh: picked.endpoint.in_mesh,
            };
            let form = if mirror.backend.port.speaks_h2c() {
                Form::Http2
            } else if self.dialer.transport(target) == Transport::Plain {
                Form::PooledHttp1
            } else {
                Form::Http1
            };
            let Some(request) = shadow_copy(req, target, form, body.clone()) else {
                continue;
            };
            self.metrics
                .record_mirror(&mirror.backend.service.hostname, copy.label());
            let this = self.clone();
            let on_behalf_of = on_behalf_of.clone();
            tokio::spawn(async move {
                // Holding `picked` keeps the endpoint's active count honest.
                let _picked = picked;
                if let Err(e) = this.deliver(target, request, &on_behalf_of, form).await {
                    debug!(addr = %target.addr, error = %e, "mirror request failed");
                }
            });
        }
    }

    async fn deliver(
        &self,
        target: DialTarget,
        request: http::Request<Full<Bytes>>,
        on_behalf_of: &Originator,
        form: Form,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        let response = match form {
            Form::PooledHttp1 => self.plain.request(request).await?,
            Form::Http1 => {
                let io = self.dialer.connect(target, on_behalf_of).await?;
                let (mut sender, conn) =
                    hyper::client::conn::http1::handshake(TokioIo::new(io)).await?;
                tokio::spawn(conn);
                sender.send_request(request).await?
            }
            Form::Http2 => {
                let io = self.dialer.connect(target, on_behalf_of).await?;
                let (mut sender, conn) =
                    hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(io))
                        .await?;
                tokio::spawn(conn);
                sender.send_request(request).await?
            }
        };
        response.into_body().collect().await?;
        Ok(())
    }
}

/// How a copy goes out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Form {
    /// HTTP/1.1 on the pooled client, which connects to the URI's address.
    PooledHttp1,
    /// HTTP/1.1 on a stream the dialer opened (HBONE).
    Http1,
    /// HTTP/2 (gRPC and other h2c ports) on a stream the dialer opened.
    Http2,
}

/// The copy: same method, path and headers, Host (`:authority` over
/// HTTP/2) with `-shadow`, and `body` framed by its own length.
fn shadow_copy(
    req: &RequestHeader,
    target: DialTarget,
    form: Form,
    body: Bytes,
) -> Option<http::Request<Full<Bytes>>> {
    let path = req.uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    let host = super::headers::host(req).unwrap_or("");
    let shadow = match super::headers::split_port(host) {
        (name, Some(port)) => format!("{name}-shadow:{port}"),
        (name, None) => format!("{name}-shadow"),
    };
    let uri = match form {
        Form::PooledHttp1 => format!("http://{}{path}", target.addr),
        Form::Http1 => path.to_string(),
        Form::Http2 => format!("http://{shadow}{path}"),
    }
    .parse::<http::Uri>()
    .ok()?;
    let mut builder = http::Request::builder().method(req.method.clone()).uri(uri);
    for (name, value) in req.headers.iter() {
        if name == http::header::HOST
            || name == http::header::CONTENT_LENGTH
            || name == http::header::TRANSFER_ENCODING
        {
            continue;
        }
        builder = builder.header(name, value);
    }
    if form != Form::Http2 {
        builder = builder.header(http::header::HOST, shadow);
    }
    if !body.is_empty() {
        builder = builder.header(http::header::CONTENT_LENGTH, body.len());
    }
    builder.body(Full::new(body)).ok()
}
