//! The CUSTOM action: ask the policy's external authorization service
//! (MeshConfig `envoyExtAuthzHttp`) before the request goes on, as Envoy's
//! HTTP `ext_authz` filter does. The check is an HTTP/1.1 request with the
//! client's method and path (after `pathPrefix`), `Host` and the headers the
//! provider includes, sent through the one dialer to the service's endpoint
//! (over HBONE when it is in the mesh). 200 allows (copying the headers the
//! provider names onto the upstream request); any other status is the
//! client's answer; no answer within the timeout applies `failOpen` /
//! `statusOnError`.

use bytes::Bytes;
use http_body_util::Full;
use pingora_http::RequestHeader;
use tracing::warn;

mod grpc;

use crate::authz::ext_authz::Protocol;
use crate::authz::{ExtAuthzProvider, Record};
use crate::store::Published;

use super::ctx::RequestCtx;
use super::failure::Failure;
use super::mesh_http::{endpoint, exchange};
use super::{headers, Waypoint};

/// The largest check answer read; a denial's body goes to the client.
const MAX_ANSWER: usize = 64 * 1024;

/// What the provider said.
pub(super) enum Answer {
    /// Go on, with these headers set on (and removed from) the upstream request.
    Allow {
        set: Vec<(String, String)>,
        remove: Vec<String>,
    },
    /// The client's answer instead.
    Deny {
        status: u16,
        headers: Vec<(String, String)>,
        body: String,
    },
}

impl Waypoint {
    /// Asks the provider of the matched CUSTOM policy `custom`. `None`: the
    /// request goes on; `Some`: the answer to give instead.
    pub(super) async fn ask_provider(
        &self,
        published: &Published,
        custom: &Record,
        req: &mut RequestHeader,
        ctx: &RequestCtx,
    ) -> Option<Failure> {
        let policy = custom.policy.as_ref()?;
        let provider = policy.provider.as_ref()?;
        let record = |result: &str| {
            self.metrics
                .record_authz(&policy.name, custom.action.as_str(), result)
        };
        let asked =
            tokio::time::timeout(provider.timeout, self.ask(published, provider, req, ctx)).await;
        match asked {
            Ok(Ok(Answer::Allow { set, remove })) => {
                for name in remove {
                    req.remove_header(name.as_str());
                }
                for (name, value) in set {
                    let _ = req.insert_header(name, value);
                }
                record("allowed");
                None
            }
            Ok(Ok(Answer::Deny {
                status,
                headers,
                body,
            })) => {
                record("denied");
                Some(Failure::ExternalDenied {
                    status,
                    body,
                    headers,
                })
            }
            Ok(Err(e)) => {
                warn!(provider = %provider.name, error = %e, "external authorization service unreachable");
                self.unanswered(provider, record)
            }
            Err(_) => {
                warn!(provider = %provider.name, timeout = ?provider.timeout, "external authorization check timed out");
                self.unanswered(provider, record)
            }
        }
    }

    /// One check, by the provider's protocol.
    async fn ask(
        &self,
        published: &Published,
        provider: &ExtAuthzProvider,
        req: &RequestHeader,
        ctx: &RequestCtx,
    ) -> Result<Answer, String> {
        match provider.protocol {
            Protocol::Http => ask_http(published, &self.dialer, provider, req).await,
            Protocol::Grpc => {
                let destination = ctx
                    .routed
                    .destination
                    .as_ref()
                    .ok_or("BUG: CUSTOM check before the destination is known")?;
                let (target, picked) =
                    endpoint(published, &provider.authority).map_err(|e| e.to_string())?;
                let check = grpc::request_of(req, &ctx.caller, destination, &ctx.request_id);
                let answer = grpc::check(self.dialer.clone(), target, check).await;
                drop(picked);
                answer
            }
        }
    }

    /// No answer from the provider: `failOpen`, else `statusOnError`.
    fn unanswered(&self, provider: &ExtAuthzProvider, record: impl Fn(&str)) -> Option<Failure> {
        if provider.fail_open {
            record("error_allowed");
            return None;
        }
        record("error_denied");
        Some(Failure::ExternalDenied {
            status: provider.status_on_error,
            body: String::new(),
            headers: Vec::new(),
        })
    }
}

/// The HTTP flavour: the client's method and path (after `pathPrefix`),
/// `Host` and the included headers; 200 allows.
async fn ask_http(
    published: &Published,
    dialer: &crate::upstream::dial::Dialer,
    provider: &ExtAuthzProvider,
    req: &RequestHeader,
) -> Result<Answer, String> {
    let path = format!(
        "{}{}",
        provider.path_prefix,
        req.uri.path_and_query().map(|p| p.as_str()).unwrap_or("/")
    );
    let mut check = http::Request::builder()
        .method(req.method.clone())
        .uri(path);
    if let Some(h) = check.headers_mut() {
        *h = provider.check_headers(headers::host(req).unwrap_or(""), &req.headers);
    }
    let check = check
        .body(Full::new(Bytes::new()))
        .map_err(|e| format!("check request: {e}"))?;
    let answer = exchange(published, dialer, &provider.authority, check, MAX_ANSWER)
        .await
        .map_err(|e| e.to_string())?;
    let pairs = |it: &mut dyn Iterator<Item = (&http::HeaderName, &http::HeaderValue)>| {
        it.filter_map(|(n, v)| Some((n.to_string(), v.to_str().ok()?.to_string())))
            .collect::<Vec<_>>()
    };
    if answer.status() == http::StatusCode::OK {
        return Ok(Answer::Allow {
            set: pairs(&mut provider.upstream_on_allow(answer.headers())),
            remove: Vec::new(),
        });
    }
    let headers = pairs(&mut provider.downstream_on_deny(answer.headers()));
    Ok(Answer::Deny {
        status: answer.status().as_u16(),
        headers,
        body: String::from_utf8_lossy(answer.body()).into_owned(),
    })
}
