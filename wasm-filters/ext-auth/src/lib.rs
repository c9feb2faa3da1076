//! ext-auth: asks an auth Service about every request with
//! `dispatch_http_call`; a 200 lets the request through, anything else (or
//! no answer) is a 403.
//!
//! ```yaml
//! pluginConfig:
//!   cluster: outbound|8080||auth.default.svc.cluster.local   # or auth:8080
//!   path: /check
//!   timeout_ms: 1000
//!   forward_headers: [authorization, x-user]
//! ```

use std::time::Duration;

use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel};
use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    cluster: String,
    #[serde(default = "default_path")]
    path: String,
    #[serde(default = "default_timeout")]
    timeout_ms: u64,
    #[serde(default)]
    forward_headers: Vec<String>,
    /// `:authority` of the check; defaults to the cluster's host.
    #[serde(default)]
    authority: Option<String>,
}

fn default_path() -> String {
    "/".into()
}

fn default_timeout() -> u64 {
    1000
}

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(Root { config: None }) });
}}

struct Root {
    config: Option<std::rc::Rc<Config>>,
}

impl Context for Root {}

impl RootContext for Root {
    fn on_configure(&mut self, _size: usize) -> bool {
        match self
            .get_plugin_configuration()
            .map(|b| serde_json::from_slice::<Config>(&b))
        {
            Some(Ok(c)) => {
                self.config = Some(std::rc::Rc::new(c));
                true
            }
            Some(Err(e)) => {
                log::error!("ext-auth: invalid pluginConfig: {e}");
                false
            }
            None => {
                log::error!("ext-auth: pluginConfig is required");
                false
            }
        }
    }

    fn create_http_context(&self, _id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Auth {
            config: self.config.clone()?,
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct Auth {
    config: std::rc::Rc<Config>,
}

/// The host part of `outbound|PORT||HOST` or `host:port`.
fn cluster_host(cluster: &str) -> &str {
    match cluster.split('|').nth(3) {
        Some(host) => host,
        None => cluster.split(':').next().unwrap_or(cluster),
    }
}

impl HttpContext for Auth {
    fn on_http_request_headers(&mut self, _n: usize, _eos: bool) -> Action {
        let c = self.config.clone();
        let authority = c
            .authority
            .clone()
            .unwrap_or_else(|| cluster_host(&c.cluster).to_string());
        let forwarded: Vec<(String, String)> = c
            .forward_headers
            .iter()
            .filter_map(|h| Some((h.clone(), self.get_http_request_header(h)?)))
            .collect();
        let mut headers = vec![
            (":method", "GET"),
            (":path", c.path.as_str()),
            (":authority", authority.as_str()),
        ];
        headers.extend(forwarded.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        match self.dispatch_http_call(
            &c.cluster,
            headers,
            None,
            vec![],
            Duration::from_millis(c.timeout_ms),
        ) {
            Ok(_) => Action::Pause,
            Err(e) => {
                log::warn!("ext-auth: cannot call {}: {e:?}", c.cluster);
                self.send_http_response(403, vec![], Some(b"ext-auth: auth service unavailable\n"));
                Action::Pause
            }
        }
    }
}

impl Context for Auth {
    fn on_http_call_response(
        &mut self,
        _token: u32,
        _headers: usize,
        _body: usize,
        _trailers: usize,
    ) {
        match self.get_http_call_response_header(":status").as_deref() {
            Some("200") => self.resume_http_request(),
            status => {
                log::info!("ext-auth: denied (auth status {status:?})");
                self.send_http_response(
                    403,
                    vec![("x-ext-auth", "denied")],
                    Some(b"ext-auth: access denied\n"),
                );
            }
        }
    }
}
