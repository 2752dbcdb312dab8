//! Built with neither bundled provider, the crate serves mutual TLS with the provider the
//! application passes to the builder, its agent side connects with it — and neither touches
//! rustls's process-wide default.

mod common;

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use rustls::crypto::CryptoProvider;
use tower::ServiceBuilder;
use tower_mtls::policy::Rule;
use tower_mtls::serve::ListenAddr;
use tower_mtls::steadybit::agent::AgentTls;
use tower_mtls::{ClientCertLayer, MtlsAcceptor, MtlsServer, PeerExt};

const PATIENCE: Duration = Duration::from_secs(30);

#[tokio::test]
async fn a_provider_passed_to_the_builder_serves_mutual_tls() {
    let pki = common::Pki::new();
    let provider = common::ring();
    let config = pki
        .config(Some(provider.clone()))
        .expect("builds with the given provider");
    let server = MtlsServer::bind("127.0.0.1:0")
        .await
        .expect("bind")
        .tls(MtlsAcceptor::new(config));
    let handle = server.handle();
    let Ok(ListenAddr::Tcp(addr)) = server.local_addr() else {
        panic!("a TCP address");
    };
    let app = ServiceBuilder::new()
        .layer(ClientCertLayer::require().allow(Rule::new().subject_cn("agent")))
        .service_fn(|req: http::Request<hyper::body::Incoming>| async move {
            let cn = req
                .client_identity()
                .and_then(|id| id.common_name())
                .unwrap_or("-")
                .to_owned();
            Ok::<_, Infallible>(http::Response::new(Full::new(Bytes::from(format!(
                "hello {cn}"
            )))))
        });
    let serving = tokio::spawn(server.serve(app));

    // The agent side of the same build, on the same provider: the Steadybit agent's
    // configuration (its certificate and key, the extension's CA to trust).
    let agent = AgentTls::new()
        .client_cert_chain_file(&pki.client_cert)
        .client_key_file(&pki.client_key)
        .server_cert_file(&pki.ca_path)
        .crypto_provider(provider.clone())
        .client_config()
        .expect("the agent's configuration builds with the given provider");
    for client in [pki.client(true), Arc::new(agent)] {
        let response = tokio::time::timeout(PATIENCE, pki.get(addr, client))
            .await
            .expect("in time")
            .expect("a client with a certificate is served");
        assert!(response.starts_with("HTTP/1.1 200"), "{response}");
        assert!(response.ends_with("hello agent"), "{response}");
    }

    let refused = tokio::time::timeout(PATIENCE, pki.get(addr, pki.client(false)))
        .await
        .expect("in time");
    assert!(
        refused.is_err(),
        "a client without a certificate is refused: {refused:?}"
    );

    // The handshakes ran on the provider given, none was installed for the process.
    assert!(
        CryptoProvider::get_default().is_none(),
        "the crate installed a process-wide default provider"
    );
    assert!(
        Arc::strong_count(&provider) > 1,
        "the server holds the given provider"
    );

    handle.graceful_shutdown();
    tokio::time::timeout(PATIENCE, serving)
        .await
        .expect("stops")
        .expect("task")
        .expect("serve");
}
