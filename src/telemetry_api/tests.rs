use super::*;

fn opts(mesh: &str) -> TelemetryOptions {
    TelemetryOptions {
        root_namespace: "istio-system".into(),
        gateway: NamespacedName::new("apps", "waypoint"),
        mesh: Arc::new(MeshConfig::parse(mesh).unwrap()),
        stdout_json: false,
    }
}

/// A MeshConfig tracing to `otel` at 100 % by default.
const OTEL_MESH: &str = "defaultConfig: {tracing: {sampling: 100}}\ndefaultProviders: {tracing: [otel]}\nextensionProviders:\n- name: otel\n  opentelemetry: {service: otel.observability.svc.cluster.local, port: 4317}\n";

fn telemetry(ns: &str, name: &str, spec: &str) -> String {
    format!("---\napiVersion: telemetry.istio.io/v1\nkind: Telemetry\nmetadata: {{name: {name}, namespace: {ns}}}\nspec:\n{spec}\n")
}

fn compile(yaml: &str, mesh: &str) -> Result<TelemetryTable, ConfigErrors> {
    let resources = crate::config::load_str(yaml, "t.yaml", "apps").unwrap();
    TelemetryTable::compile(&resources, &opts(mesh), &SinkRegistry::default())
}

#[test]
fn precedence_root_then_namespace_then_target_ref_field_by_field() {
    let yaml = [
        telemetry(
            "istio-system",
            "mesh-default",
            "  tracing:\n  - randomSamplingPercentage: 1\n    customTags: {team: {literal: {value: mesh}}, env: {literal: {value: prod}}}\n",
        ),
        telemetry(
            "apps",
            "ns-default",
            "  tracing:\n  - randomSamplingPercentage: 10\n    customTags: {team: {literal: {value: apps}}}\n",
        ),
        telemetry(
            "apps",
            "reviews",
            "  targetRefs: [{kind: Service, group: \"\", name: reviews}]\n  tracing:\n  - disableSpanReporting: true\n    providers: [{name: otel}]\n    customTags: {user: {header: {name: X-User, defaultValue: anon}}}\n",
        ),
        // Another namespace's namespace-wide resource is not this waypoint's.
        telemetry("other", "elsewhere", "  tracing:\n  - randomSamplingPercentage: 99\n"),
        telemetry("apps", "sidecars", "  selector: {matchLabels: {app: x}}\n  tracing:\n  - randomSamplingPercentage: 50\n"),
    ]
    .concat();
    let t = compile(&yaml, OTEL_MESH).unwrap();
    // Inherited: root's `env` tag, namespace's sampling and `team`.
    let ratings = &t.find(Some(("apps", "ratings"))).tracing;
    assert_eq!(ratings.random_sampling_percentage, Some(10.0));
    assert_eq!(
        ratings.custom_tags["team"],
        TagSource::Literal("apps".into())
    );
    assert_eq!(
        ratings.custom_tags["env"],
        TagSource::Literal("prod".into())
    );
    assert_eq!(ratings.disable_span_reporting, None);
    assert_eq!(ratings.providers, None);
    // The Service-targeted resource adds its fields on top, keeping the rest.
    let reviews = &t.find(Some(("apps", "reviews"))).tracing;
    assert_eq!(reviews.random_sampling_percentage, Some(10.0));
    assert_eq!(reviews.disable_span_reporting, Some(true));
    assert_eq!(reviews.providers, Some(vec!["otel".to_string()]));
    assert_eq!(
        reviews.custom_tags["user"],
        TagSource::Header {
            name: "x-user".into(),
            default_value: Some("anon".into())
        }
    );
    assert_eq!(
        reviews.custom_tags["team"],
        TagSource::Literal("apps".into())
    );
    assert_eq!(t.find(None).tracing, *ratings);
    // What the tracer applies: MeshConfig's provider and 100 % under the namespace's
    // 10 %; `reviews` reports nothing and reads its `user` tag from the header.
    let policy = &t.find(Some(("apps", "ratings"))).trace_policy;
    assert_eq!(policy.provider.as_deref(), Some("otel"));
    assert_eq!(policy.sampling_percent, 10.0);
    let policy = &t.find(Some(("apps", "reviews"))).trace_policy;
    assert!(policy.disable_span_reporting);
    let user = policy
        .custom_tags
        .iter()
        .find(|(n, _)| &**n == "user")
        .unwrap();
    assert_eq!(
        user.1,
        crate::telemetry::trace::CustomTag::Header {
            name: http::HeaderName::from_static("x-user"),
            default: Some(Arc::from("anon"))
        }
    );
    let ignored: Vec<_> = t.ignored.iter().map(|(k, _)| k.to_string()).collect();
    assert_eq!(ignored, ["other/elsewhere", "apps/sidecars"]);
}

#[test]
fn access_logging_merges_and_disables_per_level() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.log");
    let mesh = format!(
        "extensionProviders:\n- name: file\n  envoyFileAccessLog: {{path: {}, logFormat: {{text: \"%RESPONSE_CODE%\"}}}}\n",
        path.display()
    );
    let yaml = [
        telemetry("istio-system", "mesh", "  accessLogging:\n  - providers: [{name: file}]\n    filter: {expression: 'response.code >= 500'}\n"),
        telemetry("apps", "quiet", "  targetRefs: [{kind: Service, name: quiet}]\n  accessLogging:\n  - disabled: true\n"),
    ]
    .concat();
    let t = compile(&yaml, &mesh).unwrap();
    let logs = &t.find(Some(("apps", "ratings"))).access_logs;
    assert_eq!(logs.len(), 1);
    assert!(logs[0].filter.is_some());
    assert_eq!(logs[0].sink.path(), path.to_str().unwrap());
    assert!(t.find(Some(("apps", "quiet"))).access_logs.is_empty());
    assert!(!t.logs_nothing());
}

#[test]
fn mesh_access_log_file_without_telemetry() {
    let t = compile("", "accessLogFile: /dev/stdout\naccessLogEncoding: JSON\n").unwrap();
    let logs = &t.find(None).access_logs;
    assert_eq!(*logs[0].format, LogFormat::istio_json());
    assert!(compile("", "{}").unwrap().logs_nothing());
}

#[test]
fn invalid_resources_are_refused_with_their_field() {
    let rows: &[(&str, &str, &str)] = &[
        (
            "  accessLogging:\n  - filter: {expression: 'response.code >= \"x\"'}\n",
            "spec.accessLogging[0].filter.expression",
            "cannot compare",
        ),
        (
            "  accessLogging:\n  - providers: [{name: nope}]\n",
            "spec.accessLogging[0].providers[0].name",
            "not defined",
        ),
        (
            "  accessLogging:\n  - providers: [{name: otel-als}]\n",
            "providers[0].name",
            "envoyOtelAls",
        ),
        (
            "  tracing:\n  - randomSamplingPercentage: 120\n",
            "spec.tracing[0].randomSamplingPercentage",
            "between 0 and 100",
        ),
        (
            "  tracing:\n  - match: {mode: BOTH}\n",
            "spec.tracing[0].match.mode",
            "unknown mode",
        ),
        (
            "  tracing:\n  - providers: [{name: jaeger}]\n",
            "spec.tracing[0].providers",
            "provider jaeger is not defined in MeshConfig extensionProviders",
        ),
        (
            "  tracing:\n  - providers: [{name: otel-als}]\n",
            "spec.tracing[0].providers",
            "not an opentelemetry provider",
        ),
        (
            "  tracing:\n  - customTags: {bad: {header: {name: \"x y\"}}}\n",
            "spec.tracing[0].customTags.bad.header.name",
            "not a valid header name",
        ),
        (
            "  metrics:\n  - providers: [{name: stackdriver}]\n",
            "spec.metrics[0].providers[0].name",
            "prometheus only",
        ),
        (
            "  metrics:\n  - reportingInterval: 5s\n",
            "spec.metrics[0].reportingInterval",
            "not supported",
        ),
        (
            "  metrics:\n  - overrides: [{match: {metric: REQUESTS}, disabled: true}]\n",
            "spec.metrics[0].overrides[0].match.metric",
            "unknown metric \"REQUESTS\"",
        ),
        (
            "  metrics:\n  - overrides: [{match: {customMetric: my_metric}, disabled: true}]\n",
            "spec.metrics[0].overrides[0].match.customMetric",
            "not supported",
        ),
        (
            "  metrics:\n  - overrides: [{match: {mode: BOTH}}]\n",
            "spec.metrics[0].overrides[0].match.mode",
            "unknown mode",
        ),
        (
            "  metrics:\n  - overrides: [{tagOverrides: {tenant: {value: \"'a'\"}}}]\n",
            "spec.metrics[0].overrides[0].tagOverrides.tenant",
            "adding labels is not supported",
        ),
        (
            "  metrics:\n  - overrides: [{match: {metric: TCP_OPENED_CONNECTIONS}, tagOverrides: {response_code: {operation: REMOVE}}}]\n",
            "tagOverrides.response_code",
            "not a label of TCP_OPENED_CONNECTIONS",
        ),
        (
            "  metrics:\n  - overrides: [{tagOverrides: {request_protocol: {operation: REMOVE, value: \"'x'\"}}}]\n",
            "tagOverrides.request_protocol",
            "only used with operation UPSERT",
        ),
        (
            "  metrics:\n  - overrides: [{tagOverrides: {request_protocol: {operation: UPSERT}}}]\n",
            "tagOverrides.request_protocol",
            "needs a value",
        ),
        (
            "  metrics:\n  - overrides: [{tagOverrides: {request_protocol: {value: \"size(request.headers)\"}}}]\n",
            "tagOverrides.request_protocol",
            "size(request.headers)",
        ),
        (
            "  targetRefs: [{kind: Deployment, group: apps, name: x}]\n",
            "spec.targetRefs[0]",
            "not supported",
        ),
    ];
    let mesh =
        "extensionProviders:\n- name: otel-als\n  envoyOtelAls: {service: otel, port: 4317}\n";
    for (spec, field, needle) in rows {
        let err = compile(&telemetry("apps", "bad", spec), mesh)
            .unwrap_err()
            .to_string();
        assert!(err.contains(field) && err.contains(needle), "{spec}: {err}");
        assert!(err.contains("t.yaml"), "{err}");
    }
}

/// Overrides of every level apply least specific first, so a more specific level
/// replaces what a less specific one set for the same metric and label.
#[test]
fn metric_overrides_merge_root_then_namespace_then_service() {
    use crate::telemetry::overrides::{MetricKind, TagOp};
    let yaml = [
        // Root: REQUEST_COUNT off everywhere, request_protocol removed from every metric.
        telemetry(
            "istio-system",
            "mesh-default",
            "  metrics:\n  - overrides:\n    - match: {metric: REQUEST_COUNT}\n      disabled: true\n    - tagOverrides: {request_protocol: {operation: REMOVE}}\n",
        ),
        // Namespace: REQUEST_COUNT back on.
        telemetry(
            "apps",
            "ns",
            "  metrics:\n  - overrides:\n    - match: {metric: REQUEST_COUNT, mode: SERVER}\n      disabled: false\n",
        ),
        // Service two: request_protocol upserted for REQUEST_DURATION only; a CLIENT-mode
        // override does not apply to a waypoint.
        telemetry(
            "apps",
            "two",
            "  targetRefs: [{group: \"\", kind: Service, name: two}]\n  metrics:\n  - overrides:\n    - match: {metric: REQUEST_DURATION}\n      tagOverrides: {request_protocol: {value: \"request.headers['x-tenant']\"}}\n    - match: {metric: REQUEST_SIZE, mode: CLIENT}\n      disabled: true\n",
        ),
    ]
    .concat();
    let table = compile(&yaml, "").unwrap();
    let one = table.find(Some(("apps", "one"))).metrics.clone().unwrap();
    assert!(!one.get(MetricKind::RequestCount).disabled);
    let expected_remove = {
        let mut o = crate::telemetry::overrides::MetricOverride::default();
        o.set_tag("request_protocol", TagOp::Remove).unwrap();
        o
    };
    assert_eq!(one.get(MetricKind::RequestDuration), &expected_remove);
    assert_eq!(one.get(MetricKind::TcpSentBytes), &expected_remove);

    let two = table.find(Some(("apps", "two"))).metrics.clone().unwrap();
    assert!(!two.get(MetricKind::RequestCount).disabled);
    assert!(
        !two.get(MetricKind::RequestSize).disabled,
        "CLIENT mode does not apply"
    );
    assert_eq!(two.get(MetricKind::RequestSize), &expected_remove);
    let upserted = {
        let mut o = crate::telemetry::overrides::MetricOverride::default();
        let e = crate::telemetry::cel::Expr::parse_value("request.headers['x-tenant']").unwrap();
        o.set_tag("request_protocol", TagOp::Upsert(e)).unwrap();
        o
    };
    assert_eq!(two.get(MetricKind::RequestDuration), &upserted);
}

#[test]
fn no_metric_overrides_keeps_the_request_path_inert() {
    let yaml = telemetry(
        "istio-system",
        "mesh-default",
        "  metrics:\n  - providers: [{name: prometheus}]\n    overrides:\n    - match: {metric: REQUEST_COUNT}\n      disabled: false\n",
    );
    let table = compile(&yaml, "").unwrap();
    assert!(table.find(None).metrics.is_none());
    assert!(table.is_inert());
}
