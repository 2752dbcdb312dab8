//! SPIFFE IDs, validated as the SPIFFE specification requires.

use std::fmt;
use std::str::FromStr;

/// A SPIFFE ID (`spiffe://trust-domain/path`), validated as the SPIFFE specification requires.
///
/// The trust domain holds only lowercase letters, digits, `.`, `-` and `_`; path segments are
/// non-empty, never `.` or `..`, and hold only letters, digits, `.`, `-` and `_`; no query,
/// fragment, port or user info; at most 2048 bytes.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SpiffeId {
    id: String,
    domain_end: usize,
}

/// The text is not a valid SPIFFE ID.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a valid SPIFFE ID ({reason}): {id:?}")]
pub struct SpiffeIdError {
    id: String,
    reason: &'static str,
}

impl SpiffeId {
    const SCHEME: &'static str = "spiffe://";

    /// Parses and validates a SPIFFE ID.
    pub fn parse(id: &str) -> Result<Self, SpiffeIdError> {
        let fail = |reason| SpiffeIdError {
            id: id.to_owned(),
            reason,
        };
        if id.len() > 2048 {
            return Err(fail("longer than 2048 bytes"));
        }
        let rest = id
            .strip_prefix(Self::SCHEME)
            .ok_or_else(|| fail("does not start with spiffe://"))?;
        let (domain, path) = match rest.find('/') {
            Some(i) => rest.split_at(i),
            None => (rest, ""),
        };
        if domain.is_empty() {
            return Err(fail("empty trust domain"));
        }
        if !domain.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'-' | b'_')
        }) {
            return Err(fail(
                "trust domain may hold only lowercase letters, digits, '.', '-' and '_'",
            ));
        }
        if !path.is_empty() {
            for segment in path[1..].split('/') {
                if segment.is_empty() {
                    return Err(fail("empty path segment"));
                }
                if segment == "." || segment == ".." {
                    return Err(fail("path segment '.' or '..'"));
                }
                if !segment
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
                {
                    return Err(fail(
                        "path segments may hold only letters, digits, '.', '-' and '_'",
                    ));
                }
            }
        }
        Ok(Self {
            id: id.to_owned(),
            domain_end: Self::SCHEME.len() + domain.len(),
        })
    }

    /// The whole ID, `spiffe://domain/path`.
    pub fn as_str(&self) -> &str {
        &self.id
    }

    /// The trust domain, e.g. `prod.example.org`.
    pub fn trust_domain(&self) -> &str {
        &self.id[Self::SCHEME.len()..self.domain_end]
    }

    /// The path, `""` or starting with `/`.
    pub fn path(&self) -> &str {
        &self.id[self.domain_end..]
    }
}

impl fmt::Display for SpiffeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.id)
    }
}

impl FromStr for SpiffeId {
    type Err = SpiffeIdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}
