//! Edge-case certificates, CRLs and names in the manner of x509-limbo, generated here (no
//! file of limbo's is copied). Every key is made at run time and never written: `write`
//! refuses any seed that holds one (see [`secrets`]).
//!
//! Most seeds are built by hand with the DER writer in `der.rs` (rcgen cannot write a v1 or
//! v2 certificate, a negative serial, a duplicated extension, a GeneralizedTime before 2050,
//! a multi-valued RDN, a CRL without nextUpdate, …) and signed with a real key: the fixture's
//! root (so that the handshake and CRL seeds get past signature checks) or the edge CAs made
//! here. rcgen builds the cases it can express (key types, SAN kinds, name constraints, pathLen,
//! EKU, custom critical and duplicated extensions, CRLs with reason codes, invalidity dates and
//! scopes). The seeds that are NOT validly signed are listed in fuzz/README.md.

use std::cell::Cell;
use std::net::IpAddr;
use std::sync::Mutex;

use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, CidrSubnet,
    CrlDistributionPoint, CrlIssuingDistributionPoint, CrlScope, CustomExtension,
    DistinguishedName, DnType, DnValue, ExtendedKeyUsagePurpose, GeneralSubtree, IsCa, Issuer,
    KeyIdMethod, KeyPair, KeyUsagePurpose, NameConstraints, OtherNameValue, PublicKeyData,
    RevocationReason, RevokedCertParams, SanType, SerialNumber, SigningKey, date_time_ymd,
};
use tower_mtls_fuzz::{Fixture, join, pem_body};

use crate::der::*;

// ---- keys: made here, remembered, never written --------------------------------------------

static SECRETS: Mutex<Vec<Vec<u8>>> = Mutex::new(Vec::new());

/// Remembers a PKCS#8 PEM key: its DER, and its PEM's first line of base64.
pub fn remember_pem(key_pem: &str) {
    let der = pem_body(key_pem, "PRIVATE KEY");
    let line = key_pem.lines().nth(1).unwrap_or("").as_bytes().to_vec();
    let mut secrets = SECRETS.lock().expect("secrets");
    secrets.push(der);
    if line.len() >= 16 {
        secrets.push(line);
    }
}

/// Every private key (DER) and PEM key line generated in this process so far.
pub fn secrets() -> Vec<Vec<u8>> {
    SECRETS.lock().expect("secrets").clone()
}

#[derive(Clone, Copy)]
enum Alg {
    P256,
    P384,
    Rsa2048,
    Ed25519,
}

fn key(alg: Alg) -> KeyPair {
    let key = match alg {
        Alg::P256 => KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256),
        Alg::P384 => KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384),
        Alg::Ed25519 => KeyPair::generate_for(&rcgen::PKCS_ED25519),
        Alg::Rsa2048 => {
            KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, rcgen::RsaKeySize::_2048)
        }
    }
    .expect("key generation");
    remember_pem(&key.serialize_pem());
    key
}

/// The AlgorithmIdentifier of the signatures `key` makes.
fn alg_id(key: &KeyPair) -> Vec<u8> {
    let a = key.algorithm();
    if a == &rcgen::PKCS_ECDSA_P256_SHA256 {
        seq(&[oid(&[1, 2, 840, 10045, 4, 3, 2])])
    } else if a == &rcgen::PKCS_ECDSA_P384_SHA384 {
        seq(&[oid(&[1, 2, 840, 10045, 4, 3, 3])])
    } else if a == &rcgen::PKCS_ED25519 {
        seq(&[oid(&[1, 3, 101, 112])])
    } else {
        seq(&[oid(&[1, 2, 840, 113549, 1, 1, 11]), tlv(0x05, &[])])
    }
}

// ---- object identifiers ---------------------------------------------------------------------

const CN: &[u64] = &[2, 5, 4, 3];
const SERIAL_NUMBER: &[u64] = &[2, 5, 4, 5];
const C: &[u64] = &[2, 5, 4, 6];
const O: &[u64] = &[2, 5, 4, 10];
const OU: &[u64] = &[2, 5, 4, 11];
const DC: &[u64] = &[0, 9, 2342, 19200300, 100, 1, 25];
const UID: &[u64] = &[0, 9, 2342, 19200300, 100, 1, 1];
const EMAIL_ADDRESS: &[u64] = &[1, 2, 840, 113549, 1, 9, 1];
const UNKNOWN_ATTR: &[u64] = &[1, 3, 6, 1, 4, 1, 55555, 7];

const SKI: &[u64] = &[2, 5, 29, 14];
const KU: &[u64] = &[2, 5, 29, 15];
const SAN: &[u64] = &[2, 5, 29, 17];
const BC: &[u64] = &[2, 5, 29, 19];
const CRL_NUMBER: &[u64] = &[2, 5, 29, 20];
const REASON: &[u64] = &[2, 5, 29, 21];
const INVALIDITY_DATE: &[u64] = &[2, 5, 29, 24];
const DELTA_CRL: &[u64] = &[2, 5, 29, 27];
const IDP: &[u64] = &[2, 5, 29, 28];
const CERTIFICATE_ISSUER: &[u64] = &[2, 5, 29, 29];
const NC: &[u64] = &[2, 5, 29, 30];
const CDP: &[u64] = &[2, 5, 29, 31];
const AKI: &[u64] = &[2, 5, 29, 35];
const EKU: &[u64] = &[2, 5, 29, 37];
const FRESHEST_CRL: &[u64] = &[2, 5, 29, 46];
const UNKNOWN_EXT: &[u64] = &[1, 3, 6, 1, 4, 1, 55555, 1];
const SERVER_AUTH: &[u64] = &[1, 3, 6, 1, 5, 5, 7, 3, 1];
const CLIENT_AUTH: &[u64] = &[1, 3, 6, 1, 5, 5, 7, 3, 2];
const ANY_EKU: &[u64] = &[2, 5, 29, 37, 0];
const UPN: &[u64] = &[1, 3, 6, 1, 4, 1, 311, 20, 2, 3];
const SMTP_UTF8_MAILBOX: &[u64] = &[1, 3, 6, 1, 5, 5, 7, 8, 9];

// String types.
const UTF8: u8 = 0x0c;
const NUMERIC: u8 = 0x12;
const PRINTABLE: u8 = 0x13;
const TELETEX: u8 = 0x14;
const IA5: u8 = 0x16;
const VISIBLE: u8 = 0x1a;
const UNIVERSAL: u8 = 0x1c;
const BMP: u8 = 0x1e;

// ---- GeneralName and extension helpers ------------------------------------------------------

fn gn_email(s: &[u8]) -> Vec<u8> {
    ctx(1, s)
}
fn gn_dns(s: &[u8]) -> Vec<u8> {
    ctx(2, s)
}
fn gn_uri(s: &[u8]) -> Vec<u8> {
    ctx(6, s)
}
fn gn_ip(octets: &[u8]) -> Vec<u8> {
    ctx(7, octets)
}
fn gn_dir(name: &[u8]) -> Vec<u8> {
    ctx_cons(4, &[name.to_vec()])
}
fn gn_other(arcs: &[u64], value: Vec<u8>) -> Vec<u8> {
    ctx_cons(0, &[oid(arcs), ctx_cons(0, &[value])])
}
fn gn_rid(arcs: &[u64]) -> Vec<u8> {
    ctx(8, &oid_body(arcs))
}

fn san(names: &[Vec<u8>]) -> Vec<u8> {
    ext(SAN, false, &seq(names))
}
fn aki(key_id: &[u8]) -> Vec<u8> {
    ext(AKI, false, &seq(&[ctx(0, key_id)]))
}
fn ski(key_id: &[u8]) -> Vec<u8> {
    ext(SKI, false, &octets(key_id))
}
fn eku(purposes: &[&[u64]], critical: bool) -> Vec<u8> {
    ext(
        EKU,
        critical,
        &seq(&purposes.iter().map(|p| oid(p)).collect::<Vec<_>>()),
    )
}
/// digitalSignature.
fn ku_leaf() -> Vec<u8> {
    ext(KU, true, &bits_unused(7, &[0x80]))
}
/// digitalSignature, keyCertSign, cRLSign.
fn ku_ca() -> Vec<u8> {
    ext(KU, true, &bits_unused(1, &[0x86]))
}
fn bc_ca(path_len: Option<u64>) -> Vec<u8> {
    let mut parts = vec![boolean(true)];
    parts.extend(path_len.map(uint));
    ext(BC, true, &seq(&parts))
}
fn cdp(uris: &[&str]) -> Vec<u8> {
    let points: Vec<Vec<u8>> = uris
        .iter()
        .map(|u| seq(&[ctx_cons(0, &[ctx_cons(0, &[gn_uri(u.as_bytes())])])]))
        .collect();
    ext(CDP, false, &seq(&points))
}
fn subtree(base: Vec<u8>) -> Vec<u8> {
    seq(&[base])
}
fn name_constraints(permitted: &[Vec<u8>], excluded: &[Vec<u8>], critical: bool) -> Vec<u8> {
    let mut parts = Vec::new();
    if !permitted.is_empty() {
        parts.push(ctx_cons(
            0,
            &permitted.iter().cloned().map(subtree).collect::<Vec<_>>(),
        ));
    }
    if !excluded.is_empty() {
        parts.push(ctx_cons(
            1,
            &excluded.iter().cloned().map(subtree).collect::<Vec<_>>(),
        ));
    }
    ext(NC, critical, &seq(&parts))
}
fn cn(value: &str) -> Vec<u8> {
    name1(&[atv(CN, UTF8, value.as_bytes())])
}

/// The Name at the subject position of a certificate (whole DER).
fn cert_subject(cert: &[u8]) -> Vec<u8> {
    let (_, body, _, _) = read(cert).expect("cert");
    let (_, tbs, _, _) = read(body).expect("tbs");
    let mut rest = tbs;
    if rest.first() == Some(&0xa0) {
        rest = read(rest).expect("version").3;
    }
    for _ in 0..4 {
        rest = read(rest).expect("field").3;
    }
    read(rest).expect("subject").2.to_vec()
}

/// A certificate's serial INTEGER contents.
fn cert_serial(cert: &[u8]) -> Vec<u8> {
    let (_, body, _, _) = read(cert).expect("cert");
    let (_, tbs, _, _) = read(body).expect("tbs");
    let mut rest = tbs;
    if rest.first() == Some(&0xa0) {
        rest = read(rest).expect("version").3;
    }
    read(rest).expect("serial").1.to_vec()
}

// ---- signing --------------------------------------------------------------------------------

/// A CA that signs the hand-built certificates and CRLs.
struct Signer {
    key: KeyPair,
    name: Vec<u8>,
    key_id: Vec<u8>,
    cert: Vec<u8>,
}

impl Signer {
    fn sign(&self, tbs: Vec<u8>) -> Vec<u8> {
        let signature = self.key.sign(&tbs).expect("sign");
        seq(&[tbs, alg_id(&self.key), bits(&signature)])
    }
}

/// A key identifier for a key (what it is matters only in that it differs per key).
fn key_id(key: &KeyPair) -> Vec<u8> {
    let raw = key.der_bytes();
    raw[raw.len().saturating_sub(20)..].to_vec()
}

/// A TBSCertificate, every field as DER, so that any of them can be anything.
#[derive(Clone)]
struct Cert {
    version: Option<Vec<u8>>,
    serial: Vec<u8>,
    /// Overrides the signature AlgorithmIdentifier inside the TBS (default: the signer's).
    inner_alg: Option<Vec<u8>>,
    issuer: Vec<u8>,
    validity: Vec<u8>,
    subject: Vec<u8>,
    spki: Vec<u8>,
    unique_ids: Vec<Vec<u8>>,
    extensions: Option<Vec<Vec<u8>>>,
}

impl Cert {
    fn signed_by(&self, signer: &Signer) -> Vec<u8> {
        let mut parts = Vec::new();
        parts.extend(self.version.clone());
        parts.push(self.serial.clone());
        parts.push(
            self.inner_alg
                .clone()
                .unwrap_or_else(|| alg_id(&signer.key)),
        );
        parts.push(self.issuer.clone());
        parts.push(self.validity.clone());
        parts.push(self.subject.clone());
        parts.push(self.spki.clone());
        parts.extend(self.unique_ids.iter().cloned());
        if let Some(exts) = &self.extensions {
            parts.push(ctx_cons(3, &[seq(exts)]));
        }
        signer.sign(seq(&parts))
    }

    /// Replaces the extension with this OID (or appends it).
    fn set_ext(&mut self, arcs: &[u64], value: Vec<u8>) {
        let exts = self.extensions.get_or_insert_with(Vec::new);
        let id = oid(arcs);
        if let Some(slot) = exts.iter_mut().find(|e| e[2..].starts_with(&id)) {
            *slot = value;
        } else {
            exts.push(value);
        }
    }

    fn drop_ext(&mut self, arcs: &[u64]) {
        let id = oid(arcs);
        if let Some(exts) = &mut self.extensions {
            exts.retain(|e| !e[2..].starts_with(&id));
        }
    }
}

fn v3() -> Option<Vec<u8>> {
    Some(ctx_cons(0, &[uint(2)]))
}

fn validity(not_before: Vec<u8>, not_after: Vec<u8>) -> Vec<u8> {
    seq(&[not_before, not_after])
}

/// A hand-built TBSCertList.
#[derive(Clone)]
struct Crl {
    version: Option<Vec<u8>>,
    issuer: Vec<u8>,
    this_update: Vec<u8>,
    next_update: Option<Vec<u8>>,
    entries: Vec<Vec<u8>>,
    /// An empty `revokedCertificates` SEQUENCE when there is no entry (RFC 5280 wants it
    /// absent).
    empty_list: bool,
    extensions: Option<Vec<Vec<u8>>>,
}

impl Crl {
    fn signed_by(&self, signer: &Signer) -> Vec<u8> {
        let mut parts = Vec::new();
        parts.extend(self.version.clone());
        parts.push(alg_id(&signer.key));
        parts.push(self.issuer.clone());
        parts.push(self.this_update.clone());
        parts.extend(self.next_update.clone());
        if !self.entries.is_empty() || self.empty_list {
            parts.push(seq(&self.entries));
        }
        if let Some(exts) = &self.extensions {
            parts.push(ctx_cons(0, &[seq(exts)]));
        }
        signer.sign(seq(&parts))
    }
}

fn entry(serial: Vec<u8>, extensions: &[Vec<u8>]) -> Vec<u8> {
    let mut parts = vec![serial, utc("250101000000Z")];
    if !extensions.is_empty() {
        parts.push(seq(extensions));
    }
    seq(&parts)
}

fn reason(code: u8) -> Vec<u8> {
    ext(REASON, false, &tlv(0x0a, &[code]))
}

fn idp(parts: &[Vec<u8>]) -> Vec<u8> {
    ext(IDP, true, &seq(parts))
}

fn idp_uris(uris: &[&str]) -> Vec<u8> {
    ctx_cons(
        0,
        &[ctx_cons(
            0,
            &uris
                .iter()
                .map(|u| gn_uri(u.as_bytes()))
                .collect::<Vec<_>>(),
        )],
    )
}

// ---- the seeds ------------------------------------------------------------------------------

/// What the edge cases give each target.
pub struct Edge {
    /// Certificates (leaves and CAs), for `identity` and `x509_der`.
    pub certs: Vec<(String, Vec<u8>)>,
    /// Leaf first, then its issuers up to (not including) the fixture's root.
    pub chains: Vec<(String, Vec<Vec<u8>>)>,
    /// CA certificates made here (trust anchors for the PEM and directory seeds).
    pub roots: Vec<Vec<u8>>,
    pub crls: Vec<(String, Vec<u8>)>,
    /// Whole `crl_select` inputs.
    pub select: Vec<(String, Vec<u8>)>,
    /// Whole `name_compare` inputs (one to three names).
    pub names: Vec<(String, Vec<u8>)>,
    /// `x509_der` `Signed` inputs: a signed structure and the signer's SubjectPublicKeyInfo.
    pub signed: Vec<(String, Vec<u8>)>,
}

/// Serial numbers of the hand-built certificates: distinct, deterministic.
struct Serials(Cell<u64>);

impl Serials {
    fn next(&self) -> Vec<u8> {
        let n = self.0.get() + 1;
        self.0.set(n);
        uint(0x0e00_0000 + n)
    }
}

pub fn build(fx: &Fixture) -> Edge {
    let mut edge = Edge {
        certs: Vec::new(),
        chains: Vec::new(),
        roots: Vec::new(),
        crls: Vec::new(),
        select: Vec::new(),
        names: Vec::new(),
        signed: Vec::new(),
    };
    let serials = Serials(Cell::new(0));

    // The fixture's root, as a signer: its key (from the test kit, never written), its subject
    // as encoded in its certificate, its subjectKeyIdentifier.
    let root = {
        let key = KeyPair::from_pem(&fx.ca.key_pem()).expect("fixture CA key");
        remember_pem(&fx.ca.key_pem());
        let ski = find_extension(&fx.ca.der, SKI).expect("root SKI");
        let key_id = read(&ski).expect("SKI").1.to_vec();
        Signer {
            key,
            name: cert_subject(&fx.ca.der),
            key_id,
            cert: fx.ca.der.to_vec(),
        }
    };
    // The same root for rcgen: its name and key usages as the test kit made them.
    let root_params = {
        let mut p = CertificateParams::default();
        p.distinguished_name = DistinguishedName::new();
        p.distinguished_name
            .push(DnType::CommonName, "Fuzz Root CA");
        p.distinguished_name
            .push(DnType::OrganizationName, "tower-mtls tests");
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        p
    };
    let root_issuer = Issuer::from_params(&root_params, &root.key);

    let p256 = key(Alg::P256);
    let p384 = key(Alg::P384);
    let rsa = key(Alg::Rsa2048);
    let ed25519 = key(Alg::Ed25519);

    // A typical client leaf under the fixture's root; each case changes what it is about.
    let base = |cn_value: &str| Cert {
        version: v3(),
        serial: serials.next(),
        inner_alg: None,
        issuer: root.name.clone(),
        validity: validity(utc("240101000000Z"), gen_time("20900101000000Z")),
        subject: cn(cn_value),
        spki: p256.subject_public_key_info(),
        unique_ids: Vec::new(),
        extensions: Some(vec![
            ku_leaf(),
            eku(&[CLIENT_AUTH], false),
            san(&[gn_dns(b"agent.example.com")]),
            aki(&root.key_id),
            ski(&key_id(&p256)),
        ]),
    };
    let mut leaves: Vec<(String, Vec<u8>)> = Vec::new();
    let mut leaf = |name: &str, tweak: &dyn Fn(&mut Cert)| {
        let mut c = base(name);
        tweak(&mut c);
        leaves.push((name.to_owned(), c.signed_by(&root)));
    };

    // Versions and extensions as a whole.
    leaf("v1", &|c| {
        c.version = None;
        c.extensions = None;
    });
    leaf("v1-explicit-version", &|c| {
        c.version = Some(ctx_cons(0, &[uint(0)]));
        c.extensions = None;
    });
    leaf("v2-unique-ids", &|c| {
        c.version = Some(ctx_cons(0, &[uint(1)]));
        c.unique_ids = vec![ctx(1, &[0x00, 0xde, 0xad]), ctx(2, &[0x04, 0xbe, 0xe0])];
        c.extensions = None;
    });
    leaf("v3-unique-ids", &|c| {
        c.unique_ids = vec![ctx(1, &[0x00, 0x01]), ctx(2, &[0x00, 0x02])];
    });
    leaf("v3-no-extensions", &|c| c.extensions = None);
    leaf("v3-empty-extensions", &|c| c.extensions = Some(Vec::new()));
    leaf("v4", &|c| c.version = Some(ctx_cons(0, &[uint(3)])));
    leaf("unknown-critical-ext", &|c| {
        c.set_ext(UNKNOWN_EXT, ext(UNKNOWN_EXT, true, &seq(&[uint(1)])))
    });
    leaf("unknown-noncritical-ext", &|c| {
        c.set_ext(UNKNOWN_EXT, ext(UNKNOWN_EXT, false, &tlv(0x0c, b"x")))
    });
    leaf("dup-ext-san", &|c| {
        c.extensions
            .as_mut()
            .unwrap()
            .push(san(&[gn_dns(b"other.example.com")]))
    });
    leaf("dup-ext-eku", &|c| {
        c.extensions
            .as_mut()
            .unwrap()
            .push(eku(&[SERVER_AUTH], false))
    });
    leaf("dup-ext-unknown", &|c| {
        let e = ext(UNKNOWN_EXT, false, &[0x05, 0x00]);
        c.extensions.as_mut().unwrap().extend([e.clone(), e]);
    });
    leaf("ext-bad-critical-false", &|c| {
        // critical encoded explicitly as FALSE (DER forbids a DEFAULT value).
        c.set_ext(
            SAN,
            seq(&[
                oid(SAN),
                boolean(false),
                octets(&seq(&[gn_dns(b"agent.example.com")])),
            ]),
        )
    });
    leaf("ext-value-not-der", &|c| {
        c.set_ext(SAN, ext(SAN, false, &[0x30, 0x80, 0x82, 0x01, b'a', 0, 0]))
    });
    leaf("ext-trailing-in-value", &|c| {
        let mut v = seq(&[gn_dns(b"agent.example.com")]);
        v.extend([0x05, 0x00]);
        c.set_ext(SAN, ext(SAN, false, &v))
    });
    leaf("inner-alg-mismatch", &|c| {
        c.inner_alg = Some(seq(&[oid(&[1, 2, 840, 113549, 1, 1, 11]), tlv(0x05, &[])]))
    });

    // Subjects.
    leaf("empty-subject-san", &|c| {
        c.subject = seq(&[]);
        c.set_ext(
            SAN,
            ext(
                SAN,
                true,
                &seq(&[
                    gn_uri(b"spiffe://example.org/agent"),
                    gn_dns(b"agent.example.com"),
                ]),
            ),
        );
    });
    leaf("empty-subject-no-san", &|c| {
        c.subject = seq(&[]);
        c.drop_ext(SAN);
    });
    leaf("empty-rdn", &|c| c.subject = seq(&[tlv(0x31, &[])]));
    leaf("rdn-multivalued", &|c| {
        c.subject = name(&[
            vec![atv(C, PRINTABLE, b"DE")],
            vec![
                atv(O, UTF8, b"Steadybit"),
                atv(OU, UTF8, b"agents"),
                atv(UID, UTF8, b"u-1"),
            ],
            vec![
                atv(CN, UTF8, b"steadybit-agent"),
                atv(SERIAL_NUMBER, PRINTABLE, b"42"),
            ],
        ])
    });
    leaf("rdn-multivalued-same-type", &|c| {
        c.subject = name(&[vec![atv(CN, UTF8, b"a"), atv(CN, UTF8, b"b")]])
    });
    leaf("rdn-unsorted-set", &|c| {
        // A SET whose members are not in DER order.
        c.subject = seq(&[cons(0x31, &[atv(O, UTF8, b"zz"), atv(CN, UTF8, b"agent")])])
    });
    leaf("cn-twice", &|c| {
        c.subject = name1(&[atv(CN, UTF8, b"first"), atv(CN, UTF8, b"second")])
    });
    leaf("attr-types", &|c| {
        c.subject = name1(&[
            atv(DC, IA5, b"org"),
            atv(DC, IA5, b"example"),
            atv(EMAIL_ADDRESS, IA5, b"ops@example.com"),
            atv(UID, UTF8, b"agent"),
            atv(UNKNOWN_ATTR, 0x02, &[0x01]),
            atv(&[2, 5, 4, 99], 0x30, &[]),
            atv(CN, UTF8, b"agent"),
        ])
    });
    let all_strings = name1(&[
        atv(CN, PRINTABLE, b"Printable 'A-z0-9()+,-./:=?"),
        atv(CN, UTF8, "utf8 \u{e9}\u{1F600}".as_bytes()),
        atv(CN, BMP, &bmp("bmp \u{e9}\u{4e2d}")),
        atv(CN, TELETEX, b"teletex caf\xe9"),
        atv(CN, IA5, b"ia5 a@b"),
        atv(CN, UNIVERSAL, &universal("universal \u{1F600}")),
        atv(CN, NUMERIC, b"0123 456"),
        atv(CN, VISIBLE, b"visible ~"),
    ]);
    leaf("str-all-types", &|c| c.subject = all_strings.clone());

    // Subject strings, one certificate each (the name also goes to name_compare).
    let strings: Vec<(&str, Vec<u8>)> = vec![
        ("printable", atv(CN, PRINTABLE, b"Edge Name")),
        ("utf8", atv(CN, UTF8, b"Edge Name")),
        ("bmp", atv(CN, BMP, &bmp("Edge Name"))),
        ("teletex", atv(CN, TELETEX, b"Edge Name")),
        ("ia5", atv(CN, IA5, b"Edge Name")),
        ("universal", atv(CN, UNIVERSAL, &universal("Edge Name"))),
        ("printable-illegal", atv(CN, PRINTABLE, b"a*b@c_d&e")),
        ("ia5-high-bit", atv(CN, IA5, b"caf\xe9")),
        ("teletex-latin1", atv(CN, TELETEX, b"Caf\xe9 \x80\xff")),
        ("utf8-invalid", atv(CN, UTF8, b"bad \xff\xfe \xc0\xaf")),
        ("bmp-odd-length", atv(CN, BMP, &[0x00, 0x41, 0x00])),
        (
            "bmp-lone-surrogate",
            atv(CN, BMP, &[0xd8, 0x00, 0x00, 0x41]),
        ),
        ("bmp-bidi", atv(CN, BMP, &bmp("admin\u{202E}gpj.exe"))),
        (
            "universal-out-of-range",
            atv(CN, UNIVERSAL, &[0x00, 0x11, 0x00, 0x00]),
        ),
        (
            "universal-bad-length",
            atv(CN, UNIVERSAL, &[0x00, 0x00, 0x41]),
        ),
        ("esc-specials", atv(CN, UTF8, b",+\"\\<>;#=")),
        (
            "esc-specials-escaped",
            atv(CN, UTF8, b"\\,\\+\\\"\\\\\\<\\>\\;\\#\\="),
        ),
        ("esc-hash-lead", atv(CN, UTF8, b"#0403414243")),
        ("esc-spaces", atv(CN, UTF8, b"  lead and trail  ")),
        ("esc-space-only", atv(CN, UTF8, b" ")),
        ("esc-empty", atv(CN, UTF8, b"")),
        ("esc-nul", atv(CN, UTF8, b"agent\0evil")),
        (
            "esc-nul-bmp",
            atv(CN, BMP, &[0x00, 0x61, 0x00, 0x00, 0x00, 0x62]),
        ),
        (
            "esc-control",
            atv(CN, UTF8, b"a\x01\x07\x1b[31mred\x7f\n\r\tz"),
        ),
        ("esc-c1", atv(CN, UTF8, "nel\u{85}csi\u{9b}".as_bytes())),
        ("esc-bidi", atv(CN, UTF8, "admin\u{202E}gpj.exe".as_bytes())),
        (
            "esc-zero-width",
            atv(CN, UTF8, "ad\u{200B}min\u{200D}\u{FEFF}".as_bytes()),
        ),
        (
            "esc-line-separator",
            atv(CN, UTF8, "a\u{2028}b\u{2029}c".as_bytes()),
        ),
        ("esc-equals-plus", atv(CN, UTF8, b"CN=admin+O=root")),
        ("esc-backslash-hex", atv(CN, UTF8, b"\\41\\2c")),
        ("long-cn", atv(CN, UTF8, "x".repeat(2000).as_bytes())),
    ];
    for (what, atv_der) in &strings {
        let subject = name1(std::slice::from_ref(atv_der));
        leaf(&format!("str-{what}"), &|c| c.subject = subject.clone());
    }
    let many_rdns = name1(
        &(0..96)
            .map(|i| atv(OU, UTF8, format!("unit-{i}").as_bytes()))
            .collect::<Vec<_>>(),
    );
    leaf("long-many-rdns", &|c| c.subject = many_rdns.clone());

    // Subject alternative names.
    let sans: Vec<(&str, Vec<Vec<u8>>)> = vec![
        (
            "dns-wildcard",
            vec![
                gn_dns(b"*.example.com"),
                gn_dns(b"*"),
                gn_dns(b"a*.example.com"),
                gn_dns(b"*.*.example.com"),
                gn_dns(b"*.com"),
            ],
        ),
        (
            "dns-idna",
            vec![
                gn_dns(b"xn--caf-dma.example"),
                gn_dns(b"xn--80ak6aa92e.com"),
                gn_dns(b"xn--.example"),
                gn_dns(b"XN--CAF-DMA.example"),
                gn_dns("caf\u{e9}.example".as_bytes()),
            ],
        ),
        (
            "dns-trailing-dot",
            vec![gn_dns(b"agent.example.com."), gn_dns(b"."), gn_dns(b"a..b")],
        ),
        (
            "dns-uppercase",
            vec![gn_dns(b"AGENT.Example.COM"), gn_dns(b"*.EXAMPLE.com")],
        ),
        (
            "dns-odd",
            vec![
                gn_dns(b""),
                gn_dns(b"agent example.com"),
                gn_dns(b"agent\0.example.com"),
                gn_dns(b"-leading.example.com"),
                gn_dns(b"under_score.example.com"),
                gn_dns(b"10.0.0.1"),
                gn_dns("a".repeat(300).as_bytes()),
            ],
        ),
        (
            "ip",
            vec![
                gn_ip(&[10, 0, 0, 1]),
                gn_ip(&[0, 0, 0, 0]),
                gn_ip(&[255, 255, 255, 255]),
                gn_ip(&"::1".parse::<std::net::Ipv6Addr>().unwrap().octets()),
                gn_ip(
                    &"2001:db8::1"
                        .parse::<std::net::Ipv6Addr>()
                        .unwrap()
                        .octets(),
                ),
                gn_ip(
                    &"::ffff:10.0.0.1"
                        .parse::<std::net::Ipv6Addr>()
                        .unwrap()
                        .octets(),
                ),
            ],
        ),
        (
            "ip-bad-length",
            vec![
                gn_ip(&[10, 0, 0]),
                gn_ip(&[10, 0, 0, 1, 255, 0, 0, 0]),
                gn_ip(&[]),
            ],
        ),
        (
            "uri-spiffe",
            vec![gn_uri(b"spiffe://example.org/ns/default/sa/agent")],
        ),
        (
            "uri-spiffe-odd",
            vec![
                gn_uri(b"spiffe://example.org/a?x=1#frag"),
                gn_uri(b"spiffe://example.org/%41%2F%00"),
                gn_uri(b"SPIFFE://Example.ORG/a"),
                gn_uri(b"spiffe://example.org:8443/a"),
                gn_uri(b"spiffe://user@example.org/a"),
                gn_uri(b"spiffe://"),
            ],
        ),
        (
            "uri-two-spiffe",
            vec![
                gn_uri(b"spiffe://example.org/a"),
                gn_uri(b"spiffe://example.org/b"),
            ],
        ),
        (
            "uri-other",
            vec![
                gn_uri(b"https://user:pw@host.example:8443/p/a%20b?q=1&r=%2F#frag"),
                gn_uri(b"urn:uuid:f81d4fae-7dec-11d0-a765-00a0c91e6bf6"),
                gn_uri(b"no-scheme"),
                gn_uri(b"https://host.example/\0nul"),
            ],
        ),
        (
            "email",
            vec![
                gn_email(b"ops@example.com"),
                gn_email(b"\"quoted local\"@example.com"),
                gn_email(b"@example.com"),
                gn_email(b"no-at-sign"),
                gn_email("\u{3b4}@\u{3c0}.example".as_bytes()),
            ],
        ),
        (
            "othername",
            vec![
                gn_other(UPN, tlv(UTF8, b"agent@example.com")),
                gn_other(
                    SMTP_UTF8_MAILBOX,
                    tlv(UTF8, "\u{3b4}@example.com".as_bytes()),
                ),
                gn_other(UNKNOWN_EXT, uint(7)),
                gn_other(UNKNOWN_EXT, seq(&[])),
            ],
        ),
        (
            "dirname",
            vec![
                gn_dir(&name1(&[
                    atv(O, UTF8, b"Steadybit"),
                    atv(CN, UTF8, b"agent"),
                ])),
                gn_dir(&seq(&[])),
            ],
        ),
        (
            "all-kinds",
            vec![
                gn_other(UPN, tlv(UTF8, b"agent@example.com")),
                gn_email(b"ops@example.com"),
                gn_dns(b"agent.example.com"),
                ctx_cons(3, &[seq(&[])]),
                gn_dir(&cn("agent")),
                ctx_cons(5, &[ctx_cons(1, &[tlv(UTF8, b"party")])]),
                gn_uri(b"spiffe://example.org/agent"),
                gn_ip(&[127, 0, 0, 1]),
                gn_rid(&[1, 2, 3, 4]),
            ],
        ),
        ("empty-seq", vec![]),
    ];
    for (what, names) in &sans {
        leaf(&format!("san-{what}"), &|c| c.set_ext(SAN, san(names)));
    }
    leaf("san-critical-with-subject", &|c| {
        c.set_ext(SAN, ext(SAN, true, &seq(&[gn_dns(b"agent.example.com")])))
    });

    // basicConstraints, keyUsage, extendedKeyUsage on leaves.
    leaf("bc-leaf-keycertsign", &|c| {
        c.set_ext(BC, ext(BC, true, &seq(&[])));
        c.set_ext(KU, ext(KU, true, &bits_unused(2, &[0x84])));
    });
    leaf("bc-ca-false-explicit", &|c| {
        c.set_ext(BC, ext(BC, true, &seq(&[boolean(false)])))
    });
    leaf("bc-pathlen-without-ca", &|c| {
        c.set_ext(BC, ext(BC, true, &seq(&[uint(3)])))
    });
    leaf("bc-pathlen-negative", &|c| {
        c.set_ext(BC, ext(BC, true, &seq(&[boolean(true), int(&[0xff])])))
    });
    leaf("bc-pathlen-huge", &|c| {
        c.set_ext(BC, ext(BC, true, &seq(&[boolean(true), int(&[0x7f; 12])])))
    });
    leaf("ku-none", &|c| c.drop_ext(KU));
    leaf("ku-all-nine", &|c| {
        c.set_ext(KU, ext(KU, true, &bits_unused(7, &[0xff, 0x80])))
    });
    leaf("ku-empty", &|c| c.set_ext(KU, ext(KU, true, &bits(&[]))));
    leaf("ku-bad-unused", &|c| {
        c.set_ext(KU, ext(KU, true, &bits_unused(9, &[0x80])))
    });
    leaf("ku-noncritical", &|c| {
        c.set_ext(KU, ext(KU, false, &bits_unused(7, &[0x80])))
    });
    leaf("eku-server-only", &|c| {
        c.set_ext(EKU, eku(&[SERVER_AUTH], false))
    });
    leaf("eku-client-only", &|c| {
        c.set_ext(EKU, eku(&[CLIENT_AUTH], false))
    });
    leaf("eku-any", &|c| c.set_ext(EKU, eku(&[ANY_EKU], false)));
    leaf("eku-none", &|c| c.drop_ext(EKU));
    leaf("eku-critical", &|c| {
        c.set_ext(EKU, eku(&[CLIENT_AUTH], true))
    });
    leaf("eku-empty", &|c| c.set_ext(EKU, eku(&[], false)));
    leaf("eku-unknown-oid", &|c| {
        c.set_ext(EKU, eku(&[&[1, 3, 6, 1, 4, 1, 55555, 3]], false))
    });
    leaf("eku-client-server-any", &|c| {
        c.set_ext(EKU, eku(&[SERVER_AUTH, ANY_EKU, CLIENT_AUTH], false))
    });

    // Validity.
    let times: Vec<(&str, Vec<u8>, Vec<u8>)> = vec![
        ("utc-2049", utc("240101000000Z"), utc("491231235959Z")),
        (
            "gen-2050",
            utc("240101000000Z"),
            gen_time("20500101000000Z"),
        ),
        ("utc-50-is-1950", utc("240101000000Z"), utc("500101000000Z")),
        (
            "gen-before-2050",
            gen_time("20240101000000Z"),
            gen_time("20300101000000Z"),
        ),
        ("inverted", utc("350101000000Z"), utc("250101000000Z")),
        ("equal", utc("250101000000Z"), utc("250101000000Z")),
        ("9999", utc("240101000000Z"), gen_time("99991231235959Z")),
        ("epoch", gen_time("19700101000000Z"), utc("250101000000Z")),
        (
            "before-1950",
            gen_time("19000101000000Z"),
            gen_time("19491231235959Z"),
        ),
        (
            "fraction",
            gen_time("20240101000000.5Z"),
            gen_time("20900101000000.999Z"),
        ),
        (
            "offset",
            utc("240101000000+0100"),
            gen_time("20900101000000-0130"),
        ),
        ("no-seconds", utc("2401010000Z"), utc("4901010000Z")),
        (
            "no-zone",
            gen_time("20240101000000"),
            gen_time("20900101000000"),
        ),
        (
            "leap-day",
            utc("240229000000Z"),
            gen_time("20960229235959Z"),
        ),
        ("bad-dates", utc("230229000000Z"), utc("491331246060Z")),
        ("leap-second", utc("161231235960Z"), utc("491231235960Z")),
        (
            "wrong-tag",
            tlv(0x04, b"240101000000Z"),
            tlv(0x0c, b"20900101000000Z"),
        ),
    ];
    for (what, nb, na) in &times {
        leaf(&format!("time-{what}"), &|c| {
            c.validity = validity(nb.clone(), na.clone())
        });
    }
    leaf("time-missing-not-after", &|c| {
        c.validity = seq(&[utc("240101000000Z")])
    });

    // Serial numbers.
    let mut serial20 = vec![0x3a; 20];
    serial20[19] = 0x20;
    let mut serial21 = vec![0x00];
    serial21.extend([0xc5; 20]);
    let serials_edge: Vec<(&str, Vec<u8>)> = vec![
        ("zero", vec![0x00]),
        ("negative", vec![0xff]),
        ("negative-long", vec![0x80, 0x00, 0x00, 0x01]),
        ("20-bytes", serial20.clone()),
        ("21-bytes", serial21.clone()),
        ("21-bytes-positive", vec![0x11; 21]),
        ("non-minimal", vec![0x00, 0x01]),
        ("non-minimal-negative", vec![0xff, 0x80]),
        ("empty", vec![]),
        ("40-bytes", vec![0x42; 40]),
    ];
    for (what, content) in &serials_edge {
        leaf(&format!("serial-{what}"), &|c| c.serial = int(content));
    }

    // Key identifiers.
    leaf("aki-absent", &|c| c.drop_ext(AKI));
    leaf("ski-absent", &|c| c.drop_ext(SKI));
    leaf("aki-ski-absent", &|c| {
        c.drop_ext(AKI);
        c.drop_ext(SKI);
    });
    leaf("aki-mismatch", &|c| c.set_ext(AKI, aki(&[0x5a; 20])));
    leaf("aki-empty", &|c| c.set_ext(AKI, ext(AKI, false, &seq(&[]))));
    leaf("aki-issuer-serial", &|c| {
        c.set_ext(
            AKI,
            ext(
                AKI,
                false,
                &seq(&[
                    ctx(0, &root.key_id),
                    ctx_cons(1, &[gn_dir(&root.name)]),
                    ctx(2, &[0x01]),
                ]),
            ),
        )
    });
    leaf("ski-empty", &|c| {
        c.set_ext(SKI, ext(SKI, false, &octets(&[])))
    });
    leaf("ski-not-octets", &|c| {
        c.set_ext(SKI, ext(SKI, false, &uint(5)))
    });

    // Distribution points (the scoped-CRL path reads them).
    leaf("cdp-two", &|c| {
        c.set_ext(
            CDP,
            cdp(&[
                "http://crl.example.com/a.crl",
                "http://crl.example.com/b.crl",
            ]),
        )
    });
    leaf("cdp-odd", &|c| {
        c.set_ext(
            CDP,
            ext(
                CDP,
                false,
                &seq(&[
                    seq(&[]),
                    seq(&[ctx_cons(0, &[ctx_cons(1, &[atv(CN, UTF8, b"rel")])])]),
                    seq(&[
                        ctx_cons(0, &[ctx_cons(0, &[gn_dns(b"crl.example.com")])]),
                        ctx(1, &[0x06, 0x40]),
                        ctx_cons(2, &[gn_dir(&root.name)]),
                    ]),
                ]),
            ),
        )
    });

    // Issuer: the same root spelled differently (PrintableString, upper case).
    leaf("issuer-respelled", &|c| {
        c.issuer = name1(&[
            atv(CN, PRINTABLE, b"FUZZ ROOT  CA"),
            atv(O, PRINTABLE, b"tower-mtls tests"),
        ])
    });
    leaf("issuer-empty", &|c| c.issuer = seq(&[]));

    // Key types (rcgen, issued by the fixture's root), and the same keys in hand-built leaves.
    for (what, k) in [
        ("p256", &p256),
        ("p384", &p384),
        ("rsa2048", &rsa),
        ("ed25519", &ed25519),
    ] {
        let der = rcgen_leaf(&root_issuer, k, &format!("key-{what}"), |_| {});
        leaves.push((format!("key-{what}"), der));
    }

    // rcgen-built cases (the brief's `custom_extensions`): an unknown critical extension, a
    // duplicated SAN, SAN kinds, EKU variants, CRL distribution points.
    let rc = |name: &str, tweak: &dyn Fn(&mut CertificateParams)| {
        (
            name.to_owned(),
            rcgen_leaf(&root_issuer, &p256, name, tweak),
        )
    };
    let mut rcgen_leaves = vec![
        rc("rcgen-unknown-critical", &|p| {
            let mut e = CustomExtension::from_oid_content(UNKNOWN_EXT, vec![0x05, 0x00]);
            e.set_criticality(true);
            p.custom_extensions.push(e);
        }),
        rc("rcgen-dup-san", &|p| {
            p.subject_alt_names = vec![SanType::DnsName("a.example.com".try_into().unwrap())];
            p.custom_extensions.push(CustomExtension::from_oid_content(
                SAN,
                seq(&[gn_dns(b"b.example.com")]),
            ));
        }),
        rc("rcgen-sans", &|p| {
            p.subject_alt_names = vec![
                SanType::DnsName("*.agents.example.com".try_into().unwrap()),
                SanType::DnsName("xn--caf-dma.example.".try_into().unwrap()),
                SanType::IpAddress(IpAddr::from([10, 1, 2, 3])),
                SanType::IpAddress("2001:db8::7".parse().unwrap()),
                SanType::URI("spiffe://example.org/ns/a%20b/sa/x?y#z".try_into().unwrap()),
                SanType::Rfc822Name("Ops@Example.COM".try_into().unwrap()),
                SanType::OtherName((UPN.to_vec(), OtherNameValue::Utf8String("u@x".into()))),
            ];
        }),
        rc("rcgen-eku-server", &|p| {
            p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth]
        }),
        rc("rcgen-eku-any", &|p| {
            p.extended_key_usages = vec![ExtendedKeyUsagePurpose::Any]
        }),
        rc("rcgen-no-eku", &|p| p.extended_key_usages = Vec::new()),
        rc("rcgen-cdp", &|p| {
            p.crl_distribution_points = vec![CrlDistributionPoint {
                uris: vec!["http://crl.example.com/a.crl".into()],
            }]
        }),
        rc("rcgen-strings", &|p| {
            let mut dn = DistinguishedName::new();
            dn.push(
                DnType::CountryName,
                DnValue::PrintableString("DE".try_into().unwrap()),
            );
            dn.push(
                DnType::OrganizationName,
                DnValue::BmpString("Stea\u{e9}dybit".try_into().unwrap()),
            );
            dn.push(
                DnType::OrganizationalUnitName,
                DnValue::TeletexString("ops".try_into().unwrap()),
            );
            dn.push(
                DnType::LocalityName,
                DnValue::UniversalString("K\u{f6}ln".try_into().unwrap()),
            );
            dn.push(
                DnType::CustomDnType(EMAIL_ADDRESS.to_vec()),
                DnValue::Ia5String("a@b.c".try_into().unwrap()),
            );
            dn.push(
                DnType::CommonName,
                DnValue::Utf8String("agent \u{202E}x".into()),
            );
            p.distinguished_name = dn;
        }),
        rc("rcgen-2049-2050", &|p| {
            p.not_before = date_time_ymd(2049, 12, 31);
            p.not_after = date_time_ymd(2050, 1, 1);
        }),
        rc("rcgen-serial-20", &|p| {
            p.serial_number = Some(SerialNumber::from_slice(&[0x7f; 20]));
        }),
        rc("rcgen-aki-mismatch", &|p| {
            p.key_identifier_method = KeyIdMethod::PreSpecified(vec![0x11; 20]);
        }),
    ];
    leaves.append(&mut rcgen_leaves);

    // ---- CAs: name constraints, pathLen, missing basicConstraints, other key types -------

    let ca_base = |cn_value: &str, k: &KeyPair, issuer: &Signer| Cert {
        version: v3(),
        serial: serials.next(),
        inner_alg: None,
        issuer: issuer.name.clone(),
        validity: validity(utc("240101000000Z"), gen_time("20900101000000Z")),
        subject: name1(&[
            atv(O, UTF8, b"Steadybit"),
            atv(CN, UTF8, cn_value.as_bytes()),
        ]),
        spki: k.subject_public_key_info(),
        unique_ids: Vec::new(),
        extensions: Some(vec![
            bc_ca(None),
            ku_ca(),
            aki(&issuer.key_id),
            ski(&key_id(k)),
        ]),
    };
    let make_ca =
        |cn_value: &str, alg: Alg, issuer: &Signer, tweak: &dyn Fn(&mut Cert)| -> Signer {
            let k = key(alg);
            let mut c = ca_base(cn_value, &k, issuer);
            tweak(&mut c);
            let cert = c.signed_by(issuer);
            Signer {
                name: c.subject.clone(),
                key_id: key_id(&k),
                key: k,
                cert,
            }
        };
    let under = |ca: &Signer, cn_value: &str, tweak: &dyn Fn(&mut Cert)| -> Vec<u8> {
        let mut c = base(cn_value);
        c.issuer = ca.name.clone();
        c.set_ext(AKI, aki(&ca.key_id));
        tweak(&mut c);
        c.signed_by(ca)
    };

    let nc_dns = make_ca("Edge NC DNS CA", Alg::P256, &root, &|c| {
        c.set_ext(
            NC,
            name_constraints(
                &[gn_dns(b"example.com"), gn_dns(b".example.org")],
                &[gn_dns(b"bad.example.com")],
                true,
            ),
        )
    });
    let nc_ip = make_ca("Edge NC IP CA", Alg::P256, &root, &|c| {
        let v6: Vec<u8> = [
            "2001:db8::".parse::<std::net::Ipv6Addr>().unwrap().octets(),
            "ffff:ffff::"
                .parse::<std::net::Ipv6Addr>()
                .unwrap()
                .octets(),
        ]
        .concat();
        c.set_ext(
            NC,
            name_constraints(
                &[gn_ip(&[10, 0, 0, 0, 255, 0, 0, 0]), gn_ip(&v6)],
                &[gn_ip(&[10, 1, 0, 0, 255, 255, 0, 0])],
                true,
            ),
        )
    });
    let nc_dir = make_ca("Edge NC Dir CA", Alg::P256, &root, &|c| {
        c.set_ext(
            NC,
            name_constraints(
                &[gn_dir(&name1(&[atv(O, UTF8, b"Steadybit")]))],
                &[gn_dir(&name1(&[
                    atv(O, UTF8, b"Steadybit"),
                    atv(OU, UTF8, b"banned"),
                ]))],
                true,
            ),
        )
    });
    let nc_misc = make_ca("Edge NC URI Email CA", Alg::P256, &root, &|c| {
        c.set_ext(
            NC,
            name_constraints(
                &[
                    gn_uri(b".example.org"),
                    gn_email(b"example.com"),
                    gn_other(UPN, tlv(UTF8, b"example.com")),
                ],
                &[
                    gn_uri(b"spiffe://evil.example.org"),
                    gn_email(b"bad@example.com"),
                ],
                true,
            ),
        )
    });
    let nc_empty = make_ca("Edge NC Empty CA", Alg::P256, &root, &|c| {
        c.set_ext(NC, ext(NC, true, &seq(&[])))
    });
    let nc_noncritical = make_ca("Edge NC Noncritical CA", Alg::P256, &root, &|c| {
        c.set_ext(NC, name_constraints(&[gn_dns(b"example.com")], &[], false))
    });
    let pathlen0 = make_ca("Edge PathLen0 CA", Alg::P256, &root, &|c| {
        c.set_ext(BC, bc_ca(Some(0)))
    });
    let below_pathlen0 = make_ca("Edge Below PathLen0 CA", Alg::P256, &pathlen0, &|_| {});
    let no_bc = make_ca("Edge No BasicConstraints CA", Alg::P256, &root, &|c| {
        c.drop_ext(BC)
    });
    let bc_noncritical = make_ca("Edge BC Noncritical CA", Alg::P256, &root, &|c| {
        c.set_ext(BC, ext(BC, false, &seq(&[boolean(true)])))
    });
    let ca_no_ku = make_ca("Edge CA Without KeyUsage", Alg::P256, &root, &|c| {
        c.drop_ext(KU)
    });
    let ca_v1 = make_ca("Edge v1 CA", Alg::P256, &root, &|c| {
        c.version = None;
        c.extensions = None;
    });
    let ca_eku_server = make_ca("Edge CA EKU serverAuth", Alg::P256, &root, &|c| {
        c.set_ext(EKU, eku(&[SERVER_AUTH], false))
    });
    let ca_rsa = make_ca("Edge RSA CA", Alg::Rsa2048, &root, &|_| {});
    let ca_p384 = make_ca("Edge P-384 CA", Alg::P384, &root, &|_| {});
    let ca_ed25519 = make_ca("Edge Ed25519 CA", Alg::Ed25519, &root, &|_| {});

    // rcgen's name constraints (DNS, IP, directoryName) on a CA, and a leaf under it.
    let rc_nc_key = key(Alg::P256);
    let rc_nc_params = {
        let mut p = CertificateParams::default();
        p.distinguished_name = DistinguishedName::new();
        p.distinguished_name
            .push(DnType::CommonName, "Edge rcgen NC CA");
        p.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        p.not_before = date_time_ymd(2024, 1, 1);
        p.not_after = date_time_ymd(2090, 1, 1);
        p.use_authority_key_identifier_extension = true;
        let mut dn = DistinguishedName::new();
        dn.push(DnType::OrganizationName, "Steadybit");
        p.name_constraints = Some(NameConstraints {
            permitted_subtrees: vec![
                GeneralSubtree::DnsName("example.com".into()),
                GeneralSubtree::IpAddress(CidrSubnet::from_v4_prefix([10, 0, 0, 0], 8)),
                GeneralSubtree::DirectoryName(dn),
                GeneralSubtree::Rfc822Name("example.com".into()),
            ],
            excluded_subtrees: vec![
                GeneralSubtree::DnsName("bad.example.com".into()),
                GeneralSubtree::IpAddress(CidrSubnet::from_addr_prefix(
                    "2001:db8::".parse().unwrap(),
                    32,
                )),
            ],
        });
        p
    };
    let rc_nc_cert = rc_nc_params
        .signed_by(&rc_nc_key, &root_issuer)
        .expect("rcgen NC CA")
        .der()
        .to_vec();
    let rc_nc_issuer = Issuer::from_params(&rc_nc_params, &rc_nc_key);
    let rc_nc_leaf_ok = rcgen_leaf(&rc_nc_issuer, &p256, "inside", |p| {
        p.subject_alt_names = vec![
            SanType::DnsName("agent.example.com".try_into().unwrap()),
            SanType::IpAddress(IpAddr::from([10, 2, 3, 4])),
        ];
        let mut dn = DistinguishedName::new();
        dn.push(DnType::OrganizationName, "Steadybit");
        dn.push(DnType::CommonName, "inside");
        p.distinguished_name = dn;
    });
    let rc_nc_leaf_bad = rcgen_leaf(&rc_nc_issuer, &p256, "outside", |p| {
        p.subject_alt_names = vec![
            SanType::DnsName("bad.example.com".try_into().unwrap()),
            SanType::IpAddress("2001:db8::1".parse().unwrap()),
            SanType::Rfc822Name("x@evil.example".try_into().unwrap()),
        ];
    });

    let cas: Vec<(&str, &Signer)> = vec![
        ("nc-dns", &nc_dns),
        ("nc-ip", &nc_ip),
        ("nc-dirname", &nc_dir),
        ("nc-uri-email", &nc_misc),
        ("nc-empty", &nc_empty),
        ("nc-noncritical", &nc_noncritical),
        ("bc-ca-pathlen0", &pathlen0),
        ("bc-below-pathlen0", &below_pathlen0),
        ("bc-missing-on-ca", &no_bc),
        ("bc-noncritical", &bc_noncritical),
        ("ca-no-keyusage", &ca_no_ku),
        ("ca-v1", &ca_v1),
        ("ca-eku-server", &ca_eku_server),
        ("ca-rsa2048", &ca_rsa),
        ("ca-p384", &ca_p384),
        ("ca-ed25519", &ca_ed25519),
    ];
    for (what, ca) in &cas {
        edge.certs.push((format!("{what}"), ca.cert.clone()));
        edge.roots.push(ca.cert.clone());
    }
    edge.certs.push(("nc-rcgen".into(), rc_nc_cert.clone()));
    edge.roots.push(rc_nc_cert.clone());

    // Self-signed roots of every key type (hand-built: signature algorithms on their own).
    for (what, alg) in [
        ("p256", Alg::P256),
        ("p384", Alg::P384),
        ("rsa2048", Alg::Rsa2048),
        ("ed25519", Alg::Ed25519),
    ] {
        let k = key(alg);
        let subject = cn(&format!("Edge self-signed {what}"));
        let mut c = ca_base("x", &k, &root);
        c.subject = subject.clone();
        c.issuer = subject.clone();
        c.set_ext(AKI, aki(&key_id(&k)));
        let spki = k.subject_public_key_info();
        let signer = Signer {
            name: subject,
            key_id: key_id(&k),
            cert: Vec::new(),
            key: k,
        };
        let cert = c.signed_by(&signer);
        edge.signed
            .push((format!("root-{what}"), join(&[&cert, &spki])));
        edge.certs.push((format!("root-{what}"), cert.clone()));
        edge.roots.push(cert);
    }

    // Chains: a leaf, then its issuers below the fixture's root.
    let chain = |name: &str, leaf: Vec<u8>, up: &[&Signer]| {
        let mut certs = vec![leaf];
        certs.extend(up.iter().map(|s| s.cert.clone()));
        (name.to_owned(), certs)
    };
    let mut chains = vec![
        chain(
            "nc-dns-inside",
            under(&nc_dns, "inside", &|c| {
                c.set_ext(SAN, san(&[gn_dns(b"agent.example.com")]))
            }),
            &[&nc_dns],
        ),
        chain(
            "nc-dns-outside",
            under(&nc_dns, "outside", &|c| {
                c.set_ext(
                    SAN,
                    san(&[gn_dns(b"x.bad.example.com"), gn_dns(b"evil.example.net")]),
                )
            }),
            &[&nc_dns],
        ),
        chain(
            "nc-dns-cn-only",
            under(&nc_dns, "evil.example.net", &|c| c.drop_ext(SAN)),
            &[&nc_dns],
        ),
        chain(
            "nc-ip-outside",
            under(&nc_ip, "ip", &|c| {
                c.set_ext(SAN, san(&[gn_ip(&[10, 1, 2, 3]), gn_ip(&[192, 168, 0, 1])]))
            }),
            &[&nc_ip],
        ),
        chain(
            "nc-dirname-outside",
            under(&nc_dir, "dir", &|c| {
                c.subject = name1(&[atv(O, UTF8, b"Other"), atv(CN, UTF8, b"dir")])
            }),
            &[&nc_dir],
        ),
        chain(
            "nc-dirname-banned",
            under(&nc_dir, "dir", &|c| {
                c.subject = name1(&[
                    atv(O, PRINTABLE, b"STEADYBIT"),
                    atv(OU, UTF8, b"banned"),
                    atv(CN, UTF8, b"dir"),
                ])
            }),
            &[&nc_dir],
        ),
        chain(
            "nc-uri-email",
            under(&nc_misc, "uri", &|c| {
                c.set_ext(
                    SAN,
                    san(&[
                        gn_uri(b"spiffe://evil.example.org/agent"),
                        gn_email(b"bad@example.com"),
                    ]),
                )
            }),
            &[&nc_misc],
        ),
        chain("nc-empty", under(&nc_empty, "leaf", &|_| {}), &[&nc_empty]),
        chain(
            "nc-noncritical",
            under(&nc_noncritical, "leaf", &|c| {
                c.set_ext(SAN, san(&[gn_dns(b"evil.example.net")]))
            }),
            &[&nc_noncritical],
        ),
        chain(
            "pathlen0-exceeded",
            under(&below_pathlen0, "leaf", &|_| {}),
            &[&below_pathlen0, &pathlen0],
        ),
        chain(
            "pathlen0-ok",
            under(&pathlen0, "leaf", &|_| {}),
            &[&pathlen0],
        ),
        chain("no-bc-ca", under(&no_bc, "leaf", &|_| {}), &[&no_bc]),
        chain(
            "bc-noncritical",
            under(&bc_noncritical, "leaf", &|_| {}),
            &[&bc_noncritical],
        ),
        chain("ca-no-ku", under(&ca_no_ku, "leaf", &|_| {}), &[&ca_no_ku]),
        chain("ca-v1", under(&ca_v1, "leaf", &|_| {}), &[&ca_v1]),
        chain(
            "ca-eku-server",
            under(&ca_eku_server, "leaf", &|_| {}),
            &[&ca_eku_server],
        ),
        chain("ca-rsa2048", under(&ca_rsa, "leaf", &|_| {}), &[&ca_rsa]),
        chain("ca-p384", under(&ca_p384, "leaf", &|_| {}), &[&ca_p384]),
        chain(
            "ca-ed25519",
            under(&ca_ed25519, "leaf", &|_| {}),
            &[&ca_ed25519],
        ),
        (
            "nc-rcgen-inside".to_owned(),
            vec![rc_nc_leaf_ok.clone(), rc_nc_cert.clone()],
        ),
        (
            "nc-rcgen-outside".to_owned(),
            vec![rc_nc_leaf_bad.clone(), rc_nc_cert.clone()],
        ),
        (
            "reversed-order".to_owned(),
            vec![pathlen0.cert.clone(), under(&pathlen0, "leaf", &|_| {})],
        ),
    ];
    for (name, certs) in &chains {
        edge.certs.push((format!("chain-{name}"), certs[0].clone()));
    }
    // Single leaves under the fixture's root also go through the handshake.
    for (name, der) in &leaves {
        chains.push((name.clone(), vec![der.clone()]));
    }
    edge.certs.extend(leaves.iter().cloned());
    edge.chains = chains;

    // ---- CRLs --------------------------------------------------------------------------------

    let client_serial = cert_serial(&fx.client.der);
    let crl_base = |number: u64| Crl {
        version: Some(uint(1)),
        issuer: root.name.clone(),
        this_update: utc("250101000000Z"),
        next_update: Some(gen_time("20900101000000Z")),
        entries: Vec::new(),
        empty_list: false,
        extensions: Some(vec![
            aki(&root.key_id),
            ext(CRL_NUMBER, false, &uint(number)),
        ]),
    };
    let mut crls: Vec<(String, Vec<u8>)> = Vec::new();
    let mut crl = |name: &str, number: u64, tweak: &dyn Fn(&mut Crl)| {
        let mut c = crl_base(number);
        tweak(&mut c);
        crls.push((name.to_owned(), c.signed_by(&root)));
    };
    crl("empty", 10, &|_| {});
    crl("empty-list-present", 11, &|c| c.empty_list = true);
    crl("v1", 12, &|c| {
        c.version = None;
        c.extensions = None;
        c.entries = vec![entry(int(&client_serial), &[])];
    });
    crl("many", 13, &|c| {
        c.entries = (0..200u64)
            .map(|i| entry(uint(0x0f00_0000 + i * 7919), &[reason((i % 11) as u8)]))
            .collect();
        c.entries.insert(100, entry(int(&client_serial), &[]));
    });
    crl("reasons", 14, &|c| {
        c.entries = (0..=11u8)
            .map(|r| entry(uint(0x0d00_0000 + u64::from(r)), &[reason(r)]))
            .collect();
        c.entries.push(entry(int(&client_serial), &[reason(1)]));
    });
    crl("reason-remove-from-crl", 15, &|c| {
        c.entries = vec![entry(int(&client_serial), &[reason(8)])]
    });
    crl("reason-hold", 16, &|c| {
        c.entries = vec![entry(int(&client_serial), &[reason(6)])]
    });
    crl("reason-bad", 17, &|c| {
        c.entries = vec![
            entry(int(&client_serial), &[ext(REASON, false, &uint(300))]),
            entry(uint(5), &[ext(REASON, false, &tlv(0x0a, &[0xff]))]),
        ]
    });
    crl("invalidity-date", 18, &|c| {
        c.entries = vec![entry(
            int(&client_serial),
            &[
                reason(1),
                ext(INVALIDITY_DATE, false, &gen_time("20241231000000Z")),
            ],
        )]
    });
    crl("invalidity-date-utc", 19, &|c| {
        c.entries = vec![entry(
            int(&client_serial),
            &[ext(INVALIDITY_DATE, false, &utc("241231000000Z"))],
        )]
    });
    crl("delta", 20, &|c| {
        c.extensions
            .as_mut()
            .unwrap()
            .push(ext(DELTA_CRL, true, &uint(10)));
        c.entries = vec![entry(int(&client_serial), &[reason(1)])];
    });
    crl("freshest-crl", 21, &|c| {
        c.extensions.as_mut().unwrap().push(ext(
            FRESHEST_CRL,
            false,
            &seq(&[seq(&[idp_uris(&["http://crl.example.com/delta.crl"])])]),
        ));
    });
    crl("idp-uris", 22, &|c| {
        c.extensions.as_mut().unwrap().push(idp(&[idp_uris(&[
            "http://crl.example.com/a.crl",
            "http://crl.example.com/b.crl",
            "ldap://ldap.example.com/cn=crl?certificateRevocationList",
        ])]));
    });
    crl("idp-user-only", 23, &|c| {
        c.extensions.as_mut().unwrap().push(idp(&[ctx(1, &[0xff])]));
        c.entries = vec![entry(int(&client_serial), &[])];
    });
    crl("idp-ca-only", 24, &|c| {
        c.extensions.as_mut().unwrap().push(idp(&[ctx(2, &[0xff])]));
        c.entries = vec![entry(int(&client_serial), &[])];
    });
    crl("idp-user-and-ca", 25, &|c| {
        c.extensions
            .as_mut()
            .unwrap()
            .push(idp(&[ctx(1, &[0xff]), ctx(2, &[0xff])]));
    });
    crl("idp-some-reasons", 26, &|c| {
        c.extensions.as_mut().unwrap().push(idp(&[
            idp_uris(&["http://crl.example.com/a.crl"]),
            ctx(3, &[0x06, 0x40]),
        ]));
        c.entries = vec![entry(int(&client_serial), &[reason(1)])];
    });
    crl("idp-indirect", 27, &|c| {
        c.extensions.as_mut().unwrap().push(idp(&[ctx(4, &[0xff])]));
        c.entries = vec![
            entry(
                uint(77),
                &[ext(
                    CERTIFICATE_ISSUER,
                    true,
                    &seq(&[gn_dir(&cn("Another CA"))]),
                )],
            ),
            entry(int(&client_serial), &[]),
        ];
    });
    crl("idp-attribute-only", 28, &|c| {
        c.extensions.as_mut().unwrap().push(idp(&[ctx(5, &[0xff])]));
    });
    crl("idp-relative-name", 29, &|c| {
        c.extensions.as_mut().unwrap().push(idp(&[ctx_cons(
            0,
            &[ctx_cons(1, &[atv(CN, UTF8, b"shard-1")])],
        )]));
    });
    crl("idp-empty", 30, &|c| {
        c.extensions.as_mut().unwrap().push(idp(&[]))
    });
    crl("idp-noncritical", 31, &|c| {
        c.extensions.as_mut().unwrap().push(ext(
            IDP,
            false,
            &seq(&[idp_uris(&["http://crl.example.com/a.crl"])]),
        ));
    });
    crl("idp-false-explicit", 32, &|c| {
        c.extensions.as_mut().unwrap().push(idp(&[
            idp_uris(&["http://crl.example.com/a.crl"]),
            ctx(1, &[0x00]),
        ]));
    });
    crl("no-next-update", 33, &|c| {
        c.next_update = None;
        c.entries = vec![entry(int(&client_serial), &[])];
    });
    crl("this-update-future", 34, &|c| {
        c.this_update = gen_time("20800101000000Z");
        c.next_update = Some(gen_time("20810101000000Z"));
    });
    crl("next-before-this", 35, &|c| {
        c.this_update = utc("250101000000Z");
        c.next_update = Some(utc("240101000000Z"));
    });
    crl("times-gen-before-2050", 36, &|c| {
        c.this_update = gen_time("20250101000000Z");
        c.next_update = Some(gen_time("20300101000000Z"));
    });
    crl("times-utc-2049", 37, &|c| {
        c.this_update = utc("491231235959Z");
        c.next_update = Some(gen_time("20500101000000Z"));
    });
    crl("unknown-critical-entry-ext", 38, &|c| {
        c.entries = vec![entry(
            int(&client_serial),
            &[ext(UNKNOWN_EXT, true, &[0x05, 0x00])],
        )];
    });
    crl("unknown-noncritical-entry-ext", 39, &|c| {
        c.entries = vec![entry(
            int(&client_serial),
            &[ext(UNKNOWN_EXT, false, &[0x05, 0x00])],
        )];
    });
    crl("unknown-critical-ext", 40, &|c| {
        c.extensions
            .as_mut()
            .unwrap()
            .push(ext(UNKNOWN_EXT, true, &[0x05, 0x00]));
    });
    crl("unknown-noncritical-ext", 41, &|c| {
        c.extensions
            .as_mut()
            .unwrap()
            .push(ext(UNKNOWN_EXT, false, &[0x05, 0x00]));
    });
    crl("dup-crl-number", 42, &|c| {
        c.extensions
            .as_mut()
            .unwrap()
            .push(ext(CRL_NUMBER, false, &uint(43)));
    });
    crl("crl-number-21-bytes", 0, &|c| {
        c.extensions = Some(vec![
            aki(&root.key_id),
            ext(CRL_NUMBER, false, &int(&[0x01; 21])),
        ]);
    });
    crl("crl-number-negative", 0, &|c| {
        c.extensions = Some(vec![
            aki(&root.key_id),
            ext(CRL_NUMBER, false, &int(&[0xfe])),
        ]);
    });
    crl("crl-number-absent", 0, &|c| {
        c.extensions = Some(vec![aki(&root.key_id)]);
    });
    crl("aki-mismatch", 44, &|c| {
        c.extensions = Some(vec![aki(&[0x5a; 20]), ext(CRL_NUMBER, false, &uint(44))]);
    });
    crl("aki-absent", 45, &|c| {
        c.extensions = Some(vec![ext(CRL_NUMBER, false, &uint(45))]);
    });
    let edge_serials: Vec<Vec<u8>> = serials_edge.iter().map(|(_, s)| s.clone()).collect();
    crl("serial-edges", 46, &|c| {
        c.entries = edge_serials.iter().map(|s| entry(int(s), &[])).collect();
    });
    crl("dup-entry", 47, &|c| {
        c.entries = vec![
            entry(int(&client_serial), &[reason(1)]),
            entry(int(&client_serial), &[reason(8)]),
        ];
    });
    crl("entry-gen-time", 48, &|c| {
        c.entries = vec![seq(&[int(&client_serial), gen_time("20250101000000Z")])];
    });
    crl("issuer-respelled", 49, &|c| {
        c.issuer = name1(&[
            atv(CN, PRINTABLE, b"FUZZ ROOT  CA"),
            atv(O, PRINTABLE, b"tower-mtls tests"),
        ]);
        c.entries = vec![entry(int(&client_serial), &[])];
    });
    crl("v2-without-extensions", 50, &|c| c.extensions = None);
    crl("version-3", 51, &|c| c.version = Some(uint(2)));

    // rcgen CRLs: reason codes with invalidity dates, scopes (user / CA only), many entries.
    let rc_crl = |number: u64, tweak: &dyn Fn(&mut CertificateRevocationListParams)| {
        let mut p = CertificateRevocationListParams {
            this_update: date_time_ymd(2025, 1, 1),
            next_update: date_time_ymd(2090, 1, 1),
            crl_number: SerialNumber::from(number),
            issuing_distribution_point: None,
            revoked_certs: Vec::new(),
            key_identifier_method: KeyIdMethod::Sha256,
        };
        tweak(&mut p);
        p.signed_by(&root_issuer).expect("rcgen CRL").der().to_vec()
    };
    let revoked = |serial: &[u8], reason: RevocationReason, invalid: bool| RevokedCertParams {
        serial_number: SerialNumber::from_slice(serial),
        revocation_time: date_time_ymd(2025, 1, 1),
        reason_code: Some(reason),
        invalidity_date: invalid.then(|| date_time_ymd(2024, 12, 1)),
    };
    crls.push((
        "rcgen-reasons".into(),
        rc_crl(60, &|p| {
            p.revoked_certs = vec![
                revoked(&client_serial, RevocationReason::KeyCompromise, true),
                revoked(&[0x01], RevocationReason::CaCompromise, false),
                revoked(&[0x02], RevocationReason::AffiliationChanged, true),
                revoked(&[0x03], RevocationReason::Superseded, false),
                revoked(&[0x04], RevocationReason::CessationOfOperation, false),
                revoked(&[0x05], RevocationReason::CertificateHold, false),
                revoked(&[0x06], RevocationReason::RemoveFromCrl, false),
                revoked(&[0x07], RevocationReason::PrivilegeWithdrawn, false),
                revoked(&[0x08], RevocationReason::AaCompromise, false),
                revoked(&[0x09], RevocationReason::Unspecified, true),
            ]
        }),
    ));
    for (what, scope, number) in [
        ("rcgen-scope-user", CrlScope::UserCertsOnly, 61),
        ("rcgen-scope-ca", CrlScope::CaCertsOnly, 62),
    ] {
        crls.push((
            what.into(),
            rc_crl(number, &|p| {
                p.issuing_distribution_point = Some(CrlIssuingDistributionPoint {
                    distribution_point: CrlDistributionPoint {
                        uris: vec!["http://crl.example.com/a.crl".into()],
                    },
                    scope: Some(scope),
                });
                p.revoked_certs =
                    vec![revoked(&client_serial, RevocationReason::Superseded, false)];
            }),
        ));
    }
    crls.push((
        "rcgen-many".into(),
        rc_crl(63, &|p| {
            p.revoked_certs = (0..150u32)
                .map(|i| {
                    revoked(
                        &(0x0c00_0000 + i).to_be_bytes(),
                        RevocationReason::KeyCompromise,
                        i % 3 == 0,
                    )
                })
                .collect()
        }),
    ));

    // Trailing bytes after a valid CRL (NOT validly framed: the outer SEQUENCE ends early).
    let plain = crls[0].1.clone();
    crls.push((
        "trailing-zeros".into(),
        [plain.clone(), vec![0, 0]].concat(),
    ));
    // A CRL directly followed by another (the `v1` one).
    crls.push((
        "trailing-crl".into(),
        [plain.clone(), crls[2].1.clone()].concat(),
    ));
    let mut inner_trailing = plain.clone();
    // The outer SEQUENCE's length grown by two, two bytes appended: trailing data inside it
    // (the signature then no longer covers the same bytes: not validly signed).
    if inner_trailing[1] == 0x81 {
        inner_trailing[2] += 2;
        inner_trailing.extend([0x05, 0x00]);
        crls.push(("trailing-inside".into(), inner_trailing));
    }

    // CRLs of the other CAs (other signature algorithms; scoped to their own issuers).
    for (what, ca) in [
        ("ca-rsa2048", &ca_rsa),
        ("ca-p384", &ca_p384),
        ("ca-ed25519", &ca_ed25519),
        ("nc-dns", &nc_dns),
        ("pathlen0", &pathlen0),
    ] {
        let mut c = crl_base(70);
        c.issuer = ca.name.clone();
        c.extensions = Some(vec![aki(&ca.key_id), ext(CRL_NUMBER, false, &uint(70))]);
        c.entries = vec![entry(uint(1), &[reason(1)])];
        let der = c.signed_by(ca);
        edge.signed.push((
            format!("crl-{what}"),
            join(&[&der, &ca.key.subject_public_key_info()]),
        ));
        crls.push((format!("issuer-{what}"), der));
    }
    edge.crls = crls;

    // ---- crl_select: params | cert | CRLs ---------------------------------------------------
    let by_name = |name: &str| -> Vec<u8> {
        edge.crls
            .iter()
            .find(|(n, _)| n == name)
            .unwrap_or_else(|| panic!("no CRL {name}"))
            .1
            .clone()
    };
    let cert_named = |name: &str| -> Vec<u8> {
        edge.certs
            .iter()
            .find(|(n, _)| n == name)
            .unwrap_or_else(|| panic!("no cert {name}"))
            .1
            .clone()
    };
    let params = |now: u64, flags: u8, serial: &[u8]| {
        let mut p = ((now / 2) as u32).to_be_bytes().to_vec();
        p.push(flags);
        p.extend_from_slice(serial);
        p
    };
    let now = 1_750_000_000u64;
    let client = fx.client.der.to_vec();
    let mut select = Vec::new();
    let mut sel = |name: &str, p: Vec<u8>, cert: Vec<u8>, crl_names: &[&str]| {
        let crl_ders: Vec<Vec<u8>> = crl_names.iter().map(|n| by_name(n)).collect();
        let mut parts: Vec<&[u8]> = vec![&p, &cert];
        parts.extend(crl_ders.iter().map(|d| d.as_slice()));
        select.push((name.to_owned(), join(&parts)));
    };
    let cs = &client_serial;
    sel(
        "many-reasons-empty",
        params(now, 0, cs),
        client.clone(),
        &["many", "reasons", "empty"],
    );
    sel(
        "numbers-and-dup",
        params(now, 1, cs),
        client.clone(),
        &[
            "empty",
            "dup-crl-number",
            "crl-number-21-bytes",
            "crl-number-negative",
            "crl-number-absent",
        ],
    );
    sel(
        "delta-and-base",
        params(now, 0, cs),
        client.clone(),
        &["empty", "delta", "freshest-crl"],
    );
    sel(
        "indirect-some-reasons",
        params(now, 0, cs),
        client.clone(),
        &["idp-indirect", "idp-some-reasons", "empty"],
    );
    sel(
        "scopes-user",
        params(now, 0, cs),
        client.clone(),
        &[
            "idp-user-only",
            "idp-ca-only",
            "rcgen-scope-user",
            "rcgen-scope-ca",
        ],
    );
    sel(
        "scopes-ca",
        params(now, 2, cs),
        client.clone(),
        &["idp-user-only", "idp-ca-only", "idp-user-and-ca", "empty"],
    );
    sel(
        "scoped-cdp",
        params(now, 0, &cert_serial(&cert_named("cdp-two"))),
        cert_named("cdp-two"),
        &["idp-uris", "idp-relative-name", "empty", "idp-empty"],
    );
    sel(
        "scoped-rcgen-cdp",
        params(now, 1, &cert_serial(&cert_named("rcgen-cdp"))),
        cert_named("rcgen-cdp"),
        &["rcgen-scope-user", "idp-uris", "idp-noncritical"],
    );
    sel(
        "times",
        params(now, 1, cs),
        client.clone(),
        &[
            "no-next-update",
            "this-update-future",
            "next-before-this",
            "times-utc-2049",
        ],
    );
    sel(
        "times-late",
        params(2_600_000_000, 1, cs),
        client.clone(),
        &["times-gen-before-2050", "times-utc-2049", "empty"],
    );
    sel(
        "unknown-critical",
        params(now, 0, cs),
        client.clone(),
        &[
            "unknown-critical-entry-ext",
            "unknown-critical-ext",
            "unknown-noncritical-ext",
            "unknown-noncritical-entry-ext",
        ],
    );
    sel(
        "trailing",
        params(now, 0, cs),
        client.clone(),
        &["trailing-zeros", "trailing-crl", "empty"],
    );
    sel(
        "aki",
        params(now, 0, cs),
        client.clone(),
        &["aki-mismatch", "aki-absent", "issuer-respelled"],
    );
    sel(
        "hold-remove-dup",
        params(now, 0, cs),
        client.clone(),
        &[
            "reason-hold",
            "reason-remove-from-crl",
            "dup-entry",
            "entry-gen-time",
        ],
    );
    sel(
        "versions",
        params(now, 0, cs),
        client.clone(),
        &[
            "v1",
            "v2-without-extensions",
            "version-3",
            "empty-list-present",
        ],
    );
    sel(
        "rcgen",
        params(now, 0, cs),
        client.clone(),
        &[
            "rcgen-reasons",
            "rcgen-many",
            "invalidity-date",
            "invalidity-date-utc",
        ],
    );
    sel(
        "other-issuers",
        params(now, 0, &[0x01]),
        chains_leaf(&edge.chains, "ca-rsa2048"),
        &[
            "issuer-ca-rsa2048",
            "issuer-ca-p384",
            "issuer-ca-ed25519",
            "empty",
        ],
    );
    sel(
        "pathlen0-issuer",
        params(now, 2, &[0x01]),
        chains_leaf(&edge.chains, "pathlen0-ok"),
        &["issuer-pathlen0", "issuer-nc-dns", "empty"],
    );
    for (what, content) in &serials_edge {
        sel(
            &format!("serial-{what}"),
            params(now, 0, content),
            cert_named(&format!("serial-{what}")),
            &["serial-edges", "empty"],
        );
    }
    edge.select = select;

    // ---- name_compare: names alone, and triples ---------------------------------------------
    let mut names = Vec::new();
    let triple = |a: &[u8], b: &[u8], c: &[u8]| join(&[a, b, c]);
    let n = |tag: u8, value: &[u8]| name1(&[atv(CN, tag, value)]);
    names.push((
        "types-1".to_owned(),
        triple(
            &n(PRINTABLE, b"Edge Name"),
            &n(UTF8, b"Edge Name"),
            &n(BMP, &bmp("Edge Name")),
        ),
    ));
    names.push((
        "types-2".to_owned(),
        triple(
            &n(TELETEX, b"Edge Name"),
            &n(IA5, b"Edge Name"),
            &n(UNIVERSAL, &universal("Edge Name")),
        ),
    ));
    names.push((
        "fold".to_owned(),
        triple(
            &n(PRINTABLE, b"Edge  Name"),
            &n(UTF8, b"edge name"),
            &n(BMP, &bmp(" EDGE NAME ")),
        ),
    ));
    names.push((
        "fold-unicode".to_owned(),
        triple(
            &n(UTF8, "STRASSE".as_bytes()),
            &n(UTF8, "stra\u{df}e".as_bytes()),
            &n(UTF8, "\u{130}stanbul".as_bytes()),
        ),
    ));
    let ab = [atv(CN, UTF8, b"a"), atv(O, UTF8, b"b")];
    names.push((
        "multivalued".to_owned(),
        triple(
            &name(&[ab.to_vec()]),
            &seq(&[cons(0x31, &[ab[1].clone(), ab[0].clone()])]),
            &name1(&ab),
        ),
    ));
    names.push((
        "escapes".to_owned(),
        triple(
            &n(UTF8, b",+\"\\<>;#="),
            &n(UTF8, b"\\,\\+\\\"\\\\\\<\\>\\;\\#\\="),
            &n(UTF8, b"#2C"),
        ),
    ));
    names.push((
        "escapes-plus".to_owned(),
        triple(
            &name(&[vec![atv(CN, UTF8, b"a"), atv(O, UTF8, b"b")]]),
            &n(UTF8, b"a+O=b"),
            &name1(&[atv(CN, UTF8, b"a+O=b")]),
        ),
    ));
    names.push((
        "controls".to_owned(),
        triple(&n(UTF8, b"a\0b"), &n(UTF8, b"a b"), &n(UTF8, b"a\\00b")),
    ));
    names.push((
        "controls-2".to_owned(),
        triple(
            &n(UTF8, b"a\nb"),
            &n(UTF8, b"a\\0Ab"),
            &n(BMP, &bmp("a\nb")),
        ),
    ));
    names.push((
        "bidi".to_owned(),
        triple(
            &n(UTF8, "\u{202E}abc".as_bytes()),
            &n(UTF8, "\u{200B}abc".as_bytes()),
            &n(UTF8, b"abc"),
        ),
    ));
    names.push((
        "spaces".to_owned(),
        triple(&n(UTF8, b" a"), &n(UTF8, b"\\ a"), &n(UTF8, b"a ")),
    ));
    names.push((
        "empty".to_owned(),
        triple(&seq(&[]), &seq(&[tlv(0x31, &[])]), &n(UTF8, b"")),
    ));
    names.push((
        "long".to_owned(),
        triple(
            &n(UTF8, "x".repeat(2000).as_bytes()),
            &n(PRINTABLE, "X".repeat(2000).as_bytes()),
            &many_rdns,
        ),
    ));
    names.push((
        "attr-types".to_owned(),
        triple(
            &name1(&[atv(EMAIL_ADDRESS, IA5, b"Ops@Example.com")]),
            &name1(&[atv(EMAIL_ADDRESS, UTF8, b"ops@example.com")]),
            &name1(&[atv(UNKNOWN_ATTR, 0x02, &[0x01]), atv(DC, IA5, b"org")]),
        ),
    ));
    names.push((
        "invalid-strings".to_owned(),
        triple(
            &n(UTF8, b"\xff\xfe"),
            &n(BMP, &[0x00, 0x41, 0x00]),
            &n(UNIVERSAL, &[0x00, 0x11, 0x00, 0x00]),
        ),
    ));
    names.push((
        "hex-value".to_owned(),
        triple(
            &name1(&[atv(CN, 0x04, b"ABC")]),
            &n(UTF8, b"#04034142 43"),
            &name1(&[atv(UNKNOWN_ATTR, UTF8, b"ABC")]),
        ),
    ));
    names.push(("all-strings".to_owned(), all_strings.clone()));
    for (what, atv_der) in &strings {
        names.push((
            format!("single-{what}"),
            name1(std::slice::from_ref(atv_der)),
        ));
    }
    for (what, ca) in &cas {
        names.push((format!("ca-{what}"), ca.name.clone()));
    }
    edge.names = names;

    // `Signed` seeds: hand-built leaves with the fixture root's SubjectPublicKeyInfo.
    let root_spki = root.key.subject_public_key_info();
    for name in [
        "v1",
        "v2-unique-ids",
        "dup-ext-san",
        "serial-negative",
        "time-9999",
        "key-rsa2048",
        "key-ed25519",
    ] {
        edge.signed.push((
            format!("leaf-{name}"),
            join(&[&cert_named(name), &root_spki]),
        ));
    }
    edge
}

fn chains_leaf(chains: &[(String, Vec<Vec<u8>>)], name: &str) -> Vec<u8> {
    chains
        .iter()
        .find(|(n, _)| n == name)
        .unwrap_or_else(|| panic!("no chain {name}"))
        .1[0]
        .clone()
}

/// A client leaf made by rcgen for `key`, issued by `issuer`, as `tweak` changes it.
fn rcgen_leaf(
    issuer: &Issuer<'_, &KeyPair>,
    key: &KeyPair,
    cn_value: &str,
    tweak: impl FnOnce(&mut CertificateParams),
) -> Vec<u8> {
    let mut p = CertificateParams::default();
    p.distinguished_name = DistinguishedName::new();
    p.distinguished_name.push(DnType::CommonName, cn_value);
    p.not_before = date_time_ymd(2024, 1, 1);
    p.not_after = date_time_ymd(2090, 1, 1);
    p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    p.use_authority_key_identifier_extension = true;
    tweak(&mut p);
    p.signed_by(key, issuer).expect("rcgen leaf").der().to_vec()
}

/// `flight` (a TLS 1.2 client's bytes) with its Certificate message replaced by `chain`.
/// rustls checks the client's chain as soon as it reads that message, before
/// CertificateVerify: the rest of the flight need not match.
pub fn splice_certificate(flight: &[u8], chain: &[Vec<u8>]) -> Option<Vec<u8>> {
    let u24 = |n: usize| [(n >> 16) as u8, (n >> 8) as u8, n as u8];
    let mut out = Vec::new();
    let mut rest = flight;
    let mut done = false;
    while rest.len() >= 5 {
        let len = usize::from(u16::from_be_bytes([rest[3], rest[4]]));
        let record = rest.get(..5 + len)?;
        rest = &rest[5 + len..];
        if !done && record[0] == 0x16 && record.get(5) == Some(&0x0b) {
            let msg_len = (usize::from(record[6]) << 16)
                | (usize::from(record[7]) << 8)
                | usize::from(record[8]);
            let tail = record.get(9 + msg_len..)?;
            let mut list = Vec::new();
            for cert in chain {
                list.extend(u24(cert.len()));
                list.extend_from_slice(cert);
            }
            let mut body = u24(list.len()).to_vec();
            body.extend(list);
            let mut payload = vec![0x0b];
            payload.extend(u24(body.len()));
            payload.extend(body);
            payload.extend_from_slice(tail);
            if payload.len() > 16384 {
                return None;
            }
            out.extend_from_slice(&record[..3]);
            out.extend((payload.len() as u16).to_be_bytes());
            out.extend(payload);
            done = true;
            continue;
        }
        out.extend_from_slice(record);
    }
    done.then_some(out)
}
