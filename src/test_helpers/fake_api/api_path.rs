//! What a request path names (`/apis/{group}/{version}/namespaces/{ns}/{plural}/{name}`),
//! query parameters, and how an object is presented as served. Shared by one-shot requests
//! (`requests.rs`) and watch streams (`watch_stream.rs`), below both.

use serde_json::{json, Value};

use super::objects::{find_type, ResourceType};

/// What a request path names.
pub(super) struct ApiPath {
    pub(super) rt: &'static ResourceType,
    pub(super) version: String,
    pub(super) namespace: Option<String>,
    pub(super) name: Option<String>,
    pub(super) status: bool,
}

/// Parses a request path; `None` for anything the fake does not serve (answered 404).
pub(super) fn parse_path(path: &str) -> Option<ApiPath> {
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (group, version, rest) = match parts.as_slice() {
        ["api", version, rest @ ..] => ("", *version, rest),
        ["apis", group, version, rest @ ..] => (*group, *version, rest),
        _ => return None,
    };
    let (namespace, rest) = match rest {
        ["namespaces", ns, plural, rest @ ..] if *plural != "status" => {
            (Some(ns.to_string()), [&[*plural][..], rest].concat())
        }
        _ => (None, rest.to_vec()),
    };
    let (plural, name, sub) = match rest.as_slice() {
        [plural] => (*plural, None, None),
        [plural, name] => (*plural, Some(name.to_string()), None),
        [plural, name, sub] => (*plural, Some(name.to_string()), Some(*sub)),
        _ => return None,
    };
    let rt = find_type(group, version, plural)?;
    if rt.namespaced == namespace.is_none() && name.is_some() {
        return None;
    }
    match sub {
        None | Some("status") => Some(ApiPath {
            rt,
            version: version.to_string(),
            namespace,
            name,
            status: sub.is_some(),
        }),
        Some(_) => None,
    }
}

/// The percent-decoded value of `key` in a query string.
pub(super) fn query_param(query: &str, key: &str) -> Option<String> {
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (k == key).then(|| percent_decode(v))
    })
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
                match u8::from_str_radix(hex, 16) {
                    Ok(b) => {
                        out.push(b);
                        i += 3;
                        continue;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            b'+' => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Stamps the requested apiVersion and kind, as the server converts on read.
pub(super) fn as_served(api: &ApiPath, mut object: Value) -> Value {
    if let Some(map) = object.as_object_mut() {
        map.insert("apiVersion".into(), json!(api.rt.api_version(&api.version)));
        map.insert("kind".into(), json!(api.rt.kind));
    }
    object
}
