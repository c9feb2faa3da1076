//! rate-limit: a token bucket per value of a request header, kept in the
//! host's shared data so every worker's instance draws from the same bucket.
//! Updates use the shared data's compare-and-swap version and retry on a
//! conflict. An empty bucket answers 429 and counts `wasm_rate_limit_rejected`.
//!
//! ```yaml
//! pluginConfig: { header: x-user, tokens_per_fill: 1, fill_interval_ms: 1000, max_tokens: 5 }
//! ```
//! Requests without the header share the bucket of the empty value.

use std::rc::Rc;
use std::time::UNIX_EPOCH;

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel, MetricType, Status};
use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    header: String,
    tokens_per_fill: u64,
    fill_interval_ms: u64,
    max_tokens: u64,
}

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(Root { config: None, rejected: None }) });
}}

struct Root {
    config: Option<Rc<Config>>,
    rejected: Option<u32>,
}

impl Context for Root {}

impl RootContext for Root {
    fn on_configure(&mut self, _size: usize) -> bool {
        let parsed = self
            .get_plugin_configuration()
            .map(|b| serde_json::from_slice::<Config>(&b));
        match parsed {
            Some(Ok(c)) if c.fill_interval_ms > 0 && c.max_tokens > 0 => {
                self.config = Some(Rc::new(c))
            }
            Some(Ok(_)) => {
                log::error!("rate-limit: fill_interval_ms and max_tokens must be positive");
                return false;
            }
            Some(Err(e)) => {
                log::error!("rate-limit: invalid pluginConfig: {e}");
                return false;
            }
            None => {
                log::error!("rate-limit: pluginConfig is required");
                return false;
            }
        }
        match hostcalls::define_metric(MetricType::Counter, "wasm_rate_limit_rejected") {
            Ok(id) => self.rejected = Some(id),
            Err(e) => log::warn!("rate-limit: cannot define metric: {e:?}"),
        }
        true
    }

    fn create_http_context(&self, _id: u32) -> Option<Box<dyn HttpContext>> {
        let config = self.config.clone()?;
        Some(Box::new(Limit {
            config,
            rejected: self.rejected,
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct Limit {
    config: Rc<Config>,
    rejected: Option<u32>,
}

impl Context for Limit {}

/// Bucket state in shared data: tokens, then the last refill time (ms), LE.
fn decode(bytes: &[u8]) -> Option<(u64, u64)> {
    let tokens = u64::from_le_bytes(bytes.get(0..8)?.try_into().ok()?);
    let at = u64::from_le_bytes(bytes.get(8..16)?.try_into().ok()?);
    Some((tokens, at))
}

fn encode(tokens: u64, at: u64) -> [u8; 16] {
    let mut out = [0u8; 16];
    out[..8].copy_from_slice(&tokens.to_le_bytes());
    out[8..].copy_from_slice(&at.to_le_bytes());
    out
}

impl Limit {
    /// Takes one token; `false` when the bucket is empty.
    fn take(&self, key: &str, now_ms: u64) -> bool {
        let c = &self.config;
        for _ in 0..16 {
            let (data, cas) = self.get_shared_data(key);
            let (mut tokens, mut at) = data
                .as_deref()
                .and_then(decode)
                .unwrap_or((c.max_tokens, now_ms));
            let fills = now_ms.saturating_sub(at) / c.fill_interval_ms;
            if fills > 0 {
                tokens = (tokens + fills * c.tokens_per_fill).min(c.max_tokens);
                at += fills * c.fill_interval_ms;
            }
            if tokens == 0 {
                return false;
            }
            // cas None (no entry yet) writes unconditionally; a lost race
            // with another instance answers CasMismatch and we retry.
            match self.set_shared_data(key, Some(&encode(tokens - 1, at)), cas) {
                Ok(()) => return true,
                Err(Status::CasMismatch) => continue,
                Err(e) => {
                    log::warn!("rate-limit: shared data write failed: {e:?}");
                    return true;
                }
            }
        }
        // Persistent contention: fail open rather than reject wrongly.
        true
    }
}

impl HttpContext for Limit {
    fn on_http_request_headers(&mut self, _n: usize, _eos: bool) -> Action {
        let value = self
            .get_http_request_header(&self.config.header)
            .unwrap_or_default();
        let key = format!("rate-limit/{}/{value}", self.config.header);
        let now_ms = self
            .get_current_time()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        if self.take(&key, now_ms) {
            return Action::Continue;
        }
        if let Some(id) = self.rejected {
            let _ = hostcalls::increment_metric(id, 1);
        }
        self.send_http_response(
            429,
            vec![("x-rate-limited", "true")],
            Some(b"rate limited\n"),
        );
        Action::Pause
    }
}
