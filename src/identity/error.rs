//! Why a certificate could not be read as an identity.

/// Why a certificate could not be turned into a [`ClientIdentity`](crate::ClientIdentity).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum IdentityError {
    /// The bytes are not a DER-encoded X.509 certificate.
    #[error("the client certificate is not valid X.509: {0}")]
    Malformed(String),
    /// A recognised extension could not be decoded.
    #[error("the client certificate has a malformed {extension} extension: {reason}")]
    Extension {
        /// Which extension.
        extension: &'static str,
        /// The decoder's complaint.
        reason: String,
    },
    /// An attribute type in the subject or issuer name is an OID that is not minimally
    /// DER-encoded (a sub-identifier padded with a leading `0x80` byte, a truncated last
    /// sub-identifier, or no content at all).
    ///
    /// Such an OID decodes to the same dotted form as its minimal encoding, so accepting it
    /// would let one certificate carry a name that other tools read differently (OpenSSL
    /// refuses such names); the certificate is refused instead.
    #[error(
        "the client certificate's {name} name has an attribute type OID that is not minimally DER-encoded (content octets {encoding})"
    )]
    NonMinimalOid {
        /// `"subject"` or `"issuer"`.
        name: &'static str,
        /// The OID's content octets, in hex.
        encoding: String,
    },
}
