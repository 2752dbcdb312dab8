//! Throwaway PKI for tests, examples and benches: CAs, server and client certificates made
//! with rcgen at run time. No private key is ever committed.
//!
//! Used by the tests, the examples and the benches alike.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, CustomExtension, DistinguishedName, DnType, DnValue,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType, SignatureAlgorithm,
    date_time_ymd,
};
use rustls::pki_types::CertificateDer;

/// Key algorithms the tests cover.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Alg {
    EcdsaP256,
    EcdsaP384,
    Rsa2048,
    Ed25519,
}

impl Alg {
    pub const ALL: [Alg; 4] = [Alg::EcdsaP256, Alg::EcdsaP384, Alg::Rsa2048, Alg::Ed25519];

    fn signature_algorithm(self) -> &'static SignatureAlgorithm {
        match self {
            Alg::EcdsaP256 => &rcgen::PKCS_ECDSA_P256_SHA256,
            Alg::EcdsaP384 => &rcgen::PKCS_ECDSA_P384_SHA384,
            Alg::Rsa2048 => &rcgen::PKCS_RSA_SHA256,
            Alg::Ed25519 => &rcgen::PKCS_ED25519,
        }
    }

    pub fn generate(self) -> KeyPair {
        match self {
            Alg::Rsa2048 => {
                KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, rcgen::RsaKeySize::_2048)
            }
            other => KeyPair::generate_for(other.signature_algorithm()),
        }
        .expect("key generation")
    }
}

/// A certificate authority that can issue certificates.
pub struct Ca {
    pub name: String,
    pub cert_pem: String,
    pub der: CertificateDer<'static>,
    params: CertificateParams,
    key: KeyPair,
}

impl Ca {
    /// A self-signed root CA with an ECDSA P-256 key.
    pub fn new(cn: &str) -> Ca {
        Self::with_alg(cn, Alg::EcdsaP256)
    }

    /// A self-signed root CA with the given key algorithm.
    pub fn with_alg(cn: &str, alg: Alg) -> Ca {
        let key = alg.generate();
        let params = ca_params(cn);
        let cert = params.self_signed(&key).expect("self-signed CA");
        Ca {
            name: cn.to_owned(),
            cert_pem: cert.pem(),
            der: cert.der().clone(),
            params,
            key,
        }
    }

    /// An intermediate CA issued by this one.
    pub fn intermediate(&self, cn: &str) -> Ca {
        let key = Alg::EcdsaP256.generate();
        let params = ca_params(cn);
        let cert = params
            .signed_by(&key, &self.issuer())
            .expect("intermediate CA");
        Ca {
            name: cn.to_owned(),
            cert_pem: cert.pem(),
            der: cert.der().clone(),
            params,
            key,
        }
    }

    fn issuer(&self) -> Issuer<'_, &KeyPair> {
        Issuer::from_params(&self.params, &self.key)
    }

    /// A server certificate for `localhost` and 127.0.0.1.
    pub fn server(&self) -> Leaf {
        self.issue(&LeafSpec::server())
    }

    /// A client certificate with this common name.
    pub fn client(&self, cn: &str) -> Leaf {
        self.issue(&LeafSpec::client(cn))
    }

    /// A certificate built from `spec`.
    pub fn issue(&self, spec: &LeafSpec) -> Leaf {
        let key = spec.alg.generate();
        let params = spec.params();
        let cert = params.signed_by(&key, &self.issuer()).expect("issue");
        Leaf {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            der: cert.der().clone(),
            chain_pem: cert.pem(),
        }
    }

    /// A certificate built from `spec`, with this (intermediate) CA appended to its PEM chain.
    pub fn issue_with_chain(&self, spec: &LeafSpec) -> Leaf {
        let mut leaf = self.issue(spec);
        leaf.chain_pem = format!("{}{}", leaf.cert_pem, self.cert_pem);
        leaf
    }

    /// This CA's certificate written to `dir/name`.
    pub fn write(&self, dir: &Path, name: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, &self.cert_pem).expect("write CA");
        path
    }

    /// The CA's key, PKCS#8 PEM (to sign CRLs).
    pub fn key_pem(&self) -> String {
        self.key.serialize_pem()
    }

    /// A CRL revoking `revoked`, signed by this CA: number 1, thisUpdate 2024-01-01,
    /// nextUpdate 2090-01-01.
    pub fn crl(&self, revoked: &[&Leaf]) -> String {
        self.crl_with(&CrlSpec::new(1, (2024, 1, 1)).revoking(revoked))
    }

    /// A CRL as `spec` describes it, signed by this CA, PEM.
    pub fn crl_with(&self, spec: &CrlSpec) -> String {
        spec.sign(&self.issuer()).pem().expect("CRL PEM")
    }

    /// A CRL as `spec` describes it, signed by this CA, DER.
    pub fn crl_der_with(&self, spec: &CrlSpec) -> Vec<u8> {
        spec.sign(&self.issuer()).der().to_vec()
    }

    /// A CRL signed by this CA's key whose issuer field is `issuer_name` instead of this CA's
    /// subject as encoded in its certificate (see [`Ca::respelled_name`]).
    pub fn crl_with_issuer_name(&self, spec: &CrlSpec, issuer_name: DistinguishedName) -> String {
        let mut params = self.params.clone();
        params.distinguished_name = issuer_name;
        let issuer = Issuer::from_params(&params, &self.key);
        spec.sign(&issuer).pem().expect("CRL PEM")
    }

    /// [`Ca::crl_with`], but the CRL spells this CA's name differently: every attribute as a
    /// PrintableString instead of rcgen's UTF8String (`printable`), and/or in upper case
    /// (`upper`). By RFC 5280 rules it is the same name.
    pub fn respelled_issuer_crl(&self, spec: &CrlSpec, printable: bool, upper: bool) -> String {
        self.crl_with_issuer_name(spec, self.respelled_name(printable, upper))
    }

    /// This CA's subject, re-spelled (see [`Ca::respelled_issuer_crl`]).
    pub fn respelled_name(&self, printable: bool, upper: bool) -> DistinguishedName {
        let mut name = DistinguishedName::new();
        for (ty, value) in self.params.distinguished_name.iter() {
            let text = match value {
                DnValue::Utf8String(s) => s.clone(),
                DnValue::PrintableString(s) => s.as_str().to_owned(),
                other => panic!("unexpected DN value {other:?}"),
            };
            let text = if upper { text.to_uppercase() } else { text };
            let value = if printable {
                DnValue::PrintableString(text.as_str().try_into().expect("printable"))
            } else {
                DnValue::Utf8String(text)
            };
            name.push(ty.clone(), value);
        }
        name
    }

    /// A self-signed root CA whose parameters `tweak` may change (extensions, validity, …)
    /// before it is signed.
    pub fn with_params(cn: &str, tweak: impl FnOnce(&mut CertificateParams)) -> Ca {
        let key = Alg::EcdsaP256.generate();
        let mut params = ca_params(cn);
        tweak(&mut params);
        let cert = params.self_signed(&key).expect("self-signed CA");
        Ca {
            name: cn.to_owned(),
            cert_pem: cert.pem(),
            der: cert.der().clone(),
            params,
            key,
        }
    }

    /// This CA's certificate and key as a client identity (to present a CA certificate as a
    /// client's own).
    pub fn as_leaf(&self) -> Leaf {
        Leaf {
            cert_pem: self.cert_pem.clone(),
            key_pem: self.key.serialize_pem(),
            der: self.der.clone(),
            chain_pem: self.cert_pem.clone(),
        }
    }

    /// A certificate built from `spec`, whose parameters `tweak` may change before signing.
    pub fn issue_with(&self, spec: &LeafSpec, tweak: impl FnOnce(&mut CertificateParams)) -> Leaf {
        let key = spec.alg.generate();
        let mut params = spec.params();
        tweak(&mut params);
        let cert = params.signed_by(&key, &self.issuer()).expect("issue");
        Leaf {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            der: cert.der().clone(),
            chain_pem: cert.pem(),
        }
    }
}

/// What a CRL says: its number, its dates and the serials it revokes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CrlSpec {
    /// The CRLNumber extension.
    pub number: u64,
    /// thisUpdate (year, month, day).
    pub this_update: (i32, u8, u8),
    /// nextUpdate (year, month, day); must be after `this_update`.
    pub next_update: (i32, u8, u8),
    /// Serial numbers (big-endian bytes, as [`Leaf::serial`] returns them).
    pub revoked: Vec<Vec<u8>>,
    /// Exact thisUpdate and nextUpdate (second precision), overriding the dates.
    pub exact_times: Option<(std::time::SystemTime, std::time::SystemTime)>,
    /// An issuingDistributionPoint with these full-name URIs: a CRL for only the certificates
    /// whose CRLDistributionPoints name one of them (a shard).
    pub scope: Option<Vec<String>>,
}

impl CrlSpec {
    /// CRL number `number` issued on `this_update`, valid until 2090, revoking nothing.
    pub fn new(number: u64, this_update: (i32, u8, u8)) -> CrlSpec {
        CrlSpec {
            number,
            this_update,
            next_update: (2090, 1, 1),
            revoked: Vec::new(),
            exact_times: None,
            scope: None,
        }
    }

    /// thisUpdate and nextUpdate to the second, instead of the dates.
    pub fn at(
        mut self,
        this_update: std::time::SystemTime,
        next_update: std::time::SystemTime,
    ) -> CrlSpec {
        self.exact_times = Some((this_update, next_update));
        self
    }

    /// A shard: an issuingDistributionPoint naming `uri` as the CRL's distribution point.
    pub fn scoped(mut self, uri: &str) -> CrlSpec {
        self.scope.get_or_insert_with(Vec::new).push(uri.to_owned());
        self
    }

    /// Also revokes these certificates.
    pub fn revoking(mut self, leaves: &[&Leaf]) -> CrlSpec {
        self.revoked.extend(leaves.iter().map(|l| l.serial()));
        self
    }

    /// Also revokes this serial number (big-endian bytes).
    pub fn revoking_serial(mut self, serial: &[u8]) -> CrlSpec {
        self.revoked.push(serial.to_vec());
        self
    }

    /// Sets nextUpdate.
    pub fn next_update(mut self, date: (i32, u8, u8)) -> CrlSpec {
        self.next_update = date;
        self
    }

    /// Past its nextUpdate: thisUpdate stays, nextUpdate becomes the day after it (make
    /// `this_update` a past date).
    pub fn stale(mut self) -> CrlSpec {
        let (y, m, d) = self.this_update;
        self.next_update = if d < 28 { (y, m, d + 1) } else { (y + 1, 1, 1) };
        self
    }

    fn sign(&self, issuer: &Issuer<'_, &KeyPair>) -> rcgen::CertificateRevocationList {
        use rcgen::{
            CertificateRevocationListParams, KeyIdMethod, RevocationReason, RevokedCertParams,
            SerialNumber,
        };
        let (y, m, d) = self.this_update;
        let mut this_update = date_time_ymd(y, m, d);
        let (y, m, d) = self.next_update;
        let mut next_update = date_time_ymd(y, m, d);
        if let Some((this, next)) = self.exact_times {
            this_update = exact(this);
            next_update = exact(next);
        }
        let params = CertificateRevocationListParams {
            this_update,
            next_update,
            crl_number: SerialNumber::from(self.number),
            issuing_distribution_point: self.scope.as_ref().map(|uris| {
                rcgen::CrlIssuingDistributionPoint {
                    distribution_point: rcgen::CrlDistributionPoint { uris: uris.clone() },
                    scope: None,
                }
            }),
            revoked_certs: self
                .revoked
                .iter()
                .map(|serial| RevokedCertParams {
                    serial_number: SerialNumber::from_slice(serial),
                    revocation_time: this_update,
                    reason_code: Some(RevocationReason::KeyCompromise),
                    invalidity_date: None,
                })
                .collect(),
            key_identifier_method: KeyIdMethod::Sha256,
        };
        params.signed_by(issuer).expect("CRL")
    }
}

/// `time` as rcgen's date, to the second (X.509 holds no finer).
fn exact(time: std::time::SystemTime) -> time::OffsetDateTime {
    let since_epoch = time
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970");
    date_time_ymd(1970, 1, 1) + std::time::Duration::from_secs(since_epoch.as_secs())
}

fn ca_params(cn: &str) -> CertificateParams {
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    params.distinguished_name.push(DnType::CommonName, cn);
    params
        .distinguished_name
        .push(DnType::OrganizationName, "tower-mtls tests");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.not_before = date_time_ymd(2020, 1, 1);
    params.not_after = date_time_ymd(2090, 1, 1);
    params.use_authority_key_identifier_extension = true;
    params
}

/// What a leaf certificate holds.
#[derive(Debug, Clone)]
pub struct LeafSpec {
    pub subject: Vec<(DnType, String)>,
    pub sans: Vec<SanType>,
    pub eku: Vec<ExtendedKeyUsagePurpose>,
    pub not_before: (i32, u8, u8),
    pub not_after: (i32, u8, u8),
    pub alg: Alg,
    pub is_ca: bool,
    pub serial: Option<u64>,
    /// Extra extensions, written after rcgen's own.
    pub extensions: Vec<CustomExtension>,
    /// An exact end of validity (to the second), overriding `not_after`.
    pub not_after_exact: Option<std::time::SystemTime>,
    /// CRLDistributionPoints: one distribution point per URI.
    pub crl_distribution_points: Vec<String>,
}

impl LeafSpec {
    pub fn server() -> LeafSpec {
        LeafSpec {
            subject: vec![(DnType::CommonName, "localhost".into())],
            sans: vec![
                SanType::DnsName("localhost".try_into().expect("dns")),
                SanType::IpAddress("127.0.0.1".parse().expect("ip")),
            ],
            eku: vec![ExtendedKeyUsagePurpose::ServerAuth],
            not_before: (2020, 1, 1),
            not_after: (2090, 1, 1),
            alg: Alg::EcdsaP256,
            is_ca: false,
            serial: None,
            extensions: Vec::new(),
            not_after_exact: None,
            crl_distribution_points: Vec::new(),
        }
    }

    pub fn client(cn: &str) -> LeafSpec {
        LeafSpec {
            subject: vec![(DnType::CommonName, cn.into())],
            sans: Vec::new(),
            eku: vec![ExtendedKeyUsagePurpose::ClientAuth],
            ..LeafSpec::server()
        }
    }

    pub fn org(mut self, o: &str) -> Self {
        self.subject.push((DnType::OrganizationName, o.into()));
        self
    }

    pub fn ou(mut self, ou: &str) -> Self {
        self.subject
            .push((DnType::OrganizationalUnitName, ou.into()));
        self
    }

    pub fn dns(mut self, name: &str) -> Self {
        self.sans
            .push(SanType::DnsName(name.try_into().expect("dns")));
        self
    }

    pub fn uri(mut self, uri: &str) -> Self {
        self.sans.push(SanType::URI(uri.try_into().expect("uri")));
        self
    }

    pub fn email(mut self, email: &str) -> Self {
        self.sans
            .push(SanType::Rfc822Name(email.try_into().expect("email")));
        self
    }

    pub fn ip(mut self, ip: IpAddr) -> Self {
        self.sans.push(SanType::IpAddress(ip));
        self
    }

    pub fn alg(mut self, alg: Alg) -> Self {
        self.alg = alg;
        self
    }

    pub fn expired(mut self) -> Self {
        self.not_before = (2020, 1, 1);
        self.not_after = (2021, 1, 1);
        self
    }

    pub fn not_yet_valid(mut self) -> Self {
        self.not_before = (2080, 1, 1);
        self.not_after = (2090, 1, 1);
        self
    }

    pub fn eku(mut self, eku: Vec<ExtendedKeyUsagePurpose>) -> Self {
        self.eku = eku;
        self
    }

    pub fn ca(mut self) -> Self {
        self.is_ca = true;
        self
    }

    pub fn serial(mut self, serial: u64) -> Self {
        self.serial = Some(serial);
        self
    }

    /// Adds an extension (e.g. an unknown critical one, or a second copy of a standard one).
    pub fn extension(mut self, extension: CustomExtension) -> Self {
        self.extensions.push(extension);
        self
    }

    /// Names `uri` in the certificate's CRLDistributionPoints.
    pub fn crl_distribution_point(mut self, uri: &str) -> Self {
        self.crl_distribution_points.push(uri.to_owned());
        self
    }

    /// Valid until exactly `not_after` (second precision; X.509 has no finer).
    pub fn not_after_time(mut self, not_after: std::time::SystemTime) -> Self {
        self.not_after_exact = Some(not_after);
        self
    }

    fn params(&self) -> CertificateParams {
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        for (ty, value) in &self.subject {
            params.distinguished_name.push(ty.clone(), value.as_str());
        }
        params.subject_alt_names = self.sans.clone();
        params.extended_key_usages = self.eku.clone();
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        let (y, m, d) = self.not_before;
        params.not_before = date_time_ymd(y, m, d);
        let (y, m, d) = self.not_after;
        params.not_after = date_time_ymd(y, m, d);
        params.use_authority_key_identifier_extension = true;
        if self.is_ca {
            params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            params.key_usages.push(KeyUsagePurpose::KeyCertSign);
        }
        if let Some(serial) = self.serial {
            params.serial_number = Some(rcgen::SerialNumber::from(serial));
        }
        if let Some(not_after) = self.not_after_exact {
            params.not_after = exact(not_after);
        }
        params.crl_distribution_points = self
            .crl_distribution_points
            .iter()
            .map(|uri| rcgen::CrlDistributionPoint {
                uris: vec![uri.clone()],
            })
            .collect();
        params
            .custom_extensions
            .extend(self.extensions.iter().cloned());
        params
    }

    /// A self-signed certificate from this spec (no CA at all).
    pub fn self_signed(&self) -> Leaf {
        let key = self.alg.generate();
        let cert = self.params().self_signed(&key).expect("self-signed");
        Leaf {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            der: cert.der().clone(),
            chain_pem: cert.pem(),
        }
    }
}

/// An issued certificate and its key.
#[derive(Debug, Clone)]
pub struct Leaf {
    /// The certificate alone.
    pub cert_pem: String,
    /// The key, PKCS#8 PEM.
    pub key_pem: String,
    pub der: CertificateDer<'static>,
    /// The certificate followed by any intermediates, as a secret's `tls.crt` holds it.
    pub chain_pem: String,
}

impl Leaf {
    /// The same certificate with one bit of its signature flipped: its authorityKeyIdentifier
    /// still names the issuer's key, and that key no longer verifies it (a corrupted or
    /// tampered certificate). The key still matches, so a client can present it.
    pub fn with_corrupted_signature(&self) -> Leaf {
        use base64::Engine;
        let mut der = self.der.as_ref().to_vec();
        // The last byte of the DER is the last byte of the signature value.
        if let Some(last) = der.last_mut() {
            *last ^= 0x01;
        }
        let body = base64::engine::general_purpose::STANDARD.encode(&der);
        let mut pem = String::from("-----BEGIN CERTIFICATE-----\n");
        for line in body.as_bytes().chunks(64) {
            pem.push_str(std::str::from_utf8(line).expect("base64 is ASCII"));
            pem.push('\n');
        }
        pem.push_str("-----END CERTIFICATE-----\n");
        let rest = self.chain_pem.strip_prefix(&self.cert_pem).unwrap_or("");
        Leaf {
            chain_pem: format!("{pem}{rest}"),
            cert_pem: pem,
            key_pem: self.key_pem.clone(),
            der: CertificateDer::from(der),
        }
    }

    /// Writes `<name>.crt` (the chain) and `<name>.key` into `dir`.
    pub fn write(&self, dir: &Path, name: &str) -> (PathBuf, PathBuf) {
        let cert = dir.join(format!("{name}.crt"));
        let key = dir.join(format!("{name}.key"));
        std::fs::write(&cert, &self.chain_pem).expect("write cert");
        std::fs::write(&key, &self.key_pem).expect("write key");
        (cert, key)
    }

    /// The serial number's bytes.
    pub fn serial(&self) -> Vec<u8> {
        use x509_parser::prelude::FromDer;
        let (_, cert) = x509_parser::certificate::X509Certificate::from_der(self.der.as_ref())
            .expect("parse own certificate");
        cert.raw_serial().to_vec()
    }

    /// The key in "traditional" form via the openssl CLI: PKCS#1 for RSA, SEC1 for EC.
    pub fn traditional_key_pem(&self) -> String {
        let dir = tempfile::tempdir().expect("tempdir");
        let input = dir.path().join("in.pem");
        std::fs::write(&input, &self.key_pem).expect("write key");
        let out = std::process::Command::new("openssl")
            .args(["pkey", "-traditional", "-in"])
            .arg(&input)
            .output()
            .expect("run openssl pkey");
        assert!(
            out.status.success(),
            "openssl pkey: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("utf-8 PEM")
    }
}

/// Lays out `files` like a Kubernetes secret volume: the files live in a timestamped
/// directory, `..data` links to it, and each name is a link through `..data`.
pub fn write_secret_dir(dir: &Path, files: &[(&str, &str)]) {
    write_secret_generation(dir, "..2026_11_27_00_00_00.000000001", files);
}

/// Writes a new generation of a secret volume and swaps `..data` to it atomically, as the
/// kubelet does on rotation.
pub fn write_secret_generation(dir: &Path, generation: &str, files: &[(&str, &str)]) {
    use std::os::unix::fs::symlink;
    std::fs::create_dir_all(dir).expect("secret dir");
    let gen_dir = dir.join(generation);
    std::fs::create_dir_all(&gen_dir).expect("generation dir");
    for (name, content) in files {
        std::fs::write(gen_dir.join(name), content).expect("write secret file");
    }
    let tmp = dir.join("..data_tmp");
    let _ = std::fs::remove_file(&tmp);
    symlink(generation, &tmp).expect("..data_tmp link");
    std::fs::rename(&tmp, dir.join("..data")).expect("swap ..data");
    for (name, _) in files {
        let link = dir.join(name);
        if std::fs::symlink_metadata(&link).is_err() {
            symlink(format!("..data/{name}"), &link).expect("file link");
        }
    }
}
