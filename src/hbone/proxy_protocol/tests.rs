use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::time::timeout;

use super::*;

const T: Duration = Duration::from_secs(5);

fn header(src: &str, dst: &str, id: Option<&str>) -> ProxyHeader {
    ProxyHeader {
        source: src.parse().expect("src"),
        destination: dst.parse().expect("dst"),
        peer_identity: id.map(|i| i.parse().expect("id")),
    }
}

async fn parse(bytes: &[u8]) -> Result<ProxyHeader, ProxyProtocolError> {
    let mut r: &[u8] = bytes;
    timeout(T, read_proxy_v2(&mut r)).await.expect("in time")
}

#[tokio::test]
async fn ipv4_with_identity_round_trips() {
    let h = header(
        "10.0.0.1:43210",
        "10.96.0.10:8080",
        Some("spiffe://cluster.local/ns/a/sa/b"),
    );
    assert_eq!(parse(&encode_proxy_v2(&h)).await.expect("parse"), h);
}

#[tokio::test]
async fn ipv6_without_identity_round_trips() {
    let h = header("[fd00::1]:1234", "[fd00::2]:80", None);
    assert_eq!(parse(&encode_proxy_v2(&h)).await.expect("parse"), h);
}

#[tokio::test]
async fn unknown_tlvs_are_skipped() {
    let h = header("10.0.0.1:1", "10.0.0.2:2", Some("spiffe://td/ns/n/sa/s"));
    let mut bytes = encode_proxy_v2(&h);
    // Append a NOOP TLV (type 0x04) of 2 bytes and fix the length.
    bytes.extend_from_slice(&[0x04, 0x00, 0x02, 0xAA, 0xBB]);
    let len = u16::from_be_bytes([bytes[14], bytes[15]]) + 5;
    bytes[14..16].copy_from_slice(&len.to_be_bytes());
    assert_eq!(parse(&bytes).await.expect("parse"), h);
}

#[tokio::test]
async fn reads_exactly_the_header_over_tcp() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let h = header(
        "127.0.0.5:5555",
        "127.0.1.1:80",
        Some("spiffe://td/ns/n/sa/s"),
    );
    let mut wire = encode_proxy_v2(&h);
    wire.extend_from_slice(b"GET / HTTP/1.1\r\n\r\n");
    let client = tokio::spawn(async move {
        let mut c = tokio::net::TcpStream::connect(addr).await.expect("connect");
        c.write_all(&wire).await.expect("write");
        c.shutdown().await.expect("shutdown");
    });
    let (mut tcp, _) = timeout(T, listener.accept())
        .await
        .expect("in time")
        .expect("accept");
    let got = timeout(T, read_proxy_v2(&mut tcp))
        .await
        .expect("in time")
        .expect("parse");
    assert_eq!(got, h);
    let mut rest = Vec::new();
    timeout(T, tcp.read_to_end(&mut rest))
        .await
        .expect("in time")
        .expect("read");
    assert_eq!(rest, b"GET / HTTP/1.1\r\n\r\n");
    client.await.expect("client");
}

/// Whether an error is the one a case expects.
type IsExpected = fn(&ProxyProtocolError) -> bool;

#[tokio::test]
async fn malformed_headers_are_errors() {
    let good = encode_proxy_v2(&header(
        "10.0.0.1:1",
        "10.0.0.2:2",
        Some("spiffe://td/ns/n/sa/s"),
    ));
    let with = |i: usize, b: u8| {
        let mut v = good.clone();
        v[i] = b;
        v
    };
    let cases: Vec<(&str, Vec<u8>, IsExpected)> = vec![
        ("empty", vec![], |e| matches!(e, ProxyProtocolError::Io(_))),
        (
            "v1 text",
            b"PROXY TCP4 1.1.1.1 2.2.2.2 1 2\r\n".to_vec(),
            |e| matches!(e, ProxyProtocolError::BadSignature),
        ),
        (
            "plain http",
            b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
            |e| matches!(e, ProxyProtocolError::BadSignature),
        ),
        ("version 1", with(12, 0x11), |e| {
            matches!(e, ProxyProtocolError::BadVersion(1))
        }),
        ("LOCAL command", with(12, 0x20), |e| {
            matches!(e, ProxyProtocolError::UnsupportedCommand(0))
        }),
        ("UDP", with(13, 0x12), |e| {
            matches!(e, ProxyProtocolError::UnsupportedFamily(0x12))
        }),
        ("unix", with(13, 0x31), |e| {
            matches!(e, ProxyProtocolError::UnsupportedFamily(0x31))
        }),
        (
            "length too short",
            {
                let mut v = good.clone();
                v[14..16].copy_from_slice(&4u16.to_be_bytes());
                v
            },
            |e| matches!(e, ProxyProtocolError::ShortAddresses { len: 4 }),
        ),
        ("truncated", good[..good.len() - 3].to_vec(), |e| {
            matches!(e, ProxyProtocolError::Io(_))
        }),
        (
            "TLV past end",
            {
                let mut v = good.clone();
                // TLV length field (after 16 fixed + 12 addr + 1 type bytes) claims 200 bytes.
                v[29..31].copy_from_slice(&200u16.to_be_bytes());
                v
            },
            |e| matches!(e, ProxyProtocolError::BadTlv { offset: 0 }),
        ),
        (
            "bad identity",
            {
                let h = header("10.0.0.1:1", "10.0.0.2:2", None);
                let mut v = encode_proxy_v2(&h);
                let id = b"not-a-spiffe-id";
                v.push(TLV_PEER_IDENTITY);
                v.extend_from_slice(&(id.len() as u16).to_be_bytes());
                v.extend_from_slice(id);
                let len = (12 + 3 + id.len()) as u16;
                v[14..16].copy_from_slice(&len.to_be_bytes());
                v
            },
            |e| matches!(e, ProxyProtocolError::BadIdentity(_)),
        ),
    ];
    for (name, bytes, want) in cases {
        match parse(&bytes).await {
            Err(e) => assert!(want(&e), "{name}: unexpected error {e:?}"),
            Ok(h) => panic!("{name}: parsed {h:?}"),
        }
    }
}
