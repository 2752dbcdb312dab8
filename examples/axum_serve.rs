//! An axum app on axum's own server, `axum::serve`, with mutual TLS:
//! `cargo run --example axum_serve --features axum`.
//!
//! The crate's [`MtlsListener`] runs the handshakes (off axum's accept loop, with a deadline
//! and a connection cap); [`make_service`] attaches each connection's facts to its requests;
//! handlers take the client with the crate's extractors; a per-route [`ClientCertLayer`]
//! lets only the agent into `/agent`. Client certificates are optional at the TLS level, so
//! a client without one gets a clear 401 from the route instead of a failed handshake.
//!
//! The example generates its own PKI, serves on an ephemeral port, calls every route with
//! every client (also while a silent client holds a connection open), shuts down gracefully
//! and exits 0 when every answer is the expected one.

use tower_mtls_test_kit::pki;

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use axum::routing::get;
use pki::{Ca, Leaf, LeafSpec};
use tower_mtls::axum::{Identity, make_service};
use tower_mtls::policy::AllowedClient;
use tower_mtls::serve::MtlsListener;
use tower_mtls::{ClientAuth, ClientCertLayer, MtlsAcceptor, Rule, TlsConfig, TlsInfo};
use tower_mtls_test_kit::client::Client;

/// Anyone who completed the handshake, with or without a certificate.
async fn public(client: Option<Identity>) -> String {
    match client {
        Some(id) => format!("hello {}\n", id.subject()),
        None => "hello, anonymous\n".to_owned(),
    }
}

/// Any client with a trusted certificate (the `Identity` extractor answers 401 otherwise).
async fn whoami(
    client: Identity,
    tls: TlsInfo,
    ConnectInfo(remote): ConnectInfo<SocketAddr>,
) -> String {
    format!(
        "{} from {remote} over {:?}\n",
        client.subject(),
        tls.protocol_version()
    )
}

/// Only what the route's layer lets through.
async fn agent(client: AllowedClient) -> String {
    let rule = client
        .matched_rule()
        .map_or_else(|| "-".to_owned(), |rule| rule.to_string());
    format!("welcome, agent (rule {rule})\n")
}

/// The routes, each request in a tower-http span (nested under the connection's span, which
/// names the client: try `RUST_LOG=info,tower_http=debug`).
fn app() -> Router {
    Router::new()
        .route("/", get(public))
        .route("/whoami", get(whoami))
        .route(
            "/agent",
            get(agent).layer(
                ClientCertLayer::require().allow(
                    Rule::named("agent")
                        .subject_cn("steadybit-agent")
                        .subject_o("Steadybit"),
                ),
            ),
        )
        .layer(tower_http::trace::TraceLayer::new_for_http())
}

#[tokio::main]
async fn main() -> Result<ExitCode, Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "error".into()),
        )
        .init();

    let dir = tempfile::tempdir()?;
    let ca = Ca::new("Cluster CA");
    let ca_path = ca.write(dir.path(), "ca.crt");
    let (server_cert, server_key) = ca.server().write(dir.path(), "server");
    let agent_cert = ca.issue(&LeafSpec::client("steadybit-agent").org("Steadybit"));
    let other = ca.issue(&LeafSpec::client("someone-else").org("Elsewhere"));
    let stranger = Ca::new("Untrusted CA").client("steadybit-agent");

    let tls = TlsConfig::builder()
        .server_cert_file(&server_cert)
        .server_key_file(&server_key)
        .client_trust(&ca_path)
        .client_auth(ClientAuth::Optional)
        .build()?;
    let acceptor = MtlsAcceptor::new(tls).handshake_timeout(Duration::from_secs(5));
    let listener = MtlsListener::bind("127.0.0.1:0", acceptor)
        .await?
        .max_connections(1024);
    let addr = listener.local_addr()?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let shutdown = listener.graceful_shutdown(
        async move {
            let _ = stopped.await;
        },
        Duration::from_secs(5),
    );
    let serving = tokio::spawn(async move {
        axum::serve(listener, make_service(app()))
            .with_graceful_shutdown(shutdown)
            .await
    });
    println!("axum::serve on https://{addr}, client certificates optional\n");

    // A client that connects and says nothing: it must not hold up anyone else.
    let silent = tokio::net::TcpStream::connect(addr).await?;

    let client = |identity: Option<&Leaf>| {
        let builder = Client::builder().trust_server_ca_pem(ca.cert_pem.clone());
        match identity {
            Some(leaf) => builder.identity_pem(leaf.cert_pem.clone(), leaf.key_pem.clone()),
            None => builder,
        }
        .build()
    };
    let agent_client = client(Some(&agent_cert))?;
    let other_client = client(Some(&other))?;
    let anonymous = client(None)?;
    let untrusted = client(Some(&stranger))?;
    // (client, name, path, expected status; 0 = refused during the handshake)
    let cases: [(&Client, &str, &str, u16); 10] = [
        (&agent_client, "agent", "/", 200),
        (&agent_client, "agent", "/whoami", 200),
        (&agent_client, "agent", "/agent", 200),
        (&other_client, "trusted, not the agent", "/whoami", 200),
        (&other_client, "trusted, not the agent", "/agent", 403),
        (&anonymous, "no certificate", "/", 200),
        (&anonymous, "no certificate", "/whoami", 401),
        (&anonymous, "no certificate", "/agent", 401),
        (&untrusted, "untrusted CA", "/", 0),
        (&untrusted, "untrusted CA", "/agent", 0),
    ];
    let mut all_as_expected = true;
    for (client, name, path, expected) in cases {
        let outcome =
            tokio::time::timeout(Duration::from_secs(30), client.get(addr, "localhost", path))
                .await;
        let (status, detail) = match outcome {
            Err(_) => (u16::MAX, "no answer within 30 s".to_owned()),
            Ok(Ok(response)) => (
                response.status().as_u16(),
                String::from_utf8_lossy(response.body()).trim().to_owned(),
            ),
            Ok(Err(error)) => (
                0,
                match error.alert() {
                    Some(alert) => format!("refused in the handshake: TLS alert {alert:?}"),
                    None => format!("refused: {error}"),
                },
            ),
        };
        let ok = status == expected;
        all_as_expected &= ok;
        println!(
            "[{}] {name:<24} GET {path:<8} -> {status:>3}  {detail}",
            if ok { "as expected" } else { "UNEXPECTED " }
        );
    }
    drop(silent);

    let _ = stop.send(());
    serving.await??;
    println!();
    if all_as_expected {
        println!("every request behaved as expected; shut down gracefully");
        Ok(ExitCode::SUCCESS)
    } else {
        println!("some requests did not behave as expected");
        Ok(ExitCode::FAILURE)
    }
}
