//! A configuration that cannot be used: [`ConfigError`] names the culprit and the reason.

use std::io;
use std::path::PathBuf;

/// A TLS configuration that cannot be used. Returned at startup (and by a rejected reload);
/// the message names the culprit and the reason.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// An environment variable is missing, malformed or inconsistent with another one.
    #[error("{variable}: {reason}")]
    Env {
        /// The variable at fault.
        variable: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// The builder was given only half of the server identity, or none of it.
    #[error("{0}")]
    Incomplete(&'static str),
    /// A file or directory does not exist.
    #[error("{}: no such file or directory", path.display())]
    NotFound {
        /// The missing path.
        path: PathBuf,
    },
    /// A file or directory exists but could not be read.
    #[error("{}: cannot read: {source}", path.display())]
    Io {
        /// The unreadable path.
        path: PathBuf,
        /// The operating system's reason.
        #[source]
        source: io::Error,
    },
    /// A file holds no PEM block at all.
    #[error("{}: no PEM block found (expected {expected})", path.display())]
    NoPemBlock {
        /// The file.
        path: PathBuf,
        /// What the file should have held.
        expected: &'static str,
    },
    /// A file holds PEM blocks, but none of the kind needed.
    #[error("{}: holds no {expected} (it holds: {found})", path.display())]
    WrongPemBlock {
        /// The file.
        path: PathBuf,
        /// What the file should have held.
        expected: &'static str,
        /// The labels of the blocks it does hold.
        found: String,
    },
    /// A PEM block is damaged (bad base64, missing end line).
    #[error("{}: malformed PEM: {reason}", path.display())]
    InvalidPem {
        /// The file.
        path: PathBuf,
        /// The decoder's complaint.
        reason: String,
    },
    /// A certificate does not parse.
    #[error("{}: certificate #{index} is not valid X.509: {reason}", path.display())]
    InvalidCertificate {
        /// The file.
        path: PathBuf,
        /// Position of the certificate in the file, counted from 1.
        index: usize,
        /// The parser's complaint.
        reason: String,
    },
    /// The private key is not one the crypto provider can use.
    #[error("{}: unusable private key: {reason}", path.display())]
    UnsupportedKey {
        /// The key file.
        path: PathBuf,
        /// The provider's complaint.
        reason: String,
    },
    /// The private key does not belong to the certificate.
    #[error("{}: private key does not match the certificate in {}", key.display(), cert.display())]
    KeyMismatch {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
    },
    /// A trust source (file or directory) yielded no certificate that can authenticate a
    /// client.
    #[error("{}: {reason}", path.display())]
    EmptyTrustSource {
        /// The file or directory.
        path: PathBuf,
        /// Why nothing was usable: no certificate at all, or what each skipped one was.
        reason: String,
    },
    /// A trust certificate cannot serve as a trust anchor or pinned certificate.
    #[error("{}: certificate #{index} cannot be trusted for client authentication: {reason}", path.display())]
    UnusableTrust {
        /// The file.
        path: PathBuf,
        /// Position of the certificate in the source, counted from 1.
        index: usize,
        /// Why.
        reason: String,
    },
    /// A certificate revocation list does not parse.
    #[error("{}: invalid certificate revocation list: {reason}", path.display())]
    InvalidCrl {
        /// The file.
        path: PathBuf,
        /// The parser's complaint.
        reason: String,
    },
    /// Client authentication was requested without any trust source.
    #[error(
        "client authentication is {mode} but no client trust source (CA file or directory) is configured"
    )]
    NoClientTrust {
        /// The configured mode.
        mode: &'static str,
    },
    /// A line of a session ticket key file is not a key. The line is never shown: it may be
    /// one.
    #[error(
        "{}: line {line}: {reason} (expected one key per line, each the base64 of 32 random bytes: `openssl rand -base64 32`)",
        path.display()
    )]
    InvalidSessionTicketKey {
        /// The key file.
        path: PathBuf,
        /// The line at fault, counted from 1.
        line: usize,
        /// What is wrong with it.
        reason: String,
    },
    /// A session ticket key file holds no key.
    #[error(
        "{}: no session ticket key (expected one key per line, each the base64 of 32 random bytes: `openssl rand -base64 32`)",
        path.display()
    )]
    NoSessionTicketKey {
        /// The key file.
        path: PathBuf,
    },
    /// rustls refused the assembled configuration.
    #[error("TLS configuration rejected: {0}")]
    Tls(#[from] rustls::Error),
}

impl ConfigError {
    /// Whether this is the process's failure rather than the files': out of file descriptors
    /// (`EMFILE`, `ENFILE`) or memory. Such an error says nothing about what the files hold.
    pub(crate) fn is_resource_exhaustion(&self) -> bool {
        // EMFILE and ENFILE are 24 and 23 on Linux, the BSDs and macOS alike.
        const ENFILE: i32 = 23;
        const EMFILE: i32 = 24;
        match self {
            Self::Io { source, .. } => {
                matches!(source.raw_os_error(), Some(ENFILE | EMFILE))
                    || source.kind() == io::ErrorKind::OutOfMemory
            }
            _ => false,
        }
    }

    /// The I/O error for `path`, with a missing file reported as such.
    pub(crate) fn io(path: impl Into<PathBuf>, source: io::Error) -> Self {
        let path = path.into();
        if source.kind() == io::ErrorKind::NotFound {
            Self::NotFound { path }
        } else {
            Self::Io { path, source }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn out_of_descriptors_is_the_process_not_the_files() {
        let io = |source| ConfigError::Io {
            path: "tls.crt".into(),
            source,
        };
        assert!(io(io::Error::from_raw_os_error(24)).is_resource_exhaustion());
        assert!(io(io::Error::from_raw_os_error(23)).is_resource_exhaustion());
        // Permission denied and a missing file are the files' own failures.
        assert!(!io(io::Error::from_raw_os_error(13)).is_resource_exhaustion());
        let missing = ConfigError::NotFound {
            path: "tls.crt".into(),
        };
        assert!(!missing.is_resource_exhaustion());
    }
}
