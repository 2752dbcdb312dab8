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
//! DER-encoded, or the certificate does not parse. The RFC 4514 [`Display`](fmt::Display) of a
//! name escapes control characters, so it is safe for a log line; the values themselves
//! ([`NameAttribute::value`], [`DistinguishedName::common_name`]) are returned as encoded, and
//! whoever logs them raw must escape them.

use std::borrow::Cow;
use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;
use std::time::{Duration, SystemTime};

use x509_parser::certificate::X509Certificate;
use x509_parser::der_parser::asn1_rs::{Any, Tag};
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::FromDer;
use x509_parser::x509::X509Name;

use crate::crypto::sha256;

/// Dotted OIDs of the name attributes this crate knows by a short name.
pub mod oid {
    /// `CN`, commonName (2.5.4.3).
    pub const COMMON_NAME: &str = "2.5.4.3";
    /// `SERIALNUMBER`, serialNumber (2.5.4.5).
    pub const SERIAL_NUMBER: &str = "2.5.4.5";
    /// `C`, countryName (2.5.4.6).
    pub const COUNTRY: &str = "2.5.4.6";
    /// `L`, localityName (2.5.4.7).
    pub const LOCALITY: &str = "2.5.4.7";
    /// `ST`, stateOrProvinceName (2.5.4.8).
    pub const STATE: &str = "2.5.4.8";
    /// `STREET`, streetAddress (2.5.4.9).
    pub const STREET: &str = "2.5.4.9";
    /// `O`, organizationName (2.5.4.10).
    pub const ORGANIZATION: &str = "2.5.4.10";
    /// `OU`, organizationalUnitName (2.5.4.11).
    pub const ORGANIZATIONAL_UNIT: &str = "2.5.4.11";
    /// `DC`, domainComponent (0.9.2342.19200300.100.1.25).
    pub const DOMAIN_COMPONENT: &str = "0.9.2342.19200300.100.1.25";
    /// `UID`, userId (0.9.2342.19200300.100.1.1).
    pub const USER_ID: &str = "0.9.2342.19200300.100.1.1";
    /// `emailAddress` (1.2.840.113549.1.9.1), deprecated in names but still common.
    pub const EMAIL_ADDRESS: &str = "1.2.840.113549.1.9.1";

    /// The RFC 4514 short name of a dotted OID, when it has one.
    pub fn short_name(oid: &str) -> Option<&'static str> {
        Some(match oid {
            COMMON_NAME => "CN",
            SERIAL_NUMBER => "SERIALNUMBER",
            COUNTRY => "C",
            LOCALITY => "L",
            STATE => "ST",
            STREET => "STREET",
            ORGANIZATION => "O",
            ORGANIZATIONAL_UNIT => "OU",
            DOMAIN_COMPONENT => "DC",
            USER_ID => "UID",
            EMAIL_ADDRESS => "emailAddress",
            _ => return None,
        })
    }
}

/// Why a certificate could not be turned into a [`ClientIdentity`].
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

/// One attribute of a [`DistinguishedName`]: an OID and its value.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct NameAttribute {
    oid: String,
    value: String,
    rdn: usize,
}

impl NameAttribute {
    /// The attribute type as a dotted OID, e.g. `"2.5.4.3"` for CN (see [`oid`]).
    pub fn oid(&self) -> &str {
        &self.oid
    }

    /// The RFC 4514 short name (`CN`, `O`, `OU`, …) when the OID has one.
    pub fn short_name(&self) -> Option<&'static str> {
        oid::short_name(&self.oid)
    }

    /// The value, decoded to text.
    ///
    /// UTF8String, PrintableString, IA5String, NumericString and VisibleString are taken as
    /// they are, BMPString and UniversalString are decoded, TeletexString is read as Latin-1.
    /// A value of any other ASN.1 type, or one that does not decode, is shown as `#` followed
    /// by the hex of its content octets (so it can never equal an ordinary string).
    pub fn value(&self) -> &str {
        &self.value
    }

    /// Index of the relative distinguished name this attribute belongs to; attributes of a
    /// multi-valued RDN (`CN=a+O=b`) share an index.
    pub fn rdn_index(&self) -> usize {
        self.rdn
    }
}

/// A subject or issuer name as structured (OID, value) pairs, in certificate order.
///
/// Matching against a name should go through [`DistinguishedName::values`] or
/// [`DistinguishedName::contains`]. The [`Display`](fmt::Display) form is RFC 4514 with proper
/// escaping, meant for logs.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DistinguishedName {
    attributes: Vec<NameAttribute>,
    der: Vec<u8>,
}

impl DistinguishedName {
    /// `which` (`"subject"` or `"issuer"`) names the name in errors.
    pub(crate) fn from_x509(
        name: &X509Name<'_>,
        which: &'static str,
    ) -> Result<Self, IdentityError> {
        let mut attributes = Vec::new();
        for (rdn, set) in name.iter().enumerate() {
            for atv in set.iter() {
                let oid = atv.attr_type();
                if !is_minimal_oid(oid.as_bytes()) {
                    return Err(IdentityError::NonMinimalOid {
                        name: which,
                        encoding: hex(oid.as_bytes()),
                    });
                }
                attributes.push(NameAttribute {
                    oid: oid.to_id_string(),
                    value: decode_directory_string(atv.attr_value()),
                    rdn,
                });
            }
        }
        Ok(Self {
            attributes,
            der: name.as_raw().to_vec(),
        })
    }

    /// All attributes, in the order the certificate lists them.
    pub fn attributes(&self) -> &[NameAttribute] {
        &self.attributes
    }

    /// The values of every attribute with the dotted OID `oid`, in certificate order.
    ///
    /// This lists every value, also of a common name that appears more than once (which
    /// [`common_name`](Self::common_name) refuses to pick from).
    pub fn values<'a>(&'a self, oid: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.attributes
            .iter()
            .filter(move |a| a.oid == oid)
            .map(|a| a.value.as_str())
    }

    /// Whether some attribute with the dotted OID `oid` has exactly the value `value`.
    ///
    /// This is the raw, any-of test. Policy rules use it for every attribute type except the
    /// common name, which they compare with [`common_name`](Self::common_name) instead, so that
    /// a name with several CNs matches no CN rule.
    pub fn contains(&self, oid: &str, value: &str) -> bool {
        self.attributes
            .iter()
            .any(|a| a.oid == oid && a.value == value)
    }

    /// The common name (`CN`), when the name has **exactly one**.
    ///
    /// A name with two or more CN attributes has no common name: this returns `None`, and
    /// common-name rules ([`Rule::subject_cn`](crate::policy::Rule::subject_cn),
    /// [`Rule::issuer_cn`](crate::policy::Rule::issuer_cn), `cn=` in the text form) never match
    /// it. Which of several CNs is "the" name is ambiguous, and ambiguity is spoofable: Go's
    /// `crypto/x509` takes the last CN, OpenSSL-based tools the first, so a certificate with
    /// `CN=evil` and `CN=steadybit-agent` could satisfy a rule while a handler reads the other
    /// name. Refusing to pick keeps what a policy matches and what a handler reads the same.
    /// Every CN is still listed by [`values(oid::COMMON_NAME)`](Self::values).
    pub fn common_name(&self) -> Option<&str> {
        let mut names = self.values(oid::COMMON_NAME);
        match (names.next(), names.next()) {
            (Some(only), None) => Some(only),
            _ => None,
        }
    }

    /// Every organization (`O`) value.
    pub fn organizations(&self) -> impl Iterator<Item = &str> {
        self.values(oid::ORGANIZATION)
    }

    /// Every organizational unit (`OU`) value.
    pub fn organizational_units(&self) -> impl Iterator<Item = &str> {
        self.values(oid::ORGANIZATIONAL_UNIT)
    }

    /// The DER encoding of the name (a `SEQUENCE` of RDNs), as it appears in the certificate.
    pub fn as_der(&self) -> &[u8] {
        &self.der
    }
}

impl fmt::Display for DistinguishedName {
    /// RFC 4514: the last RDN first, `+` between attributes of one RDN, special characters
    /// escaped, unknown OIDs in dotted form. Control characters — C0 (U+0000–U+001F), DEL
    /// (U+007F) and C1 (U+0080–U+009F) — are escaped as `\XX` hex pairs of their UTF-8 bytes
    /// (`\0a` for a new line, `\c2\85` for NEL), so a name never puts a raw control character
    /// into a log line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut last_rdn = None;
        for attr in self.attributes.iter().rev() {
            match last_rdn {
                None => {}
                Some(rdn) if rdn == attr.rdn => f.write_str("+")?,
                Some(_) => f.write_str(",")?,
            }
            last_rdn = Some(attr.rdn);
            match attr.short_name() {
                Some(short) => f.write_str(short)?,
                None => f.write_str(&attr.oid)?,
            }
            f.write_str("=")?;
            write_rfc4514_value(f, &attr.value)?;
        }
        Ok(())
    }
}

fn write_rfc4514_value(f: &mut fmt::Formatter<'_>, value: &str) -> fmt::Result {
    // A value we rendered as `#hex` is already in RFC 4514's hex form.
    if value.starts_with('#')
        && value.len() > 1
        && value[1..].bytes().all(|b| b.is_ascii_hexdigit())
    {
        return f.write_str(value);
    }
    let last = value.chars().count().saturating_sub(1);
    for (i, c) in value.chars().enumerate() {
        let escape = matches!(c, '"' | '+' | ',' | ';' | '<' | '>' | '\\')
            || (i == 0 && (c == '#' || c == ' '))
            || (i == last && c == ' ');
        if is_control(c) {
            write_hex_escape(f, c)?;
        } else {
            if escape {
                f.write_str("\\")?;
            }
            fmt::Write::write_char(f, c)?;
        }
    }
    Ok(())
}

/// Whether DER content octets of an OBJECT IDENTIFIER are minimally encoded: not empty, no
/// sub-identifier starting with the padding byte `0x80`, and the last sub-identifier complete.
fn is_minimal_oid(content: &[u8]) -> bool {
    let mut at_start = true;
    for &b in content {
        if at_start && b == 0x80 {
            return false;
        }
        at_start = b & 0x80 == 0;
    }
    !content.is_empty() && at_start
}

/// Whether `c` is a control character that must never reach a log line raw: C0
/// (U+0000–U+001F), DEL (U+007F) or C1 (U+0080–U+009F).
pub(crate) fn is_control(c: char) -> bool {
    matches!(c, '\u{0}'..='\u{1f}' | '\u{7f}'..='\u{9f}')
}

/// Writes `c` as RFC 4514 `\XX` hex pairs of its UTF-8 bytes (lowercase).
fn write_hex_escape(w: &mut impl fmt::Write, c: char) -> fmt::Result {
    let mut buf = [0u8; 4];
    for b in c.encode_utf8(&mut buf).bytes() {
        w.write_str("\\")?;
        w.write_str(&hex(&[b]))?;
    }
    Ok(())
}

/// `text` with every control character (see [`is_control`]) replaced by `\XX` hex pairs of its
/// UTF-8 bytes, as the RFC 4514 [`Display`](fmt::Display) of a [`DistinguishedName`] writes them.
/// Borrows when there is nothing to escape. For certificate-derived text on its way to a log.
pub(crate) fn escape_control(text: &str) -> Cow<'_, str> {
    if !text.chars().any(is_control) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if is_control(c) {
            // Writing into a String cannot fail.
            let _ = write_hex_escape(&mut out, c);
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// Writes `text` in double quotes with `"` and `\` backslash-escaped and control characters as
/// `\XX` hex pairs: an unambiguous, single-line rendering of certificate-derived text for logs.
pub(crate) fn write_quoted(f: &mut impl fmt::Write, text: &str) -> fmt::Result {
    f.write_char('"')?;
    for c in text.chars() {
        match c {
            '"' | '\\' => {
                f.write_char('\\')?;
                f.write_char(c)?;
            }
            c if is_control(c) => write_hex_escape(f, c)?,
            c => f.write_char(c)?,
        }
    }
    f.write_char('"')
}

fn decode_directory_string(any: &Any<'_>) -> String {
    decode_directory_string_opt(any).unwrap_or_else(|| format!("#{}", hex(any.data)))
}

/// The text of a directory-string value, `None` for other types or undecodable bytes.
pub(crate) fn decode_directory_string_opt(any: &Any<'_>) -> Option<String> {
    let data = any.data;
    match any.tag() {
        Tag::Utf8String
        | Tag::PrintableString
        | Tag::Ia5String
        | Tag::NumericString
        | Tag::VisibleString => std::str::from_utf8(data).ok().map(str::to_owned),
        Tag::TeletexString => Some(data.iter().map(|&b| char::from(b)).collect()),
        Tag::BmpString => decode_utf16be(data),
        Tag::UniversalString => decode_utf32be(data),
        _ => None,
    }
}

fn decode_utf16be(data: &[u8]) -> Option<String> {
    if data.len() % 2 != 0 {
        return None;
    }
    let units = data
        .chunks_exact(2)
        .map(|c| u16::from_be_bytes([c[0], c[1]]));
    char::decode_utf16(units)
        .collect::<Result<String, _>>()
        .ok()
}

fn decode_utf32be(data: &[u8]) -> Option<String> {
    if data.len() % 4 != 0 {
        return None;
    }
    data.chunks_exact(4)
        .map(|c| char::from_u32(u32::from_be_bytes([c[0], c[1], c[2], c[3]])))
        .collect()
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    out
}

/// A SHA-256 fingerprint: of a whole certificate, or of its SubjectPublicKeyInfo.
///
/// Displays as 64 lowercase hex digits; parses from hex in either case, with or without `:`
/// between bytes (the form `openssl x509 -fingerprint -sha256` prints).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Fingerprint([u8; 32]);

impl Fingerprint {
    /// The SHA-256 of `data`.
    pub fn of(data: &[u8]) -> Self {
        Self(sha256(data))
    }

    /// Wraps 32 raw bytes.
    pub const fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// The 32 raw bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex(&self.0))
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Fingerprint({self})")
    }
}

/// The text given to [`Fingerprint::from_str`] is not a SHA-256 fingerprint.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a SHA-256 fingerprint (expected 64 hex digits, optionally separated by ':'): {0}")]
pub struct ParseFingerprintError(String);

impl FromStr for Fingerprint {
    type Err = ParseFingerprintError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || ParseFingerprintError(s.to_owned());
        let digits: Vec<u8> = s.bytes().filter(|&b| b != b':').collect();
        // With separators, every byte must be exactly two digits.
        if s.contains(':') && s.split(':').any(|part| part.len() != 2) {
            return Err(err());
        }
        if digits.len() != 64 {
            return Err(err());
        }
        let mut out = [0u8; 32];
        for (i, pair) in digits.chunks_exact(2).enumerate() {
            let hi = hex_value(pair[0]).ok_or_else(err)?;
            let lo = hex_value(pair[1]).ok_or_else(err)?;
            out[i] = (hi << 4) | lo;
        }
        Ok(Self(out))
    }
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

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

/// The facts of the client's leaf certificate that a policy decides on.
///
/// Obtained from [`PeerCertificates::identity`](crate::PeerCertificates::identity), which parses
/// the leaf at most once per connection.
#[derive(Debug, Clone)]
pub struct ClientIdentity {
    subject: DistinguishedName,
    issuer: DistinguishedName,
    dns_names: Vec<String>,
    uris: Vec<String>,
    emails: Vec<String>,
    ip_addresses: Vec<IpAddr>,
    spiffe_id: Option<SpiffeId>,
    serial: Vec<u8>,
    not_before: SystemTime,
    not_after: SystemTime,
    sha256: Fingerprint,
    spki_sha256: Fingerprint,
}

impl ClientIdentity {
    /// Parses a DER-encoded X.509 certificate.
    ///
    /// This does not verify anything: the acceptor's verifier has done that before a
    /// certificate reaches a request.
    pub fn parse(der: &[u8]) -> Result<Self, IdentityError> {
        let (_, cert) =
            X509Certificate::from_der(der).map_err(|e| IdentityError::Malformed(e.to_string()))?;

        let mut identity = Self {
            subject: DistinguishedName::from_x509(cert.subject(), "subject")?,
            issuer: DistinguishedName::from_x509(cert.issuer(), "issuer")?,
            dns_names: Vec::new(),
            uris: Vec::new(),
            emails: Vec::new(),
            ip_addresses: Vec::new(),
            spiffe_id: None,
            serial: cert.raw_serial().to_vec(),
            not_before: system_time(cert.validity().not_before.timestamp()),
            not_after: system_time(cert.validity().not_after.timestamp()),
            sha256: Fingerprint::of(der),
            spki_sha256: Fingerprint::of(cert.public_key().raw),
        };

        let san = cert
            .subject_alternative_name()
            .map_err(|e| IdentityError::Extension {
                extension: "subjectAltName",
                reason: e.to_string(),
            })?;
        if let Some(san) = san {
            for name in &san.value.general_names {
                match name {
                    GeneralName::DNSName(n) => identity.dns_names.push((*n).to_owned()),
                    GeneralName::URI(u) => identity.uris.push((*u).to_owned()),
                    GeneralName::RFC822Name(e) => identity.emails.push((*e).to_owned()),
                    GeneralName::IPAddress(bytes) => {
                        if let Some(ip) = ip_from_bytes(bytes) {
                            identity.ip_addresses.push(ip);
                        }
                    }
                    _ => {}
                }
            }
        }
        // An X.509-SVID carries exactly one URI SAN; with several, none is "the" SPIFFE ID.
        if let [only] = identity.uris.as_slice() {
            identity.spiffe_id = SpiffeId::parse(only).ok();
        }
        Ok(identity)
    }

    /// The subject name.
    pub fn subject(&self) -> &DistinguishedName {
        &self.subject
    }

    /// The issuer name of this (leaf) certificate, which its signature binds.
    pub fn issuer(&self) -> &DistinguishedName {
        &self.issuer
    }

    /// Shortcut for `subject().common_name()`: the subject's common name when it has exactly
    /// one CN, `None` when it has none or several (see [`DistinguishedName::common_name`]).
    pub fn common_name(&self) -> Option<&str> {
        self.subject.common_name()
    }

    /// DNS names from the subjectAltName extension, as encoded.
    pub fn dns_names(&self) -> &[String] {
        &self.dns_names
    }

    /// URIs from the subjectAltName extension, as encoded.
    pub fn uris(&self) -> &[String] {
        &self.uris
    }

    /// Email addresses (rfc822Name) from the subjectAltName extension, as encoded.
    pub fn emails(&self) -> &[String] {
        &self.emails
    }

    /// IP addresses from the subjectAltName extension.
    pub fn ip_addresses(&self) -> &[IpAddr] {
        &self.ip_addresses
    }

    /// The SPIFFE ID: present only when the certificate has exactly one URI SAN and it is a
    /// valid `spiffe://` ID, as the X.509-SVID specification requires.
    pub fn spiffe_id(&self) -> Option<&SpiffeId> {
        self.spiffe_id.as_ref()
    }

    /// The serial number's big-endian bytes, as encoded.
    pub fn serial(&self) -> &[u8] {
        &self.serial
    }

    /// The serial number as lowercase hex.
    pub fn serial_hex(&self) -> String {
        hex(&self.serial)
    }

    /// Start of the validity period.
    pub fn not_before(&self) -> SystemTime {
        self.not_before
    }

    /// End of the validity period.
    pub fn not_after(&self) -> SystemTime {
        self.not_after
    }

    /// SHA-256 of the whole certificate (what `openssl x509 -fingerprint -sha256` prints).
    pub fn sha256(&self) -> Fingerprint {
        self.sha256
    }

    /// SHA-256 of the SubjectPublicKeyInfo: stays the same when a certificate is re-issued
    /// for the same key.
    pub fn spki_sha256(&self) -> Fingerprint {
        self.spki_sha256
    }
}

fn ip_from_bytes(bytes: &[u8]) -> Option<IpAddr> {
    match bytes.len() {
        4 => <[u8; 4]>::try_from(bytes).ok().map(IpAddr::from),
        16 => <[u8; 16]>::try_from(bytes).ok().map(IpAddr::from),
        _ => None,
    }
}

fn system_time(unix_seconds: i64) -> SystemTime {
    let magnitude = Duration::from_secs(unix_seconds.unsigned_abs());
    let time = if unix_seconds >= 0 {
        SystemTime::UNIX_EPOCH.checked_add(magnitude)
    } else {
        SystemTime::UNIX_EPOCH.checked_sub(magnitude)
    };
    time.unwrap_or(SystemTime::UNIX_EPOCH)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{CertificateParams, DnType, DnValue, KeyPair, SanType};

    fn cert(build: impl FnOnce(&mut CertificateParams)) -> (Vec<u8>, KeyPair) {
        let key = KeyPair::generate().expect("key");
        let mut params = CertificateParams::default();
        params.distinguished_name = rcgen::DistinguishedName::new();
        build(&mut params);
        let der = params.self_signed(&key).expect("cert").der().to_vec();
        (der, key)
    }

    #[test]
    fn names_stay_structured_when_values_hold_separators() {
        let (der, _) = cert(|p| {
            p.distinguished_name
                .push(DnType::CommonName, "agent, O=Steadybit");
            p.distinguished_name
                .push(DnType::OrganizationalUnitName, "a+b");
        });
        let id = ClientIdentity::parse(&der).expect("parse");
        assert_eq!(id.common_name(), Some("agent, O=Steadybit"));
        assert_eq!(id.subject().organizations().count(), 0);
        assert!(!id.subject().contains(oid::ORGANIZATION, "Steadybit"));
        assert_eq!(
            id.subject().organizational_units().collect::<Vec<_>>(),
            ["a+b"]
        );
        // RFC 4514: last RDN first, separators escaped.
        assert_eq!(id.subject().to_string(), "OU=a\\+b,CN=agent\\, O=Steadybit");
    }

    #[test]
    fn several_common_names_mean_no_common_name_and_all_values_are_kept() {
        let (der, _) = cert(|p| {
            p.distinguished_name.push(DnType::CountryName, "DE");
            p.distinguished_name
                .push(DnType::OrganizationName, "Steadybit");
            p.distinguished_name
                .push(DnType::CustomDnType(vec![2, 5, 4, 3]), "first");
            p.distinguished_name.push(DnType::CommonName, "second");
        });
        let id = ClientIdentity::parse(&der).expect("parse");
        let subject = id.subject();
        // Ambiguous: neither the first (OpenSSL) nor the last (Go) is "the" common name.
        assert_eq!(subject.common_name(), None);
        assert_eq!(id.common_name(), None);
        assert_eq!(
            subject.values(oid::COMMON_NAME).collect::<Vec<_>>(),
            ["first", "second"]
        );
        assert!(subject.contains(oid::COMMON_NAME, "first"));
        assert!(subject.contains(oid::COMMON_NAME, "second"));
        assert_eq!(subject.attributes()[0].short_name(), Some("C"));
        assert_eq!(subject.attributes()[0].oid(), oid::COUNTRY);
        assert_eq!(subject.attributes()[1].value(), "Steadybit");
        assert_eq!(subject.to_string(), "CN=second,CN=first,O=Steadybit,C=DE");
    }

    #[test]
    fn one_common_name_is_the_common_name_and_other_attributes_may_repeat() {
        let (der, _) = cert(|p| {
            p.distinguished_name
                .push(DnType::OrganizationalUnitName, "agents");
            p.distinguished_name
                .push(DnType::CustomDnType(vec![2, 5, 4, 11]), "platform");
            p.distinguished_name
                .push(DnType::CommonName, "steadybit-agent");
        });
        let id = ClientIdentity::parse(&der).expect("parse");
        assert_eq!(id.common_name(), Some("steadybit-agent"));
        assert_eq!(
            id.subject().organizational_units().collect::<Vec<_>>(),
            ["agents", "platform"]
        );
        // A name without any CN has none either.
        let (der, _) = cert(|p| {
            p.distinguished_name.push(DnType::OrganizationName, "x");
        });
        assert_eq!(
            ClientIdentity::parse(&der).expect("parse").common_name(),
            None
        );
    }

    /// A self-signed certificate with the custom attribute 2.5.4.99.1, whose OID (content
    /// octets `55 04 63 01`) appears twice in the DER: in the issuer name, then in the subject.
    fn with_custom_attribute() -> Vec<u8> {
        cert(|p| {
            p.distinguished_name
                .push(DnType::CommonName, "steadybit-agent");
            p.distinguished_name
                .push(DnType::CustomDnType(vec![2, 5, 4, 99, 1]), "x");
        })
        .0
    }

    const CUSTOM_OID: [u8; 6] = [0x06, 0x04, 0x55, 0x04, 0x63, 0x01];

    /// Replaces the `nth` (0: issuer, 1: subject) encoding of the custom attribute's OID with
    /// `content`, which has the same length, so no enclosing length changes.
    fn patch_oid(der: &[u8], nth: usize, content: [u8; 4]) -> Vec<u8> {
        let at: Vec<usize> = der
            .windows(CUSTOM_OID.len())
            .enumerate()
            .filter(|(_, w)| *w == CUSTOM_OID)
            .map(|(i, _)| i)
            .collect();
        assert_eq!(at.len(), 2, "the OID appears in issuer and subject");
        let mut patched = der.to_vec();
        patched[at[nth] + 2..at[nth] + 6].copy_from_slice(&content);
        patched
    }

    #[test]
    fn non_minimal_attribute_type_oids_make_the_identity_unparsable() {
        let der = with_custom_attribute();
        assert!(ClientIdentity::parse(&der).is_ok());
        for (nth, which) in [(0, "issuer"), (1, "subject")] {
            for content in [
                // 2.5.4.3 — the CN type — with the sub-identifier 4 padded as `80 04`.
                [0x55, 0x80, 0x04, 0x03],
                // 2.5.4.99 with 99 padded as `80 63`.
                [0x55, 0x04, 0x80, 0x63],
                // 2.5.4.99.x with a truncated last sub-identifier.
                [0x55, 0x04, 0x63, 0x81],
                // The first sub-identifier padded.
                [0x80, 0x55, 0x04, 0x03],
            ] {
                let patched = patch_oid(&der, nth, content);
                let err = ClientIdentity::parse(&patched).expect_err("non-minimal OID");
                assert_eq!(
                    err,
                    IdentityError::NonMinimalOid {
                        name: which,
                        encoding: hex(&content),
                    },
                    "{content:02x?}"
                );
                assert!(err.to_string().contains(which), "{err}");
            }
        }
    }

    #[test]
    fn oid_minimality() {
        for ok in [
            &[0x55, 0x04, 0x03][..],
            &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d],
            &[0x00],
        ] {
            assert!(is_minimal_oid(ok), "{ok:02x?}");
        }
        for bad in [
            &[][..],
            &[0x80, 0x01],
            &[0x55, 0x80, 0x04],
            &[0x2a, 0x80, 0x86, 0x48],
            &[0x55, 0x04, 0x83],
            &[0x81],
        ] {
            assert!(!is_minimal_oid(bad), "{bad:02x?}");
        }
    }

    #[test]
    fn display_escapes_control_characters_as_utf8_hex_pairs() {
        let (der, _) = cert(|p| {
            p.distinguished_name.push(
                DnType::CommonName,
                DnValue::Utf8String("agent\nFAKE LOG LINE\u{1b}[31m".into()),
            );
            p.distinguished_name.push(
                DnType::OrganizationName,
                DnValue::Utf8String("nul\0tab\tdel\u{7f}nel\u{85}csi\u{9b}\u{9f}\u{a0}é".into()),
            );
        });
        let id = ClientIdentity::parse(&der).expect("parse");
        // The values themselves stay as encoded.
        assert_eq!(id.common_name(), Some("agent\nFAKE LOG LINE\u{1b}[31m"));
        let shown = id.subject().to_string();
        assert_eq!(
            shown,
            // U+00A0 (no-break space) is no control character and stays as it is.
            "O=nul\\00tab\\09del\\7fnel\\c2\\85csi\\c2\\9b\\c2\\9f\u{a0}é,\
             CN=agent\\0aFAKE LOG LINE\\1b[31m"
        );
        assert!(!shown.chars().any(is_control), "{shown:?}");
    }

    #[test]
    fn escape_control_borrows_clean_text_and_escapes_every_control() {
        assert!(matches!(
            escape_control("agent.example.com"),
            Cow::Borrowed("agent.example.com")
        ));
        assert_eq!(
            escape_control("a\r\nb\u{1b}c\u{85}\\"),
            r"a\0d\0ab\1bc\c2\85\"
        );
        for c in (0u32..0x20).chain(0x7f..0xa0).filter_map(char::from_u32) {
            assert!(is_control(c), "{c:?}");
            let escaped = escape_control(&c.to_string()).into_owned();
            assert!(!escaped.chars().any(is_control), "{c:?} -> {escaped:?}");
            assert!(escaped.starts_with('\\'), "{escaped:?}");
        }
        for c in [' ', '~', '\u{a0}', 'é', '\u{2028}'] {
            assert!(!is_control(c), "{c:?}");
        }
        let mut quoted = String::new();
        write_quoted(&mut quoted, "say \"hi\"\\\n").expect("write");
        assert_eq!(quoted, r#""say \"hi\"\\\0a""#);
    }

    #[test]
    fn string_types_are_decoded() {
        let (der, _) = cert(|p| {
            p.distinguished_name.push(
                DnType::CommonName,
                DnValue::BmpString("Grüße".try_into().expect("bmp")),
            );
            p.distinguished_name.push(
                DnType::OrganizationName,
                DnValue::UniversalString("Ünïcode".try_into().expect("universal")),
            );
            p.distinguished_name.push(
                DnType::OrganizationalUnitName,
                DnValue::PrintableString("Printable".try_into().expect("printable")),
            );
        });
        let id = ClientIdentity::parse(&der).expect("parse");
        assert_eq!(id.common_name(), Some("Grüße"));
        assert_eq!(
            id.subject().organizations().collect::<Vec<_>>(),
            ["Ünïcode"]
        );
        assert_eq!(
            id.subject().organizational_units().collect::<Vec<_>>(),
            ["Printable"]
        );
    }

    #[test]
    fn sans_serial_validity_and_fingerprints() {
        let (der, key) = cert(|p| {
            p.distinguished_name.push(DnType::CommonName, "agent");
            p.subject_alt_names = vec![
                SanType::DnsName("agent.steadybit.svc".try_into().expect("dns")),
                SanType::URI(
                    "spiffe://prod.example.org/ns/steadybit/sa/agent"
                        .try_into()
                        .expect("uri"),
                ),
                SanType::Rfc822Name("ops@example.org".try_into().expect("email")),
                SanType::IpAddress("10.0.0.7".parse().expect("ip")),
                SanType::IpAddress("fd00::7".parse().expect("ip")),
            ];
            p.serial_number = Some(rcgen::SerialNumber::from(0x0102_0304u64));
            p.not_before = rcgen::date_time_ymd(2024, 1, 1);
            p.not_after = rcgen::date_time_ymd(2030, 1, 1);
        });
        let id = ClientIdentity::parse(&der).expect("parse");
        assert_eq!(id.dns_names(), ["agent.steadybit.svc"]);
        assert_eq!(id.emails(), ["ops@example.org"]);
        assert_eq!(
            id.ip_addresses(),
            [
                "10.0.0.7".parse::<IpAddr>().expect("ip"),
                "fd00::7".parse().expect("ip")
            ]
        );
        let spiffe = id.spiffe_id().expect("spiffe id");
        assert_eq!(spiffe.trust_domain(), "prod.example.org");
        assert_eq!(spiffe.path(), "/ns/steadybit/sa/agent");
        assert_eq!(id.serial_hex(), "01020304");
        assert_eq!(
            id.not_before(),
            SystemTime::UNIX_EPOCH + Duration::from_secs(1_704_067_200)
        );
        assert!(id.not_after() > id.not_before());
        assert_eq!(id.sha256(), Fingerprint::of(&der));

        // Same key, new certificate: the SPKI pin survives, the certificate pin does not.
        let mut params = CertificateParams::default();
        params
            .distinguished_name
            .push(DnType::CommonName, "agent renewed");
        let renewed = params.self_signed(&key).expect("renew").der().to_vec();
        let renewed = ClientIdentity::parse(&renewed).expect("parse");
        assert_eq!(renewed.spki_sha256(), id.spki_sha256());
        assert_ne!(renewed.sha256(), id.sha256());
    }

    #[test]
    fn spiffe_id_needs_exactly_one_uri_san() {
        let (der, _) = cert(|p| {
            p.subject_alt_names = vec![
                SanType::URI("spiffe://example.org/a".try_into().expect("uri")),
                SanType::URI("https://example.org/".try_into().expect("uri")),
            ];
        });
        let id = ClientIdentity::parse(&der).expect("parse");
        assert_eq!(id.uris().len(), 2);
        assert!(id.spiffe_id().is_none());

        let (der, _) = cert(|p| {
            p.subject_alt_names = vec![SanType::URI(
                "spiffe://Example.org/a".try_into().expect("uri"),
            )];
        });
        assert!(
            ClientIdentity::parse(&der)
                .expect("parse")
                .spiffe_id()
                .is_none()
        );
    }

    #[test]
    fn spiffe_id_validation() {
        for ok in [
            "spiffe://example.org",
            "spiffe://example.org/",
            "spiffe://a-b_c.d/e/F.g-h_i",
        ] {
            // A lone trailing slash is an empty segment.
            assert_eq!(SpiffeId::parse(ok).is_ok(), !ok.ends_with('/'), "{ok}");
        }
        for bad in [
            "https://example.org/a",
            "spiffe://",
            "spiffe:///path",
            "spiffe://Example.org/a",
            "spiffe://example.org:8080/a",
            "spiffe://user@example.org/a",
            "spiffe://example.org//a",
            "spiffe://example.org/./a",
            "spiffe://example.org/../a",
            "spiffe://example.org/a?x=1",
            "spiffe://example.org/a#frag",
            "spiffe://example.org/a%20b",
        ] {
            assert!(SpiffeId::parse(bad).is_err(), "{bad}");
        }
        let long = format!("spiffe://example.org/{}", "a".repeat(2048));
        assert!(SpiffeId::parse(&long).is_err());
    }

    #[test]
    fn fingerprints_parse_in_the_usual_forms() {
        let fp = Fingerprint::of(b"abc");
        let hex = fp.to_string();
        assert_eq!(hex.len(), 64);
        assert_eq!(hex.parse::<Fingerprint>(), Ok(fp));
        assert_eq!(hex.to_uppercase().parse::<Fingerprint>(), Ok(fp));
        let colons: Vec<String> = fp.as_bytes().iter().map(|b| format!("{b:02X}")).collect();
        assert_eq!(colons.join(":").parse::<Fingerprint>(), Ok(fp));
        assert!("abcd".parse::<Fingerprint>().is_err());
        assert!(format!("{}zz", &hex[..62]).parse::<Fingerprint>().is_err());
        assert!(
            format!("{}:", colons.join(":"))
                .parse::<Fingerprint>()
                .is_err()
        );
        assert!(format!("a:{}", &hex[1..]).parse::<Fingerprint>().is_err());
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(ClientIdentity::parse(b"").is_err());
        assert!(ClientIdentity::parse(&[0x30, 0x03, 0x02, 0x01]).is_err());
    }
}
