//! Serving: [`MtlsServer`], which serves any tower service over TLS or plain
//! HTTP, and [`MtlsListener`], which hands established mutual-TLS streams to servers that run
//! their own accept loop (`axum::serve`, tonic's `serve_with_incoming`).
//!
//! Both stand on one core: a [`Listener`] (TCP, a Unix socket, or your own), one connection
//! cap (a connection holds a slot from accept to close, handshake included), one back-off when
//! the process runs out of file descriptors, and one shutdown mechanism — a [`ServerHandle`]
//! (or a signal future) asks, open connections drain within the grace period, and what is
//! left is closed. Handshakes always run off the accept path, in the connection's own task
//! (the server) or a task per handshake (the listener): a client that stalls its handshake
//! holds up nobody but itself.
//!
//! The server wraps each connection's service in
//! [`AddConnectionInfo`](crate::peer::AddConnectionInfo), so each request carries the
//! connection's [`ConnectionInfo`](crate::ConnectionInfo). Once a
//! [`MtlsAcceptor`](crate::MtlsAcceptor) is set, the server speaks only TLS — on TCP and on Unix
//! sockets alike; nothing falls back to plain HTTP.
//!
//! | file | owns |
//! |---|---|
//! | `core.rs` | [`Listener`], the connection cap, the accept back-off |
//! | `shutdown.rs` | the shutdown phase every connection sees, and the drain |
//! | `handle.rs` | [`ServerHandle`] |
//! | `server.rs` | [`MtlsServer`]'s accept loop |
//! | `connection.rs` | one connection's task: handshake, then HTTP |
//! | `service.rs` | the per-request service: the connection's info, its span |
//! | `listener.rs` | [`MtlsListener`] |
//! | `limits.rs` | defaults, binding TCP, which accept errors concern one connection |

mod connection;
mod core;
mod handle;
mod limits;
pub(crate) mod listener;
pub(crate) mod server;
mod service;
mod shutdown;

pub use core::{AnyListener, AnyStream, ListenAddr, Listener};
pub use handle::ServerHandle;
pub use limits::{DEFAULT_GRACE_PERIOD, DEFAULT_HEADER_READ_TIMEOUT, DEFAULT_MAX_CONNECTIONS};
pub use listener::MtlsListener;
pub use server::MtlsServer;
#[cfg(unix)]
pub use server::bind_unix_listener;
