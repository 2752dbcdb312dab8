//! Serving a [tonic] gRPC server over this crate's mutual TLS (feature `tonic`).
//!
//! * [`MtlsIncoming`] is the incoming stream for tonic's `serve_with_incoming` and
//!   `serve_with_incoming_shutdown`: established TLS streams from a
//!   [`MtlsListener`], which runs every handshake in a task of its own (a silent client
//!   delays nobody), within the acceptor's deadline and caps.
//! * [`MtlsStream`] implements tonic's [`Connected`] with
//!   [`ConnectInfo`](Connected::ConnectInfo) = [`ConnectionInfo`]: tonic puts it into the
//!   extensions of every request on the connection, where [`ClientCertLayer`] and
//!   [`PeerExt`] find the client's certificate.
//! * [`ClientCertLayer`] goes into `Server::builder().layer(…)` as it is. It answers a gRPC call
//!   (`content-type: application/grpc…`) with a gRPC status, not an HTTP error:
//!   `UNAUTHENTICATED` (16) without a client certificate, `PERMISSION_DENIED` (7) for one the
//!   rules do not allow, each with a `grpc-message`.
//! * [`ConnectInfoLayer`] (optional) also fills in tonic's own `TcpConnectInfo`, so that
//!   [`Request::remote_addr`](::tonic::Request::remote_addr) works, and runs each call in the
//!   connection's span.
//!
//! ```no_run
//! use std::time::Duration;
//!
//! use tonic::transport::Server;
//! use tower_mtls::tonic::{ConnectInfoLayer, MtlsIncoming};
//! use tower_mtls::{ClientCertLayer, Rule, TlsConfig};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let tls = TlsConfig::from_pem_files("/etc/extension/certificates/server-cert/tls.crt", "/etc/extension/certificates/server-cert/tls.key")
//!     .client_trust("/etc/extension/certificates/agent-cert")
//!     // Clients without a certificate finish the handshake, so that the layer can answer
//!     // them with UNAUTHENTICATED (see "What a gRPC client sees" below).
//!     .optional_client_auth()
//!     .build()?;
//!
//! let (health_reporter, health) = tonic_health::server::health_reporter();
//! health_reporter
//!     .set_service_status("", tonic_health::ServingStatus::Serving)
//!     .await;
//!
//! let incoming = MtlsIncoming::bind("0.0.0.0:8443", tls).await?;
//! // Stop accepting on ctrl-c, let calls in flight finish, close what is left after 10 s.
//! let shutdown = incoming.graceful_shutdown(
//!     async {
//!         let _ = tokio::signal::ctrl_c().await;
//!     },
//!     Duration::from_secs(10),
//! );
//! Server::builder()
//!     .layer(ConnectInfoLayer::new())
//!     .layer(ClientCertLayer::require().allow(Rule::new().subject_cn("steadybit-agent")))
//!     .add_service(health)
//!     .serve_with_incoming_shutdown(incoming, shutdown)
//!     .await?;
//! # Ok(()) }
//! ```
//!
//! A handler (or an interceptor) reads who called with [`PeerExt`]:
//!
//! ```
//! use tower_mtls::PeerExt;
//!
//! fn caller(request: &tonic::Request<()>) -> Result<String, tonic::Status> {
//!     let client = request
//!         .allowed_client()
//!         .ok_or_else(|| tonic::Status::internal("not behind a ClientCertLayer"))?;
//!     let who = client.identity().map(|id| id.subject().to_string());
//!     let rule = client.matched_rule().map(ToString::to_string);
//!     Ok(format!("{who:?} let in by {rule:?}"))
//! }
//! ```
//!
//! # tonic's `remote_addr()` and `peer_certs()`
//!
//! tonic's [`Request::remote_addr`](::tonic::Request::remote_addr) looks only for tonic's own
//! `TcpConnectInfo` (or `TlsConnectInfo<TcpConnectInfo>`) in the extensions. tonic inserts
//! exactly one connect-info value per request, and ours is [`ConnectionInfo`]; add
//! [`ConnectInfoLayer`] and it also inserts a `TcpConnectInfo` with the remote address
//! (`local_addr` stays `None`: a listener bound to a wildcard address does not know the one a
//! connection arrived on). Without the layer, [`TlsInfo::remote_addr`](crate::TlsInfo::remote_addr) has it:
//! `request.tls_info().and_then(TlsInfo::remote_addr)`.
//!
//! `Request::peer_certs()` reads only tonic's own `TlsConnectInfo`, and the one connect-info
//! slot is taken by [`ConnectionInfo`]: use [`PeerExt::peer_certificates`] (the chain, leaf
//! first) or [`PeerExt::client_identity`] (the parsed leaf) instead; they work the same over
//! TCP and Unix sockets.
//!
//! # Behind tonic's own TLS
//!
//! A server that keeps tonic's `ServerTlsConfig` (with `client_ca_root`) can still use
//! [`ClientCertLayer`] and [`PeerExt`]: the layer adopts the chain tonic's verifier accepted,
//! and [`ConnectInfoLayer`] does the same for handlers behind no policy. What this crate's
//! acceptor adds — CRLs, pinned leaves, reloads, classified handshake logs — is then missing.
//!
//! # What a gRPC client sees without a certificate
//!
//! * [`ClientAuth::Required`](crate::ClientAuth::Required) (what the Steadybit contract sets when
//!   client CAs are configured): the server ends the handshake with a TLS alert
//!   (`certificate_required`). A gRPC client gets no status from the server, only its own
//!   for a broken connection: tonic's client `UNKNOWN` "transport error" (the alert read
//!   first) or `CANCELLED` "operation was canceled" (the connection found closed first — a
//!   TLS 1.3 client sends its request before the server's verdict arrives, so either
//!   happens); Python's grpcio `UNAVAILABLE` "failed to connect to all addresses".
//! * [`ClientAuth::Optional`](crate::ClientAuth::Optional) plus [`ClientCertLayer::require`]:
//!   the handshake completes and every call is answered `UNAUTHENTICATED` with the message
//!   "a client certificate is required" — a status a gRPC client can act on. A certificate
//!   that is presented must still verify in the handshake, so the only clients the layer sees
//!   without one are those that sent none, and no call behind the layer passes without one.
//!   This is the better choice for gRPC, and the `grpc` example's.
//!
//! `tests/frameworks/tonic.rs` checks both, with tonic's client and with grpcio.
//!
//! # Crypto providers
//!
//! This crate always builds its TLS with an explicit provider, so it never panics over the
//! process-wide default. Enabling tonic's `tls-ring` (or anything else that enables rustls's
//! `ring` feature) next to this crate's default `aws-lc-rs` compiles both providers into
//! rustls; from then on `rustls::ServerConfig::builder()` / `ClientConfig::builder()` — in
//! tonic's own `ServerTlsConfig`, in an HTTP client — panic unless the application installed
//! a process default. tonic's client (`ClientTlsConfig`) falls back to the provider of its own
//! feature and does not panic. An application that mixes them installs one default first
//! thing in `main`, e.g. this crate's with
//! [`tls::install_default_provider`](crate::tls::install_default_provider). The crate itself
//! never installs it (rustls asks libraries not to).
//!
//! [tonic]: ::tonic
//! [`ClientCertLayer`]: crate::ClientCertLayer
//! [`ClientCertLayer::require`]: crate::ClientCertLayer::require

use std::fmt;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use ::tonic::transport::server::{Connected, TcpConnectInfo};
use futures_core::Stream;
use tokio::net::{TcpStream, ToSocketAddrs};
use tower_layer::Layer;
use tower_service::Service;
use tracing::Instrument;
use tracing::instrument::Instrumented;

use crate::peer::{ConnectionInfo, ForeignPeers, PeerExt};
use crate::serve::MtlsListener;
use crate::tls::accept::acceptor::{MtlsAcceptor, MtlsStream};

/// The incoming stream of established mutual-TLS connections for tonic's
/// `Server::builder()…serve_with_incoming(incoming)` (and `serve_with_incoming_shutdown`).
///
/// Built on [`MtlsListener`]: handshakes run concurrently in tasks of their own, within the
/// [`MtlsAcceptor`]'s deadline and cap on concurrent handshakes, and at most
/// [`MtlsListener::max_connections`] connections are open at once. Failed handshakes are
/// logged and counted by the acceptor and never reach tonic. The stream never ends and never
/// yields an error (accept errors are logged and retried), so tonic's server never stops
/// because of a client.
///
/// Its items implement [`Connected`] (see the [module documentation](self)).
pub struct MtlsIncoming {
    listener: MtlsListener,
}

impl MtlsIncoming {
    /// Binds a TCP listener on `addr` that speaks TLS with `tls` (a [`MtlsAcceptor`], or a
    /// [`TlsConfig`](crate::TlsConfig) with the acceptor's default settings).
    pub async fn bind(addr: impl ToSocketAddrs, tls: impl Into<MtlsAcceptor>) -> io::Result<Self> {
        let listener = MtlsListener::bind(addr, tls).await?;
        tracing::debug!(listen = ?listener.local_addr().ok(), "gRPC incoming stream bound");
        Ok(Self { listener })
    }

    /// The incoming stream of a listener configured by hand (e.g. with
    /// [`MtlsListener::max_connections`] or [`MtlsListener::from_tcp`]).
    pub fn new(listener: MtlsListener) -> Self {
        Self { listener }
    }

    /// The address the listener is bound to.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// The listener underneath, e.g. for [`MtlsListener::open_connections`] or the acceptor's
    /// [`stats`](MtlsAcceptor::stats).
    pub fn listener(&self) -> &MtlsListener {
        &self.listener
    }

    /// A shutdown signal for `serve_with_incoming_shutdown`, with a deadline: resolves when
    /// `signal` does (tonic then stops accepting and lets calls in flight finish), and `grace`
    /// later fails the reads and writes of every connection still open, so tonic's wait for
    /// them ends. See [`MtlsListener::graceful_shutdown`].
    pub fn graceful_shutdown(
        &self,
        signal: impl Future<Output = ()> + Send + 'static,
        grace: Duration,
    ) -> impl Future<Output = ()> + Send + 'static {
        self.listener.graceful_shutdown(signal, grace)
    }

    /// The listener back.
    pub fn into_inner(self) -> MtlsListener {
        self.listener
    }
}

impl From<MtlsListener> for MtlsIncoming {
    fn from(listener: MtlsListener) -> Self {
        Self::new(listener)
    }
}

impl fmt::Debug for MtlsIncoming {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MtlsIncoming")
            .field("listener", &self.listener)
            .finish()
    }
}

impl Stream for MtlsIncoming {
    type Item = Result<MtlsStream<TcpStream>, io::Error>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.get_mut()
            .listener
            .poll_accept(cx)
            .map(|(stream, _remote)| Some(Ok(stream)))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        // Endless.
        (usize::MAX, None)
    }
}

/// tonic inserts the stream's [`ConnectionInfo`] into the extensions of every request on the
/// connection: [`ClientCertLayer`](crate::ClientCertLayer) and [`PeerExt`] read it there.
/// Any IO type: TCP, Unix sockets, in-memory streams.
impl<IO> Connected for MtlsStream<IO> {
    type ConnectInfo = ConnectionInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.info().clone()
    }
}

/// Handlers and interceptors read the peer with [`PeerExt`]: from the [`ConnectionInfo`]
/// that [`MtlsStream`]'s [`Connected`] impl gave tonic (or that [`ConnectInfoLayer`] adopted
/// from tonic's own TLS), with the [`AllowedClient`](crate::AllowedClient) a
/// [`ClientCertLayer`](crate::ClientCertLayer) recorded in it.
impl<T> PeerExt for ::tonic::Request<T> {
    fn connection_info(&self) -> Option<&ConnectionInfo> {
        self.extensions().get::<ConnectionInfo>()
    }
}

/// A layer for `Server::builder().layer(…)` that makes each request's [`ConnectionInfo`]
/// available everywhere:
///
/// * behind tonic's **own** TLS (`Server::builder().tls_config(…)`), it adopts the chain that
///   tonic's verifier accepted (tonic's `TlsConnectInfo`) as a [`ConnectionInfo`], parsed once
///   per connection, so [`PeerExt`] works in handlers (a [`ClientCertLayer`](crate::ClientCertLayer)
///   adopts it by itself);
/// * it inserts tonic's `TcpConnectInfo` with the remote address, so that
///   [`Request::remote_addr`](::tonic::Request::remote_addr) works (its `local_addr` is
///   `None`);
/// * and it runs each call (service call and response future) in the connection's
///   [span](ConnectionInfo::span), so a handler's logs carry the client.
///
/// A request without connection info of either kind passes unchanged, with one warning per
/// layer.
#[derive(Clone, Default)]
pub struct ConnectInfoLayer {
    shared: Arc<LayerState>,
}

#[derive(Debug, Default)]
struct LayerState {
    warned: AtomicBool,
    foreign: ForeignPeers,
}

impl ConnectInfoLayer {
    /// The layer.
    pub fn new() -> Self {
        Self::default()
    }
}

impl fmt::Debug for ConnectInfoLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectInfoLayer").finish_non_exhaustive()
    }
}

impl<S> Layer<S> for ConnectInfoLayer {
    type Service = ConnectInfoService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ConnectInfoService {
            inner,
            shared: self.shared.clone(),
        }
    }
}

/// The service [`ConnectInfoLayer`] wraps around the inner one.
#[derive(Clone)]
pub struct ConnectInfoService<S> {
    inner: S,
    shared: Arc<LayerState>,
}

impl<S: fmt::Debug> fmt::Debug for ConnectInfoService<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectInfoService")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl<S, B> Service<http::Request<B>> for ConnectInfoService<S>
where
    S: Service<http::Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Instrumented<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: http::Request<B>) -> Self::Future {
        if self.shared.foreign.adopt(req.extensions_mut()) {
            // tonic's own TLS: its TcpConnectInfo is already there.
            let span = req.connection_info().map(|info| info.span().clone());
            let span = span.unwrap_or_else(tracing::Span::none);
            let future = span.in_scope(|| self.inner.call(req));
            return future.instrument(span);
        }
        let Some(info) = req.extensions().get::<ConnectionInfo>().cloned() else {
            if !self.shared.warned.swap(true, Ordering::Relaxed) {
                tracing::warn!(
                    "a request without connection info reached ConnectInfoLayer: serve the \
                     tonic server with tower_mtls::tonic::MtlsIncoming, or with tonic's own TLS"
                );
            }
            return self.inner.call(req).instrument(tracing::Span::none());
        };
        if let Some(remote_addr) = info.tls().remote_addr() {
            req.extensions_mut().insert(TcpConnectInfo {
                local_addr: None,
                remote_addr: Some(remote_addr),
            });
        }
        let span = info.span().clone();
        let future = span.in_scope(|| self.inner.call(req));
        future.instrument(span)
    }
}
