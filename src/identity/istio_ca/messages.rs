//! The messages of Istio's `istio.v1.auth.IstioCertificateService` (istio/api
//! `security/v1alpha1/ca.proto`), declared by hand with `prost` so no `protoc` is needed.
//!
//! Field numbers are the proto's: `csr = 1`, `validity_duration = 3` (2 was the removed
//! `subject_id`), `metadata = 4`, and `cert_chain = 1` in the response.

/// The gRPC service name.
pub const ISTIO_CERTIFICATE_SERVICE: &str = "istio.v1.auth.IstioCertificateService";

/// The gRPC path of `CreateCertificate`.
pub const CREATE_CERTIFICATE_PATH: &str =
    "/istio.v1.auth.IstioCertificateService/CreateCertificate";

/// `IstioCertificateRequest`: a CSR and the requested validity.
///
/// Field 4, `metadata` (a `google.protobuf.Struct`), is not declared: istio-agent fills it only
/// for node agents that impersonate workloads (`ImpersonatedIdentity`); a workload asking for
/// its own certificate sends none, which on the wire is the same as leaving it out. Decoding
/// skips it when a peer does send it.
#[derive(Clone, PartialEq, prost::Message)]
pub struct IstioCertificateRequest {
    /// PEM-encoded PKCS#10 certificate request. The CA uses its public key; it may overwrite
    /// any other field (Istio takes the SAN from the authenticated caller).
    #[prost(string, tag = "1")]
    pub csr: String,
    /// Requested validity in seconds; the CA may shorten it (istiod caps it at its
    /// `--max-workload-cert-ttl`).
    #[prost(int64, tag = "3")]
    pub validity_duration: i64,
}

/// `IstioCertificateResponse`: the issued chain, PEM, leaf first and root last.
#[derive(Clone, PartialEq, prost::Message)]
pub struct IstioCertificateResponse {
    /// One PEM certificate per element: leaf, intermediates, root.
    #[prost(string, repeated, tag = "1")]
    pub cert_chain: Vec<String>,
}

#[cfg(test)]
mod tests {
    use prost::Message;

    use super::*;

    #[test]
    fn request_encodes_with_the_proto_field_numbers() {
        let req = IstioCertificateRequest {
            csr: "PEM".into(),
            validity_duration: 86_400,
        };
        // Field 1, wire type 2 (length-delimited): key 0x0a, length 3, "PEM".
        // Field 3, wire type 0 (varint): key 0x18, 86400 = 0x80 0xa3 0x05.
        let want = [0x0a, 3, b'P', b'E', b'M', 0x18, 0x80, 0xa3, 0x05];
        assert_eq!(req.encode_to_vec(), want);
        assert_eq!(IstioCertificateRequest::decode(&want[..]).unwrap(), req);
    }

    #[test]
    fn request_decoding_skips_metadata_sent_by_node_agents() {
        // Field 4, wire type 2: an empty google.protobuf.Struct (key 0x22, length 0).
        let bytes = [0x0a, 1, b'x', 0x18, 0x05, 0x22, 0x00];
        let req = IstioCertificateRequest::decode(&bytes[..]).unwrap();
        assert_eq!(req.csr, "x");
        assert_eq!(req.validity_duration, 5);
    }

    #[test]
    fn response_round_trips_a_chain_in_order() {
        let resp = IstioCertificateResponse {
            cert_chain: vec!["leaf".into(), "root".into()],
        };
        // Each element: key 0x0a (field 1, length-delimited), length, bytes.
        let want = [
            0x0a, 4, b'l', b'e', b'a', b'f', 0x0a, 4, b'r', b'o', b'o', b't',
        ];
        assert_eq!(resp.encode_to_vec(), want);
        assert_eq!(IstioCertificateResponse::decode(&want[..]).unwrap(), resp);
    }

    #[test]
    fn path_names_the_service_and_method() {
        assert_eq!(
            CREATE_CERTIFICATE_PATH,
            format!("/{ISTIO_CERTIFICATE_SERVICE}/CreateCertificate")
        );
    }
}
