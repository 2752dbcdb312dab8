//! [`MtlsListener`]: a TCP listener that hands out established mutual-TLS streams, for servers
//! that own their accept loop (`axum::serve`, tonic's `serve_with_incoming`).
//!
//! Such servers call `accept` one connection at a time. A listener that ran the handshake
//! inside `accept` would let one silent client stall everyone behind it, so this one accepts
//! TCP connections as they come, runs each handshake in a task of its own (with the
//! [`MtlsAcceptor`]'s deadline, cap on concurrent handshakes and logging) and hands out the
//! streams whose handshake succeeded, in the order they finish.

use std::fmt;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream, ToSocketAddrs};
use tokio::sync::{AcquireError, OwnedSemaphorePermit, Semaphore, watch};
use tokio::task::JoinSet;

use super::handle::{ListenAddr, Open, ServerHandle};
use super::limits::{
    ACCEPT_BACKOFF, AcceptErrors, DEFAULT_MAX_CONNECTIONS, bind_tcp, is_per_connection_error,
};
use crate::tls::accept::acceptor::{Lease, MtlsAcceptor, MtlsStream};

type SlotFuture =
    Pin<Box<dyn Future<Output = Result<OwnedSemaphorePermit, AcquireError>> + Send + Sync>>;

/// A TCP listener whose `accept` yields mutual-TLS streams whose handshake has succeeded.
///
/// * **Handshakes off the accept path:** each runs in its own task, so a client that connects
///   and sends nothing delays nobody; [`MtlsAcceptor::handshake_timeout`] ends it.
/// * **Connection cap:** at most [`max_connections`](Self::max_connections) connections are
///   open at once, handshakes included (default 16384). Each stream holds its slot until it is
///   dropped; while all are taken, new clients wait in the kernel's listen backlog.
/// * **Shutdown deadline:** [`graceful_shutdown`](Self::graceful_shutdown) wraps the signal
///   given to the server's own graceful shutdown; once the grace period after it is over, the
///   streams still open fail their reads and writes, so the server's wait for them ends.
/// * Failed handshakes are logged and counted by the acceptor and never reach the server;
///   accept errors are logged and retried (out of file descriptors: after 100 ms each time,
///   logged at most once per 10 s with the count of the others).
///
/// With axum, see [`tower_mtls::axum`](crate::axum) (feature `axum`); with tonic,
/// [`tower_mtls::tonic`](crate::tonic) (feature `tonic`).
pub struct MtlsListener {
    tcp: TcpListener,
    acceptor: MtlsAcceptor,
    handshakes: JoinSet<Option<(MtlsStream<TcpStream>, SocketAddr)>>,
    slots: Arc<Semaphore>,
    max_connections: usize,
    slot: Option<OwnedSemaphorePermit>,
    waiting_for_slot: Option<SlotFuture>,
    backoff: Option<Pin<Box<tokio::time::Sleep>>>,
    accept_errors: AcceptErrors,
    closing: watch::Sender<bool>,
    closed: Arc<AtomicBool>,
    /// Set by [`ServerHandle::graceful_shutdown`].
    requested: watch::Sender<bool>,
}

impl fmt::Debug for MtlsListener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MtlsListener")
            .field("local_addr", &self.tcp.local_addr().ok())
            .field("acceptor", &self.acceptor)
            .field("handshakes_in_progress", &self.handshakes.len())
            .field("open_connections", &self.open_connections())
            .field("max_connections", &self.max_connections)
            .finish()
    }
}

impl MtlsListener {
    /// Binds a TCP listener that speaks TLS with `tls` (a [`MtlsAcceptor`], or a
    /// [`TlsConfig`](crate::TlsConfig) with the acceptor's default settings), with a listen
    /// backlog of 4096 like [`MtlsServer::bind`](crate::MtlsServer::bind).
    pub async fn bind(addr: impl ToSocketAddrs, tls: impl Into<MtlsAcceptor>) -> io::Result<Self> {
        Ok(Self::from_tcp(bind_tcp(addr).await?, tls))
    }

    /// Speaks TLS with `tls` on an already bound TCP listener.
    pub fn from_tcp(tcp: TcpListener, tls: impl Into<MtlsAcceptor>) -> Self {
        Self {
            tcp,
            acceptor: tls.into(),
            handshakes: JoinSet::new(),
            slots: Arc::new(Semaphore::new(DEFAULT_MAX_CONNECTIONS)),
            max_connections: DEFAULT_MAX_CONNECTIONS,
            slot: None,
            waiting_for_slot: None,
            backoff: None,
            accept_errors: AcceptErrors::default(),
            closing: watch::Sender::new(false),
            closed: Arc::new(AtomicBool::new(false)),
            requested: watch::Sender::new(false),
        }
    }

    /// At most `max` connections are open at once, handshakes included (default 16384).
    /// Set it before the first `accept`.
    #[must_use]
    pub fn max_connections(mut self, max: usize) -> Self {
        let max = max.clamp(1, Semaphore::MAX_PERMITS);
        self.slots = Arc::new(Semaphore::new(max));
        self.max_connections = max;
        self.slot = None;
        self.waiting_for_slot = None;
        self
    }

    /// The address the listener is bound to.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.tcp.local_addr()
    }

    /// The acceptor the handshakes run with (clone it to read its
    /// [`stats`](MtlsAcceptor::stats) while the server runs).
    pub fn acceptor(&self) -> &MtlsAcceptor {
        &self.acceptor
    }

    /// A handle on this listener's server: [`graceful_shutdown`](ServerHandle::graceful_shutdown)
    /// resolves the [`graceful_shutdown`](Self::graceful_shutdown) future given to
    /// `axum::serve` or tonic when that future was made from
    /// [`ServerHandle::shutdown_signal`]; open connections, stats and the address are read
    /// from it at any time.
    ///
    /// ```no_run
    /// # #[cfg(feature = "axum")]
    /// # async fn run(app: axum::Router, tls: tower_mtls::TlsConfig) -> std::io::Result<()> {
    /// use std::time::Duration;
    /// use tower_mtls::serve::MtlsListener;
    ///
    /// let listener = MtlsListener::bind("0.0.0.0:8443", tls).await?;
    /// let handle = listener.handle();
    /// let shutdown = listener.graceful_shutdown(handle.shutdown_signal(), Duration::from_secs(10));
    /// // ... `handle.graceful_shutdown()` from anywhere stops the server.
    /// axum::serve(listener, tower_mtls::axum::make_service(app))
    ///     .with_graceful_shutdown(shutdown)
    ///     .await
    /// # }
    /// ```
    pub fn handle(&self) -> ServerHandle {
        ServerHandle::new(
            self.requested.clone(),
            Open::Slots(self.slots.clone(), self.max_connections),
            Some(self.acceptor.clone()),
            self.tcp.local_addr().ok().map(ListenAddr::Tcp),
        )
    }

    /// Connections open now: handshakes in progress and streams handed out and not dropped.
    pub fn open_connections(&self) -> usize {
        // A slot taken ahead of the next TCP connection is not a connection.
        (self.max_connections - self.slots.available_permits())
            .saturating_sub(usize::from(self.slot.is_some()))
    }

    /// A shutdown signal for the server's own graceful shutdown, with a deadline: resolves
    /// when `signal` does (the server then stops accepting and lets open connections
    /// finish), and `grace` later fails the reads and writes of every stream from this
    /// listener that is still open, so the server's wait for them ends.
    ///
    /// ```no_run
    /// # #[cfg(feature = "axum")]
    /// # async fn run(app: axum::Router, tls: tower_mtls::TlsConfig) -> std::io::Result<()> {
    /// use std::time::Duration;
    /// use tower_mtls::ConnectionInfo;
    /// use tower_mtls::serve::MtlsListener;
    ///
    /// let listener = MtlsListener::bind("0.0.0.0:8443", tls).await?;
    /// let shutdown = listener.graceful_shutdown(
    ///     async { let _ = tokio::signal::ctrl_c().await; },
    ///     Duration::from_secs(10),
    /// );
    /// axum::serve(listener, app.into_make_service_with_connect_info::<ConnectionInfo>())
    ///     .with_graceful_shutdown(shutdown)
    ///     .await
    /// # }
    /// ```
    pub fn graceful_shutdown(
        &self,
        signal: impl Future<Output = ()> + Send + 'static,
        grace: Duration,
    ) -> impl Future<Output = ()> + Send + 'static {
        let closing = self.closing.clone();
        let closed = self.closed.clone();
        let slots = self.slots.clone();
        let max = self.max_connections;
        async move {
            signal.await;
            tracing::info!(
                open_connections = max - slots.available_permits(),
                grace = ?grace,
                "shutting down: no longer accepting"
            );
            tokio::spawn(async move {
                tokio::select! {
                    () = tokio::time::sleep(grace) => {}
                    // Every stream and the listener are gone: nothing left to close.
                    () = closing.closed() => return,
                }
                let open = max - slots.available_permits();
                if open > 0 {
                    tracing::warn!(
                        open_connections = open,
                        "grace period over; closing the remaining connections"
                    );
                }
                closed.store(true, Ordering::Release);
                closing.send_replace(true);
            });
        }
    }

    /// Waits for the next connection whose handshake succeeded. Never fails: failed
    /// handshakes and accept errors are logged, and the listener goes on.
    pub async fn accept(&mut self) -> (MtlsStream<TcpStream>, SocketAddr) {
        std::future::poll_fn(|cx| self.poll_accept(cx)).await
    }

    /// Polls for the next connection whose handshake succeeded (see
    /// [`accept`](Self::accept)); for `Stream` adapters.
    pub fn poll_accept(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<(MtlsStream<TcpStream>, SocketAddr)> {
        loop {
            // Finished handshakes first: they are ready to serve.
            match self.handshakes.poll_join_next(cx) {
                Poll::Ready(Some(Ok(Some(established)))) => return Poll::Ready(established),
                // Failed (the acceptor has logged why).
                Poll::Ready(Some(Ok(None))) => continue,
                Poll::Ready(Some(Err(error))) => {
                    if error.is_panic() {
                        tracing::error!(%error, "a handshake task panicked");
                    }
                    continue;
                }
                Poll::Ready(None) | Poll::Pending => {}
            }
            if let Some(backoff) = &mut self.backoff {
                ready!(backoff.as_mut().poll(cx));
                self.backoff = None;
            }
            if self.slot.is_none() {
                let waiting = self
                    .waiting_for_slot
                    .get_or_insert_with(|| Box::pin(self.slots.clone().acquire_owned()));
                let permit = ready!(waiting.as_mut().poll(cx));
                self.waiting_for_slot = None;
                match permit {
                    Ok(permit) => self.slot = Some(permit),
                    // The semaphore is never closed.
                    Err(_) => return Poll::Pending,
                }
            }
            match ready!(self.tcp.poll_accept(cx)) {
                Ok((stream, remote)) => {
                    let Some(slot) = self.slot.take() else {
                        continue;
                    };
                    self.spawn_handshake(stream, remote, slot);
                }
                Err(error) if is_per_connection_error(&error) => {
                    tracing::debug!(%error, "accept failed for one connection");
                }
                Err(error) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    self.accept_errors.log(&error);
                    self.backoff = Some(Box::pin(tokio::time::sleep(ACCEPT_BACKOFF)));
                }
            }
        }
    }

    fn spawn_handshake(
        &mut self,
        stream: TcpStream,
        remote: SocketAddr,
        slot: OwnedSemaphorePermit,
    ) {
        if let Err(error) = stream.set_nodelay(true) {
            tracing::debug!(%remote, %error, "cannot set TCP_NODELAY");
        }
        let acceptor = self.acceptor.clone();
        let mut closing = self.closing.subscribe();
        let closed = self.closed.clone();
        self.handshakes.spawn(async move {
            let stream = acceptor.accept(stream, Some(remote)).await.ok()?;
            let closing = Box::pin(async move {
                // An error means the listener and its shutdown future are gone: never close.
                if closing.wait_for(|closing| *closing).await.is_err() {
                    std::future::pending::<()>().await;
                }
            });
            Some((
                stream.with_lease(Lease {
                    _slot: slot,
                    closed,
                    closing,
                }),
                remote,
            ))
        });
    }
}
