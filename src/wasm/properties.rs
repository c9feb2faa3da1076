//! `proxy_get_property` / `proxy_set_property`: Envoy's attribute paths
//! (<https://www.envoyproxy.io/docs/envoy/latest/intro/arch_overview/advanced/attributes>)
//! as Istio plugins read them. A path arrives as NUL-separated segments;
//! values are raw bytes: strings as UTF-8, integers as 8-byte little-endian,
//! booleans as one byte, per Envoy's encoding for wasm.

use super::host::HostState;

/// The value at `path`, or `None` (→ `NotFound`).
pub(crate) fn get(st: &HostState, path: &[u8]) -> Option<Vec<u8>> {
    // Values a plugin set win, as Envoy's filter state does for its own keys.
    if let Some(v) = st.exchange.as_ref().and_then(|ex| ex.properties.get(path)) {
        return Some(v.clone());
    }
    if let Some(v) = st.root_properties.get(path) {
        return Some(v.clone());
    }
    let segments: Vec<&str> = path
        .split(|b| *b == 0)
        .map(|s| std::str::from_utf8(s).unwrap_or(""))
        .collect();
    let env = &st.env;
    let s = |v: &str| Some(v.as_bytes().to_vec());
    let int = |v: i64| Some(v.to_le_bytes().to_vec());
    match segments.as_slice() {
        ["plugin_name"] => return s(&env.name),
        ["plugin_root_id"] => return s(&env.root_id),
        ["plugin_vm_id"] => return s(&env.vm_id),
        ["node", "metadata", key] => return env.node_metadata.get(*key).and_then(|v| s(v)),
        ["node", "id"] => return env.node_metadata.get("NODE_ID").and_then(|v| s(v)),
        _ => {}
    }
    let ex = st.exchange.as_ref()?;
    let props = &ex.props;
    let header = |name: &str| -> Option<Vec<u8>> {
        ex.request_headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
    };
    match segments.as_slice() {
        ["request", "path"] => header(":path").or_else(|| s(&props.path)),
        ["request", "url_path"] => {
            let path = header(":path").unwrap_or_else(|| props.path.as_bytes().to_vec());
            let end = path.iter().position(|b| *b == b'?').unwrap_or(path.len());
            Some(path[..end].to_vec())
        }
        ["request", "host"] => header(":authority").or_else(|| s(&props.authority)),
        ["request", "scheme"] => header(":scheme").or_else(|| s(&props.scheme)),
        ["request", "method"] => header(":method").or_else(|| s(&props.method)),
        ["request", "headers", name] => header(name),
        ["request", "id"] => header("x-request-id").or_else(|| s(&props.request_id)),
        ["request", "protocol"] => s(&props.protocol),
        ["request", "referer"] => header("referer"),
        ["request", "useragent"] => header("user-agent"),
        ["response", "code"] => ex.response_code.map(i64::from).and_then(int),
        ["response", "headers", name] => ex
            .response_headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone()),
        ["source", "address"] => props.source.map(|a| a.to_string().into_bytes()),
        ["source", "port"] => props.source.map(|a| i64::from(a.port())).and_then(int),
        ["source", "principal"] | ["connection", "uri_san_peer_certificate"] => {
            props.source_principal.as_deref().and_then(s)
        }
        ["connection", "mtls"] => Some(vec![u8::from(props.source_principal.is_some())]),
        ["destination", "address"] => props.destination.map(|a| a.to_string().into_bytes()),
        ["destination", "port"] => props.destination.map(|a| i64::from(a.port())).and_then(int),
        ["destination", "service", "name"] => {
            props.destination_service.as_ref().and_then(|n| s(&n.name))
        }
        ["destination", "service", "namespace"] => props
            .destination_service
            .as_ref()
            .and_then(|n| s(&n.namespace)),
        ["upstream", "address"] => ex.upstream.map(|a| a.to_string().into_bytes()),
        ["upstream", "port"] => ex.upstream.map(|a| i64::from(a.port())).and_then(int),
        _ => None,
    }
}

/// Stores a plugin-set property for the current request (or the root
/// context when no request is in progress).
pub(crate) fn set(st: &mut HostState, path: Vec<u8>, value: Vec<u8>) {
    match st.exchange.as_mut() {
        Some(ex) => {
            ex.properties.insert(path, value);
        }
        None => {
            st.root_properties.insert(path, value);
        }
    }
}
