//! The proxy-wasm Rust SDK's own examples, built unmodified elsewhere, run
//! here as their READMEs describe. Skipped unless `WAYPOINT_SDK_EXAMPLES`
//! names the directory holding `proxy_wasm_example_*.wasm`.

use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};

use bytes::Bytes;

use super::*;

fn example(name: &str) -> Option<String> {
    let dir = PathBuf::from(std::env::var_os("WAYPOINT_SDK_EXAMPLES")?);
    let path = dir.join(format!("proxy_wasm_example_{name}.wasm"));
    path.is_file().then(|| path.display().to_string())
}

/// Log lines from every thread (plugin ticks run on the service thread).
struct Captured {
    lines: Mutex<Vec<u8>>,
    written: tokio::sync::Notify,
}

fn captured() -> &'static Captured {
    static LOGS: OnceLock<Captured> = OnceLock::new();
    LOGS.get_or_init(|| {
        let _ = tracing::subscriber::set_global_default(
            tracing_subscriber::fmt()
                .with_max_level(tracing::Level::INFO)
                .with_writer(|| Writer)
                .finish(),
        );
        Captured {
            lines: Mutex::new(Vec::new()),
            written: tokio::sync::Notify::new(),
        }
    })
}

struct Writer;

impl Write for Writer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let c = captured();
        c.lines.lock().expect("log lock").extend_from_slice(buf);
        c.written.notify_waiters();
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Waits (bounded) until the captured log contains `text`.
async fn wait_for_log(text: &str) {
    let c = captured();
    tokio::time::timeout(Duration::from_secs(15), async {
        loop {
            let notified = c.written.notified();
            if String::from_utf8_lossy(&c.lines.lock().expect("log lock")).contains(text) {
                return;
            }
            notified.await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("log never showed {text:?}"));
}

#[tokio::test]
async fn sdk_hello_world_logs_and_ticks() {
    let Some(url) = example("hello_world") else {
        return;
    };
    captured();
    let dir = tempfile::tempdir().expect("tempdir");
    let (host, _) = host();
    // Keep the set alive: dropping it stops the plugin and its ticks.
    let _set = compile(dir.path(), &[plugin_yaml("hello", &url, "")], &host).expect("loads");
    wait_for_log("Hello, World!").await;
    // on_vm_start asked for a 5 s tick; each tick logs the time and a number.
    wait_for_log("your lucky number is").await;
}

#[tokio::test]
async fn sdk_http_headers_logs_and_answers_hello() {
    let Some(url) = example("http_headers") else {
        return;
    };
    captured();
    let dir = tempfile::tempdir().expect("tempdir");
    let (host, _) = host();
    let set = compile(
        dir.path(),
        &[plugin_yaml("headers-example", &url, "")],
        &host,
    )
    .expect("loads");
    let out = exchange(&set, &[("user-agent", "curl/8")], None).await;
    assert_eq!(out.request, Verdict::Continue);
    wait_for_log("-> :path: /reviews/1?x=1").await;
    wait_for_log("-> user-agent: curl/8").await;
    wait_for_log("<- :status: 200").await;
    wait_for_log("completed.").await;

    let chain = set.chain_for(&reviews(), 9080);
    let mut filters = HttpFilters::start(
        chain,
        RequestProps {
            path: "/hello".into(),
            ..props()
        },
        None,
    );
    let verdict = filters
        .on_request_headers(&mut HeaderMap::new(), true)
        .await;
    match verdict {
        Verdict::Respond(r) => {
            assert_eq!(r.status, 200);
            assert_eq!(&r.body[..], b"Hello, World!\n");
            assert!(r.headers.iter().any(|(k, v)| k == "hello" && v == "World"));
        }
        other => panic!("expected the hello response, got {other:?}"),
    }
}

#[tokio::test]
async fn sdk_http_body_redacts_secrets_after_buffering() {
    let Some(url) = example("http_body") else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let (host, _) = host();
    let set = compile(dir.path(), &[plugin_yaml("body-example", &url, "")], &host).expect("loads");
    let run = |chunks: Vec<&'static str>| {
        let chain = set.chain_for(&reviews(), 9080);
        async move {
            let mut filters = HttpFilters::start(chain, props(), None);
            assert_eq!(
                filters
                    .on_request_headers(&mut HeaderMap::new(), true)
                    .await,
                Verdict::Continue
            );
            let mut resp = HeaderMap::new();
            resp.insert("content-length", "50".parse().expect("literal"));
            assert_eq!(
                filters.on_response_headers(200, &mut resp, false).await,
                Verdict::Continue
            );
            assert!(
                resp.get("content-length").is_none(),
                "the example drops content-length"
            );
            let mut out = Vec::new();
            let n = chunks.len();
            for (i, c) in chunks.into_iter().enumerate() {
                let mut body = Some(Bytes::from_static(c.as_bytes()));
                assert_eq!(
                    filters.on_response_body(&mut body, i + 1 == n),
                    Verdict::Continue
                );
                if i + 1 < n {
                    assert!(body.is_none(), "paused chunks are buffered");
                }
                out.extend_from_slice(body.as_deref().unwrap_or_default());
            }
            String::from_utf8(out).expect("utf8")
        }
    };
    assert_eq!(
        run(vec!["Everyone may ", "read this message.\n"]).await,
        "Everyone may read this message.\n"
    );
    assert_eq!(
        run(vec![
            "This is a secret ",
            "message only for ",
            "the chosen few!\n"
        ])
        .await,
        "Original message body (50 bytes) redacted.\n"
    );
}

#[tokio::test]
async fn sdk_http_config_sets_the_configured_header() {
    let Some(url) = example("http_config") else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let (host, _) = host();
    let doc = plugin_yaml(
        "config-example",
        &url,
        "  pluginConfig: \"The secret to life is meaningless unless you discover it yourself\"\n",
    );
    let set = compile(dir.path(), &[doc], &host).expect("loads");
    let out = exchange(&set, &[], None).await;
    assert_eq!(
        values(&out.response_headers, "custom-header"),
        ["The secret to life is meaningless unless you discover it yourself"]
    );
}

/// Answers `/bytes/1` with a fixed byte, standing in for httpbin.
struct FakeHttpbin(u8);

#[async_trait::async_trait]
impl HttpCaller for FakeHttpbin {
    async fn call(&self, request: HttpCallRequest) -> Result<HttpCallResponse, HttpCallError> {
        assert_eq!(request.cluster, "httpbin");
        Ok(HttpCallResponse {
            headers: vec![(":status".into(), b"200".to_vec())],
            body: Bytes::from(vec![self.0]),
            trailers: Vec::new(),
        })
    }
}

#[tokio::test]
async fn sdk_http_auth_random_grants_on_even_and_forbids_on_odd() {
    let Some(url) = example("http_auth_random") else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let (host, _) = host();
    let set = compile(dir.path(), &[plugin_yaml("auth-example", &url, "")], &host).expect("loads");
    let out = exchange(&set, &[], Some(Arc::new(FakeHttpbin(2)))).await;
    assert_eq!(out.request, Verdict::Continue, "even byte: access granted");
    assert_eq!(values(&out.response_headers, "powered-by"), ["proxy-wasm"]);
    let out = exchange(&set, &[], Some(Arc::new(FakeHttpbin(3)))).await;
    match out.request {
        Verdict::Respond(r) => {
            assert_eq!(r.status, 403);
            assert_eq!(&r.body[..], b"Access forbidden.\n");
        }
        other => panic!("odd byte must be forbidden, got {other:?}"),
    }
}
