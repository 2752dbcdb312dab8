//! The TLS acceptor: one handshake per call, with a deadline, capturing the peer once.
//!
//! [`MtlsAcceptor::accept`] takes any `AsyncRead + AsyncWrite` stream (TCP, Unix, in-memory),
//! runs the rustls handshake against the [`TlsConfig`]'s current snapshot and returns a
//! [`MtlsStream`] that carries the connection's [`ConnectionInfo`]. It never blocks an accept
//! loop by itself: spawn one task per connection and call it there (the serve helper does).
//!
//! Before handing the bytes to rustls it looks at the first one: a TLS connection starts with a
//! handshake record. Anything else is turned away at once — a plain-HTTP request with a short
//! `400` that says the port speaks HTTPS — instead of waiting for rustls to give up.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use rustls::server::ServerConnection;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::sync::Semaphore;

use crate::identity::CertificateSummary;
use crate::peer::ConnectionInfo;
use crate::rate_limit::LogLimiter;
use crate::tls::accept::error::{HandshakeError, HandshakeFailure, classify_io};
use crate::tls::accept::observe::{HandshakeEvent, TlsObserver};
use crate::tls::accept::stats::{AcceptorStats, Counters, Gauge, GaugeKind};
use crate::tls::config::tls_config::TlsConfig;

/// The default handshake deadline.
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// The default cap on handshakes in progress at once.
pub const DEFAULT_MAX_CONCURRENT_HANDSHAKES: usize = 4096;

/// Runs TLS handshakes for a [`TlsConfig`]. Cheap to clone; clones share limits, counters and
/// the log rate limit.
#[derive(Clone)]
pub struct MtlsAcceptor {
    config: TlsConfig,
    handshake_timeout: Duration,
    handshakes: Arc<Semaphore>,
    counters: Arc<Counters>,
    limiter: Arc<LogLimiter>,
    observers: Arc<[Arc<dyn TlsObserver>]>,
}

impl std::fmt::Debug for MtlsAcceptor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MtlsAcceptor")
            .field("config", &self.config)
            .field("handshake_timeout", &self.handshake_timeout)
            .field("stats", &self.counters.snapshot())
            .field("observers", &self.observers.len())
            .finish_non_exhaustive()
    }
}

impl From<TlsConfig> for MtlsAcceptor {
    fn from(config: TlsConfig) -> Self {
        Self::new(config)
    }
}

impl MtlsAcceptor {
    /// An acceptor with the default deadline (10 s) and cap on concurrent handshakes (4096).
    pub fn new(config: TlsConfig) -> Self {
        Self {
            config,
            handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
            handshakes: Arc::new(Semaphore::new(DEFAULT_MAX_CONCURRENT_HANDSHAKES)),
            counters: Arc::default(),
            limiter: Arc::default(),
            observers: Arc::new([]),
        }
    }

    /// Tells `observer` about every handshake this acceptor (and its clones made afterwards)
    /// finishes, and about every reload outcome of its [`TlsConfig`] (see
    /// [`TlsObserver`](crate::tls::TlsObserver)).
    #[must_use]
    pub fn observer(mut self, observer: impl TlsObserver) -> Self {
        let observer: Arc<dyn TlsObserver> = Arc::new(observer);
        self.config.add_reload_observer(observer.clone());
        let mut all = self.observers.to_vec();
        all.push(observer);
        self.observers = all.into();
        self
    }

    /// How long a client has, from the first call to [`accept`](Self::accept), to finish the
    /// handshake (waiting for a handshake slot included). Default 10 s.
    #[must_use]
    pub fn handshake_timeout(mut self, timeout: Duration) -> Self {
        self.handshake_timeout = timeout;
        self
    }

    /// At most `max` handshakes run at once (default 4096); further clients wait for a slot
    /// within their deadline. A slot is taken when the client's first bytes arrive, so
    /// connections that send nothing never hold one. Established connections are not counted.
    #[must_use]
    pub fn max_concurrent_handshakes(mut self, max: usize) -> Self {
        self.handshakes = Arc::new(Semaphore::new(max.clamp(1, Semaphore::MAX_PERMITS)));
        self
    }

    /// Rate limit of the `warn` lines for refused client certificates: at most `burst` per
    /// `window`, then one line says how many were suppressed. Default: 10 per 10 s.
    #[must_use]
    pub fn log_rate_limit(mut self, burst: u32, window: Duration) -> Self {
        self.limiter = Arc::new(LogLimiter::new(burst, window));
        self
    }

    /// A snapshot of this acceptor's counters (shared with its clones).
    pub fn stats(&self) -> AcceptorStats {
        self.counters.snapshot()
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
    ) -> Result<MtlsStream<IO>, HandshakeError>
    where
        IO: AsyncRead + AsyncWrite + Unpin,
    {
        let started = Instant::now();
        let in_progress = Gauge::new(&self.counters, GaugeKind::InProgress);
        let (outcome, notes) = crate::tls::trust::scope::with_notes(tokio::time::timeout(
            self.handshake_timeout,
            self.handshake(io, remote_addr),
        ))
        .await;
        let ticket_refused = notes.ticket_refused;
        let refused = notes
            .refused
            .map(|(der, detail)| (CertificateSummary::of_presented(&der), detail));
        drop(in_progress);
        let (error, linger) = match outcome {
            Ok(Ok(stream)) => {
                let resumed = stream.info().tls().is_resumed();
                self.counters.succeeded(resumed);
                #[cfg(feature = "metrics")]
                crate::tls::accept::metrics::session(resumed);
                self.finished(
                    started,
                    None,
                    (resumed, ticket_refused),
                    remote_addr,
                    || {
                        stream
                            .info()
                            .peer()
                            .and_then(|peer| peer.identity().ok())
                            .map(|id| id.subject().to_string())
                    },
                );
                return Ok(stream);
            }
            Ok(Err(failed)) => (failed.error, failed.linger),
            Err(_) => (
                HandshakeError::new(HandshakeFailure::Timeout, remote_addr, None),
                None,
            ),
        };
        let error = error.with_presented(refused);
        self.counters.failed(error.kind());
        self.finished(
            started,
            Some(error.kind()),
            (false, ticket_refused),
            remote_addr,
            || error.presented_certificate().map(|c| c.subject.clone()),
        );
        error.log(&self.limiter);
        if let Some((io, response)) = linger {
            linger_close(io, response).await;
        }
        Err(error)
    }

    /// Records a finished handshake in the metrics and tells the observers.
    fn finished(
        &self,
        started: Instant,
        failure: Option<HandshakeFailure>,
        (resumed, ticket_refused): (bool, Option<crate::tls::trust::scope::TicketRefusal>),
        remote_addr: Option<SocketAddr>,
        client_subject: impl FnOnce() -> Option<String>,
    ) {
        let duration = started.elapsed();
        #[cfg(feature = "metrics")]
        crate::tls::accept::metrics::handshake(failure, duration);
        if self.observers.is_empty() {
            return;
        }
        let event = HandshakeEvent {
            failure,
            duration,
            remote_addr,
            client_subject: client_subject(),
            resumed,
            ticket_refused,
        };
        for observer in self.observers.iter() {
            observer.on_handshake(&event);
        }
    }

    async fn handshake<IO>(
        &self,
        mut io: IO,
        remote_addr: Option<SocketAddr>,
    ) -> Result<MtlsStream<IO>, Failed<IO>>
    where
        IO: AsyncRead + AsyncWrite + Unpin,
    {
        let fail = |kind, source| HandshakeError::new(kind, remote_addr, source);

        // Large enough for a typical ClientHello in one read, as rustls would do itself.
        let mut first = Vec::with_capacity(2048);
        match io.read_buf(&mut first).await {
            Ok(0) => return Err(Failed::new(fail(HandshakeFailure::PeerClosed, None))),
            Ok(_) => {}
            Err(e) => return Err(Failed::new(fail(classify_io(&e), Some(e)))),
        }
        // Only clients that have started talking compete for handshake slots.
        let _permit = self
            .handshakes
            .acquire()
            .await
            .map_err(|_| Failed::new(fail(HandshakeFailure::Io, None)))?;
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

        let legacy_version = client_hello_version(&first);
        let active = self.config.active();
        let acceptor = tokio_rustls::TlsAcceptor::from(active.server_config.clone());
        let stream = match acceptor
            .accept(Rewind::new(first, io))
            .into_fallible()
            .await
        {
            Ok(stream) => stream,
            Err((e, io)) => {
                let mut kind = classify_io(&e);
                // A pre-TLS 1.2 hello fails on whichever missing extension rustls checks
                // first; what the client lacks is the protocol version.
                if legacy_version.is_some_and(|v| v < TLS12_VERSION) && is_incompatible(&e) {
                    kind = HandshakeFailure::ProtocolVersion;
                }
                return Err(Failed {
                    error: fail(kind, Some(e)),
                    linger: Some((io, None)),
                });
            }
        };

        // A resumed session's client chain is not verified again by rustls; the session store
        // only resumes sessions whose verification still holds (see `session`).
        let info = ConnectionInfo::from_connection(stream.get_ref().1, remote_addr);
        Ok(MtlsStream {
            inner: stream,
            info,
            _active: Gauge::new(&self.counters, GaugeKind::Active),
            lease: None,
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
const TLS12_VERSION: u16 = 0x0303;

/// The `legacy_version` of a ClientHello at the start of `bytes`: the highest version a
/// pre-TLS 1.3 client offers (TLS 1.3 clients say 1.2 here).
fn client_hello_version(bytes: &[u8]) -> Option<u16> {
    // record header (5) + handshake type (1) + length (3), then the version.
    match bytes {
        [
            TLS_HANDSHAKE_RECORD,
            _,
            _,
            _,
            _,
            0x01,
            _,
            _,
            _,
            major,
            minor,
            ..,
        ] => Some(u16::from_be_bytes([*major, *minor])),
        _ => None,
    }
}

fn is_incompatible(error: &io::Error) -> bool {
    matches!(
        error
            .get_ref()
            .and_then(|e| e.downcast_ref::<rustls::Error>()),
        Some(rustls::Error::PeerIncompatible(_))
    )
}

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
pub struct MtlsStream<IO> {
    inner: tokio_rustls::server::TlsStream<Rewind<IO>>,
    info: ConnectionInfo,
    _active: Gauge,
    lease: Option<Box<Lease>>,
}

/// The shutdown phase at which a listener's streams fail their reads and writes.
pub(crate) const CLOSED: u8 = 2;

/// What a listener hands out with a stream: a connection slot, held for the stream's life,
/// and the signal that ends the stream when a shutdown's grace period is over.
pub(crate) struct Lease {
    pub(crate) _slot: tokio::sync::OwnedSemaphorePermit,
    /// The server's shutdown phase, at or above [`CLOSED`] once the grace period is over: one
    /// load per read or write.
    pub(crate) closed: Arc<std::sync::atomic::AtomicU8>,
    /// Resolves at the same moment; polled only when the stream would wait, so that an idle
    /// connection is woken.
    pub(crate) closing: Pin<Box<dyn Future<Output = ()> + Send + Sync>>,
}

impl std::fmt::Debug for Lease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lease").finish_non_exhaustive()
    }
}

impl<IO> MtlsStream<IO> {
    /// Ties the stream to a listener's connection slot and shutdown deadline.
    pub(crate) fn with_lease(mut self, lease: Lease) -> Self {
        self.lease = Some(Box::new(lease));
        self
    }

    /// Runs one read or write, failing it once the lease's shutdown deadline has passed.
    #[inline]
    fn leased<T>(
        &mut self,
        cx: &mut Context<'_>,
        op: impl FnOnce(
            Pin<&mut tokio_rustls::server::TlsStream<Rewind<IO>>>,
            &mut Context<'_>,
        ) -> Poll<io::Result<T>>,
    ) -> Poll<io::Result<T>>
    where
        IO: Unpin,
    {
        let Self { inner, lease, .. } = self;
        let Some(lease) = lease else {
            return op(Pin::new(inner), cx);
        };
        if lease.closed.load(std::sync::atomic::Ordering::Acquire) >= CLOSED {
            return Poll::Ready(Err(closed_by_deadline()));
        }
        let poll = op(Pin::new(inner), cx);
        if poll.is_pending() && lease.closing.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Err(closed_by_deadline()));
        }
        poll
    }

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

impl<IO: AsyncRead + AsyncWrite + Unpin> AsyncRead for MtlsStream<IO> {
    #[inline]
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        self.get_mut()
            .leased(cx, |inner, cx| inner.poll_read(cx, buf))
    }
}

impl<IO: AsyncRead + AsyncWrite + Unpin> AsyncWrite for MtlsStream<IO> {
    #[inline]
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.get_mut()
            .leased(cx, |inner, cx| inner.poll_write(cx, buf))
    }

    /// Small writes of several pieces (hyper's head and body of a short response) are joined
    /// first: rustls takes one piece as it is, but several only through a list it allocates.
    /// Large ones go through as they are, with no copy.
    #[inline]
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if bufs.len() > 1 {
            let total = bufs.iter().map(|buf| buf.len()).sum::<usize>();
            if total <= JOIN_MAX {
                // Gone only while the thread exits; busy only if a stream of this crate writes
                // through another (TLS in TLS). Either way the slices go through as they are.
                let joined = JOINED.try_with(|joined| {
                    let mut joined = joined.try_borrow_mut().ok()?;
                    joined.clear();
                    for buf in bufs {
                        joined.extend_from_slice(buf);
                    }
                    Some(this.leased(cx, |inner, cx| inner.poll_write(cx, &joined)))
                });
                if let Ok(Some(poll)) = joined {
                    return poll;
                }
            }
        }
        this.leased(cx, |inner, cx| inner.poll_write_vectored(cx, bufs))
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.get_mut().leased(cx, |inner, cx| inner.poll_flush(cx))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// The largest write [`MtlsStream`] joins into one piece before handing it to rustls.
const JOIN_MAX: usize = 4096;

thread_local! {
    /// Where those pieces are joined: one buffer per thread, at most [`JOIN_MAX`] bytes, shared
    /// by every connection the thread serves.
    static JOINED: std::cell::RefCell<Vec<u8>> = std::cell::RefCell::new(Vec::with_capacity(JOIN_MAX));
}

#[cold]
fn closed_by_deadline() -> io::Error {
    io::Error::new(
        io::ErrorKind::ConnectionAborted,
        "closed by the server: its shutdown grace period is over",
    )
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
    #[inline]
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
    #[inline]
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    #[inline]
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
