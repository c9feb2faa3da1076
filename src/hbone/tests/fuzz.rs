//! Fuzz targets for what a peer controls on the HBONE port: the PROXY v2
//! header, the CONNECT authority, `baggage` and `forwarded`. Under
//! `cargo test` each replays its corpus (`__fuzz__/<target>/corpus`) and a
//! batch of random inputs; `cargo bolero test` runs them longer.

use std::str::FromStr;

use crate::hbone::headers::{Baggage, Forwarded};
use crate::hbone::proxy_protocol::{encode_proxy_v2, read_proxy_v2, ProxyHeader, SIGNATURE};
use crate::hbone::target::ConnectTarget;
use crate::identity::Identity;

fn read_header(bytes: &[u8]) -> Option<ProxyHeader> {
    let mut reader = bytes;
    futures::executor::block_on(read_proxy_v2(&mut reader)).ok()
}

/// Any bytes after the signature: a header or an error, and a header that
/// parses encodes back to what it said.
#[test]
fn proxy_v2_header() {
    bolero::check!().for_each(|input: &[u8]| {
        let mut bytes = SIGNATURE.to_vec();
        bytes.extend_from_slice(input);
        if let Some(header) = read_header(&bytes) {
            let again = read_header(&encode_proxy_v2(&header)).expect("our encoding reads back");
            assert_eq!(again, header);
        }
        // Without the signature prefix too: a peer need not send it.
        let _ = read_header(input);
    });
}

#[test]
fn connect_authority() {
    bolero::check!().for_each(|input: &[u8]| {
        let text = String::from_utf8_lossy(input);
        if let Ok(target) = ConnectTarget::from_str(&text) {
            let _ = (target.port(), target.addr());
        }
    });
}

#[test]
fn baggage_and_forwarded() {
    bolero::check!().for_each(|input: &[u8]| {
        let text = String::from_utf8_lossy(input);
        let baggage = Baggage::parse(&text);
        let _ = (baggage.workload_name(), baggage.is_empty());
        let _ = Forwarded::from_str(&text);
    });
}

#[test]
fn spiffe_identity() {
    bolero::check!().for_each(|input: &[u8]| {
        let text = String::from_utf8_lossy(input);
        if let Ok(id) = Identity::from_str(&text) {
            let again = Identity::from_str(&id.to_string()).expect("an identity prints parseably");
            assert_eq!(again, id);
        }
    });
}
