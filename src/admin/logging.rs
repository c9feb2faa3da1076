//! `/logging`, as Envoy's: `POST /logging?level=debug` sets every logger,
//! `POST /logging?paths=waypoint::proxy:debug,h2:warn` some modules; `GET`
//! only lists the current levels (a GET never changes state, so a crawler or
//! a browser prefetch cannot turn debug logging on).

use bytes::Bytes;
use http::{Method, Response, StatusCode};
use http_body_util::Full;

use super::{respond, Query};
use crate::telemetry::log_level::{self, LogLevelError};

/// Answers one `/logging` request.
pub fn handle(method: &Method, query: &Query) -> Response<Full<Bytes>> {
    let Some(levels) = log_level::installed() else {
        return respond(
            StatusCode::SERVICE_UNAVAILABLE,
            "text/plain",
            format!("{}\n", LogLevelError::NotInstalled),
        );
    };
    let change = query.get("level").is_some() || query.get("paths").is_some();
    if *method != Method::POST {
        let status = if change {
            StatusCode::METHOD_NOT_ALLOWED
        } else {
            StatusCode::OK
        };
        let note = if change {
            "log levels change only with POST; nothing changed\n"
        } else {
            ""
        };
        return respond(
            status,
            "text/plain",
            format!(
                "{note}active log filter: {}\nlevels: {}\n",
                levels.current(),
                log_level::LEVELS.join(", ")
            ),
        );
    }
    let result =
        match (query.get("level"), query.get("paths")) {
            (Some(level), _) => levels.set_all(level),
            (None, Some(paths)) => levels.set_paths(paths),
            (None, None) => return respond(
                StatusCode::BAD_REQUEST,
                "text/plain",
                "usage: POST /logging?level=LEVEL or /logging?paths=module:LEVEL[,module:LEVEL]\n"
                    .into(),
            ),
        };
    match result {
        Ok(now) => {
            tracing::info!(filter = %now, "log levels changed through the admin port");
            respond(
                StatusCode::OK,
                "text/plain",
                format!("active log filter: {now}\n"),
            )
        }
        Err(e) => respond(StatusCode::BAD_REQUEST, "text/plain", format!("{e}\n")),
    }
}
