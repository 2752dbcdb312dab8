//! What can be wrong with a policy text, and where.

use super::dns::InvalidDnsPattern;
use crate::identity::{ParseFingerprintError, SpiffeIdError};

/// A policy text that does not parse: where, and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid client certificate policy at line {line}, column {column}: {kind}")]
pub struct PolicyParseError {
    pub(super) position: usize,
    pub(super) line: usize,
    pub(super) column: usize,
    pub(super) kind: PolicyErrorKind,
}

impl PolicyParseError {
    /// Byte offset of the problem in the text.
    pub fn position(&self) -> usize {
        self.position
    }

    /// Line of the problem, from 1.
    pub fn line(&self) -> usize {
        self.line
    }

    /// Column of the problem in characters, from 1.
    pub fn column(&self) -> usize {
        self.column
    }

    /// What is wrong.
    pub fn kind(&self) -> &PolicyErrorKind {
        &self.kind
    }
}

/// What is wrong with a policy text; see [`PolicyParseError`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyErrorKind {
    /// The text holds no rule at all.
    #[error("the policy has no rules")]
    EmptyPolicy,
    /// Nothing between two rule separators, or before or after a `|`.
    #[error("empty rule (nothing between separators)")]
    EmptyRule,
    /// A `&` without a `key=value` on one side.
    #[error("expected `key=value`")]
    MissingMatcher,
    /// `=value` without a key.
    #[error("missing key before `=`")]
    MissingKey,
    /// A key not followed by `=`.
    #[error("expected `=` after `{key}`")]
    MissingEquals {
        /// The key as written.
        key: String,
    },
    /// A key this syntax does not know.
    #[error(
        "unknown key `{key}` (expected {})",
        key_list!()
    )]
    UnknownKey {
        /// The key as written.
        key: String,
    },
    /// `key=` with nothing (or only `""`) after it.
    #[error("empty value for `{key}`")]
    EmptyValue {
        /// The key as written.
        key: String,
    },
    /// A quoted value without its closing `"`.
    #[error("unterminated quoted value (missing the closing `\"`)")]
    UnterminatedQuote,
    /// A `\` inside quotes followed by something other than `"` or `\`.
    #[error("invalid escape `\\{escape}` (inside quotes only `\\\"` and `\\\\` are escapes)")]
    BadEscape {
        /// The character after the backslash.
        escape: char,
    },
    /// A `"` in the middle of an unquoted value.
    #[error("`\"` inside an unquoted value (quote the whole value)")]
    UnexpectedQuote,
    /// Text after a quoted value's closing quote.
    #[error("unexpected `{found}` after a quoted value (expected `&`, `|` or a new line)")]
    UnexpectedAfterQuote {
        /// The first unexpected character.
        found: char,
    },
    /// A `sha256` or `spki-sha256` value that is not a SHA-256 fingerprint.
    #[error("{0}")]
    InvalidFingerprint(ParseFingerprintError),
    /// An `ip` value that is not an IPv4 or IPv6 address.
    #[error("not an IP address: {value:?}")]
    InvalidIpAddress {
        /// The value as written.
        value: String,
    },
    /// A `spiffe` value that is not a valid SPIFFE ID.
    #[error("{0}")]
    InvalidSpiffeId(SpiffeIdError),
    /// A `spiffe-domain` value that is not a valid SPIFFE trust domain.
    #[error(
        "not a valid SPIFFE trust domain (lowercase letters, digits, '.', '-' and '_', no path): {value:?}"
    )]
    InvalidSpiffeTrustDomain {
        /// The value as written.
        value: String,
    },
    /// A `dns` value that is not a valid DNS name or wildcard pattern.
    #[error("{0}")]
    InvalidDnsPattern(InvalidDnsPattern),
    /// An `email` value without a local part, an `@` and a domain.
    #[error("not an email address (expected local-part@domain): {value:?}")]
    InvalidEmail {
        /// The value as written.
        value: String,
    },
}
