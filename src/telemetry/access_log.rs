//! Envoy-shaped JSON access log: one line per request on stdout, with the
//! field names of Envoy's default format so existing log pipelines parse it.

use std::io::Write;

use serde::Serialize;

use super::ResponseFlags;

/// One access-log record; `None` fields are written as `null`, like Envoy's `-`.
#[derive(Debug, Serialize)]
pub struct AccessLogEntry<'a> {
    pub start_time: String,
    pub method: &'a str,
    pub path: &'a str,
    pub protocol: &'a str,
    pub response_code: u16,
    #[serde(serialize_with = "as_display")]
    pub response_flags: ResponseFlags,
    /// Why the waypoint answered as it did, in Envoy's words
    /// (`rbac_access_denied_matched_policy[…]`).
    pub response_code_details: Option<&'a str>,
    pub bytes_received: u64,
    pub bytes_sent: u64,
    /// Milliseconds from the first request byte to the last response byte.
    pub duration: u64,
    pub upstream_host: Option<String>,
    pub upstream_cluster: Option<&'a str>,
    pub x_request_id: Option<&'a str>,
    pub authority: Option<&'a str>,
    pub route_name: Option<&'a str>,
    pub downstream_remote_address: Option<String>,
    pub user_agent: Option<&'a str>,
}

fn as_display<S: serde::Serializer>(v: &ResponseFlags, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(v)
}

impl AccessLogEntry<'_> {
    /// The record as one JSON line (with the trailing newline).
    pub fn to_line(&self) -> String {
        let mut line = serde_json::to_string(self).expect("plain struct serializes");
        line.push('\n');
        line
    }

    /// Writes the line to stdout in one `write_all`, so lines from different
    /// threads never interleave.
    pub fn write(&self) {
        let line = self.to_line();
        let _ = std::io::stdout().lock().write_all(line.as_bytes());
    }
}

/// RFC 3339 with milliseconds, UTC (Envoy's `%START_TIME%`).
pub fn format_start_time(t: std::time::SystemTime) -> String {
    let t: time::OffsetDateTime = t.into();
    let format = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    );
    t.format(&format).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uses_envoy_field_names() {
        let e = AccessLogEntry {
            start_time: format_start_time(std::time::UNIX_EPOCH),
            method: "GET",
            path: "/x",
            protocol: "HTTP/1.1",
            response_code: 503,
            response_flags: ResponseFlags::UH,
            response_code_details: None,
            bytes_received: 0,
            bytes_sent: 19,
            duration: 1,
            upstream_host: None,
            upstream_cluster: Some("outbound|9080||reviews.default.svc.cluster.local"),
            x_request_id: Some("abc"),
            authority: Some("reviews"),
            route_name: None,
            downstream_remote_address: None,
            user_agent: None,
        };
        let v: serde_json::Value = serde_json::from_str(&e.to_line()).unwrap();
        assert_eq!(v["start_time"], "1970-01-01T00:00:00.000Z");
        assert_eq!(v["response_flags"], "UH");
        assert_eq!(v["response_code"], 503);
        assert_eq!(v["x_request_id"], "abc");
        assert!(v["upstream_host"].is_null());
    }
}
