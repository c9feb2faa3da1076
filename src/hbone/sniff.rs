//! Telling HTTP from other bytes at the start of a tunnel, so the proxy can send non-HTTP
//! streams to L4 passthrough instead of failing to parse them.

use std::io;

use super::stream::TunnelStream;

/// The HTTP/2 connection preface (RFC 9113 §3.4), which starts an h2c connection.
pub(crate) const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Request methods whose token (plus a space) identifies HTTP/1. A known list rather than
/// "any uppercase word": inline protocols such as Redis (`SET k v`) would match the latter.
const HTTP1_METHODS: &[&[u8]] = &[
    b"GET ",
    b"HEAD ",
    b"POST ",
    b"PUT ",
    b"DELETE ",
    b"CONNECT ",
    b"OPTIONS ",
    b"TRACE ",
    b"PATCH ",
];

/// What the first bytes of a tunnel look like.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sniffed {
    /// An HTTP/1.x request line.
    Http1,
    /// The HTTP/2 prior-knowledge preface.
    H2c,
    /// Anything else (TLS, a database protocol, …), or a stream that ended first.
    Other,
}

/// Classifies `bytes`; `None` while more bytes could change the answer.
pub(crate) fn classify(bytes: &[u8], eof: bool) -> Option<Sniffed> {
    if bytes.starts_with(H2_PREFACE) {
        return Some(Sniffed::H2c);
    }
    if HTTP1_METHODS.iter().any(|m| bytes.starts_with(m)) {
        return Some(Sniffed::Http1);
    }
    let undecided =
        H2_PREFACE.starts_with(bytes) || HTTP1_METHODS.iter().any(|m| m.starts_with(bytes));
    if undecided && !eof {
        None
    } else {
        Some(Sniffed::Other)
    }
}

impl TunnelStream {
    /// Peeks at the first bytes and classifies them; nothing is consumed.
    ///
    /// Waits until the bytes decide (at most 24, the h2 preface) or the peer ends the stream.
    /// Server-first protocols send nothing until the server speaks, so wrap this in a timeout
    /// and treat the timeout as [`Sniffed::Other`].
    pub async fn sniff(&mut self) -> io::Result<Sniffed> {
        let bytes = self
            .fill_peek(H2_PREFACE.len(), |b| classify(b, false).is_some())
            .await?
            .to_vec();
        // Fewer bytes than asked for and still undecided means the peer ended the stream.
        Ok(classify(&bytes, true).unwrap_or(Sniffed::Other))
    }
}
