//! Destination lookups: Host header forms, HBONE authorities, `host:port` splitting.

use std::net::SocketAddr;

use super::*;
use crate::routing::test_support::snapshot;

#[test]
fn host_header_forms() {
    let snap = snapshot("apiVersion: v1\nkind: Service\nmetadata: {name: echo, namespace: other}\nspec: {ports: [{port: 8080, name: http}, {port: 80, name: web}]}\n");
    // (Host header, expected "ns/name:port" or None, rule)
    let rows = [
        (
            "reviews",
            Some("bookinfo/reviews:9080"),
            "short name in the waypoint's namespace; no port 80 → first port",
        ),
        (
            "reviews:15090",
            Some("bookinfo/reviews:15090"),
            "short name with port",
        ),
        ("reviews.bookinfo", Some("bookinfo/reviews:9080"), "name.ns"),
        (
            "reviews.bookinfo.svc",
            Some("bookinfo/reviews:9080"),
            "name.ns.svc",
        ),
        (
            "reviews.bookinfo.svc.cluster.local:9080",
            Some("bookinfo/reviews:9080"),
            "FQDN with port",
        ),
        (
            "Reviews.Bookinfo.SVC.cluster.local.",
            Some("bookinfo/reviews:9080"),
            "case-insensitive, trailing dot",
        ),
        (
            "productpage.bookinfo",
            Some("bookinfo/productpage:80"),
            "no port: port 80 when the Service has it",
        ),
        (
            "10.96.0.10:9080",
            Some("bookinfo/productpage:9080"),
            "clusterIP:port",
        ),
        (
            "10.96.0.10",
            Some("bookinfo/productpage:80"),
            "clusterIP without port",
        ),
        (
            "echo",
            None,
            "short names only resolve in the waypoint's namespace",
        ),
        ("echo.other", Some("other/echo:80"), "other namespace"),
        ("reviews:1234", None, "port not on the Service"),
        ("reviews:http", None, "port must be numeric"),
        (
            "api.example.com",
            Some("bookinfo/external:80"),
            "ServiceEntry host",
        ),
        (
            "api.example.com:443",
            Some("bookinfo/external:443"),
            "ServiceEntry host with port",
        ),
        (
            "240.0.0.1:443",
            Some("bookinfo/external:443"),
            "ServiceEntry VIP",
        ),
        ("nope.bookinfo", None, "unknown Service"),
    ];
    for (host, want, rule) in rows {
        let got = snap
            .find_destination_by_host(host)
            .map(|d| format!("{}:{}", d.service.key, d.port.number));
        assert_eq!(got.as_deref(), want, "{host}: {rule}");
    }
}

#[test]
fn hbone_authority_forms() {
    let snap = snapshot("");
    // (CONNECT authority, expected, rule)
    let rows = [
        (
            "10.96.0.20:9080",
            Some("bookinfo/reviews:9080"),
            "Service VIP:port",
        ),
        ("10.96.0.20:1", None, "VIP with a port the Service lacks"),
        (
            "10.1.0.21:8080",
            Some("bookinfo/productpage:80"),
            "podIP:targetPort → the Service port targeting it",
        ),
        (
            "10.1.0.11:9080",
            Some("bookinfo/reviews:9080"),
            "pod in several Services: first loaded wins",
        ),
        ("10.1.0.13:9080", None, "not-ready endpoint is unknown"),
        (
            "240.0.0.1:80",
            Some("bookinfo/external:80"),
            "ServiceEntry address",
        ),
    ];
    for (addr, want, rule) in rows {
        let addr: SocketAddr = addr.parse().expect("test addr");
        let got = snap
            .find_destination_by_addr(addr)
            .map(|d| format!("{}:{}", d.service.key, d.port.number));
        assert_eq!(got.as_deref(), want, "{addr}: {rule}");
    }
}

#[test]
fn split_host_port_forms() {
    let rows = [
        ("a", Some(("a", None))),
        ("a:80", Some(("a", Some(80)))),
        ("[::1]:80", Some(("::1", Some(80)))),
        ("[::1]", Some(("::1", None))),
        ("::1", Some(("::1", None))),
        ("a:x", None),
        ("[::1]x", None),
    ];
    for (input, want) in rows {
        assert_eq!(split_host_port(input), want, "{input}");
    }
}
