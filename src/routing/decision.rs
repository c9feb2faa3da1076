//! The per-request routing decision: which routes apply (GAMMA producer vs
//! consumer), which match wins, and what the proxy must do — forward (with
//! header edits, rewrite, mirrors and the route's policy), redirect, or fail.

use std::sync::Arc;
use std::sync::OnceLock;

use bytes::Bytes;
use http::{HeaderName, HeaderValue};

use super::request::RequestInfo;
use super::route_name::RouteName;
use super::service::DestinationPort;
use super::snapshot::Snapshot;
use super::table::backend::{choose, CompiledBackend};
use super::table::cors::CorsOutcome;
use super::table::filters::{Mirror, Rewrite};
use super::table::headers::HeaderModifier;
use super::table::route_policy::RoutePolicy;
use super::table::rule::{Candidate, CompiledRule};
use crate::telemetry::live::LiveCounters;
use crate::upstream::{EndpointSet, LbPolicy};

/// The outcome of routing one request.
// `Forward` is the common case and is moved once into the request context;
// boxing it would cost an allocation per request for no gain.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum RouteDecision {
    /// Routes apply to the destination but none matched: 404, flag NR.
    NoRoute,
    /// Answer with a redirect; no backend is contacted.
    Redirect {
        route: RouteName,
        status: u16,
        location: String,
        response_headers: Vec<Arc<HeaderModifier>>,
        /// The route's live counters (admin page).
        counters: Option<Arc<LiveCounters>>,
    },
    /// The matched rule cannot forward: 500. `reason` is for logs.
    InvalidBackend {
        route: RouteName,
        reason: String,
        /// The route's live counters (admin page).
        counters: Option<Arc<LiveCounters>>,
    },
    /// Answer with a response the route defines (VirtualService
    /// `directResponse`, a CORS preflight); no backend is contacted.
    Respond {
        route: RouteName,
        reply: LocalReply,
        /// The route's live counters (admin page).
        counters: Option<Arc<LiveCounters>>,
    },
    /// Forward to a backend.
    Forward(ForwardPlan),
}

/// A response the waypoint writes for a route, as Envoy's router and CORS
/// filter do: no response flag, `response_code_details` names why.
#[derive(Debug, Clone, PartialEq)]
pub struct LocalReply {
    pub status: u16,
    pub body: Bytes,
    /// Headers of the answer itself (`content-type`, `access-control-*`).
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// The route's response header edits (VirtualService `headers.response`),
    /// applied after `headers`.
    pub response_headers: Vec<Arc<HeaderModifier>>,
    /// Envoy's `response_code_details`: `direct_response`, `cors_response`.
    pub details: &'static str,
}

/// How to forward one request.
#[derive(Debug, Clone, PartialEq)]
pub struct ForwardPlan {
    /// The route that matched; `None` when no route applies to the
    /// destination port (the Service's own endpoints are used).
    pub route: Option<RouteName>,
    /// The chosen backend Service and port.
    pub backend: DestinationPort,
    /// Its ready endpoints (possibly empty: the proxy answers 503 UH).
    pub endpoints: Arc<EndpointSet>,
    /// Rule-level, then backendRef-level; apply in order.
    pub request_headers: Vec<Arc<HeaderModifier>>,
    /// Rule-level, then backendRef-level; apply in order to the response.
    pub response_headers: Vec<Arc<HeaderModifier>>,
    /// URLRewrite already computed for this request.
    pub rewrite: Option<Rewrite>,
    /// Mirrors sampled for this request (percent/fraction applied).
    pub mirrors: Vec<Mirror>,
    /// Deadline, retries and fault injection of the matched route (Istio's
    /// defaults when no route applies).
    pub policy: Arc<RoutePolicy>,
    /// The matched route's live counters (admin page); `None` without a route.
    pub counters: Option<Arc<LiveCounters>>,
}

impl Snapshot {
    /// Routes one request to `dest`. `caller_namespace` is the client's
    /// namespace from its mTLS identity (`None` on the plain listener).
    ///
    /// GAMMA: a route in the Service's namespace is a producer route, any
    /// other a consumer route. Per GEP-1294, if the caller's namespace has
    /// consumer routes for this Service port, only those apply; otherwise only
    /// the producer routes. When no route applies, the request goes to the
    /// Service's own endpoints.
    pub fn route(
        &self,
        dest: &DestinationPort,
        req: &RequestInfo<'_>,
        caller_namespace: Option<&str>,
    ) -> RouteDecision {
        let Some(state) = self.port_state(dest) else {
            // Destination no longer in this snapshot (removed by a reload).
            return RouteDecision::Forward(own_endpoints(
                dest,
                Arc::new(EndpointSet::empty(LbPolicy::default())),
            ));
        };
        let table = caller_namespace
            .and_then(|ns| state.consumers.get(ns))
            .unwrap_or(&state.producer);
        if table.is_empty() {
            return RouteDecision::Forward(own_endpoints(dest, state.endpoints.clone()));
        }
        match table.find(req) {
            None => RouteDecision::NoRoute,
            Some(candidate) => decide(candidate, req),
        }
    }
}

fn own_endpoints(dest: &DestinationPort, endpoints: Arc<EndpointSet>) -> ForwardPlan {
    ForwardPlan {
        route: None,
        backend: dest.clone(),
        endpoints,
        request_headers: Vec::new(),
        response_headers: Vec::new(),
        rewrite: None,
        mirrors: Vec::new(),
        policy: default_policy(),
        counters: None,
    }
}

/// Istio's defaults, shared by every plan that has no route.
fn default_policy() -> Arc<RoutePolicy> {
    static DEFAULT: OnceLock<Arc<RoutePolicy>> = OnceLock::new();
    DEFAULT.get_or_init(Arc::default).clone()
}

/// The decision for a request that matched `candidate`.
fn decide(candidate: &Candidate, req: &RequestInfo<'_>) -> RouteDecision {
    let rule: &CompiledRule = &candidate.rule;
    let prefix = candidate.matcher().prefix();
    let filters = &rule.filters;
    if let Some(direct) = &filters.direct_response {
        // Envoy sends a direct response body as text/plain.
        let mut headers = Vec::new();
        if !direct.body.is_empty() {
            headers.push((
                http::header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain"),
            ));
        }
        let reply = LocalReply {
            status: direct.status,
            body: direct.body.clone(),
            headers,
            response_headers: filters.response_headers.clone(),
            details: "direct_response",
        };
        return RouteDecision::Respond {
            route: rule.route.clone(),
            reply,
            counters: rule.counters.get().cloned(),
        };
    }
    if let Some(redirect) = &filters.redirect {
        return RouteDecision::Redirect {
            route: rule.route.clone(),
            status: redirect.status,
            location: redirect.location(req, prefix),
            response_headers: filters.response_headers.clone(),
            counters: rule.counters.get().cloned(),
        };
    }
    // Envoy's CORS filter "will be bypassed if a direct response or route
    // redirect is configured for the route"; otherwise a preflight is
    // answered there, and an allowed request's response gets the CORS
    // headers last.
    let cors = match filters.cors.as_ref().map(|c| c.evaluate(req)) {
        Some(CorsOutcome::Preflight(headers)) => {
            let reply = LocalReply {
                status: 200,
                body: Bytes::new(),
                headers,
                response_headers: Vec::new(),
                details: "cors_response",
            };
            return RouteDecision::Respond {
                route: rule.route.clone(),
                reply,
                counters: rule.counters.get().cloned(),
            };
        }
        Some(CorsOutcome::Allowed(m)) => Some(m),
        Some(CorsOutcome::Pass) | None => None,
    };
    let invalid = |reason: &str| RouteDecision::InvalidBackend {
        route: rule.route.clone(),
        reason: reason.to_string(),
        counters: rule.counters.get().cloned(),
    };
    if rule.backends.is_empty() {
        return invalid("rule has no backendRefs and no RequestRedirect");
    }
    let Some(backend): Option<&CompiledBackend> = choose(&rule.backends, rule.total_weight) else {
        return invalid("all backendRefs have weight 0");
    };
    let (dest, endpoints) = match &backend.target {
        Ok(t) => t,
        Err(reason) => return invalid(reason),
    };
    let own = &backend.filters;
    let concat =
        |a: &[Arc<HeaderModifier>], b: &[Arc<HeaderModifier>]| a.iter().chain(b).cloned().collect();
    // A backendRef's URLRewrite is more specific than the rule's.
    let rewrite = own
        .rewrite
        .as_ref()
        .or(filters.rewrite.as_ref())
        .map(|r| r.rewrite(req, prefix));
    ForwardPlan {
        route: Some(rule.route.clone()),
        backend: dest.clone(),
        endpoints: endpoints.clone(),
        request_headers: concat(&filters.request_headers, &own.request_headers),
        response_headers: filters
            .response_headers
            .iter()
            .chain(&own.response_headers)
            .cloned()
            .chain(cors)
            .collect(),
        rewrite,
        mirrors: filters
            .mirrors
            .iter()
            .chain(&own.mirrors)
            .filter_map(|m| m.sample())
            .collect(),
        policy: rule.policy.clone(),
        counters: rule.counters.get().cloned(),
    }
    .into()
}

impl From<ForwardPlan> for RouteDecision {
    fn from(plan: ForwardPlan) -> Self {
        RouteDecision::Forward(plan)
    }
}
