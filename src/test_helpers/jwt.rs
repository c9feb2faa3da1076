//! Test JWT issuers: a key pair per algorithm, its JSON Web Key Set, and
//! tokens signed with it. The RSA key is a fixed test fixture (rcgen cannot
//! generate RSA keys); the EC and Ed25519 keys are generated per issuer.

use base64::Engine;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};

/// The RS256 fixture's private key (PKCS#8) and public modulus.
const RSA_KEY: &str = include_str!("jwt/rs256-test-key.pem");
const RSA_N: &str = "zqJqxZ_d5Sr4i7qZ9G_yBVPIxB0S1dULaxD0CQ_w9GmD5cx_dorVvq6Mlq6r8tee4ph5dv_VA2yfgFLe6hyTTmuJWDsM2RXLHyoeP5NoWMHUfW3TFaikwYwdvZRAZ07zUHwePd1Adzs5YXljaR1GEWwMRlNcF8fRxcRa-iqs3P63hM3-YBnbkdkfioaF5o1qIvVa-lCaKOvVAaP_KD-dw0GNW-2hIuD0UKELoWlEBDdZC1QJDW3-Y6fX-RJNmWJUn2cBIYTn5QQvbhhretT7D85GmGcKCvFv708ma-Nk7W_sFPkFTGAj8aB2g4abRITAZ0ExxJodO6-2KxYvE1OWZQ";

/// An issuer that signs test tokens.
pub struct TestIssuer {
    pub issuer: String,
    pub kid: String,
    alg: Algorithm,
    key: EncodingKey,
    jwk: Value,
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

impl TestIssuer {
    /// ES256 with a fresh P-256 key.
    pub fn es256(issuer: &str, kid: &str) -> Self {
        let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("P-256 key");
        let raw = pair.public_key_raw();
        let (x, y) = raw[1..].split_at(32);
        Self::new(
            issuer,
            kid,
            Algorithm::ES256,
            EncodingKey::from_ec_pem(pair.serialize_pem().as_bytes()).expect("EC key"),
            json!({"kty": "EC", "crv": "P-256", "x": b64(x), "y": b64(y)}),
        )
    }

    /// EdDSA with a fresh Ed25519 key.
    pub fn ed25519(issuer: &str, kid: &str) -> Self {
        let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).expect("Ed25519 key");
        Self::new(
            issuer,
            kid,
            Algorithm::EdDSA,
            EncodingKey::from_ed_pem(pair.serialize_pem().as_bytes()).expect("Ed25519 key"),
            json!({"kty": "OKP", "crv": "Ed25519", "x": b64(pair.public_key_raw())}),
        )
    }

    /// RS256 with the fixture key.
    pub fn rs256(issuer: &str, kid: &str) -> Self {
        Self::new(
            issuer,
            kid,
            Algorithm::RS256,
            EncodingKey::from_rsa_pem(RSA_KEY.as_bytes()).expect("RSA fixture"),
            json!({"kty": "RSA", "n": RSA_N, "e": "AQAB"}),
        )
    }

    fn new(issuer: &str, kid: &str, alg: Algorithm, key: EncodingKey, mut jwk: Value) -> Self {
        jwk["kid"] = json!(kid);
        jwk["alg"] = json!(format!("{alg:?}"));
        jwk["use"] = json!("sig");
        TestIssuer {
            issuer: issuer.to_string(),
            kid: kid.to_string(),
            alg,
            key,
            jwk,
        }
    }

    /// The JSON Web Key Set with this issuer's public key.
    pub fn jwks(&self) -> String {
        json!({"keys": [self.jwk]}).to_string()
    }

    /// A token with `claims` (`iss` added) signed by this issuer.
    pub fn sign(&self, mut claims: Value) -> String {
        claims["iss"] = json!(self.issuer);
        let mut header = Header::new(self.alg);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, &claims, &self.key).expect("signs")
    }

    /// Seconds since the epoch, `offset` from now.
    pub fn now_plus(offset: i64) -> i64 {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("after 1970")
            .as_secs() as i64;
        now + offset
    }
}
