//! [`MtlsServer`](crate::MtlsServer): listeners, the accept loop, one task per connection.

use std::fmt;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
#[cfg(unix)]
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use http_body::Body;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::{TcpListener, ToSocketAddrs};
use tokio::sync::watch;
use tower_service::Service;

use super::connection::{BoxError, ConnCtx};
use super::core::ListenAddr;
#[cfg(unix)]
use super::core::OwnedUnixSocket;
use super::core::{AcceptCore, AnyListener, Listener};
use super::handle::ServerHandle;
use super::limits::{
    DEFAULT_GRACE_PERIOD, DEFAULT_HEADER_READ_TIMEOUT, DEFAULT_MAX_CONNECTIONS, bind_tcp,
};
use super::shutdown::{PhaseSender, PhaseSignal, drain};
use crate::tls::accept::acceptor::MtlsAcceptor;

/// A future that resolves when the server should shut down.
type ShutdownSignal = Pin<Box<dyn Future<Output = ()> + Send>>;

/// Serves a tower service over TLS (when given a [`MtlsAcceptor`]) or plain HTTP.
///
/// ```no_run
/// use tower_mtls::{MtlsServer, TlsConfig};
///
/// # async fn run(app: axum::Router) -> Result<(), Box<dyn std::error::Error>> {
/// let tls = TlsConfig::from_pem_files("tls.crt", "tls.key")
///     .client_trust("ca.crt")
///     .build()?;
/// MtlsServer::bind("0.0.0.0:8443")
///     .await?
///     .tls(tls)
///     .with_graceful_shutdown(async { let _ = tokio::signal::ctrl_c().await; })
///     .serve(app)
///     .await?;
/// # Ok(()) }
/// ```
#[must_use = "a server does nothing until `serve` is awaited"]
pub struct MtlsServer<L = AnyListener> {
    core: AcceptCore<L>,
    tls: Option<MtlsAcceptor>,
    http: auto::Builder<TokioExecutor>,
    shutdown: Option<ShutdownSignal>,
    grace: Duration,
    /// Set by [`ServerHandle::graceful_shutdown`].
    requested: watch::Sender<bool>,
}

impl<L: Listener> fmt::Debug for MtlsServer<L> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MtlsServer")
            .field("local_addr", &self.local_addr().ok())
            .field("tls", &self.tls.is_some())
            .field("grace", &self.grace)
            .field("max_connections", &self.core.slots().max)
            .finish()
    }
}

impl MtlsServer {
    /// Binds a TCP listener, with a listen backlog of 4096 (capped by the kernel's
    /// `net.core.somaxconn`): a burst of clients waits in it, not in SYN retransmits.
    pub async fn bind(addr: impl ToSocketAddrs) -> io::Result<Self> {
        Ok(Self::from_tcp(bind_tcp(addr).await?))
    }

    /// Binds `port` on all interfaces, like Go's `":port"`: IPv6 and IPv4 (dual-stack `[::]`),
    /// or IPv4 `0.0.0.0` alone where the host has no IPv6.
    pub async fn bind_all_interfaces(port: u16) -> io::Result<Self> {
        let dual = SocketAddr::from((std::net::Ipv6Addr::UNSPECIFIED, port));
        match bind_tcp(dual).await {
            Ok(listener) => Ok(Self::from_tcp(listener)),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::AddrInUse | io::ErrorKind::PermissionDenied
                ) =>
            {
                Err(e)
            }
            Err(e) => {
                tracing::debug!(error = %e, "no IPv6 on this host; listening on IPv4 only");
                Self::bind(SocketAddr::from((std::net::Ipv4Addr::UNSPECIFIED, port))).await
            }
        }
    }

    /// Serves on an already bound TCP listener.
    pub fn from_tcp(listener: TcpListener) -> Self {
        Self::from_listener(AnyListener::tcp(listener))
    }

    /// Binds a Unix socket at `path` as [`bind_unix_listener`] does. The file is removed when
    /// the server stops.
    #[cfg(unix)]
    pub async fn bind_unix(path: impl AsRef<Path>) -> io::Result<Self> {
        let path = path.as_ref().to_path_buf();
        let listener = bind_unix_listener(&path).await?;
        Ok(Self::from_listener(AnyListener::owned_unix(
            OwnedUnixSocket { listener, path },
        )))
    }

    /// Serves on an already bound Unix listener.
    #[cfg(unix)]
    pub fn from_unix(listener: tokio::net::UnixListener) -> Self {
        Self::from_listener(AnyListener::unix(listener))
    }
}

impl<L: Listener> MtlsServer<L> {
    /// Serves on any [`Listener`]: your own transport, a listener handed over by systemd, ….
    pub fn from_listener(listener: L) -> Self {
        let mut http = auto::Builder::new(TokioExecutor::new());
        http.http1()
            .timer(TokioTimer::new())
            .header_read_timeout(DEFAULT_HEADER_READ_TIMEOUT);
        http.http2()
            .timer(TokioTimer::new())
            .max_concurrent_streams(250);
        Self {
            core: AcceptCore::new(listener, DEFAULT_MAX_CONNECTIONS),
            tls: None,
            http,
            shutdown: None,
            grace: DEFAULT_GRACE_PERIOD,
            requested: watch::Sender::new(false),
        }
    }

    /// A handle on this server, for its graceful shutdown, open connections, stats and
    /// address while it runs; take it before [`serve`](Self::serve).
    pub fn handle(&self) -> ServerHandle {
        ServerHandle::new(
            self.requested.clone(),
            self.core.slots().clone(),
            self.tls.clone(),
            self.local_addr().ok(),
        )
    }

    /// Where the server listens.
    pub fn local_addr(&self) -> io::Result<ListenAddr> {
        self.core.listener().local_addr()
    }

    /// Serves TLS only, with this acceptor (or a [`TlsConfig`](crate::TlsConfig), which
    /// becomes one with default settings).
    pub fn tls(mut self, acceptor: impl Into<MtlsAcceptor>) -> Self {
        self.tls = Some(acceptor.into());
        self
    }

    /// The acceptor, when the server speaks TLS. Clone it before [`serve`](Self::serve) to read
    /// its [`stats`](MtlsAcceptor::stats) while the server runs.
    pub fn acceptor(&self) -> Option<&MtlsAcceptor> {
        self.tls.as_ref()
    }

    /// A snapshot of the acceptor's counters; `None` for plain HTTP.
    pub fn stats(&self) -> Option<crate::tls::AcceptorStats> {
        self.tls.as_ref().map(MtlsAcceptor::stats)
    }

    /// Whether the server speaks TLS.
    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// Stops accepting when `signal` resolves, lets in-flight requests finish within the grace
    /// period (see [`grace_period`](Self::grace_period)), then closes what is left.
    pub fn with_graceful_shutdown(
        mut self,
        signal: impl Future<Output = ()> + Send + 'static,
    ) -> Self {
        self.shutdown = Some(Box::pin(signal));
        self
    }

    /// How long a graceful shutdown waits for open connections. Default 10 s.
    pub fn grace_period(mut self, grace: Duration) -> Self {
        self.grace = grace;
        self
    }

    /// At most `max` connections are open at once (handshakes included; default 16384); the
    /// accept loop waits for one to close before accepting another, so further clients wait
    /// in the kernel's listen backlog. Connections already open are served as usual.
    pub fn max_connections(mut self, max: usize) -> Self {
        self.core.set_max(max);
        self
    }

    /// How long an HTTP/1 client has to send a request head (default 30 s; `None`: forever).
    /// hyper runs the same timer while a keep-alive connection waits for its next request, so
    /// this is also how long an idle HTTP/1 connection is kept.
    pub fn header_read_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.http.http1().header_read_timeout(timeout);
        self
    }

    /// HTTP/1: the largest buffer for a request head, in bytes (hyper's default: about
    /// 400 KiB). A smaller one caps what a client that sends huge headers costs.
    pub fn http1_max_buf_size(mut self, max: usize) -> Self {
        self.http.http1().max_buf_size(max);
        self
    }

    /// HTTP/2: at most this many concurrent streams per connection (default 250).
    pub fn http2_max_concurrent_streams(mut self, max: u32) -> Self {
        self.http.http2().max_concurrent_streams(max);
        self
    }

    /// HTTP/2: send a keep-alive PING every `interval` and close the connection if it is not
    /// answered within `timeout`. Off by default.
    pub fn http2_keep_alive(mut self, interval: Duration, timeout: Duration) -> Self {
        self.http
            .http2()
            .keep_alive_interval(interval)
            .keep_alive_timeout(timeout);
        self
    }

    /// Serves `service` until the shutdown signal (forever without one).
    ///
    /// Accept errors (a client that hung up, too many open files) never end the loop. Out of
    /// file descriptors, it waits 100 ms before each new attempt and logs at most once per 10 s,
    /// with the count of the failures it did not log.
    pub async fn serve<S, B>(self, service: S) -> io::Result<()>
    where
        S: Service<http::Request<Incoming>, Response = http::Response<B>> + Clone + Send + 'static,
        S::Future: Send + 'static,
        S::Error: Into<BoxError>,
        B: Body + Send + 'static,
        B::Data: Send,
        B::Error: Into<BoxError>,
    {
        let MtlsServer {
            mut core,
            tls,
            http,
            shutdown,
            grace,
            requested,
        } = self;
        let http = Arc::new(http);
        let user_signal = shutdown.unwrap_or_else(|| Box::pin(std::future::pending()));
        let mut requested = requested.subscribe();
        let mut signal = Box::pin(async move {
            tokio::select! {
                () = user_signal => {}
                // An error: every handle is gone and the flag can no longer be set.
                Ok(_) = requested.wait_for(|requested| *requested) => {}
            }
        });
        let phase = PhaseSender(PhaseSignal::new());

        loop {
            let (io, remote, slot) = tokio::select! {
                biased;
                () = &mut signal => break,
                accepted = core.accept() => accepted,
            };
            let ctx = ConnCtx {
                tls: tls.clone(),
                http: http.clone(),
                phase: phase.0.clone(),
                _slot: slot,
            };
            tokio::spawn(ctx.run(io, remote, service.clone()));
        }

        let slots = core.slots().clone();
        // Stop listening first (a Unix socket's file goes with it).
        drop(core);
        drain(&phase.0, &slots, grace).await;
        Ok(())
    }
}

/// Binds a Unix socket at `path` the way Steadybit's extension-kit does: its directory is
/// created if needed and a stale socket file (left by a process that was killed) is replaced.
/// Any other file at `path` is an error, never removed. For servers with an accept loop of
/// their own (tonic's `serve_with_incoming`); [`MtlsServer::bind_unix`] uses it.
#[cfg(unix)]
pub async fn bind_unix_listener(path: &Path) -> io::Result<tokio::net::UnixListener> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        tokio::fs::create_dir_all(dir).await?;
    }
    match tokio::fs::symlink_metadata(path).await {
        Ok(meta) => {
            use std::os::unix::fs::FileTypeExt;
            if meta.file_type().is_socket() {
                tokio::fs::remove_file(path).await?;
            } else {
                return Err(io::Error::new(
                    io::ErrorKind::AlreadyExists,
                    format!("{} exists and is not a socket", path.display()),
                ));
            }
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    tokio::net::UnixListener::bind(path)
}
