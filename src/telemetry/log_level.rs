//! The process's log filter, changeable at run time (the admin port's
//! `/logging`, as Envoy's): a `tracing_subscriber` reload layer around an
//! `EnvFilter`, installed once by [`init`]. This module owns the filter and
//! its directives; the admin module only parses the request.

use std::collections::BTreeMap;
use std::sync::{Mutex, OnceLock};

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{reload, EnvFilter, Registry};

/// The levels `/logging` accepts, Envoy's names with `warn` for `warning`.
pub const LEVELS: [&str; 6] = ["trace", "debug", "info", "warn", "error", "off"];

/// Why a log-level change was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LogLevelError {
    #[error("unknown log level {0:?}; valid levels: trace, debug, info, warn, error, off")]
    UnknownLevel(String),
    #[error("bad logger entry {0:?} in paths; write module:level[,module:level]")]
    BadPath(String),
    #[error("log levels cannot be changed: this process installed no reloadable log filter")]
    NotInstalled,
    #[error("the log filter could not be replaced: {0}")]
    Reload(String),
}

/// The current directives: a default level and per-module levels.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Directives {
    default: String,
    modules: BTreeMap<String, String>,
}

impl Directives {
    /// Reads `info,waypoint::proxy=debug`; a directive it cannot split into
    /// `module=level` (span filters) is kept whole as a module key.
    fn parse(spec: &str) -> Self {
        let mut d = Directives {
            default: "info".into(),
            modules: BTreeMap::new(),
        };
        for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            match part.split_once('=') {
                Some((module, level)) => {
                    d.modules.insert(module.into(), level.into());
                }
                None if LEVELS.contains(&part.to_ascii_lowercase().as_str()) => {
                    d.default = part.to_ascii_lowercase()
                }
                None => {
                    d.modules.insert(part.into(), String::new());
                }
            }
        }
        d
    }

    fn render(&self) -> String {
        let mut out = self.default.clone();
        for (module, level) in &self.modules {
            out.push(',');
            out.push_str(module);
            if !level.is_empty() {
                out.push('=');
                out.push_str(level);
            }
        }
        out
    }
}

/// The installed, reloadable filter.
pub struct LogLevels {
    handle: reload::Handle<EnvFilter, Registry>,
    directives: Mutex<Directives>,
}

static INSTALLED: OnceLock<LogLevels> = OnceLock::new();

/// Installs the global subscriber (text lines on stderr) with a filter from
/// `WAYPOINT_LOG`, else `default_filter`. A second call does nothing.
pub fn init(default_filter: &str) {
    let spec = std::env::var("WAYPOINT_LOG").unwrap_or_else(|_| default_filter.to_string());
    let filter = EnvFilter::try_new(&spec).unwrap_or_else(|_| EnvFilter::new(default_filter));
    let (layer, handle) = reload::Layer::new(filter);
    let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    if tracing_subscriber::registry()
        .with(layer)
        .with(fmt)
        .try_init()
        .is_ok()
    {
        let _ = INSTALLED.set(LogLevels {
            handle,
            directives: Mutex::new(Directives::parse(&spec)),
        });
    }
}

/// The installed filter, when [`init`] installed one.
pub fn installed() -> Option<&'static LogLevels> {
    INSTALLED.get()
}

fn level(s: &str) -> Result<String, LogLevelError> {
    let l = s.trim().to_ascii_lowercase();
    let l = if l == "warning" { "warn".into() } else { l };
    if LEVELS.contains(&l.as_str()) {
        Ok(l)
    } else {
        Err(LogLevelError::UnknownLevel(s.to_string()))
    }
}

impl LogLevels {
    /// The filter now applied, as `EnvFilter` directives.
    pub fn current(&self) -> String {
        self.lock().render()
    }

    /// Sets every logger to `level` (Envoy's `/logging?level=`): per-module
    /// levels are dropped. Returns the new directives.
    pub fn set_all(&self, level_name: &str) -> Result<String, LogLevelError> {
        let new = Directives {
            default: level(level_name)?,
            modules: BTreeMap::new(),
        };
        self.apply(new)
    }

    /// Sets the level of some modules (Envoy's `/logging?paths=a:debug,b:warn`;
    /// our modules are Rust paths such as `waypoint::proxy`).
    pub fn set_paths(&self, paths: &str) -> Result<String, LogLevelError> {
        let mut new = self.lock().clone();
        for entry in paths.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let (module, lvl) = entry
                .rsplit_once(':')
                .filter(|(m, _)| !m.is_empty())
                .ok_or_else(|| LogLevelError::BadPath(entry.to_string()))?;
            new.modules.insert(module.to_string(), level(lvl)?);
        }
        self.apply(new)
    }

    fn apply(&self, new: Directives) -> Result<String, LogLevelError> {
        let rendered = new.render();
        let filter =
            EnvFilter::try_new(&rendered).map_err(|e| LogLevelError::Reload(e.to_string()))?;
        self.handle
            .reload(filter)
            .map_err(|e| LogLevelError::Reload(e.to_string()))?;
        *self.lock() = new;
        Ok(rendered)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Directives> {
        self.directives.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directives_round_trip_and_levels_are_checked() {
        let d = Directives::parse("info,waypoint::proxy=debug");
        assert_eq!(d.render(), "info,waypoint::proxy=debug");
        assert_eq!(level("WARNING"), Ok("warn".into()));
        assert!(matches!(level("loud"), Err(LogLevelError::UnknownLevel(_))));
    }
}
