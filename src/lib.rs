//! HTTPS and mutual TLS for any hyper/tower service, by composition.
//!
//! `tower-mtls` serves a tower service — an axum `Router`, a tonic server, a plain
//! `service_fn` — over rustls, verifies client certificates, and hands every request the
//! peer's certificate chain and TLS facts in its extensions. It reads its configuration from
//! the environment variables and secret layout that Steadybit's Helm charts produce.
//!
//! # Quick start
//!
//! ```no_run
//! use std::convert::Infallible;
//!
//! use bytes::Bytes;
//! use http_body_util::Full;
//! use tower_mtls::{MtlsServer, PeerExt, TlsConfig};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! // Server identity plus the CAs (or pinned client certificates) trusted for client auth.
//! let tls = TlsConfig::from_pem_files("/etc/extension/certificates/server-cert/tls.crt", "/etc/extension/certificates/server-cert/tls.key")
//!     .client_trust("/etc/extension/certificates/agent-cert")
//!     .build()?; // fails with the file and the reason when anything is wrong
//!
//! let app = tower::service_fn(|req: http::Request<hyper::body::Incoming>| async move {
//!     // The acceptor put the verified client chain into the request.
//!     let who = req
//!         .client_identity()
//!         .and_then(|id| id.common_name().map(str::to_owned))
//!         .unwrap_or_default();
//!     Ok::<_, Infallible>(http::Response::new(Full::<Bytes>::from(format!("hello {who}\n"))))
//! });
//!
//! MtlsServer::bind("0.0.0.0:8443").await?.tls(tls).serve(app).await?;
//! # Ok(()) }
//! ```
//!
//! A Steadybit extension gets the same from its environment with
//! [`ExtensionEnv::from_env`](steadybit::ExtensionEnv::from_env) (see [`steadybit`]), and narrows who may call which route with
//! [`ClientCertLayer`]:
//!
//! ```no_run
//! # async fn run(router: axum::Router) -> Result<(), Box<dyn std::error::Error>> {
//! use tower::Layer;
//! use tower_mtls::{ClientCertLayer, MtlsServer, Rule, steadybit::ExtensionEnv};
//!
//! let env = ExtensionEnv::from_env()?;
//! // Wrapping the whole router is the cheapest; `route_layer` guards single routes.
//! let app = ClientCertLayer::require()
//!     .allow(Rule::new().subject_cn("steadybit-agent"))
//!     .layer(router);
//! let mut server = MtlsServer::bind(("0.0.0.0", env.port_or(8080))).await?;
//! if let Some(tls) = env.tls {
//!     server = server.tls(tls);
//! }
//! server.serve(app).await?;
//! # Ok(()) }
//! ```
//!
//! # How a request travels
//!
//! 1. [`MtlsServer`] accepts a connection and spawns a task for it; the accept loop never waits
//!    on a handshake.
//! 2. [`MtlsAcceptor`] runs the handshake against the [`TlsConfig`]'s current snapshot, within
//!    a deadline, and captures one [`ConnectionInfo`]: [`TlsInfo`] and [`PeerCertificates`].
//! 3. [`AddConnectionInfo`](peer::AddConnectionInfo) inserts it — one `Arc` — into every
//!    request on the connection (each HTTP/1.1 keep-alive request, each HTTP/2 stream).
//! 4. [`ClientCertLayer`] decides per route who may pass and adds its [`AllowedClient`];
//!    handlers and middleware read all of it through [`PeerExt`] — the leaf parsed at most
//!    once per connection.
//!
//! # Trust: CAs and pinned leaves
//!
//! Each trust source is a PEM file or a directory of PEM files (a mounted Kubernetes secret
//! works as is). A CA certificate in it becomes a trust anchor. An end-entity certificate is
//! *pinned*: a client presenting exactly that certificate is accepted while it is valid, after
//! the handshake proved it holds the key — what Steadybit's Helm charts rely on when they pass
//! a client secret's own `tls.crt` as trust. The server's CertificateRequest lists the CA
//! subjects and the pinned certificates' issuer names, so JVM clients offer their certificate.
//!
//! # Features
//!
//! * `aws-lc-rs` (default): rustls with the aws-lc-rs provider.
//! * `ring`: rustls with ring. With both enabled aws-lc-rs is used; the crate always passes its
//!   provider explicitly and never panics over an ambiguous process default.
//! * Neither: bring your own provider — pass it to the builders (`crypto_provider`) or install
//!   it as rustls's process default; a build without one fails naming both ways. Shared session
//!   ticket keys need a bundled provider.
//! * `agent`: [`steadybit::agent`], the agent side of the Steadybit contract: a rustls client
//!   configuration from the agent's environment variables.
//! * `metrics`: handshakes, connections, reloads, policy decisions and certificate expiry
//!   through the `metrics` facade; the names and labels are in [`tls::metrics`].
//! * `axum`: [`axum`](mod@axum), axum's own server (`axum::serve`) on a
//!   [`serve::MtlsListener`], with extractors for the client that answer 401, not 500.
//! * `axum-server`: [`axum_server`](mod@axum_server), an acceptor for the `axum-server` crate
//!   (`axum_server::bind(addr).acceptor(..)`) with this crate's handshake and identity.
//! * `tonic`: [`tonic`](mod@tonic), a tonic gRPC server over this crate's mutual TLS — the
//!   incoming stream for `serve_with_incoming`, the client's identity in every request,
//!   [`ClientCertLayer`] answering with gRPC statuses.
//! * `steadybit-runtime`: [`steadybit::runtime`], what an extension's `main` needs besides its
//!   routes — logs from `STEADYBIT_LOG_LEVEL`/`STEADYBIT_LOG_FORMAT`, the health port with
//!   readiness and `/metrics`, SIGTERM with a drain delay, exit code 128 + signal.
//!
//! # Telemetry
//!
//! [`MtlsAcceptor::stats`] (and [`MtlsServer::stats`]) count handshakes by outcome;
//! a [`TlsObserver`](tls::TlsObserver) given to [`MtlsAcceptor::observer`] hears of every
//! handshake and reload outcome; the `metrics` feature records the table in [`tls::metrics`];
//! certificates that expire within 30 days are warned about ([`TlsConfig::check_expiry`]).

#![forbid(unsafe_code)]
#![warn(missing_docs)]
// Library code returns errors and logs through `tracing`; tests may unwrap.
#![cfg_attr(
    not(test),
    warn(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::print_stdout,
        clippy::print_stderr
    )
)]
#![cfg_attr(docsrs, feature(doc_cfg))]

// The layers, from the bottom up; arrows only point down (see ARCHITECTURE.md).
mod crypto;
mod rate_limit;

pub mod identity;

pub mod peer;

pub mod tls;

pub mod policy;

pub mod serve;

pub mod steadybit;

// Internal entry points for the fuzz targets in `fuzz/` (feature `fuzzing`): not part of the API.
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod __fuzz;

// Framework integrations, each behind its feature, each reachable at the crate root only.
mod frameworks;
#[cfg(feature = "axum")]
#[cfg_attr(docsrs, doc(cfg(feature = "axum")))]
pub use frameworks::axum;
#[cfg(feature = "axum-server")]
#[cfg_attr(docsrs, doc(cfg(feature = "axum-server")))]
pub use frameworks::axum_server;
#[cfg(feature = "tonic")]
#[cfg_attr(docsrs, doc(cfg(feature = "tonic")))]
pub use frameworks::tonic;

// The quick-start set, re-exported from the modules each type lives in (as rustls does): the
// module pages list them too.
pub use identity::ClientIdentity;
pub use peer::{AllowedClient, ConnectionInfo, PeerCertificates, PeerExt, TlsInfo};
pub use policy::{ClientCertLayer, ClientCertPolicy, Rule};
pub use serve::MtlsServer;
pub use tls::{ClientAuth, ConfigError, MtlsAcceptor, MtlsStream, TlsConfig, TlsConfigBuilder};

// The README's examples use axum's own server.
#[cfg(all(doctest, feature = "axum"))]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;

/// Re-exported so users name the same versions this crate uses.
pub use rustls;
