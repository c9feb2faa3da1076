//! A compiled rule and the route table of one Service port: every (rule,
//! match) candidate, sorted once at compile time by Gateway API precedence,
//! so a request takes the first candidate that matches.

use std::cmp::Ordering;
use std::sync::Arc;

use super::backend::CompiledBackend;
use super::filters::RuleFilters;
use super::matcher::{split_path_query, CompiledMatch};
use super::route_policy::RoutePolicy;
use crate::routing::request::RequestInfo;
use crate::routing::route_name::RouteName;
use crate::telemetry::live::CountersSlot;

/// One HTTPRoute rule (or VirtualService `http[]` entry), compiled; shared
/// by every Service port the route attaches to.
#[derive(Debug, PartialEq)]
pub(crate) struct CompiledRule {
    /// Route `namespace/name` and rule index.
    pub route: RouteName,
    /// `metadata.creationTimestamp`, for precedence.
    pub created: Option<String>,
    pub matches: Vec<CompiledMatch>,
    pub filters: RuleFilters,
    pub backends: Vec<CompiledBackend>,
    pub total_weight: u64,
    /// Deadline, retries and faults of the rule.
    pub policy: Arc<RoutePolicy>,
    /// The route's live counters for the admin page, shared by all its rules;
    /// set by the compiler once the rule is attached.
    pub counters: CountersSlot,
}

/// One (route, rule, match) a request can take.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Candidate {
    pub rule: Arc<CompiledRule>,
    pub match_index: usize,
}

impl Candidate {
    pub(crate) fn matcher(&self) -> &CompiledMatch {
        &self.rule.matches[self.match_index]
    }

    /// Full precedence: match specificity, then "the oldest Route based on
    /// creation timestamp" (a missing timestamp counts as newest), then "the
    /// Route appearing first in alphabetical order by {namespace}/{name}",
    /// then "the FIRST matching rule (in list order)", then match order.
    fn cmp_precedence(&self, other: &Self) -> Ordering {
        let (a, b) = (&self.rule, &other.rule);
        self.matcher()
            .precedence()
            .cmp(&other.matcher().precedence())
            .then_with(|| match (&a.created, &b.created) {
                // RFC 3339 in UTC as Kubernetes writes it sorts as text.
                (Some(x), Some(y)) => x.cmp(y),
                (Some(_), None) => Ordering::Less,
                (None, Some(_)) => Ordering::Greater,
                (None, None) => Ordering::Equal,
            })
            .then_with(|| a.route.as_str().cmp(b.route.as_str()))
            .then_with(|| a.route.rule_index().cmp(&b.route.rule_index()))
            .then_with(|| self.match_index.cmp(&other.match_index))
    }
}

/// The candidates of one Service port (for one audience), best first.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct RouteTable {
    pub candidates: Vec<Candidate>,
}

impl RouteTable {
    pub(crate) fn is_empty(&self) -> bool {
        self.candidates.is_empty()
    }

    pub(crate) fn sort(&mut self) {
        self.candidates.sort_by(Candidate::cmp_precedence);
    }

    /// The highest-precedence candidate matching `req`.
    pub(crate) fn find(&self, req: &RequestInfo<'_>) -> Option<&Candidate> {
        let (path, query) = split_path_query(req.path_and_query);
        self.candidates
            .iter()
            .find(|c| c.matcher().is_match(req, path, query))
    }
}
