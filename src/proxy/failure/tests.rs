use pingora_error::{Error, ErrorSource, ErrorType};

use super::*;
use crate::policy::RetryPolicy;

#[test]
fn each_failure_maps_to_envoys_status_and_flag() {
    let rows: &[(Failure, u16, &str)] = &[
        (Failure::UnknownDestination("x".into()), 404, "NR"),
        (Failure::NoRoute, 404, "NR"),
        (Failure::InvalidBackend("missing".into()), 500, "-"),
        (Failure::NoHealthyUpstream, 503, "UH"),
        (Failure::ConnectFailure, 503, "UF"),
        (Failure::UpstreamTimeout, 504, "UT"),
        (Failure::UpstreamReset, 503, "UC"),
        (Failure::HeadersTooLarge, 431, "DPE"),
        (Failure::BadRequest, 400, "DPE"),
        (Failure::Internal, 500, "-"),
        (Failure::Overflow, 503, "UO"),
        (Failure::Overloaded, 503, "OM"),
        (Failure::FaultAbort(Abort::Http(418)), 418, "FI"),
        (Failure::FaultAbort(Abort::Grpc(14)), 200, "FI"),
    ];
    for (f, status, flag) in rows {
        assert_eq!(f.status(), *status, "{f:?}");
        assert_eq!(f.flags().to_string(), *flag, "{f:?}");
    }
}

fn error(etype: ErrorType, source: ErrorSource) -> Box<Error> {
    let mut e = Error::new(etype);
    e.esource = source;
    e
}

/// What the client sees for a classified error: status and flag, or
/// `None` when nobody is left to answer.
fn answer(c: &Classified) -> Option<(u16, String)> {
    c.failure
        .as_ref()
        .map(|f| (f.status(), f.flags().to_string()))
}

/// One test per row of [`classify`]: Pingora's error type and source →
/// the client's status and flag, the attempt failure `retryOn` sees, and
/// whether Istio's default policy (`connect-failure,refused-stream,
/// unavailable,cancelled,retriable-status-codes` + 503) retries it.
macro_rules! classify_rows {
    ($($name:ident: $etype:expr, $source:ident => $answer:expr, $attempt:expr, default_retries: $retried:expr;)*) => {$(
        #[test]
        fn $name() {
            let e = error($etype, ErrorSource::$source);
            let c = classify(&e);
            let want: Option<(u16, &str)> = $answer;
            assert_eq!(answer(&c), want.map(|(s, f)| (s, f.to_string())), "status and flag");
            assert_eq!(c.attempt, $attempt, "attempt failure");
            assert_eq!(
                RetryPolicy::default().retries(c.attempt),
                $retried,
                "retried by Istio's default policy"
            );
            assert_eq!(Failure::from_proxy_error(&e), c.failure, "from_proxy_error agrees");
        }
    )*};
}

use AttemptFailure as A;

classify_rows! {
    // Connect failures: 503 UF, retried as connect-failure.
    connect_timed_out: ErrorType::ConnectTimedout, Upstream => Some((503, "UF")), A::ConnectFailure, default_retries: true;
    connect_refused: ErrorType::ConnectRefused, Upstream => Some((503, "UF")), A::ConnectFailure, default_retries: true;
    connect_no_route: ErrorType::ConnectNoRoute, Upstream => Some((503, "UF")), A::ConnectFailure, default_retries: true;
    connect_error: ErrorType::ConnectError, Upstream => Some((503, "UF")), A::ConnectFailure, default_retries: true;
    connect_proxy_failure: ErrorType::ConnectProxyFailure, Upstream => Some((503, "UF")), A::ConnectFailure, default_retries: true;
    tls_handshake_failure: ErrorType::TLSHandshakeFailure, Upstream => Some((503, "UF")), A::ConnectFailure, default_retries: true;
    tls_handshake_timed_out: ErrorType::TLSHandshakeTimedout, Upstream => Some((503, "UF")), A::ConnectFailure, default_retries: true;
    connect_failure_from_unset_source: ErrorType::ConnectRefused, Unset => Some((503, "UF")), A::ConnectFailure, default_retries: true;
    // Local socket trouble: answered UF, retried only as a reset.
    socket_error: ErrorType::SocketError, Upstream => Some((503, "UF")), A::Reset, default_retries: false;
    bind_error: ErrorType::BindError, Internal => Some((503, "UF")), A::Reset, default_retries: false;
    // Other TLS/handshake errors fall through to 500.
    invalid_cert: ErrorType::InvalidCert, Upstream => Some((500, "-")), A::Reset, default_retries: false;
    handshake_error: ErrorType::HandshakeError, Upstream => Some((500, "-")), A::Reset, default_retries: false;
    tls_want_x509_lookup: ErrorType::TLSWantX509Lookup, Upstream => Some((500, "-")), A::Reset, default_retries: false;
    // Per-try timeouts: 504 UT; Istio's default does not retry them.
    read_timed_out: ErrorType::ReadTimedout, Upstream => Some((504, "UT")), A::PerTryTimeout, default_retries: false;
    write_timed_out: ErrorType::WriteTimedout, Upstream => Some((504, "UT")), A::PerTryTimeout, default_retries: false;
    // Statuses: upstream_peer's own 503/504, retriable statuses.
    status_503: ErrorType::HTTPStatus(503), Unset => Some((503, "UH")), A::Status(503), default_retries: true;
    status_504: ErrorType::HTTPStatus(504), Unset => Some((504, "UT")), A::Status(504), default_retries: false;
    status_502: ErrorType::HTTPStatus(502), Upstream => Some((500, "-")), A::Status(502), default_retries: false;
    status_409: ErrorType::HTTPStatus(409), Upstream => Some((500, "-")), A::Status(409), default_retries: false;
    // Malformed requests from the client: 400 DPE.
    downstream_invalid_header: ErrorType::InvalidHTTPHeader, Downstream => Some((400, "DPE")), A::Reset, default_retries: false;
    downstream_h1_error: ErrorType::H1Error, Downstream => Some((400, "DPE")), A::Reset, default_retries: false;
    downstream_invalid_h2: ErrorType::InvalidH2, Downstream => Some((400, "DPE")), A::Reset, default_retries: false;
    downstream_h2_error: ErrorType::H2Error, Downstream => Some((400, "DPE")), A::Reset, default_retries: false;
    // The client went away: nobody to answer.
    downstream_closed: ErrorType::ConnectionClosed, Downstream => None, A::Reset, default_retries: false;
    downstream_read_error: ErrorType::ReadError, Downstream => None, A::Reset, default_retries: false;
    downstream_write_error: ErrorType::WriteError, Downstream => None, A::Reset, default_retries: false;
    // The upstream closed, reset or broke HTTP: 503 UC.
    upstream_closed: ErrorType::ConnectionClosed, Upstream => Some((503, "UC")), A::Reset, default_retries: false;
    upstream_read_error: ErrorType::ReadError, Upstream => Some((503, "UC")), A::Reset, default_retries: false;
    upstream_write_error: ErrorType::WriteError, Upstream => Some((503, "UC")), A::Reset, default_retries: false;
    upstream_h1_error: ErrorType::H1Error, Upstream => Some((503, "UC")), A::Reset, default_retries: false;
    upstream_invalid_header: ErrorType::InvalidHTTPHeader, Upstream => Some((503, "UC")), A::Reset, default_retries: false;
    upstream_h2_error: ErrorType::H2Error, Upstream => Some((503, "UC")), A::Reset, default_retries: false;
    upstream_invalid_h2: ErrorType::InvalidH2, Upstream => Some((503, "UC")), A::Reset, default_retries: false;
    closed_from_unset_source: ErrorType::ConnectionClosed, Unset => Some((503, "UC")), A::Reset, default_retries: false;
    closed_internally: ErrorType::ConnectionClosed, Internal => Some((503, "UC")), A::Reset, default_retries: false;
    // Everything else is ours: 500.
    h2_downgrade: ErrorType::H2Downgrade, Upstream => Some((500, "-")), A::Reset, default_retries: false;
    internal_error: ErrorType::InternalError, Internal => Some((500, "-")), A::Reset, default_retries: false;
    unknown_error: ErrorType::UnknownError, Unset => Some((500, "-")), A::Reset, default_retries: false;
    accept_error: ErrorType::AcceptError, Downstream => Some((500, "-")), A::Reset, default_retries: false;
    custom_error: ErrorType::Custom("plugin"), Internal => Some((500, "-")), A::Reset, default_retries: false;
}

#[test]
fn pingoras_retry_flag_does_not_change_the_class() {
    for etype in [
        ErrorType::ConnectRefused,
        ErrorType::ReadTimedout,
        ErrorType::ConnectionClosed,
        ErrorType::HTTPStatus(503),
    ] {
        let mut e = error(etype.clone(), ErrorSource::Upstream);
        let before = classify(&e);
        e.set_retry(!e.retry());
        assert_eq!(classify(&e), before, "{etype:?}");
    }
}
