//! The admin page at `/` in a real headless Chromium (WebDriver): with traffic
//! flowing, the page's own script renders the routes with a live rate, error
//! rate and percentiles, the backends with their weights, the listeners and
//! the reloads, and the browser console records no error.
//!
//! `WAYPOINT_ADMIN_SCREENSHOT=docs/admin-page.png cargo test --test admin_page`
//! also saves a screenshot of the page (README "Observability → Admin port").
//! Needs `chromium` and `chromedriver` (Debian: `chromium chromium-driver`,
//! which `.ci/run` installs); without them the test is skipped with a note.
//! Addresses: 127.0.175.0/24.

mod common;
// Not in `common/mod.rs`: only this test links the WebDriver client.
#[path = "common/browser.rs"]
mod browser;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use browser::Browser;
use common::*;

fn route(name: &str, parent: &str, backends: &str) -> String {
    format!(
        "---\napiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {{name: {name}, namespace: shop}}\nspec:\n  parentRefs: [{{group: \"\", kind: Service, name: {parent}, port: 9080}}]\n  rules:\n  - backendRefs: {backends}\n"
    )
}

/// Requests to both routes until dropped; one `ratings` request in four is
/// answered 500 by its backend, so the page has errors to show (500, not 503:
/// Istio's default retry policy would retry a 503 and hide it).
struct Traffic {
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl Traffic {
    fn start(client: TestClient, ratings: Arc<waypoint::echo::EchoServer>) -> Traffic {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let task = tokio::spawn(async move {
            // Bounded by the test's own steps too: never outlives a minute.
            let _ = tokio::time::timeout(Duration::from_secs(60), async {
                let mut i = 0u64;
                while !flag.load(Ordering::Relaxed) {
                    client.get("reviews:9080", "/reviews/1").await;
                    if i.is_multiple_of(4) {
                        ratings.fail_next(1, 500);
                    }
                    client.get("ratings:9080", "/ratings/1").await;
                    i += 1;
                    // Pacing, not a wait: a steady few hundred requests a
                    // second, light on the shared cores.
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            })
            .await;
        });
        Traffic { stop, task }
    }
}

impl Drop for Traffic {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        self.task.abort();
    }
}

/// The number a rate cell shows (`12.3`), or 0 for `–`.
fn number(cell: &str) -> f64 {
    cell.trim()
        .trim_end_matches('%')
        .trim()
        .parse()
        .unwrap_or(0.0)
}

fn row<'a>(rows: &'a [Vec<String>], first: &str) -> Option<&'a Vec<String>> {
    rows.iter().find(|r| r.first().is_some_and(|c| c == first))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_page_renders_live_traffic_without_console_errors() {
    let Some(browser) = Browser::start().await else {
        return;
    };
    let _v1 = echo("reviews-v1", "127.0.175.11:9080").await;
    let _v2 = echo("reviews-v2", "127.0.175.12:9080").await;
    let ratings = Arc::new(echo("ratings", "127.0.175.21:9080").await);
    let mut yaml = String::new();
    yaml += &service(
        "shop",
        "reviews",
        9080,
        9080,
        &["127.0.175.11", "127.0.175.12"],
    );
    yaml += &service("shop", "reviews-v1", 9080, 9080, &["127.0.175.11"]);
    yaml += &service("shop", "reviews-v2", 9080, 9080, &["127.0.175.12"]);
    yaml += &service("shop", "ratings", 9080, 9080, &["127.0.175.21"]);
    yaml += &route(
        "reviews-canary",
        "reviews",
        "[{name: reviews-v1, port: 9080, weight: 80}, {name: reviews-v2, port: 9080, weight: 20}]",
    );
    yaml += &route("ratings", "ratings", "[{name: ratings, port: 9080}]");
    let config = ConfigDir::new(&yaml);
    let wp = waypoint(&config, "shop").await;
    let traffic = Traffic::start(TestClient::new(wp.http_addr.unwrap()), ratings.clone());

    browser.goto(&format!("http://{}/", wp.admin_addr)).await;

    // The page computes rates from two polls a second apart: wait until it
    // shows both routes moving, the ratings route with its 500s.
    let routes = eventually("both routes with a rate, ratings with errors", async || {
        let rows = browser.table("routes").await;
        let reviews = row(&rows, "HTTPRoute shop/reviews-canary");
        let ratings = row(&rows, "HTTPRoute shop/ratings");
        match (reviews, ratings) {
            (Some(rv), Some(rt))
                if number(&rv[1]) > 0.0
                    && number(&rt[1]) > 0.0
                    && number(&rt[2]) > 0.0
                    && rv[3].starts_with('≤') =>
            {
                Ok(rows)
            }
            _ => Err(format!("{rows:?}")),
        }
    })
    .await;
    let reviews = row(&routes, "HTTPRoute shop/reviews-canary").unwrap();
    assert_eq!(reviews[2], "0.0 %", "reviews answers only 200: {reviews:?}");
    assert_eq!(number(&reviews[7]), 0.0, "no 5xx on reviews: {reviews:?}");
    let ratings_row = row(&routes, "HTTPRoute shop/ratings").unwrap();
    assert!(number(&ratings_row[7]) > 0.0, "5xx total: {ratings_row:?}");

    // Backends of the canary with their configured weights, both receiving.
    let ports = eventually("both canary backends receiving", async || {
        let rows = browser.table("ports").await;
        let moving = rows
            .iter()
            .filter(|r| r[1] == "HTTPRoute shop/reviews-canary" && number(&r[5]) > 0.0)
            .count();
        match moving {
            2 => Ok(rows),
            _ => Err(format!("{rows:?}")),
        }
    })
    .await;
    let weights: Vec<(&str, &str)> = ports
        .iter()
        .filter(|r| r[1] == "HTTPRoute shop/reviews-canary")
        .map(|r| (r[3].as_str(), r[4].as_str()))
        .collect();
    assert_eq!(
        weights,
        [
            ("outbound|9080||reviews-v1.shop.svc.cluster.local", "80"),
            ("outbound|9080||reviews-v2.shop.svc.cluster.local", "20"),
        ]
    );

    let listeners = browser.table("listeners").await;
    let http = wp.http_addr.unwrap().to_string();
    assert!(
        listeners.iter().any(|r| r[1] == http),
        "the HTTP listener {http} in {listeners:?}"
    );
    let reloads = browser.table("reloads").await;
    assert_eq!(reloads[0][1], "ok", "the initial load: {reloads:?}");
    assert_eq!(browser.text("ready").await, "ready");

    if let Some(path) = std::env::var_os("WAYPOINT_ADMIN_SCREENSHOT") {
        browser.screenshot(std::path::Path::new(&path)).await;
    }

    // Read last, after several of the page's polls: a failed fetch or a
    // script exception in any of them is a console error.
    let errors = browser.console_errors().await;
    assert!(errors.is_empty(), "browser console errors: {errors:?}");

    drop(traffic);
    browser.close().await;
    wp.shutdown().await;
}
