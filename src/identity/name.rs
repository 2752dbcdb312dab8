//! Distinguished names as structured (OID, value) pairs, RFC 4514 display with escaping, and
//! the escaping every log line of certificate-derived text goes through.

use std::borrow::Cow;
use std::fmt;

use x509_parser::der_parser::asn1_rs::{Any, Tag};
use x509_parser::x509::X509Name;

use super::error::IdentityError;
use super::fingerprint::hex;

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

/// One attribute of a [`DistinguishedName`]: an OID and its value.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct NameAttribute {
    oid: String,
    value: String,
    rdn: usize,
    /// For a value that is no decodable directory string: RFC 4514's `#` form of its whole
    /// BER encoding (tag, length, contents), which is what [`Display`](fmt::Display) writes.
    /// `None` for text.
    hex_form: Option<String>,
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
    /// by the hex of its content octets. (A string value may spell the same text: the
    /// [`Display`](fmt::Display) of the name tells them apart.)
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
    /// Index of the only CN attribute; `None` with none or several. Read by every CN rule on
    /// every request, so found once here.
    common_name: Option<usize>,
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
                let any = atv.attr_value();
                let (value, hex_form) = match decode_directory_string_opt(any) {
                    Some(text) => (text, None),
                    None => (format!("#{}", hex(any.data)), Some(ber_hex(any))),
                };
                attributes.push(NameAttribute {
                    oid: oid.to_id_string(),
                    value,
                    rdn,
                    hex_form,
                });
            }
        }
        let mut cns = attributes
            .iter()
            .enumerate()
            .filter(|(_, a)| a.oid == oid::COMMON_NAME)
            .map(|(index, _)| index);
        let common_name = match (cns.next(), cns.next()) {
            (Some(only), None) => Some(only),
            _ => None,
        };
        Ok(Self {
            attributes,
            der: name.as_raw().to_vec(),
            common_name,
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
    /// common-name rules ([`Rule::subject_cn`](crate::Rule::subject_cn),
    /// [`Rule::issuer_cn`](crate::Rule::issuer_cn), `cn=` in the text form) never match
    /// it. Which of several CNs is "the" name is ambiguous, and ambiguity is spoofable: Go's
    /// `crypto/x509` takes the last CN, OpenSSL-based tools the first, so a certificate with
    /// `CN=evil` and `CN=steadybit-agent` could satisfy a rule while a handler reads the other
    /// name. Refusing to pick keeps what a policy matches and what a handler reads the same.
    /// Every CN is still listed by [`values(oid::COMMON_NAME)`](Self::values).
    pub fn common_name(&self) -> Option<&str> {
        self.common_name
            .and_then(|index| self.attributes.get(index))
            .map(|a| a.value.as_str())
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
    /// into a log line. A value that is no directory string shows as `#` and the hex of its
    /// BER encoding; a text that starts with `#` as `\#…`: no two values display alike.
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
            match &attr.hex_form {
                Some(hex_form) => f.write_str(hex_form)?,
                None => write_rfc4514_value(f, &attr.value)?,
            }
        }
        Ok(())
    }
}

/// A string value, escaped as RFC 4514 says: a text that starts with `#` gets `\#`, so that it
/// never reads like the hex form of a non-string value.
fn write_rfc4514_value(f: &mut fmt::Formatter<'_>, value: &str) -> fmt::Result {
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
pub(super) fn is_minimal_oid(content: &[u8]) -> bool {
    let mut at_start = true;
    for &b in content {
        if at_start && b == 0x80 {
            return false;
        }
        at_start = b & 0x80 == 0;
    }
    !content.is_empty() && at_start
}

/// Whether `c` must never reach a log line raw: a control character — C0 (U+0000–U+001F),
/// DEL (U+007F), C1 (U+0080–U+009F) —, a Unicode format character (general category Cf:
/// bidirectional overrides and isolates that reorder what a viewer shows, zero-width
/// characters that hide text, the byte-order mark, tag characters, …), or the line and
/// paragraph separators U+2028/U+2029 that some viewers break lines at.
pub(crate) fn is_control(c: char) -> bool {
    matches!(
        c,
        '\u{0}'..='\u{1f}'
            | '\u{7f}'..='\u{9f}'
            // Category Cf (Unicode 16), and U+2028/U+2029 (Zl, Zp).
            | '\u{ad}'
            | '\u{600}'..='\u{605}'
            | '\u{61c}'
            | '\u{6dd}'
            | '\u{70f}'
            | '\u{890}'..='\u{891}'
            | '\u{8e2}'
            | '\u{180e}'
            | '\u{200b}'..='\u{200f}'
            | '\u{2028}'..='\u{202e}'
            | '\u{2060}'..='\u{2064}'
            | '\u{2066}'..='\u{206f}'
            | '\u{feff}'
            | '\u{fff9}'..='\u{fffb}'
            | '\u{110bd}'
            | '\u{110cd}'
            | '\u{13430}'..='\u{1343f}'
            | '\u{1bca0}'..='\u{1bca3}'
            | '\u{1d173}'..='\u{1d17a}'
            | '\u{e0001}'
            | '\u{e0020}'..='\u{e007f}'
    )
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

/// RFC 4514 (section 2.4): `#` and the hex of the value's whole BER encoding — its tag and
/// length too, so that values of two types with the same contents never display alike.
fn ber_hex(any: &Any<'_>) -> String {
    let mut ber = Vec::with_capacity(any.data.len() + 8);
    match any.header.raw_tag() {
        Some(tag) => ber.extend_from_slice(tag),
        // Only for values built in code; one read from DER has its tag octets.
        None => ber.push(
            (any.class() as u8) << 6
                | u8::from(any.header.is_constructed()) << 5
                | (any.tag().0 & 0x1f) as u8,
        ),
    }
    let len = any.data.len();
    if len < 0x80 {
        ber.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().take_while(|b| **b == 0).count();
        ber.push(0x80 | (bytes.len() - skip) as u8);
        ber.extend_from_slice(&bytes[skip..]);
    }
    ber.extend_from_slice(any.data);
    format!("#{}", hex(&ber))
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
    if !data.len().is_multiple_of(2) {
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
    if !data.len().is_multiple_of(4) {
        return None;
    }
    data.chunks_exact(4)
        .map(|c| char::from_u32(u32::from_be_bytes([c[0], c[1], c[2], c[3]])))
        .collect()
}
