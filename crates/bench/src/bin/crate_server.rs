//! The crate's like-for-like server in the loopback comparison (`crates/bench/compare.sh`) and
//! the instruction counts (`crates/bench/callgrind.sh`): `bare_server`'s work, through the
//! crate's public API.
//!
//! ```text
//! crate_server --cert server.crt --key server.key --ca ca.crt [--port 8443] [--allow-cn loadgen]
//!     [--no-layer] [--max-buf-size BYTES]
//! ```
//!
//! `MtlsServer` with its defaults (handshake deadline 10 s, at most 4096 concurrent handshakes
//! and 16384 connections, HTTP/1 header-read timeout 30 s, graceful shutdown, here on Ctrl-C)
//! and a `TlsConfig` built from the three files, serving `ClientCertLayer::require()` with one
//! subject rule (`cn=<--allow-cn>`) around a `service_fn` that answers the same constant JSON as
//! `bare_server`. One thread: a `current_thread` runtime, like the floor. `--no-layer` serves the
//! `service_fn` without the layer (to tell the layer's cost from the server's); `--max-buf-size` sets hyper's
//! HTTP/1 read-buffer cap (memory per idle connection, BENCHMARKS.md).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use tower_layer::Layer;
use tower_mtls::Rule;
use tower_mtls::{ClientCertLayer, MtlsServer, TlsConfig};

/// The `extension` example's index document, as serde_json renders it (keys sorted).
const INDEX: &[u8] = br#"{"actions":[],"discoveries":[],"eventListeners":[],"targetAttributes":[],"targetTypes":[]}"#;

struct Args {
    cert: PathBuf,
    key: PathBuf,
    ca: PathBuf,
    port: u16,
    allow_cn: String,
    layer: bool,
    max_buf_size: Option<usize>,
}

fn parse_args() -> Args {
    let usage = "usage: crate_server --cert FILE --key FILE --ca FILE [--port N] [--allow-cn CN] [--no-layer] [--max-buf-size BYTES]";
    let (mut cert, mut key, mut ca, mut port, mut allow_cn) =
        (None, None, None, 8443, String::from("loadgen"));
    let mut layer = true;
    let mut max_buf_size = None;
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        if flag == "--no-layer" {
            layer = false;
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
            "--allow-cn" => allow_cn = value,
            "--max-buf-size" => max_buf_size = Some(value.parse().expect("--max-buf-size: bytes")),
            other => panic!("unknown argument {other}\n{usage}"),
        }
    }
    Args {
        cert: cert.expect(usage),
        key: key.expect(usage),
        ca: ca.expect(usage),
        port,
        allow_cn,
        layer,
        max_buf_size,
    }
}

async fn index(_req: http::Request<Incoming>) -> Result<http::Response<Full<Bytes>>, Infallible> {
    Ok(http::Response::builder()
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from_static(INDEX)))
        .expect("a valid response"))
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = parse_args();
    let tls = TlsConfig::from_pem_files(&args.cert, &args.key)
        .client_trust(&args.ca)
        .build()?;
    let mut server = MtlsServer::bind(SocketAddr::from(([127, 0, 0, 1], args.port)))
        .await?
        .tls(tls)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        });
    if let Some(max) = args.max_buf_size {
        server = server.http1_max_buf_size(max);
    }
    println!("crate_server on https://{}", server.local_addr()?);
    if args.layer {
        let app = ClientCertLayer::require()
            .allow(Rule::new().subject_cn(args.allow_cn))
            .layer(tower::service_fn(index));
        server.serve(app).await?;
    } else {
        server.serve(tower::service_fn(index)).await?;
    }
    Ok(())
}
