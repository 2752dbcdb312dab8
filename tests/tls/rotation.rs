//! Live rotation and revocation against a running server. Every step waits on reload events,
//! never on sleeps.

use tower_mtls_test_kit as support;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use support::*;
use tokio::sync::broadcast;
use tower_mtls::rustls::AlertDescription;
use tower_mtls::{TlsConfig, tls::ReloadOutcome, tls::ReloadReport};

const POLL: Duration = Duration::from_millis(100);

async fn next_event(events: &mut broadcast::Receiver<ReloadOutcome>) -> ReloadOutcome {
    tokio::time::timeout(PATIENCE, events.recv())
        .await
        .expect("a reload event in time")
        .expect("event channel")
}

async fn applied(events: &mut broadcast::Receiver<ReloadOutcome>) -> Arc<ReloadReport> {
    match next_event(events).await {
        ReloadOutcome::Applied(report) => report,
        other => panic!("expected the reload to apply, got: {other:?}"),
    }
}

async fn rejected(events: &mut broadcast::Receiver<ReloadOutcome>) -> String {
    match next_event(events).await {
        ReloadOutcome::Rejected(error) => error.to_string(),
        other => panic!("expected a rejection, got: {other:?}"),
    }
}

fn serial_of(der: &[u8]) -> String {
    use x509_parser::prelude::FromDer;
    let (_, cert) = x509_parser::certificate::X509Certificate::from_der(der).expect("parse");
    cert.raw_serial()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The serial of the certificate a fresh, non-resuming connection sees.
async fn served_serial(pki: &Pki, leaf: &Leaf, server: &TestServer) -> String {
    let client = pki
        .client_builder(Some(leaf))
        .no_resumption()
        .build()
        .expect("client");
    let conn = client
        .connect(server.addr, "localhost")
        .await
        .expect("connect");
    assert_eq!(conn.get("/").await.expect("request").status(), 200);
    serial_of(conn.server_certificates()[0].as_ref())
}

/// Requests on fresh connections, over and over, until stopped; counts what fails.
struct Traffic {
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<Vec<String>>,
}

impl Traffic {
    fn start(pki: &Pki, leaf: &Leaf, server: &TestServer) -> Traffic {
        let client = pki
            .client_builder(Some(leaf))
            .no_resumption()
            .build()
            .expect("client");
        let (stop, ok) = (
            Arc::new(AtomicBool::new(false)),
            Arc::new(AtomicUsize::new(0)),
        );
        let addr = server.addr;
        let task = tokio::spawn({
            let (stop, ok) = (stop.clone(), ok.clone());
            async move {
                let mut errors = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    match client.get(addr, "localhost", "/").await {
                        Ok(r) if r.status() == 200 => {
                            ok.fetch_add(1, Ordering::Relaxed);
                        }
                        Ok(r) => errors.push(format!("status {}", r.status())),
                        Err(e) => errors.push(e.to_string()),
                    }
                }
                errors
            }
        });
        Traffic { stop, ok, task }
    }

    /// Waits until at least `n` more requests succeeded.
    async fn advance(&self, n: usize) {
        let target = self.ok.load(Ordering::Relaxed) + n;
        tokio::time::timeout(PATIENCE, async {
            while self.ok.load(Ordering::Relaxed) < target {
                tokio::task::yield_now().await;
            }
        })
        .await
        .expect("traffic flows");
    }

    async fn finish(self) -> (usize, Vec<String>) {
        self.stop.store(true, Ordering::Relaxed);
        let errors = self.task.await.expect("traffic task");
        (self.ok.load(Ordering::Relaxed), errors)
    }
}

fn write(path: &Path, content: &str) {
    std::fs::write(path, content).expect("write");
}

/// Write-then-rename, as editors and most tools replace files.
fn replace(path: &Path, content: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, content).expect("write tmp");
    std::fs::rename(&tmp, path).expect("rename");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_certificate_rotated_by_a_kubelet_data_swap() {
    init_tracing();
    let pki = Pki::new();
    let secret = pki.path("server-cert");
    let first = pki.ca.server();
    pki::write_secret_dir(
        &secret,
        &[("tls.crt", &first.cert_pem), ("tls.key", &first.key_pem)],
    );
    let tls = TlsConfig::from_pem_files(secret.join("tls.crt"), secret.join("tls.key"))
        .client_trust(&pki.ca_path)
        .build()
        .expect("config");
    let watch = tls.watch(POLL);
    let mut events = watch.config().subscribe();
    let server = TestServer::start(tls.clone()).await;
    let agent = pki.ca.client("agent");

    let open = pki
        .client(Some(&agent))
        .connect(server.addr, "localhost")
        .await
        .expect("open connection");
    assert_eq!(open.get("/before").await.expect("request").status(), 200);
    let first_serial = served_serial(&pki, &agent, &server).await;
    assert_eq!(first_serial, tls.server_certificate().serial);

    let traffic = Traffic::start(&pki, &agent, &server);
    traffic.advance(3).await;
    let second = pki.ca.server();
    pki::write_secret_generation(
        &secret,
        "..2026_11_28_00_00_00.000000002",
        &[("tls.crt", &second.cert_pem), ("tls.key", &second.key_pem)],
    );
    let report = applied(&mut events).await;
    assert!(
        report.identity_changed && !report.trust_changed,
        "{report:?}"
    );
    assert_eq!(report.previous_server_certificate.serial, first_serial);
    assert_ne!(report.server_certificate.serial, first_serial);
    traffic.advance(3).await;
    let (ok, errors) = traffic.finish().await;
    assert!(
        errors.is_empty(),
        "{} of {} requests failed across the swap: {errors:?}",
        errors.len(),
        ok + errors.len()
    );

    // The open connection keeps working; new connections get the new certificate.
    assert_eq!(
        open.get("/after")
            .await
            .expect("open connection still works")
            .status(),
        200
    );
    assert_eq!(
        served_serial(&pki, &agent, &server).await,
        report.server_certificate.serial
    );
    assert_eq!(
        serial_of(second.der.as_ref()),
        report.server_certificate.serial
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_ca_cannot_connect_nor_resume_and_an_added_one_can() {
    let pki = Pki::new();
    let trust = pki.path("client-cas");
    std::fs::create_dir(&trust).expect("dir");
    let old_ca = Ca::new("Old CA");
    let new_ca = Ca::new("New CA");
    write(&trust.join("old.crt"), &old_ca.cert_pem);
    let tls = pki.builder().client_trust(&trust).build().expect("config");
    let watch = tls.watch(POLL);
    let mut events = watch.config().subscribe();
    let server = TestServer::start(tls).await;

    let old_client = pki.client(Some(&old_ca.client("old-agent")));
    let new_client = pki.client(Some(&new_ca.client("new-agent")));
    let first = old_client
        .connect(server.addr, "localhost")
        .await
        .expect("old CA trusted");
    assert_eq!(first.get("/").await.expect("request").status(), 200);
    let second = old_client
        .connect(server.addr, "localhost")
        .await
        .expect("resume");
    assert!(
        second.is_resumed(),
        "the old client holds a resumable session"
    );
    assert!(
        new_client.get(server.addr, "localhost", "/").await.is_err(),
        "new CA not trusted yet"
    );

    // Swap the CAs: the old file goes, a new one appears. A check that catches the empty
    // directory in between sees a failure that does not last, which is never reported.
    std::fs::remove_file(trust.join("old.crt")).expect("remove");
    replace(&trust.join("new.crt"), &new_ca.cert_pem);
    let report = applied(&mut events).await;
    assert!(
        report.trust_changed && !report.identity_changed,
        "{report:?}"
    );
    assert_eq!(report.trust.anchors, 1);

    let err = old_client
        .connect(server.addr, "localhost")
        .await
        .expect("TLS 1.3 client finishes its side")
        .get("/")
        .await
        .expect_err("the removed CA's client must not get in, not even by resuming");
    assert_eq!(err.alert(), Some(AlertDescription::UnknownCA), "{err}");
    let ok = new_client
        .get(server.addr, "localhost", "/")
        .await
        .expect("added CA");
    assert_eq!(ok.status(), 200);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crl_update_revokes_a_client_and_spares_the_others() {
    let pki = Pki::new();
    let crl_path = pki.path("ca.crl");
    write(&crl_path, &pki.ca.crl(&[]));
    // A pinned client from a CA we do not trust, revocable through its CA's CRL.
    let agent_ca = Ca::new("Agent CA");
    let pinned = agent_ca.client("pinned-agent");
    let agent_crl_path = pki.path("agent-ca.crl");
    write(&agent_crl_path, &agent_ca.crl(&[]));
    let tls = pki
        .mtls_builder()
        .client_trust_pem(pinned.cert_pem.clone())
        .client_crl(&crl_path)
        .client_crl(&agent_crl_path)
        .build()
        .expect("config");
    assert_eq!(tls.trust_summary().crls, 2);
    let watch = tls.watch(POLL);
    let mut events = watch.config().subscribe();
    let server = TestServer::start(tls).await;
    let bad = pki.ca.client("compromised");
    let good = pki.ca.client("fine");
    for leaf in [&bad, &good, &pinned] {
        assert_eq!(
            pki.client(Some(leaf))
                .get(server.addr, "localhost", "/")
                .await
                .expect("before")
                .status(),
            200
        );
    }

    replace(&crl_path, &pki.ca.crl(&[&bad]));
    let report = applied(&mut events).await;
    assert!(report.trust_changed);
    let err = pki
        .client(Some(&bad))
        .get(server.addr, "localhost", "/")
        .await
        .expect_err("revoked");
    assert_eq!(
        err.alert(),
        Some(AlertDescription::CertificateRevoked),
        "{err}"
    );
    assert_eq!(
        pki.client(Some(&good))
            .get(server.addr, "localhost", "/")
            .await
            .expect("spared")
            .status(),
        200
    );
    assert_eq!(
        pki.client(Some(&pinned))
            .get(server.addr, "localhost", "/")
            .await
            .expect("spared")
            .status(),
        200
    );

    // DER works as well as PEM, and pinned leaves are revoked by their issuer's CRL.
    let der = {
        use tower_mtls::rustls::pki_types::CertificateRevocationListDer;
        use tower_mtls::rustls::pki_types::pem::PemObject;
        CertificateRevocationListDer::from_pem_slice(agent_ca.crl(&[&pinned]).as_bytes())
            .expect("CRL")
    };
    let tmp = agent_crl_path.with_extension("tmp");
    std::fs::write(&tmp, der.as_ref()).expect("write DER");
    std::fs::rename(&tmp, &agent_crl_path).expect("rename");
    applied(&mut events).await;
    let err = pki
        .client(Some(&pinned))
        .get(server.addr, "localhost", "/")
        .await
        .expect_err("pinned revoked");
    assert_eq!(
        err.alert(),
        Some(AlertDescription::CertificateRevoked),
        "{err}"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_updates_keep_the_previous_certificate_until_fixed() {
    let pki = Pki::new();
    let tls = pki.required_config();
    let watch = tls.watch(POLL);
    let mut events = watch.config().subscribe();
    let server = TestServer::start(tls.clone()).await;
    let agent = pki.ca.client("agent");
    let original = served_serial(&pki, &agent, &server).await;

    // A key that does not match the certificate.
    let stranger = pki.ca.server();
    replace(&pki.server_key, &stranger.key_pem);
    let error = rejected(&mut events).await;
    assert!(
        error.contains("server.key") && error.contains("does not match"),
        "{error}"
    );
    assert_eq!(served_serial(&pki, &agent, &server).await, original);

    // Fixed: a matching pair.
    let second = pki.ca.server();
    replace(&pki.server_cert, &second.cert_pem);
    replace(&pki.server_key, &second.key_pem);
    let report = applied(&mut events).await;
    assert_eq!(
        report.server_certificate.serial,
        serial_of(second.der.as_ref())
    );
    assert_eq!(
        served_serial(&pki, &agent, &server).await,
        report.server_certificate.serial
    );

    // Garbage where the certificate should be.
    write(&pki.server_cert, "garbage\n");
    let error = rejected(&mut events).await;
    assert!(
        error.contains("server.crt") && error.contains("no PEM block"),
        "{error}"
    );
    assert_eq!(
        served_serial(&pki, &agent, &server).await,
        report.server_certificate.serial
    );

    // Deleted.
    std::fs::remove_file(&pki.server_cert).expect("delete");
    let error = rejected(&mut events).await;
    assert!(
        error.contains("server.crt") && error.contains("no such file"),
        "{error}"
    );
    assert_eq!(
        served_serial(&pki, &agent, &server).await,
        report.server_certificate.serial
    );

    // Re-created with a new pair.
    let third = pki.ca.server();
    write(&pki.server_key, &third.key_pem);
    write(&pki.server_cert, &third.cert_pem);
    // Key first, then certificate: a check may see the new key with the old certificate, a
    // state that does not last and is never reported.
    let report = applied(&mut events).await;
    assert_eq!(
        report.server_certificate.serial,
        serial_of(third.der.as_ref())
    );
    assert_eq!(
        served_serial(&pki, &agent, &server).await,
        report.server_certificate.serial
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_written_before_its_key_fails_no_client() {
    let pki = Pki::new();
    let tls = pki.required_config();
    let watch = tls.watch(POLL);
    let mut events = watch.config().subscribe();
    let server = TestServer::start(tls).await;
    let agent = pki.ca.client("agent");
    let traffic = Traffic::start(&pki, &agent, &server);
    traffic.advance(3).await;

    let next = pki.ca.server();
    write(&pki.server_cert, &next.cert_pem);
    // The mismatch is seen, and reported once it has lasted a full check.
    let error = rejected(&mut events).await;
    assert!(error.contains("does not match"), "{error}");
    traffic.advance(3).await;
    write(&pki.server_key, &next.key_pem);
    let report = applied(&mut events).await;
    traffic.advance(3).await;
    let (ok, errors) = traffic.finish().await;
    assert!(
        errors.is_empty(),
        "{} of {} requests failed: {errors:?}",
        errors.len(),
        ok + errors.len()
    );
    assert_eq!(
        report.server_certificate.serial,
        serial_of(next.der.as_ref())
    );
    assert_eq!(
        served_serial(&pki, &agent, &server).await,
        report.server_certificate.serial
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_handle_reloads_on_demand_and_reports_outcomes() {
    let pki = Pki::new();
    let tls = pki.required_config();
    // A long interval: only explicit reloads happen during the test.
    let watch = tls.watch(Duration::from_secs(3600));
    assert!(matches!(
        watch.config().reload().await,
        ReloadOutcome::Unchanged
    ));
    let next = pki.ca.server();
    replace(&pki.server_cert, &next.cert_pem);
    replace(&pki.server_key, &next.key_pem);
    match watch.config().reload().await {
        ReloadOutcome::Applied(report) => {
            assert_eq!(
                report.server_certificate.serial,
                serial_of(next.der.as_ref())
            );
            assert!(report.server_certificate.not_after > std::time::SystemTime::now());
        }
        other => panic!("expected Applied, got {other:?}"),
    }
    assert!(matches!(
        watch.config().reload().await,
        ReloadOutcome::Unchanged
    ));
    write(&pki.server_key, "broken");
    assert!(matches!(
        watch.config().reload().await,
        ReloadOutcome::Rejected(_)
    ));
    assert_eq!(
        tls.server_certificate().serial,
        serial_of(next.der.as_ref())
    );
}

// ---- Removing trust is never blocked by a CRL left behind ----

/// Two CAs share a subject name (old and new key), each with its CRL in the CRL directory. The
/// operator drops the old CA from the bundle; its CRL stays (bundles and CRLs come from
/// different publishers on different schedules). The reload applies: the retired CA's client
/// is refused and cannot resume, the new CA's client keeps working.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ca_removed_while_its_crl_stays_behind_loses_its_clients() {
    let pki = Pki::new();
    let old_ca = Ca::new("Rotating CA");
    let new_ca = Ca::new("Rotating CA");
    let bundle = pki.path("client-cas.pem");
    write(&bundle, &format!("{}{}", old_ca.cert_pem, new_ca.cert_pem));
    let crls = pki.path("crls");
    std::fs::create_dir(&crls).expect("dir");
    write(&crls.join("old.crl"), &old_ca.crl(&[]));
    write(&crls.join("new.crl"), &new_ca.crl(&[]));
    let tls = pki
        .builder()
        .client_trust(&bundle)
        .client_crl(&crls)
        .build()
        .expect("config");
    let acceptor = tower_mtls::MtlsAcceptor::new(tls.clone());
    let server = TestServer::start(acceptor.clone()).await;

    let old_leaf = old_ca.client("old-agent");
    let new_leaf = new_ca.client("new-agent");
    let old_client = pki.client(Some(&old_leaf));
    let first = old_client
        .connect(server.addr, "localhost")
        .await
        .expect("old CA trusted");
    assert_eq!(first.get("/").await.expect("request").status(), 200);
    assert_eq!(
        handshake_verdict(&pki, &acceptor, &server, &new_leaf).await,
        Verdict::Accepted
    );

    write(&bundle, &new_ca.cert_pem);
    match tls.reload().await {
        ReloadOutcome::Applied(report) => assert_eq!(report.trust.anchors, 1, "{report:?}"),
        other => panic!("the reload must apply, not keep the retired CA: {other:?}"),
    }
    let warnings = tls.trust_details().warnings.join("\n");
    assert!(
        warnings.contains("old.crl") && warnings.contains("no trusted key of that name signed it"),
        "the leftover CRL is named in a warning: {warnings}"
    );

    let err = old_client
        .connect(server.addr, "localhost")
        .await
        .expect("TLS 1.3 client finishes its side")
        .get("/")
        .await
        .expect_err("the retired CA's client must not get in, not even by resuming");
    assert_eq!(err.alert(), Some(AlertDescription::UnknownCA), "{err}");
    assert_eq!(
        handshake_verdict(&pki, &acceptor, &server, &old_leaf).await,
        Verdict::Refused(
            tower_mtls::tls::HandshakeFailure::UnknownCa,
            Some(AlertDescription::UnknownCA)
        ),
        "a CA of that name is trusted, but not this key: unknown_ca, not decrypt_error"
    );
    assert_eq!(
        handshake_verdict(&pki, &acceptor, &server, &new_leaf).await,
        Verdict::Accepted
    );
    server.stop().await;
}

/// The mirror case: the CA was re-keyed under the same name and only the new certificate is
/// trusted, while the CRL directory still holds the old key's CRL. The configuration loads
/// and the new CA's clients get in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_re_keyed_ca_serves_its_clients_while_the_old_keys_crl_is_still_there() {
    let pki = Pki::new();
    let old_ca = Ca::new("Re-keyed CA");
    let new_ca = Ca::new("Re-keyed CA");
    let crls = pki.path("crls");
    std::fs::create_dir(&crls).expect("dir");
    write(&crls.join("old.crl"), &old_ca.crl(&[]));
    let tls = pki
        .builder()
        .client_trust_pem(new_ca.cert_pem.clone())
        .client_crl(&crls)
        .build()
        .expect("a CRL of the old key blocks nothing");
    let verdicts = handshake_verdicts(
        &pki,
        tls,
        &[&new_ca.client("new-agent"), &old_ca.client("old-agent")],
    )
    .await;
    assert_eq!(
        verdicts,
        [
            Verdict::Accepted,
            Verdict::Refused(
                tower_mtls::tls::HandshakeFailure::UnknownCa,
                Some(AlertDescription::UnknownCA)
            )
        ]
    );
}
