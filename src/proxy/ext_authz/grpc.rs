//! The gRPC flavour of the CUSTOM check: Envoy's
//! `envoy.service.auth.v3.Authorization/Check` over HTTP/2, through the one
//! dialer (tonic's channel with [`DialConnector`] as its connector).

use std::sync::Arc;

use http::uri::PathAndQuery;
use pingora_http::RequestHeader;
use tonic::transport::Endpoint;
use tonic_prost::ProstCodec;

use crate::authz::ext_authz_proto as pb;
use crate::inbound::Caller;
use crate::routing::DestinationPort;
use crate::upstream::dial::{DialConnector, DialTarget, Dialer};

use super::Answer;

/// What the check says about the request.
pub(super) fn request_of(
    req: &RequestHeader,
    caller: &Caller,
    destination: &DestinationPort,
    request_id: &str,
) -> pb::CheckRequest {
    let mut headers = std::collections::HashMap::new();
    for (name, value) in &req.headers {
        let value = String::from_utf8_lossy(value.as_bytes());
        headers
            .entry(name.as_str().to_string())
            .and_modify(|v: &mut String| {
                v.push(',');
                v.push_str(&value);
            })
            .or_insert_with(|| value.into_owned());
    }
    let socket = |ip: Option<std::net::IpAddr>, port: u16| {
        ip.map(|ip| pb::Address {
            socket_address: Some(pb::SocketAddress {
                address: ip.to_string(),
                port_value: port.into(),
            }),
        })
    };
    pb::CheckRequest {
        attributes: Some(pb::AttributeContext {
            source: Some(pb::Peer {
                address: socket(caller.client_ip.map(|c| c.ip()), 0),
                principal: caller
                    .identity
                    .as_ref()
                    .map(|id| id.to_string())
                    .unwrap_or_default(),
                ..Default::default()
            }),
            destination: Some(pb::Peer {
                address: socket(
                    destination.service.addresses.first().copied(),
                    destination.port.number,
                ),
                service: destination.service.hostname.clone(),
                ..Default::default()
            }),
            request: Some(pb::Request {
                http: Some(pb::HttpRequest {
                    id: request_id.to_string(),
                    method: req.method.to_string(),
                    headers,
                    path: req
                        .uri
                        .path_and_query()
                        .map(|p| p.to_string())
                        .unwrap_or_else(|| "/".to_string()),
                    host: super::super::headers::host(req).unwrap_or("").to_string(),
                    scheme: "http".to_string(),
                    protocol: "HTTP/1.1".to_string(),
                }),
            }),
            ..Default::default()
        }),
    }
}

/// Sends `check` to an endpoint at `target`; the answer, or why there is none.
pub(super) async fn check(
    dialer: Arc<Dialer>,
    target: DialTarget,
    check: pb::CheckRequest,
) -> Result<Answer, String> {
    let channel = Endpoint::from_static("http://ext-authz.invalid")
        .connect_with_connector(DialConnector::to_endpoint(dialer, target))
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.map_err(|e| format!("connect: {e}"))?;
    let resp: pb::CheckResponse = grpc
        .unary(
            tonic::Request::new(check),
            PathAndQuery::from_static(pb::CHECK_PATH),
            ProstCodec::default(),
        )
        .await
        .map_err(|status| format!("gRPC {:?}: {}", status.code(), status.message()))?
        .into_inner();
    let pairs = |h: &[pb::HeaderValueOption]| {
        h.iter()
            .filter_map(|o| o.header.as_ref())
            .map(|h| (h.key.clone(), h.value.clone()))
            .collect::<Vec<_>>()
    };
    if resp.status.as_ref().map(|s| s.code).unwrap_or(0) == 0 {
        let ok = resp.ok_response.unwrap_or_default();
        return Ok(Answer::Allow {
            set: pairs(&ok.headers),
            remove: ok.headers_to_remove,
        });
    }
    let denied = resp.denied_response.unwrap_or_default();
    // Envoy answers 403 when the service names no status.
    let status = denied
        .status
        .map(|s| s.code)
        .and_then(|c| u16::try_from(c).ok())
        .filter(|c| (200..=599).contains(c))
        .unwrap_or(403);
    Ok(Answer::Deny {
        status,
        headers: pairs(&denied.headers),
        body: denied.body,
    })
}
