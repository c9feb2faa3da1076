//! The proxy-wasm ABI's numbers and wire formats (spec: proxy-wasm/spec,
//! `abi-versions/v0.2.1/README.md`): statuses, enum values the guest passes
//! us, and the serialisation of header maps. Nothing here touches wasmtime.

/// `proxy_status_t`. The SDKs abort on a status they do not expect for a given
/// call, so every host call returns exactly the one the spec names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(i32)]
pub enum Status {
    Ok = 0,
    NotFound = 1,
    BadArgument = 2,
    SerializationFailure = 3,
    ParseFailure = 4,
    InvalidMemoryAccess = 6,
    Empty = 7,
    CasMismatch = 8,
    InternalFailure = 10,
    Unimplemented = 12,
}

impl From<Status> for i32 {
    fn from(s: Status) -> i32 {
        s as i32
    }
}

/// `proxy_map_type_t`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MapType {
    RequestHeaders,
    RequestTrailers,
    ResponseHeaders,
    ResponseTrailers,
    HttpCallResponseHeaders,
    HttpCallResponseTrailers,
}

impl MapType {
    /// Decodes the guest's value; gRPC metadata maps (4, 5) are not supported.
    pub fn from_raw(v: i32) -> Option<MapType> {
        Some(match v {
            0 => MapType::RequestHeaders,
            1 => MapType::RequestTrailers,
            2 => MapType::ResponseHeaders,
            3 => MapType::ResponseTrailers,
            6 => MapType::HttpCallResponseHeaders,
            7 => MapType::HttpCallResponseTrailers,
            _ => return None,
        })
    }
}

/// `proxy_buffer_type_t`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BufferType {
    RequestBody,
    ResponseBody,
    HttpCallResponseBody,
    VmConfiguration,
    PluginConfiguration,
}

impl BufferType {
    /// Decodes the guest's value; network and gRPC buffers are not supported.
    pub fn from_raw(v: i32) -> Option<BufferType> {
        Some(match v {
            0 => BufferType::RequestBody,
            1 => BufferType::ResponseBody,
            4 => BufferType::HttpCallResponseBody,
            6 => BufferType::VmConfiguration,
            7 => BufferType::PluginConfiguration,
            _ => return None,
        })
    }
}

/// `proxy_stream_type_t` of `proxy_continue_stream` / `proxy_close_stream`.
pub const STREAM_HTTP_REQUEST: i32 = 0;
/// See [`STREAM_HTTP_REQUEST`].
pub const STREAM_HTTP_RESPONSE: i32 = 1;

/// `proxy_action_t`: 0 continues; every other value (Pause, and Envoy's
/// StopAllIterationAndBuffer/Watermark) stops iteration.
pub const ACTION_CONTINUE: i32 = 0;

/// `proxy_metric_type_t`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MetricType {
    Counter,
    Gauge,
    Histogram,
}

impl MetricType {
    /// Decodes the guest's value.
    pub fn from_raw(v: i32) -> Option<MetricType> {
        Some(match v {
            0 => MetricType::Counter,
            1 => MetricType::Gauge,
            2 => MetricType::Histogram,
            _ => return None,
        })
    }
}

/// `proxy_log_level_t` (trace = 0 … critical = 5).
pub fn log_level_name(level: i32) -> &'static str {
    match level {
        0 => "trace",
        1 => "debug",
        2 => "info",
        3 => "warn",
        4 => "error",
        _ => "critical",
    }
}

/// An ordered list of header pairs as the guest sees them (lower-case
/// names, pseudo-headers first).
pub type HeaderList = Vec<(String, Vec<u8>)>;

/// Serialises pairs the way the spec lays out a header map: the number of
/// pairs (u32 LE), then each pair's key and value sizes (u32 LE), then each
/// key and value followed by a NUL.
pub fn serialize_pairs<'a, I>(pairs: I) -> Vec<u8>
where
    I: IntoIterator<Item = (&'a [u8], &'a [u8])> + Clone,
{
    let mut count = 0u32;
    let mut data = 0usize;
    for (k, v) in pairs.clone() {
        count += 1;
        data += k.len() + v.len() + 2;
    }
    let mut out = Vec::with_capacity(4 + count as usize * 8 + data);
    out.extend_from_slice(&count.to_le_bytes());
    for (k, v) in pairs.clone() {
        out.extend_from_slice(&(k.len() as u32).to_le_bytes());
        out.extend_from_slice(&(v.len() as u32).to_le_bytes());
    }
    for (k, v) in pairs {
        out.extend_from_slice(k);
        out.push(0);
        out.extend_from_slice(v);
        out.push(0);
    }
    out
}

/// Parses the layout [`serialize_pairs`] writes; `None` if it is malformed.
pub fn deserialize_pairs(bytes: &[u8]) -> Option<Vec<(Vec<u8>, Vec<u8>)>> {
    let read_u32 = |at: usize| -> Option<usize> {
        let b = bytes.get(at..at + 4)?;
        Some(u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
    };
    if bytes.is_empty() {
        return Some(Vec::new());
    }
    let count = read_u32(0)?;
    let mut sizes = Vec::with_capacity(count.min(1024));
    for i in 0..count {
        sizes.push((read_u32(4 + i * 8)?, read_u32(8 + i * 8)?));
    }
    let mut at = 4 + count * 8;
    let mut out = Vec::with_capacity(sizes.len());
    for (k, v) in sizes {
        let key = bytes.get(at..at + k)?.to_vec();
        at += k + 1;
        let value = bytes.get(at..at + v)?.to_vec();
        at += v + 1;
        out.push((key, value));
    }
    Some(out)
}
