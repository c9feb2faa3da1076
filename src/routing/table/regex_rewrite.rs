//! VirtualService `rewrite.uriRegexRewrite` (Envoy `regex_rewrite`): every
//! non-overlapping match of an RE2 pattern in the path is replaced by a
//! substitution in which `\1`…`\9` name capture groups.

use std::fmt;

use regex::Regex;

use crate::routing::error::RouteConfigError;

/// A compiled regex path rewrite (from the API's `config::RegexRewrite`); compares and
/// prints as written.
#[derive(Clone)]
pub struct CompiledRegexRewrite {
    pattern: String,
    substitution: String,
    regex: Regex,
    /// `substitution` in the `regex` crate's `${1}` syntax.
    replacement: String,
}

impl CompiledRegexRewrite {
    /// Compiles `pattern` (unanchored, as Envoy's `regex_rewrite`) and
    /// `substitution`.
    pub fn new(pattern: &str, substitution: &str) -> Result<Self, RouteConfigError> {
        let regex = Regex::new(pattern).map_err(|e| RouteConfigError::InvalidRegex {
            pattern: pattern.to_string(),
            source: Box::new(e),
        })?;
        Ok(Self {
            pattern: pattern.to_string(),
            substitution: substitution.to_string(),
            regex,
            replacement: envoy_to_regex_replacement(substitution),
        })
    }

    /// The rewritten path.
    pub fn apply(&self, path: &str) -> String {
        self.regex
            .replace_all(path, self.replacement.as_str())
            .into_owned()
    }
}

/// `\1` → `${1}`, a literal `$` → `$$`.
fn envoy_to_regex_replacement(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '$' => out.push_str("$$"),
            '\\' if chars.peek().is_some_and(char::is_ascii_digit) => {
                let d = chars.next().unwrap_or('0');
                out.push_str("${");
                out.push(d);
                out.push('}');
            }
            c => out.push(c),
        }
    }
    out
}

impl PartialEq for CompiledRegexRewrite {
    fn eq(&self, other: &Self) -> bool {
        self.pattern == other.pattern && self.substitution == other.substitution
    }
}

impl fmt::Debug for CompiledRegexRewrite {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "s/{}/{}/", self.pattern, self.substitution)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rewrites_every_match_with_envoy_group_syntax() {
        let rows = [
            (
                "^/service/([^/]+)(/.*)$",
                "\\2/instance/\\1",
                "/service/foo/v1/api",
                "/v1/api/instance/foo",
            ),
            ("one", "two", "/one/one", "/two/two"),
            ("^/a", "/$b", "/a/x", "/$b/x"),
        ];
        for (pattern, sub, path, want) in rows {
            let r = CompiledRegexRewrite::new(pattern, sub).expect("valid");
            assert_eq!(r.apply(path), want, "{pattern} -> {sub}");
        }
        assert!(CompiledRegexRewrite::new("(", "x").is_err());
    }
}
