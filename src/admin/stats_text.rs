//! `/stats`: Envoy-style plain text, one `name: value` line per counter or
//! gauge, sorted; `?filter=REGEX` keeps the matching names, as Envoy's does.
//! Prometheus series are named `metric{label="value",…}`; histograms show
//! their `_count` and `_sum`; the live counters of routes and clusters follow
//! Envoy's `cluster.<name>.upstream_rq_*` shape.

use prometheus::proto::MetricType;

use super::AdminState;

/// The lines of `/stats`, filtered by `filter` when given.
pub fn render(state: &AdminState, filter: Option<&regex::Regex>) -> String {
    let mut lines = prometheus_lines(state);
    lines.extend(live_lines(state));
    lines.sort();
    let mut out = String::new();
    for (name, value) in lines {
        if filter.is_none_or(|f| f.is_match(&name)) {
            out.push_str(&name);
            out.push_str(": ");
            out.push_str(&value);
            out.push('\n');
        }
    }
    out
}

fn prometheus_lines(state: &AdminState) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for family in state.metrics.registry().gather() {
        for m in family.get_metric() {
            let labels: Vec<String> = m
                .get_label()
                .iter()
                .map(|l| format!("{}=\"{}\"", l.name(), l.value()))
                .collect();
            let name = if labels.is_empty() {
                family.name().to_string()
            } else {
                format!("{}{{{}}}", family.name(), labels.join(","))
            };
            match family.get_field_type() {
                MetricType::COUNTER => {
                    out.push((name, format!("{}", m.get_counter().get_value() as u64)))
                }
                MetricType::GAUGE => out.push((name, format!("{}", m.get_gauge().get_value()))),
                MetricType::HISTOGRAM => {
                    let h = m.get_histogram();
                    let (base, rest) = name.split_once('{').unwrap_or((&name, ""));
                    let brace = if rest.is_empty() {
                        String::new()
                    } else {
                        format!("{{{rest}")
                    };
                    out.push((
                        format!("{base}_count{brace}"),
                        h.get_sample_count().to_string(),
                    ));
                    out.push((
                        format!("{base}_sum{brace}"),
                        format!("{}", h.get_sample_sum()),
                    ));
                }
                _ => {}
            }
        }
    }
    out
}

fn live_lines(state: &AdminState) -> Vec<(String, String)> {
    let published = state.store.load();
    let mut out = Vec::new();
    let mut push = |prefix: &str, v: &crate::telemetry::live::CountersView| {
        for (stat, n) in [
            ("rq_total", v.requests),
            ("rq_2xx", v.status_2xx),
            ("rq_3xx", v.status_3xx),
            ("rq_4xx", v.status_4xx),
            ("rq_5xx", v.status_5xx),
        ] {
            out.push((format!("{prefix}.upstream_{stat}"), n.to_string()));
        }
    };
    for (route, counters) in published.snapshot.route_counters() {
        push(
            &format!("route.{}", route.replacen(' ', ".", 1)),
            &counters.read(),
        );
    }
    let mut extra = Vec::new();
    for set in published.snapshot.clusters() {
        let name = format!("cluster.{}", set.cluster().name);
        if let Some(c) = set.counters() {
            push(&name, &c.read());
        }
        let active: u64 = set.active_requests().sum();
        let ejected = set.cluster().outlier.as_ref().map_or(0, |o| {
            set.endpoints()
                .iter()
                .filter(|e| o.is_ejected(e.addr))
                .count()
        });
        extra.push((format!("{name}.upstream_rq_active"), active.to_string()));
        extra.push((format!("{name}.membership_total"), set.len().to_string()));
        extra.push((
            format!("{name}.membership_healthy"),
            (set.len() - ejected).to_string(),
        ));
        extra.push((
            format!("{name}.outlier_detection.ejections_active"),
            ejected.to_string(),
        ));
    }
    out.extend(extra);
    out
}
