//! An axum app served by `axum-server` with this crate's mTLS:
//! `cargo run --example axum_server --features axum-server,client`.
//!
//! Generates a throwaway CA, a server certificate and client certificates in a temporary
//! directory, serves an axum `Router` with `axum_server::bind(..).acceptor(tower_mtls::
//! axum_server::Acceptor::new(tls))`, and calls it with the crate's own client:
//!
//! * `/whoami` — only `CN=steadybit-agent, O=Steadybit` (a `ClientCertLayer` rule): the agent
//!   gets 200 and its identity, another client of the same CA gets 403;
//! * `/public` — any client that completed the handshake;
//! * a client without a certificate is refused in the handshake.
//!
//! Then it stops the server gracefully through axum-server's `Handle`, and exits 0 only when
//! every answer was the expected one.

use tower_mtls_test_kit::pki;

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use axum::Router;
use axum::extract::Extension;
use axum::routing::get;
use pki::{Ca, Leaf, LeafSpec};
use tower_mtls::policy::AllowedClient;
use tower_mtls::{ClientCertLayer, Rule, TlsConfig, TlsInfo, tls::DEFAULT_WATCH_INTERVAL};
use tower_mtls_test_kit::client::Client;

/// Who the caller is, as the policy layer established it.
async fn whoami(Extension(client): Extension<AllowedClient>, tls: Extension<TlsInfo>) -> String {
    let who = client
        .identity()
        .map_or_else(|| "?".to_owned(), |id| id.subject().to_string());
    let rule = client
        .matched_rule()
        .map_or_else(|| "-".to_owned(), |r| r.to_string());
    format!("hello {who} (rule {rule}, {:?})\n", tls.protocol_version())
}

async fn public() -> &'static str {
    "public: hello, whoever you are\n"
}

/// What one call should get: a status, or a refused handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    Status(u16),
    Refused,
}

#[tokio::main]
async fn main() -> Result<ExitCode, Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "error".into()),
        )
        .init();

    // 1. A throwaway PKI, as files (like mounted Kubernetes secrets).
    let dir = tempfile::tempdir()?;
    let ca = Ca::new("Cluster CA");
    let ca_path = ca.write(dir.path(), "ca.crt");
    let (server_cert, server_key) = ca.server().write(dir.path(), "server");
    let agent = ca.issue(&LeafSpec::client("steadybit-agent").org("Steadybit"));
    let intruder = ca.issue(&LeafSpec::client("intruder").org("Elsewhere"));

    // 2. The TLS configuration from the files, reloaded when they change.
    let tls = TlsConfig::builder()
        .server_cert_file(&server_cert)
        .server_key_file(&server_key)
        .client_trust(&ca_path)
        .build()?;
    let _watch = tls.watch(DEFAULT_WATCH_INTERVAL);

    // 3. The app: a guarded route and a public one.
    let app = Router::new()
        .route(
            "/whoami",
            get(whoami).layer(
                ClientCertLayer::require().allow(
                    Rule::named("agent")
                        .subject_cn("steadybit-agent")
                        .subject_o("Steadybit"),
                ),
            ),
        )
        .route("/public", get(public))
        // Request spans nest under the connection's span, which names the client.
        .layer(tower_http::trace::TraceLayer::new_for_http());

    // 4. axum-server with this crate's acceptor, on an ephemeral port.
    let handle = axum_server::Handle::new();
    let serving = tokio::spawn(
        axum_server::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
            .acceptor(tower_mtls::axum_server::Acceptor::new(tls.clone()))
            .handle(handle.clone())
            .serve(app.into_make_service()),
    );
    let addr = handle
        .listening()
        .await
        .ok_or("the server did not start listening")?;
    println!(
        "axum-server on https://{addr} (client auth: {})\n",
        tls.client_auth()
    );

    // 5. The calls.
    let client = |identity: Option<&Leaf>| {
        let builder = Client::builder().trust_server_ca_pem(ca.cert_pem.clone());
        match identity {
            Some(leaf) => builder.identity_pem(leaf.cert_pem.clone(), leaf.key_pem.clone()),
            None => builder,
        }
        .build()
    };
    let cases = [
        (
            "agent on /whoami",
            client(Some(&agent))?,
            "/whoami",
            Expect::Status(200),
        ),
        (
            "intruder on /whoami",
            client(Some(&intruder))?,
            "/whoami",
            Expect::Status(403),
        ),
        (
            "intruder on /public",
            client(Some(&intruder))?,
            "/public",
            Expect::Status(200),
        ),
        (
            "no certificate on /public",
            client(None)?,
            "/public",
            Expect::Refused,
        ),
    ];
    let mut all_as_expected = true;
    for (name, client, path, expected) in cases {
        let outcome =
            tokio::time::timeout(Duration::from_secs(30), client.get(addr, "localhost", path))
                .await;
        let (got, detail) = match outcome {
            Err(_) => (None, "no answer within 30 s".to_owned()),
            Ok(Ok(response)) => (
                Some(Expect::Status(response.status().as_u16())),
                format!(
                    "HTTP {}: {}",
                    response.status().as_u16(),
                    String::from_utf8_lossy(response.body()).trim_end()
                ),
            ),
            Ok(Err(error)) => (
                Some(Expect::Refused),
                match error.alert() {
                    Some(alert) => format!("refused: TLS alert {alert:?}"),
                    None => format!("refused: {error}"),
                },
            ),
        };
        let ok = got == Some(expected);
        all_as_expected &= ok;
        println!(
            "[{}] {name}\n      {detail}",
            if ok { "as expected" } else { "UNEXPECTED" }
        );
    }

    // 6. Graceful shutdown: stop accepting, let connections finish, within 10 s.
    handle.graceful_shutdown(Some(Duration::from_secs(10)));
    let stopped = tokio::time::timeout(Duration::from_secs(30), serving).await;
    let stopped_cleanly = matches!(stopped, Ok(Ok(Ok(()))));
    println!(
        "\n[{}] graceful shutdown through axum-server's Handle ({} connections left)",
        if stopped_cleanly {
            "as expected"
        } else {
            "UNEXPECTED"
        },
        handle.connection_count()
    );
    all_as_expected &= stopped_cleanly && handle.connection_count() == 0;

    println!();
    if all_as_expected {
        println!("every call behaved as expected");
        Ok(ExitCode::SUCCESS)
    } else {
        println!("some calls did not behave as expected");
        Ok(ExitCode::FAILURE)
    }
}
