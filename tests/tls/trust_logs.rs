//! What the log says about trust: CRLs of no configured CA and stale CRLs are warned about
//! (spec B), every anchor, pin and CRL is listed at build and a secret directory holding both
//! a pinned leaf and a CA is flagged (G), and a refusal decided on the handshake signature
//! names the presented certificate (H).
//!
//! Its own test binary: it installs a process-wide subscriber to read the log. Tests run in
//! parallel, so each one only looks at events that mention something unique to it (a temp
//! path, a common name).

use tower_mtls_test_kit as support;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use support::pki::CrlSpec;
use support::*;
use tower_mtls::{MtlsAcceptor, tls::ReloadOutcome};
use tracing::Level;
use tracing_subscriber::layer::{Context, SubscriberExt};

#[derive(Debug, Clone)]
struct Event {
    level: Level,
    message: String,
    fields: BTreeMap<String, String>,
}

impl Event {
    fn mentions(&self, marker: &str) -> bool {
        self.message.contains(marker) || self.fields.values().any(|v| v.contains(marker))
    }

    fn field(&self, name: &str) -> Option<&str> {
        self.fields.get(name).map(String::as_str)
    }
}

/// Keeps every event of the crate, at every level.
#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<Event>>>);

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Capture {
    fn on_event(&self, event: &tracing::Event<'_>, _: Context<'_, S>) {
        let meta = event.metadata();
        if !meta.target().starts_with("tower_mtls") {
            return;
        }
        struct Fields(String, BTreeMap<String, String>);
        impl tracing::field::Visit for Fields {
            fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
                if field.name() == "message" {
                    self.0 = value.to_owned();
                } else {
                    self.1.insert(field.name().to_owned(), value.to_owned());
                }
            }
            fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
                self.record_str(field, &format!("{value:?}"));
            }
        }
        let mut fields = Fields(String::new(), BTreeMap::new());
        event.record(&mut fields);
        self.0.lock().expect("lock").push(Event {
            level: *meta.level(),
            message: fields.0,
            fields: fields.1,
        });
    }
}

fn capture() -> &'static Capture {
    static CAPTURE: OnceLock<Capture> = OnceLock::new();
    CAPTURE.get_or_init(|| {
        let capture = Capture::default();
        tracing::subscriber::set_global_default(
            tracing_subscriber::registry().with(capture.clone()),
        )
        .expect("global subscriber");
        capture
    })
}

/// Events at `level` that mention `marker` and whose message contains `text`.
fn logged(level: Level, text: &str, marker: &str) -> Vec<Event> {
    capture()
        .0
        .lock()
        .expect("lock")
        .iter()
        .filter(|e| e.level == level && e.message.contains(text) && e.mentions(marker))
        .cloned()
        .collect()
}

fn everything_about(marker: &str) -> Vec<Event> {
    capture()
        .0
        .lock()
        .expect("lock")
        .iter()
        .filter(|e| e.mentions(marker))
        .cloned()
        .collect()
}

/// Whether a logged date names `year` (a readable date) or is `unix` (seconds since 1970).
fn names_date(value: &str, year: &str, unix: u64) -> bool {
    value.contains(year) || value.contains(&unix.to_string())
}

// ---- B ----

#[test]
fn a_crl_of_no_configured_issuer_is_accepted_with_a_warning() {
    capture();
    let pki = Pki::new();
    let ca = Ca::new("Logged Configured CA");
    let stranger = Ca::new("Logged Stranger CA");
    let crl = pki.path("stranger.crl");
    std::fs::write(&crl, stranger.crl(&[])).expect("write");
    pki.builder()
        .client_trust_pem(ca.cert_pem.clone())
        .client_crl(&crl)
        .build()
        .expect("a CRL of an unknown issuer is not an error");
    let marker = crl.display().to_string();
    let warnings = logged(Level::WARN, "matches no configured CA", &marker);
    assert!(
        !warnings.is_empty(),
        "a warning naming {marker}; everything about it: {:#?}",
        everything_about(&marker)
    );
    for warning in &warnings {
        assert_eq!(warning.field("path"), Some(marker.as_str()), "{warning:#?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_crl_is_warned_about_at_build_and_on_every_reload_that_keeps_it() {
    capture();
    let pki = Pki::new();
    let ca = Ca::new("Logged Stale CA");
    let crl = pki.path("stale.crl");
    std::fs::write(&crl, ca.crl_with(&CrlSpec::new(3, (2023, 5, 1)).stale())).expect("write");
    let trust = pki.path("trust");
    std::fs::create_dir(&trust).expect("dir");
    std::fs::write(trust.join("ca.crt"), &ca.cert_pem).expect("write");
    let tls = pki
        .builder()
        .client_trust(&trust)
        .client_crl(&crl)
        .build()
        .expect("a stale CRL is not an error by default");
    let marker = crl.display().to_string();
    let stale = || logged(Level::WARN, "CRL is stale", &marker);
    let at_build = stale();
    assert!(
        !at_build.is_empty(),
        "a warning at build; everything about it: {:#?}",
        everything_about(&marker)
    );
    let warning = &at_build[0];
    assert_eq!(warning.field("path"), Some(marker.as_str()), "{warning:#?}");
    assert!(
        warning
            .field("issuer")
            .is_some_and(|i| i.contains("Logged Stale CA")),
        "{warning:#?}"
    );
    assert!(
        warning
            .field("next_update")
            .is_some_and(|n| names_date(n, "2023", 1_682_985_600)),
        "{warning:#?}"
    );

    // Two reloads that change the trust but keep the CRL: another warning each.
    let handle = tls.watch(Duration::from_secs(3600));
    let mut seen = at_build.len();
    for n in 1..=2 {
        std::fs::write(
            trust.join(format!("extra-{n}.crt")),
            Ca::new(&format!("Extra CA {n}")).cert_pem,
        )
        .expect("write");
        match handle.config().reload().await {
            ReloadOutcome::Applied(_) => {}
            other => panic!("expected the reload to apply, got {other:?}"),
        }
        let now = stale().len();
        assert!(
            now > seen,
            "no new warning after reload {n}: {:#?}",
            stale()
        );
        seen = now;
    }
}

// ---- G ----

#[test]
fn every_anchor_pin_and_crl_is_listed_at_build() {
    capture();
    let pki = Pki::new();
    let first = Ca::new("Listed CA One");
    let second = Ca::new("Listed CA Two");
    let pin_issuer = Ca::new("Listed Pin Issuer");
    let pinned = pin_issuer.client("listed-pinned-client");
    let (pinned_path, _) = pinned.write(pki.dir.path(), "listed-pinned");
    let pinned_marker = pinned_path.display().to_string();
    let crl = pki.path("listed.crl");
    std::fs::write(&crl, first.crl(&[])).expect("write");
    pki.builder()
        .client_trust_pem(first.cert_pem.clone())
        .client_trust_pem(second.cert_pem.clone())
        .client_trust(&pinned_path)
        .client_crl(&crl)
        .build()
        .expect("config");

    let mut wrong = Vec::new();
    for ca in [&first, &second] {
        let lines: Vec<Event> = logged(Level::INFO, "trusted CA", &ca.name)
            .into_iter()
            .filter(|e| e.field("next_update").is_none())
            .collect();
        if lines.is_empty() {
            wrong.push(format!(
                "{}: no `trusted CA` info line; everything about it: {:#?}",
                ca.name,
                everything_about(&ca.name)
            ));
        }
        for line in &lines {
            if !line.field("subject").is_some_and(|s| s.contains(&ca.name)) {
                wrong.push(format!("{}: no subject field: {line:?}", ca.name));
            }
            if !line
                .field("not_after")
                .is_some_and(|n| names_date(n, "2090", 3_786_912_000))
            {
                wrong.push(format!("{}: no not_after field (2090): {line:?}", ca.name));
            }
        }
    }
    let pins: Vec<Event> = logged(Level::INFO, "pinned client certificate", "")
        .into_iter()
        .filter(|e| e.mentions("listed-pinned-client") || e.mentions(&pinned_marker))
        .collect();
    if pins.is_empty() {
        wrong.push(format!(
            "no `pinned client certificate` info line naming the leaf or its file; everything about it: {:#?}",
            everything_about("listed-pinned-client")
        ));
    }
    let crls: Vec<Event> = logged(Level::INFO, "CRL", "Listed CA One")
        .into_iter()
        .filter(|e| {
            e.field("next_update").is_some()
                && e.field("issuer")
                    .is_some_and(|i| i.contains("Listed CA One"))
        })
        .collect();
    if crls.is_empty() {
        wrong.push(format!(
            "no CRL info line with issuer=…Listed CA One and next_update; everything about it: {:#?}",
            everything_about("Listed CA One")
        ));
    }
    for line in &crls {
        if !line
            .field("next_update")
            .is_some_and(|n| names_date(n, "2090", 3_786_912_000))
        {
            wrong.push(format!("CRL: next_update is not 2090: {line:?}"));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn a_secret_directory_that_holds_a_pinned_leaf_and_its_ca_is_flagged() {
    capture();
    let pki = Pki::new();
    let ca = Ca::new("Secret Dir CA");
    let agent = ca.client("secret-dir-agent");
    // cert-manager's layout: tls.crt, tls.key and ca.crt side by side.
    let both = pki.path("agent-secret");
    pki::write_secret_dir(
        &both,
        &[
            ("tls.crt", &agent.cert_pem),
            ("tls.key", &agent.key_pem),
            ("ca.crt", &ca.cert_pem),
        ],
    );
    // Only a leaf: nothing to flag.
    let leaf_only = pki.path("leaf-only-secret");
    pki::write_secret_dir(
        &leaf_only,
        &[("tls.crt", &agent.cert_pem), ("tls.key", &agent.key_pem)],
    );
    pki.builder().client_trust(&both).build().expect("config");
    pki.builder()
        .client_trust(&leaf_only)
        .build()
        .expect("config");
    let flagged = logged(
        Level::WARN,
        "also holds a CA certificate",
        &both.display().to_string(),
    );
    assert!(
        !flagged.is_empty(),
        "{:#?}",
        everything_about(&both.display().to_string())
    );
    assert!(
        logged(
            Level::WARN,
            "also holds a CA certificate",
            &leaf_only.display().to_string()
        )
        .is_empty()
    );
}

// ---- H ----

async fn rejection_logged(marker: &str) -> Vec<Event> {
    tokio::time::timeout(PATIENCE, async {
        loop {
            // Whatever the wording: a warning naming the certificate, with a fingerprint.
            let lines: Vec<Event> = logged(Level::WARN, "", marker)
                .into_iter()
                .filter(|e| e.field("sha256").is_some())
                .collect();
            if !lines.is_empty() {
                return lines;
            }
            let bare: Vec<Event> = capture()
                .0
                .lock()
                .expect("lock")
                .iter()
                .filter(|e| {
                    e.level == Level::WARN
                        && e.field("reason") == Some("bad_signature")
                        && e.field("subject") == Some("-")
                })
                .cloned()
                .collect();
            if !bare.is_empty() {
                return bare;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    })
    .await
    .expect("a rejection is logged")
}

/// Connects with `leaf`'s certificate but another key, then checks the warning names the
/// certificate.
async fn check_wrong_signature_logged(
    pki: &Pki,
    tls: tower_mtls::TlsConfig,
    leaf: &Leaf,
    cn: &str,
) {
    let server = TestServer::start(MtlsAcceptor::new(tls)).await;
    let other_key = Alg::EcdsaP256.generate().serialize_pem();
    let err = raw_client(pki, &leaf.chain_pem, &other_key)
        .get(server.addr, "localhost", "/")
        .await
        .expect_err("the wrong key must fail");
    assert!(err.alert().is_some(), "{err}");

    let lines = rejection_logged(cn).await;
    let line = &lines[0];
    let expected = tower_mtls::ClientIdentity::parse(leaf.der.as_ref()).expect("parse");
    for (field, value) in [
        ("subject", expected.subject().to_string()),
        ("issuer", expected.issuer().to_string()),
        ("sha256", expected.sha256().to_string()),
    ] {
        assert_eq!(line.field(field), Some(value.as_str()), "{cn}: {line:#?}");
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_handshake_signature_is_logged_with_the_presented_certificate() {
    capture();
    let pki = Pki::new();
    let leaf = Ca::new("Signature Issuer").client("wrong-signature-pinned");
    let tls = pki
        .builder()
        .client_trust_pem(leaf.cert_pem.clone())
        .build()
        .expect("config");
    check_wrong_signature_logged(&pki, tls, &leaf, "wrong-signature-pinned").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_handshake_signature_on_the_ca_path_is_logged_with_the_presented_certificate() {
    capture();
    let pki = Pki::new();
    let ca = Ca::new("Signature CA");
    let leaf = ca.client("wrong-signature-ca-issued");
    let tls = pki
        .builder()
        .client_trust_pem(ca.cert_pem.clone())
        .build()
        .expect("config");
    check_wrong_signature_logged(&pki, tls, &leaf, "wrong-signature-ca-issued").await;
}

// ---- E ----

#[test]
fn trust_certificates_that_cannot_authenticate_clients_are_skipped_with_a_warning() {
    capture();
    let pki = Pki::new();
    let issuer = Ca::new("Skipped Issuer");
    let other = Ca::new("Skipped Test Other CA");
    let mut wrong = Vec::new();
    for (what, eku) in [
        ("any-eku", rcgen::ExtendedKeyUsagePurpose::Any),
        ("server-auth", rcgen::ExtendedKeyUsagePurpose::ServerAuth),
    ] {
        let leaf = issuer.issue(&LeafSpec::client(what).eku(vec![eku]));
        // In one source beside a usable CA (alone in its source it is an error: see tests/tls/trust.rs).
        let path = pki.path(&format!("{what}.crt"));
        std::fs::write(&path, format!("{}{}", other.cert_pem, leaf.cert_pem)).expect("write");
        let tls = pki
            .builder()
            .client_trust(&path)
            .build()
            .expect("other trust remains");
        if tls.trust_summary().pinned != 0 {
            wrong.push(format!("{what}: pinned ({:?})", tls.trust_summary()));
        }
        let marker = path.display().to_string();
        if logged(Level::WARN, "", &marker).is_empty() {
            wrong.push(format!(
                "{what}: no warning naming {marker}; everything about it: {:#?}",
                everything_about(&marker)
            ));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

// ---- a revocation names its CRL ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_client_is_logged_with_the_crl_that_revoked_it() {
    capture();
    let pki = Pki::new();
    let revoked = pki.ca.client("revoked-logged-client");
    let crl = pki.path("logged.crl");
    std::fs::write(&crl, pki.ca.crl(&[&revoked])).expect("write CRL");
    let tls = pki.mtls_builder().client_crl(&crl).build().expect("config");
    let server = TestServer::start(MtlsAcceptor::new(tls)).await;
    let alert = refusal_alert(&pki, Some(&revoked), server.addr).await;
    assert_eq!(
        alert,
        Some(tower_mtls::rustls::AlertDescription::CertificateRevoked)
    );

    let lines = rejection_logged("revoked-logged-client").await;
    let verdict = lines[0].field("verdict").unwrap_or_default();
    assert!(
        verdict.contains(&crl.display().to_string()) && lines[0].field("reason") == Some("revoked"),
        "{:#?}",
        lines[0]
    );
    server.stop().await;
}

// ---- a same-name, other-key CA is an unknown CA, and the log says why ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_of_a_same_name_other_key_ca_is_logged_as_unknown_ca_with_the_name() {
    capture();
    let pki = Pki::new();
    let trusted = Ca::new("Twin Name CA");
    let twin = Ca::new("Twin Name CA");
    let tls = pki
        .builder()
        .client_trust_pem(trusted.cert_pem.clone())
        .build()
        .expect("config");
    let server = TestServer::start(MtlsAcceptor::new(tls)).await;
    let alert = refusal_alert(&pki, Some(&twin.client("twin-name-client")), server.addr).await;
    assert_eq!(alert, Some(tower_mtls::rustls::AlertDescription::UnknownCA));

    let lines = rejection_logged("twin-name-client").await;
    let verdict = lines[0].field("verdict").unwrap_or_default();
    assert!(
        lines[0].field("reason") == Some("unknown_ca")
            && verdict.contains("Twin Name CA")
            && verdict.contains("a CA of that name is trusted, but not the key"),
        "{:#?}",
        lines[0]
    );
    server.stop().await;
}
