//! [`ServerHandle`]: one handle on a running server — shutdown, open connections, stats and
//! address — for [`MtlsServer`](crate::MtlsServer) and for [`MtlsListener`](super::MtlsListener)
//! under `axum::serve` or tonic alike.

use std::fmt;
use std::sync::Arc;

use tokio::sync::watch;

use super::core::{ListenAddr, Slots};
use crate::tls::AcceptorStats;
use crate::tls::accept::acceptor::MtlsAcceptor;

/// A cloneable handle on a server: ask it to shut down gracefully, and read its open
/// connections, its handshake counters and the address it listens on — from anywhere, while
/// it runs.
///
/// Get one from [`MtlsServer::handle`](crate::MtlsServer::handle) or
/// [`MtlsListener::handle`](super::MtlsListener::handle) before serving:
///
/// ```no_run
/// # async fn run(app: axum::Router) -> Result<(), Box<dyn std::error::Error>> {
/// let server = tower_mtls::MtlsServer::bind("127.0.0.1:0").await?;
/// let handle = server.handle();
/// tokio::spawn(async move {
///     let _ = tokio::signal::ctrl_c().await;
///     handle.graceful_shutdown();
/// });
/// server.serve(app).await?;
/// # Ok(()) }
/// ```
///
/// Under `axum::serve` or tonic, pass [`shutdown_signal`](Self::shutdown_signal) to the
/// server's own graceful shutdown (through
/// [`MtlsListener::graceful_shutdown`](super::MtlsListener::graceful_shutdown), which adds the
/// grace period).
#[derive(Clone)]
pub struct ServerHandle {
    inner: Arc<Inner>,
}

struct Inner {
    shutdown: watch::Sender<bool>,
    /// The connection cap's slots: taken ones are open connections.
    slots: Slots,
    acceptor: Option<MtlsAcceptor>,
    local_addr: Option<ListenAddr>,
}

impl ServerHandle {
    pub(super) fn new(
        shutdown: watch::Sender<bool>,
        slots: Slots,
        acceptor: Option<MtlsAcceptor>,
        local_addr: Option<ListenAddr>,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                shutdown,
                slots,
                acceptor,
                local_addr,
            }),
        }
    }

    /// Stops accepting and lets open connections finish within the grace period; what is
    /// still open then is closed. Idempotent.
    pub fn graceful_shutdown(&self) {
        self.inner.shutdown.send_replace(true);
    }

    /// Whether a graceful shutdown was asked for.
    pub fn is_shutting_down(&self) -> bool {
        *self.inner.shutdown.borrow()
    }

    /// Resolves once [`graceful_shutdown`](Self::graceful_shutdown) is called: the signal to
    /// give a server's own graceful shutdown.
    pub fn shutdown_signal(&self) -> impl Future<Output = ()> + Send + 'static {
        let mut shutdown = self.inner.shutdown.subscribe();
        async move {
            // An error means every handle and the server are gone: nothing will ask any more.
            if shutdown.wait_for(|requested| *requested).await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    }

    /// Connections open now (handshakes included).
    pub fn open_connections(&self) -> usize {
        self.inner.slots.open()
    }

    /// The acceptor's handshake counters; `None` for plain HTTP.
    pub fn stats(&self) -> Option<AcceptorStats> {
        self.inner.acceptor.as_ref().map(MtlsAcceptor::stats)
    }

    /// Where the server listens (`None` if the listener could not say when the handle was
    /// made).
    pub fn local_addr(&self) -> Option<&ListenAddr> {
        self.inner.local_addr.as_ref()
    }
}

impl fmt::Debug for ServerHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerHandle")
            .field("local_addr", &self.inner.local_addr)
            .field("open_connections", &self.open_connections())
            .field("shutting_down", &self.is_shutting_down())
            .finish()
    }
}
