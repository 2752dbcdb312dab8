//! What the acceptor learned about a connection, captured once and shared by every request on it.
//!
//! After a handshake the acceptor builds one [`ConnectionInfo`]: the client's
//! [`PeerCertificates`] (if it presented any) and the connection's [`TlsInfo`]. Both are cheap
//! handles over an `Arc`. [`AddConnectionInfo`] inserts them into the extensions of every
//! request served on the connection — each HTTP/1.1 keep-alive request and each HTTP/2 stream —
//! where handlers and [`ClientCertLayer`](crate::ClientCertLayer) read them:
//!
//! ```
//! use tower_mtls::{PeerCertificates, TlsInfo};
//!
//! fn who(req: &http::Request<()>) -> String {
//!     let Some(tls) = req.extensions().get::<TlsInfo>() else {
//!         return "not a TLS connection".into();
//!     };
//!     match req.extensions().get::<PeerCertificates>().map(|p| p.identity()) {
//!         Some(Ok(id)) => format!("{} over {:?}", id.subject(), tls.protocol_version()),
//!         Some(Err(e)) => format!("unparsable client certificate: {e}"),
//!         None => "no client certificate".into(),
//!     }
//! }
//! ```

use std::fmt;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};

use rustls::pki_types::CertificateDer;
use rustls::server::ServerConnection;
use rustls::{CipherSuite, HandshakeKind, ProtocolVersion};
use tower_layer::Layer;
use tower_service::Service;
use tracing::Instrument;
use tracing::instrument::Instrumented;

use crate::identity::{ClientIdentity, IdentityError};

/// The certificate chain a client presented and the handshake verified, shared by `Arc`.
///
/// Only the leaf ([`PeerCertificates::leaf`]) is bound to the handshake: the rest of the chain
/// is whatever the client chose to send, so decisions read the leaf only.
#[derive(Clone)]
pub struct PeerCertificates(Arc<PeerInner>);

struct PeerInner {
    chain: Box<[CertificateDer<'static>]>,
    identity: OnceLock<Result<Arc<ClientIdentity>, IdentityError>>,
}

impl PeerCertificates {
    /// A chain that a TLS handshake of this process verified, leaf first. `None` when empty.
    pub(crate) fn from_handshake(chain: Vec<CertificateDer<'static>>) -> Option<Self> {
        Self::assume_verified(chain)
    }

    /// Wraps `chain` (leaf first) **as if a handshake had verified it**; `None` when empty.
    ///
    /// [`ClientCertLayer`](crate::ClientCertLayer) and every accessor trust what this holds:
    /// they authorise by it and never verify it again. Use it only for a chain that a
    /// verifier you trust has already checked, with proof that the client holds the leaf's
    /// key — a TLS stack of your own in the same process, or tests. Never build it from
    /// something a client sends (a proxy header such as `X-Forwarded-Client-Cert`, a request
    /// field): whoever can send it can then claim any identity.
    pub fn assume_verified(chain: Vec<CertificateDer<'static>>) -> Option<Self> {
        if chain.is_empty() {
            return None;
        }
        Some(Self(Arc::new(PeerInner {
            chain: chain.into_boxed_slice(),
            identity: OnceLock::new(),
        })))
    }

    /// The client's own certificate, the one whose key signed the handshake.
    pub fn leaf(&self) -> &CertificateDer<'static> {
        // `assume_verified` refuses empty chains.
        &self.0.chain[0]
    }

    /// The whole chain as presented, leaf first.
    pub fn chain(&self) -> &[CertificateDer<'static>] {
        &self.0.chain
    }

    /// The leaf, parsed. Parsed on first use and cached for the connection: every request on
    /// it shares the one result.
    pub fn identity(&self) -> Result<&ClientIdentity, &IdentityError> {
        self.parsed().map(|identity| &**identity)
    }

    /// The parsed leaf, shared.
    pub(crate) fn parsed(&self) -> Result<&Arc<ClientIdentity>, &IdentityError> {
        self.0
            .identity
            .get_or_init(|| ClientIdentity::parse(self.leaf().as_ref()).map(Arc::new))
            .as_ref()
    }
}

impl fmt::Debug for PeerCertificates {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PeerCertificates")
            .field("chain_len", &self.0.chain.len())
            .field("identity", &self.0.identity.get())
            .finish()
    }
}

/// Facts about a TLS connection: protocol, cipher suite, ALPN, SNI, resumption, remote address.
#[derive(Clone)]
pub struct TlsInfo(Arc<TlsInfoInner>);

#[derive(Debug)]
struct TlsInfoInner {
    protocol_version: Option<ProtocolVersion>,
    cipher_suite: Option<CipherSuite>,
    alpn: Option<Vec<u8>>,
    server_name: Option<String>,
    resumed: bool,
    remote_addr: Option<SocketAddr>,
}

impl TlsInfo {
    /// Reads the facts off an established rustls connection.
    pub fn from_connection(conn: &ServerConnection, remote_addr: Option<SocketAddr>) -> Self {
        Self(Arc::new(TlsInfoInner {
            protocol_version: conn.protocol_version(),
            cipher_suite: conn.negotiated_cipher_suite().map(|s| s.suite()),
            alpn: conn.alpn_protocol().map(<[u8]>::to_vec),
            server_name: conn.server_name().map(str::to_owned),
            resumed: conn.handshake_kind() == Some(HandshakeKind::Resumed),
            remote_addr,
        }))
    }

    /// The negotiated protocol version (TLS 1.2 or 1.3).
    pub fn protocol_version(&self) -> Option<ProtocolVersion> {
        self.0.protocol_version
    }

    /// The negotiated cipher suite.
    pub fn cipher_suite(&self) -> Option<CipherSuite> {
        self.0.cipher_suite
    }

    /// The ALPN protocol agreed on (`h2`, `http/1.1`), if any.
    pub fn alpn_protocol(&self) -> Option<&[u8]> {
        self.0.alpn.as_deref()
    }

    /// The server name the client asked for (SNI), if it sent one.
    pub fn server_name(&self) -> Option<&str> {
        self.0.server_name.as_deref()
    }

    /// Whether the session was resumed rather than fully negotiated. A resumed session
    /// carries the client chain from the original handshake.
    pub fn is_resumed(&self) -> bool {
        self.0.resumed
    }

    /// The peer's address; `None` for Unix sockets or when the caller did not know it.
    pub fn remote_addr(&self) -> Option<SocketAddr> {
        self.0.remote_addr
    }
}

impl fmt::Debug for TlsInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsInfo")
            .field("protocol_version", &self.0.protocol_version)
            .field("cipher_suite", &self.0.cipher_suite)
            .field("alpn", &self.0.alpn.as_deref().map(String::from_utf8_lossy))
            .field("server_name", &self.0.server_name)
            .field("resumed", &self.0.resumed)
            .field("remote_addr", &self.0.remote_addr)
            .finish()
    }
}

/// Everything captured about one connection: attach it to each request with
/// [`AddConnectionInfo`].
///
/// It also carries the connection's `tracing` span (see [`span`](Self::span)), under which
/// [`AddConnectionInfo`] runs every request, so request spans (tower-http's `TraceLayer`, a
/// handler's `#[instrument]`) nest under the connection they arrived on.
#[derive(Debug, Clone)]
pub struct ConnectionInfo {
    tls: TlsInfo,
    peer: Option<PeerCertificates>,
    span: tracing::Span,
}

impl ConnectionInfo {
    /// Captures the connection's facts and the client's chain. Call once per connection,
    /// after the handshake.
    pub fn from_connection(conn: &ServerConnection, remote_addr: Option<SocketAddr>) -> Self {
        Self::new(
            TlsInfo::from_connection(conn, remote_addr),
            conn.peer_certificates()
                .and_then(|chain| PeerCertificates::from_handshake(chain.to_vec())),
        )
    }

    /// Assembles connection info from its parts, opening the connection's span.
    pub fn new(tls: TlsInfo, peer: Option<PeerCertificates>) -> Self {
        let span = connection_span(&tls, peer.as_ref());
        Self { tls, peer, span }
    }

    /// The connection's span: `tls_connection` at `INFO`, with the fields `remote` (the
    /// peer's address), `tls` (protocol version), `alpn` and `client` (the client
    /// certificate's SPIFFE ID, else its subject; empty without a certificate).
    ///
    /// [`MtlsServer`](crate::MtlsServer) runs the whole connection in it; wherever
    /// [`AddConnectionInfo`] wraps a service, each request's service call and response future
    /// run in it too, on HTTP/1.1 and HTTP/2 alike. When no subscriber wants it the span is
    /// disabled and costs nothing.
    pub fn span(&self) -> &tracing::Span {
        &self.span
    }

    /// The connection's facts from a request's extensions, however they were put there:
    /// by [`AddConnectionInfo`] (this crate's server, axum-server), as a `ConnectionInfo`
    /// value (tonic's connect info) or, with the `axum` feature, as axum's
    /// `ConnectInfo<ConnectionInfo>`. `None` when the request did not come through this
    /// crate's acceptor.
    pub fn find(extensions: &http::Extensions) -> Option<(&TlsInfo, Option<&PeerCertificates>)> {
        if let Some(tls) = extensions.get::<TlsInfo>() {
            return Some((tls, extensions.get::<PeerCertificates>()));
        }
        if let Some(info) = extensions.get::<ConnectionInfo>() {
            return Some((&info.tls, info.peer.as_ref()));
        }
        #[cfg(feature = "axum")]
        if let Some(axum::extract::ConnectInfo(info)) =
            extensions.get::<axum::extract::ConnectInfo<ConnectionInfo>>()
        {
            return Some((&info.tls, info.peer.as_ref()));
        }
        None
    }

    /// The connection's TLS facts.
    pub fn tls(&self) -> &TlsInfo {
        &self.tls
    }

    /// The client's certificates, when it presented any.
    pub fn peer(&self) -> Option<&PeerCertificates> {
        self.peer.as_ref()
    }

    /// Inserts [`TlsInfo`] and, if present, [`PeerCertificates`] into `extensions` (with the
    /// `axum` feature also axum's `ConnectInfo<SocketAddr>`, when the address is known, so
    /// axum's own extractor works).
    #[inline]
    pub fn insert_into(&self, extensions: &mut http::Extensions) {
        extensions.insert(self.tls.clone());
        if let Some(peer) = &self.peer {
            extensions.insert(peer.clone());
        }
        #[cfg(feature = "axum")]
        if let Some(remote) = self.tls.remote_addr() {
            extensions.insert(axum::extract::ConnectInfo(remote));
        }
    }
}

/// Opens the span of one connection; disabled (and free) when no subscriber wants it.
fn connection_span(tls: &TlsInfo, peer: Option<&PeerCertificates>) -> tracing::Span {
    let span = tracing::info_span!(
        "tls_connection",
        remote = tracing::field::Empty,
        tls = tracing::field::Empty,
        alpn = tracing::field::Empty,
        client = tracing::field::Empty,
    );
    if span.is_disabled() {
        return span;
    }
    if let Some(remote) = tls.remote_addr() {
        span.record("remote", tracing::field::display(remote));
    }
    if let Some(version) = tls.protocol_version().and_then(|v| v.as_str()) {
        span.record("tls", version);
    }
    if let Some(alpn) = tls.alpn_protocol() {
        span.record("alpn", String::from_utf8_lossy(alpn).as_ref());
    }
    if let Some(Ok(identity)) = peer.map(PeerCertificates::identity) {
        match identity.spiffe_id() {
            Some(id) => span.record("client", tracing::field::display(id)),
            None => span.record("client", tracing::field::display(identity.subject())),
        };
    }
    span
}

/// A service that adds one connection's [`ConnectionInfo`] to every request before passing it
/// on. The serve helper wraps each connection's service in one; a hand-written accept loop
/// does the same:
///
/// ```no_run
/// # async fn demo(acceptor: tower_mtls::MtlsAcceptor, tcp: tokio::net::TcpStream,
/// #               addr: std::net::SocketAddr) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
/// use hyper_util::rt::{TokioExecutor, TokioIo};
/// use hyper_util::service::TowerToHyperService;
/// use tower_mtls::AddConnectionInfo;
///
/// let app = tower::service_fn(|_req: http::Request<hyper::body::Incoming>| async {
///     Ok::<_, std::convert::Infallible>(http::Response::new(String::from("hi")))
/// });
/// let stream = acceptor.accept(tcp, Some(addr)).await?;
/// let svc = AddConnectionInfo::new(app, stream.info().clone());
/// hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
///     .serve_connection(TokioIo::new(stream), TowerToHyperService::new(svc))
///     .await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct AddConnectionInfo<S> {
    inner: S,
    info: ConnectionInfo,
}

impl<S> AddConnectionInfo<S> {
    /// Wraps `inner` so that each request it receives carries `info`.
    pub fn new(inner: S, info: ConnectionInfo) -> Self {
        Self { inner, info }
    }

    /// The layer form, for `ServiceBuilder`s.
    pub fn layer(info: ConnectionInfo) -> AddConnectionInfoLayer {
        AddConnectionInfoLayer { info }
    }
}

impl<S, B> Service<http::Request<B>> for AddConnectionInfo<S>
where
    S: Service<http::Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Instrumented<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    /// Adds the connection's facts to the request and calls the inner service in the
    /// connection's span (see [`ConnectionInfo::span`]).
    #[inline]
    fn call(&mut self, mut req: http::Request<B>) -> Self::Future {
        self.info.insert_into(req.extensions_mut());
        let _entered = self.info.span.enter();
        self.inner.call(req).instrument(self.info.span.clone())
    }
}

/// [`Layer`] that applies [`AddConnectionInfo`].
#[derive(Debug, Clone)]
pub struct AddConnectionInfoLayer {
    info: ConnectionInfo,
}

impl<S> Layer<S> for AddConnectionInfoLayer {
    type Service = AddConnectionInfo<S>;

    fn layer(&self, inner: S) -> Self::Service {
        AddConnectionInfo::new(inner, self.info.clone())
    }
}
