//! `waypoint_hbone_handshake_failures_total{reason}`: HBONE connections that
//! never became a tunnel, by why. Kubelet `tcpSocket` probes and load-balancer
//! health checks connect to port 15008 and close without a byte; they are
//! counted apart from real handshake failures (an untrusted certificate) so
//! neither hides the other. The HBONE server decides the reason; this module
//! only owns the family and its label values.

use prometheus::{IntCounterVec, Opts, Registry};

/// Why an HBONE connection ended before its first CONNECT could be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HandshakeFailure {
    /// Closed (or reset) before sending any byte: a TCP probe, not a client.
    ClosedBeforeClientHello,
    /// The client's certificate was refused: missing, untrusted, expired, wrong
    /// trust domain, no SPIFFE id.
    BadCertificate,
    /// Any other TLS failure: not TLS 1.3, no ALPN `h2`, an alert, closed mid-handshake.
    Tls,
    /// TLS succeeded but the HTTP/2 preface or SETTINGS exchange failed.
    Http2,
    /// The TLS and HTTP/2 handshakes together took longer than allowed.
    Timeout,
}

impl HandshakeFailure {
    /// Every reason, so each series exists (at 0) before the first failure.
    pub const ALL: [HandshakeFailure; 5] = [
        HandshakeFailure::ClosedBeforeClientHello,
        HandshakeFailure::BadCertificate,
        HandshakeFailure::Tls,
        HandshakeFailure::Http2,
        HandshakeFailure::Timeout,
    ];

    /// The `reason` label value.
    pub fn as_str(self) -> &'static str {
        match self {
            HandshakeFailure::ClosedBeforeClientHello => "closed_before_client_hello",
            HandshakeFailure::BadCertificate => "bad_certificate",
            HandshakeFailure::Tls => "tls",
            HandshakeFailure::Http2 => "http2",
            HandshakeFailure::Timeout => "timeout",
        }
    }
}

/// The counter family; cheap to clone (the series are shared).
#[derive(Clone, Debug)]
pub struct HandshakeFailures {
    counter: IntCounterVec,
}

impl Default for HandshakeFailures {
    /// A family registered nowhere: counts, but no scrape shows it (tests, fakes).
    fn default() -> Self {
        let counter = IntCounterVec::new(
            Opts::new(
                "waypoint_hbone_handshake_failures_total",
                "HBONE connections closed before a tunnel was established, by reason.",
            ),
            &["reason"],
        )
        .expect("static metric definition is valid");
        for reason in HandshakeFailure::ALL {
            counter.with_label_values(&[reason.as_str()]);
        }
        HandshakeFailures { counter }
    }
}

impl HandshakeFailures {
    /// The family, registered in `registry` (the one `/stats/prometheus` renders).
    pub fn registered(registry: &Registry) -> Self {
        let failures = Self::default();
        registry
            .register(Box::new(failures.counter.clone()))
            .expect("waypoint_hbone_handshake_failures_total is registered once");
        failures
    }

    /// Counts one failed connection.
    pub fn record(&self, reason: HandshakeFailure) {
        self.counter.with_label_values(&[reason.as_str()]).inc();
    }

    /// How many connections failed for `reason` so far.
    pub fn count(&self, reason: HandshakeFailure) -> u64 {
        self.counter.with_label_values(&[reason.as_str()]).get()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reason_is_exported_at_zero_then_counts() {
        use prometheus::Encoder;
        let registry = Registry::new();
        let failures = HandshakeFailures::registered(&registry);
        failures.record(HandshakeFailure::ClosedBeforeClientHello);
        let mut text = Vec::new();
        prometheus::TextEncoder::new()
            .encode(&registry.gather(), &mut text)
            .expect("encodes");
        let text = String::from_utf8(text).expect("utf-8");
        for reason in HandshakeFailure::ALL {
            let want = u64::from(reason == HandshakeFailure::ClosedBeforeClientHello);
            let line = format!(
                "waypoint_hbone_handshake_failures_total{{reason=\"{}\"}} {want}",
                reason.as_str()
            );
            assert!(text.lines().any(|l| l == line), "{line} in\n{text}");
        }
    }
}
