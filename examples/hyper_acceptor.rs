//! A hand-written hyper accept loop that uses only the acceptor:
//! `cargo run --example hyper_acceptor`.
//!
//! For servers that own their accept loop (or their listener type): spawn a task per
//! connection, run [`MtlsAcceptor::accept`] in it, and wrap the service in
//! [`AddConnectionInfo`] so every request carries the peer. The example generates its own
//! certificates, serves on an ephemeral port, calls itself once and exits.

use tower_mtls_test_kit::pki;

use std::convert::Infallible;

use bytes::Bytes;
use http_body_util::Full;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use tower_mtls::{AddConnectionInfo, MtlsAcceptor, PeerCertificates, TlsConfig};

async fn handler(
    req: http::Request<hyper::body::Incoming>,
) -> Result<http::Response<Full<Bytes>>, Infallible> {
    let who = req
        .extensions()
        .get::<PeerCertificates>()
        .and_then(|peer| peer.identity().ok())
        .map_or_else(|| "nobody".to_owned(), |id| id.subject().to_string());
    Ok(http::Response::new(Full::from(format!("hello {who}\n"))))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt::init();
    let dir = tempfile::tempdir()?;
    let ca = pki::Ca::new("Example CA");
    let ca_path = ca.write(dir.path(), "ca.crt");
    let (cert, key) = ca.server().write(dir.path(), "server");

    let tls = TlsConfig::builder()
        .server_cert_file(cert)
        .server_key_file(key)
        .client_trust(ca_path)
        .build()?;
    let acceptor = MtlsAcceptor::new(tls).handshake_timeout(std::time::Duration::from_secs(5));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;

    tokio::spawn(async move {
        loop {
            let Ok((tcp, remote)) = listener.accept().await else {
                continue;
            };
            let acceptor = acceptor.clone();
            // The handshake runs in the connection's own task, never in the accept loop.
            tokio::spawn(async move {
                let Ok(stream) = acceptor.accept(tcp, Some(remote)).await else {
                    return; // logged by the acceptor
                };
                let service =
                    AddConnectionInfo::new(tower::service_fn(handler), stream.info().clone());
                let _ = auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), TowerToHyperService::new(service))
                    .await;
            });
        }
    });

    let client_leaf = ca.client("example-client");
    let client = tower_mtls_test_kit::client::Client::builder()
        .trust_server_ca_pem(ca.cert_pem.clone())
        .identity_pem(client_leaf.cert_pem, client_leaf.key_pem)
        .build()?;
    let response = client.get(addr, "localhost", "/").await?;
    print!("{}", String::from_utf8_lossy(response.body()));
    Ok(())
}
