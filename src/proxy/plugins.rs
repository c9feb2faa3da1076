//! The proxy side of proxy-wasm: starting a request's plugin chain and
//! turning the plugins' verdicts into what Pingora does (answer locally,
//! reset, or go on with the edited headers).

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use pingora_http::{RequestHeader, ResponseHeader};
use pingora_proxy::Session;

use crate::routing::DestinationPort;
use crate::store::Published;
use crate::upstream::dial::{DialTarget, Dialer, Originator};
use crate::upstream::Picked;
use crate::wasm::{
    call_over, parse_cluster, HttpCallError, HttpCallRequest, HttpCallResponse, HttpCaller,
    HttpFilters, LocalResponse, RequestProps,
};

use super::ctx::RequestCtx;
use super::mesh_http::endpoint;

/// `proxy_http_call`s of one request: the cluster (a Service named like
/// Istio's clusters, `outbound|80||auth.ns.svc.cluster.local`, or as a
/// host) is resolved in the request's own snapshot to one of its endpoints,
/// and the connection is opened by the dialer — so a call to an in-mesh
/// Service goes over HBONE with the waypoint's identity.
pub struct SnapshotHttpCaller {
    published: Arc<Published>,
    dialer: Arc<Dialer>,
    on_behalf_of: Originator,
}

impl SnapshotHttpCaller {
    fn target(&self, cluster: &str) -> Option<(DialTarget, Picked)> {
        let (host, port) = parse_cluster(cluster);
        let authority = match port {
            Some(p) => format!("{host}:{p}"),
            None => host,
        };
        endpoint(&self.published, &authority).ok()
    }
}

#[async_trait::async_trait]
impl HttpCaller for SnapshotHttpCaller {
    fn knows_upstream(&self, cluster: &str) -> bool {
        self.target(cluster).is_some()
    }

    async fn call(&self, request: HttpCallRequest) -> Result<HttpCallResponse, HttpCallError> {
        let (target, _picked) = self
            .target(&request.cluster)
            .ok_or_else(|| HttpCallError::UnknownCluster(request.cluster.clone()))?;
        let connect = async {
            self.dialer
                .connect(target, &self.on_behalf_of)
                .await
                .map_err(|e| e.to_string())
        };
        call_over(connect, request).await
    }
}

/// Starts the chain for this request when any plugin applies to `dest`.
pub fn start(
    published: &Arc<Published>,
    session: &Session,
    ctx: &RequestCtx,
    dest: &DestinationPort,
    dialer: &Arc<Dialer>,
) -> Option<HttpFilters> {
    let chain = published
        .plugins
        .chain_for(&dest.service.key, dest.port.number);
    if chain.is_empty() {
        return None;
    }
    let req = session.req_header();
    let props = RequestProps {
        request_id: ctx.request_id.clone(),
        method: req.method.to_string(),
        scheme: "http".into(),
        authority: super::headers::host(req).unwrap_or("").to_string(),
        path: req
            .uri
            .path_and_query()
            .map(|p| p.to_string())
            .unwrap_or_else(|| "/".into()),
        protocol: if session.is_http2() {
            "HTTP/2"
        } else {
            "HTTP/1.1"
        }
        .into(),
        source: ctx.caller.client_ip.map(|ip| {
            SocketAddr::new(
                ip.ip(),
                session
                    .client_addr()
                    .and_then(|a| a.as_inet())
                    .map_or(0, |a| a.port()),
            )
        }),
        source_principal: ctx.caller.identity.as_ref().map(|i| i.to_string()),
        destination: dest
            .service
            .addresses
            .first()
            .map(|ip| SocketAddr::new(*ip, dest.port.number)),
        destination_service: Some(dest.service.key.clone()),
    };
    let caller: Arc<dyn HttpCaller> = Arc::new(SnapshotHttpCaller {
        published: published.clone(),
        dialer: dialer.clone(),
        on_behalf_of: ctx.caller.originator(),
    });
    Some(HttpFilters::start(chain, props, Some(caller)))
}

/// Applies the plugins' `:path` / `:method` / `:authority` edits.
pub fn apply_request_line(filters: &HttpFilters, req: &mut RequestHeader) {
    let line = filters.request_line();
    let current = req.uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    if !line.path.is_empty() && line.path != current {
        if let Ok(uri) = line.path.parse::<http::Uri>() {
            req.set_uri(uri);
        }
    }
    if !line.method.is_empty() && line.method != req.method.as_str() {
        if let Ok(m) = http::Method::from_bytes(line.method.as_bytes()) {
            req.set_method(m);
        }
    }
    if !line.authority.is_empty() && Some(line.authority.as_str()) != super::headers::host(req) {
        let _ = req.insert_header(http::header::HOST, line.authority.as_str());
    }
}

/// Writes a plugin's local response (`proxy_send_local_response`).
pub async fn respond(
    session: &mut Session,
    ctx: &mut RequestCtx,
    local: LocalResponse,
) -> pingora_error::Result<bool> {
    let mut resp = ResponseHeader::build(local.status, Some(local.headers.len() + 1))?;
    for (name, value) in local.headers {
        resp.append_header(name, value)?;
    }
    resp.insert_header(http::header::CONTENT_LENGTH, local.body.len().to_string())?;
    ctx.reply.local_status = Some(local.status);
    let empty = local.body.is_empty();
    session.write_response_header(Box::new(resp), empty).await?;
    if !empty {
        session.write_response_body(Some(local.body), true).await?;
    }
    Ok(true)
}

/// A local response decided after the upstream answered: its status and
/// headers replace the upstream's, its body replaces the upstream body.
pub fn replace_response(resp: &mut ResponseHeader, ctx: &mut RequestCtx, local: LocalResponse) {
    let _ = resp.set_status(local.status);
    for (name, value) in local.headers {
        let _ = resp.insert_header(name, value);
    }
    let _ = resp.insert_header(http::header::CONTENT_LENGTH, local.body.len().to_string());
    resp.remove_header(&http::header::TRANSFER_ENCODING);
    ctx.wasm.body = Some(local.body);
}

/// Body chunk substitution for [`replace_response`]: the local body once,
/// then nothing.
pub fn substitute_body(ctx: &mut RequestCtx, body: &mut Option<Bytes>) {
    if let Some(local) = ctx.wasm.body.as_mut() {
        *body = Some(std::mem::take(local));
    }
}
