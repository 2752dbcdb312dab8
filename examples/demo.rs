//! A self-contained tour: `cargo run --example demo`.
//!
//! Generates a throwaway CA, a server certificate and client certificates in a temporary
//! directory, starts a server that requires client certificates (watching its files for
//! rotation), and makes three requests with the crate's own client: with the trusted client
//! certificate, with none, and with one from an untrusted CA. Prints each outcome and exits 0
//! when all three behaved as expected.

use tower_mtls_test_kit::pki;

use std::convert::Infallible;
use std::process::ExitCode;

use bytes::Bytes;
use http_body_util::Full;
use pki::{Ca, LeafSpec};
use tower_mtls::{MtlsServer, PeerCertificates, TlsConfig, TlsInfo, tls::DEFAULT_WATCH_INTERVAL};
use tower_mtls_test_kit::client::Client;

/// The application: tells the caller what the server knows about it.
async fn hello(
    req: http::Request<hyper::body::Incoming>,
) -> Result<http::Response<Full<Bytes>>, Infallible> {
    let tls = req.extensions().get::<TlsInfo>();
    let identity = req
        .extensions()
        .get::<PeerCertificates>()
        .and_then(|peer| peer.identity().ok());
    let text = match identity {
        Some(id) => format!(
            "subject={} issuer={} spiffe={} tls={:?} alpn={}",
            id.subject(),
            id.issuer(),
            id.spiffe_id().map_or("-".into(), |s| s.to_string()),
            tls.and_then(|t| t.protocol_version()),
            tls.and_then(|t| t.alpn_protocol())
                .map_or("-".into(), |a| String::from_utf8_lossy(a).into_owned()),
        ),
        None => "no client certificate".into(),
    };
    Ok(http::Response::new(Full::from(text)))
}

#[tokio::main]
async fn main() -> Result<ExitCode, Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "warn,tower_mtls=warn".into()),
        )
        .init();

    // 1. A throwaway PKI, laid out as files like Kubernetes secrets would be.
    let dir = tempfile::tempdir()?;
    let ca = Ca::new("Demo CA");
    let ca_path = ca.write(dir.path(), "ca.crt");
    let (server_cert, server_key) = ca.server().write(dir.path(), "server");
    let agent = ca.issue(
        &LeafSpec::client("steadybit-agent")
            .org("Steadybit")
            .uri("spiffe://demo.example/ns/steadybit/sa/agent"),
    );
    let stranger = Ca::new("Untrusted CA").client("steadybit-agent");
    println!("PKI in {}", dir.path().display());

    // 2. A server that requires client certificates from the demo CA.
    let tls = TlsConfig::builder()
        .server_cert_file(&server_cert)
        .server_key_file(&server_key)
        .client_trust(&ca_path)
        .build()?;
    let _watch = tls.watch(DEFAULT_WATCH_INTERVAL);
    let server = MtlsServer::bind("127.0.0.1:0").await?.tls(tls.clone());
    let addr = match server.local_addr()? {
        tower_mtls::serve::ListenAddr::Tcp(addr) => addr,
        other => return Err(format!("unexpected listener {other}").into()),
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(
        server
            .with_graceful_shutdown(async move {
                let _ = stopped.await;
            })
            .serve(tower::service_fn(hello)),
    );
    println!(
        "server on https://{addr} (client auth: {}, server certificate serial {})\n",
        tls.client_auth(),
        tls.server_certificate().serial
    );

    // 3. Three clients.
    let client = |identity: Option<&pki::Leaf>| {
        let builder = Client::builder().trust_server_ca_pem(ca.cert_pem.clone());
        match identity {
            Some(leaf) => builder.identity_pem(leaf.cert_pem.clone(), leaf.key_pem.clone()),
            None => builder,
        }
        .build()
    };
    let cases = [
        ("trusted client certificate", client(Some(&agent))?, true),
        ("no client certificate", client(None)?, false),
        (
            "certificate from an untrusted CA",
            client(Some(&stranger))?,
            false,
        ),
    ];
    let mut all_as_expected = true;
    for (name, client, should_pass) in cases {
        let outcome = client.get(addr, "localhost", "/").await;
        let (passed, detail) = match &outcome {
            Ok(response) if response.status().is_success() => (
                true,
                format!(
                    "accepted: HTTP {}; the handler saw {}",
                    response.status().as_u16(),
                    String::from_utf8_lossy(response.body())
                ),
            ),
            Ok(response) => (false, format!("HTTP {}", response.status())),
            Err(error) => match error.alert() {
                Some(alert) => (false, format!("refused: TLS alert {alert:?}")),
                None => (false, format!("refused: {error}")),
            },
        };
        let ok = passed == should_pass;
        all_as_expected &= ok;
        println!(
            "[{}] {name}\n      {detail}",
            if ok { "as expected" } else { "UNEXPECTED" }
        );
    }

    let _ = stop.send(());
    serving.await??;
    println!();
    if all_as_expected {
        println!("all three requests behaved as expected");
        Ok(ExitCode::SUCCESS)
    } else {
        println!("some requests did not behave as expected");
        Ok(ExitCode::FAILURE)
    }
}
