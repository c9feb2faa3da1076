//! The path a policy sees: Istio's default `BASE` normalisation (RFC 3986:
//! percent-encoded unreserved characters decoded, `.` and `..` segments
//! removed), without the query. Without it `DENY /admin/*` would let
//! `/public/../admin/x` through to a backend that normalises for itself.

use std::borrow::Cow;

/// `path_and_query` normalised, without its query; borrowed when already normal.
pub fn normalize(path_and_query: &str) -> Cow<'_, str> {
    let path = match path_and_query.find(['?', '#']) {
        Some(i) => &path_and_query[..i],
        None => path_and_query,
    };
    if !needs_work(path) {
        return Cow::Borrowed(path);
    }
    let decoded = decode_unreserved(path);
    Cow::Owned(remove_dot_segments(&decoded))
}

fn needs_work(path: &str) -> bool {
    path.contains('%') || path.split('/').any(|s| s == "." || s == "..")
}

/// Decodes `%XX` only where XX is an unreserved character (ALPHA, DIGIT,
/// `-`, `.`, `_`, `~`); other escapes (`%2F` among them) stay as sent.
fn decode_unreserved(path: &str) -> String {
    let bytes = path.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = (bytes[i] == b'%')
            .then(|| path.get(i + 1..i + 3))
            .flatten()
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match hex {
            Some(b) if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') => {
                out.push(b);
            }
            // Other escapes stay, in upper case as RFC 3986 normalises them.
            Some(_) => out.extend(path[i..i + 3].to_ascii_uppercase().bytes()),
            None => {
                out.push(bytes[i]);
                i += 1;
                continue;
            }
        }
        i += 3;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// RFC 3986 §5.2.4 on an absolute path; never climbs above `/`.
fn remove_dot_segments(path: &str) -> String {
    let mut out: Vec<&str> = Vec::new();
    let segments: Vec<&str> = path.split('/').skip(1).collect();
    let last = segments.len().saturating_sub(1);
    for (i, seg) in segments.iter().enumerate() {
        match *seg {
            "." => {
                if i == last {
                    out.push("");
                }
            }
            ".." => {
                out.pop();
                if i == last {
                    out.push("");
                }
            }
            s => out.push(s),
        }
    }
    format!("/{}", out.join("/"))
}

#[cfg(test)]
mod tests {
    use super::normalize;

    #[test]
    fn base_normalisation() {
        assert_eq!(normalize("/a/b?x=1"), "/a/b");
        assert_eq!(normalize("/public/../admin/x"), "/admin/x");
        assert_eq!(normalize("/a/./b/"), "/a/b/");
        assert_eq!(normalize("/a/b/.."), "/a/");
        assert_eq!(normalize("/../../x"), "/x");
        assert_eq!(normalize("/%61dmin/%2e%2e/x"), "/x");
        assert_eq!(normalize("/a%2Fb"), "/a%2Fb", "escaped slashes stay");
        assert_eq!(normalize("/a%2fb"), "/a%2Fb");
        assert_eq!(normalize("/%zz"), "/%zz");
        assert_eq!(normalize("/a%"), "/a%");
        assert!(matches!(
            normalize("/plain/path"),
            std::borrow::Cow::Borrowed(_)
        ));
    }
}
