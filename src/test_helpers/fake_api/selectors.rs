//! Label and field selectors, as list and watch requests send them.
//! Equality-based label selectors (`a=b`, `a==b`, `a!=b`, `a`, `!a`) and the
//! `metadata.name` / `metadata.namespace` field selectors: what our clients use.

use serde_json::Value;

#[derive(Debug, Clone, PartialEq)]
enum Requirement {
    Equals(String, String),
    NotEquals(String, String),
    Exists(String),
    NotExists(String),
    Field(String, String),
}

/// Parsed `labelSelector` + `fieldSelector` of one request.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Selector(Vec<Requirement>);

impl Selector {
    pub fn parse(label_selector: Option<&str>, field_selector: Option<&str>) -> Selector {
        let mut reqs = Vec::new();
        for term in split_terms(label_selector) {
            let req = if let Some((k, v)) = term.split_once("!=") {
                Requirement::NotEquals(k.trim().into(), v.trim().into())
            } else if let Some((k, v)) = term.split_once("==").or_else(|| term.split_once('=')) {
                Requirement::Equals(k.trim().into(), v.trim().into())
            } else if let Some(k) = term.strip_prefix('!') {
                Requirement::NotExists(k.trim().into())
            } else {
                Requirement::Exists(term.to_string())
            };
            reqs.push(req);
        }
        for term in split_terms(field_selector) {
            if let Some((k, v)) = term.split_once("==").or_else(|| term.split_once('=')) {
                reqs.push(Requirement::Field(k.trim().into(), v.trim().into()));
            }
        }
        Selector(reqs)
    }

    pub fn matches(&self, object: &Value) -> bool {
        let labels = &object["metadata"]["labels"];
        self.0.iter().all(|req| match req {
            Requirement::Equals(k, v) => labels[k].as_str() == Some(v),
            Requirement::NotEquals(k, v) => labels[k].as_str() != Some(v),
            Requirement::Exists(k) => labels.get(k).is_some(),
            Requirement::NotExists(k) => labels.get(k).is_none(),
            Requirement::Field(path, v) => {
                let found = path
                    .split('.')
                    .try_fold(object, |o, part| o.get(part))
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                found == v
            }
        })
    }
}

fn split_terms(selector: Option<&str>) -> impl Iterator<Item = &str> {
    selector
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn label_and_field_selectors() {
        let pod =
            json!({"metadata": {"name": "a", "namespace": "ns", "labels": {"app": "x", "v": "1"}}});
        let yes = |l: Option<&str>, f: Option<&str>| Selector::parse(l, f).matches(&pod);
        assert!(yes(Some("app=x"), None));
        assert!(yes(Some("app==x,v"), None));
        assert!(!yes(Some("app!=x"), None));
        assert!(yes(Some("!missing"), None));
        assert!(!yes(Some("missing"), None));
        assert!(yes(None, Some("metadata.name=a")));
        assert!(!yes(None, Some("metadata.namespace=other")));
        assert!(yes(None, None));
    }
}
