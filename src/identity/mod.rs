//! The client's leaf certificate, parsed into the facts a policy decides on.
//!
//! [`ClientIdentity`] is built from the leaf's DER bytes by [`ClientIdentity::parse`]. The
//! acceptor never parses it eagerly: [`PeerCertificates::identity`](crate::PeerCertificates::identity)
//! parses it the first time someone asks and caches the result for the rest of the connection.
//!
//! Names are kept **structured**: a [`DistinguishedName`] is a list of (OID, value) pairs, so a
//! common name that contains `, O=Steadybit` stays one common name. Compare attributes, never
//! formatted strings.
//!
//! **One identity.** A name with more than one common name has none
//! ([`DistinguishedName::common_name`] is `None`), and common-name rules never match it: what a
//! policy matches is always what a handler reads. Attribute type OIDs must be minimally
//! DER-encoded, or the certificate does not parse. The RFC 4514 [`Display`](std::fmt::Display) of a
//! name escapes control characters, so it is safe for a log line; the values themselves
//! ([`NameAttribute::value`], [`DistinguishedName::common_name`]) are returned as encoded, and
//! whoever logs them raw must escape them.

pub(crate) mod certificate;
mod error;
mod fingerprint;
mod name;
mod spiffe;
#[cfg(test)]
mod tests;

pub use certificate::{CertificateSummary, ClientIdentity};
pub use error::IdentityError;
pub use fingerprint::{Fingerprint, ParseFingerprintError};
pub use name::{DistinguishedName, NameAttribute, oid};
pub use spiffe::{SpiffeId, SpiffeIdError};

pub(crate) use name::{decode_directory_string_opt, escape_control, write_quoted};
