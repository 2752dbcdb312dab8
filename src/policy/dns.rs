//! [`DnsPattern`]: a DNS name, or an RFC 6125 wildcard, to match a certificate's DNS SANs.

use std::fmt;
use std::str::FromStr;

/// A DNS name to match a SAN DNS name against, optionally with an RFC 6125 wildcard.
///
/// * Matching is ASCII case-insensitive; one trailing dot on either side is ignored.
/// * `*` is allowed only as the whole left-most label (`*.agents.example.com`) and then stands
///   for exactly one non-empty label of letters, digits, `-` or `_`: it never crosses a dot
///   (`a.b.agents.example.com` does not match) and never matches the bare parent
///   (`agents.example.com`). A wildcard needs at least two labels after it (`*.com` is refused).
/// * A certificate's own wildcard name (`*.example.com` in its SAN) matches no pattern: a
///   pattern's `*` stands only for a real label, and a pattern cannot spell `*` literally. Pin
///   such a certificate by fingerprint instead.
/// * International names must be given in their ASCII (`xn--`) form, as certificates carry them.
///
/// ```
/// use tower_mtls::policy::DnsPattern;
///
/// let pattern: DnsPattern = "*.Agents.Example.com".parse().unwrap();
/// assert!(pattern.matches("node-1.agents.example.com"));
/// assert!(!pattern.matches("a.node-1.agents.example.com"));
/// assert!(!pattern.matches("agents.example.com"));
/// assert!("foo.*.example.com".parse::<DnsPattern>().is_err());
/// ```
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct DnsPattern {
    /// Lowercased, without trailing dot; starts with `*.` when `wildcard`.
    text: Box<str>,
    wildcard: bool,
}

/// Why a text is not a valid [`DnsPattern`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a valid DNS name pattern ({reason}): {pattern:?}")]
pub struct InvalidDnsPattern {
    pattern: String,
    reason: &'static str,
}

impl InvalidDnsPattern {
    /// What is wrong with the pattern.
    pub fn reason(&self) -> &'static str {
        self.reason
    }
}

impl DnsPattern {
    /// Validates and normalizes a DNS name or wildcard pattern.
    pub fn new(pattern: &str) -> Result<Self, InvalidDnsPattern> {
        let fail = |reason| InvalidDnsPattern {
            pattern: pattern.to_owned(),
            reason,
        };
        let name = pattern.strip_suffix('.').unwrap_or(pattern);
        if name.is_empty() {
            return Err(fail("empty name"));
        }
        if name.len() > 253 {
            return Err(fail("longer than 253 bytes"));
        }
        let mut wildcard = false;
        let mut labels = 0usize;
        for (i, label) in name.split('.').enumerate() {
            labels += 1;
            if label.is_empty() {
                return Err(fail("empty label"));
            }
            if label.len() > 63 {
                return Err(fail("label longer than 63 bytes"));
            }
            if label == "*" && i == 0 {
                wildcard = true;
                continue;
            }
            if label.contains('*') {
                return Err(fail("'*' may only be the whole left-most label"));
            }
            if !label.bytes().all(is_label_byte) {
                return Err(fail(
                    "only letters, digits, '-' and '_' are allowed (write international names in their xn-- form)",
                ));
            }
        }
        if wildcard && labels < 3 {
            return Err(fail("a wildcard needs at least two labels after it"));
        }
        Ok(Self {
            text: name.to_ascii_lowercase().into_boxed_str(),
            wildcard,
        })
    }

    /// The normalized pattern: lowercase, without a trailing dot.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether the pattern has a wildcard label.
    pub fn is_wildcard(&self) -> bool {
        self.wildcard
    }

    /// Whether the DNS name `name` (as found in a certificate) matches this pattern.
    pub fn matches(&self, name: &str) -> bool {
        let name = name.strip_suffix('.').unwrap_or(name).as_bytes();
        let pattern = self.text.as_bytes();
        if !self.wildcard {
            return name.eq_ignore_ascii_case(pattern);
        }
        // `text` is "*.rest": compare ".rest" and check the one label in front of it.
        let suffix = pattern.get(1..).unwrap_or_default();
        let Some(split) = name.len().checked_sub(suffix.len()) else {
            return false;
        };
        let (label, tail) = name.split_at(split);
        !label.is_empty()
            && label.iter().all(|&b| is_label_byte(b))
            && tail.eq_ignore_ascii_case(suffix)
    }
}

fn is_label_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-' || b == b'_'
}

impl FromStr for DnsPattern {
    type Err = InvalidDnsPattern;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

impl fmt::Display for DnsPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl fmt::Debug for DnsPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DnsPattern({:?})", self.text)
    }
}
