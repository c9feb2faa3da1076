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
        session.write_response_header(Box::new(resp), false).await?;
        session.write_response_body(Some(body), true).await?;
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
/// `ctx` as the waypoint's own answer.
pub(super) fn failure_reply(
    ctx: &mut RequestCtx,
    failure: Failure,
) -> Result<(ResponseHeader, Bytes)> {
    let body = Bytes::from(failure.body());
    let mut resp = ResponseHeader::build(failure.status(), Some(4))?;
    resp.insert_header(http::header::CONTENT_TYPE, failure.content_type())?;
    resp.insert_header(http::header::CONTENT_LENGTH, body.len().to_string())?;
    for (name, value) in failure.extra_headers() {
        resp.insert_header(name, value)?;
    }
    ctx.reply.flags.insert(failure.flags());
    ctx.reply.local_status = Some(failure.status());
    ctx.reply.failure = Some(failure);
    Ok((resp, body))
}
