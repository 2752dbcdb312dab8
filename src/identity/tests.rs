use std::borrow::Cow;
use std::net::IpAddr;
use std::time::{Duration, SystemTime};

use super::fingerprint::hex;
use super::name::{is_control, is_minimal_oid};
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
    // Format characters (category Cf) and the line/paragraph separators: bidi overrides and
    // isolates, zero-width characters, the byte-order mark, a tag character.
    for c in [
        '\u{202a}',
        '\u{202b}',
        '\u{202c}',
        '\u{202d}',
        '\u{202e}',
        '\u{2066}',
        '\u{2067}',
        '\u{2068}',
        '\u{2069}',
        '\u{200b}',
        '\u{200c}',
        '\u{200d}',
        '\u{200e}',
        '\u{200f}',
        '\u{2060}',
        '\u{feff}',
        '\u{2028}',
        '\u{2029}',
        '\u{ad}',
        '\u{e0041}',
    ] {
        assert!(is_control(c), "{c:?}");
        let escaped = escape_control(&format!("a{c}b")).into_owned();
        assert!(!escaped.chars().any(is_control), "{c:?} -> {escaped:?}");
        assert!(
            escaped.starts_with("a\\") && escaped.ends_with('b'),
            "{escaped:?}"
        );
    }
    for c in [
        ' ',
        '~',
        '\u{a0}',
        'é',
        '\u{2027}',
        '\u{2030}',
        '中',
        '\u{1f600}',
    ] {
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

/// `SEQUENCE { SET { SEQUENCE { OID 2.5.4.3, <tag> value } } }`.
fn cn_name(tag: u8, value: &[u8]) -> DistinguishedName {
    use x509_parser::prelude::FromDer;
    let mut atv = vec![0x06, 0x03, 0x55, 0x04, 0x03, tag, value.len() as u8];
    atv.extend_from_slice(value);
    let mut der = vec![0x30, atv.len() as u8 + 4, 0x31, atv.len() as u8 + 2, 0x30];
    der.push(atv.len() as u8);
    der.extend(atv);
    let (_, name) = x509_parser::x509::X509Name::from_der(&der).expect("name");
    DistinguishedName::from_x509(&name, "subject").expect("DN")
}

/// Found by the `name_compare` fuzz target (`FUZZ_NAME_DISPLAY=injective`, seed in
/// `fuzz/seeds/name_compare/regression-hash-text`): a UTF8String `#41` and an OCTET STRING
/// 0x41 both displayed as `CN=#41`, and an INTEGER 0x41 too. RFC 4514 escapes a leading `#` of
/// a string and writes other values as the hex of their whole BER encoding.
#[test]
fn display_never_shows_two_values_alike() {
    let text = cn_name(0x0c, b"#41");
    let octets = cn_name(0x04, b"A");
    let integer = cn_name(0x02, b"A");
    assert_eq!(text.to_string(), "CN=\\#41");
    assert_eq!(octets.to_string(), "CN=#040141");
    assert_eq!(integer.to_string(), "CN=#020141");
    // The values themselves keep their documented form.
    assert_eq!(text.common_name(), Some("#41"));
    assert_eq!(octets.common_name(), Some("#41"));
    let longer = cn_name(0x04, &[0xab; 0x70]);
    assert!(longer.to_string().starts_with("CN=#0470abab"), "{longer}");
}
