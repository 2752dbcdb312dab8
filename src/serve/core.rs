//! The accept core both serving paths share: what a server listens on ([`Listener`]: TCP, a
//! Unix socket, or anything that accepts byte streams), the connection cap, and the back-off
//! when the process runs out of file descriptors.
//!
//! [`MtlsServer`](crate::MtlsServer) spawns a task per connection from it;
//! [`MtlsListener`](super::MtlsListener) runs a handshake task per connection and hands out
//! the established streams. Either way a connection holds one slot of the cap from accept to
//! close, and the number of slots taken is the number of open connections — which is also
//! what a graceful shutdown waits on.

use std::fmt;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
#[cfg(unix)]
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{AcquireError, OwnedSemaphorePermit, Semaphore};

use super::limits::{ACCEPT_BACKOFF, AcceptErrors, is_per_connection_error};

/// What a server accepts connections from: a TCP listener, a Unix socket listener, or your
/// own (an in-memory transport, a listener handed over by systemd, …).
///
/// Implemented for tokio's [`TcpListener`] (which sets `TCP_NODELAY` on each connection) and
/// `UnixListener`. [`MtlsServer::from_listener`](crate::MtlsServer::from_listener) and
/// [`MtlsListener::from_listener`](super::MtlsListener::from_listener) take any of them.
pub trait Listener: Send + 'static {
    /// The byte stream of one connection.
    type Io: AsyncRead + AsyncWrite + Unpin + Send + 'static;

    /// Polls for the next connection, with the peer's address when it has one. Errors are
    /// sorted by the caller: those of one connection (reset, aborted) are skipped, the
    /// others (out of file descriptors) back off for 100 ms and are logged at most once per
    /// 10 s.
    fn poll_accept(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<(Self::Io, Option<SocketAddr>)>>;

    /// Where it listens.
    fn local_addr(&self) -> io::Result<ListenAddr>;
}

impl Listener for TcpListener {
    type Io = TcpStream;

    fn poll_accept(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<(Self::Io, Option<SocketAddr>)>> {
        let (stream, remote) = ready!(TcpListener::poll_accept(self, cx))?;
        if let Err(error) = stream.set_nodelay(true) {
            tracing::debug!(%remote, %error, "cannot set TCP_NODELAY");
        }
        Poll::Ready(Ok((stream, Some(remote))))
    }

    fn local_addr(&self) -> io::Result<ListenAddr> {
        TcpListener::local_addr(self).map(ListenAddr::Tcp)
    }
}

#[cfg(unix)]
impl Listener for tokio::net::UnixListener {
    type Io = tokio::net::UnixStream;

    fn poll_accept(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<(Self::Io, Option<SocketAddr>)>> {
        let (stream, _) = ready!(tokio::net::UnixListener::poll_accept(self, cx))?;
        Poll::Ready(Ok((stream, None)))
    }

    fn local_addr(&self) -> io::Result<ListenAddr> {
        let addr = tokio::net::UnixListener::local_addr(self)?;
        Ok(ListenAddr::Unix(
            addr.as_pathname().map(PathBuf::from).unwrap_or_default(),
        ))
    }
}

/// A Unix socket this crate bound ([`MtlsServer::bind_unix`](crate::MtlsServer::bind_unix)):
/// its file is removed when the listener is dropped.
#[cfg(unix)]
#[derive(Debug)]
pub(super) struct OwnedUnixSocket {
    pub(super) listener: tokio::net::UnixListener,
    pub(super) path: PathBuf,
}

#[cfg(unix)]
impl Drop for OwnedUnixSocket {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

#[cfg(unix)]
impl Listener for OwnedUnixSocket {
    type Io = tokio::net::UnixStream;

    fn poll_accept(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<(Self::Io, Option<SocketAddr>)>> {
        Listener::poll_accept(&mut self.listener, cx)
    }

    fn local_addr(&self) -> io::Result<ListenAddr> {
        Ok(ListenAddr::Unix(self.path.clone()))
    }
}

type SlotFuture =
    Pin<Box<dyn Future<Output = Result<OwnedSemaphorePermit, AcquireError>> + Send + Sync>>;

/// The connection cap, shared with the server's handle: the slots taken are the open
/// connections, less the one the accept loop may hold for the next connection.
#[derive(Debug, Clone)]
pub(super) struct Slots {
    pub(super) semaphore: Arc<Semaphore>,
    pub(super) max: usize,
    /// Whether the accept loop holds a slot ahead of its next connection.
    reserved: Arc<AtomicBool>,
}

impl Slots {
    fn new(max: usize) -> Self {
        let max = max.clamp(1, Semaphore::MAX_PERMITS.min(u32::MAX as usize));
        Self {
            semaphore: Arc::new(Semaphore::new(max)),
            max,
            reserved: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Connections open now.
    pub(super) fn open(&self) -> usize {
        (self.max - self.semaphore.available_permits())
            .saturating_sub(usize::from(self.reserved.load(Ordering::Acquire)))
    }

    /// Waits until no connection is open (the accept loop gone, or holding no slot).
    pub(super) async fn idle(&self) {
        loop {
            let reserved = self.reserved.load(Ordering::Acquire);
            let wanted = u32::try_from(self.max - usize::from(reserved)).unwrap_or(u32::MAX);
            if wanted == 0 {
                return;
            }
            // On a timeout the loop's reservation may have changed: look again. (The
            // semaphore is never closed.)
            if let Ok(Ok(all)) =
                tokio::time::timeout(IDLE_RECHECK, self.semaphore.acquire_many(wanted)).await
            {
                drop(all);
                return;
            }
        }
    }
}

/// How often a wait for idleness looks again at the accept loop's reservation.
const IDLE_RECHECK: std::time::Duration = std::time::Duration::from_millis(100);

/// The listener, the cap and the back-off: yields accepted connections with their slot.
pub(super) struct AcceptCore<L> {
    listener: L,
    slots: Slots,
    slot: Option<OwnedSemaphorePermit>,
    waiting_for_slot: Option<SlotFuture>,
    backoff: Option<Pin<Box<tokio::time::Sleep>>>,
    errors: AcceptErrors,
}

impl<L: Listener> AcceptCore<L> {
    pub(super) fn new(listener: L, max: usize) -> Self {
        Self {
            listener,
            slots: Slots::new(max),
            slot: None,
            waiting_for_slot: None,
            backoff: None,
            errors: AcceptErrors::default(),
        }
    }

    /// A new cap; only before the first accept.
    pub(super) fn set_max(&mut self, max: usize) {
        self.slot = None;
        self.waiting_for_slot = None;
        self.slots = Slots::new(max);
    }

    pub(super) fn listener(&self) -> &L {
        &self.listener
    }

    pub(super) fn slots(&self) -> &Slots {
        &self.slots
    }

    /// The next connection and the slot it holds until it closes. Never fails: accept errors
    /// are skipped, or backed off from and logged.
    pub(super) fn poll_accept(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<(L::Io, Option<SocketAddr>, OwnedSemaphorePermit)> {
        loop {
            if let Some(backoff) = &mut self.backoff {
                ready!(backoff.as_mut().poll(cx));
                self.backoff = None;
            }
            if self.slot.is_none() {
                let waiting = self
                    .waiting_for_slot
                    .get_or_insert_with(|| Box::pin(self.slots.semaphore.clone().acquire_owned()));
                let permit = ready!(waiting.as_mut().poll(cx));
                self.waiting_for_slot = None;
                match permit {
                    Ok(permit) => {
                        self.slot = Some(permit);
                        self.slots.reserved.store(true, Ordering::Release);
                    }
                    // The semaphore is never closed.
                    Err(_) => return Poll::Pending,
                }
            }
            match ready!(self.listener.poll_accept(cx)) {
                Ok((io, remote)) => {
                    let Some(slot) = self.slot.take() else {
                        continue;
                    };
                    self.slots.reserved.store(false, Ordering::Release);
                    return Poll::Ready((io, remote, slot));
                }
                Err(error) if is_per_connection_error(&error) => {
                    tracing::debug!(%error, "accept failed for one connection");
                }
                Err(error) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    self.errors.log(&error);
                    self.backoff = Some(Box::pin(tokio::time::sleep(ACCEPT_BACKOFF)));
                }
            }
        }
    }

    /// [`poll_accept`](Self::poll_accept) as a future.
    pub(super) async fn accept(&mut self) -> (L::Io, Option<SocketAddr>, OwnedSemaphorePermit) {
        std::future::poll_fn(|cx| self.poll_accept(cx)).await
    }
}

impl<L> Drop for AcceptCore<L> {
    fn drop(&mut self) {
        // The slot held for the next connection goes with the loop.
        self.slot = None;
        self.slots.reserved.store(false, Ordering::Release);
    }
}

/// What [`MtlsServer`](crate::MtlsServer)'s own constructors listen on: a TCP listener or a
/// Unix socket, decided at run time (as the Steadybit contract does).
#[derive(Debug)]
pub struct AnyListener(AnyInner);

#[derive(Debug)]
enum AnyInner {
    Tcp(TcpListener),
    #[cfg(unix)]
    Unix(OwnedUnixSocket),
    #[cfg(unix)]
    UnixListener(tokio::net::UnixListener),
}

impl AnyListener {
    pub(super) fn tcp(listener: TcpListener) -> Self {
        Self(AnyInner::Tcp(listener))
    }

    #[cfg(unix)]
    pub(super) fn owned_unix(socket: OwnedUnixSocket) -> Self {
        Self(AnyInner::Unix(socket))
    }

    #[cfg(unix)]
    pub(super) fn unix(listener: tokio::net::UnixListener) -> Self {
        Self(AnyInner::UnixListener(listener))
    }
}

impl Listener for AnyListener {
    type Io = AnyStream;

    fn poll_accept(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<(Self::Io, Option<SocketAddr>)>> {
        let (io, remote) = match &mut self.0 {
            AnyInner::Tcp(l) => {
                let (io, remote) = ready!(Listener::poll_accept(l, cx))?;
                (AnyStream(StreamInner::Tcp(io)), remote)
            }
            #[cfg(unix)]
            AnyInner::Unix(l) => {
                let (io, remote) = ready!(Listener::poll_accept(l, cx))?;
                (AnyStream(StreamInner::Unix(io)), remote)
            }
            #[cfg(unix)]
            AnyInner::UnixListener(l) => {
                let (io, remote) = ready!(Listener::poll_accept(l, cx))?;
                (AnyStream(StreamInner::Unix(io)), remote)
            }
        };
        Poll::Ready(Ok((io, remote)))
    }

    fn local_addr(&self) -> io::Result<ListenAddr> {
        match &self.0 {
            AnyInner::Tcp(l) => Listener::local_addr(l),
            #[cfg(unix)]
            AnyInner::Unix(l) => Listener::local_addr(l),
            #[cfg(unix)]
            AnyInner::UnixListener(l) => Listener::local_addr(l),
        }
    }
}

/// A connection accepted by an [`AnyListener`]: TCP or a Unix socket.
#[derive(Debug)]
pub struct AnyStream(StreamInner);

#[derive(Debug)]
enum StreamInner {
    Tcp(TcpStream),
    #[cfg(unix)]
    Unix(tokio::net::UnixStream),
}

macro_rules! each_stream {
    ($self:ident, $s:ident => $e:expr) => {
        match &mut $self.get_mut().0 {
            StreamInner::Tcp($s) => $e,
            #[cfg(unix)]
            StreamInner::Unix($s) => $e,
        }
    };
}

impl AsyncRead for AnyStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        each_stream!(self, s => Pin::new(s).poll_read(cx, buf))
    }
}

impl AsyncWrite for AnyStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        each_stream!(self, s => Pin::new(s).poll_write(cx, buf))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        each_stream!(self, s => Pin::new(s).poll_write_vectored(cx, bufs))
    }

    fn is_write_vectored(&self) -> bool {
        match &self.0 {
            StreamInner::Tcp(s) => s.is_write_vectored(),
            #[cfg(unix)]
            StreamInner::Unix(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        each_stream!(self, s => Pin::new(s).poll_flush(cx))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        each_stream!(self, s => Pin::new(s).poll_shutdown(cx))
    }
}

/// Where a [`MtlsServer`](crate::MtlsServer) listens.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ListenAddr {
    /// A TCP address.
    Tcp(SocketAddr),
    /// A Unix socket path.
    #[cfg(unix)]
    Unix(PathBuf),
}

impl fmt::Display for ListenAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Tcp(addr) => write!(f, "{addr}"),
            #[cfg(unix)]
            Self::Unix(path) => write!(f, "unix:{}", path.display()),
        }
    }
}
