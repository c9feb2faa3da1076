//! deploy/: what an operator installs. No cluster here, so these tests read
//! the artifacts the way a reviewer would: the rendered manifests against the
//! controller's contract (GatewayClass, least-privilege RBAC, a locked-down
//! controller pod), the chart against its rendering, the Grafana dashboard
//! against the metrics the code exports, and the Dockerfile's runtime user.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::Command;

use serde_yaml::Value as Yaml;

#[path = "deploy/dashboard.rs"]
mod dashboard;
#[path = "deploy/dockerfile.rs"]
mod dockerfile;

const NAMESPACE: &str = "pingora-waypoint-system";
const CONTROLLER: &str = "pingora-waypoint-controller";
const PROXY_ROLE: &str = "pingora-waypoint-proxy";
/// The label the chart's PodMonitor writes and the dashboard filters on.
const WAYPOINT_LABEL: &str = "gateway_networking_k8s_io_gateway_name";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(rel: &str) -> String {
    let path = root().join(rel);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn chart_dir() -> PathBuf {
    root().join("deploy/helm/pingora-waypoint")
}

/// Every document of a multi-document YAML text.
fn documents(text: &str) -> Vec<Yaml> {
    serde_yaml::Deserializer::from_str(text)
        .map(|d| serde::Deserialize::deserialize(d).expect("valid YAML document"))
        .filter(|d: &Yaml| !d.is_null())
        .collect()
}

fn manifests() -> Vec<Yaml> {
    documents(&read("deploy/manifests/pingora-waypoint.yaml"))
}

fn s<'a>(v: &'a Yaml, path: &str) -> &'a str {
    at(v, path)
        .as_str()
        .unwrap_or_else(|| panic!("{path} is not a string"))
}

/// The value at a dotted path (`spec.template.spec`); a missing key is null.
fn at<'a>(v: &'a Yaml, path: &str) -> &'a Yaml {
    path.split('.')
        .fold(v, |v, key| match key.parse::<usize>() {
            Ok(i) => &v[i],
            Err(_) => &v[key],
        })
}

fn find<'a>(docs: &'a [Yaml], kind: &str, name: &str) -> &'a Yaml {
    docs.iter()
        .find(|d| d["kind"].as_str() == Some(kind) && d["metadata"]["name"].as_str() == Some(name))
        .unwrap_or_else(|| panic!("no {kind} {name} in the manifests"))
}

fn strings(v: &Yaml) -> Vec<String> {
    v.as_sequence()
        .map(|seq| {
            seq.iter()
                .map(|x| x.as_str().expect("a string").to_owned())
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn gateway_class_names_our_controller() {
    let docs = manifests();
    let class = find(&docs, "GatewayClass", "pingora-waypoint");
    assert_eq!(s(class, "apiVersion"), "gateway.networking.k8s.io/v1");
    assert_eq!(
        s(class, "spec.controllerName"),
        "waypoint.pingora.dev/controller"
    );
}

#[test]
fn controller_runs_the_contracted_command_in_its_namespace() {
    let docs = manifests();
    let ns = find(&docs, "Namespace", NAMESPACE);
    assert!(ns["metadata"]["namespace"].is_null());
    for kind in ["ServiceAccount", "Deployment", "Service"] {
        let doc = find(&docs, kind, CONTROLLER);
        assert_eq!(s(doc, "metadata.namespace"), NAMESPACE, "{kind}");
    }
    let deploy = find(&docs, "Deployment", CONTROLLER);
    let pod = at(deploy, "spec.template.spec");
    assert_eq!(s(pod, "serviceAccountName"), CONTROLLER);
    let app_version = s(
        &documents(&read("deploy/helm/pingora-waypoint/Chart.yaml"))[0],
        "appVersion",
    )
    .to_owned();
    assert_eq!(
        app_version,
        env!("CARGO_PKG_VERSION"),
        "Chart.yaml appVersion is not the crate's version"
    );
    let image = format!("ghcr.io/waypoint-mesh/waypoint:{app_version}");
    let container = &pod["containers"][0];
    assert_eq!(s(container, "image"), image);
    assert_eq!(
        strings(&container["args"]),
        [
            "controller",
            "--class",
            "pingora-waypoint",
            "--image",
            &image,
            "--ca-address",
            "istiod.istio-system.svc:15012"
        ]
    );
    // The pod template's labels select it, and the metrics Service finds it.
    let selector = at(deploy, "spec.selector.matchLabels")
        .as_mapping()
        .expect("matchLabels");
    let labels = at(deploy, "spec.template.metadata.labels");
    for (k, v) in selector {
        assert_eq!(&labels[k.as_str().expect("key")], v);
    }
    let svc = find(&docs, "Service", CONTROLLER);
    assert_eq!(
        &at(svc, "spec.selector"),
        &at(deploy, "spec.selector.matchLabels")
    );
}

#[test]
fn controller_pod_is_locked_down_and_probed_on_15021() {
    let docs = manifests();
    let deploy = find(&docs, "Deployment", CONTROLLER);
    let pod = at(deploy, "spec.template.spec");
    let psc = &pod["securityContext"];
    assert_eq!(psc["runAsNonRoot"].as_bool(), Some(true));
    let uid = psc["runAsUser"].as_u64().expect("a numeric runAsUser");
    assert_ne!(uid, 0, "runs as root");
    assert_eq!(s(psc, "seccompProfile.type"), "RuntimeDefault");

    let c = &pod["containers"][0];
    let csc = &c["securityContext"];
    assert_eq!(csc["readOnlyRootFilesystem"].as_bool(), Some(true));
    assert_eq!(csc["allowPrivilegeEscalation"].as_bool(), Some(false));
    assert_eq!(strings(&csc["capabilities"]["drop"]), ["ALL"]);
    assert!(csc["capabilities"]["add"].is_null(), "adds capabilities");
    for class in ["requests", "limits"] {
        for res in ["cpu", "memory"] {
            assert!(
                !c["resources"][class][res].is_null(),
                "resources.{class}.{res} unset"
            );
        }
    }

    let ports: BTreeMap<String, u64> = c["ports"]
        .as_sequence()
        .expect("ports")
        .iter()
        .map(|p| {
            (
                s(p, "name").to_owned(),
                p["containerPort"].as_u64().expect("port"),
            )
        })
        .collect();
    assert_eq!(ports.get("metrics"), Some(&15020));
    assert_eq!(ports.get("health"), Some(&15021));
    let resolve = |port: &Yaml| match port {
        Yaml::Number(n) => n.as_u64().expect("port number"),
        Yaml::String(name) => *ports.get(name).unwrap_or_else(|| panic!("no port {name}")),
        other => panic!("port {other:?}"),
    };
    let ready = &c["readinessProbe"]["httpGet"];
    assert_eq!(s(ready, "path"), "/healthz/ready");
    assert_eq!(resolve(&ready["port"]), 15021);
    let live = &c["livenessProbe"];
    let live_port = if live["httpGet"].is_null() {
        &live["tcpSocket"]["port"]
    } else {
        &live["httpGet"]["port"]
    };
    assert_eq!(resolve(live_port), 15021);
}

/// A rule set flattened to (apiGroup, resource, verb, resourceName).
type Grants = BTreeSet<(String, String, String, String)>;

fn grants(role: &Yaml) -> Grants {
    let mut out = Grants::new();
    for rule in role["rules"].as_sequence().expect("rules") {
        let names = strings(&rule["resourceNames"]);
        let names = if names.is_empty() {
            vec![String::new()]
        } else {
            names
        };
        for g in strings(&rule["apiGroups"]) {
            for r in strings(&rule["resources"]) {
                for v in strings(&rule["verbs"]) {
                    for n in &names {
                        out.insert((g.clone(), r.clone(), v.clone(), n.clone()));
                    }
                }
            }
        }
    }
    out
}

fn expect(out: &mut Grants, group: &str, resources: &[&str], verbs: &[&str], name: &str) {
    for r in resources {
        for v in verbs {
            out.insert((group.into(), (*r).into(), (*v).into(), name.into()));
        }
    }
}

fn assert_grants(role: &str, got: &Grants, want: &Grants) {
    let extra: Vec<_> = got.difference(want).collect();
    let missing: Vec<_> = want.difference(got).collect();
    assert!(
        extra.is_empty() && missing.is_empty(),
        "{role}: grants beyond the contract {extra:?}; missing {missing:?}"
    );
}

#[test]
fn controller_role_grants_exactly_what_the_controller_needs() {
    let docs = manifests();
    let role = find(&docs, "ClusterRole", CONTROLLER);
    let got = grants(role);
    for (g, r, v, n) in &got {
        for part in [g, r, v, n] {
            assert!(!part.contains('*'), "wildcard in {g}/{r} {v} {n}");
        }
        assert!(
            !matches!(r.as_str(), "secrets" | "configmaps" | "pods/exec"),
            "controller may touch {r}"
        );
        assert!(
            !matches!(v.as_str(), "escalate" | "impersonate"),
            "controller may {v}"
        );
    }

    const CRUD: &[&str] = &[
        "get", "list", "watch", "create", "update", "patch", "delete",
    ];
    const READ: &[&str] = &["get", "list", "watch"];
    let gw = "gateway.networking.k8s.io";
    let rbac = "rbac.authorization.k8s.io";
    let mut want = Grants::new();
    expect(&mut want, gw, &["gatewayclasses"], READ, "");
    expect(
        &mut want,
        gw,
        &["gatewayclasses/status"],
        &["update", "patch"],
        "",
    );
    expect(
        &mut want,
        gw,
        &["gateways"],
        &["get", "list", "watch", "patch", "update"],
        "",
    );
    expect(
        &mut want,
        gw,
        &["gateways/status"],
        &["update", "patch"],
        "",
    );
    expect(&mut want, gw, &["gateways/finalizers"], &["update"], "");
    expect(&mut want, "", &["serviceaccounts", "services"], CRUD, "");
    expect(&mut want, "apps", &["deployments"], CRUD, "");
    expect(
        &mut want,
        "autoscaling",
        &["horizontalpodautoscalers"],
        CRUD,
        "",
    );
    expect(&mut want, "policy", &["poddisruptionbudgets"], CRUD, "");
    expect(&mut want, rbac, &["clusterrolebindings"], CRUD, "");
    expect(&mut want, rbac, &["clusterroles"], &["bind"], PROXY_ROLE);
    expect(&mut want, "", &["events"], &["create", "patch"], "");
    expect(
        &mut want,
        "events.k8s.io",
        &["events"],
        &["create", "patch"],
        "",
    );
    expect(&mut want, "", &["namespaces"], READ, "");
    assert_grants(CONTROLLER, &got, &want);

    // The role it may bind exists, and the controller's own binding is in place.
    find(&docs, "ClusterRole", PROXY_ROLE);
    let binding = find(&docs, "ClusterRoleBinding", CONTROLLER);
    assert_eq!(s(binding, "roleRef.kind"), "ClusterRole");
    assert_eq!(s(binding, "roleRef.name"), CONTROLLER);
    let subjects = binding["subjects"].as_sequence().expect("subjects");
    assert_eq!(subjects.len(), 1);
    assert_eq!(s(&subjects[0], "kind"), "ServiceAccount");
    assert_eq!(s(&subjects[0], "name"), CONTROLLER);
    assert_eq!(s(&subjects[0], "namespace"), NAMESPACE);
}

#[test]
fn proxy_role_is_read_only_over_what_the_waypoint_watches() {
    let docs = manifests();
    let got = grants(find(&docs, "ClusterRole", PROXY_ROLE));
    let read = &["get", "list", "watch"];
    let mut want = Grants::new();
    expect(&mut want, "", &["namespaces", "services", "pods"], read, "");
    expect(&mut want, "discovery.k8s.io", &["endpointslices"], read, "");
    expect(
        &mut want,
        "gateway.networking.k8s.io",
        &["httproutes", "tcproutes", "referencegrants", "grpcroutes"],
        read,
        "",
    );
    expect(
        &mut want,
        "networking.istio.io",
        &["virtualservices", "destinationrules", "serviceentries"],
        read,
        "",
    );
    expect(&mut want, "extensions.istio.io", &["wasmplugins"], read, "");
    expect(
        &mut want,
        "security.istio.io",
        &["authorizationpolicies", "requestauthentications"],
        read,
        "",
    );
    expect(&mut want, "telemetry.istio.io", &["telemetries"], read, "");
    expect(&mut want, "", &["configmaps"], read, "istio");
    expect(
        &mut want,
        "policy.linkerd.io",
        &[
            "servers",
            "serverauthorizations",
            "authorizationpolicies",
            "meshtlsauthentications",
            "networkauthentications",
            "httproutes",
        ],
        read,
        "",
    );
    assert_grants(PROXY_ROLE, &got, &want);
}

/// What each template renders with default values (`None`: off by default).
const TEMPLATES: &[(&str, &str, Option<&str>)] = &[
    (
        "controller-clusterrole.yaml",
        "ClusterRole",
        Some(CONTROLLER),
    ),
    (
        "controller-clusterrolebinding.yaml",
        "ClusterRoleBinding",
        Some(CONTROLLER),
    ),
    ("controller-deployment.yaml", "Deployment", Some(CONTROLLER)),
    ("controller-service.yaml", "Service", Some(CONTROLLER)),
    (
        "gatewayclass.yaml",
        "GatewayClass",
        Some("pingora-waypoint"),
    ),
    ("podmonitor.yaml", "PodMonitor", None),
    ("proxy-clusterrole.yaml", "ClusterRole", Some(PROXY_ROLE)),
    ("serviceaccount.yaml", "ServiceAccount", Some(CONTROLLER)),
    ("servicemonitor.yaml", "ServiceMonitor", None),
];

#[test]
fn every_template_has_its_object_in_the_rendered_manifests() {
    let dir = chart_dir().join("templates");
    let files: BTreeSet<String> = std::fs::read_dir(&dir)
        .expect("templates dir")
        .map(|e| e.expect("entry").file_name().into_string().expect("utf-8"))
        .filter(|f| !f.starts_with('_') && f != "NOTES.txt")
        .collect();
    let listed: BTreeSet<String> = TEMPLATES.iter().map(|(f, ..)| (*f).to_owned()).collect();
    assert_eq!(files, listed, "templates/ and this test's table differ");
    for (file, kind, _) in TEMPLATES {
        let text = std::fs::read_to_string(dir.join(file)).expect("template");
        assert!(
            text.contains(&format!("kind: {kind}")),
            "{file} makes no {kind}"
        );
    }

    // Each rendered document names its template, and matches the table.
    let text = read("deploy/manifests/pingora-waypoint.yaml");
    let mut rendered = BTreeSet::new();
    for doc in text.split("\n---\n").skip(1) {
        let value: Yaml = serde_yaml::from_str(doc).expect("YAML document");
        let kind = s(&value, "kind").to_owned();
        let name = s(&value, "metadata.name").to_owned();
        match doc
            .lines()
            .find_map(|l| l.strip_prefix("# Source: pingora-waypoint/templates/"))
        {
            Some(file) => {
                let entry = TEMPLATES.iter().find(|(f, ..)| *f == file);
                assert_eq!(
                    entry.map(|(_, k, n)| (*k, *n)),
                    Some((kind.as_str(), Some(name.as_str()))),
                    "{kind} {name} from {file}"
                );
            }
            None => assert_eq!((kind.as_str(), name.as_str()), ("Namespace", NAMESPACE)),
        }
        assert!(rendered.insert((kind, name)), "rendered twice");
    }
    let mut want: BTreeSet<(String, String)> = TEMPLATES
        .iter()
        .filter_map(|(_, k, n)| n.map(|n| ((*k).to_owned(), n.to_owned())))
        .collect();
    want.insert(("Namespace".into(), NAMESPACE.into()));
    assert_eq!(rendered, want);
}

/// `python3 deploy/render.py ARGS`, or `None` (with a note) when Helm's SDK
/// for Python is not installed.
fn render(args: &[&str]) -> Option<String> {
    let probe = Command::new("python3")
        .args(["-c", "import helm_python"])
        .output();
    if !probe.is_ok_and(|o| o.status.success()) {
        eprintln!(
            "note: skipped, Helm's SDK is absent (pip install helm-python-sdk==0.2.2 to run it)"
        );
        return None;
    }
    let out = Command::new("python3")
        .arg(root().join("deploy/render.py"))
        .args(args)
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "render.py failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(String::from_utf8(out.stdout).expect("UTF-8 manifests"))
}

#[test]
fn chart_renders_to_the_committed_manifests() {
    let Some(fresh) = render(&[]) else { return };
    assert!(
        fresh == read("deploy/manifests/pingora-waypoint.yaml"),
        "deploy/manifests/pingora-waypoint.yaml is stale: run deploy/render.sh"
    );
}

#[test]
fn chart_renders_the_monitors_when_asked() {
    let Some(text) = render(&[
        "--set",
        "serviceMonitor.enabled=true",
        "--set",
        "podMonitor.enabled=true",
    ]) else {
        return;
    };
    let docs = documents(&text);
    let sm = find(&docs, "ServiceMonitor", CONTROLLER);
    assert_eq!(s(sm, "spec.endpoints.0.port"), "metrics");
    assert_eq!(s(sm, "spec.endpoints.0.path"), "/stats/prometheus");
    // It selects the controller's metrics Service.
    let svc_labels = at(find(&docs, "Service", CONTROLLER), "metadata.labels");
    for (k, v) in at(sm, "spec.selector.matchLabels")
        .as_mapping()
        .expect("matchLabels")
    {
        assert_eq!(&svc_labels[k.as_str().expect("key")], v);
    }
    let pm = find(&docs, "PodMonitor", "pingora-waypoint-waypoints");
    let ep = at(pm, "spec.podMetricsEndpoints.0");
    assert_eq!(s(ep, "port"), "metrics");
    assert_eq!(s(ep, "path"), "/stats/prometheus");
    assert_eq!(s(ep, "relabelings.0.targetLabel"), WAYPOINT_LABEL);
}
