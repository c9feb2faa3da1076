//! GAMMA attachment: producer vs consumer routes, parentRef port selection.

use std::collections::BTreeSet;

use crate::routing::test_support::{reviews, snapshot, summary, Req, CONSUMER_AND_PRODUCER};

#[test]
fn gamma_consumer_routes_replace_producer_routes_for_their_namespace() {
    let snap = snapshot(CONSUMER_AND_PRODUCER);
    let dest = reviews(&snap);
    let metrics = snap
        .find_destination_by_host("reviews.bookinfo:15090")
        .expect("metrics port");
    // (destination, path, caller namespace, expected, GEP-1294 rule)
    let rows = [
        (
            &dest,
            "/v2",
            None,
            "bookinfo/producer#0",
            "no caller identity: consumer routes never apply",
        ),
        (
            &dest,
            "/v2",
            Some("bookinfo"),
            "bookinfo/producer#0",
            "same namespace as the Service: producer",
        ),
        (
            &dest,
            "/v2",
            Some("frontend"),
            "frontend/consumer#0",
            "caller's namespace has consumer routes",
        ),
        (
            &dest,
            "/v1",
            Some("frontend"),
            "NoRoute",
            "only the consumer routes apply, producer not consulted",
        ),
        (
            &dest,
            "/v2",
            Some("other"),
            "bookinfo/producer#0",
            "no consumer routes in caller's namespace",
        ),
        (
            &metrics,
            "/v2",
            Some("frontend"),
            "bookinfo/producer#0",
            "consumer route attached to port 9080 only",
        ),
    ];
    for (dest, path, caller, want, rule) in rows {
        let got = summary(&snap.route(dest, &Req::get(path).info(), caller));
        assert_eq!(got, want, "{path} from {caller:?}: {rule}");
    }
    let attachments: Vec<(String, u16, bool)> = snap
        .attachments()
        .into_iter()
        .map(|a| (format!("{} -> {}", a.route, a.service), a.port, a.consumer))
        .collect();
    assert_eq!(
        attachments,
        [
            (
                "bookinfo/producer -> bookinfo/reviews".to_string(),
                9080,
                false
            ),
            (
                "bookinfo/producer -> bookinfo/reviews".to_string(),
                15090,
                false
            ),
            (
                "frontend/consumer -> bookinfo/reviews".to_string(),
                9080,
                true
            ),
        ]
    );
}

#[test]
fn parent_ref_selection_of_ports_and_kinds() {
    let route = |name: &str, parent: &str| {
        format!(
            "---\napiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {{name: {name}, namespace: bookinfo}}\nspec:\n  parentRefs: [{parent}]\n"
        )
    };
    let yaml = [
        route(
            "by-section",
            "{group: \"\", kind: Service, name: productpage, sectionName: web}",
        ),
        route(
            "by-port",
            "{group: \"\", kind: Service, name: productpage, port: 9080}",
        ),
        route("all-ports", "{group: \"\", kind: Service, name: reviews}"),
        route("gateway-parent", "{name: reviews}"),
        route(
            "missing-service",
            "{group: \"\", kind: Service, name: nope}",
        ),
        route(
            "se",
            "{group: networking.istio.io, kind: ServiceEntry, name: external, port: 443}",
        ),
    ]
    .concat();
    let snap = snapshot(&yaml);
    let got: BTreeSet<String> = snap
        .attachments()
        .iter()
        .map(|a| format!("{} {}:{}", a.route.name, a.service.name, a.port))
        .collect();
    let want: BTreeSet<String> = [
        "by-section productpage:80", // sectionName selects the port named web
        "by-port productpage:9080",  // port selects that port only
        "all-ports reviews:9080",    // neither: every port
        "all-ports reviews:15090",
        "se external:443", // Istio: ServiceEntry parents
    ]
    .into_iter()
    .map(String::from)
    .collect();
    // Gateway parents are ignored; a missing Service is a warning, not an error.
    assert_eq!(got, want);
}
