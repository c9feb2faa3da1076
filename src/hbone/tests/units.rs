//! Pure parsing tests: CONNECT targets, metadata headers, protocol sniffing.

use crate::hbone::sniff::classify;
use crate::hbone::{Baggage, ConnectTarget, Forwarded, Sniffed, TargetParseError};

/// Whether an error is the one a case expects.
type IsExpected = fn(&TargetParseError) -> bool;

#[test]
fn connect_target_parse_and_print() {
    let ok = [
        ("10.0.0.1:80", "10.0.0.1:80"),
        ("[fd00::1]:8080", "[fd00::1]:8080"),
        ("reviews:9080", "reviews:9080"),
        (
            "reviews.default.svc.cluster.local:9080",
            "reviews.default.svc.cluster.local:9080",
        ),
    ];
    for (input, printed) in ok {
        let t: ConnectTarget = input.parse().unwrap_or_else(|e| panic!("{input}: {e}"));
        assert_eq!(t.to_string(), printed);
        assert_eq!(t.to_string().parse::<ConnectTarget>().as_ref(), Ok(&t));
    }
    let bad: [(&str, IsExpected); 8] = [
        ("example.com", |e| {
            matches!(e, TargetParseError::MissingPort(_))
        }),
        ("10.0.0.1", |e| {
            matches!(e, TargetParseError::MissingPort(_))
        }),
        ("10.0.0.1:0", |e| matches!(e, TargetParseError::BadPort(_))),
        ("host:65536", |e| matches!(e, TargetParseError::BadPort(_))),
        ("host:+80", |e| matches!(e, TargetParseError::BadPort(_))),
        (":80", |e| matches!(e, TargetParseError::BadHost(_))),
        ("fd00::1:80", |e| matches!(e, TargetParseError::BadHost(_))),
        ("a..b:80", |e| matches!(e, TargetParseError::BadHost(_))),
    ];
    for (input, want) in bad {
        match input.parse::<ConnectTarget>() {
            Err(e) => assert!(want(&e), "{input}: unexpected {e:?}"),
            Ok(t) => panic!("{input}: parsed as {t:?}"),
        }
    }
}

#[test]
fn baggage_parse_and_print() {
    let b = Baggage::parse(
        "k8s.cluster.name=Kubernetes, k8s.namespace.name=default,k8s.job.name=nightly;prop=1,\
         service.name=sleep,service.version=v1,unknown.key=x,broken,empty=",
    );
    assert_eq!(b.cluster_name.as_deref(), Some("Kubernetes"));
    assert_eq!(b.namespace.as_deref(), Some("default"));
    assert_eq!(b.workload_name(), Some("nightly"));
    assert_eq!(b.service_name.as_deref(), Some("sleep"));
    assert_eq!(b.service_version.as_deref(), Some("v1"));
    assert_eq!(
        b.to_string(),
        "k8s.cluster.name=Kubernetes,k8s.namespace.name=default,k8s.job.name=nightly,\
         service.name=sleep,service.version=v1"
    );
    assert_eq!(Baggage::parse(&b.to_string()), b);
    assert!(Baggage::parse("").is_empty());
}

#[test]
fn forwarded_parse_forms() {
    let cases = [
        (
            "for=\"10.0.0.7:41234\";host=reviews",
            Some("10.0.0.7"),
            Some(41234),
            Some("reviews"),
        ),
        ("for=10.0.0.7", Some("10.0.0.7"), None, None),
        ("For=\"[fd00::7]:80\"", Some("fd00::7"), Some(80), None),
        ("for=\"[::1]\"", Some("::1"), None, None),
        ("for=unknown;host=x", None, None, Some("x")),
        ("for=_hidden, for=10.0.0.9", None, None, None),
        (
            "host=\"a.b\";proto=http;for=\"10.1.1.1:1\"",
            Some("10.1.1.1"),
            Some(1),
            Some("a.b"),
        ),
        ("garbage", None, None, None),
    ];
    for (input, ip, port, host) in cases {
        let f: Forwarded = input.parse().expect("infallible");
        assert_eq!(f.for_ip, ip.map(|i| i.parse().expect("ip")), "{input}");
        assert_eq!(f.for_port, port, "{input}");
        assert_eq!(f.host.as_deref(), host, "{input}");
    }
    let f = Forwarded::new("[fd00::7]:80".parse().expect("addr"), Some("svc".into()));
    assert_eq!(f.to_string(), "for=\"[fd00::7]:80\";host=svc");
    assert_eq!(f.to_string().parse::<Forwarded>().expect("infallible"), f);
    let f = Forwarded::new("10.0.0.7:41234".parse().expect("addr"), None);
    assert_eq!(f.to_string(), "for=\"10.0.0.7:41234\"");
}

#[test]
fn sniff_classification() {
    let cases: [(&[u8], bool, Option<Sniffed>); 11] = [
        (b"", false, None),
        (b"G", false, None),
        (b"GET", false, None),
        (b"GET ", false, Some(Sniffed::Http1)),
        (b"DELETE /x HTTP/1.1", false, Some(Sniffed::Http1)),
        (b"PRI * HTTP/2.0\r\n", false, None),
        (
            b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
            false,
            Some(Sniffed::H2c),
        ),
        (b"SET k v\r\n", false, Some(Sniffed::Other)),
        (b"\x16\x03\x01", false, Some(Sniffed::Other)),
        (b"GE", true, Some(Sniffed::Other)),
        (b"", true, Some(Sniffed::Other)),
    ];
    for (bytes, eof, want) in cases {
        assert_eq!(
            classify(bytes, eof),
            want,
            "{:?}",
            String::from_utf8_lossy(bytes)
        );
    }
}
