//! An [`axum_server`] acceptor: `axum_server::bind(addr).acceptor(Acceptor::new(tls))` serves
//! with this crate's handshake (feature `axum-server`).
//!
//! [`Acceptor`] implements axum-server's [`Accept`] trait on top of an [`MtlsAcceptor`]: each
//! connection gets the crate's client-certificate verification, its handshake deadline and cap
//! on concurrent handshakes, its classified and rate-limited logs, and the [`TlsConfig`]'s
//! current material (a reload — [`TlsConfig::reload`] or [`TlsConfig::watch`] — applies to the
//! next handshake). The service of every connection is wrapped in [`AddConnectionInfo`], so
//! each request carries the connection's [`ConnectionInfo`]: [`PeerExt`](crate::PeerExt), the
//! [`axum`](crate::axum) extractors and [`ClientCertLayer`](crate::ClientCertLayer) work as with
//! [`MtlsServer`](crate::MtlsServer).
//!
//! Keeping axum-server's own `RustlsConfig`? [`ConnectionInfoAcceptor`] wraps its acceptor so
//! requests still carry the peer.
//!
//! ```no_run
//! use std::net::SocketAddr;
//!
//! use axum::{Router, routing::get};
//! use tower_mtls::{AllowedClient, ClientCertLayer, Rule, TlsConfig};
//!
//! async fn whoami(client: AllowedClient) -> String {
//!     let cn = client.identity().and_then(|id| id.common_name()).unwrap_or("?");
//!     format!("hello {cn}\n")
//! }
//!
//! async fn health() -> &'static str {
//!     "ok\n"
//! }
//!
//! #[tokio::main]
//! async fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     let tls = TlsConfig::from_pem_files("/etc/extension/certificates/server-cert/tls.crt", "/etc/extension/certificates/server-cert/tls.key")
//!         .client_trust("/etc/extension/certificates/agent-cert") // file or secret directory
//!         .build()?; // names the file and the reason when anything is wrong
//!     // Rotation: reload whenever the files change; keep the handle while serving.
//!     let _watch = tls.watch(tower_mtls::tls::DEFAULT_WATCH_INTERVAL);
//!
//!     let app = Router::new()
//!         .route("/whoami", get(whoami))
//!         .layer(ClientCertLayer::require().allow(Rule::new().subject_cn("steadybit-agent")))
//!         .route("/health", get(health)); // added after the layer: not guarded by it
//!
//!     let handle = axum_server::Handle::new();
//!     axum_server::bind(SocketAddr::from(([0, 0, 0, 0], 8443)))
//!         .acceptor(tower_mtls::axum_server::Acceptor::new(tls))
//!         .handle(handle.clone()) // `handle.graceful_shutdown(Some(grace))` stops it
//!         .serve(app.into_make_service())
//!         .await?;
//!     Ok(())
//! }
//! ```
//!
//! Handshake limits and telemetry are the [`MtlsAcceptor`]'s: build one, configure it, and pass
//! it instead of the [`TlsConfig`] (`Acceptor::new(MtlsAcceptor::new(tls).handshake_timeout(..))`).
//! Another axum-server acceptor that works on the plain stream (e.g.
//! `axum_server::accept::NoDelayAcceptor`) runs before the handshake when set with
//! [`Acceptor::acceptor`].
//!
//! # Handshakes stay off the accept loop
//!
//! axum-server spawns one task per accepted connection and calls [`Accept::accept`] inside it,
//! so a client that connects and sends nothing occupies only its own task, until the handshake
//! deadline. On a graceful or immediate shutdown through axum-server's `Handle`, connections
//! still in their handshake are dropped; established ones are drained as usual.
//!
//! # Failed handshakes
//!
//! A failed handshake makes [`Accept::accept`] return an [`io::Error`] whose source
//! ([`io::Error::get_ref`]) is the crate's [`HandshakeError`]: its
//! [`kind`](HandshakeError::kind), the client's address and the refused certificate; the
//! `io::Error`'s own kind is `PermissionDenied` for a refused or missing client certificate,
//! `TimedOut` for the deadline, `InvalidData` for a client that does not speak TLS. The
//! acceptor has already counted and logged it (a refused or missing client certificate at
//! `warn`, rate-limited; scanners, timeouts and hang-ups at `debug`). axum-server itself drops
//! the connection without logging; it hands the error to the server's
//! `accept_error_handler` when one is set, so such a handler should not log it again at
//! `error` level:
//!
//! ```no_run
//! # async fn run(tls: tower_mtls::TlsConfig, app: axum::Router) -> std::io::Result<()> {
//! use tower_mtls::tls::HandshakeError;
//!
//! axum_server::bind(std::net::SocketAddr::from(([0, 0, 0, 0], 8443)))
//!     .acceptor(tower_mtls::axum_server::Acceptor::new(tls))
//!     .accept_error_handler(|_remote, error| {
//!         match error.get_ref().and_then(|e| e.downcast_ref::<HandshakeError>()) {
//!             // Already logged by the acceptor; `HandshakeError::kind` says why.
//!             Some(_handshake) => {}
//!             None => tracing::warn!(%error, "accept failed"),
//!         }
//!     })
//!     .serve(app.into_make_service())
//!     .await
//! # }
//! ```
//!
//! # Crypto providers
//!
//! Nothing on this path asks rustls for a process-wide default provider: the [`TlsConfig`]
//! builds its `ServerConfig` with an explicit provider (aws-lc-rs by default, ring when only
//! the `ring` feature is on, or [`TlsConfigBuilder::crypto_provider`](crate::TlsConfigBuilder::crypto_provider)),
//! and axum-server's own code calls `CryptoProvider::get_default` / `ServerConfig::builder()`
//! only inside its `RustlsConfig`, which this acceptor does not use. This crate depends on
//! axum-server without any of its TLS features.
//!
//! So enabling axum-server's ring backend (`tls-rustls-ring`) next to this crate's default
//! aws-lc-rs — rustls then has both providers compiled in and no unambiguous default — is
//! safe for this acceptor (the crate's tests run in exactly that build). axum-server's own
//! `RustlsConfig`, if the application also uses it, picks the provider of its `tls-rustls` or
//! `tls-rustls-ring` feature explicitly too; with only `tls-rustls-no-provider` it falls back
//! to `ServerConfig::builder()`, which panics in such a build — as does any other code calling
//! it — unless the application installs a default first, e.g.
//! `rustls::crypto::aws_lc_rs::default_provider().install_default()`.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;

use ::axum_server::accept::{Accept, DefaultAcceptor};
use tokio::io::{AsyncRead, AsyncWrite};

use crate::peer::{AddConnectionInfo, ConnectionInfo};
use crate::tls::accept::acceptor::{MtlsAcceptor, MtlsStream};
use crate::tls::accept::error::{HandshakeError, HandshakeFailure};
use crate::tls::config::tls_config::TlsConfig;

/// An axum-server [`Accept`]or that runs this crate's mTLS handshake and puts the connection's
/// [`ConnectionInfo`](crate::ConnectionInfo) into every request.
///
/// `A` is an inner axum-server acceptor applied to the plain stream first
/// ([`DefaultAcceptor`], which does nothing, unless set with [`Acceptor::acceptor`]). Cheap to
/// clone: clones share the [`MtlsAcceptor`]'s limits and counters.
#[derive(Debug, Clone)]
pub struct Acceptor<A = DefaultAcceptor> {
    tls: MtlsAcceptor,
    inner: A,
}

impl Acceptor {
    /// An acceptor for `tls`: a [`TlsConfig`] (with the default handshake deadline and cap) or
    /// a configured [`MtlsAcceptor`].
    pub fn new(tls: impl Into<MtlsAcceptor>) -> Self {
        Self {
            tls: tls.into(),
            inner: DefaultAcceptor::new(),
        }
    }
}

impl<A> Acceptor<A> {
    /// Runs `inner` on each plain stream before the handshake (e.g. axum-server's
    /// `NoDelayAcceptor`); the TLS handshake then runs on the stream it returns.
    pub fn acceptor<B>(self, inner: B) -> Acceptor<B> {
        Acceptor {
            tls: self.tls,
            inner,
        }
    }

    /// The [`MtlsAcceptor`] running the handshakes: its [`stats`](MtlsAcceptor::stats) and
    /// its [`config`](MtlsAcceptor::config).
    pub fn mtls(&self) -> &MtlsAcceptor {
        &self.tls
    }
}

impl From<MtlsAcceptor> for Acceptor {
    fn from(tls: MtlsAcceptor) -> Self {
        Self::new(tls)
    }
}

impl From<TlsConfig> for Acceptor {
    fn from(tls: TlsConfig) -> Self {
        Self::new(tls)
    }
}

/// The peer address of an accepted connection, recorded in [`TlsInfo`](crate::TlsInfo) and in
/// the handshake's log lines. Implemented for the streams axum-server listens with (TCP, and
/// Unix sockets, which have no [`SocketAddr`]); implement it for a custom listener's stream.
pub trait RemoteAddr {
    /// The peer's address, when it has one.
    fn remote_addr(&self) -> Option<SocketAddr>;
}

impl RemoteAddr for tokio::net::TcpStream {
    fn remote_addr(&self) -> Option<SocketAddr> {
        self.peer_addr().ok()
    }
}

#[cfg(unix)]
impl RemoteAddr for tokio::net::UnixStream {
    fn remote_addr(&self) -> Option<SocketAddr> {
        None
    }
}

/// What [`Acceptor`]'s [`Accept::accept`] returns: the handshake, boxed (one allocation per
/// connection).
pub type AcceptFuture<Stream, Service> = Pin<
    Box<dyn Future<Output = io::Result<(MtlsStream<Stream>, AddConnectionInfo<Service>)>> + Send>,
>;

impl<I, S, A> Accept<I, S> for Acceptor<A>
where
    I: RemoteAddr,
    A: Accept<I, S>,
    A::Future: Send + 'static,
    A::Stream: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    A::Service: Send + 'static,
{
    type Stream = MtlsStream<A::Stream>;
    type Service = AddConnectionInfo<A::Service>;
    type Future = AcceptFuture<A::Stream, A::Service>;

    fn accept(&self, stream: I, service: S) -> Self::Future {
        let remote_addr = stream.remote_addr();
        let inner = self.inner.accept(stream, service);
        let tls = self.tls.clone();
        Box::pin(async move {
            let (stream, service) = inner.await?;
            let stream = tls
                .accept(stream, remote_addr)
                .await
                .map_err(handshake_io_error)?;
            let service = AddConnectionInfo::new(service, stream.info().clone());
            Ok((stream, service))
        })
    }
}

/// Wraps an axum-server acceptor that terminates TLS itself — axum-server's own
/// `RustlsAcceptor` with a `RustlsConfig` — so that each request carries the
/// [`ConnectionInfo`] of its rustls connection, and [`ClientCertLayer`](crate::ClientCertLayer)
/// and [`PeerExt`](crate::PeerExt) work as under this crate's [`Acceptor`].
///
/// ```no_run
/// # async fn run(app: axum::Router, tls: tower_mtls::TlsConfig) -> std::io::Result<()> {
/// use axum_server::tls_rustls::{RustlsAcceptor, RustlsConfig};
/// use tower_mtls::axum_server::ConnectionInfoAcceptor;
///
/// // Any rustls ServerConfig whose client verifier you trust; here this crate's.
/// let config = RustlsConfig::from_config(tls.server_config());
/// axum_server::bind(std::net::SocketAddr::from(([0, 0, 0, 0], 8443)))
///     .acceptor(ConnectionInfoAcceptor::new(RustlsAcceptor::new(config)))
///     .serve(app.into_make_service())
///     .await
/// # }
/// ```
///
/// The chain is taken as verified by that `ServerConfig` (see
/// [`ConnectionInfo::from_connection`]). What [`Acceptor`] adds — the handshake deadline and
/// cap, classified logs, bounded resumption — is then up to the wrapped acceptor.
#[derive(Debug, Clone)]
pub struct ConnectionInfoAcceptor<A> {
    inner: A,
}

impl<A> ConnectionInfoAcceptor<A> {
    /// Wraps `inner`, an acceptor whose stream is a `tokio_rustls` server stream.
    pub fn new(inner: A) -> Self {
        Self { inner }
    }
}

impl<I, S, A, T> Accept<I, S> for ConnectionInfoAcceptor<A>
where
    I: RemoteAddr,
    A: Accept<I, S, Stream = tokio_rustls::server::TlsStream<T>>,
    A::Future: Send + 'static,
    A::Service: Send + 'static,
    T: Send + 'static,
{
    type Stream = tokio_rustls::server::TlsStream<T>;
    type Service = AddConnectionInfo<A::Service>;
    type Future = Pin<Box<dyn Future<Output = io::Result<(Self::Stream, Self::Service)>> + Send>>;

    fn accept(&self, stream: I, service: S) -> Self::Future {
        let remote_addr = stream.remote_addr();
        let inner = self.inner.accept(stream, service);
        Box::pin(async move {
            let (stream, service) = inner.await?;
            let info = ConnectionInfo::from_connection(stream.get_ref().1, remote_addr);
            Ok((stream, AddConnectionInfo::new(service, info)))
        })
    }
}

/// An [`io::Error`] carrying `error` as its source, of a kind that says roughly what happened.
fn handshake_io_error(error: HandshakeError) -> io::Error {
    let kind = match error.kind() {
        HandshakeFailure::Timeout => io::ErrorKind::TimedOut,
        HandshakeFailure::PeerClosed => io::ErrorKind::UnexpectedEof,
        HandshakeFailure::PeerAlert => io::ErrorKind::ConnectionAborted,
        HandshakeFailure::NoClientCertificate
        | HandshakeFailure::UnknownCa
        | HandshakeFailure::Expired
        | HandshakeFailure::NotYetValid
        | HandshakeFailure::Revoked
        | HandshakeFailure::StaleCrl
        | HandshakeFailure::RevocationUnknown
        | HandshakeFailure::BadSignature
        | HandshakeFailure::WrongKeyUsage
        | HandshakeFailure::ChainTooLarge
        | HandshakeFailure::BadCertificate => io::ErrorKind::PermissionDenied,
        HandshakeFailure::PlainHttp
        | HandshakeFailure::NotTls
        | HandshakeFailure::ProtocolVersion
        | HandshakeFailure::Protocol => io::ErrorKind::InvalidData,
        HandshakeFailure::Io => io::ErrorKind::Other,
    };
    io::Error::new(kind, error)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_io_error_carries_the_handshake_error() {
        let error = handshake_io_error(HandshakeError::new(
            HandshakeFailure::UnknownCa,
            Some(SocketAddr::from(([127, 0, 0, 1], 4433))),
            None,
        ));
        assert_eq!(error.kind(), io::ErrorKind::PermissionDenied);
        let source = error
            .get_ref()
            .and_then(|e| e.downcast_ref::<HandshakeError>())
            .expect("the HandshakeError is the source");
        assert_eq!(source.kind(), HandshakeFailure::UnknownCa);
        assert_eq!(
            source.remote_addr(),
            Some(SocketAddr::from(([127, 0, 0, 1], 4433)))
        );
        assert!(error.to_string().contains("unknown_ca"), "{error}");
    }
}
