//! WebSocket over HTTP/2 (RFC 8441): an extended CONNECT with `:protocol:
//! websocket` on an h2c connection (the plain listener, or inside an HBONE
//! tunnel) is served as Envoy serves it.
//!
//! The request is read as the HTTP/1.1 upgrade it stands for — `GET` with
//! `Upgrade: websocket` — before authorization and routing, so policies and
//! HTTPRoute matches see the same request either way. The backend gets that
//! HTTP/1.1 upgrade (with the `Sec-WebSocket-Key` an HTTP/1.1 handshake needs);
//! its `101` becomes the client's `200`, and from then on the stream's DATA
//! frames and the backend connection's bytes are spliced until either side
//! ends or neither carries a byte for `--upgrade-idle-timeout`.
//!
//! Pingora's proxy cannot carry this (its HTTP/2 downstream has no upgraded
//! mode), so the exchange is driven here from `request_filter`, through the
//! one dialer.

use base64::Engine;
use bytes::Bytes;
use http::{header, Method, StatusCode, Version};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use pingora_error::{Error, ErrorType, Result};
use pingora_http::{RequestHeader, ResponseHeader};
use pingora_proxy::Session;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tracing::debug;

use crate::upstream::dial::DialTarget;

use super::ctx::RequestCtx;
use super::failure::Failure;
use super::Waypoint;

/// The `:protocol` this module serves.
const WEBSOCKET: &str = "websocket";

/// Response headers that describe the HTTP/1.1 handshake, not the stream.
const HANDSHAKE_ONLY: [&str; 5] = [
    "connection",
    "upgrade",
    "sec-websocket-accept",
    "keep-alive",
    "transfer-encoding",
];

/// What an HTTP/2 CONNECT asks for.
#[derive(Debug, PartialEq, Eq)]
pub enum Connect {
    /// Not a CONNECT.
    None,
    /// RFC 8441 `:protocol: websocket`.
    WebSocket,
    /// A classic CONNECT, or another `:protocol`: the waypoint is no
    /// forward proxy.
    Unsupported,
}

pub fn connect_kind(req: &RequestHeader) -> Connect {
    if req.method != Method::CONNECT {
        return Connect::None;
    }
    match req.extensions.get::<h2::ext::Protocol>() {
        Some(p) if p.as_str().eq_ignore_ascii_case(WEBSOCKET) => Connect::WebSocket,
        _ => Connect::Unsupported,
    }
}

/// Rewrites an extended CONNECT into the HTTP/1.1 upgrade request it stands
/// for (RFC 8441 §5), as Envoy's codec does before its filters run.
pub fn as_http1_upgrade(req: &mut RequestHeader) -> Result<()> {
    req.set_method(Method::GET);
    req.extensions_mut().remove::<h2::ext::Protocol>();
    req.insert_header(header::CONNECTION, "Upgrade")?;
    req.insert_header(header::UPGRADE, WEBSOCKET)?;
    Ok(())
}

impl Waypoint {
    /// Serves a routed RFC 8441 WebSocket (see the module docs); the response
    /// is written here, so the phase answers `Ok(true)`.
    pub(super) async fn websocket_over_h2(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> Result<bool> {
        let picked = self.pick_attempt(ctx)?;
        let target = DialTarget {
            addr: picked.endpoint.addr,
            in_mesh: picked.endpoint.in_mesh,
        };
        ctx.attempts.picked = Some(picked);
        let io = match self.dialer.connect(target, &ctx.caller.originator()).await {
            Ok(io) => io,
            Err(e) => {
                debug!(addr = %target.addr, error = %e, "WebSocket backend unreachable");
                return self.answer(session, ctx, Failure::ConnectFailure).await;
            }
        };
        let request = self.backend_handshake(session.req_header(), ctx)?;
        let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
            .await
            .map_err(|e| Error::because(ErrorType::ConnectError, "WebSocket backend", e))?;
        tokio::spawn(conn.with_upgrades());
        let response = match send.send_request(request).await {
            Ok(r) => r,
            Err(e) => {
                debug!(error = %e, "WebSocket handshake with the backend failed");
                return self.answer(session, ctx, Failure::UpstreamReset).await;
            }
        };
        if response.status() != StatusCode::SWITCHING_PROTOCOLS {
            return self.relay_refusal(session, ctx, response).await;
        }
        let head = self.client_head(StatusCode::OK, response.headers(), ctx)?;
        let upgraded = hyper::upgrade::on(response)
            .await
            .map_err(|e| Error::because(ErrorType::ReadError, "WebSocket upgrade", e))?;
        session.write_response_header(head, false).await?;
        self.splice(session, TokioIo::new(upgraded)).await;
        Ok(true)
    }

    /// The HTTP/1.1 handshake for the backend: the request as routed, with the
    /// route's request filters and a fresh `Sec-WebSocket-Key`.
    fn backend_handshake(
        &self,
        req: &RequestHeader,
        ctx: &RequestCtx,
    ) -> Result<http::Request<Empty<Bytes>>> {
        let mut up = req.clone();
        up.set_version(Version::HTTP_11);
        if let Some(host) = super::headers::host(req).map(str::to_string) {
            up.insert_header(header::HOST, host)?;
        }
        let key: [u8; 16] = rand::random();
        up.insert_header(
            "sec-websocket-key",
            base64::engine::general_purpose::STANDARD.encode(key),
        )?;
        if !up.headers.contains_key("sec-websocket-version") {
            up.insert_header("sec-websocket-version", "13")?;
        }
        self.prepare_upstream_request(&mut up, ctx)?;
        let path = up.uri.path_and_query().map_or("/", |p| p.as_str());
        let mut builder = http::Request::get(path);
        for (name, value) in up.headers.iter() {
            builder = builder.header(name, value);
        }
        builder
            .body(Empty::new())
            .map_err(|e| Error::because(ErrorType::InternalError, "WebSocket handshake", e))
    }

    /// The client's response head: `status`, the backend's headers but the
    /// HTTP/1.1 handshake's, and the route's response filters.
    fn client_head(
        &self,
        status: StatusCode,
        from: &http::HeaderMap,
        ctx: &RequestCtx,
    ) -> Result<Box<ResponseHeader>> {
        let mut head = ResponseHeader::build(status, Some(from.len()))?;
        for (name, value) in from {
            if !HANDSHAKE_ONLY.contains(&name.as_str()) {
                head.append_header(name.clone(), value.clone())?;
            }
        }
        if let Some(plan) = ctx.routed.plan.as_ref() {
            for m in &plan.response_headers {
                m.apply(&mut head);
            }
        }
        Ok(Box::new(head))
    }

    /// The backend answered the handshake with something else than 101: the
    /// client gets that answer.
    async fn relay_refusal(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        response: http::Response<hyper::body::Incoming>,
    ) -> Result<bool> {
        let head = self.client_head(response.status(), response.headers(), ctx)?;
        let body = response
            .into_body()
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        session.write_response_header(head, body.is_empty()).await?;
        if !body.is_empty() {
            session.write_response_body(Some(body), true).await?;
        }
        Ok(true)
    }

    /// Bytes both ways until either side ends, an error, or a quiet spell of
    /// the idle timeout.
    async fn splice<S>(&self, session: &mut Session, mut backend: S)
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    {
        let idle = self.settings.upgrade_idle_timeout;
        let mut buf = vec![0u8; 16 * 1024];
        let mut client_open = true;
        loop {
            tokio::select! {
                body = session.read_request_body(), if client_open => match body {
                    Ok(Some(data)) => {
                        if backend.write_all(&data).await.is_err() {
                            break;
                        }
                    }
                    Ok(None) => {
                        // The client ended its side: half-close towards the backend.
                        client_open = false;
                        let _ = backend.shutdown().await;
                    }
                    Err(e) => {
                        debug!(error = %e, "WebSocket client stream failed");
                        break;
                    }
                },
                read = backend.read(&mut buf) => match read {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        let chunk = Bytes::copy_from_slice(&buf[..n]);
                        if session.write_response_body(Some(chunk), false).await.is_err() {
                            break;
                        }
                    }
                },
                _ = tokio::time::sleep(idle) => {
                    debug!(?idle, "WebSocket idle: closing");
                    break;
                }
            }
        }
        // The stream ends either way; a WebSocket cut without its close frame
        // tells the client so.
        let _ = session.write_response_body(None, true).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn connect(protocol: Option<&'static str>) -> RequestHeader {
        let mut req = RequestHeader::build(Method::CONNECT, b"/chat", None).unwrap();
        if let Some(p) = protocol {
            req.extensions_mut()
                .insert(h2::ext::Protocol::from_static(p));
        }
        req
    }

    #[test]
    fn only_websocket_connects_are_served() {
        assert_eq!(
            connect_kind(&connect(Some("websocket"))),
            Connect::WebSocket
        );
        assert_eq!(
            connect_kind(&connect(Some("connect-udp"))),
            Connect::Unsupported
        );
        assert_eq!(connect_kind(&connect(None)), Connect::Unsupported);
        let get = RequestHeader::build(Method::GET, b"/", None).unwrap();
        assert_eq!(connect_kind(&get), Connect::None);
    }

    #[test]
    fn an_extended_connect_reads_as_a_get_upgrade() {
        let mut req = connect(Some("websocket"));
        as_http1_upgrade(&mut req).unwrap();
        assert_eq!(req.method, Method::GET);
        assert_eq!(req.headers["upgrade"], "websocket");
        assert_eq!(req.headers["connection"], "Upgrade");
        assert_eq!(connect_kind(&req), Connect::None);
    }
}
