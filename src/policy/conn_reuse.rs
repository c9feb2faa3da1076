//! Whether an upstream connection may carry another request: DestinationRule
//! `connectionPool.http.maxRequestsPerConnection` and
//! `connectionPool.tcp.maxConnectionDuration`, as Envoy's cluster
//! `max_requests_per_connection` and `max_connection_duration` apply them.
//! Each place that keeps upstream connections between requests (the fast
//! path's pool, kept HBONE tunnels, Pingora's pool through the proxy) tracks a
//! [`ConnUse`] per connection and asks [`ReuseLimits`]; the decision is here,
//! the bookkeeping is theirs.

use std::time::Duration;

use tokio::time::Instant;

/// A cluster's limits on one upstream connection's life. The default is
/// Envoy's: no limit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReuseLimits {
    /// `http.maxRequestsPerConnection`: requests one connection carries, then
    /// it is closed after its last response. `None` (or 0 in the API) = no limit.
    pub max_requests: Option<u32>,
    /// `tcp.maxConnectionDuration`: a connection older than this takes no new
    /// request; an idle one is closed when it reaches it.
    pub max_age: Option<Duration>,
}

/// One upstream connection's history: when it was opened, how many requests
/// it has carried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnUse {
    opened: Instant,
    requests: u32,
}

impl ConnUse {
    /// A connection opened at `opened` that has carried nothing yet.
    pub fn opened_at(opened: Instant) -> Self {
        ConnUse {
            opened,
            requests: 0,
        }
    }

    /// One more request was sent on it.
    pub fn count_request(&mut self) {
        self.requests = self.requests.saturating_add(1);
    }

    /// Requests sent on it so far.
    pub fn requests(&self) -> u32 {
        self.requests
    }

    /// When it was opened.
    pub fn opened(&self) -> Instant {
        self.opened
    }
}

impl ReuseLimits {
    /// True when neither limit is set (the common case: nothing to track).
    pub fn is_unlimited(&self) -> bool {
        self.max_requests.is_none() && self.max_age.is_none()
    }

    /// Whether a connection with this history may take another request at
    /// `now`.
    pub fn may_reuse(&self, conn: &ConnUse, now: Instant) -> bool {
        let under_count = self.max_requests.is_none_or(|max| conn.requests < max);
        under_count && !self.is_too_old(conn, now)
    }

    /// Whether the connection has reached `maxConnectionDuration` at `now`.
    pub fn is_too_old(&self, conn: &ConnUse, now: Instant) -> bool {
        self.expires(conn).is_some_and(|at| now >= at)
    }

    /// Whether the request being sent now is the connection's last one (its
    /// count is already included): the connection is closed after the
    /// response.
    pub fn is_last_request(&self, conn: &ConnUse) -> bool {
        self.max_requests.is_some_and(|max| conn.requests >= max)
    }

    /// When the connection reaches `maxConnectionDuration`, if set.
    pub fn expires(&self, conn: &ConnUse) -> Option<Instant> {
        self.max_age.map(|age| conn.opened + age)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn max_requests_counts_requests_per_connection() {
        let limits = ReuseLimits {
            max_requests: Some(2),
            max_age: None,
        };
        let mut conn = ConnUse::opened_at(Instant::now());
        assert!(limits.may_reuse(&conn, Instant::now()), "fresh");
        conn.count_request();
        assert!(!limits.is_last_request(&conn));
        assert!(limits.may_reuse(&conn, Instant::now()), "1 of 2");
        conn.count_request();
        assert!(limits.is_last_request(&conn), "the 2nd request is the last");
        assert!(!limits.may_reuse(&conn, Instant::now()), "2 of 2");
    }

    #[tokio::test(start_paused = true)]
    async fn max_age_is_measured_from_the_open() {
        let limits = ReuseLimits {
            max_requests: None,
            max_age: Some(Duration::from_secs(10)),
        };
        let conn = ConnUse::opened_at(Instant::now());
        tokio::time::advance(Duration::from_secs(9)).await;
        assert!(limits.may_reuse(&conn, Instant::now()), "9 s old of 10");
        tokio::time::advance(Duration::from_secs(1)).await;
        assert!(
            !limits.may_reuse(&conn, Instant::now()),
            "a connection reaching maxConnectionDuration takes no new request"
        );
        assert_eq!(
            limits.expires(&conn),
            Some(conn.opened() + Duration::from_secs(10))
        );
    }

    #[tokio::test(start_paused = true)]
    async fn no_limits_reuse_forever() {
        let limits = ReuseLimits::default();
        assert!(limits.is_unlimited());
        let mut conn = ConnUse::opened_at(Instant::now());
        for _ in 0..1000 {
            conn.count_request();
        }
        tokio::time::advance(Duration::from_secs(86_400)).await;
        assert!(limits.may_reuse(&conn, Instant::now()));
        assert!(!limits.is_last_request(&conn));
    }
}
