use super::*;
use crate::telemetry::ResponseFlags;

fn with_record(f: impl FnOnce(&Record)) {
    let mut req = RequestHeader::build("GET", b"/ratings/1?x=y", None).unwrap();
    req.insert_header("host", "reviews:9080").unwrap();
    req.insert_header("x-foo", "bar-baz").unwrap();
    req.insert_header("user-agent", "curl/8").unwrap();
    let mut resp = http::HeaderMap::new();
    resp.insert("x-envoy-upstream-service-time", "3".parse().unwrap());
    resp.insert("x-resp", "r1".parse().unwrap());
    let r = Record {
        start_time: std::time::UNIX_EPOCH + std::time::Duration::from_millis(1_500),
        req: &req,
        resp_headers: Some(&resp),
        response_code: 503,
        flags: ResponseFlags::UH,
        details: Some("no_healthy_upstream"),
        bytes_received: 0,
        bytes_sent: 19,
        duration: std::time::Duration::from_millis(7),
        protocol: "HTTP/1.1",
        upstream_host: Some("10.0.0.1:9080".parse().unwrap()),
        upstream_cluster: Some("outbound|9080||reviews.default.svc.cluster.local"),
        route_name: Some("default/reviews.0"),
        request_id: "rid-1",
        downstream_local: Some("10.0.0.9:15008".to_string()),
        downstream_remote: Some("10.0.0.2:5555".to_string()),
        source_ip: Some("10.0.0.2".to_string()),
        peer_uri_san: None,
        sni: None,
        attempts: 1,
        grpc_status: None,
        destination_port: Some(9080),
        destination_service: None,
    };
    f(&r)
}

use pingora_http::RequestHeader;

#[test]
fn istio_default_text_line() {
    with_record(|r| {
        let line = LogFormat::istio_text().render(r);
        assert_eq!(
            line,
            "[1970-01-01T00:00:01.500Z] \"GET /ratings/1?x=y HTTP/1.1\" 503 UH no_healthy_upstream - \"-\" 0 19 7 3 \"-\" \"curl/8\" \"rid-1\" \"reviews:9080\" \"10.0.0.1:9080\" outbound|9080||reviews.default.svc.cluster.local - 10.0.0.9:15008 10.0.0.2:5555 - default/reviews.0\n"
        );
    });
}

#[test]
fn istio_default_json_keeps_numbers_and_nulls() {
    with_record(|r| {
        let line = LogFormat::istio_json().render(r);
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["response_code"], 503);
        assert_eq!(v["bytes_sent"], 19);
        assert_eq!(v["response_flags"], "UH");
        assert_eq!(v["request_id"], "rid-1");
        assert_eq!(
            v["upstream_cluster"],
            "outbound|9080||reviews.default.svc.cluster.local"
        );
        assert!(v["x_forwarded_for"].is_null());
        assert!(line.ends_with("}\n"));
    });
}

#[test]
fn operators_users_copy_from_istio_docs() {
    with_record(|r| {
        let rows: &[(&str, &str)] = &[
            ("%REQ(X-FOO)%", "bar-baz"),
            ("%REQ(X-FOO):3%", "bar"),
            ("%REQ(X-MISSING?X-FOO)%", "bar-baz"),
            (
                "%REQ(:PATH)% %REQ(:AUTHORITY)%",
                "/ratings/1?x=y reviews:9080",
            ),
            ("%RESP(X-RESP)% %RESP(X-NONE)%", "r1 -"),
            ("%DURATION%ms", "7ms"),
            ("%START_TIME(%s)%", "1"),
            (
                "%START_TIME(%Y-%m-%dT%H:%M:%S.%3f)%",
                "1970-01-01T00:00:01.500",
            ),
            ("100%% %RESPONSE_CODE%", "100% 503"),
            (
                "%UPSTREAM_REQUEST_ATTEMPT_COUNT% %DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%",
                "1 10.0.0.2",
            ),
        ];
        for (text, want) in rows {
            let f = LogFormat::Text(TextFormat::compile(text).unwrap());
            assert_eq!(f.render(r), format!("{want}\n"), "{text}");
        }
        let labels = LogFormat::json([
            ("foo", "%REQ(X-FOO)%"),
            ("code", "%RESPONSE_CODE%"),
            ("mixed", "c=%RESPONSE_CODE%"),
        ])
        .unwrap();
        let v: serde_json::Value = serde_json::from_str(&labels.render(r)).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"foo": "bar-baz", "code": 503, "mixed": "c=503"})
        );
    });
}

#[test]
fn refuses_unknown_operators_naming_them() {
    let rows: &[(&str, &str)] = &[
        ("%NOPE%", "unknown command operator %NOPE%"),
        ("%REQ()%", "needs a header name"),
        ("%TRAILER(grpc-status)%", "not supported"),
        ("%RESPONSE_CODE", "unterminated"),
        ("%REQ(X):abc%", "not a number"),
        ("%DURATION(x)%", "takes no argument"),
    ];
    for (text, needle) in rows {
        let e = TextFormat::compile(text).unwrap_err();
        assert!(e.to_string().contains(needle), "{text}: {e}");
    }
}
