//! What goes wrong, as types: a configuration that cannot be used ([`ConfigError`]), and a
//! handshake that failed ([`HandshakeError`], classified as a [`HandshakeFailure`]).
//!
//! Every failed handshake gets a [`HandshakeFailure`] class and is counted in the acceptor's
//! [`AcceptorStats`](super::AcceptorStats). Log levels follow what the failure means:
//!
//! * a client certificate that was presented and refused, or a client that sent none although
//!   one is required, is a `warn` — this is how "the agent cannot connect" shows up — with the
//!   remote address, the reason and the refused certificate's subject, issuer and fingerprint;
//!   these warnings are rate-limited (10 per 10 s per acceptor, then a count of what was
//!   suppressed), so a flood cannot fill the log;
//! * everything else — scanners, plain-HTTP probes, clients that hang up or time out — is noise
//!   and goes to `debug`.

use std::cell::RefCell;
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;

use rustls::pki_types::CertificateDer;
use rustls::{CertificateError, Error as TlsError};

use crate::identity::CertificateSummary;
use crate::rate_limit::LogLimiter;

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

/// The client presented more certificates, or more bytes of them, than the configured cap.
#[derive(Debug, thiserror::Error)]
#[error(
    "client certificate chain too large: {certs} certificates, {bytes} bytes (limit {max_certs} certificates, {max_bytes} bytes)"
)]
#[non_exhaustive]
pub struct ChainTooLarge {
    /// Certificates presented, leaf included.
    pub certs: usize,
    /// Bytes of DER presented.
    pub bytes: usize,
    /// The certificate cap.
    pub max_certs: usize,
    /// The byte cap.
    pub max_bytes: usize,
}

/// Why a handshake failed, coarse enough to count and to alert on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum HandshakeFailure {
    /// The client sent a plain-HTTP request to the TLS port (it was answered with a 400).
    PlainHttp = 0,
    /// The client sent something that is not TLS at all.
    NotTls,
    /// No protocol version in common (e.g. a TLS 1.0/1.1-only client).
    ProtocolVersion,
    /// Client authentication is required and the client sent no certificate.
    NoClientCertificate,
    /// The client certificate does not chain to a trusted CA and is not pinned.
    UnknownCa,
    /// The client certificate has expired.
    Expired,
    /// The client certificate is not valid yet.
    NotYetValid,
    /// The client certificate is revoked.
    Revoked,
    /// The CRL of the client certificate's issuer is past its nextUpdate and the configuration
    /// requires fresh CRLs ([`TlsConfigBuilder::require_fresh_crls`](crate::TlsConfigBuilder::require_fresh_crls)).
    StaleCrl,
    /// A CRL signed by the client certificate's issuer is configured but cannot be used
    /// (a delta, indirect or reason-partitioned CRL, an unknown critical extension, …): whether
    /// the certificate is revoked cannot be told, so it is refused until the CRL is fixed.
    RevocationUnknown,
    /// A signature does not verify: on the certificate, or the handshake signature made with
    /// the certificate's key.
    BadSignature,
    /// The certificate may not be used for client authentication (extended key usage), or a
    /// CA certificate was presented as the client's own.
    WrongKeyUsage,
    /// The client's certificate chain exceeds the configured cap.
    ChainTooLarge,
    /// Another problem with the client certificate (malformed, unsupported algorithm, …).
    BadCertificate,
    /// The client aborted the handshake with an alert (typically: it does not trust the
    /// server certificate).
    PeerAlert,
    /// Another TLS protocol violation (e.g. a truncated or malformed ClientHello).
    Protocol,
    /// The client did not finish within the deadline.
    Timeout,
    /// The client closed the connection during the handshake.
    PeerClosed,
    /// Another I/O error.
    Io,
}

pub(crate) const CLASSES: usize = 19;

impl HandshakeFailure {
    /// Every class, for iterating counters. A slice, so that a class added later (the enum is
    /// `#[non_exhaustive]`) breaks no user.
    pub const ALL: &'static [HandshakeFailure] = &[
        Self::PlainHttp,
        Self::NotTls,
        Self::ProtocolVersion,
        Self::NoClientCertificate,
        Self::UnknownCa,
        Self::Expired,
        Self::NotYetValid,
        Self::Revoked,
        Self::StaleCrl,
        Self::RevocationUnknown,
        Self::BadSignature,
        Self::WrongKeyUsage,
        Self::ChainTooLarge,
        Self::BadCertificate,
        Self::PeerAlert,
        Self::Protocol,
        Self::Timeout,
        Self::PeerClosed,
        Self::Io,
    ];

    /// A stable snake_case name, for logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::PlainHttp => "plain_http",
            Self::NotTls => "not_tls",
            Self::ProtocolVersion => "protocol_version",
            Self::NoClientCertificate => "no_client_certificate",
            Self::UnknownCa => "unknown_ca",
            Self::Expired => "expired",
            Self::NotYetValid => "not_yet_valid",
            Self::Revoked => "revoked",
            Self::StaleCrl => "stale_crl",
            Self::RevocationUnknown => "revocation_unknown",
            Self::BadSignature => "bad_signature",
            Self::WrongKeyUsage => "wrong_key_usage",
            Self::ChainTooLarge => "chain_too_large",
            Self::BadCertificate => "bad_certificate",
            Self::PeerAlert => "peer_alert",
            Self::Protocol => "protocol",
            Self::Timeout => "timeout",
            Self::PeerClosed => "peer_closed",
            Self::Io => "io",
        }
    }

    /// Whether a client certificate was presented and refused.
    pub fn is_client_certificate_rejection(self) -> bool {
        matches!(
            self,
            Self::UnknownCa
                | Self::Expired
                | Self::NotYetValid
                | Self::Revoked
                | Self::StaleCrl
                | Self::RevocationUnknown
                | Self::BadSignature
                | Self::WrongKeyUsage
                | Self::ChainTooLarge
                | Self::BadCertificate
        )
    }

    /// Whether the failure is worth an operator's attention (logged at `warn`): a refused
    /// client certificate, or a missing one where one is required.
    pub fn is_actionable(self) -> bool {
        self.is_client_certificate_rejection() || self == Self::NoClientCertificate
    }

    pub(crate) fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for HandshakeFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

tokio::task_local! {
    /// The leaf the verifier refused during this handshake, if any, and why.
    static REFUSED: RefCell<Option<(Vec<u8>, Option<String>)>>;
}

/// Runs a handshake future with a slot in which the verifier notes a refused certificate.
pub(crate) async fn capture_refused<F: std::future::Future>(
    handshake: F,
) -> (F::Output, Option<(CertificateSummary, Option<String>)>) {
    REFUSED
        .scope(RefCell::new(None), async {
            let output = handshake.await;
            let refused = REFUSED
                .try_with(|slot| slot.borrow_mut().take())
                .ok()
                .flatten()
                .map(|(der, detail)| (CertificateSummary::of_presented(&der), detail));
            (output, refused)
        })
        .await
}

/// Called by the verifier when it refuses `end_entity`, with what exactly was wrong (a no-op
/// outside an acceptor).
pub(crate) fn note_refused(end_entity: &CertificateDer<'_>, detail: Option<String>) {
    let _ = REFUSED.try_with(|slot| {
        *slot.borrow_mut() = Some((end_entity.as_ref().to_vec(), detail));
    });
}

/// A failed handshake: its class, the peer's address, the refused certificate and the
/// underlying error.
#[derive(Debug, thiserror::Error)]
#[error("TLS handshake with {} failed ({kind}){}", peer_display(.remote_addr), source_display(.source))]
pub struct HandshakeError {
    kind: HandshakeFailure,
    remote_addr: Option<SocketAddr>,
    presented: Option<CertificateSummary>,
    detail: Option<String>,
    #[source]
    source: Option<io::Error>,
}

fn peer_display(addr: &Option<SocketAddr>) -> String {
    addr.map_or_else(|| "peer".to_owned(), |a| a.to_string())
}

fn source_display(source: &Option<io::Error>) -> String {
    source
        .as_ref()
        .map_or_else(String::new, |e| format!(": {e}"))
}

impl HandshakeError {
    pub(crate) fn new(
        kind: HandshakeFailure,
        remote_addr: Option<SocketAddr>,
        source: Option<io::Error>,
    ) -> Self {
        Self {
            kind,
            remote_addr,
            presented: None,
            detail: None,
            source,
        }
    }

    pub(crate) fn with_presented(
        mut self,
        refused: Option<(CertificateSummary, Option<String>)>,
    ) -> Self {
        if let Some((presented, detail)) = refused {
            self.presented = Some(presented);
            self.detail = detail;
        }
        self
    }

    /// What the verifier said about the refused certificate, when it said more than the class
    /// (for a revoked certificate: which CRL file revoked it).
    pub fn detail(&self) -> Option<&str> {
        self.detail.as_deref()
    }

    /// The class of failure.
    pub fn kind(&self) -> HandshakeFailure {
        self.kind
    }

    /// The peer's address, when known.
    pub fn remote_addr(&self) -> Option<SocketAddr> {
        self.remote_addr
    }

    /// The client certificate that was refused, when one was.
    pub fn presented_certificate(&self) -> Option<&CertificateSummary> {
        self.presented.as_ref()
    }

    /// The rustls error behind the failure, if it was one.
    pub fn tls_error(&self) -> Option<&TlsError> {
        self.source
            .as_ref()
            .and_then(|e| e.get_ref())
            .and_then(|e| e.downcast_ref::<TlsError>())
    }

    pub(crate) fn log(&self, limiter: &LogLimiter) {
        let remote = peer_display(&self.remote_addr);
        let reason = self.kind.as_str();
        if !self.kind.is_actionable() {
            let detail = source_display(&self.source);
            tracing::debug!(%remote, reason, "TLS handshake failed{detail}");
            return;
        }
        let Some(suppressed) = limiter.admit() else {
            return;
        };
        if self.kind == HandshakeFailure::NoClientCertificate {
            tracing::warn!(
                %remote,
                reason,
                suppressed,
                "client sent no certificate but one is required (a JVM client sends one only \
                 if an issuer in its chain is among the CAs this server advertises)"
            );
        } else {
            let detail = source_display(&self.source);
            let (subject, issuer, sha256) = match &self.presented {
                Some(p) => (p.subject.as_str(), p.issuer.as_str(), p.sha256.to_string()),
                None => ("-", "-", "-".to_owned()),
            };
            // What the verifier said, when it says more than the error already does (which
            // CRL file revoked the certificate, say).
            let verdict = self
                .detail
                .as_deref()
                .filter(|d| !detail.contains(*d))
                .unwrap_or("-");
            tracing::warn!(
                %remote,
                reason,
                subject,
                issuer,
                sha256,
                verdict,
                suppressed,
                "client certificate rejected{detail}"
            );
        }
    }
}

pub(crate) fn classify_io(error: &io::Error) -> HandshakeFailure {
    if let Some(tls) = error.get_ref().and_then(|e| e.downcast_ref::<TlsError>()) {
        return classify_tls(tls);
    }
    match error.kind() {
        io::ErrorKind::UnexpectedEof
        | io::ErrorKind::ConnectionReset
        | io::ErrorKind::ConnectionAborted
        | io::ErrorKind::BrokenPipe => HandshakeFailure::PeerClosed,
        io::ErrorKind::TimedOut => HandshakeFailure::Timeout,
        _ => HandshakeFailure::Io,
    }
}

pub(crate) fn classify_tls(error: &TlsError) -> HandshakeFailure {
    use rustls::PeerIncompatible as P;
    match error {
        TlsError::NoCertificatesPresented => HandshakeFailure::NoClientCertificate,
        TlsError::InvalidCertificate(cert) => match cert {
            CertificateError::UnknownIssuer => HandshakeFailure::UnknownCa,
            CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
                HandshakeFailure::Expired
            }
            CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
                HandshakeFailure::NotYetValid
            }
            CertificateError::Revoked => HandshakeFailure::Revoked,
            CertificateError::ExpiredRevocationList
            | CertificateError::ExpiredRevocationListContext { .. } => HandshakeFailure::StaleCrl,
            CertificateError::UnknownRevocationStatus => HandshakeFailure::RevocationUnknown,
            CertificateError::BadSignature => HandshakeFailure::BadSignature,
            CertificateError::InvalidPurpose | CertificateError::InvalidPurposeContext { .. } => {
                HandshakeFailure::WrongKeyUsage
            }
            CertificateError::Other(other) if other.0.downcast_ref::<ChainTooLarge>().is_some() => {
                HandshakeFailure::ChainTooLarge
            }
            CertificateError::Other(other) => match other.0.downcast_ref::<webpki::Error>() {
                // rustls has no variant for these; the verifier keeps webpki's typed error.
                Some(webpki::Error::CaUsedAsEndEntity | webpki::Error::EndEntityUsedAsCa) => {
                    HandshakeFailure::WrongKeyUsage
                }
                _ => HandshakeFailure::BadCertificate,
            },
            _ => HandshakeFailure::BadCertificate,
        },
        TlsError::PeerIncompatible(
            P::SupportedVersionsExtensionRequired
            | P::Tls12NotOffered
            | P::Tls12NotOfferedOrEnabled
            | P::ServerDoesNotSupportTls12Or13,
        ) => HandshakeFailure::ProtocolVersion,
        TlsError::AlertReceived(_) => HandshakeFailure::PeerAlert,
        // A configured CRL that cannot be used for this chain: the certificate is refused.
        TlsError::InvalidCertRevocationList(_) => HandshakeFailure::BadCertificate,
        _ => HandshakeFailure::Protocol,
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

    #[test]
    fn classes_have_distinct_indices_and_names() {
        let mut names: Vec<_> = HandshakeFailure::ALL.iter().map(|k| k.as_str()).collect();
        for (i, kind) in HandshakeFailure::ALL.iter().enumerate() {
            assert_eq!(kind.index(), i);
        }
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), CLASSES);
    }

    #[test]
    fn tls_errors_map_to_classes() {
        let cases = [
            (
                TlsError::NoCertificatesPresented,
                HandshakeFailure::NoClientCertificate,
            ),
            (
                TlsError::InvalidCertificate(CertificateError::UnknownIssuer),
                HandshakeFailure::UnknownCa,
            ),
            (
                TlsError::InvalidCertificate(CertificateError::Revoked),
                HandshakeFailure::Revoked,
            ),
            (
                TlsError::InvalidCertificate(CertificateError::InvalidPurpose),
                HandshakeFailure::WrongKeyUsage,
            ),
            (
                TlsError::PeerIncompatible(
                    rustls::PeerIncompatible::SupportedVersionsExtensionRequired,
                ),
                HandshakeFailure::ProtocolVersion,
            ),
            (
                TlsError::AlertReceived(rustls::AlertDescription::UnknownCA),
                HandshakeFailure::PeerAlert,
            ),
        ];
        for (error, kind) in cases {
            assert_eq!(classify_tls(&error), kind, "{error:?}");
        }
        let eof = io::Error::from(io::ErrorKind::UnexpectedEof);
        assert_eq!(classify_io(&eof), HandshakeFailure::PeerClosed);
    }
}
