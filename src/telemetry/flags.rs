//! Envoy response flags, as they appear in `response_flags` labels and access
//! logs. A request can carry several (`DI,UT`); none is shown as `-`.

use std::fmt;

/// A set of Envoy response flags.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct ResponseFlags(u16);

macro_rules! flags {
    ($($name:ident = $bit:expr, $text:literal, $doc:literal;)*) => {
        impl ResponseFlags {
            $(#[doc = $doc] pub const $name: ResponseFlags = ResponseFlags(1 << $bit);)*
            const ALL: &'static [(ResponseFlags, &'static str)] = &[$((ResponseFlags::$name, $text)),*];
        }
    };
}

flags! {
    NR = 0, "NR", "No route configured for the request.";
    UH = 1, "UH", "No healthy upstream endpoint.";
    UF = 2, "UF", "Upstream connection failure.";
    UO = 3, "UO", "Upstream overflow (circuit breaking).";
    UT = 4, "UT", "Upstream request timeout.";
    URX = 5, "URX", "Retry limit or upstream connect attempts exceeded.";
    DI = 6, "DI", "Request delayed by fault injection.";
    FI = 7, "FI", "Request aborted by fault injection.";
    UC = 8, "UC", "Upstream connection termination.";
    DC = 9, "DC", "Downstream connection termination.";
    UR = 10, "UR", "Upstream remote reset.";
    DPE = 11, "DPE", "Downstream protocol error.";
    UAEX = 12, "UAEX", "Denied by the external authorization service.";
    OM = 13, "OM", "Shed by the overload manager.";
}

impl ResponseFlags {
    /// No flag.
    pub const NONE: ResponseFlags = ResponseFlags(0);

    pub fn insert(&mut self, other: ResponseFlags) {
        self.0 |= other.0;
    }

    pub fn contains(self, other: ResponseFlags) -> bool {
        self.0 & other.0 == other.0 && other.0 != 0
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }
}

impl fmt::Display for ResponseFlags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_empty() {
            return f.write_str("-");
        }
        let mut first = true;
        for (flag, text) in Self::ALL {
            if self.contains(*flag) {
                if !first {
                    f.write_str(",")?;
                }
                f.write_str(text)?;
                first = false;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shows_envoy_names_or_dash() {
        assert_eq!(ResponseFlags::NONE.to_string(), "-");
        assert_eq!(ResponseFlags::NR.to_string(), "NR");
        let mut f = ResponseFlags::DI;
        f.insert(ResponseFlags::UT);
        assert_eq!(f.to_string(), "UT,DI");
        assert!(f.contains(ResponseFlags::DI));
        assert!(!f.contains(ResponseFlags::NR));
    }
}
