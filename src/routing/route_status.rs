//! What Gateway API would write in a route's status, for `/config_dump` and
//! `waypoint check`: the `ResolvedRefs` condition (every `backendRefs[]`
//! entry, mirror `backendRef` included, resolved and permitted?) and the
//! parents a route attaches to but does not act on. The waypoint writes no
//! status to the API server; this is the same verdict, shown locally.

use std::fmt;

use super::route_name::RouteKind;
use crate::config::NamespacedName;

/// Gateway API's `ResolvedRefs=False` reasons the waypoint reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum RefReason {
    /// A cross-namespace reference no ReferenceGrant permits.
    RefNotPermitted,
    /// A reference to a kind the waypoint cannot route to.
    InvalidKind,
    /// The Service (or its port) does not exist.
    BackendNotFound,
}

impl RefReason {
    /// The reason as the Gateway API spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            RefReason::RefNotPermitted => "RefNotPermitted",
            RefReason::InvalidKind => "InvalidKind",
            RefReason::BackendNotFound => "BackendNotFound",
        }
    }
}

/// One reference of a route that does not resolve: traffic given to it is
/// refused (HTTP 500, TCP connection closed).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct UnresolvedRef {
    /// Field path in the route, e.g. `spec.rules[0].backendRefs[1]`.
    pub field: String,
    pub reason: RefReason,
    pub message: String,
}

/// The status of one route object.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct RouteStatus {
    pub kind: RouteKind,
    pub route: NamespacedName,
    /// Every reference that does not resolve, in field order.
    pub unresolved: Vec<UnresolvedRef>,
}

impl RouteStatus {
    /// `ResolvedRefs`: `(status, reason, message)`. When several references
    /// fail, the first one's reason is reported (a condition has one reason)
    /// and the message names them all.
    pub fn resolved_refs(&self) -> (bool, &'static str, String) {
        match self.unresolved.first() {
            None => (true, "ResolvedRefs", String::new()),
            Some(first) => {
                let message = self
                    .unresolved
                    .iter()
                    .map(|u| format!("{}: {}", u.field, u.message))
                    .collect::<Vec<_>>()
                    .join("; ");
                (false, first.reason.as_str(), message)
            }
        }
    }
}

impl fmt::Display for RouteStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (ok, reason, message) = self.resolved_refs();
        write!(
            f,
            "{} {} ResolvedRefs={}",
            self.kind.as_str(),
            self.route,
            if ok { "True" } else { "False" }
        )?;
        if !ok {
            write!(f, " ({reason}): {message}")?;
        }
        Ok(())
    }
}
