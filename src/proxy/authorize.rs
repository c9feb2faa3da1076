//! RequestAuthentication and AuthorizationPolicy at the moment Istio's
//! waypoint applies them: once the destination is known, before routing (and
//! before proxy-wasm plugins but those of the AUTHN and AUTHZ phases). Both
//! request paths call `authorize` and `settle_authz`; with no policy
//! configured `authorize` is one `is_empty` check.

use std::borrow::Cow;

use pingora_error::Result;
use pingora_http::RequestHeader;
use pingora_proxy::Session;
use tracing::debug;

use crate::authz::{self, Attributes, HttpAttributes, Verdict};
use crate::hbone::ConnectTarget;
use crate::inbound::Caller;
use crate::routing::DestinationPort;
use crate::store::Published;

use super::ctx::RequestCtx;
use super::failure::Failure;
use super::{headers, Waypoint};

impl Waypoint {
    /// `request_filter`'s authorization step: RequestAuthentication, then a
    /// CUSTOM policy's external check, then DENY/ALLOW. `Some` when the
    /// waypoint answered the request itself.
    pub(super) async fn authorization(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        published: &Published,
        destination: &DestinationPort,
        tunnel_target: Option<&ConnectTarget>,
    ) -> Result<Option<bool>> {
        let Some(verdict) = Self::authorize(
            published,
            destination,
            session.req_header_mut(),
            &ctx.caller,
            tunnel_target,
        ) else {
            return Ok(None);
        };
        // CUSTOM first: its service's answer wins over DENY and ALLOW.
        if let Some(custom) = verdict.custom() {
            if let Some(denied) = self
                .ask_provider(published, custom, session.req_header_mut(), ctx)
                .await
            {
                return self.answer(session, ctx, denied).await.map(Some);
            }
        }
        match self.settle_authz(ctx, &verdict, session.req_header()) {
            Ok(()) => Ok(None),
            Err(denied) => self.answer(session, ctx, denied).await.map(Some),
        }
    }

    /// The decision for this request when a policy or RequestAuthentication
    /// applies to its destination: a present JWT is verified first (an invalid
    /// one is refused with 401), then the policies decide. The path a policy
    /// judges is normalised (Istio's `BASE`), and the request goes on with
    /// that path, as Envoy forwards it: the backend never sees a path the
    /// policy did not.
    pub(super) fn authorize(
        published: &Published,
        destination: &DestinationPort,
        req: &mut RequestHeader,
        caller: &Caller,
        tunnel_target: Option<&ConnectTarget>,
    ) -> Option<Verdict> {
        let policies = published
            .authz
            .for_destination(destination.service.kind, &destination.service.key)?;
        let auth = match policies.authenticate(req) {
            Ok(auth) => auth,
            Err(failure) => return Some(Verdict::Unauthenticated(failure)),
        };
        normalize_path(req);
        let host = headers::host(req).unwrap_or("");
        let host = if host.bytes().any(|b| b.is_ascii_uppercase()) {
            Cow::Owned(host.to_ascii_lowercase())
        } else {
            Cow::Borrowed(host)
        };
        let source_ip = caller.client_ip.map(|c| c.ip());
        let destination_ip = match tunnel_target {
            Some(ConnectTarget::Addr(a)) => Some(a.ip()),
            _ => destination.service.addresses.first().copied(),
        };
        let attributes = Attributes {
            principal: caller.principal(),
            namespace: caller.namespace(),
            source_ip,
            remote_ip: source_ip,
            destination_ip,
            destination_port: destination.port.number,
            sni: caller.sni.as_deref(),
            http: Some(HttpAttributes {
                method: req.method.as_str(),
                path: req.uri.path(),
                host: &host,
                headers: &req.headers,
            }),
            auth: auth.as_ref(),
        };
        Some(Verdict::Decided(policies.evaluate(&attributes)))
    }

    /// Records `verdict` (metrics, the access log's details) and says
    /// whether the request may go on: `Err` is the answer to a refused one.
    pub(super) fn settle_authz(
        &self,
        ctx: &mut RequestCtx,
        verdict: &Verdict,
        req: &RequestHeader,
    ) -> Result<(), Failure> {
        let grpc = req
            .headers
            .get(http::header::CONTENT_TYPE)
            .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"));
        let decision = match verdict {
            Verdict::Decided(d) => d,
            Verdict::Unauthenticated(failure) => {
                ctx.reply.details = Some("jwt_authn_access_denied".to_string());
                debug!(reason = %failure, "JWT refused");
                return Err(Failure::Unauthenticated {
                    reason: *failure,
                    grpc,
                });
            }
        };
        for r in decision.records() {
            self.metrics
                .record_authz(r.policy_name(), r.action.as_str(), r.result);
        }
        if decision.allowed {
            return Ok(());
        }
        ctx.reply.details = decision.details();
        debug!(details = ?ctx.reply.details, "request denied by AuthorizationPolicy");
        Err(Failure::Denied { grpc })
    }
}

/// Rewrites the request's path to its normalised form when that differs.
fn normalize_path(req: &mut RequestHeader) {
    let Some(pq) = req.uri.path_and_query() else {
        return;
    };
    let Cow::Owned(path) = authz::path::normalize(pq.as_str()) else {
        // Already normal, or normal but for a query the policy does not read.
        return;
    };
    let rewritten = match pq.query() {
        Some(q) => format!("{path}?{q}"),
        None => path,
    };
    let mut parts = req.uri.clone().into_parts();
    let uri = rewritten.parse().map_err(http::Error::from).and_then(|pq| {
        parts.path_and_query = Some(pq);
        http::Uri::from_parts(parts).map_err(http::Error::from)
    });
    match uri {
        Ok(uri) => req.set_uri(uri),
        Err(e) => debug!(error = %e, "normalised path is not a URI; left as sent"),
    }
}
