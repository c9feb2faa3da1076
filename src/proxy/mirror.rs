//! RequestMirror: a copy of the request goes to the mirror backend, fire and
//! forget. The mirror's response is read and dropped, and the main request
//! never waits for it. As Envoy does, the mirrored Host gets a `-shadow`
//! suffix so the mirror can tell copies from real traffic.
//!
//! Bodies are not mirrored: the copy carries the method, path and headers.

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use pingora_http::RequestHeader;
use tracing::debug;

use crate::routing::Mirror;

/// Sends mirrored requests; cheap to clone, pools its connections.
#[derive(Clone)]
pub struct Mirrorer {
    client: Client<HttpConnector, Empty<Bytes>>,
}

impl Default for Mirrorer {
    fn default() -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        Self {
            client: Client::builder(TokioExecutor::new()).build(connector),
        }
    }
}

impl Mirrorer {
    /// Spawns one copy of `req` per mirror.
    pub fn send(&self, mirrors: &[Mirror], req: &RequestHeader) {
        for mirror in mirrors {
            let Some(picked) = mirror.endpoints.pick(&[]) else {
                debug!(backend = %mirror.backend.service.key, "mirror has no endpoints");
                continue;
            };
            let addr = picked.endpoint.addr;
            let path = req.uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
            let Ok(uri) = format!("http://{addr}{path}").parse::<http::Uri>() else {
                continue;
            };
            let mut builder = http::Request::builder().method(req.method.clone()).uri(uri);
            for (name, value) in req.headers.iter() {
                if name == http::header::HOST {
                    continue;
                }
                builder = builder.header(name, value);
            }
            let host = crate::proxy::headers::host(req).unwrap_or("");
            let shadow = match host.rsplit_once(':') {
                Some((h, port)) if port.chars().all(|c| c.is_ascii_digit()) => {
                    format!("{h}-shadow:{port}")
                }
                _ => format!("{host}-shadow"),
            };
            builder = builder.header(http::header::HOST, shadow);
            let Ok(request) = builder.body(Empty::new()) else {
                continue;
            };
            let client = self.client.clone();
            tokio::spawn(async move {
                // Holding `picked` keeps the endpoint's active count honest.
                let _picked = picked;
                match client.request(request).await {
                    Ok(resp) => {
                        let _ = resp.into_body().collect().await;
                    }
                    Err(e) => debug!(%addr, error = %e, "mirror request failed"),
                }
            });
        }
    }
}
