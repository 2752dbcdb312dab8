//! Revocation that no order can fool (spec A), CRLs checked at load (B), issuer names compared
//! as names (C), and a property: any arrangement of the CRL inputs gives the same verdict (J).
//!
//! Every verdict here is a real handshake on loopback unless the test says "offline".

use tower_mtls_test_kit as support;

use std::sync::OnceLock;

use support::pki::CrlSpec;
use support::*;
use tower_mtls::rustls::AlertDescription;
use tower_mtls::{ConfigError, TlsConfigBuilder, tls::HandshakeFailure};

use Verdict::Accepted;

/// Builds `base` + `arrangement` for every arrangement of `crls`, connects with every client
/// and collects every verdict that differs from `expected`.
async fn check_every_order(
    pki: &Pki,
    base: impl Fn() -> TlsConfigBuilder,
    crls: &[String],
    clients: &[(&str, &Leaf, Verdict)],
) -> Vec<String> {
    let names: Vec<&str> = clients.iter().map(|c| c.0).collect();
    let leaves: Vec<&Leaf> = clients.iter().map(|c| c.1).collect();
    let expected: Vec<Verdict> = clients.iter().map(|c| c.2).collect();
    let mut wrong = Vec::new();
    let dir = tempfile::tempdir().expect("tempdir");
    for (label, inputs) in crl_arrangements(dir.path(), crls) {
        let tls = match with_crls(base(), &inputs).build() {
            Ok(tls) => tls,
            Err(e) => {
                wrong.push(format!("{label}: build failed: {e}"));
                continue;
            }
        };
        let got = handshake_verdicts(pki, tls.clone(), &leaves).await;
        wrong.extend(mismatches(&label, &names, &got, &expected));
        wrong.extend(offline_disagreements(&label, &names, &tls, &leaves, &got));
    }
    wrong
}

fn assert_none(wrong: Vec<String>) {
    assert!(
        wrong.is_empty(),
        "{} wrong verdict(s):\n{}",
        wrong.len(),
        wrong.join("\n")
    );
}

/// Old CRL #1 (2024) revokes `y`; new CRL #2 (2025) revokes `x`: the new one decides.
fn old_and_new(issuer: &Ca, x: &Leaf, y: &Leaf) -> Vec<String> {
    vec![
        issuer.crl_with(&CrlSpec::new(1, (2024, 1, 1)).revoking(&[y])),
        issuer.crl_with(&CrlSpec::new(2, (2025, 1, 1)).revoking(&[x])),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn newest_crl_wins_in_every_order_on_the_ca_path() {
    let pki = Pki::new();
    let ca = Ca::new("Revoking CA");
    let (x, y, z) = (ca.client("x"), ca.client("y"), ca.client("z"));
    let wrong = check_every_order(
        &pki,
        || pki.builder().client_trust_pem(ca.cert_pem.clone()),
        &old_and_new(&ca, &x, &y),
        &[("x", &x, REVOKED), ("y", &y, Accepted), ("z", &z, Accepted)],
    )
    .await;
    assert_none(wrong);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn newest_crl_wins_in_every_order_on_the_intermediate_path() {
    // Only the root is trusted; clients present leaf + intermediate; the intermediate issues
    // the CRLs.
    let pki = Pki::new();
    let root = Ca::new("Chain Root");
    let issuing = root.intermediate("Chain Issuing CA");
    let client = |cn: &str| issuing.issue_with_chain(&LeafSpec::client(cn));
    let (x, y, z) = (client("x"), client("y"), client("z"));
    let wrong = check_every_order(
        &pki,
        || pki.builder().client_trust_pem(root.cert_pem.clone()),
        &old_and_new(&issuing, &x, &y),
        &[("x", &x, REVOKED), ("y", &y, Accepted), ("z", &z, Accepted)],
    )
    .await;
    assert_none(wrong);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn newest_crl_wins_in_every_order_on_the_pinned_path() {
    // The clients' own certificates are the trust; their (untrusted) issuer's CRLs revoke.
    let pki = Pki::new();
    let issuer = Ca::new("Pinned Issuer");
    let (x, y, z) = (issuer.client("x"), issuer.client("y"), issuer.client("z"));
    let wrong = check_every_order(
        &pki,
        || {
            pki.builder()
                .client_trust_pem(x.cert_pem.clone())
                .client_trust_pem(y.cert_pem.clone())
                .client_trust_pem(z.cert_pem.clone())
        },
        &old_and_new(&issuer, &x, &y),
        &[("x", &x, REVOKED), ("y", &y, Accepted), ("z", &z, Accepted)],
    )
    .await;
    assert_none(wrong);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crls_that_tie_on_number_and_this_update_are_merged() {
    let pki = Pki::new();
    let ca = Ca::new("Merging CA");
    let (a, b, c) = (ca.client("a"), ca.client("b"), ca.client("c"));
    let crls = vec![
        ca.crl_with(&CrlSpec::new(5, (2025, 1, 1)).revoking(&[&a])),
        ca.crl_with(&CrlSpec::new(5, (2025, 1, 1)).revoking(&[&b])),
    ];
    let wrong = check_every_order(
        &pki,
        || pki.builder().client_trust_pem(ca.cert_pem.clone()),
        &crls,
        &[("a", &a, REVOKED), ("b", &b, REVOKED), ("c", &c, Accepted)],
    )
    .await;
    assert_none(wrong);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_crl_number_outranks_this_update_which_breaks_ties() {
    let pki = Pki::new();
    let ca = Ca::new("Numbering CA");
    let (x, y) = (ca.client("x"), ca.client("y"));
    let base = || pki.builder().client_trust_pem(ca.cert_pem.clone());
    let mut wrong = Vec::new();
    // #3 issued in 2024 outranks #2 issued in 2025: x is not revoked.
    let crls = vec![
        ca.crl_with(&CrlSpec::new(3, (2024, 1, 1))),
        ca.crl_with(&CrlSpec::new(2, (2025, 1, 1)).revoking(&[&x])),
    ];
    wrong.extend(check_every_order(&pki, base, &crls, &[("x", &x, Accepted)]).await);
    // Both #4: the later thisUpdate decides, whichever way.
    let crls = vec![
        ca.crl_with(&CrlSpec::new(4, (2024, 1, 1)).revoking(&[&y])),
        ca.crl_with(&CrlSpec::new(4, (2025, 1, 1)).revoking(&[&x])),
    ];
    wrong.extend(
        check_every_order(
            &pki,
            base,
            &crls,
            &[("x", &x, REVOKED), ("y", &y, Accepted)],
        )
        .await,
    );
    assert_none(wrong);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_trusted_cas_with_one_name_keep_their_own_crls() {
    let pki = Pki::new();
    let first = Ca::new("Same");
    let second = Ca::new("Same");
    assert_eq!(first.name, second.name);
    let a_ok = first.client("a-ok");
    let a_bad = first.client("a-bad");
    let b_ok = second.client("b-ok");
    let b_bad = second.client("b-bad");
    // The same serial from both CAs; only the first CA revokes it.
    let a_twin = first.issue(&LeafSpec::client("a-twin").serial(1000));
    let b_twin = second.issue(&LeafSpec::client("b-twin").serial(1000));
    assert_eq!(a_twin.serial(), b_twin.serial());
    let crls = vec![
        first.crl_with(&CrlSpec::new(1, (2024, 1, 1)).revoking(&[&a_bad, &a_twin])),
        second.crl_with(&CrlSpec::new(1, (2024, 1, 1)).revoking(&[&b_bad])),
    ];
    let wrong = check_every_order(
        &pki,
        || {
            pki.builder()
                .client_trust_pem(first.cert_pem.clone())
                .client_trust_pem(second.cert_pem.clone())
        },
        &crls,
        &[
            ("a-ok", &a_ok, Accepted),
            ("a-bad", &a_bad, REVOKED),
            ("a-twin", &a_twin, REVOKED),
            ("b-ok", &b_ok, Accepted),
            ("b-bad", &b_bad, REVOKED),
            ("b-twin", &b_twin, Accepted),
        ],
    )
    .await;
    assert_none(wrong);
}

#[test]
fn the_offline_refusal_names_the_authoritative_crl_file() {
    let pki = Pki::new();
    let ca = Ca::new("Authoritative CA");
    let x = ca.client("x");
    let old = pki.path("old.crl");
    let new = pki.path("new.crl");
    std::fs::write(
        &old,
        ca.crl_with(&CrlSpec::new(1, (2024, 1, 1)).revoking(&[&x])),
    )
    .expect("write");
    std::fs::write(
        &new,
        ca.crl_with(&CrlSpec::new(2, (2025, 1, 1)).revoking(&[&x])),
    )
    .expect("write");
    let mut wrong = Vec::new();
    for order in [[&old, &new], [&new, &old]] {
        let tls = pki
            .builder()
            .client_trust_pem(ca.cert_pem.clone())
            .client_crl(order[0])
            .client_crl(order[1])
            .build()
            .expect("config");
        match tls.verify_client_chain(&chain_der(&x), std::time::SystemTime::now()) {
            Err(refused)
                if refused.kind == HandshakeFailure::Revoked
                    && refused.reason.contains(&new.display().to_string()) => {}
            other => wrong.push(format!(
                "order {order:?}: expected Revoked naming {}, got {other:?}",
                new.display()
            )),
        }
    }
    assert_none(wrong);
}

// ---- B: CRLs checked at load ----

fn invalid_crl_path(result: Result<tower_mtls::TlsConfig, ConfigError>) -> std::path::PathBuf {
    match result {
        Err(ConfigError::InvalidCrl { path, .. }) => path,
        Err(other) => panic!("expected InvalidCrl, got: {other}"),
        Ok(_) => panic!("expected InvalidCrl, but build() succeeded"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crl_that_names_a_trusted_ca_but_is_signed_by_another_key_revokes_nothing_and_blocks_nothing()
 {
    // Not that CA's CRL (an impostor's, or a retired or re-keyed CA's left in the directory):
    // it is skipped with a warning naming the file, in every order, and the configuration
    // builds — a CRL that can revoke nothing must never keep a configuration from loading.
    let pki = Pki::new();
    let ca = Ca::new("Named CA");
    let impostor = Ca::new("Named CA");
    let victim = ca.client("victim");
    let good = pki.path("good.crl");
    let forged = pki.path("forged.crl");
    std::fs::write(&good, ca.crl(&[])).expect("write");
    std::fs::write(
        &forged,
        impostor.crl_with(&CrlSpec::new(9, (2025, 1, 1)).revoking(&[&victim])),
    )
    .expect("write");
    for order in [vec![&good, &forged], vec![&forged, &good], vec![&forged]] {
        let mut builder = pki.builder().client_trust_pem(ca.cert_pem.clone());
        for crl in &order {
            builder = builder.client_crl(crl);
        }
        let tls = builder
            .build()
            .expect("a CRL no trusted key signed blocks nothing");
        let warnings = tls.trust_details().warnings.join("\n");
        assert!(
            warnings.contains(&forged.display().to_string())
                && warnings.contains("no trusted key of that name signed it"),
            "order {order:?}: {warnings}"
        );
        let verdicts = handshake_verdicts(&pki, tls, &[&victim]).await;
        assert_eq!(verdicts, [Accepted], "order {order:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_crl_for_an_intermediate_cannot_hide_a_revocation() {
    // A CRL of an issuer that is not configured is accepted at build (it may belong to an
    // intermediate that clients present) but applied only when the intermediate's key
    // verifies it: a forged, higher-numbered CRL that revokes nothing changes nothing.
    let pki = Pki::new();
    let root = Ca::new("Forgery Root");
    let issuing = root.intermediate("Forgery Issuing CA");
    let forger = Ca::new("Forgery Issuing CA");
    let revoked = issuing.issue_with_chain(&LeafSpec::client("revoked"));
    let fine = issuing.issue_with_chain(&LeafSpec::client("fine"));
    let crls = vec![
        issuing.crl_with(&CrlSpec::new(1, (2024, 1, 1)).revoking(&[&revoked])),
        forger.crl_with(&CrlSpec::new(9, (2025, 6, 1))),
    ];
    let wrong = check_every_order(
        &pki,
        || pki.builder().client_trust_pem(root.cert_pem.clone()),
        &crls,
        &[("revoked", &revoked, REVOKED), ("fine", &fine, Accepted)],
    )
    .await;
    assert_none(wrong);
}

#[test]
fn a_crl_of_no_configured_issuer_is_accepted_at_build() {
    let pki = Pki::new();
    let ca = Ca::new("Configured CA");
    let stranger = Ca::new("Stranger CA");
    let tls = pki
        .builder()
        .client_trust_pem(ca.cert_pem.clone())
        .client_crl_bytes(stranger.crl(&[]))
        .build()
        .expect("a CRL of an unknown issuer is not an error");
    assert_eq!(tls.trust_summary().crls, 1);
    let client = ca.client("ok");
    assert_eq!(offline_verdict(&tls, &client), Accepted);
}

/// A file that starts like DER but is not a CRL, a PEM `X509 CRL` block of garbage, and a
/// real CRL with trailing bytes (which a lenient parser reads and a strict one refuses).
fn unusable_crls(ca: &Ca) -> Vec<(&'static str, Vec<u8>)> {
    use tower_mtls::rustls::pki_types::pem::PemObject;
    let mut trailing = ca.crl_der_with(&CrlSpec::new(2, (2025, 1, 1)));
    trailing.extend_from_slice(&[0x05, 0x00]);
    let pem = |der: &[u8]| {
        let b64 = base64_lines(der);
        format!("-----BEGIN X509 CRL-----\n{b64}-----END X509 CRL-----\n").into_bytes()
    };
    // Sanity: the PEM helper round-trips.
    let round = tower_mtls::rustls::pki_types::CertificateRevocationListDer::from_pem_slice(&pem(
        &trailing,
    ))
    .expect("PEM");
    assert_eq!(round.as_ref(), trailing.as_slice());
    let mut garbage_der = vec![0x30, 0x82, 0x01, 0x00];
    garbage_der.extend((0..=255u8).map(|b| b.wrapping_mul(37)));
    vec![
        ("DER garbage starting with 0x30", garbage_der),
        (
            "PEM X509 CRL block with garbage inside",
            pem(b"\x30\x10this is no CRL at all"),
        ),
        ("DER CRL with trailing bytes", trailing.clone()),
        ("PEM CRL with trailing bytes", pem(&trailing)),
    ]
}

fn base64_lines(bytes: &[u8]) -> String {
    const TABLE: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(TABLE[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    let mut lines = String::new();
    for line in out.as_bytes().chunks(64) {
        lines.push_str(std::str::from_utf8(line).expect("ascii"));
        lines.push('\n');
    }
    lines
}

/// What an unusable CRL file must lead to: a file that does not decode as a signed CRL fails
/// the build naming it; one that decodes (its issuer and signature can be read) but that
/// rustls-webpki's profile refuses builds, and refuses the clients of its issuer naming it.
fn judge_unusable(
    wrong: &mut Vec<String>,
    what: &str,
    ca: &Ca,
    bad: &std::path::Path,
    result: Result<tower_mtls::TlsConfig, ConfigError>,
) {
    let attributable = what.contains("trailing bytes");
    match result {
        Err(ConfigError::InvalidCrl { path, .. }) if path == bad && !attributable => {}
        Err(other) => wrong.push(format!(
            "{what}: expected {}, got: {other}",
            if attributable {
                "a configuration".to_owned()
            } else {
                format!("InvalidCrl naming {}", bad.display())
            }
        )),
        Ok(_) if !attributable => wrong.push(format!("{what}: build() succeeded")),
        Ok(tls) => match tls
            .verify_client_chain(&chain_der(&ca.client("x")), std::time::SystemTime::now())
        {
            Err(refused)
                if refused.kind == HandshakeFailure::RevocationUnknown
                    && refused.reason.contains(&bad.display().to_string()) => {}
            other => wrong.push(format!(
                "{what}: expected the issuer's client refused as revocation_unknown naming {}, \
                 got {other:?}",
                bad.display()
            )),
        },
    }
}

#[test]
fn an_unusable_crl_names_its_own_file_even_as_the_second_source() {
    let pki = Pki::new();
    let ca = Ca::new("Careful CA");
    let good = pki.path("first-good.crl");
    std::fs::write(&good, ca.crl(&[])).expect("write");
    let mut wrong = Vec::new();
    for (i, (what, bytes)) in unusable_crls(&ca).into_iter().enumerate() {
        let bad = pki.path(&format!("second-bad-{i}.crl"));
        std::fs::write(&bad, &bytes).expect("write");
        let result = pki
            .builder()
            .client_trust_pem(ca.cert_pem.clone())
            .client_crl(&good)
            .client_crl(&bad)
            .build();
        judge_unusable(&mut wrong, what, &ca, &bad, result);
        // In one directory, after a good file.
        let dir = pki.path(&format!("crl-dir-{i}"));
        std::fs::create_dir(&dir).expect("dir");
        std::fs::write(dir.join("a-good.crl"), ca.crl(&[])).expect("write");
        std::fs::write(dir.join("b-bad.crl"), &bytes).expect("write");
        let result = pki
            .builder()
            .client_trust_pem(ca.cert_pem.clone())
            .client_crl(&dir)
            .build();
        judge_unusable(
            &mut wrong,
            &format!("{what} in a directory"),
            &ca,
            &dir.join("b-bad.crl"),
            result,
        );
    }
    assert_none(wrong);
}

/// Trust, CRLs and clients for the stale-CRL tests: `stale_ca` has a CRL past its nextUpdate
/// that revokes `stale_revoked`; `fresh_ca` a current one; `no_crl_ca` none; `pinned` is a
/// pinned leaf whose issuer's CRL is stale too.
struct Stale {
    pki: Pki,
    stale_ca: Ca,
    fresh_ca: Ca,
    no_crl_ca: Ca,
    stale_crl: std::path::PathBuf,
    fresh_crl: std::path::PathBuf,
    pinned_crl: std::path::PathBuf,
    pinned: Leaf,
    stale_ok: Leaf,
    stale_revoked: Leaf,
    fresh_ok: Leaf,
    fresh_revoked: Leaf,
    no_crl: Leaf,
}

impl Stale {
    fn new() -> Stale {
        let pki = Pki::new();
        let stale_ca = Ca::new("Stale CA");
        let fresh_ca = Ca::new("Fresh CA");
        let no_crl_ca = Ca::new("CRL-less CA");
        let pinned_issuer = Ca::new("Stale Pinned Issuer");
        let pinned = pinned_issuer.client("pinned");
        let stale_revoked = stale_ca.client("stale-revoked");
        let fresh_revoked = fresh_ca.client("fresh-revoked");
        let stale_crl = pki.path("stale.crl");
        let fresh_crl = pki.path("fresh.crl");
        let pinned_crl = pki.path("pinned-issuer.crl");
        std::fs::write(
            &stale_crl,
            stale_ca.crl_with(
                &CrlSpec::new(7, (2023, 3, 1))
                    .stale()
                    .revoking(&[&stale_revoked]),
            ),
        )
        .expect("write");
        std::fs::write(
            &fresh_crl,
            fresh_ca.crl_with(&CrlSpec::new(7, (2025, 3, 1)).revoking(&[&fresh_revoked])),
        )
        .expect("write");
        std::fs::write(
            &pinned_crl,
            pinned_issuer.crl_with(&CrlSpec::new(1, (2023, 3, 1)).stale()),
        )
        .expect("write");
        Stale {
            stale_ok: stale_ca.client("stale-ok"),
            fresh_ok: fresh_ca.client("fresh-ok"),
            no_crl: no_crl_ca.client("no-crl"),
            pki,
            stale_ca,
            fresh_ca,
            no_crl_ca,
            stale_crl,
            fresh_crl,
            pinned_crl,
            pinned,
            stale_revoked,
            fresh_revoked,
        }
    }

    fn builder(&self) -> TlsConfigBuilder {
        self.pki
            .builder()
            .client_trust_pem(self.stale_ca.cert_pem.clone())
            .client_trust_pem(self.fresh_ca.cert_pem.clone())
            .client_trust_pem(self.no_crl_ca.cert_pem.clone())
            .client_trust_pem(self.pinned.cert_pem.clone())
            .client_crl(&self.stale_crl)
            .client_crl(&self.fresh_crl)
            .client_crl(&self.pinned_crl)
    }

    fn clients(&self) -> Vec<(&'static str, &Leaf)> {
        vec![
            ("stale-ok", &self.stale_ok),
            ("stale-revoked", &self.stale_revoked),
            ("pinned (stale issuer CRL)", &self.pinned),
            ("fresh-ok", &self.fresh_ok),
            ("fresh-revoked", &self.fresh_revoked),
            ("no-crl", &self.no_crl),
        ]
    }

    async fn check(&self, tls: tower_mtls::TlsConfig, expected: &[Verdict]) -> Vec<String> {
        let clients = self.clients();
        let names: Vec<&str> = clients.iter().map(|c| c.0).collect();
        let leaves: Vec<&Leaf> = clients.iter().map(|c| c.1).collect();
        let got = handshake_verdicts(&self.pki, tls.clone(), &leaves).await;
        let mut wrong = mismatches("stale CRL", &names, &got, expected);
        wrong.extend(offline_disagreements(
            "stale CRL",
            &names,
            &tls,
            &leaves,
            &got,
        ));
        wrong
    }
}

const STALE: Verdict = Verdict::Refused(
    HandshakeFailure::StaleCrl,
    Some(AlertDescription::UnknownCA),
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_crl_is_still_applied_by_default() {
    let stale = Stale::new();
    let tls = stale
        .builder()
        .build()
        .expect("stale CRLs are not an error");
    assert_none(
        stale
            .check(
                tls,
                &[Accepted, REVOKED, Accepted, Accepted, REVOKED, Accepted],
            )
            .await,
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn require_fresh_crls_refuses_every_client_of_a_stale_issuer_only() {
    let stale = Stale::new();
    let tls = stale
        .builder()
        .require_fresh_crls(true)
        .build()
        .expect("config");
    assert_none(
        stale
            .check(tls, &[STALE, STALE, STALE, Accepted, REVOKED, Accepted])
            .await,
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn require_fresh_crls_from_the_environment() {
    let stale = Stale::new();
    let trust = stale.pki.path("trust.pem");
    std::fs::write(
        &trust,
        format!(
            "{}{}{}{}",
            stale.stale_ca.cert_pem,
            stale.fresh_ca.cert_pem,
            stale.no_crl_ca.cert_pem,
            stale.pinned.cert_pem
        ),
    )
    .expect("write");
    let crls = format!(
        "{},{},{}",
        stale.stale_crl.display(),
        stale.fresh_crl.display(),
        stale.pinned_crl.display()
    );
    let vars = [
        (
            "STEADYBIT_EXTENSION_TLS_SERVER_CERT",
            stale.pki.server_cert.display().to_string(),
        ),
        (
            "STEADYBIT_EXTENSION_TLS_SERVER_KEY",
            stale.pki.server_key.display().to_string(),
        ),
        (
            "STEADYBIT_EXTENSION_TLS_CLIENT_CAS",
            trust.display().to_string(),
        ),
        ("TOWER_MTLS_CLIENT_CRLS", crls),
        ("TOWER_MTLS_CLIENT_CRLS_REQUIRE_FRESH", "true".to_owned()),
    ];
    let env = tower_mtls::steadybit::ExtensionEnv::from_lookup(|name| {
        vars.iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.clone())
    })
    .expect("environment");
    let tls = env.tls.expect("TLS configured");
    assert_none(
        stale
            .check(tls, &[STALE, STALE, STALE, Accepted, REVOKED, Accepted])
            .await,
    );
}

// ---- C: names compared as names ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crl_that_spells_its_issuer_differently_still_revokes() {
    let pki = Pki::new();
    let ca = Ca::new("Spelling CA");
    let pinned_issuer = Ca::new("Spelling Pinned Issuer");
    let mut wrong = Vec::new();
    for (printable, upper) in [(true, false), (false, true), (true, true)] {
        let spelling = format!("printable={printable} upper={upper}");
        let revoked = ca.client("revoked");
        let fine = ca.client("fine");
        let pinned_revoked = pinned_issuer.client("pinned-revoked");
        let pinned_fine = pinned_issuer.client("pinned-fine");
        let spec = |leaf: &Leaf| CrlSpec::new(1, (2024, 1, 1)).revoking(&[leaf]);
        let tls = pki
            .builder()
            .client_trust_pem(ca.cert_pem.clone())
            .client_trust_pem(pinned_revoked.cert_pem.clone())
            .client_trust_pem(pinned_fine.cert_pem.clone())
            .client_crl_bytes(ca.respelled_issuer_crl(&spec(&revoked), printable, upper))
            .client_crl_bytes(pinned_issuer.respelled_issuer_crl(
                &spec(&pinned_revoked),
                printable,
                upper,
            ))
            .build();
        let tls = match tls {
            Ok(tls) => tls,
            Err(e) => {
                wrong.push(format!("{spelling}: build failed: {e}"));
                continue;
            }
        };
        let names = [
            "CA path revoked",
            "CA path fine",
            "pinned revoked",
            "pinned fine",
        ];
        let leaves = [&revoked, &fine, &pinned_revoked, &pinned_fine];
        let got = handshake_verdicts(&pki, tls.clone(), &leaves).await;
        wrong.extend(mismatches(
            &spelling,
            &names,
            &got,
            &[REVOKED, Accepted, REVOKED, Accepted],
        ));
        wrong.extend(offline_disagreements(
            &spelling, &names, &tls, &leaves, &got,
        ));
    }
    assert_none(wrong);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_newer_respelled_crl_is_not_hidden_by_an_older_exactly_spelled_one() {
    let pki = Pki::new();
    let ca = Ca::new("Respelling CA");
    let revoked = ca.client("revoked");
    let fine = ca.client("fine");
    let crls = vec![
        ca.crl_with(&CrlSpec::new(1, (2024, 1, 1))),
        ca.respelled_issuer_crl(
            &CrlSpec::new(2, (2025, 1, 1)).revoking(&[&revoked]),
            true,
            true,
        ),
    ];
    let wrong = check_every_order(
        &pki,
        || pki.builder().client_trust_pem(ca.cert_pem.clone()),
        &crls,
        &[("revoked", &revoked, REVOKED), ("fine", &fine, Accepted)],
    )
    .await;
    assert_none(wrong);
}

// ---- J: any arrangement of the CRL inputs, the same offline verdict ----

/// Two same-name CAs, an intermediate under a trusted root, a pinned leaf; several CRLs per
/// issuer; clients of each; and the verdict each client must get.
struct Fixed {
    server: Leaf,
    trust: Vec<String>,
    crls: Vec<String>,
    clients: Vec<(&'static str, Leaf, Option<HandshakeFailure>)>,
}

fn fixed() -> &'static Fixed {
    static FIXED: OnceLock<Fixed> = OnceLock::new();
    FIXED.get_or_init(|| {
        let server = Ca::new("Property Server CA").server();
        let first = Ca::new("Same");
        let second = Ca::new("Same");
        let root = Ca::new("Property Root");
        let issuing = root.intermediate("Property Issuing CA");
        let pinned_issuer = Ca::new("Property Pinned Issuer");
        let pinned = pinned_issuer.client("pinned");
        let pinned_old = pinned_issuer.client("pinned-revoked-long-ago");
        let pinned_new = pinned_issuer.client("pinned-revoked-by-newest");

        let a_new = first.client("a-revoked-by-newest");
        let a_old = first.client("a-revoked-only-by-old");
        let a_twin = first.issue(&LeafSpec::client("a-twin").serial(4242));
        let b_twin = second.issue(&LeafSpec::client("b-twin").serial(4242));
        let b_merged = second.client("b-revoked-by-one-of-two-tied");
        let b_ok = second.client("b-ok");
        let i_new = issuing.issue_with_chain(&LeafSpec::client("i-revoked-by-newest"));
        let i_old = issuing.issue_with_chain(&LeafSpec::client("i-revoked-only-by-old"));
        let i_ok = issuing.issue_with_chain(&LeafSpec::client("i-ok"));

        let crls = vec![
            first.crl_with(&CrlSpec::new(1, (2024, 1, 1)).revoking(&[&a_old])),
            first.crl_with(&CrlSpec::new(2, (2024, 6, 1)).revoking(&[&a_new, &a_twin, &a_old])),
            first.crl_with(&CrlSpec::new(2, (2025, 1, 1)).revoking(&[&a_new, &a_twin])),
            second.crl_with(&CrlSpec::new(3, (2024, 1, 1)).revoking(&[&b_twin])),
            second.crl_with(&CrlSpec::new(4, (2025, 1, 1)).revoking(&[&b_merged])),
            second.crl_with(&CrlSpec::new(4, (2025, 1, 1))),
            issuing.crl_with(&CrlSpec::new(10, (2024, 1, 1)).revoking(&[&i_old])),
            issuing.crl_with(&CrlSpec::new(11, (2024, 1, 1)).revoking(&[&i_new])),
            pinned_issuer.crl_with(&CrlSpec::new(1, (2024, 1, 1)).revoking(&[&pinned_old])),
            pinned_issuer.crl_with(&CrlSpec::new(2, (2025, 1, 1)).revoking(&[&pinned_new])),
        ];
        let revoked = Some(HandshakeFailure::Revoked);
        let clients = vec![
            ("a-new", a_new, revoked),
            ("a-old", a_old, None),
            ("a-twin", a_twin, revoked),
            ("b-twin", b_twin, None),
            ("b-merged", b_merged, revoked),
            ("b-ok", b_ok, None),
            ("i-new", i_new, revoked),
            ("i-old", i_old, None),
            ("i-ok", i_ok, None),
            ("pinned", pinned.clone(), None),
            ("pinned-old", pinned_old.clone(), None),
            ("pinned-new", pinned_new.clone(), revoked),
        ];
        Fixed {
            server,
            trust: vec![
                first.cert_pem.clone(),
                second.cert_pem.clone(),
                root.cert_pem.clone(),
                pinned.cert_pem.clone(),
                pinned_old.cert_pem.clone(),
                pinned_new.cert_pem.clone(),
            ],
            crls,
            clients,
        }
    })
}

/// How the (permuted) CRLs are handed over: `cuts` splits them into groups; each group is
/// one PEM source (blocks concatenated), or one DER source per CRL when `der` is set.
fn build_fixed(
    order: &[usize],
    cuts: &[bool],
    der: &[bool],
) -> Result<tower_mtls::TlsConfig, ConfigError> {
    use tower_mtls::rustls::pki_types::CertificateRevocationListDer;
    use tower_mtls::rustls::pki_types::pem::PemObject;
    let f = fixed();
    let mut builder =
        tower_mtls::TlsConfig::from_pem(f.server.cert_pem.clone(), f.server.key_pem.clone());
    for pem in &f.trust {
        builder = builder.client_trust_pem(pem.clone());
    }
    let mut group = String::new();
    for (pos, i) in order.iter().enumerate() {
        let pem = &f.crls[*i];
        if der[pos] {
            let der = CertificateRevocationListDer::from_pem_slice(pem.as_bytes()).expect("CRL");
            builder = builder.client_crl_bytes(der.as_ref().to_vec());
        } else {
            group.push_str(pem);
        }
        if cuts[pos] && !group.is_empty() {
            builder = builder.client_crl_bytes(std::mem::take(&mut group).into_bytes());
        }
    }
    if !group.is_empty() {
        builder = builder.client_crl_bytes(group.into_bytes());
    }
    builder.build()
}

fn verdicts_of(tls: &tower_mtls::TlsConfig) -> Vec<(&'static str, Option<HandshakeFailure>)> {
    fixed()
        .clients
        .iter()
        .map(|(name, leaf, _)| (*name, offline_verdict(tls, leaf).kind()))
        .collect()
}

#[test]
fn the_property_fixture_gets_the_expected_verdicts_in_file_order() {
    let f = fixed();
    let n = f.crls.len();
    let order: Vec<usize> = (0..n).collect();
    let tls = build_fixed(&order, &vec![false; n], &vec![false; n]).expect("config");
    let expected: Vec<_> = f.clients.iter().map(|(name, _, v)| (*name, *v)).collect();
    assert_eq!(verdicts_of(&tls), expected);
}

mod property {
    use super::*;
    use proptest::prelude::*;

    fn arrangement() -> impl Strategy<Value = (Vec<usize>, Vec<bool>, Vec<bool>)> {
        let n = fixed().crls.len();
        (
            Just((0..n).collect::<Vec<usize>>()).prop_shuffle(),
            proptest::collection::vec(any::<bool>(), n),
            proptest::collection::vec(proptest::bool::weighted(0.2), n),
        )
    }

    proptest! {
        #![proptest_config(ProptestConfig {
            cases: 32,
            failure_persistence: None,
            ..ProptestConfig::default()
        })]

        #[test]
        fn any_arrangement_of_the_crls_gives_the_same_verdicts(
            (order, cuts, der) in arrangement()
        ) {
            let f = fixed();
            let expected: Vec<_> = f.clients.iter().map(|(name, _, v)| (*name, *v)).collect();
            let tls = build_fixed(&order, &cuts, &der);
            prop_assert!(tls.is_ok(), "build failed: {:?}", tls.err().map(|e| e.to_string()));
            let tls = tls.expect("checked");
            prop_assert_eq!(verdicts_of(&tls), expected);
        }
    }
}

// ---- K: a CRL speaks within its scope (issuingDistributionPoint) ----

const SHARD_A: &str = "http://crl.example.test/shard-a.crl";
const SHARD_B: &str = "http://crl.example.test/shard-b.crl";

/// A CA that partitions its CRL by distribution point: shard A (CRL number 2) lists nothing,
/// shard B (CRL number 1) lists the leaf whose CRLDistributionPoints name shard B. The higher
/// number of another shard never un-revokes it; a shard speaks only for the certificates that
/// name it (and, as rustls-webpki decides, for those that name no distribution point).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shard_revokes_within_its_distribution_point_whatever_the_other_shards_numbers() {
    let pki = Pki::new();
    let ca = Ca::new("Sharding CA");
    let in_b = ca.issue(&LeafSpec::client("in-b").crl_distribution_point(SHARD_B));
    let in_a = ca.issue(&LeafSpec::client("in-a").crl_distribution_point(SHARD_A));
    let nowhere = ca.issue(&LeafSpec::client("names-no-point"));
    let fine = ca.issue(&LeafSpec::client("fine").crl_distribution_point(SHARD_B));
    let crls = vec![
        ca.crl_with(&CrlSpec::new(2, (2025, 1, 1)).scoped(SHARD_A)),
        // Shard B also lists `in_a`'s serial: it does not speak for `in_a`, which names A.
        ca.crl_with(
            &CrlSpec::new(1, (2024, 1, 1))
                .scoped(SHARD_B)
                .revoking(&[&in_b, &in_a, &nowhere]),
        ),
        // A complete CRL with the highest number: it revokes nothing and displaces no shard.
        ca.crl_with(&CrlSpec::new(3, (2025, 6, 1))),
    ];
    let wrong = check_every_order(
        &pki,
        || pki.builder().client_trust_pem(ca.cert_pem.clone()),
        &crls,
        &[
            ("in-b", &in_b, REVOKED),
            ("in-a", &in_a, Accepted),
            ("names-no-point", &nowhere, REVOKED),
            ("fine", &fine, Accepted),
        ],
    )
    .await;
    assert_none(wrong);
}

// ---- L: a CRL speaks from its time (thisUpdate) ----

/// CRL #9 (in force since yesterday) lists the leaf; CRL #10 is pre-signed for 30 days from now
/// and does not. Dropped in early, #10 is set aside with a warning: the leaf stays revoked in
/// every order, and #10 takes over when its time comes, with no reload.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crl_not_yet_in_force_does_not_displace_the_one_in_force() {
    use std::time::{Duration, SystemTime};
    let day = Duration::from_secs(86_400);
    let now = SystemTime::now();
    let pki = Pki::new();
    let ca = Ca::new("Offline Root");
    let leaf = ca.client("revoked-yesterday");
    let other = ca.client("other");
    let crls = vec![
        ca.crl_with(
            &CrlSpec::new(9, (2024, 1, 1))
                .at(now - day, now + 60 * day)
                .revoking(&[&leaf]),
        ),
        ca.crl_with(&CrlSpec::new(10, (2024, 1, 1)).at(now + 30 * day, now + 90 * day)),
    ];
    let wrong = check_every_order(
        &pki,
        || {
            pki.builder()
                .client_trust_pem(ca.cert_pem.clone())
                .require_fresh_crls(true)
        },
        &crls,
        &[("revoked", &leaf, REVOKED), ("other", &other, Accepted)],
    )
    .await;
    assert_none(wrong);

    let tls = pki
        .builder()
        .client_trust_pem(ca.cert_pem.clone())
        .client_crl_bytes(format!("{}{}", crls[1], crls[0]).into_bytes())
        .require_fresh_crls(true)
        .build()
        .expect("config");
    let warnings = tls.trust_details().warnings.join("\n");
    assert!(warnings.contains("not yet in force"), "{warnings}");
    let chain = chain_der(&leaf);
    let verdict_at = |at: SystemTime| tls.verify_client_chain(&chain, at).map(|_| ());
    assert_eq!(
        verdict_at(now + 29 * day).map_err(|r| r.kind),
        Err(HandshakeFailure::Revoked),
        "#9 still in force"
    );
    assert_eq!(
        verdict_at(now + 31 * day),
        Ok(()),
        "#10 in force from its thisUpdate on"
    );
}

// ---- M: a CRL that cannot be used fails its own issuer closed, and nobody else ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crl_that_cannot_be_used_refuses_its_issuers_clients_and_nobody_elses() {
    let pki = Pki::new();
    let broken_ca = Ca::new("Broken CRL CA");
    let fine_ca = Ca::new("Fine CRL CA");
    let broken = pki.path("broken.crl");
    // Its own CRL, signed by it, then trailing bytes: rustls-webpki's profile refuses it.
    let mut der = broken_ca.crl_der_with(&CrlSpec::new(1, (2024, 1, 1)));
    der.extend_from_slice(&[0x05, 0x00]);
    std::fs::write(&broken, &der).expect("write");
    let fine = pki.path("fine.crl");
    std::fs::write(&fine, fine_ca.crl(&[])).expect("write");
    let tls = pki
        .builder()
        .client_trust_pem(format!("{}{}", broken_ca.cert_pem, fine_ca.cert_pem))
        .client_crl(&broken)
        .client_crl(&fine)
        .build()
        .expect("an unusable CRL blocks only its issuer");
    let warnings = tls.trust_details().warnings.join("\n");
    assert!(
        warnings.contains("broken.crl") && warnings.contains("cannot be used"),
        "{warnings}"
    );
    let refused = tls
        .verify_client_chain(
            &chain_der(&broken_ca.client("x")),
            std::time::SystemTime::now(),
        )
        .expect_err("refused");
    assert!(
        refused.reason.contains("broken.crl") && refused.reason.contains("cannot be used"),
        "{refused}"
    );
    let verdicts = handshake_verdicts(
        &pki,
        tls,
        &[&broken_ca.client("of-broken"), &fine_ca.client("of-fine")],
    )
    .await;
    assert_eq!(
        verdicts,
        [
            Verdict::Refused(
                HandshakeFailure::RevocationUnknown,
                Some(AlertDescription::UnknownCA)
            ),
            Accepted
        ]
    );
}

#[test]
fn a_crl_file_that_does_not_decode_is_refused_naming_it() {
    // Nobody can tell whose revocations it holds: the configuration does not build.
    let pki = Pki::new();
    let garbage = pki.path("garbage.crl");
    std::fs::write(&garbage, [0x30, 0x03, 0x02, 0x01, 0x01]).expect("write");
    let result = pki.mtls_builder().client_crl(&garbage).build();
    assert_eq!(invalid_crl_path(result), garbage);
}
