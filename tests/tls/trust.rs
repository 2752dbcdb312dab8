//! What may be trusted and how refusals look: undecodable trust is refused, never guessed (D);
//! one extended-key-usage rule on the CA and the pinned path (E); a resumed session whose
//! certificate expired meanwhile gets a real TLS alert (F); the offline verdict agrees with the
//! handshake (I).

use tower_mtls_test_kit as support;

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use rcgen::{CustomExtension, ExtendedKeyUsagePurpose, IsCa};
use support::*;
use tower_mtls::rustls::AlertDescription;
use tower_mtls::{ConfigError, MtlsAcceptor, TlsConfig, tls::HandshakeFailure, tls::TrustedBy};

const BASIC_CONSTRAINTS: &[u64] = &[2, 5, 29, 19];
const KEY_USAGE: &[u64] = &[2, 5, 29, 15];
const EXTENDED_KEY_USAGE: &[u64] = &[2, 5, 29, 37];
/// Under a private enterprise arc: no verifier knows it.
const UNKNOWN: &[u64] = &[1, 3, 6, 1, 4, 1, 55555, 77, 1];

fn extension(oid: &[u64], content: &[u8], critical: bool) -> CustomExtension {
    let mut ext = CustomExtension::from_oid_content(oid, content.to_vec());
    ext.set_criticality(critical);
    ext
}

/// `UnusableTrust`'s path and index, or a description of what came instead.
fn unusable(result: &Result<TlsConfig, ConfigError>) -> Result<(PathBuf, usize, String), String> {
    match result {
        Err(ConfigError::UnusableTrust {
            path,
            index,
            reason,
        }) => Ok((path.clone(), *index, reason.clone())),
        Err(other) => Err(format!("expected UnusableTrust, got: {other}")),
        Ok(tls) => Err(format!(
            "expected UnusableTrust, but build() succeeded ({:?})",
            tls.trust_summary()
        )),
    }
}

fn assert_none(wrong: Vec<String>) {
    assert!(
        wrong.is_empty(),
        "{} problem(s):\n{}",
        wrong.len(),
        wrong.join("\n")
    );
}

// ---- D: undecodable means refused ----

/// CA certificates whose basicConstraints, keyUsage or extendedKeyUsage cannot be decoded or
/// appears twice. (Made with rcgen custom extensions rather than by patching DER: same
/// effect, and the self-signature stays valid, so nothing else is wrong with them.)
fn broken_cas() -> Vec<(&'static str, Ca)> {
    let truncated: &'static [u8] = &[0x30, 0x03, 0x01, 0x01]; // SEQUENCE of 3 bytes, 2 present
    let not_a_sequence: &'static [u8] = &[0x05, 0x00]; // NULL
    let trailing: &'static [u8] = &[0x30, 0x03, 0x01, 0x01, 0xff, 0x00]; // {cA TRUE} + a stray byte
    let negative_path_len: &'static [u8] = &[0x30, 0x06, 0x01, 0x01, 0xff, 0x02, 0x01, 0xff];
    let integer_not_boolean: &'static [u8] = &[0x30, 0x03, 0x02, 0x01, 0xff];
    let bc_ca = [0x30, 0x03, 0x01, 0x01, 0xff];
    let no_bc = |content: &'static [u8]| {
        move |p: &mut rcgen::CertificateParams| {
            p.is_ca = IsCa::NoCa;
            p.custom_extensions
                .push(extension(BASIC_CONSTRAINTS, content, true));
        }
    };
    vec![
        (
            "basicConstraints truncated",
            Ca::with_params("Broken BC 1", no_bc(truncated)),
        ),
        (
            "basicConstraints not a SEQUENCE",
            Ca::with_params("Broken BC 2", no_bc(not_a_sequence)),
        ),
        (
            "basicConstraints with trailing data",
            Ca::with_params("Broken BC 3", no_bc(trailing)),
        ),
        (
            // x509-parser cannot decode it and reports no basicConstraints at all; webpki
            // reads it lazily, so today the CA is pinned and gets in as its own client.
            "basicConstraints {cA TRUE, pathLenConstraint -1}",
            Ca::with_params("Broken BC 5", no_bc(negative_path_len)),
        ),
        (
            "basicConstraints {INTEGER -1} (no BOOLEAN)",
            Ca::with_params("Broken BC 6", no_bc(integer_not_boolean)),
        ),
        (
            "basicConstraints twice",
            Ca::with_params("Broken BC 4", |p| {
                p.custom_extensions
                    .push(extension(BASIC_CONSTRAINTS, &bc_ca, true));
            }),
        ),
        (
            "keyUsage undecodable",
            Ca::with_params("Broken KU 1", |p| {
                p.key_usages.clear();
                p.custom_extensions
                    .push(extension(KEY_USAGE, &[0x03, 0x05, 0x01], true));
            }),
        ),
        (
            "keyUsage twice",
            Ca::with_params("Broken KU 2", |p| {
                p.custom_extensions
                    .push(extension(KEY_USAGE, &[0x03, 0x02, 0x01, 0x06], true));
            }),
        ),
        (
            "extendedKeyUsage undecodable",
            Ca::with_params("Broken EKU 1", |p| {
                p.custom_extensions.push(extension(
                    EXTENDED_KEY_USAGE,
                    &[0x30, 0x03, 0x06, 0x01],
                    false,
                ));
            }),
        ),
        (
            "extendedKeyUsage twice",
            Ca::with_params("Broken EKU 2", |p| {
                p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
                p.custom_extensions
                    .push(extension(EXTENDED_KEY_USAGE, &CLIENT_AUTH_EKU, false));
            }),
        ),
    ]
}

/// SEQUENCE { id-kp-clientAuth }.
const CLIENT_AUTH_EKU: [u8; 12] = [
    0x30, 0x0a, 0x06, 0x08, 0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x02,
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ca_certificate_with_an_undecodable_or_repeated_extension_is_refused_not_pinned() {
    let pki = Pki::new();
    let good = Ca::new("Good CA");
    let mut wrong = Vec::new();
    for (i, (what, broken)) in broken_cas().into_iter().enumerate() {
        // Second in its file, after a good CA.
        let path = pki.path(&format!("bundle-{i}.pem"));
        std::fs::write(&path, format!("{}{}", good.cert_pem, broken.cert_pem)).expect("write");
        let result = pki.builder().client_trust(&path).build();
        match unusable(&result) {
            Ok((p, 2, _)) if p == path => {}
            Ok((p, index, reason)) => wrong.push(format!(
                "{what}: UnusableTrust names {} #{index} ({reason}), expected {} #2",
                p.display(),
                path.display()
            )),
            Err(problem) => {
                let mut line = format!("{what}: {problem}");
                if let Ok(tls) = result {
                    // What today's silent acceptance means: the CA, presented as a client's
                    // own certificate with its key.
                    let verdict = handshake_verdicts(&pki, tls, &[&broken.as_leaf()]).await;
                    line.push_str(&format!(
                        "; the CA certificate presented as a client: {:?}",
                        verdict[0]
                    ));
                }
                wrong.push(line);
            }
        }
    }
    assert_none(wrong);
}

#[test]
fn an_end_entity_trust_certificate_with_an_undecodable_or_repeated_usage_is_refused() {
    let pki = Pki::new();
    let issuer = Ca::new("Leaf Issuer");
    let cases: Vec<(&str, Leaf)> = vec![
        (
            "keyUsage undecodable",
            issuer.issue_with(&LeafSpec::client("ku-1"), |p| {
                p.key_usages.clear();
                p.custom_extensions
                    .push(extension(KEY_USAGE, &[0x03, 0x05, 0x01], true));
            }),
        ),
        (
            "keyUsage twice",
            issuer.issue_with(&LeafSpec::client("ku-2"), |p| {
                p.custom_extensions
                    .push(extension(KEY_USAGE, &[0x03, 0x02, 0x07, 0x80], true));
            }),
        ),
        (
            "extendedKeyUsage undecodable",
            issuer.issue_with(&LeafSpec::client("eku-1").eku(Vec::new()), |p| {
                p.custom_extensions.push(extension(
                    EXTENDED_KEY_USAGE,
                    &[0x30, 0x03, 0x06, 0x01],
                    false,
                ));
            }),
        ),
        (
            "extendedKeyUsage twice",
            issuer.issue_with(&LeafSpec::client("eku-2"), |p| {
                p.custom_extensions
                    .push(extension(EXTENDED_KEY_USAGE, &CLIENT_AUTH_EKU, false));
            }),
        ),
        (
            "basicConstraints undecodable",
            issuer.issue_with(&LeafSpec::client("bc-1"), |p| {
                p.custom_extensions.push(extension(
                    BASIC_CONSTRAINTS,
                    &[0x30, 0x03, 0x01, 0x01],
                    true,
                ));
            }),
        ),
    ];
    let mut wrong = Vec::new();
    for (i, (what, leaf)) in cases.into_iter().enumerate() {
        let path = pki.path(&format!("leaf-{i}.pem"));
        std::fs::write(&path, &leaf.cert_pem).expect("write");
        match unusable(&pki.builder().client_trust(&path).build()) {
            Ok((p, 1, _)) if p == path => {}
            Ok((p, index, reason)) => wrong.push(format!(
                "{what}: UnusableTrust names {} #{index} ({reason})",
                p.display()
            )),
            Err(problem) => wrong.push(format!("{what}: {problem}")),
        }
    }
    assert_none(wrong);
}

/// A self-signed X.509 v1 certificate (no extensions at all), made by `openssl x509 -req`.
fn v1_certificate(dir: &std::path::Path) -> String {
    let key = dir.join("v1.key");
    let csr = dir.join("v1.csr");
    let cert = dir.join("v1.crt");
    let run = |args: &[&std::ffi::OsStr]| {
        let out = std::process::Command::new("openssl")
            .args(args)
            .output()
            .expect("run openssl");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    run(&[
        "req".as_ref(),
        "-new".as_ref(),
        "-newkey".as_ref(),
        "ec".as_ref(),
        "-pkeyopt".as_ref(),
        "ec_paramgen_curve:P-256".as_ref(),
        "-nodes".as_ref(),
        "-subj".as_ref(),
        "/CN=version one".as_ref(),
        "-keyout".as_ref(),
        key.as_os_str(),
        "-out".as_ref(),
        csr.as_os_str(),
    ]);
    run(&[
        "x509".as_ref(),
        "-req".as_ref(),
        "-in".as_ref(),
        csr.as_os_str(),
        "-signkey".as_ref(),
        key.as_os_str(),
        "-days".as_ref(),
        "3650".as_ref(),
        "-out".as_ref(),
        cert.as_os_str(),
    ]);
    let pem = std::fs::read_to_string(&cert).expect("v1 cert");
    // It really is v1: the version field is absent from the TBSCertificate.
    use x509_parser::prelude::FromDer;
    let der = tower_mtls::rustls::pki_types::CertificateDer::pem_slice_iter_first(&pem);
    let (_, parsed) =
        x509_parser::certificate::X509Certificate::from_der(der.as_ref()).expect("parse v1");
    assert_eq!(parsed.version(), x509_parser::x509::X509Version::V1);
    pem
}

trait FirstPem {
    fn pem_slice_iter_first(pem: &str) -> tower_mtls::rustls::pki_types::CertificateDer<'static>;
}

impl FirstPem for tower_mtls::rustls::pki_types::CertificateDer<'static> {
    fn pem_slice_iter_first(pem: &str) -> Self {
        use tower_mtls::rustls::pki_types::pem::PemObject;
        Self::from_pem_slice(pem.as_bytes()).expect("certificate PEM")
    }
}

#[test]
fn a_v1_trust_certificate_is_refused_and_the_error_says_why() {
    let pki = Pki::new();
    let path = pki.path("v1.pem");
    std::fs::write(&path, v1_certificate(pki.dir.path())).expect("write");
    let result = pki.builder().client_trust(&path).build();
    let (p, index, _) = unusable(&result).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!((p, index), (path, 1));
    let text = result.expect_err("error").to_string().to_lowercase();
    assert!(
        text.contains("version") || text.contains("v1"),
        "the message should mention the version: {text}"
    );
}

#[test]
fn a_pinned_leaf_with_an_unknown_critical_extension_is_refused_at_build() {
    let pki = Pki::new();
    let leaf = Ca::new("Critical Issuer")
        .issue(&LeafSpec::client("critical").extension(extension(UNKNOWN, &[0x05, 0x00], true)));
    let path = pki.path("critical.pem");
    std::fs::write(&path, &leaf.cert_pem).expect("write");
    let (p, index, _) =
        unusable(&pki.builder().client_trust(&path).build()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!((p, index), (path, 1));
    // The same extension, not critical, is fine.
    let benign = Ca::new("Benign Issuer").issue(&LeafSpec::client("benign").extension(extension(
        UNKNOWN,
        &[0x05, 0x00],
        false,
    )));
    let tls = pki
        .builder()
        .client_trust_pem(benign.cert_pem.clone())
        .build()
        .expect("a non-critical unknown extension is no reason to refuse");
    assert_eq!(tls.trust_summary().pinned, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ca_issued_client_with_an_unknown_critical_extension_is_refused_at_the_handshake() {
    let pki = Pki::new();
    let ca = Ca::new("Extension CA");
    let critical =
        ca.issue(&LeafSpec::client("critical").extension(extension(UNKNOWN, &[0x05, 0x00], true)));
    let benign =
        ca.issue(&LeafSpec::client("benign").extension(extension(UNKNOWN, &[0x05, 0x00], false)));
    let tls = pki
        .builder()
        .client_trust_pem(ca.cert_pem.clone())
        .build()
        .expect("config");
    let got = handshake_verdicts(&pki, tls, &[&critical, &benign]).await;
    assert_eq!(
        got[0].kind(),
        Some(HandshakeFailure::BadCertificate),
        "{got:?}"
    );
    assert_eq!(got[1], Verdict::Accepted);
}

// ---- E: one EKU rule on both paths ----

fn any_eku_only(ca: &Ca, cn: &str) -> Leaf {
    ca.issue(&LeafSpec::client(cn).eku(vec![ExtendedKeyUsagePurpose::Any]))
}

fn server_auth_only(ca: &Ca, cn: &str) -> Leaf {
    ca.issue(&LeafSpec::client(cn).eku(vec![ExtendedKeyUsagePurpose::ServerAuth]))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_any_eku_client_is_refused_on_the_ca_path() {
    let pki = Pki::new();
    let ca = Ca::new("EKU CA");
    let any = any_eku_only(&ca, "any-eku");
    let tls = pki
        .builder()
        .client_trust_pem(ca.cert_pem.clone())
        .build()
        .expect("config");
    let got = handshake_verdicts(&pki, tls, &[&any, &ca.client("client-auth")]).await;
    assert_eq!(
        got[0].kind(),
        Some(HandshakeFailure::WrongKeyUsage),
        "{got:?}"
    );
    assert_eq!(got[1], Verdict::Accepted);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_any_eku_certificate_given_as_trust_is_not_pinned() {
    let pki = Pki::new();
    let other = Ca::new("Other CA");
    let any = any_eku_only(&Ca::new("Any Issuer"), "any-eku");
    // A source that holds nothing usable is a misconfiguration, even beside good ones …
    let alone = pki
        .builder()
        .client_trust_pem(other.cert_pem.clone())
        .client_trust_pem(any.cert_pem.clone())
        .build();
    let (path, reason) = empty_trust(alone);
    assert_eq!(path, PathBuf::from("<client trust #2>"));
    assert!(reason.contains("anyExtendedKeyUsage"), "{reason}");
    // … while beside a usable certificate in the same source it is skipped with a warning.
    let tls = pki
        .builder()
        .client_trust_pem(format!("{}{}", other.cert_pem, any.cert_pem))
        .build()
        .expect("skipped with a warning, not an error, when its source holds other trust");
    assert_eq!(tls.trust_summary().pinned, 0, "{:?}", tls.trust_summary());
    assert_eq!(tls.trust_summary().anchors, 1);
    let got = handshake_verdicts(&pki, tls, &[&any]).await;
    assert!(
        got[0].kind().is_some(),
        "an anyEKU-only leaf got in: {got:?}"
    );
}

fn empty_trust(result: Result<TlsConfig, ConfigError>) -> (PathBuf, String) {
    match result {
        Err(ConfigError::EmptyTrustSource { path, reason }) => (path, reason),
        Err(other) => panic!("expected EmptyTrustSource, got: {other}"),
        Ok(tls) => panic!(
            "expected EmptyTrustSource, but build() succeeded ({:?})",
            tls.trust_summary()
        ),
    }
}

#[test]
fn an_only_trust_certificate_that_cannot_authenticate_clients_says_why() {
    let pki = Pki::new();
    let issuer = Ca::new("Usage Issuer");
    for (what, leaf) in [
        ("anyExtendedKeyUsage only", any_eku_only(&issuer, "any")),
        ("serverAuth only", server_auth_only(&issuer, "server")),
    ] {
        let path = pki.path(&format!("{}.pem", what.replace(' ', "-")));
        std::fs::write(&path, &leaf.cert_pem).expect("write");
        let (p, reason) = empty_trust(pki.builder().client_trust(&path).build());
        assert_eq!(p, path, "{what}");
        assert!(
            reason.to_lowercase().contains("clientauth"),
            "{what}: the reason should say the certificate lacks clientAuth: {reason:?}"
        );
        assert!(
            !reason.starts_with("no certificate found"),
            "{what}: a certificate was found: {reason:?}"
        );
    }
}

// ---- F: resumption refusals speak TLS ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resumed_session_of_a_since_expired_pinned_certificate_gets_certificate_expired() {
    let pki = Pki::new();
    let not_after = SystemTime::now() + Duration::from_secs(10);
    let short =
        Ca::new("Short Issuer").issue(&LeafSpec::client("short-lived").not_after_time(not_after));
    let other = pki.ca.client("other");
    let tls = pki
        .builder()
        .client_trust_pem(short.cert_pem.clone())
        .client_trust(&pki.ca_path)
        .build()
        .expect("config");
    let acceptor = MtlsAcceptor::new(tls);
    let server = TestServer::start(acceptor.clone()).await;

    // The same client twice: it resumes by default.
    let client = pki.client(Some(&short));
    let first = client
        .get(server.addr, "localhost", "/")
        .await
        .expect("valid for a few more seconds");
    assert_eq!(first.status(), 200);
    assert!(
        SystemTime::now() < not_after,
        "the machine was too slow to connect within the validity period"
    );

    // Wait on the wall clock until the certificate has expired, with a margin.
    let past = not_after + Duration::from_millis(1500);
    if let Ok(left) = past.duration_since(SystemTime::now()) {
        tokio::time::sleep(left).await;
    }
    let err = client
        .get(server.addr, "localhost", "/")
        .await
        .expect_err("an expired certificate must not get in, not even by resuming");
    assert_eq!(
        err.alert(),
        Some(AlertDescription::CertificateExpired),
        "a fatal certificate_expired alert, not a reset or EOF: {err}"
    );
    let ok = pki
        .client(Some(&other))
        .get(server.addr, "localhost", "/")
        .await
        .expect("the server keeps serving others");
    assert_eq!(ok.status(), 200);
    // Counted once the server is done with it (the client may see the alert first).
    tokio::time::timeout(PATIENCE, async {
        while acceptor.stats().failures(HandshakeFailure::Expired) < 1 {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("counted as expired: {}", acceptor.stats()));
    server.stop().await;
}

// ---- I: the offline verdict agrees with the handshake ----

fn subject_of(der: &[u8]) -> String {
    tower_mtls::ClientIdentity::parse(der)
        .expect("parse")
        .subject()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_offline_verdict_agrees_with_the_handshake() {
    let pki = Pki::new();
    let ca = Ca::new("Verdict CA");
    let root = Ca::new("Verdict Root");
    let issuing = root.intermediate("Verdict Issuing CA");
    let pin_issuer = Ca::new("Verdict Pin Issuer");
    let revoked = ca.client("revoked");
    let pinned = pin_issuer.client("pinned");
    let pinned_revoked = pin_issuer.client("pinned-revoked");
    let pinned_expired = pin_issuer.issue(&LeafSpec::client("pinned-expired").expired());
    let ca_crl = pki.path("verdict-ca.crl");
    let pin_crl = pki.path("verdict-pin.crl");
    std::fs::write(&ca_crl, ca.crl(&[&revoked])).expect("write");
    std::fs::write(&pin_crl, pin_issuer.crl(&[&pinned_revoked])).expect("write");
    let tls = pki
        .builder()
        .client_trust_pem(ca.cert_pem.clone())
        .client_trust_pem(root.cert_pem.clone())
        .client_trust_pem(pinned.cert_pem.clone())
        .client_trust_pem(pinned_revoked.cert_pem.clone())
        .client_trust_pem(pinned_expired.cert_pem.clone())
        .client_crl(&ca_crl)
        .client_crl(&pin_crl)
        .build()
        .expect("config");

    let anchor = |ca: &Ca| TrustedBy::Anchor {
        subject: subject_of(ca.der.as_ref()),
    };
    use HandshakeFailure as F;
    // (name, client, expected class or, when accepted, what vouched for it)
    let cases: Vec<(&str, Leaf, Result<TrustedBy, F>)> = vec![
        ("ca client", ca.client("fine"), Ok(anchor(&ca))),
        (
            "intermediate chain",
            issuing.issue_with_chain(&LeafSpec::client("via-intermediate")),
            Ok(anchor(&root)),
        ),
        ("pinned", pinned.clone(), Ok(TrustedBy::Pinned)),
        ("revoked", revoked.clone(), Err(F::Revoked)),
        ("pinned revoked", pinned_revoked.clone(), Err(F::Revoked)),
        ("pinned expired", pinned_expired.clone(), Err(F::Expired)),
        (
            "expired",
            ca.issue(&LeafSpec::client("old").expired()),
            Err(F::Expired),
        ),
        (
            "not yet valid",
            ca.issue(&LeafSpec::client("future").not_yet_valid()),
            Err(F::NotYetValid),
        ),
        (
            "unknown CA",
            Ca::new("Rogue").client("rogue"),
            Err(F::UnknownCa),
        ),
        (
            "same name, other key",
            Ca::new("Verdict CA").client("same-name"),
            Err(F::UnknownCa),
        ),
        (
            "tampered (names the trusted key, signature broken)",
            ca.client("tampered").with_corrupted_signature(),
            Err(F::BadSignature),
        ),
        (
            "anyEKU only",
            any_eku_only(&ca, "any"),
            Err(F::WrongKeyUsage),
        ),
        (
            "serverAuth only",
            server_auth_only(&ca, "server-only"),
            Err(F::WrongKeyUsage),
        ),
        (
            "unknown critical extension",
            ca.issue(&LeafSpec::client("critical").extension(extension(
                UNKNOWN,
                &[0x05, 0x00],
                true,
            ))),
            Err(F::BadCertificate),
        ),
        (
            "CA certificate as a client",
            Ca::new("Sneaky CA").as_leaf(),
            Err(F::WrongKeyUsage),
        ),
    ];

    let leaves: Vec<&Leaf> = cases.iter().map(|c| &c.1).collect();
    let handshakes = handshake_verdicts(&pki, tls.clone(), &leaves).await;
    let now = SystemTime::now();
    let mut wrong = Vec::new();
    for ((name, leaf, expected), handshake) in cases.iter().zip(&handshakes) {
        let offline = tls.verify_client_chain(&chain_der(leaf), now);
        // The offline verdict and the handshake agree, whatever the expectation.
        let offline_kind = offline.as_ref().err().map(|r| r.kind);
        if offline_kind != handshake.kind() {
            wrong.push(format!(
                "{name}: offline {offline:?} but the handshake {handshake:?}"
            ));
        }
        match (expected, &offline) {
            (Ok(by), Ok(accepted)) => {
                if &accepted.trusted_by != by {
                    wrong.push(format!(
                        "{name}: trusted_by {:?}, expected {by:?}",
                        accepted.trusted_by
                    ));
                }
                if accepted.subject != subject_of(leaf.der.as_ref()) {
                    wrong.push(format!("{name}: subject {:?}", accepted.subject));
                }
            }
            (Err(kind), Err(refused)) if refused.kind == *kind => {}
            _ => wrong.push(format!(
                "{name}: offline {offline:?}, expected {expected:?}"
            )),
        }
    }
    // A revoked certificate's reason names the CRL that revoked it.
    for (leaf, crl) in [(&revoked, &ca_crl), (&pinned_revoked, &pin_crl)] {
        match tls.verify_client_chain(&chain_der(leaf), now) {
            Err(refused) if refused.reason.contains(&crl.display().to_string()) => {}
            other => wrong.push(format!(
                "revoked: the reason should name {}: {other:?}",
                crl.display()
            )),
        }
    }
    assert_none(wrong);
}

#[test]
fn the_offline_verdict_takes_the_time_it_is_given() {
    let pki = Pki::new();
    let ca = Ca::new("Time CA");
    let client = ca.client("timely");
    let pinned = Ca::new("Time Pin Issuer").client("pinned-timely");
    let tls = pki
        .builder()
        .client_trust_pem(ca.cert_pem.clone())
        .client_trust_pem(pinned.cert_pem.clone())
        .build()
        .expect("config");
    let at = |year: i32| {
        let secs = rcgen::date_time_ymd(year, 6, 1).unix_timestamp();
        SystemTime::UNIX_EPOCH + Duration::from_secs(u64::try_from(secs).expect("after 1970"))
    };
    for leaf in [&client, &pinned] {
        let chain = chain_der(leaf);
        assert!(tls.verify_client_chain(&chain, at(2030)).is_ok());
        assert_eq!(
            tls.verify_client_chain(&chain, at(2019))
                .expect_err("2019 is before 2020")
                .kind,
            HandshakeFailure::NotYetValid
        );
        assert_eq!(
            tls.verify_client_chain(&chain, at(2095))
                .expect_err("2095 is after 2090")
                .kind,
            HandshakeFailure::Expired
        );
    }
    assert_eq!(
        tls.verify_client_chain(&[], SystemTime::now())
            .expect_err("nothing presented")
            .kind,
        HandshakeFailure::NoClientCertificate
    );
}

#[test]
fn trust_details_list_what_is_trusted_and_what_the_server_warned_about() {
    let pki = Pki::new();
    let agent_ca = Ca::new("Agent Issuer");
    let agent = agent_ca.client("steadybit-agent");
    let dir = pki.path("agent-secret");
    support::pki::write_secret_dir(
        &dir,
        &[("tls.crt", &agent.cert_pem), ("ca.crt", &agent_ca.cert_pem)],
    );
    let crl = pki.path("ca.crl");
    std::fs::write(&crl, pki.ca.crl(&[])).expect("write CRL");
    let tls = pki
        .mtls_builder()
        .client_trust(&dir)
        .client_crl(&crl)
        .build()
        .expect("config");
    let details = tls.trust_details();
    let subjects: Vec<_> = details.anchors.iter().map(|a| a.subject.as_str()).collect();
    assert_eq!(
        subjects,
        [
            "O=tower-mtls tests,CN=Test Root CA",
            "O=tower-mtls tests,CN=Agent Issuer"
        ]
    );
    assert_eq!(details.pinned.len(), 1);
    assert_eq!(details.pinned[0].subject, "CN=steadybit-agent");
    assert_eq!(details.crls.len(), 1);
    assert_eq!(details.crls[0].path, crl);
    assert!(details.crls[0].next_update.is_some());
    assert_eq!(details.warnings.len(), 1, "{:?}", details.warnings);
    assert!(
        details.warnings[0].contains("every certificate that CA issued is admitted"),
        "{:?}",
        details.warnings
    );
    // Two CA subjects and the pinned leaf's subject (its issuer is already listed).
    assert!(details.certificate_request_ca_names_bytes > 100);
    // No client authentication: nothing to list.
    let plain = pki.builder().build().expect("config");
    assert_eq!(
        plain.trust_details(),
        tower_mtls::tls::TrustDetails::default()
    );
}
