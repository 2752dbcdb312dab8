//! The defaults both serving paths share, and which accept errors concern one connection only.

use std::io;
use std::time::Duration;

/// The default grace period of a graceful shutdown.
pub const DEFAULT_GRACE_PERIOD: Duration = Duration::from_secs(10);
/// The default cap on open connections (handshakes included).
pub const DEFAULT_MAX_CONNECTIONS: usize = 16_384;
/// The default time a client has to send a complete HTTP/1 request head.
pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// Whether an accept error concerns one connection only (the loop goes straight on), rather
/// than the process (out of file descriptors: the loop backs off).
pub(super) fn is_per_connection_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionRefused
            | io::ErrorKind::Interrupted
            | io::ErrorKind::WouldBlock
    )
}
