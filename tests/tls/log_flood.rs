//! A flood of clients without certificates is counted, and its warnings are rate-limited.
//! (Its own test binary: it installs a process-wide subscriber to read the log.)

use tower_mtls_test_kit as support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use support::*;
use tower_mtls::{MtlsAcceptor, tls::HandshakeFailure};
use tracing_subscriber::layer::{Context, SubscriberExt};

/// Keeps the message and fields of every warning from the crate.
#[derive(Clone, Default)]
struct Warnings(Arc<Mutex<Vec<String>>>);

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Warnings {
    fn on_event(&self, event: &tracing::Event<'_>, _: Context<'_, S>) {
        let meta = event.metadata();
        if *meta.level() == tracing::Level::WARN && meta.target().starts_with("tower_mtls") {
            struct Fields(String);
            impl tracing::field::Visit for Fields {
                fn record_debug(
                    &mut self,
                    field: &tracing::field::Field,
                    value: &dyn std::fmt::Debug,
                ) {
                    self.0.push_str(&format!("{}={:?} ", field.name(), value));
                }
            }
            let mut fields = Fields(String::new());
            event.record(&mut fields);
            self.0.lock().expect("lock").push(fields.0);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_without_client_certificates_is_counted_and_rate_limited() {
    let warnings = Warnings::default();
    tracing::subscriber::set_global_default(tracing_subscriber::registry().with(warnings.clone()))
        .expect("global subscriber");

    let pki = Pki::new();
    let tls = pki.required_config();
    // A window longer than the test: exactly the burst is logged.
    let acceptor = MtlsAcceptor::new(tls).log_rate_limit(5, Duration::from_secs(3600));
    let server = TestServer::start(acceptor.clone()).await;

    let anonymous = pki.client(None);
    for _ in 0..100 {
        let err = anonymous
            .get(server.addr, "localhost", "/")
            .await
            .expect_err("refused");
        assert!(err.alert().is_some(), "{err}");
    }
    let counted = async {
        while acceptor
            .stats()
            .failures(HandshakeFailure::NoClientCertificate)
            < 100
        {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    };
    tokio::time::timeout(PATIENCE, counted)
        .await
        .expect("all 100 counted");

    // A legitimate client is unaffected, and a refused certificate still has a place in the
    // log only if the burst allows it: here it is spent.
    let ok = pki
        .client(Some(&pki.ca.client("legit")))
        .get(server.addr, "localhost", "/")
        .await
        .expect("legit client");
    assert_eq!(ok.status(), 200);

    let logged = warnings.0.lock().expect("lock").clone();
    assert_eq!(logged.len(), 5, "{logged:#?}");
    assert!(
        logged
            .iter()
            .all(|w| w.contains("no_client_certificate") && w.contains("remote=")),
        "{logged:#?}"
    );
    assert_eq!(acceptor.stats().handshakes_succeeded, 1);
    server.stop().await;
}
