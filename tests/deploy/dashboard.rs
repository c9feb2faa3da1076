//! The Grafana dashboard against the metrics src/ exports: every query is
//! PromQL, reads only exported series, and honours the dashboard's variables.

use std::collections::{BTreeMap, BTreeSet};

use promql_parser::parser::{self, Expr};
use promql_parser::util::{walk_expr, ExprVisitor};
use serde_json::Value as Json;

use super::{read, root, WAYPOINT_LABEL};

/// Every `istio_*` / `waypoint_*` metric name written as a string in src/.
fn exported_metrics() -> BTreeSet<String> {
    let name = regex::Regex::new(r#""((?:istio|waypoint)_[a-z0-9_]+)""#).expect("regex");
    let mut out = BTreeSet::new();
    let mut dirs = vec![root().join("src")];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).expect("src dir") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let text = std::fs::read_to_string(&path).expect("source");
                out.extend(name.captures_iter(&text).map(|c| c[1].to_owned()));
            }
        }
    }
    out
}

/// Every panel's queries, rows' nested panels included.
fn panels(dashboard: &Json) -> Vec<&Json> {
    let mut out = Vec::new();
    let mut todo: Vec<&Json> = dashboard["panels"]
        .as_array()
        .expect("panels")
        .iter()
        .collect();
    while let Some(p) = todo.pop() {
        if let Some(nested) = p["panels"].as_array() {
            todo.extend(nested);
        }
        if p["type"] != "row" {
            out.push(p);
        }
    }
    out
}

/// Collects each selector's metric name and label matchers.
#[derive(Default)]
struct Selectors(Vec<(String, BTreeMap<String, String>)>);

impl ExprVisitor for Selectors {
    type Error = String;
    fn pre_visit(&mut self, expr: &Expr) -> Result<bool, String> {
        let vs = match expr {
            Expr::VectorSelector(vs) => vs,
            Expr::MatrixSelector(ms) => &ms.vs,
            _ => return Ok(true),
        };
        let name = vs.name.clone().ok_or("a selector without a metric name")?;
        let matchers = vs
            .matchers
            .matchers
            .iter()
            .map(|m| (m.name.clone(), m.value.clone()))
            .collect();
        self.0.push((name, matchers));
        Ok(true)
    }
}

/// Parses a Grafana query as PromQL, with Grafana's interval variables
/// replaced by durations.
fn selectors(expr: &str) -> Vec<(String, BTreeMap<String, String>)> {
    let promql = expr
        .replace("$__rate_interval", "5m")
        .replace("$__interval", "1m")
        .replace("$__range", "1h");
    let ast = parser::parse(&promql).unwrap_or_else(|e| panic!("not PromQL: {expr}: {e}"));
    let mut found = Selectors::default();
    walk_expr(&mut found, &ast).expect("selectors have metric names");
    found.0
}

/// The exported metric a series name belongs to (histograms add suffixes).
fn exported_as<'a>(series: &'a str, exported: &BTreeSet<String>) -> Option<&'a str> {
    ["_bucket", "_sum", "_count"]
        .iter()
        .filter_map(|s| series.strip_suffix(s))
        .chain(std::iter::once(series))
        .find(|n| exported.contains(*n))
}

fn dashboard() -> Json {
    serde_json::from_str(&read("deploy/grafana/waypoint-dashboard.json")).expect("dashboard JSON")
}

#[test]
fn dashboard_queries_only_metrics_we_export_filtered_by_its_variables() {
    let exported = exported_metrics();
    assert!(
        exported.contains("istio_requests_total"),
        "metric scan found {exported:?}"
    );
    let dash = dashboard();
    let mut used = BTreeSet::new();
    for panel in panels(&dash) {
        let title = panel["title"].as_str().expect("title");
        let targets = panel["targets"].as_array().expect("targets");
        assert!(!targets.is_empty(), "{title}: no query");
        for t in targets {
            let expr = t["expr"].as_str().expect("expr");
            for (series, matchers) in selectors(expr) {
                let metric = exported_as(&series, &exported)
                    .unwrap_or_else(|| panic!("{title}: {series} is not exported by src/"));
                used.insert(metric.to_owned());
                assert_eq!(
                    matchers.get("namespace").map(String::as_str),
                    Some("$namespace"),
                    "{title}"
                );
                assert_eq!(
                    matchers.get(WAYPOINT_LABEL).map(String::as_str),
                    Some("$waypoint"),
                    "{title}"
                );
                if metric.starts_with("istio_") {
                    assert_eq!(
                        matchers.get("reporter").map(String::as_str),
                        Some("waypoint"),
                        "{title}"
                    );
                }
            }
        }
    }
    for wanted in [
        "istio_requests_total",
        "istio_request_duration_milliseconds",
        "istio_request_bytes",
        "istio_response_bytes",
        "istio_tcp_connections_opened_total",
        "istio_tcp_sent_bytes_total",
        "waypoint_config_reloads_total",
        "waypoint_cert_expiry_seconds",
        "waypoint_upstream_overflow_total",
        "waypoint_wasm_plugin_failures_total",
    ] {
        assert!(used.contains(wanted), "no panel shows {wanted}");
    }
}

#[test]
fn dashboard_uses_the_datasource_variable_and_our_waypoint_variables() {
    let dash = dashboard();
    assert!(dash["schemaVersion"].as_u64().expect("schemaVersion") >= 36);
    let vars: BTreeMap<&str, &Json> = dash["templating"]["list"]
        .as_array()
        .expect("templating")
        .iter()
        .map(|v| (v["name"].as_str().expect("name"), v))
        .collect();
    let ds = vars["datasource"];
    assert_eq!(
        (ds["type"].as_str(), ds["query"].as_str()),
        (Some("datasource"), Some("prometheus"))
    );
    let exported = exported_metrics();
    for (var, label) in [("namespace", "namespace"), ("waypoint", WAYPOINT_LABEL)] {
        let v = vars
            .get(var)
            .unwrap_or_else(|| panic!("no ${var} variable"));
        assert_eq!(v["datasource"]["uid"], "${datasource}");
        let query = v["query"]["query"].as_str().expect("query");
        let inner = query
            .strip_prefix("label_values(")
            .and_then(|q| q.strip_suffix(&format!(", {label})")))
            .unwrap_or_else(|| panic!("${var}: {query}"));
        for (series, _) in selectors(inner) {
            assert!(
                exported_as(&series, &exported).is_some(),
                "${var} reads {series}"
            );
        }
    }
    for panel in panels(&dash) {
        let title = panel["title"].as_str().expect("title");
        assert_eq!(panel["datasource"]["uid"], "${datasource}", "{title}");
        for t in panel["targets"].as_array().expect("targets") {
            assert_eq!(t["datasource"]["uid"], "${datasource}", "{title}");
        }
    }
}
