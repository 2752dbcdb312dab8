//! Throwaway PKI for tests, examples and benches: CAs, server and client certificates made
//! with rcgen at run time. No private key is ever committed.
//!
//! Shared by `tests/` (as a module), `examples/` and `benches/` (through `#[path]`).

#![allow(dead_code)]

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType, SignatureAlgorithm, date_time_ymd,
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

    /// A CRL revoking `serials` (big-endian bytes), signed by this CA.
    pub fn crl(&self, revoked: &[&Leaf]) -> String {
        use rcgen::{
            CertificateRevocationListParams, KeyIdMethod, RevocationReason, RevokedCertParams,
            SerialNumber,
        };
        let params = CertificateRevocationListParams {
            this_update: date_time_ymd(2024, 1, 1),
            next_update: date_time_ymd(2090, 1, 1),
            crl_number: SerialNumber::from(1u64),
            issuing_distribution_point: None,
            revoked_certs: revoked
                .iter()
                .map(|leaf| RevokedCertParams {
                    serial_number: SerialNumber::from_slice(&leaf.serial()),
                    revocation_time: date_time_ymd(2024, 1, 1),
                    reason_code: Some(RevocationReason::KeyCompromise),
                    invalidity_date: None,
                })
                .collect(),
            key_identifier_method: KeyIdMethod::Sha256,
        };
        params
            .signed_by(&self.issuer())
            .expect("CRL")
            .pem()
            .expect("CRL PEM")
    }
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
