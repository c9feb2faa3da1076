//! header-filter: sets, appends and removes request and response headers as
//! its pluginConfig says.
//!
//! ```yaml
//! pluginConfig:
//!   request:  { set: {x-team: payments}, add: {x-trace: wasm}, remove: [x-debug] }
//!   response: { set: {x-served-by: waypoint}, remove: [server] }
//! ```
//! Per side, `remove` runs first, then `set` (replace), then `add` (append),
//! the order Envoy's header mutations use.

use std::collections::BTreeMap;
use std::rc::Rc;

use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel};
use serde::Deserialize;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Edits {
    #[serde(default)]
    set: BTreeMap<String, String>,
    #[serde(default)]
    add: BTreeMap<String, String>,
    #[serde(default)]
    remove: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    #[serde(default)]
    request: Edits,
    #[serde(default)]
    response: Edits,
}

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(Root::default()) });
}}

#[derive(Default)]
struct Root {
    config: Rc<Config>,
}

impl Context for Root {}

impl RootContext for Root {
    fn on_configure(&mut self, _size: usize) -> bool {
        let Some(bytes) = self.get_plugin_configuration() else {
            return true;
        };
        match serde_json::from_slice::<Config>(&bytes) {
            Ok(config) => {
                self.config = Rc::new(config);
                true
            }
            Err(e) => {
                log::error!("header-filter: invalid pluginConfig: {e}");
                false
            }
        }
    }

    fn create_http_context(&self, _id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Headers {
            config: self.config.clone(),
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct Headers {
    config: Rc<Config>,
}

impl Context for Headers {}

impl HttpContext for Headers {
    fn on_http_request_headers(&mut self, _n: usize, _eos: bool) -> Action {
        let e = &self.config.request;
        for name in &e.remove {
            self.set_http_request_header(name, None);
        }
        for (name, value) in &e.set {
            self.set_http_request_header(name, Some(value));
        }
        for (name, value) in &e.add {
            self.add_http_request_header(name, value);
        }
        Action::Continue
    }

    fn on_http_response_headers(&mut self, _n: usize, _eos: bool) -> Action {
        let e = &self.config.response;
        for name in &e.remove {
            self.set_http_response_header(name, None);
        }
        for (name, value) in &e.set {
            self.set_http_response_header(name, Some(value));
        }
        for (name, value) in &e.add {
            self.add_http_response_header(name, value);
        }
        Action::Continue
    }
}
