//! The telemetry hook: a `TlsObserver` sees every handshake outcome (class, duration, remote
//! address, client subject) and every reload outcome; `MtlsServer` exposes the stats.

use tower_mtls_test_kit as support;

use std::sync::{Arc, Mutex};

use support::*;
use tower_mtls::tls::{HandshakeEvent, HandshakeFailure, ReloadOutcome, TlsObserver};
use tower_mtls::{MtlsAcceptor, MtlsServer};

#[derive(Default, Clone)]
struct Recorder {
    handshakes: Arc<Mutex<Vec<HandshakeEvent>>>,
    reloads: Arc<Mutex<Vec<ReloadOutcome>>>,
}

impl TlsObserver for Recorder {
    fn on_handshake(&self, event: &HandshakeEvent) {
        self.handshakes.lock().expect("lock").push(event.clone());
    }

    fn on_reload(&self, event: &ReloadOutcome) {
        self.reloads.lock().expect("lock").push(event.clone());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn observer_sees_every_handshake_and_reload() {
    let pki = Pki::new();
    let tls = pki.required_config();
    let recorder = Recorder::default();
    let acceptor = MtlsAcceptor::new(tls.clone()).observer(recorder.clone());
    let server = MtlsServer::bind("127.0.0.1:0")
        .await
        .expect("bind")
        .tls(acceptor.clone());
    assert_eq!(
        server.stats().expect("TLS").handshakes_succeeded,
        0,
        "the server exposes its acceptor's stats"
    );
    let server = TestServer::spawn(server, None, tower::service_fn(whoami));

    let agent = pki.ca.client("steadybit-agent");
    let stranger = Ca::new("Stranger CA").client("intruder");
    pki.client(Some(&agent))
        .get(server.addr, "localhost", "/")
        .await
        .expect("accepted");
    refusal_alert(&pki, Some(&stranger), server.addr).await;

    let events = tokio::time::timeout(PATIENCE, async {
        loop {
            let events = recorder.handshakes.lock().expect("lock").clone();
            if events.len() >= 2 {
                return events;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("two handshakes observed");
    assert_eq!(events.len(), 2, "{events:?}");
    let ok = events.iter().find(|e| e.succeeded()).expect("a success");
    assert_eq!(ok.class(), "none");
    assert!(
        ok.client_subject
            .as_deref()
            .is_some_and(|s| s.contains("CN=steadybit-agent"))
    );
    assert!(ok.remote_addr.is_some_and(|a| a.ip().is_loopback()));
    assert!(ok.duration > std::time::Duration::ZERO);
    let refused = events.iter().find(|e| !e.succeeded()).expect("a refusal");
    assert_eq!(refused.failure, Some(HandshakeFailure::UnknownCa));
    assert_eq!(refused.class(), "unknown_ca");
    assert!(
        refused
            .client_subject
            .as_deref()
            .is_some_and(|s| s.contains("CN=intruder"))
    );
    let stats = acceptor.stats();
    assert_eq!(
        (stats.handshakes_succeeded, stats.handshakes_failed()),
        (1, 1)
    );

    // A rotated server certificate: the observer hears of the applied reload.
    let rotated = pki.ca.server();
    std::fs::write(&pki.server_cert, &rotated.chain_pem).expect("write cert");
    std::fs::write(&pki.server_key, &rotated.key_pem).expect("write key");
    assert!(matches!(
        tls.reload().await,
        tower_mtls::tls::ReloadOutcome::Applied(_)
    ));
    let reloads = recorder.reloads.lock().expect("lock").clone();
    assert_eq!(reloads.len(), 1, "{reloads:?}");
    assert!(matches!(&reloads[0], ReloadOutcome::Applied(r) if r.identity_changed));
    server.stop().await;
}
