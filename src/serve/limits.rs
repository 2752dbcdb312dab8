//! The defaults both serving paths share, which accept errors concern one connection only, and
//! how an accept loop backs off (and logs) when the process runs out of file descriptors.

use std::io;
use std::time::Duration;

use tokio::net::{TcpListener, TcpSocket, ToSocketAddrs};

use crate::rate_limit::LogLimiter;

/// The default grace period of a graceful shutdown.
pub const DEFAULT_GRACE_PERIOD: Duration = Duration::from_secs(10);
/// The default cap on open connections (handshakes included).
pub const DEFAULT_MAX_CONNECTIONS: usize = 16_384;
/// The default time a client has to send a complete HTTP/1 request head.
pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// The listen backlog of the TCP listeners this crate binds: connections the kernel completes
/// while the accept loop is busy or out of file descriptors. Linux caps it at
/// `net.core.somaxconn` (4096 by default), as Go's listeners use it. The 128 of std and mio
/// drop the SYNs of a larger burst — every agent reconnecting after a restart, say — and those
/// clients wait for SYN retransmits: 1 s, 3 s, 7 s, ….
pub(super) const LISTEN_BACKLOG: u32 = 4096;

/// Binds a TCP listener on the first address `addr` resolves to that binds, with
/// [`LISTEN_BACKLOG`] and, on Unix, `SO_REUSEADDR` as tokio's `TcpListener::bind` sets it (a
/// restarted server rebinds its port while the connections of the one before are in
/// TIME_WAIT).
pub(super) async fn bind_tcp(addr: impl ToSocketAddrs) -> io::Result<TcpListener> {
    let listen = |addr: std::net::SocketAddr| -> io::Result<TcpListener> {
        let socket = if addr.is_ipv4() {
            TcpSocket::new_v4()?
        } else {
            TcpSocket::new_v6()?
        };
        // Not on Windows, where it would let another process take over the port (mio's rule).
        #[cfg(unix)]
        socket.set_reuseaddr(true)?;
        socket.bind(addr)?;
        socket.listen(LISTEN_BACKLOG)
    };
    let mut last = None;
    for addr in tokio::net::lookup_host(addr).await? {
        match listen(addr) {
            Ok(listener) => return Ok(listener),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            "could not resolve to any address",
        )
    }))
}

/// How long an accept loop waits after an error that concerns the process (out of file
/// descriptors) before it accepts again.
pub(super) const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// At most one accept-error line per this interval.
const ACCEPT_ERROR_LOG_INTERVAL: Duration = Duration::from_secs(10);

/// The log of an accept loop's process-wide errors. Out of file descriptors, every accept fails
/// until connections close, and the loop retries after each [`ACCEPT_BACKOFF`]: ten failures a
/// second that say the same thing. One line per interval, with how many were left out.
#[derive(Debug)]
pub(super) struct AcceptErrors(LogLimiter);

impl Default for AcceptErrors {
    fn default() -> Self {
        Self(LogLimiter::new(1, ACCEPT_ERROR_LOG_INTERVAL))
    }
}

impl AcceptErrors {
    /// Logs `error` unless a line went out within the interval; whether it did.
    pub(super) fn log(&self, error: &io::Error) -> bool {
        let Some(suppressed) = self.0.admit() else {
            return false;
        };
        tracing::error!(
            %error,
            suppressed,
            backoff = ?ACCEPT_BACKOFF,
            "accept failed; backing off before each new attempt (logged at most once per {:?})",
            ACCEPT_ERROR_LOG_INTERVAL
        );
        true
    }
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn out_of_descriptors_is_logged_once_per_interval_not_per_attempt() {
        let errors = AcceptErrors::default();
        // EMFILE, as Linux reports it.
        let emfile = io::Error::from_raw_os_error(24);
        assert!(!is_per_connection_error(&emfile));
        assert!(errors.log(&emfile), "the first failure is logged");
        // Thirty back-offs later, still within the interval: none of them.
        assert!((0..30).all(|_| !errors.log(&emfile)));
    }
}
