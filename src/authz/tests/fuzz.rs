//! Fuzz targets for what a caller controls in RequestAuthentication: the
//! token, its header and payload, and (through `jwksUri`) the key set.
//! Under `cargo test` each replays its corpus (`__fuzz__/<target>/corpus`)
//! and a batch of random inputs; `cargo bolero test` runs them longer.

use std::sync::OnceLock;

use base64::Engine;
use pingora_http::RequestHeader;

use super::*;
use crate::authz::jwt::parse_jwks;
use crate::test_helpers::jwt::TestIssuer;

#[test]
fn jwks_documents() {
    bolero::check!().for_each(|input: &[u8]| {
        let _ = parse_jwks(&String::from_utf8_lossy(input));
    });
}

fn issuer_and_table() -> &'static (TestIssuer, AuthzTable) {
    static T: OnceLock<(TestIssuer, AuthzTable)> = OnceLock::new();
    T.get_or_init(|| {
        let issuer = TestIssuer::es256("https://fuzz.example", "k1");
        let yaml = format!(
            "apiVersion: security.istio.io/v1\nkind: RequestAuthentication\nmetadata: {{name: jwt, namespace: bookinfo}}\nspec:\n  targetRefs: [{{kind: Service, name: productpage}}]\n  jwtRules:\n  - issuer: {}\n    jwks: '{}'\n    outputClaimToHeaders: [{{header: x-sub, claim: sub}}]\n---\n",
            issuer.issuer,
            issuer.jwks()
        );
        (issuer, table(&yaml))
    })
}

/// A token from arbitrary bytes, and one whose header and payload are
/// arbitrary but well encoded (so the parser gets past the format check):
/// rejected with a reason or accepted, never a panic. Signed arbitrary
/// claims reach the claim checks (`exp`, `nbf`, `aud` of any JSON type).
#[test]
fn bearer_tokens() {
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    bolero::check!()
        .with_type::<(String, Vec<u8>, Vec<u8>, bool)>()
        .for_each(|(raw, header, payload, sign)| {
            // Read from the static inside: the closure must be unwind-safe.
            let (issuer, t) = issuer_and_table();
            let set = t
                .for_destination(
                    ServiceKind::Service,
                    &NamespacedName::new(SVC.to_string(), "productpage".to_string()),
                )
                .expect("applies");
            let token = if *sign {
                match serde_json::from_slice::<serde_json::Value>(payload) {
                    Ok(claims @ serde_json::Value::Object(_)) => issuer.sign(claims),
                    _ => return,
                }
            } else if raw.contains('.') {
                raw.clone()
            } else {
                format!("{}.{}.{}", b64.encode(header), b64.encode(payload), raw)
            };
            let mut req = RequestHeader::build("GET", b"/", None).unwrap();
            if req
                .insert_header("authorization", format!("Bearer {token}"))
                .is_err()
            {
                return;
            }
            let _ = set.authenticate(&mut req);
        });
}
