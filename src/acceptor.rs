//! The TLS acceptor: one handshake per call, with a deadline, capturing the peer once.
//!
//! [`TlsAcceptor::accept`] takes any `AsyncRead + AsyncWrite` stream (TCP, Unix, in-memory),
//! runs the rustls handshake against the [`TlsConfig`]'s current snapshot and returns a
//! [`TlsStream`] that carries the connection's [`ConnectionInfo`]. It never blocks an accept
//! loop by itself: spawn one task per connection and call it there (the serve helper does).
//!
//! Before handing the bytes to rustls it looks at the first one: a TLS connection starts with a
//! handshake record. Anything else is turned away at once — a plain-HTTP request with a short
//! `400` that says the port speaks HTTPS — instead of waiting for rustls to give up.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use rustls::server::ServerConnection;
use rustls::server::danger::ClientCertVerifier;
use rustls::{CertificateError, Error as TlsError};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::sync::Semaphore;

use crate::config::TlsConfig;
use crate::peer::ConnectionInfo;
use crate::verify::ChainTooLarge;

/// The default handshake deadline.
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Runs TLS handshakes for a [`TlsConfig`]. Cheap to clone; clones share limits.
#[derive(Debug, Clone)]
pub struct TlsAcceptor {
    config: TlsConfig,
    handshake_timeout: Duration,
    handshakes: Option<Arc<Semaphore>>,
}

impl From<TlsConfig> for TlsAcceptor {
    fn from(config: TlsConfig) -> Self {
        Self::new(config)
    }
}

impl TlsAcceptor {
    /// An acceptor with the default deadline (10 s) and no cap on concurrent handshakes.
    pub fn new(config: TlsConfig) -> Self {
        Self {
            config,
            handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
            handshakes: None,
        }
    }

    /// How long a client has, from the first call to [`accept`](Self::accept), to finish the
    /// handshake (waiting for a handshake slot included). Default 10 s.
    #[must_use]
    pub fn handshake_timeout(mut self, timeout: Duration) -> Self {
        self.handshake_timeout = timeout;
        self
    }

    /// At most `max` handshakes run at once; further connections wait for a slot within their
    /// deadline. Established connections are not counted.
    #[must_use]
    pub fn max_concurrent_handshakes(mut self, max: usize) -> Self {
        self.handshakes = Some(Arc::new(Semaphore::new(max.max(1))));
        self
    }

    /// The configuration handshakes are run against.
    pub fn config(&self) -> &TlsConfig {
        &self.config
    }

    /// Runs the handshake on `io`. `remote_addr` is recorded in the [`TlsInfo`](crate::TlsInfo)
    /// and in log lines.
    ///
    /// Failures are returned and logged (with the address and the reason): client certificates
    /// that fail verification at `warn`, scanners, plain HTTP, timeouts and clients that hang
    /// up at `debug`.
    pub async fn accept<IO>(
        &self,
        io: IO,
        remote_addr: Option<SocketAddr>,
    ) -> Result<TlsStream<IO>, HandshakeError>
    where
        IO: AsyncRead + AsyncWrite + Unpin,
    {
        let outcome =
            tokio::time::timeout(self.handshake_timeout, self.handshake(io, remote_addr)).await;
        let (error, linger) = match outcome {
            Ok(Ok(stream)) => return Ok(stream),
            Ok(Err(failed)) => (failed.error, failed.linger),
            Err(_) => (
                HandshakeError::new(HandshakeFailure::Timeout, remote_addr, None),
                None,
            ),
        };
        error.log();
        if let Some((io, response)) = linger {
            linger_close(io, response).await;
        }
        Err(error)
    }

    async fn handshake<IO>(
        &self,
        mut io: IO,
        remote_addr: Option<SocketAddr>,
    ) -> Result<TlsStream<IO>, Failed<IO>>
    where
        IO: AsyncRead + AsyncWrite + Unpin,
    {
        let fail = |kind, source| HandshakeError::new(kind, remote_addr, source);
        let _permit = match &self.handshakes {
            Some(semaphore) => Some(
                semaphore
                    .acquire()
                    .await
                    .map_err(|_| Failed::new(fail(HandshakeFailure::Io, None)))?,
            ),
            None => None,
        };

        // Large enough for a typical ClientHello in one read, as rustls would do itself.
        let mut first = Vec::with_capacity(2048);
        match io.read_buf(&mut first).await {
            Ok(0) => return Err(Failed::new(fail(HandshakeFailure::PeerClosed, None))),
            Ok(_) => {}
            Err(e) => return Err(Failed::new(fail(classify_io(&e), Some(e)))),
        }
        if first[0] != TLS_HANDSHAKE_RECORD {
            let (kind, response) = if first[0].is_ascii_uppercase() {
                (HandshakeFailure::PlainHttp, Some(PLAIN_HTTP_RESPONSE))
            } else {
                (HandshakeFailure::NotTls, None)
            };
            return Err(Failed {
                error: fail(kind, None),
                linger: Some((Rewind::new(Vec::new(), io), response)),
            });
        }

        let active = self.config.active();
        let acceptor = tokio_rustls::TlsAcceptor::from(active.server_config.clone());
        let stream = match acceptor
            .accept(Rewind::new(first, io))
            .into_fallible()
            .await
        {
            Ok(stream) => stream,
            Err((e, io)) => {
                return Err(Failed {
                    error: fail(classify_io(&e), Some(e)),
                    linger: Some((io, None)),
                });
            }
        };

        let info = ConnectionInfo::from_connection(stream.get_ref().1, remote_addr);
        // rustls restores a resumed session's client chain without verifying it again.
        if info.tls().is_resumed() {
            if let (Some(peer), Some(verifier)) = (info.peer(), &active.verifier) {
                if let Err(e) = verifier.verify_client_cert(
                    peer.leaf(),
                    &peer.chain()[1..],
                    rustls::pki_types::UnixTime::now(),
                ) {
                    return Err(Failed::new(fail(
                        classify_tls(&e),
                        Some(io::Error::new(io::ErrorKind::InvalidData, e)),
                    )));
                }
            }
        }
        Ok(TlsStream {
            inner: stream,
            info,
        })
    }
}

/// A failed handshake, with the stream when it deserves an orderly close.
struct Failed<IO> {
    error: HandshakeError,
    linger: Option<(Rewind<IO>, Option<&'static [u8]>)>,
}

impl<IO> Failed<IO> {
    fn new(error: HandshakeError) -> Self {
        Self {
            error,
            linger: None,
        }
    }
}

const TLS_HANDSHAKE_RECORD: u8 = 0x16;

const PLAIN_HTTP_RESPONSE: &[u8] = b"HTTP/1.1 400 Bad Request\r\n\
Content-Type: text/plain; charset=utf-8\r\n\
Content-Length: 48\r\n\
Connection: close\r\n\
\r\n\
This port speaks HTTPS only: use an https:// URL\n";

/// How long a failed connection is kept to deliver its alert or response.
const LINGER: Duration = Duration::from_secs(1);

/// Sends `response` (if any; the TLS alert is already written), closes the sending side and
/// reads what the client still sends, so that closing does not reset the connection before
/// the client has read the alert or response.
async fn linger_close<IO>(mut io: IO, response: Option<&[u8]>)
where
    IO: AsyncRead + AsyncWrite + Unpin,
{
    let _ = tokio::time::timeout(LINGER, async {
        if let Some(response) = response {
            io.write_all(response).await?;
        }
        io.shutdown().await?;
        let mut sink = [0u8; 1024];
        let mut total = 0;
        while total < 64 * 1024 {
            match io.read(&mut sink).await? {
                0 => break,
                n => total += n,
            }
        }
        Ok::<_, io::Error>(())
    })
    .await;
}

/// A server-side TLS stream with what the handshake learned about the peer.
#[derive(Debug)]
pub struct TlsStream<IO> {
    inner: tokio_rustls::server::TlsStream<Rewind<IO>>,
    info: ConnectionInfo,
}

impl<IO> TlsStream<IO> {
    /// The peer's certificates and the connection's TLS facts, captured once after the
    /// handshake.
    pub fn info(&self) -> &ConnectionInfo {
        &self.info
    }

    /// The underlying stream and the rustls connection.
    pub fn get_ref(&self) -> (&IO, &ServerConnection) {
        let (rewind, conn) = self.inner.get_ref();
        (&rewind.io, conn)
    }
}

impl<IO: AsyncRead + AsyncWrite + Unpin> AsyncRead for TlsStream<IO> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl<IO: AsyncRead + AsyncWrite + Unpin> AsyncWrite for TlsStream<IO> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// Replays the bytes read to recognise TLS, then reads from the stream itself.
#[derive(Debug)]
struct Rewind<IO> {
    prefix: Vec<u8>,
    pos: usize,
    io: IO,
}

impl<IO> Rewind<IO> {
    fn new(prefix: Vec<u8>, io: IO) -> Self {
        Self { prefix, pos: 0, io }
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for Rewind<IO> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.pos < this.prefix.len() {
            let rest = &this.prefix[this.pos..];
            let n = rest.len().min(buf.remaining());
            buf.put_slice(&rest[..n]);
            this.pos += n;
            if this.pos == this.prefix.len() {
                // Free the buffer for the rest of the connection's life.
                this.prefix = Vec::new();
                this.pos = 0;
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.io).poll_read(cx, buf)
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for Rewind<IO> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

/// Why a handshake failed, coarse enough to count and to alert on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum HandshakeFailure {
    /// The client sent a plain-HTTP request to the TLS port (it was answered with a 400).
    PlainHttp,
    /// The client sent something that is not TLS at all.
    NotTls,
    /// No protocol version in common (e.g. a TLS 1.0/1.1-only client).
    ProtocolVersion,
    /// Client authentication is required and the client sent no certificate.
    NoClientCertificate,
    /// The client certificate does not chain to a trusted CA and is not pinned.
    UnknownCa,
    /// The client certificate has expired.
    Expired,
    /// The client certificate is not valid yet.
    NotYetValid,
    /// The client certificate is revoked.
    Revoked,
    /// A signature does not verify: on the certificate, or the handshake signature made with
    /// the certificate's key.
    BadSignature,
    /// The certificate may not be used for client authentication (extended key usage), or a
    /// CA certificate was presented as the client's own.
    WrongKeyUsage,
    /// The client's certificate chain exceeds the configured cap.
    ChainTooLarge,
    /// Another problem with the client certificate (malformed, unsupported algorithm, …).
    BadCertificate,
    /// The client aborted the handshake with an alert (typically: it does not trust the
    /// server certificate).
    PeerAlert,
    /// Another TLS protocol violation.
    Protocol,
    /// The client did not finish within the deadline.
    Timeout,
    /// The client closed the connection during the handshake.
    PeerClosed,
    /// Another I/O error.
    Io,
}

impl HandshakeFailure {
    /// Every class, for iterating counters.
    pub const ALL: [HandshakeFailure; 17] = [
        Self::PlainHttp,
        Self::NotTls,
        Self::ProtocolVersion,
        Self::NoClientCertificate,
        Self::UnknownCa,
        Self::Expired,
        Self::NotYetValid,
        Self::Revoked,
        Self::BadSignature,
        Self::WrongKeyUsage,
        Self::ChainTooLarge,
        Self::BadCertificate,
        Self::PeerAlert,
        Self::Protocol,
        Self::Timeout,
        Self::PeerClosed,
        Self::Io,
    ];

    /// A stable snake_case name, for logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::PlainHttp => "plain_http",
            Self::NotTls => "not_tls",
            Self::ProtocolVersion => "protocol_version",
            Self::NoClientCertificate => "no_client_certificate",
            Self::UnknownCa => "unknown_ca",
            Self::Expired => "expired",
            Self::NotYetValid => "not_yet_valid",
            Self::Revoked => "revoked",
            Self::BadSignature => "bad_signature",
            Self::WrongKeyUsage => "wrong_key_usage",
            Self::ChainTooLarge => "chain_too_large",
            Self::BadCertificate => "bad_certificate",
            Self::PeerAlert => "peer_alert",
            Self::Protocol => "protocol",
            Self::Timeout => "timeout",
            Self::PeerClosed => "peer_closed",
            Self::Io => "io",
        }
    }

    /// Whether a client certificate was presented and refused: worth a warning, as it is how
    /// "the agent cannot connect" shows up.
    pub fn is_client_certificate_rejection(self) -> bool {
        matches!(
            self,
            Self::UnknownCa
                | Self::Expired
                | Self::NotYetValid
                | Self::Revoked
                | Self::BadSignature
                | Self::WrongKeyUsage
                | Self::ChainTooLarge
                | Self::BadCertificate
        )
    }
}

impl std::fmt::Display for HandshakeFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A failed handshake: its class, the peer's address and the underlying error.
#[derive(Debug, thiserror::Error)]
#[error("TLS handshake with {} failed ({kind}){}", peer_display(.remote_addr), source_display(.source))]
pub struct HandshakeError {
    kind: HandshakeFailure,
    remote_addr: Option<SocketAddr>,
    #[source]
    source: Option<io::Error>,
}

fn peer_display(addr: &Option<SocketAddr>) -> String {
    addr.map_or_else(|| "peer".to_owned(), |a| a.to_string())
}

fn source_display(source: &Option<io::Error>) -> String {
    source
        .as_ref()
        .map_or_else(String::new, |e| format!(": {e}"))
}

impl HandshakeError {
    fn new(
        kind: HandshakeFailure,
        remote_addr: Option<SocketAddr>,
        source: Option<io::Error>,
    ) -> Self {
        Self {
            kind,
            remote_addr,
            source,
        }
    }

    /// The class of failure.
    pub fn kind(&self) -> HandshakeFailure {
        self.kind
    }

    /// The peer's address, when known.
    pub fn remote_addr(&self) -> Option<SocketAddr> {
        self.remote_addr
    }

    /// The rustls error behind the failure, if it was one.
    pub fn tls_error(&self) -> Option<&TlsError> {
        self.source
            .as_ref()
            .and_then(|e| e.get_ref())
            .and_then(|e| e.downcast_ref::<TlsError>())
    }

    fn log(&self) {
        let remote = peer_display(&self.remote_addr);
        let reason = self.kind.as_str();
        let detail = source_display(&self.source);
        if self.kind.is_client_certificate_rejection() {
            tracing::warn!(%remote, reason, "client certificate rejected{detail}");
        } else if self.kind == HandshakeFailure::NoClientCertificate {
            tracing::info!(%remote, reason, "client sent no certificate but one is required");
        } else {
            tracing::debug!(%remote, reason, "TLS handshake failed{detail}");
        }
    }
}

fn classify_io(error: &io::Error) -> HandshakeFailure {
    if let Some(tls) = error.get_ref().and_then(|e| e.downcast_ref::<TlsError>()) {
        return classify_tls(tls);
    }
    match error.kind() {
        io::ErrorKind::UnexpectedEof
        | io::ErrorKind::ConnectionReset
        | io::ErrorKind::ConnectionAborted
        | io::ErrorKind::BrokenPipe => HandshakeFailure::PeerClosed,
        io::ErrorKind::TimedOut => HandshakeFailure::Timeout,
        _ => HandshakeFailure::Io,
    }
}

pub(crate) fn classify_tls(error: &TlsError) -> HandshakeFailure {
    use rustls::PeerIncompatible as P;
    match error {
        TlsError::NoCertificatesPresented => HandshakeFailure::NoClientCertificate,
        TlsError::InvalidCertificate(cert) => match cert {
            CertificateError::UnknownIssuer => HandshakeFailure::UnknownCa,
            CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
                HandshakeFailure::Expired
            }
            CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
                HandshakeFailure::NotYetValid
            }
            CertificateError::Revoked => HandshakeFailure::Revoked,
            CertificateError::BadSignature => HandshakeFailure::BadSignature,
            CertificateError::InvalidPurpose | CertificateError::InvalidPurposeContext { .. } => {
                HandshakeFailure::WrongKeyUsage
            }
            CertificateError::Other(other) if other.0.downcast_ref::<ChainTooLarge>().is_some() => {
                HandshakeFailure::ChainTooLarge
            }
            CertificateError::Other(other) => {
                let text = other.to_string();
                // webpki's CaUsedAsEndEntity surfaces as an opaque "other" error.
                if text.contains("CaUsedAsEndEntity") || text.contains("EndEntityUsedAsCa") {
                    HandshakeFailure::WrongKeyUsage
                } else {
                    HandshakeFailure::BadCertificate
                }
            }
            _ => HandshakeFailure::BadCertificate,
        },
        TlsError::PeerIncompatible(
            P::SupportedVersionsExtensionRequired
            | P::Tls12NotOffered
            | P::Tls12NotOfferedOrEnabled
            | P::ServerDoesNotSupportTls12Or13,
        ) => HandshakeFailure::ProtocolVersion,
        TlsError::AlertReceived(_) => HandshakeFailure::PeerAlert,
        TlsError::InvalidMessage(_) => HandshakeFailure::Protocol,
        _ => HandshakeFailure::Protocol,
    }
}
