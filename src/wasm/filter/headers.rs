//! Moving headers between the proxy's maps and the plugin's view: the
//! snapshot a phase starts from (pseudo-headers first, as Envoy presents
//! them) and the write-back of whatever the plugins changed.

use std::collections::BTreeMap;

use http::{HeaderName, HeaderValue};

use crate::routing::HeaderEdit;
use crate::wasm::abi::HeaderList;

/// Header access the wasm filters need beyond [`HeaderEdit`]: listing every
/// header and appending a repeated one. Implemented for [`http::HeaderMap`];
/// the proxy implements it for Pingora's header types.
pub trait HeaderAccess: HeaderEdit {
    /// Calls `f` with each (name, value), repeated names once per value.
    fn visit_headers(&self, f: &mut dyn FnMut(&str, &[u8]));
    /// Adds a value without removing existing ones.
    fn append_header(&mut self, name: HeaderName, value: HeaderValue);
}

impl HeaderAccess for http::HeaderMap {
    fn visit_headers(&self, f: &mut dyn FnMut(&str, &[u8])) {
        for (k, v) in self.iter() {
            f(k.as_str(), v.as_bytes());
        }
    }

    fn append_header(&mut self, name: HeaderName, value: HeaderValue) {
        self.append(name, value);
    }
}

/// `pseudo` (e.g. `:method`, `:path`) followed by the map's headers.
pub(crate) fn snapshot(pseudo: &[(&str, &[u8])], headers: &impl HeaderAccess) -> HeaderList {
    let mut list: HeaderList = pseudo
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_vec()))
        .collect();
    headers.visit_headers(&mut |k, v| list.push((k.to_ascii_lowercase(), v.to_vec())));
    list
}

/// The value of a pseudo-header in `list`.
pub(crate) fn pseudo<'a>(list: &'a HeaderList, name: &str) -> Option<&'a [u8]> {
    list.iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_slice())
}

/// Makes `real` hold the regular headers of `list`: names the plugins
/// dropped are removed, names whose values changed are rewritten in the
/// plugins' order. Unchanged names are not touched (keeping Pingora's case
/// map for them). Invalid names or values a plugin wrote are skipped.
pub(crate) fn write_back(list: &HeaderList, real: &mut impl HeaderAccess) {
    let mut before: BTreeMap<String, Vec<Vec<u8>>> = BTreeMap::new();
    real.visit_headers(&mut |k, v| {
        before
            .entry(k.to_ascii_lowercase())
            .or_default()
            .push(v.to_vec())
    });
    let mut after: BTreeMap<&str, Vec<&[u8]>> = BTreeMap::new();
    for (k, v) in list.iter().filter(|(k, _)| !k.starts_with(':')) {
        after.entry(k.as_str()).or_default().push(v.as_slice());
    }
    for name in before.keys().filter(|k| !after.contains_key(k.as_str())) {
        if let Ok(name) = HeaderName::from_bytes(name.as_bytes()) {
            real.remove(&name);
        }
    }
    for (name, values) in after {
        let unchanged = before.get(name).is_some_and(|old| {
            old.len() == values.len() && old.iter().zip(&values).all(|(a, b)| a.as_slice() == *b)
        });
        if unchanged {
            continue;
        }
        let Ok(header) = HeaderName::from_bytes(name.as_bytes()) else {
            tracing::debug!(%name, "plugin wrote an invalid header name; skipped");
            continue;
        };
        real.remove(&header);
        for value in values {
            match HeaderValue::from_bytes(value) {
                Ok(v) => real.append_header(header.clone(), v),
                Err(_) => tracing::debug!(%name, "plugin wrote an invalid header value; skipped"),
            }
        }
    }
}
