//! RequestMirror: a copy of the request goes to the mirror backend, fire and
//! forget. The mirror's response is read and dropped, and the main request
//! never waits for it. As Envoy does, the mirrored Host gets a `-shadow`
//! suffix so the mirror can tell copies from real traffic.
//!
//! The dialer decides the transport, as for every upstream connection: an
//! in-mesh mirror endpoint gets the copy over HBONE (a CONNECT stream per
//! copy, on a pooled mTLS connection to its ztunnel); a plain one over a
//! pooled HTTP/1.1 connection.
//!
//! Bodies are not mirrored: the copy carries the method, path and headers.

use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::{TokioExecutor, TokioIo};
use pingora_http::RequestHeader;
use tracing::debug;

use crate::routing::Mirror;
use crate::upstream::dial::{DialTarget, Dialer, Originator, Transport};

/// Sends mirrored requests; cheap to clone.
#[derive(Clone)]
pub struct Mirrorer {
    dialer: Arc<Dialer>,
    /// Pooled plain connections (the dialer chose plain for these endpoints).
    plain: Client<HttpConnector, Empty<Bytes>>,
}

impl Mirrorer {
    pub fn new(dialer: Arc<Dialer>) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(dialer.connect_timeout()));
        Self {
            dialer,
            plain: Client::builder(TokioExecutor::new()).build(connector),
        }
    }

    /// Spawns one copy of `req` per mirror.
    pub fn send(&self, mirrors: &[Mirror], req: &RequestHeader, on_behalf_of: &Originator) {
        for mirror in mirrors {
            let Some(picked) = mirror.endpoints.pick(&[]) else {
                debug!(backend = %mirror.backend.service.key, "mirror has no endpoints");
                continue;
            };
            let target = DialTarget {
                addr: picked.endpoint.addr,
                in_mesh: picked.endpoint.in_mesh,
            };
            // The pooled client wants an absolute URI to know where to connect;
            // over a stream the dialer opened, the request line is origin-form.
            let absolute = self.dialer.transport(target) == Transport::Plain;
            let Some(request) = shadow_copy(req, target, absolute) else {
                continue;
            };
            let this = self.clone();
            let on_behalf_of = on_behalf_of.clone();
            tokio::spawn(async move {
                // Holding `picked` keeps the endpoint's active count honest.
                let _picked = picked;
                if let Err(e) = this.deliver(target, request, &on_behalf_of).await {
                    debug!(addr = %target.addr, error = %e, "mirror request failed");
                }
            });
        }
    }

    async fn deliver(
        &self,
        target: DialTarget,
        request: http::Request<Empty<Bytes>>,
        on_behalf_of: &Originator,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        let response = match self.dialer.transport(target) {
            Transport::Plain => self.plain.request(request).await?,
            Transport::Hbone { .. } => {
                let io = self.dialer.connect(target, on_behalf_of).await?;
                let (mut sender, conn) =
                    hyper::client::conn::http1::handshake(TokioIo::new(io)).await?;
                tokio::spawn(conn);
                sender.send_request(request).await?
            }
        };
        response.into_body().collect().await?;
        Ok(())
    }
}

/// The copy: same method, path and headers, Host with `-shadow`.
fn shadow_copy(
    req: &RequestHeader,
    target: DialTarget,
    absolute: bool,
) -> Option<http::Request<Empty<Bytes>>> {
    let path = req.uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    let uri = if absolute {
        format!("http://{}{path}", target.addr).parse::<http::Uri>()
    } else {
        path.parse::<http::Uri>()
    }
    .ok()?;
    let mut builder = http::Request::builder().method(req.method.clone()).uri(uri);
    for (name, value) in req.headers.iter() {
        if name == http::header::HOST {
            continue;
        }
        builder = builder.header(name, value);
    }
    let host = super::headers::host(req).unwrap_or("");
    let shadow = match super::headers::split_port(host) {
        (name, Some(port)) => format!("{name}-shadow:{port}"),
        (name, None) => format!("{name}-shadow"),
    };
    builder = builder.header(http::header::HOST, shadow);
    builder.body(Empty::new()).ok()
}
