//! Certificate revocation lists, indexed so that no order of files, sources or PEM blocks can
//! change a verdict.
//!
//! rustls-webpki consults the **first** CRL whose issuer name matches a certificate's issuer,
//! byte for byte. An older CRL read first then hides a newer one's revocations, a CRL that
//! spells its issuer with another string type is silently skipped, and the CRL of a same-named
//! CA signed by another key fails every client of the other CA. This module does the selection
//! itself:
//!
//! * an issuer is its **name**, compared by RFC 5280's rules ([`NameKey`]: attribute types by
//!   OID, string values case-folded and whitespace-folded whatever their ASN.1 string type,
//!   each RDN as a set), **and the key that verifies the CRL**;
//! * every CRL is checked at load: parsed by rustls-webpki's strict profile (no delta CRLs, no
//!   unknown critical extensions), its signature verified against the configured CAs of that
//!   name, and bound to the one whose key verifies it;
//! * of the CRLs bound to one issuer, the one with the highest CRLNumber (then the latest
//!   thisUpdate) is authoritative; CRLs that tie on both are merged (union of revocations).
//!
//! A CRL whose issuer is no configured CA may belong to an intermediate CA that clients
//! present; it is kept aside and applied to such an intermediate only after its signature
//! verifies against that intermediate's key.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use rustls::crypto::WebPkiSupportedAlgorithms;
use x509_parser::der_parser::asn1_rs::{Any, Tag};
use x509_parser::extensions::ParsedExtension;
use x509_parser::prelude::FromDer;
use x509_parser::revocation_list::CertificateRevocationList;
use x509_parser::x509::X509Name;

use super::error::ConfigError;
use crate::identity::DistinguishedName;

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
type Tlv<'a> = (u8, &'a [u8], &'a [u8], &'a [u8]);

/// One DER element at the start of `input`: its tag, its contents, the whole element and what
/// follows it. Single-byte tags and lengths up to 4 bytes, which is all X.509 needs here.
fn tlv(input: &[u8]) -> Option<Tlv<'_>> {
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

/// UTCTime (`YYMMDDHHMMSSZ`) or GeneralizedTime (`YYYYMMDDHHMMSSZ`) → Unix seconds.
fn der_time(tag: u8, text: &[u8]) -> Option<i64> {
    let digits = |s: &[u8]| -> Option<i64> {
        s.iter().try_fold(0i64, |acc, b| {
            b.is_ascii_digit().then(|| acc * 10 + i64::from(b - b'0'))
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
    let field = |i: usize| digits(&rest[i..i + 2]);
    let (month, day) = (field(0)?, field(2)?);
    let (hour, minute, second) = (field(4)?, field(6)?, field(8)?);
    if !(1..=12).contains(&month)
        || !(1..=31).contains(&day)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    Some(days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Unix seconds as an RFC 3339 UTC timestamp, for logs.
pub(crate) fn utc(secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Inverse of days_from_civil.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
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

/// One parsed, profile-checked CRL.
#[derive(Debug)]
pub(crate) struct Crl {
    pub(crate) path: PathBuf,
    pub(crate) issuer: NameKey,
    /// The issuer, RFC 4514, for logs.
    pub(crate) issuer_display: String,
    /// CRLNumber, big-endian without leading zeros; `None` when absent.
    number: Option<Vec<u8>>,
    pub(crate) this_update: i64,
    pub(crate) next_update: Option<i64>,
    revoked: HashSet<Vec<u8>>,
    /// The authorityKeyIdentifier's keyIdentifier, when present.
    pub(crate) authority_key_id: Option<Vec<u8>>,
    signed: Signed,
}

impl Crl {
    /// Parses a CRL read from `path`. Everything rustls-webpki would refuse is refused here,
    /// naming the file, and so is a CRL that covers only part of its issuer's certificates.
    pub(crate) fn parse(path: &Path, der: &[u8]) -> Result<Self, ConfigError> {
        let invalid = |reason: String| ConfigError::InvalidCrl {
            path: path.to_owned(),
            reason,
        };
        webpki::OwnedCertRevocationList::from_der(der)
            .map_err(|e| invalid(format!("not a CRL rustls can use: {e}")))?;
        let (rest, crl) =
            CertificateRevocationList::from_der(der).map_err(|e| invalid(e.to_string()))?;
        if !rest.is_empty() {
            return Err(invalid("trailing data after the CRL".into()));
        }
        let signed =
            Signed::parse(der).ok_or_else(|| invalid("not a signed CRL structure".into()))?;
        let mut authority_key_id = None;
        for ext in crl.extensions() {
            match ext.parsed_extension() {
                ParsedExtension::IssuingDistributionPoint(idp)
                    if idp.only_contains_user_certs
                        || idp.only_contains_ca_certs
                        || idp.only_contains_attribute_certs
                        || idp.only_some_reasons.is_some()
                        || idp.indirect_crl =>
                {
                    return Err(invalid(
                        "a partitioned CRL (its issuingDistributionPoint limits its scope) \
                         cannot prove a certificate unrevoked; configure the issuer's full CRL"
                            .into(),
                    ));
                }
                ParsedExtension::AuthorityKeyIdentifier(aki) => {
                    authority_key_id = aki.key_identifier.as_ref().map(|k| k.0.to_vec());
                }
                ParsedExtension::ParseError { error } => {
                    return Err(invalid(format!(
                        "extension {} does not decode: {error}",
                        ext.oid
                    )));
                }
                _ => {}
            }
        }
        let number = crl.crl_number().map(|n| {
            let bytes = n.to_bytes_be();
            serial_key(&bytes).to_vec()
        });
        let revoked = crl
            .iter_revoked_certificates()
            .map(|entry| serial_key(entry.raw_serial()).to_vec())
            .collect();
        Ok(Self {
            path: path.to_owned(),
            issuer: NameKey::of(crl.issuer()),
            issuer_display: DistinguishedName::from_x509(crl.issuer(), "issuer")
                .map_err(|e| invalid(e.to_string()))?
                .to_string(),
            number,
            this_update: crl.last_update().timestamp(),
            next_update: crl.next_update().map(|t| t.timestamp()),
            revoked,
            authority_key_id,
            signed,
        })
    }

    pub(crate) fn verified_by(&self, spki: &[u8], algorithms: &WebPkiSupportedAlgorithms) -> bool {
        self.signed.verified_by(spki, algorithms)
    }

    /// What orders CRLs of one issuer: CRLNumber (absent lowest, compared as an unsigned
    /// integer), then thisUpdate.
    fn rank(&self) -> (usize, &[u8], i64) {
        let number = self.number.as_deref().unwrap_or(&[]);
        (
            usize::from(self.number.is_some()) + number.len(),
            number,
            self.this_update,
        )
    }

    /// The CRL number for messages.
    pub(crate) fn number_display(&self) -> String {
        match &self.number {
            None => "none".into(),
            Some(n) => format!(
                "0x{}",
                n.iter().map(|b| format!("{b:02x}")).collect::<String>()
            ),
        }
    }
}

/// The revocation information that speaks for one issuer: its authoritative CRL (or the
/// merge of CRLs that tie for it).
#[derive(Debug)]
pub(crate) struct Authority {
    revoked: HashSet<Vec<u8>>,
    pub(crate) next_update: Option<i64>,
    /// The files of the authoritative CRL(s), sorted.
    pub(crate) files: Vec<PathBuf>,
    pub(crate) issuer: String,
    pub(crate) number: String,
}

impl Authority {
    /// The authoritative information among `crls` (all of one issuer); `None` when empty.
    /// The result depends only on the set of CRLs, never on their order.
    pub(crate) fn select(crls: &[&Crl]) -> Option<Arc<Self>> {
        let best = crls.iter().map(|c| c.rank()).max()?;
        let winners: Vec<&Crl> = crls.iter().copied().filter(|c| c.rank() == best).collect();
        let mut files: Vec<PathBuf> = winners.iter().map(|c| c.path.clone()).collect();
        files.sort();
        files.dedup();
        let mut issuers: Vec<&str> = winners.iter().map(|c| c.issuer_display.as_str()).collect();
        issuers.sort_unstable();
        Some(Arc::new(Self {
            revoked: winners
                .iter()
                .flat_map(|c| c.revoked.iter().cloned())
                .collect(),
            next_update: winners.iter().filter_map(|c| c.next_update).min(),
            files,
            issuer: issuers
                .first()
                .map_or_else(String::new, |s| (*s).to_owned()),
            number: winners
                .first()
                .map_or_else(|| "none".into(), |c| c.number_display()),
        }))
    }

    pub(crate) fn files_display(&self) -> String {
        self.files
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Judges one certificate (by its serial) at `now` (Unix seconds). With fresh CRLs
    /// required, a stale CRL refuses every certificate of its issuer, listed or not (as
    /// rustls-webpki checks expiry first).
    pub(crate) fn check(
        &self,
        serial: &[u8],
        now: u64,
        require_fresh: bool,
    ) -> Result<(), Revoked> {
        if require_fresh {
            if let Some(next) = self.next_update {
                let now = i64::try_from(now).unwrap_or(i64::MAX);
                if now >= next {
                    return Err(Revoked::Stale {
                        next_update: u64::try_from(next).unwrap_or(0),
                        reason: format!(
                            "the CRL of issuer {} in {} is stale (nextUpdate passed {} s ago) and \
                             fresh CRLs are required",
                            self.issuer,
                            self.files_display(),
                            now - next
                        ),
                    });
                }
            }
        }
        if self.revoked.contains(serial_key(serial)) {
            return Err(Revoked::Listed {
                reason: format!(
                    "revoked by the CRL in {} (issuer {}, CRL number {})",
                    self.files_display(),
                    self.issuer,
                    self.number
                ),
            });
        }
        Ok(())
    }
}

/// Why revocation checking refused a certificate.
#[derive(Debug, Clone)]
pub(crate) enum Revoked {
    /// The authoritative CRL lists it.
    Listed { reason: String },
    /// The authoritative CRL is past its nextUpdate and fresh CRLs are required.
    Stale { next_update: u64, reason: String },
}

impl Revoked {
    pub(crate) fn reason(&self) -> &str {
        match self {
            Self::Listed { reason } | Self::Stale { reason, .. } => reason,
        }
    }
}

/// CRLs whose issuer is no configured CA, kept for intermediates that clients present; each is
/// applied to an intermediate only when its signature verifies against that intermediate.
#[derive(Debug, Default)]
pub(crate) struct Floating {
    by_name: HashMap<NameKey, Vec<Arc<Crl>>>,
    /// (issuer name, issuer SPKI) → what applies; signatures are checked once per key.
    cache: Mutex<FloatingCache>,
}

type FloatingCache = HashMap<(NameKey, Vec<u8>), Option<Arc<Authority>>>;

/// Entries the cache of [`Floating`] holds before it starts over.
const FLOATING_CACHE: usize = 256;

impl Floating {
    pub(crate) fn push(&mut self, crl: Arc<Crl>) {
        self.by_name
            .entry(crl.issuer.clone())
            .or_default()
            .push(crl);
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }

    /// The authority for certificates issued by the CA named `issuer` with key `spki`.
    pub(crate) fn authority(
        &self,
        issuer: &NameKey,
        spki: &[u8],
        algorithms: &WebPkiSupportedAlgorithms,
    ) -> Option<Arc<Authority>> {
        let candidates = self.by_name.get(issuer)?;
        let key = (issuer.clone(), spki.to_vec());
        if let Some(hit) = self
            .cache
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&key)
        {
            return hit.clone();
        }
        let verified: Vec<&Crl> = candidates
            .iter()
            .filter(|crl| crl.verified_by(spki, algorithms))
            .map(|crl| &**crl)
            .collect();
        let authority = Authority::select(&verified);
        let mut cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
        if cache.len() >= FLOATING_CACHE {
            cache.clear();
        }
        cache.insert(key, authority.clone());
        authority
    }
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
    fn folding_collapses_whitespace_and_case() {
        assert_eq!(fold("  A\tB \n c  "), "a b c");
        assert_eq!(fold("ÄÖ"), "äö");
    }
}
