//! The floor of the loopback comparison (`crates/bench/compare.sh`): a bare tokio-rustls + hyper
//! server, with the rustls configuration this crate builds by default but none of its code.
//!
//! ```text
//! cargo run --release --example bare_server -- \
//!     --cert server.crt --key server.key --ca ca.crt [--port 8443] [--app static|axum]
//! ```
//!
//! It requires a client certificate that chains to `--ca` (rustls' `WebPkiClientVerifier`),
//! speaks HTTP/1.1 and HTTP/2 (ALPN), and answers every request with the `extension`
//! example's index document. `--app static` (the default) answers with fixed bytes, as the
//! nginx and Go servers of the comparison do; `--app axum` serves the very axum router the
//! `extension` example serves, so that the two differ only by what this crate adds.
//!
//! What it does per connection, and nothing more, so that it is the fair floor of
//! `crate_server` (the crate's public API doing the same job):
//!
//! * one thread (a `current_thread` runtime); the accept loop accepts, sets `TCP_NODELAY` and
//!   spawns one task per connection;
//! * the task runs tokio-rustls' handshake within a 10 s deadline (`tokio::time::timeout`, as
//!   any server facing a network must), then hyper-util's auto connection builder (shared by
//!   all connections);
//! * HTTP/1: hyper's header-read timeout of 30 s (`TokioTimer`), the crate's default and what
//!   keeps a silent client from holding a connection forever; `--header-read-timeout 0` turns
//!   it off (the floor before issue 14, measured beside it in `callgrind.sh`);
//! * no connection cap, no graceful shutdown, no handshake cap: those the crate adds, and their
//!   cost is part of what is measured;
//! * `--peer-extension`: the least a server does to let handlers see the client: the chain,
//!   taken once per connection into an `Arc`, inserted into every request's extensions (one
//!   extension, as the crate's `ConnectionInfo`). Off by default: the plain floor gives the
//!   handler nothing.

use tower_mtls_test_kit::floor;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::routing::get;
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use rustls::RootCertStore;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde_json::json;
use tokio::net::TcpListener;

/// The client's chain, shared by a connection's requests (`--peer-extension`).
type Peer = Arc<Vec<CertificateDer<'static>>>;

/// The `extension` example's index document, as serde_json renders it (keys sorted).
const INDEX: &[u8] = br#"{"actions":[],"discoveries":[],"eventListeners":[],"targetAttributes":[],"targetTypes":[]}"#;

/// How long a client has to finish its handshake (the crate's default).
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum App {
    /// Fixed bytes through `hyper::service::service_fn`.
    Static,
    /// The `extension` example's axum router.
    Axum,
}

struct Args {
    cert: PathBuf,
    key: PathBuf,
    ca: PathBuf,
    port: u16,
    app: App,
    header_read_timeout: Option<Duration>,
    peer_extension: bool,
}

fn parse_args() -> Args {
    let usage = "usage: bare_server --cert FILE --key FILE --ca FILE [--port N] [--app static|axum] \
         [--header-read-timeout SECS] [--peer-extension]";
    let (mut cert, mut key, mut ca, mut port, mut app) = (None, None, None, 8443, App::Static);
    let mut header_read_timeout = Some(Duration::from_secs(30));
    let mut peer_extension = false;
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        if flag == "--peer-extension" {
            peer_extension = true;
            continue;
        }
        let value = args
            .next()
            .unwrap_or_else(|| panic!("{flag} needs a value\n{usage}"));
        match flag.as_str() {
            "--cert" => cert = Some(PathBuf::from(value)),
            "--key" => key = Some(PathBuf::from(value)),
            "--ca" => ca = Some(PathBuf::from(value)),
            "--port" => port = value.parse().expect("--port: a port number"),
            "--app" => {
                app = match value.as_str() {
                    "static" => App::Static,
                    "axum" => App::Axum,
                    other => panic!("--app {other}: static or axum\n{usage}"),
                }
            }
            "--header-read-timeout" => {
                let secs: u64 = value.parse().expect("--header-read-timeout: seconds");
                header_read_timeout = (secs > 0).then(|| Duration::from_secs(secs));
            }
            other => panic!("unknown argument {other}\n{usage}"),
        }
    }
    Args {
        cert: cert.expect(usage),
        key: key.expect(usage),
        ca: ca.expect(usage),
        port,
        app,
        header_read_timeout,
        peer_extension,
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = parse_args();
    let chain = CertificateDer::pem_file_iter(&args.cert)?.collect::<Result<Vec<_>, _>>()?;
    let key = PrivateKeyDer::from_pem_file(&args.key)?;
    let mut roots = RootCertStore::empty();
    for ca in CertificateDer::pem_file_iter(&args.ca)? {
        roots.add(ca?)?;
    }
    let config = floor::server_config(
        &tower_mtls::tls::default_provider(),
        chain,
        key,
        Some(roots),
    )?;
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let mut http = auto::Builder::new(TokioExecutor::new());
    if let Some(timeout) = args.header_read_timeout {
        http.http1()
            .timer(TokioTimer::new())
            .header_read_timeout(timeout);
    }
    let http = Arc::new(http);

    let listener = TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], args.port))).await?;
    println!(
        "bare_server ({:?}) on https://{}",
        args.app,
        listener.local_addr()?
    );
    let router = axum::Router::new().route(
        "/",
        get(|| async {
            Json(json!({
                "actions": [],
                "discoveries": [],
                "targetTypes": [],
                "targetAttributes": [],
                "eventListeners": [],
            }))
        }),
    );

    let (app, peer_extension) = (args.app, args.peer_extension);
    tokio::spawn(async move {
        loop {
            let tcp = match listener.accept().await {
                Ok((tcp, _)) => tcp,
                Err(e) => {
                    eprintln!("accept: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                    continue;
                }
            };
            let _ = tcp.set_nodelay(true);
            let (acceptor, http, router) = (acceptor.clone(), http.clone(), router.clone());
            tokio::spawn(async move {
                let Ok(Ok(tls)) =
                    tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await
                else {
                    return;
                };
                let io = TokioIo::new(tls);
                let _ = match app {
                    App::Static if peer_extension => {
                        let peer: Peer = Arc::new(
                            io.inner()
                                .get_ref()
                                .1
                                .peer_certificates()
                                .map(<[_]>::to_vec)
                                .unwrap_or_default(),
                        );
                        let service = hyper::service::service_fn(move |mut req| {
                            req.extensions_mut().insert(peer.clone());
                            index(req)
                        });
                        http.serve_connection(io, service).await
                    }
                    App::Static => {
                        http.serve_connection(io, hyper::service::service_fn(index))
                            .await
                    }
                    App::Axum => {
                        http.serve_connection(io, TowerToHyperService::new(router))
                            .await
                    }
                };
            });
        }
    })
    .await?;
    Ok(())
}

async fn index(_req: http::Request<Incoming>) -> Result<http::Response<Full<Bytes>>, Infallible> {
    Ok(http::Response::builder()
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from_static(INDEX)))
        .expect("a valid response"))
}
