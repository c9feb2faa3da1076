//! Consistent-hash keys and the request hash.

use super::*;

fn headers(pairs: &[(&str, &str)]) -> http::HeaderMap {
    let mut h = http::HeaderMap::new();
    for (k, v) in pairs {
        h.append(
            HeaderName::from_bytes(k.as_bytes()).expect("name"),
            v.parse().expect("value"),
        );
    }
    h
}

/// (case, key, headers, path and query, client IP, expected hash).
type Row<'a> = (
    &'a str,
    &'a HashKey,
    &'a http::HeaderMap,
    &'a str,
    Option<IpAddr>,
    Option<u64>,
);

#[test]
fn each_key_hashes_its_part_of_the_request() {
    let user = HashKey::Header(HeaderName::from_static("x-user"));
    let cookie = HashKey::Cookie {
        name: "session".to_string(),
        path: None,
        ttl: None,
    };
    let query = HashKey::QueryParam("id".to_string());
    let h = headers(&[("x-user", "jason"), ("cookie", "a=1; session=abc")]);
    let ip: IpAddr = "10.0.0.1".parse().expect("ip");
    let rows: &[Row<'_>] = &[
        (
            "header present",
            &user,
            &h,
            "/",
            None,
            Some(fnv1a(b"jason")),
        ),
        (
            "header absent",
            &user,
            &http::HeaderMap::new(),
            "/",
            None,
            None,
        ),
        (
            "cookie present",
            &cookie,
            &h,
            "/",
            None,
            Some(fnv1a(b"abc")),
        ),
        (
            "cookie absent",
            &cookie,
            &http::HeaderMap::new(),
            "/",
            None,
            None,
        ),
        (
            "query present",
            &query,
            &h,
            "/p?x=1&id=7",
            None,
            Some(fnv1a(b"7")),
        ),
        ("query absent", &query, &h, "/p?x=1", None, None),
        (
            "source ip",
            &HashKey::SourceIp,
            &h,
            "/",
            Some(ip),
            Some(fnv1a(&[10, 0, 0, 1])),
        ),
        ("no source ip", &HashKey::SourceIp, &h, "/", None, None),
    ];
    for (name, key, headers, pq, ip, want) in rows {
        assert_eq!(
            request_hash(key, headers, pq, ip.map(crate::addr::ClientIp)),
            *want,
            "{name}"
        );
    }
}

#[test]
fn mix_spreads_nearby_inputs() {
    assert_ne!(mix(1, 2), mix(1, 3));
    assert_ne!(mix(1, 2), mix(2, 1));
}
