//! One connection's life: its task (handshake, then HTTP), and the tracking a graceful
//! shutdown waits on.

use std::error::Error as StdError;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use http_body::Body;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{Notify, watch};
use tower_service::Service;
use tracing::Instrument;

use crate::connection::AddConnectionInfo;
use crate::tls::acceptor::MtlsAcceptor;

pub(super) type BoxError = Box<dyn StdError + Send + Sync>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Phase {
    Running,
    Draining,
    Closing,
}

/// Counts open connections and wakes the shutdown when the last one closes.
#[derive(Default)]
pub(super) struct Tracker {
    open: AtomicUsize,
    idle: Notify,
}

impl Tracker {
    pub(super) fn enter(self: &Arc<Self>) -> TrackerGuard {
        self.open.fetch_add(1, Ordering::AcqRel);
        TrackerGuard(self.clone())
    }

    pub(super) fn count(&self) -> usize {
        self.open.load(Ordering::Acquire)
    }

    pub(super) async fn idle(&self) {
        loop {
            let notified = self.idle.notified();
            if self.count() == 0 {
                return;
            }
            notified.await;
        }
    }
}

pub(super) struct TrackerGuard(Arc<Tracker>);

impl Drop for TrackerGuard {
    fn drop(&mut self) {
        if self.0.open.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}

/// What one connection's task needs.
pub(super) struct ConnCtx {
    pub(super) tls: Option<MtlsAcceptor>,
    pub(super) http: Arc<auto::Builder<TokioExecutor>>,
    pub(super) phase: watch::Receiver<Phase>,
    pub(super) _guard: TrackerGuard,
    pub(super) _slot: Option<tokio::sync::OwnedSemaphorePermit>,
}

impl ConnCtx {
    pub(super) async fn run<IO, S, B>(mut self, io: IO, remote: Option<SocketAddr>, service: S)
    where
        IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
        S: Service<http::Request<Incoming>, Response = http::Response<B>> + Clone + Send + 'static,
        S::Future: Send + 'static,
        S::Error: Into<BoxError>,
        B: Body + Send + 'static,
        B::Data: Send,
        B::Error: Into<BoxError>,
    {
        // The handshake and the HTTP connection live in boxes: the task keeps two pointers, not
        // room for both state machines (and the moved-from stream) for the connection's life.
        let http = self.http.clone();
        match self.tls.take() {
            Some(acceptor) => {
                let stream = tokio::select! {
                    result = Box::pin(acceptor.accept(io, remote)) => match result {
                        Ok(stream) => stream,
                        // The acceptor has logged the failure.
                        Err(_) => return,
                    },
                    _ = self.phase.wait_for(|p| *p != Phase::Running) => return,
                };
                let span = stream.info().span().clone();
                let service = AddConnectionInfo::new(service, stream.info().clone());
                let conn = Box::pin(http.serve_connection_with_upgrades(
                    TokioIo::new(stream),
                    TowerToHyperService::new(service),
                ));
                self.serve_http(conn, remote).instrument(span).await;
            }
            None => {
                let conn = Box::pin(http.serve_connection_with_upgrades(
                    TokioIo::new(io),
                    TowerToHyperService::new(service),
                ));
                self.serve_http(conn, remote).await;
            }
        }
    }

    /// Drives one HTTP connection to its end; shuts it down gracefully when the server drains.
    ///
    /// Takes hyper-util's upgradeable connection itself (for TLS and plain streams alike):
    /// hyper-util's `GracefulConnection` trait covers only the non-upgradeable one, and HTTP/1
    /// upgrades (WebSockets) must keep working.
    async fn serve_http<I, S, B>(
        mut self,
        mut conn: Pin<Box<auto::UpgradeableConnection<'_, I, S, TokioExecutor>>>,
        remote: Option<SocketAddr>,
    ) where
        S: hyper::service::Service<http::Request<Incoming>, Response = http::Response<B>>,
        S::Future: 'static,
        S::Error: Into<BoxError>,
        B: Body + 'static,
        B::Error: Into<BoxError>,
        I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
        TokioExecutor: auto::HttpServerConnExec<S::Future, B>,
    {
        if *self.phase.borrow() != Phase::Running {
            conn.as_mut().graceful_shutdown();
        }
        loop {
            tokio::select! {
                result = conn.as_mut() => {
                    if let Err(e) = result {
                        tracing::debug!(remote = ?remote, error = %e, "connection ended with an error");
                    }
                    return;
                }
                changed = self.phase.changed() => {
                    let phase = *self.phase.borrow_and_update();
                    match (changed, phase) {
                        (Err(_), _) | (_, Phase::Closing) => return,
                        (_, Phase::Draining) => conn.as_mut().graceful_shutdown(),
                        (_, Phase::Running) => {}
                    }
                }
            }
        }
    }
}
