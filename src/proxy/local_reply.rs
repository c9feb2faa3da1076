//! Answers the waypoint writes itself: an error with Envoy's status, flag
//! and body ([`Failure`]), a RequestRedirect, and a route's own answer
//! ([`LocalReply`]: VirtualService `directResponse`, a CORS preflight).

use std::sync::Arc;

use bytes::Bytes;
use pingora_error::Result;
use pingora_http::ResponseHeader;
use pingora_proxy::Session;

use super::ctx::RequestCtx;
use super::failure::Failure;
use super::Waypoint;
use crate::routing::LocalReply;

impl Waypoint {
    /// Writes a response the waypoint produced itself and records why.
    pub(super) async fn answer(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        failure: Failure,
    ) -> Result<bool> {
        let (resp, body) = failure_reply(ctx, failure)?;
        if body.is_empty() {
            // Trailers-only for gRPC: one HEADERS frame ending the stream.
            session.write_response_header(Box::new(resp), true).await?;
        } else {
            session.write_response_header(Box::new(resp), false).await?;
            session.write_response_body(Some(body), true).await?;
        }
        Ok(true)
    }

    /// Answers a RequestRedirect filter.
    pub(super) async fn redirect(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        status: u16,
        location: &str,
        response_headers: &[Arc<crate::routing::HeaderModifier>],
    ) -> Result<bool> {
        let mut resp = ResponseHeader::build(status, Some(3))?;
        resp.insert_header(http::header::LOCATION, location)?;
        resp.insert_header(http::header::CONTENT_LENGTH, "0")?;
        for m in response_headers {
            m.apply(&mut resp);
        }
        ctx.reply.local_status = Some(status);
        session.write_response_header(Box::new(resp), true).await?;
        Ok(true)
    }
}

impl Waypoint {
    /// Answers with a route's own response. No response flag, as Envoy;
    /// `response_code_details` says which (`direct_response`, `cors_response`).
    pub(super) async fn respond_locally(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        reply: &LocalReply,
    ) -> Result<bool> {
        let mut resp = ResponseHeader::build(reply.status, Some(reply.headers.len() + 1))?;
        for (name, value) in &reply.headers {
            resp.insert_header(name.clone(), value.clone())?;
        }
        resp.insert_header(http::header::CONTENT_LENGTH, reply.body.len().to_string())?;
        for m in &reply.response_headers {
            m.apply(&mut resp);
        }
        ctx.reply.local_status = Some(reply.status);
        ctx.reply.details = Some(reply.details.to_string());
        let empty = reply.body.is_empty();
        session.write_response_header(Box::new(resp), empty).await?;
        if !empty {
            session
                .write_response_body(Some(reply.body.clone()), true)
                .await?;
        }
        Ok(true)
    }
}

/// The response Envoy would send for `failure` (status, flag, body), noted in
/// `ctx` as the waypoint's own answer. A gRPC caller (`ctx.reply.grpc`) gets
/// Envoy's trailers-only form instead: 200, `content-type: application/grpc`,
/// `grpc-status` and `grpc-message` in the headers, no body.
pub(super) fn failure_reply(
    ctx: &mut RequestCtx,
    failure: Failure,
) -> Result<(ResponseHeader, Bytes)> {
    let grpc = ctx.reply.grpc || failure.is_grpc();
    let status = failure.status_for(grpc);
    let body = if grpc {
        Bytes::new()
    } else {
        Bytes::from(failure.body())
    };
    let mut resp = ResponseHeader::build(status, Some(6))?;
    let content_type = if grpc {
        "application/grpc"
    } else {
        failure.content_type()
    };
    resp.insert_header(http::header::CONTENT_TYPE, content_type)?;
    resp.insert_header(http::header::CONTENT_LENGTH, body.len().to_string())?;
    for (name, value) in failure.extra_headers() {
        resp.insert_header(name, value)?;
    }
    if grpc {
        let code = failure.grpc_status();
        resp.insert_header("grpc-status", code.to_string())?;
        resp.insert_header("grpc-message", grpc_message_encode(&failure.message()))?;
        ctx.reply.grpc_status = Some(code);
    }
    ctx.reply.flags.insert(failure.flags());
    ctx.reply.local_status = Some(status);
    ctx.reply.failure = Some(failure);
    Ok((resp, body))
}

/// `grpc-message` is percent-encoded (gRPC over HTTP/2: every byte outside
/// printable ASCII, and `%` itself).
fn grpc_message_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if (0x20..=0x7e).contains(&b) && b != b'%' {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(grpc: bool, failure: Failure) -> (ResponseHeader, Bytes, RequestCtx) {
        let mut ctx = RequestCtx::default();
        ctx.reply.grpc = grpc;
        let (resp, body) = failure_reply(&mut ctx, failure).unwrap();
        (resp, body, ctx)
    }

    fn header<'a>(resp: &'a ResponseHeader, name: &str) -> Option<&'a str> {
        resp.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// One row per answer the waypoint writes to a gRPC caller: HTTP 200,
    /// `application/grpc`, no body, and Envoy's `grpc-status`.
    #[test]
    fn grpc_callers_get_trailers_only_answers() {
        use crate::policy::Abort;
        let rows: &[(Failure, &str, &str)] = &[
            (Failure::NoRoute, "12", "no route matched"),
            (Failure::UnknownDestination("x".into()), "12", "no Service or ServiceEntry serves host x"),
            (Failure::InvalidBackend("gone".into()), "2", "invalid backend: gone"),
            (Failure::NoHealthyUpstream, "14", "no healthy upstream"),
            (Failure::ConnectFailure, "14", "upstream connect error or disconnect/reset before headers. reset reason: connection failure"),
            (Failure::UpstreamReset, "14", "upstream connect error or disconnect/reset before headers. reset reason: connection termination"),
            (Failure::UpstreamTimeout, "4", "upstream request timeout"),
            (Failure::Overflow, "14", "upstream overflow (circuit breaker)"),
            (Failure::Overloaded, "14", "envoy overloaded"),
            (Failure::BadRequest, "13", "bad request"),
            (Failure::HeadersTooLarge, "2", "request header fields too large"),
            (Failure::Internal, "2", "internal error"),
            (Failure::FaultAbort(Abort::Http(503)), "14", "fault filter abort"),
            (Failure::FaultAbort(Abort::Grpc(8)), "8", "fault filter abort"),
            (Failure::Denied { grpc: true }, "7", "RBAC: access denied"),
        ];
        for (failure, code, message) in rows {
            let (resp, body, ctx) = reply(true, failure.clone());
            assert_eq!(resp.status.as_u16(), 200, "{failure:?}");
            assert_eq!(
                header(&resp, "content-type"),
                Some("application/grpc"),
                "{failure:?}"
            );
            assert_eq!(header(&resp, "grpc-status"), Some(*code), "{failure:?}");
            assert_eq!(header(&resp, "grpc-message"), Some(*message), "{failure:?}");
            assert!(body.is_empty(), "{failure:?}: trailers-only");
            assert_eq!(ctx.reply.local_status, Some(200));
            assert_eq!(ctx.reply.grpc_status, Some(code.parse().unwrap()));
            assert_eq!(ctx.reply.flags, failure.flags(), "{failure:?}: flag kept");
        }
    }

    #[test]
    fn http_callers_keep_envoys_status_and_body() {
        let (resp, body, ctx) = reply(false, Failure::UpstreamTimeout);
        assert_eq!(resp.status.as_u16(), 504);
        assert_eq!(header(&resp, "content-type"), Some("text/plain"));
        assert_eq!(header(&resp, "grpc-status"), None);
        assert_eq!(&body[..], b"upstream request timeout");
        assert_eq!(ctx.reply.grpc_status, None);
    }

    #[test]
    fn a_grpc_fault_abort_is_grpc_even_for_a_plain_caller() {
        let (resp, body, _) = reply(false, Failure::FaultAbort(crate::policy::Abort::Grpc(14)));
        assert_eq!(resp.status.as_u16(), 200);
        assert_eq!(header(&resp, "grpc-status"), Some("14"));
        assert!(body.is_empty());
    }

    #[test]
    fn grpc_message_is_percent_encoded() {
        assert_eq!(grpc_message_encode("a b%c\n"), "a b%25c%0A");
        assert_eq!(grpc_message_encode("Jwt is expired"), "Jwt is expired");
    }
}
