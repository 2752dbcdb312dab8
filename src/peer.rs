//! The peer of a request: one [`ConnectionInfo`] per connection, one way to read it.
//!
//! After a handshake the acceptor captures one [`ConnectionInfo`]: the connection's [`TlsInfo`]
//! and the client's [`PeerCertificates`] (if it presented any), behind one `Arc`.
//! [`AddConnectionInfo`] inserts it — one extension, one reference count — into every request
//! served on the connection: each HTTP/1.1 keep-alive request and each HTTP/2 stream.
//!
//! Handlers, interceptors and middleware read it through [`PeerExt`], implemented for
//! `http::Request`, `http::request::Parts`, `http::Extensions` and (feature `tonic`)
//! `tonic::Request`, whatever put it there: this crate's server, `axum::serve` with
//! [`axum::make_service`](crate::axum::make_service) or axum's `ConnectInfo<ConnectionInfo>`,
//! tonic's connect info, axum-server, or a hand-written hyper-util loop:
//!
//! ```
//! use tower_mtls::PeerExt;
//!
//! fn who(req: &http::Request<()>) -> String {
//!     let Some(tls) = req.tls_info() else {
//!         return "not a TLS connection".into();
//!     };
//!     match req.peer_certificates().map(|peer| peer.identity()) {
//!         Some(Ok(id)) => format!("{} over {:?}", id.subject(), tls.protocol_version()),
//!         Some(Err(e)) => format!("unparsable client certificate: {e}"),
//!         None => "no client certificate".into(),
//!     }
//! }
//! ```
//!
//! The leaf is parsed at most once per connection ([`PeerCertificates::identity`]); a
//! [`ClientCertLayer`](crate::ClientCertLayer) adds its verdict, [`AllowedClient`].

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
///
/// Part of a [`ConnectionInfo`]; read it with [`PeerExt::tls_info`] or
/// [`ConnectionInfo::tls`].
#[derive(Clone)]
pub struct TlsInfo {
    protocol_version: Option<ProtocolVersion>,
    cipher_suite: Option<CipherSuite>,
    alpn: Option<Box<[u8]>>,
    server_name: Option<Box<str>>,
    resumed: bool,
    remote_addr: Option<SocketAddr>,
}

impl TlsInfo {
    /// Reads the facts off an established rustls connection.
    fn from_connection(conn: &ServerConnection, remote_addr: Option<SocketAddr>) -> Self {
        Self {
            protocol_version: conn.protocol_version(),
            cipher_suite: conn.negotiated_cipher_suite().map(|s| s.suite()),
            alpn: conn.alpn_protocol().map(Box::from),
            server_name: conn.server_name().map(Box::from),
            resumed: conn.handshake_kind() == Some(HandshakeKind::Resumed),
            remote_addr,
        }
    }

    /// What another TLS stack told us: only the remote address is known.
    fn unknown(remote_addr: Option<SocketAddr>) -> Self {
        Self {
            protocol_version: None,
            cipher_suite: None,
            alpn: None,
            server_name: None,
            resumed: false,
            remote_addr,
        }
    }

    /// The negotiated protocol version (TLS 1.2 or 1.3); `None` when TLS was terminated by
    /// another stack that does not say (tonic's own `ServerTlsConfig`).
    pub fn protocol_version(&self) -> Option<ProtocolVersion> {
        self.protocol_version
    }

    /// The negotiated cipher suite.
    pub fn cipher_suite(&self) -> Option<CipherSuite> {
        self.cipher_suite
    }

    /// The ALPN protocol agreed on (`h2`, `http/1.1`), if any.
    pub fn alpn_protocol(&self) -> Option<&[u8]> {
        self.alpn.as_deref()
    }

    /// The server name the client asked for (SNI), if it sent one.
    pub fn server_name(&self) -> Option<&str> {
        self.server_name.as_deref()
    }

    /// Whether the session was resumed rather than fully negotiated. A resumed session
    /// carries the client chain from the original handshake.
    pub fn is_resumed(&self) -> bool {
        self.resumed
    }

    /// The peer's address; `None` for Unix sockets or when the caller did not know it.
    pub fn remote_addr(&self) -> Option<SocketAddr> {
        self.remote_addr
    }
}

impl fmt::Debug for TlsInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsInfo")
            .field("protocol_version", &self.protocol_version)
            .field("cipher_suite", &self.cipher_suite)
            .field("alpn", &self.alpn.as_deref().map(String::from_utf8_lossy))
            .field("server_name", &self.server_name)
            .field("resumed", &self.resumed)
            .field("remote_addr", &self.remote_addr)
            .finish()
    }
}

/// Everything captured about one connection, shared by every request on it: its [`TlsInfo`],
/// the client's [`PeerCertificates`] and the connection's `tracing` span. One `Arc`: cloning
/// it (once per request) is a reference count.
///
/// Requests carry it in their extensions ([`AddConnectionInfo`]); read it with [`PeerExt`].
/// A request's copy also carries the verdict of the
/// [`ClientCertLayer`](crate::ClientCertLayer) that let it through
/// ([`allowed_client`](Self::allowed_client)): one extension per request holds everything
/// this crate knows about its peer.
/// The span (see [`span`](Self::span)) is the one [`AddConnectionInfo`] runs every request
/// in, so request spans (tower-http's `TraceLayer`, a handler's `#[instrument]`) nest under
/// the connection they arrived on.
#[derive(Debug, Clone)]
pub struct ConnectionInfo {
    conn: Arc<ConnectionInner>,
    /// Set on a request's copy by the `ClientCertLayer` that let the request through.
    allowed: Option<AllowedClient>,
}

#[derive(Debug)]
struct ConnectionInner {
    tls: TlsInfo,
    peer: Option<PeerCertificates>,
    span: tracing::Span,
    /// The verdicts of the first [`KEPT_VERDICTS`] layers without predicates that admitted the
    /// client here, by layer id (an app-wide layer and a route's, say): their rules read only
    /// the certificate, so a verdict holds for the connection. Filled in order.
    verdicts: [OnceLock<(u64, AllowedClient)>; KEPT_VERDICTS],
}

impl ConnectionInfo {
    /// Captures a rustls connection's facts and the client's chain. Call once per connection,
    /// after the handshake — for a TLS stack of your own (tokio-rustls, axum-server's
    /// `RustlsAcceptor`) whose `ServerConfig` verified the client.
    ///
    /// The chain is taken as verified (see [`PeerCertificates::assume_verified`]): pass only
    /// a connection whose `ServerConfig` has a client certificate verifier you trust.
    pub fn from_connection(conn: &ServerConnection, remote_addr: Option<SocketAddr>) -> Self {
        Self::new(
            TlsInfo::from_connection(conn, remote_addr),
            conn.peer_certificates()
                .and_then(|chain| PeerCertificates::from_handshake(chain.to_vec())),
        )
    }

    /// Connection info for a chain that another TLS stack verified **as if this crate's
    /// handshake had** (see [`PeerCertificates::assume_verified`]), when that stack gives only
    /// the chain and the remote address: the TLS facts are unknown (`None`).
    ///
    /// This is how tonic's own `ServerTlsConfig` is adopted, and how tests build requests.
    /// Never build it from something a client sends.
    pub fn assume_verified(
        peer: Option<PeerCertificates>,
        remote_addr: Option<SocketAddr>,
    ) -> Self {
        Self::new(TlsInfo::unknown(remote_addr), peer)
    }

    fn new(tls: TlsInfo, peer: Option<PeerCertificates>) -> Self {
        let span = connection_span(&tls, peer.as_ref());
        Self {
            conn: Arc::new(ConnectionInner {
                tls,
                peer,
                span,
                verdicts: Default::default(),
            }),
            allowed: None,
        }
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
        &self.conn.span
    }

    /// The connection's TLS facts.
    pub fn tls(&self) -> &TlsInfo {
        &self.conn.tls
    }

    /// The client's certificates, when it presented any.
    pub fn peer(&self) -> Option<&PeerCertificates> {
        self.conn.peer.as_ref()
    }

    /// Who the [`ClientCertLayer`](crate::ClientCertLayer) that let this request through
    /// admitted, and by which rule: set on the request's copy by the layer (the innermost
    /// layer's verdict when several are stacked); `None` on a connection's own copy
    /// ([`MtlsStream::info`](crate::MtlsStream::info)) and behind no layer.
    pub fn allowed_client(&self) -> Option<&AllowedClient> {
        self.allowed.as_ref()
    }

    /// Records a layer's verdict on a request's copy.
    pub(crate) fn set_allowed_client(&mut self, allowed: AllowedClient) {
        self.allowed = Some(allowed);
    }

    /// The verdict layer `layer` kept for this connection.
    #[inline]
    pub(crate) fn cached_verdict(&self, layer: u64) -> Option<&AllowedClient> {
        for slot in &self.conn.verdicts {
            match slot.get() {
                Some((id, allowed)) if *id == layer => return Some(allowed),
                Some(_) => continue,
                // Filled in order: nothing after an empty slot.
                None => return None,
            }
        }
        None
    }

    /// Keeps the verdict of a layer whose rules read only the certificate, in the first free
    /// slot; with every slot taken, that layer decides every request.
    pub(crate) fn cache_verdict(&self, layer: u64, allowed: &AllowedClient) {
        for slot in &self.conn.verdicts {
            // A slot another layer's verdict took (meanwhile, perhaps: an HTTP/2 stream): the
            // next one.
            let (id, _) = slot.get_or_init(|| (layer, allowed.clone()));
            if *id == layer {
                return;
            }
        }
    }
}

/// How many layers' verdicts a connection keeps (see [`ConnectionInfo::cached_verdict`]).
const KEPT_VERDICTS: usize = 4;

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

/// A service that adds one connection's [`ConnectionInfo`] to every request (one extension)
/// before passing it on. The serve helper wraps each connection's service in one; a hand-written accept loop
/// does the same:
///
/// ```no_run
/// # async fn demo(acceptor: tower_mtls::MtlsAcceptor, tcp: tokio::net::TcpStream,
/// #               addr: std::net::SocketAddr) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
/// use hyper_util::rt::{TokioExecutor, TokioIo};
/// use hyper_util::service::TowerToHyperService;
/// use tower_mtls::peer::AddConnectionInfo;
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
        req.extensions_mut().insert(self.info.clone());
        let span = self.info.span();
        let _entered = span.enter();
        self.inner.call(req).instrument(span.clone())
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

/// Who a [`ClientCertLayer`](crate::ClientCertLayer) let in, and why: the layer records one in
/// the [`ConnectionInfo`] of every request it passes on (no extension of its own). Read it
/// with [`PeerExt::allowed_client`] (or axum's `AllowedClient` extractor):
///
/// ```
/// use tower_mtls::PeerExt;
///
/// fn describe(req: &http::Request<()>) -> String {
///     let Some(client) = req.allowed_client() else {
///         return "not behind a ClientCertLayer".into();
///     };
///     match (client.identity(), client.matched_rule()) {
///         (Some(id), Some(rule)) => format!("{} by rule {rule}", id.subject()),
///         (Some(id), None) => format!("{} (no rules configured)", id.subject()),
///         (None, _) => "no client certificate (optional layer)".into(),
///     }
/// }
/// ```
///
/// Cloning is cheap (one `Arc`).
#[derive(Clone, Debug)]
pub struct AllowedClient(Arc<AllowedInner>);

#[derive(Debug)]
struct AllowedInner {
    peer: Option<PeerCertificates>,
    rule: Option<MatchedRule>,
}

impl AllowedClient {
    pub(crate) fn new(peer: Option<PeerCertificates>, rule: Option<MatchedRule>) -> Self {
        Self(Arc::new(AllowedInner { peer, rule }))
    }

    /// The client's parsed leaf certificate; `None` only when an
    /// [`optional`](crate::ClientCertLayer::optional) layer let a client without certificate pass.
    pub fn identity(&self) -> Option<&ClientIdentity> {
        self.0.peer.as_ref()?.identity().ok()
    }

    /// The client's certificate chain, when it presented one.
    pub fn peer_certificates(&self) -> Option<&PeerCertificates> {
        self.0.peer.as_ref()
    }

    /// The rule that let the client in; `None` when the layer has no rules or the client
    /// passed an optional layer without a certificate.
    pub fn matched_rule(&self) -> Option<&MatchedRule> {
        self.0.rule.as_ref()
    }
}

/// The allow rule that let a client in: its position in the layer's
/// [policy](crate::ClientCertLayer::policy) and its [name](crate::Rule::named), if it has one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MatchedRule {
    index: usize,
    name: Option<Arc<str>>,
}

impl MatchedRule {
    pub(crate) fn new(index: usize, name: Option<Arc<str>>) -> Self {
        Self { index, name }
    }

    /// The rule's index among the layer's rules, from 0, in the order they were added.
    pub fn index(&self) -> usize {
        self.index
    }

    /// The rule's name, if it was built with [`Rule::named`](crate::Rule::named).
    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }
}

/// `#2` or `#2 "agents"` (the name quoted, control characters escaped as `\XX`).
impl fmt::Display for MatchedRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}", self.index)?;
        if let Some(name) = &self.name {
            f.write_str(" ")?;
            crate::identity::write_quoted(f, name)?;
        }
        Ok(())
    }
}

/// The one way to read a request's peer: TLS facts, the verified chain, the parsed identity
/// and a [`ClientCertLayer`](crate::ClientCertLayer)'s verdict.
///
/// Implemented for `http::Request`, `http::request::Parts`, `http::Extensions` and, with the
/// `tonic` feature, `tonic::Request`. It finds the connection's [`ConnectionInfo`] however it
/// got there: inserted by [`AddConnectionInfo`] (this crate's server, `axum::serve` with
/// [`axum::make_service`](crate::axum::make_service), axum-server, a hyper-util loop), as
/// tonic's connect info, or as axum's `ConnectInfo<ConnectionInfo>`. Everything is `None` for
/// a request that did not come through a TLS stack this crate knows of.
pub trait PeerExt: sealed::Sealed {
    /// The connection's facts and client chain.
    fn connection_info(&self) -> Option<&ConnectionInfo>;

    /// Who a [`ClientCertLayer`](crate::ClientCertLayer) let in, and by which rule; `None`
    /// when no such layer is in front of the service
    /// (see [`ConnectionInfo::allowed_client`]).
    fn allowed_client(&self) -> Option<&AllowedClient> {
        self.connection_info()?.allowed_client()
    }

    /// The connection's TLS facts, including the client's address
    /// ([`TlsInfo::remote_addr`]).
    fn tls_info(&self) -> Option<&TlsInfo> {
        self.connection_info().map(ConnectionInfo::tls)
    }

    /// The certificate chain the client presented and the handshake verified, leaf first;
    /// `None` without one.
    fn peer_certificates(&self) -> Option<&PeerCertificates> {
        self.connection_info()?.peer()
    }

    /// The client's leaf certificate, parsed (once per connection); `None` without a
    /// certificate or when it cannot be parsed (then
    /// [`PeerCertificates::identity`] says why).
    fn client_identity(&self) -> Option<&ClientIdentity> {
        self.peer_certificates()?.identity().ok()
    }
}

/// Where the connection's facts are in a request's extensions.
#[inline]
pub(crate) fn lookup(extensions: &http::Extensions) -> Option<&ConnectionInfo> {
    if let Some(info) = extensions.get::<ConnectionInfo>() {
        return Some(info);
    }
    #[cfg(feature = "axum")]
    if let Some(axum::extract::ConnectInfo(info)) =
        extensions.get::<axum::extract::ConnectInfo<ConnectionInfo>>()
    {
        return Some(info);
    }
    None
}

impl PeerExt for http::Extensions {
    fn connection_info(&self) -> Option<&ConnectionInfo> {
        lookup(self)
    }
}

impl<B> PeerExt for http::Request<B> {
    fn connection_info(&self) -> Option<&ConnectionInfo> {
        lookup(self.extensions())
    }
}

impl PeerExt for http::request::Parts {
    fn connection_info(&self) -> Option<&ConnectionInfo> {
        lookup(&self.extensions)
    }
}

pub(crate) mod sealed {
    /// Only this crate implements [`PeerExt`](super::PeerExt).
    pub trait Sealed {}
    impl Sealed for http::Extensions {}
    impl<B> Sealed for http::Request<B> {}
    impl Sealed for http::request::Parts {}
    #[cfg(feature = "tonic")]
    impl<T> Sealed for tonic::Request<T> {}
}

/// Peers whose TLS another stack in this process terminated — tonic's own `ServerTlsConfig`,
/// which hands each request a `TlsConnectInfo` with the chain its rustls verifier accepted —
/// adopted as [`ConnectionInfo`], with the leaf parsed once per connection (tonic shares one
/// chain `Arc` among a connection's requests; recent chains are remembered by it).
#[cfg(feature = "tonic")]
#[derive(Debug, Default)]
pub(crate) struct ForeignPeers(
    #[cfg(any(feature = "aws-lc-rs", feature = "ring"))]
    std::sync::Mutex<std::collections::VecDeque<ForeignPeer>>,
);

#[cfg(all(feature = "tonic", any(feature = "aws-lc-rs", feature = "ring")))]
type ForeignPeer = (Arc<Vec<CertificateDer<'static>>>, ConnectionInfo);

#[cfg(feature = "tonic")]
impl ForeignPeers {
    /// Connections remembered; older ones parse their leaf again if they come back.
    #[cfg(any(feature = "aws-lc-rs", feature = "ring"))]
    const KEEP: usize = 128;

    /// When `extensions` hold no [`ConnectionInfo`] but tonic's `TlsConnectInfo`, inserts one
    /// made from it and returns `true`.
    #[cfg(not(any(feature = "aws-lc-rs", feature = "ring")))]
    pub(crate) fn adopt(&self, _extensions: &mut http::Extensions) -> bool {
        // tonic's TLS types exist only with one of its providers.
        false
    }

    /// When `extensions` hold no [`ConnectionInfo`] but tonic's `TlsConnectInfo`, inserts one
    /// made from it and returns `true`.
    #[cfg(any(feature = "aws-lc-rs", feature = "ring"))]
    pub(crate) fn adopt(&self, extensions: &mut http::Extensions) -> bool {
        use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};
        if lookup(extensions).is_some() {
            return false;
        }
        let Some(tls) = extensions.get::<TlsConnectInfo<TcpConnectInfo>>() else {
            return false;
        };
        let remote_addr = tls.get_ref().remote_addr();
        let info = match tls.peer_certs() {
            None => ConnectionInfo::assume_verified(None, remote_addr),
            Some(chain) => {
                let mut known = self
                    .0
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                match known.iter().find(|(seen, _)| Arc::ptr_eq(seen, &chain)) {
                    Some((_, info)) => info.clone(),
                    None => {
                        let peer = PeerCertificates::from_handshake(chain.to_vec());
                        let info = ConnectionInfo::assume_verified(peer, remote_addr);
                        if known.len() == Self::KEEP {
                            known.pop_front();
                        }
                        known.push_back((chain, info.clone()));
                        info
                    }
                }
            }
        };
        extensions.insert(info);
        true
    }
}
