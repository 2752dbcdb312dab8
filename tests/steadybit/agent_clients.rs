//! The agent's configuration in the HTTP clients an agent-side Rust service uses, end to end,
//! as the `steadybit::agent` module docs show them: reqwest with it as a preconfigured TLS
//! backend, and hyper-util's client through hyper-rustls's connector. Both offer `h2` and
//! `http/1.1`; the server picks HTTP/2.
#![cfg(feature = "agent")]

use tower_mtls_test_kit as support;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use support::*;
use tower_mtls::steadybit::agent::{AgentTls, HostnameVerification};

/// A server requiring client certificates of the PKI's CA, and the agent's configuration for
/// it: its own certificate from that CA, the CA as the extension's trust, strict names.
async fn server_and_agent(pki: &Pki) -> (TestServer, AgentTls) {
    let tls = pki.required_config();
    let server = TestServer::start(tls).await;
    let leaf = pki
        .ca
        .issue(&LeafSpec::client("steadybit-agent").org("Steadybit"));
    let (cert, key) = pki.write_leaf(&leaf, "agent");
    let agent = AgentTls::new()
        .client_cert_chain_file(cert)
        .client_key_file(key)
        .server_cert_file(&pki.ca_path)
        .hostname_verification(HostnameVerification::Strict);
    (server, agent)
}

#[tokio::test]
async fn reqwest_takes_the_agent_configuration_as_its_tls_backend() {
    let pki = Pki::new();
    let (server, agent) = server_and_agent(&pki).await;
    let client = reqwest::Client::builder()
        .tls_backend_preconfigured(agent.client_config().expect("client config"))
        .build()
        .expect("reqwest accepts the configuration");
    let response = client
        .get(server.url("/agent"))
        .send()
        .await
        .expect("response");
    assert_eq!(response.status(), 200);
    assert_eq!(response.version(), http::Version::HTTP_2);
    let body: serde_json::Value =
        serde_json::from_slice(&response.bytes().await.expect("body")).expect("json");
    assert_eq!(body["cn"], "steadybit-agent", "{body}");
    assert_eq!(body["alpn"], "h2", "{body}");
    server.stop().await;
}

#[tokio::test]
async fn reqwest_refuses_an_arc_of_it_at_build() {
    let pki = Pki::new();
    let (server, agent) = server_and_agent(&pki).await;
    let config = std::sync::Arc::new(agent.client_config().expect("client config"));
    let built = reqwest::Client::builder()
        .tls_backend_preconfigured(config)
        .build();
    assert!(built.is_err(), "an Arc is no TLS backend reqwest knows");
    server.stop().await;
}

#[tokio::test]
async fn hyper_util_takes_it_through_hyper_rustls_without_alpn() {
    let pki = Pki::new();
    let (server, agent) = server_and_agent(&pki).await;
    let mut config = agent.client_config().expect("client config");
    config.alpn_protocols.clear();
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(config)
        .https_only()
        .enable_http1()
        .enable_http2()
        .build();
    let client: Client<_, Empty<Bytes>> = Client::builder(TokioExecutor::new()).build(https);
    let response = client
        .get(server.url("/agent").parse().expect("uri"))
        .await
        .expect("response");
    assert_eq!(response.status(), 200);
    let body = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    let body: serde_json::Value = serde_json::from_slice(&body).expect("json");
    assert_eq!(body["cn"], "steadybit-agent", "{body}");
    assert_eq!(body["alpn"], "h2", "{body}");
    server.stop().await;
}
