//! [`MtlsServer`](crate::MtlsServer): serve any tower service over TLS or plain TCP, or a Unix socket; HTTP/1.1 and
//! HTTP/2; graceful shutdown.
//!
//! The accept loop only accepts: every connection gets its own task, which runs the TLS
//! handshake (bounded by the acceptor's deadline) and then serves HTTP with the service
//! wrapped in [`AddConnectionInfo`](crate::peer::AddConnectionInfo), so each request carries the connection's
//! [`TlsInfo`](crate::TlsInfo) and [`PeerCertificates`](crate::PeerCertificates). A client
//! that stalls its handshake holds up nobody but itself.
//!
//! Once a [`MtlsAcceptor`](crate::MtlsAcceptor) is set, the server speaks only TLS — on TCP and on Unix sockets
//! alike. Nothing falls back to plain HTTP.
//!
//! For servers that run their own accept loop (`axum::serve`, tonic's `serve_with_incoming`),
//! [`MtlsListener`] hands out established mutual-TLS streams instead, with the handshakes run
//! off the accept path.

mod connection;
mod handle;
mod limits;
pub(crate) mod listener;
pub(crate) mod server;
mod service;

pub use handle::{ListenAddr, ServerHandle};
pub use limits::{DEFAULT_GRACE_PERIOD, DEFAULT_HEADER_READ_TIMEOUT, DEFAULT_MAX_CONNECTIONS};
pub use listener::MtlsListener;
#[cfg(unix)]
pub use server::bind_unix_listener;
