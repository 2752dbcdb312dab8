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
use std::task::{Context, Poll, ready};
use std::time::Duration;

use tokio::net::{TcpListener, ToSocketAddrs};
use tokio::sync::{OwnedSemaphorePermit, watch};
use tokio::task::JoinSet;

use super::core::ListenAddr;
use super::core::{AcceptCore, Listener};
use super::handle::ServerHandle;
use super::limits::{DEFAULT_MAX_CONNECTIONS, bind_tcp};
use super::shutdown::{Phase, PhaseSignal, drain};
use crate::tls::accept::acceptor::{Lease, MtlsAcceptor, MtlsStream};

/// A stream whose handshake succeeded, and the peer's address.
type Established<IO> = (MtlsStream<IO>, Option<SocketAddr>);

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
pub struct MtlsListener<L: Listener = TcpListener> {
    core: AcceptCore<L>,
    acceptor: MtlsAcceptor,
    handshakes: JoinSet<Option<Established<L::Io>>>,
    /// Ends the streams handed out once a shutdown's grace period is over.
    phase: PhaseSignal,
    /// Set by [`ServerHandle::graceful_shutdown`].
    requested: watch::Sender<bool>,
}

impl<L: Listener> fmt::Debug for MtlsListener<L> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MtlsListener")
            .field(
                "local_addr",
                &Listener::local_addr(self.core.listener()).ok(),
            )
            .field("acceptor", &self.acceptor)
            .field("handshakes_in_progress", &self.handshakes.len())
            .field("open_connections", &self.open_connections())
            .field("max_connections", &self.core.slots().max)
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
        Self::from_listener(tcp, tls)
    }

    /// The address the listener is bound to.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.core.listener().local_addr()
    }
}

impl<L: Listener> MtlsListener<L> {
    /// Speaks TLS with `tls` on any [`Listener`]: a Unix socket, your own transport.
    pub fn from_listener(listener: L, tls: impl Into<MtlsAcceptor>) -> Self {
        Self {
            core: AcceptCore::new(listener, DEFAULT_MAX_CONNECTIONS),
            acceptor: tls.into(),
            handshakes: JoinSet::new(),
            phase: PhaseSignal::new(),
            requested: watch::Sender::new(false),
        }
    }

    /// At most `max` connections are open at once, handshakes included (default 16384).
    /// Set it before the first `accept`.
    #[must_use]
    pub fn max_connections(mut self, max: usize) -> Self {
        self.core.set_max(max);
        self
    }

    /// Where the listener listens.
    pub fn listen_addr(&self) -> io::Result<ListenAddr> {
        Listener::local_addr(self.core.listener())
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
            self.core.slots().clone(),
            Some(self.acceptor.clone()),
            Listener::local_addr(self.core.listener()).ok(),
        )
    }

    /// Connections open now: handshakes in progress and streams handed out and not dropped.
    pub fn open_connections(&self) -> usize {
        self.core.slots().open()
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
        let phase = self.phase.clone();
        let slots = self.core.slots().clone();
        async move {
            signal.await;
            // The server drains its own connections; after `grace` the streams still open
            // fail their reads and writes, so its wait for them ends.
            tokio::spawn(async move { drain(&phase, &slots, grace).await });
        }
    }

    /// Waits for the next connection whose handshake succeeded, with the peer's address when
    /// it has one. Never fails: failed handshakes and accept errors are logged, and the
    /// listener goes on.
    pub async fn accept(&mut self) -> (MtlsStream<L::Io>, Option<SocketAddr>) {
        std::future::poll_fn(|cx| self.poll_accept(cx)).await
    }

    /// Polls for the next connection whose handshake succeeded (see
    /// [`accept`](Self::accept)); for `Stream` adapters.
    pub fn poll_accept(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<(MtlsStream<L::Io>, Option<SocketAddr>)> {
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
            let (io, remote, slot) = ready!(self.core.poll_accept(cx));
            self.spawn_handshake(io, remote, slot);
        }
    }

    fn spawn_handshake(
        &mut self,
        io: L::Io,
        remote: Option<SocketAddr>,
        slot: OwnedSemaphorePermit,
    ) {
        let acceptor = self.acceptor.clone();
        let phase = self.phase.clone();
        self.handshakes.spawn(async move {
            let stream = acceptor.accept(io, remote).await.ok()?;
            let mut listener = phase.listen(Phase::Running);
            let closing = Box::pin(async move {
                while listener.signal.get() != Phase::Closing {
                    std::future::poll_fn(|cx| listener.poll_change(cx)).await;
                }
            });
            Some((
                stream.with_lease(Lease {
                    _slot: slot,
                    closed: phase.flag(),
                    closing,
                }),
                remote,
            ))
        });
    }
}
