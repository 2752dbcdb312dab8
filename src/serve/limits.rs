//! The defaults both serving paths share, which accept errors concern one connection only, and
//! how an accept loop backs off (and logs) when the process runs out of file descriptors.

use std::io;
use std::time::Duration;

use crate::rate_limit::LogLimiter;

/// The default grace period of a graceful shutdown.
pub const DEFAULT_GRACE_PERIOD: Duration = Duration::from_secs(10);
/// The default cap on open connections (handshakes included).
pub const DEFAULT_MAX_CONNECTIONS: usize = 16_384;
/// The default time a client has to send a complete HTTP/1 request head.
pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

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
