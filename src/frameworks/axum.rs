//! axum on its own server, `axum::serve`, with mutual TLS (feature `axum`).
//!
//! [`MtlsListener`] is an `axum::serve::Listener`: it runs every handshake in a task of its
//! own, so a client that connects and says nothing delays nobody, and hands axum only the
//! connections whose client certificate verified. [`make_service`] turns an app (a `Router`,
//! or a `Router` wrapped in [`ClientCertLayer`](crate::ClientCertLayer)) into what
//! `axum::serve` takes, attaching the connection's facts to every request as this crate's
//! own server does:
//!
//! ```no_run
//! use std::time::Duration;
//!
//! use axum::{Router, routing::get};
//! use tower::Layer;
//! use tower_mtls::axum::{ClientCert, make_service};
//! use tower_mtls::serve::MtlsListener;
//! use tower_mtls::{ClientCertLayer, Rule, TlsConfig};
//!
//! async fn hello(client: ClientCert) -> String {
//!     format!("hello {}\n", client.subject())
//! }
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let tls = TlsConfig::from_pem_files("tls.crt", "tls.key")
//!     .client_trust("ca.crt")
//!     .build()?;
//! // Layers stack: a request must pass every layer it meets, so the app-wide layer admits
//! // everyone some route admits, and a route's own layer narrows it further.
//! let router = Router::new()
//!     .route("/", get(hello))
//!     // One route: only ops.
//!     .route("/admin", get(hello).layer(ClientCertLayer::require().allow(Rule::new().subject_cn("ops"))));
//! // Every route: the agent or ops.
//! let app = ClientCertLayer::require()
//!     .allow(Rule::new().subject_cn("steadybit-agent"))
//!     .allow(Rule::new().subject_cn("ops"))
//!     .layer(router);
//!
//! let listener = MtlsListener::bind("0.0.0.0:8443", tls).await?;
//! let shutdown = listener.graceful_shutdown(
//!     async { let _ = tokio::signal::ctrl_c().await; },
//!     Duration::from_secs(10),
//! );
//! axum::serve(listener, make_service(app))
//!     .with_graceful_shutdown(shutdown)
//!     .await?;
//! # Ok(()) }
//! ```
//!
//! Handlers read the client with the extractors [`ClientCert`], [`PeerCertificates`],
//! [`AllowedClient`] (set by a [`ClientCertLayer`](crate::ClientCertLayer)) and
//! [`ConnectionInfo`] (TLS facts and the remote address): each answers **401** when the
//! request has no client certificate (403 when the certificate cannot be parsed), never 500;
//! `Option<PeerCertificates>` and `Option<ClientCert>` are `None` instead. Middleware reads
//! the same through [`PeerExt`](crate::PeerExt).
//!
//! `app.into_make_service_with_connect_info::<ConnectionInfo>()` works as well ([`Connected`]
//! is implemented for [`ConnectionInfo`]); the layer and the extractors find the peer in
//! `ConnectInfo<ConnectionInfo>`. [`make_service`] is still the better choice: it runs each
//! request in the connection's span (see
//! [`ConnectionInfo::span`]) and accepts an app whose response body is not axum's (a
//! `Router` wrapped in `ClientCertLayer`).
//!
//! # What `axum::serve` keeps and loses
//!
//! | protection | [`MtlsServer`](crate::MtlsServer) | `axum::serve` + [`MtlsListener`] |
//! |---|---|---|
//! | handshake deadline, cap on concurrent handshakes, classified logs | yes | yes (the [`MtlsAcceptor`](crate::MtlsAcceptor)'s) |
//! | handshakes off the accept path | yes | yes |
//! | connection cap | [`max_connections`](crate::MtlsServer::max_connections) | [`MtlsListener::max_connections`] |
//! | graceful shutdown with a deadline | [`grace_period`](crate::MtlsServer::grace_period) | [`MtlsListener::graceful_shutdown`] |
//! | HTTP/1 header-read timeout (slow-loris, idle keep-alive) | 30 s by default | **no**: axum builds hyper's connection itself, without a timer, and offers no setting |
//! | HTTP/2 stream limit, keep-alive pings | settable | hyper's defaults |
//!
//! Where the header-read timeout matters (a port reachable by untrusted clients), serve the
//! same `Router` with [`MtlsServer`](crate::MtlsServer): it takes any axum app as it is.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::ops::Deref;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use ::axum::body::Body;
use ::axum::extract::connect_info::Connected;
use ::axum::serve::{IncomingStream, Listener};
use axum_core::extract::{FromRequestParts, OptionalFromRequestParts};
use axum_core::response::{IntoResponse, Response};
use bytes::Bytes;
use http::request::Parts;
use pin_project_lite::pin_project;
use tower_service::Service;

use crate::identity::ClientIdentity;
use crate::peer::{self, AddConnectionInfo, AllowedClient, ConnectionInfo, PeerCertificates};
use crate::policy::{RejectReason, Rejection};
use crate::serve::{ListenAddr, Listener as ServeListener, MtlsListener};
use crate::tls::accept::acceptor::MtlsStream;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Any [`MtlsListener`] — TCP, a Unix socket, your own [`Listener`](ServeListener) — is an
/// `axum::serve` listener; the address is the peer's, `None` on a Unix socket.
impl<L: ServeListener> Listener for MtlsListener<L>
where
    L::Io: Sync,
{
    type Io = MtlsStream<L::Io>;
    type Addr = Option<SocketAddr>;

    fn accept(&mut self) -> impl Future<Output = (Self::Io, Self::Addr)> + Send {
        MtlsListener::accept(self)
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.listen_addr().map(|addr| match addr {
            ListenAddr::Tcp(addr) => Some(addr),
            #[cfg(unix)]
            ListenAddr::Unix(_) => None,
        })
    }
}

/// With `into_make_service_with_connect_info::<ConnectionInfo>()`, handlers get
/// `ConnectInfo<ConnectionInfo>`, and [`ClientCertLayer`](crate::ClientCertLayer) and this
/// module's extractors find the peer there.
impl<L: ServeListener> Connected<IncomingStream<'_, MtlsListener<L>>> for ConnectionInfo
where
    L::Io: Sync,
{
    fn connect_info(stream: IncomingStream<'_, MtlsListener<L>>) -> Self {
        stream.io().info().clone()
    }
}

/// Makes `app` what `axum::serve` takes from a [`MtlsListener`]: every request carries the
/// connection's [`ConnectionInfo`] (read it with [`PeerExt`](crate::PeerExt)), and runs in
/// the connection's span, as under [`MtlsServer`](crate::MtlsServer).
///
/// `app` is any service of axum requests whose response body carries `Bytes`: a `Router`, a
/// `Router` wrapped in [`ClientCertLayer`](crate::ClientCertLayer) or a `ServiceBuilder`
/// stack around one.
pub fn make_service<S>(app: S) -> MakeService<S> {
    MakeService { app }
}

/// What [`make_service`] returns: for each connection, the app wrapped in
/// [`AddConnectionInfo`].
#[derive(Debug, Clone)]
pub struct MakeService<S> {
    app: S,
}

impl<S: Clone, L: ServeListener> Service<IncomingStream<'_, MtlsListener<L>>> for MakeService<S>
where
    L::Io: Sync,
{
    type Response = ConnectionService<S>;
    type Error = Infallible;
    type Future = std::future::Ready<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, stream: IncomingStream<'_, MtlsListener<L>>) -> Self::Future {
        let info = stream.io().info().clone();
        std::future::ready(Ok(ConnectionService {
            inner: AddConnectionInfo::new(self.app.clone(), info),
        }))
    }
}

/// One connection's service under [`make_service`]: the app, with the connection's facts
/// added to each request and the response body turned into axum's.
#[derive(Debug, Clone)]
pub struct ConnectionService<S> {
    inner: AddConnectionInfo<S>,
}

impl<S, B> Service<http::Request<Body>> for ConnectionService<S>
where
    S: Service<http::Request<Body>, Response = http::Response<B>, Error = Infallible>,
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    type Response = Response;
    type Error = Infallible;
    type Future = IntoAxumResponse<<AddConnectionInfo<S> as Service<http::Request<Body>>>::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<Body>) -> Self::Future {
        IntoAxumResponse {
            future: self.inner.call(req),
        }
    }
}

pin_project! {
    /// The future of [`ConnectionService`]: the app's response with an axum body.
    pub struct IntoAxumResponse<F> {
        #[pin]
        future: F,
    }
}

impl<F, B> Future for IntoAxumResponse<F>
where
    F: Future<Output = Result<http::Response<B>, Infallible>>,
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    type Output = Result<Response, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let response = ready!(self.project().future.poll(cx))?;
        Poll::Ready(Ok(response.map(Body::new)))
    }
}

/// Why an extractor of this module found no client: answered with the status of its
/// [`RejectReason`] (401 without a certificate, 403 for one that cannot be parsed) and the
/// same JSON or gRPC body as a [`ClientCertLayer`](crate::ClientCertLayer) rejection.
#[derive(Debug)]
pub struct ClientCertRejection(Rejection);

impl ClientCertRejection {
    fn new(reason: RejectReason, parts: &Parts) -> Self {
        let found = peer::lookup(&parts.extensions);
        let remote_addr = found.and_then(|info| info.tls().remote_addr());
        tracing::debug!(
            remote = ?remote_addr,
            reason = reason.as_str(),
            path = parts.uri.path(),
            "extractor found no usable client certificate"
        );
        Self(Rejection::new(
            reason,
            &parts.headers,
            found.and_then(|info| info.peer().cloned()),
            remote_addr,
        ))
    }

    /// Why there is no client.
    pub fn reason(&self) -> RejectReason {
        self.0.reason()
    }
}

impl IntoResponse for ClientCertRejection {
    fn into_response(self) -> Response {
        self.0.default_response().map(Body::from)
    }
}

/// The peer from wherever the connection's facts are (`None` without a certificate); 401 when
/// the request did not come through this crate's acceptor.
fn peer_of(parts: &Parts) -> Result<Option<&PeerCertificates>, ClientCertRejection> {
    match peer::lookup(&parts.extensions) {
        Some(info) => Ok(info.peer()),
        None => Err(ClientCertRejection::new(
            RejectReason::NoTlsConnection,
            parts,
        )),
    }
}

/// The peer; 401 without one.
fn required_peer(parts: &Parts) -> Result<&PeerCertificates, ClientCertRejection> {
    peer_of(parts)?
        .ok_or_else(|| ClientCertRejection::new(RejectReason::CertificateRequired, parts))
}

/// The client's verified certificate chain; 401 without one.
impl<S: Send + Sync> FromRequestParts<S> for PeerCertificates {
    type Rejection = ClientCertRejection;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        required_peer(parts).cloned()
    }
}

/// `None` when the client presented no certificate; still 401 when the request did not come
/// through this crate's acceptor at all (nothing can be known about the client then).
impl<S: Send + Sync> OptionalFromRequestParts<S> for PeerCertificates {
    type Rejection = ClientCertRejection;

    async fn from_request_parts(
        parts: &mut Parts,
        _state: &S,
    ) -> Result<Option<Self>, Self::Rejection> {
        Ok(peer_of(parts)?.cloned())
    }
}

/// The connection's facts (TLS, client chain, span); 401 when the request did not come
/// through this crate's acceptor.
impl<S: Send + Sync> FromRequestParts<S> for ConnectionInfo {
    type Rejection = ClientCertRejection;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        match peer::lookup(&parts.extensions) {
            Some(info) => Ok(info.clone()),
            None => Err(ClientCertRejection::new(
                RejectReason::NoTlsConnection,
                parts,
            )),
        }
    }
}

/// The verdict of the [`ClientCertLayer`](crate::ClientCertLayer) that let the request
/// through; 401 when no layer did (a handler that asks for it is meant to sit behind one).
impl<S: Send + Sync> FromRequestParts<S> for AllowedClient {
    type Rejection = ClientCertRejection;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        if let Some(allowed) =
            peer::lookup(&parts.extensions).and_then(ConnectionInfo::allowed_client)
        {
            return Ok(allowed.clone());
        }
        let reason = match peer_of(parts)? {
            Some(_) => {
                tracing::warn!(
                    path = parts.uri.path(),
                    "a handler asks for AllowedClient but no ClientCertLayer guards its route; \
                     refusing the request"
                );
                RejectReason::CertificateRequired
            }
            None => RejectReason::CertificateRequired,
        };
        Err(ClientCertRejection::new(reason, parts))
    }
}

/// The client's certificate, parsed: derefs to [`ClientIdentity`]. 401 without a
/// certificate, 403 when it cannot be parsed.
#[derive(Debug, Clone)]
pub struct ClientCert {
    identity: Arc<ClientIdentity>,
    peer: PeerCertificates,
}

impl ClientCert {
    /// The certificates the identity was parsed from.
    pub fn peer_certificates(&self) -> &PeerCertificates {
        &self.peer
    }

    fn of(peer: &PeerCertificates, parts: &Parts) -> Result<Self, ClientCertRejection> {
        match peer.parsed() {
            Ok(identity) => Ok(Self {
                identity: identity.clone(),
                peer: peer.clone(),
            }),
            Err(_) => Err(ClientCertRejection::new(
                RejectReason::CertificateUnparsable,
                parts,
            )),
        }
    }
}

impl Deref for ClientCert {
    type Target = ClientIdentity;

    fn deref(&self) -> &ClientIdentity {
        &self.identity
    }
}

impl<S: Send + Sync> FromRequestParts<S> for ClientCert {
    type Rejection = ClientCertRejection;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Self::of(required_peer(parts)?, parts)
    }
}

impl<S: Send + Sync> OptionalFromRequestParts<S> for ClientCert {
    type Rejection = ClientCertRejection;

    async fn from_request_parts(
        parts: &mut Parts,
        _state: &S,
    ) -> Result<Option<Self>, Self::Rejection> {
        peer_of(parts)?
            .map(|peer| Self::of(peer, parts))
            .transpose()
    }
}
