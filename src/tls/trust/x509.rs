//! The pieces of X.509 the verifier reads itself, where rustls-webpki keeps them private:
//! DER elements, signatures checked with the provider's algorithms, times, serial numbers,
//! and names compared the way RFC 5280 says.

use rustls::crypto::WebPkiSupportedAlgorithms;
use time::{Date, Month, OffsetDateTime, Time};
use x509_parser::der_parser::asn1_rs::{Any, Tag};
use x509_parser::prelude::FromDer;
use x509_parser::x509::X509Name;

/// A distinguished name in the form RFC 5280 (section 7.1) compares: each RDN a sorted set of
/// (attribute type OID, value); directory-string values decoded, case-folded and with
/// whitespace trimmed and collapsed, whatever their ASN.1 string type; other values as their
/// tag and bytes.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct NameKey(Vec<Vec<(Vec<u8>, NameValue)>>);

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum NameValue {
    Text(String),
    Raw(u32, Vec<u8>),
}

impl NameKey {
    pub(crate) fn of(name: &X509Name<'_>) -> Self {
        Self(
            name.iter()
                .map(|rdn| {
                    let mut set: Vec<_> = rdn
                        .iter()
                        .map(|atv| {
                            (
                                atv.attr_type().as_bytes().to_vec(),
                                NameValue::of(atv.attr_value()),
                            )
                        })
                        .collect();
                    set.sort();
                    set
                })
                .collect(),
        )
    }

    /// From the contents of a Name's outer SEQUENCE (what rustls-webpki hands out).
    pub(crate) fn from_contents(contents: &[u8]) -> Option<Self> {
        // x509-parser reads a damaged RDN list as a shorter one; check the structure first.
        let mut rest = contents;
        let mut rdns = 0;
        while !rest.is_empty() {
            let (0x31, mut set, _, next) = tlv(rest)? else {
                return None;
            };
            while !set.is_empty() {
                let (0x30, _, _, more) = tlv(set)? else {
                    return None;
                };
                set = more;
            }
            rdns += 1;
            rest = next;
        }
        let mut der = Vec::with_capacity(contents.len() + 6);
        der.push(0x30);
        push_length(&mut der, contents.len());
        der.extend_from_slice(contents);
        match X509Name::from_der(&der) {
            Ok((rest, name)) if rest.is_empty() && name.iter().count() == rdns => {
                Some(Self::of(&name))
            }
            _ => None,
        }
    }
}

impl NameValue {
    fn of(any: &Any<'_>) -> Self {
        let text = match any.tag() {
            Tag::Utf8String
            | Tag::PrintableString
            | Tag::Ia5String
            | Tag::NumericString
            | Tag::VisibleString
            | Tag::TeletexString
            | Tag::BmpString
            | Tag::UniversalString => crate::identity::decode_directory_string_opt(any),
            _ => None,
        };
        match text {
            Some(text) => Self::Text(fold(&text)),
            None => Self::Raw(any.tag().0, any.data.to_vec()),
        }
    }
}

/// RFC 4518's essentials: case folded, whitespace trimmed and runs of it collapsed to one
/// space. (Unicode normalisation forms are not applied.)
fn fold(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for word in text.split(char::is_whitespace).filter(|w| !w.is_empty()) {
        if !out.is_empty() {
            out.push(' ');
        }
        out.extend(word.chars().flat_map(char::to_lowercase));
    }
    out
}

fn push_length(out: &mut Vec<u8>, len: usize) {
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().take_while(|b| **b == 0).count();
        out.push(0x80 | (bytes.len() - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
}

/// A DER element: tag, contents, the whole element, and the input after it.
pub(crate) type Tlv<'a> = (u8, &'a [u8], &'a [u8], &'a [u8]);

/// One DER element at the start of `input`: its tag, its contents, the whole element and what
/// follows it. Single-byte tags and lengths up to 4 bytes, which is all X.509 needs here.
pub(crate) fn tlv(input: &[u8]) -> Option<Tlv<'_>> {
    let (&tag, rest) = input.split_first()?;
    if tag & 0x1f == 0x1f {
        return None;
    }
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n]
            .iter()
            .fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
        (len, &rest[n..])
    };
    if rest.len() < len {
        return None;
    }
    let header = input.len() - rest.len();
    Some((tag, &rest[..len], &input[..header + len], &rest[len..]))
}

/// A certificate's notAfter, in Unix seconds, read straight from its DER (no full parse: this
/// runs on every handshake).
pub(crate) fn cert_not_after(der: &[u8]) -> Option<i64> {
    let (0x30, body, _, _) = tlv(der)? else {
        return None;
    };
    let (0x30, tbs, _, _) = tlv(body)? else {
        return None;
    };
    let mut rest = tbs;
    // [0] version (optional), serialNumber, signature, issuer, then validity.
    if rest.first() == Some(&0xa0) {
        rest = tlv(rest)?.3;
    }
    for _ in 0..3 {
        rest = tlv(rest)?.3;
    }
    let (0x30, validity, _, _) = tlv(rest)? else {
        return None;
    };
    let not_after = tlv(tlv(validity)?.3)?;
    der_time(not_after.0, not_after.1)
}

/// UTCTime (`YYMMDDHHMMSSZ`, years 1950–2049) or GeneralizedTime (`YYYYMMDDHHMMSSZ`) → Unix
/// seconds. Seconds are required, fractions and offsets refused (RFC 5280, 4.1.2.5), and so is
/// a date the calendar does not have.
fn der_time(tag: u8, text: &[u8]) -> Option<i64> {
    let digits = |s: &[u8]| -> Option<u16> {
        s.iter().try_fold(0u16, |acc, b| {
            b.is_ascii_digit().then(|| acc * 10 + u16::from(b - b'0'))
        })
    };
    let (year, rest) = match (tag, text.len()) {
        (0x17, 13) => {
            let yy = digits(&text[..2])?;
            (if yy >= 50 { 1900 + yy } else { 2000 + yy }, &text[2..])
        }
        (0x18, 15) => (digits(&text[..4])?, &text[4..]),
        _ => return None,
    };
    if rest.last() != Some(&b'Z') {
        return None;
    }
    let field = |i: usize| digits(&rest[i..i + 2]).and_then(|v| u8::try_from(v).ok());
    let month = Month::try_from(field(0)?).ok()?;
    let date = Date::from_calendar_date(i32::from(year), month, field(2)?).ok()?;
    let time = Time::from_hms(field(4)?, field(6)?, 0).ok()?;
    // A leap second (`60`) counts as the next minute's first, as POSIX time has no other.
    let second = field(8)?;
    if second > 60 {
        return None;
    }
    Some(date.with_time(time).assume_utc().unix_timestamp() + i64::from(second))
}

/// Unix seconds as an RFC 3339 UTC timestamp, for logs (beyond the years 0000–9999 (which no
/// certificate or CRL time leaves), the seconds themselves).
pub(crate) fn utc(secs: i64) -> String {
    match OffsetDateTime::from_unix_timestamp(secs) {
        Ok(t) => format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute(),
            t.second()
        ),
        Err(_) => format!("{secs}s after 1970-01-01T00:00:00Z"),
    }
}

/// The three parts of a signed X.509 structure (certificate or CRL).
#[derive(Debug, Clone)]
pub(crate) struct Signed {
    tbs: Vec<u8>,
    algorithm: Vec<u8>,
    signature: Vec<u8>,
}

impl Signed {
    pub(crate) fn parse(der: &[u8]) -> Option<Self> {
        let Some((0x30, body, _, [])) = tlv(der) else {
            return None;
        };
        let Some((0x30, _, tbs, rest)) = tlv(body) else {
            return None;
        };
        let Some((0x30, algorithm, _, rest)) = tlv(rest) else {
            return None;
        };
        let Some((0x03, bits, _, [])) = tlv(rest) else {
            return None;
        };
        let (&0, signature) = bits.split_first()? else {
            return None;
        };
        Some(Self {
            tbs: tbs.to_vec(),
            algorithm: algorithm.to_vec(),
            signature: signature.to_vec(),
        })
    }

    /// Whether the key of `spki` (a whole SubjectPublicKeyInfo) made this signature, with one
    /// of the provider's algorithms.
    pub(crate) fn verified_by(&self, spki: &[u8], algorithms: &WebPkiSupportedAlgorithms) -> bool {
        let Some((0x30, body, _, [])) = tlv(spki) else {
            return false;
        };
        let Some((0x30, key_algorithm, _, rest)) = tlv(body) else {
            return false;
        };
        let Some((0x03, bits, _, [])) = tlv(rest) else {
            return false;
        };
        let Some((&0, key)) = bits.split_first() else {
            return false;
        };
        algorithms.all.iter().any(|alg| {
            alg.public_key_alg_id().as_ref() == key_algorithm
                && alg.signature_alg_id().as_ref() == self.algorithm.as_slice()
                && alg
                    .verify_signature(key, &self.tbs, &self.signature)
                    .is_ok()
        })
    }
}

/// A serial number's bytes without redundant leading zero octets, so that encodings that
/// differ only there compare equal.
pub(crate) fn serial_key(raw: &[u8]) -> &[u8] {
    let zeros = raw.iter().take_while(|b| **b == 0).count();
    &raw[zeros.min(raw.len().saturating_sub(1))..]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(der: &[u8]) -> NameKey {
        let (_, name) = X509Name::from_der(der).expect("name");
        NameKey::of(&name)
    }

    /// `SEQUENCE { SET { SEQUENCE { OID 2.5.4.3, <tag> value } } }`.
    fn cn(tag: u8, value: &[u8]) -> Vec<u8> {
        let mut atv = vec![0x06, 0x03, 0x55, 0x04, 0x03, tag, value.len() as u8];
        atv.extend_from_slice(value);
        let mut seq = vec![0x30, atv.len() as u8];
        seq.extend(atv);
        let mut set = vec![0x31, seq.len() as u8];
        set.extend(seq);
        let mut name = vec![0x30, set.len() as u8];
        name.extend(set);
        name
    }

    #[test]
    fn names_compare_by_rfc5280_rules() {
        let printable = key(&cn(0x13, b"Test  CA"));
        assert_eq!(printable, key(&cn(0x0c, b"test ca")));
        assert_eq!(printable, key(&cn(0x0c, b" TEST CA ")));
        assert_ne!(printable, key(&cn(0x0c, b"test-ca")));
        // BMPString "Test CA".
        let bmp: Vec<u8> = "Test CA"
            .encode_utf16()
            .flat_map(u16::to_be_bytes)
            .collect();
        assert_eq!(printable, key(&cn(0x1e, &bmp)));
        // A value of a non-string type is compared by tag and bytes.
        assert_ne!(printable, key(&cn(0x04, b"Test CA")));
    }

    #[test]
    fn names_from_webpki_contents_match_whole_names() {
        let whole = cn(0x13, b"Root");
        assert_eq!(NameKey::from_contents(&whole[2..]), Some(key(&whole)));
        assert_eq!(NameKey::from_contents(&[0x31, 0x05]), None);
    }

    #[test]
    fn tlv_reads_long_lengths_and_refuses_truncation() {
        let mut long = vec![0x04, 0x82, 0x01, 0x00];
        long.extend(std::iter::repeat_n(7u8, 256));
        long.push(0xaa);
        let (tag, contents, whole, rest) = tlv(&long).expect("tlv");
        assert_eq!(
            (tag, contents.len(), whole.len(), rest),
            (0x04, 256, 260, &[0xaa][..])
        );
        assert!(tlv(&long[..100]).is_none());
        assert!(tlv(&[0x1f, 0x01, 0x00]).is_none());
        assert!(Signed::parse(&[0x30, 0x00]).is_none());
    }

    #[test]
    fn serials_ignore_redundant_leading_zeros() {
        assert_eq!(serial_key(&[0, 0x80]), &[0x80]);
        assert_eq!(serial_key(&[0]), &[0]);
        assert_eq!(serial_key(&[0, 0, 1]), &[1]);
    }

    #[test]
    fn times_convert_both_ways() {
        assert_eq!(der_time(0x17, b"700101000000Z"), Some(0));
        assert_eq!(der_time(0x18, b"20900101000000Z"), Some(3_786_912_000));
        assert_eq!(der_time(0x17, b"491231235959Z"), Some(2_524_607_999));
        assert_eq!(der_time(0x17, b"701301000000Z"), None);
        assert_eq!(der_time(0x18, b"2090010100000Z"), None);
        assert_eq!(utc(3_786_912_000), "2090-01-01T00:00:00Z");
        assert_eq!(utc(1_700_000_000), "2023-11-14T22:13:20Z");
    }

    #[test]
    fn utc_time_years_run_from_1950_to_2049() {
        assert_eq!(der_time(0x17, b"500101000000Z"), Some(-631_152_000));
        assert_eq!(utc(-631_152_000), "1950-01-01T00:00:00Z");
        assert_eq!(der_time(0x17, b"991231235959Z"), Some(946_684_799));
        assert_eq!(der_time(0x17, b"000101000000Z"), Some(946_684_800));
        assert_eq!(utc(2_524_607_999), "2049-12-31T23:59:59Z");
        // 2050 on is GeneralizedTime's.
        assert_eq!(der_time(0x18, b"20500101000000Z"), Some(2_524_608_000));
        assert_eq!(utc(2_524_608_000), "2050-01-01T00:00:00Z");
        assert_eq!(der_time(0x18, b"19500101000000Z"), Some(-631_152_000));
        assert_eq!(der_time(0x18, b"20491231235959Z"), Some(2_524_607_999));
    }

    #[test]
    fn generalized_time_reaches_9999_12_31() {
        // RFC 5280's "no well-defined expiration date".
        assert_eq!(der_time(0x18, b"99991231235959Z"), Some(253_402_300_799));
        assert_eq!(utc(253_402_300_799), "9999-12-31T23:59:59Z");
        assert_eq!(der_time(0x18, b"00000101000000Z"), Some(-62_167_219_200));
        assert_eq!(utc(-62_167_219_200), "0000-01-01T00:00:00Z");
        // Past the four-digit years: still a readable line.
        assert_eq!(
            utc(253_402_300_800),
            "253402300800s after 1970-01-01T00:00:00Z"
        );
        assert_eq!(
            utc(i64::MIN),
            format!("{}s after 1970-01-01T00:00:00Z", i64::MIN)
        );
    }

    #[test]
    fn leap_days_follow_the_gregorian_calendar() {
        assert_eq!(der_time(0x17, b"240229120000Z"), Some(1_709_208_000));
        assert_eq!(utc(1_709_208_000), "2024-02-29T12:00:00Z");
        assert_eq!(der_time(0x18, b"20000229000000Z"), Some(951_782_400));
        assert_eq!(utc(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(der_time(0x17, b"230229000000Z"), None);
        assert_eq!(der_time(0x18, b"21000229000000Z"), None);
        assert_eq!(der_time(0x17, b"230431000000Z"), None);
        assert_eq!(der_time(0x17, b"230100000000Z"), None);
        assert_eq!(der_time(0x17, b"230001000000Z"), None);
    }

    #[test]
    fn malformed_times_are_refused() {
        for (tag, text) in [
            // Seconds absent.
            (0x17, &b"7001010000Z"[..]),
            (0x18, b"209001010000Z"),
            // Fractional seconds.
            (0x18, b"20900101000000.5Z"),
            (0x17, b"700101000000.5Z"),
            // An offset instead of Z, or no zone.
            (0x17, b"700101000000+0000"),
            (0x18, b"20900101000000+0100"),
            (0x18, b"209001010000000"),
            // Not digits, or a field out of range.
            (0x17, b"7a0101000000Z"),
            (0x17, b"70010100000-Z"),
            (0x17, b"700101240000Z"),
            (0x17, b"700101006000Z"),
            (0x17, b"700101000061Z"),
            // The wrong tag for the length, or another tag.
            (0x17, b"20900101000000Z"),
            (0x18, b"700101000000Z"),
            (0x04, b"700101000000Z"),
            (0x17, b""),
        ] {
            assert_eq!(
                der_time(tag, text),
                None,
                "{}",
                String::from_utf8_lossy(text)
            );
        }
        // A leap second is the next minute's first, as before.
        assert_eq!(der_time(0x17, b"491231235960Z"), Some(2_524_608_000));
    }

    #[test]
    fn folding_collapses_whitespace_and_case() {
        assert_eq!(fold("  A\tB \n c  "), "a b c");
        assert_eq!(fold("ÄÖ"), "äö");
    }
}
