//! What goes wrong in a handshake, as types: a handshake that failed ([`HandshakeError`], classified as a [`HandshakeFailure`]).
//!
//! Every failed handshake gets a [`HandshakeFailure`] class and is counted in the acceptor's
//! [`AcceptorStats`](crate::tls::AcceptorStats). Log levels follow what the failure means:
//!
//! * a client certificate that was presented and refused, or a client that sent none although
//!   one is required, is a `warn` — this is how "the agent cannot connect" shows up — with the
//!   remote address, the reason and the refused certificate's subject, issuer and fingerprint;
//!   these warnings are rate-limited (10 per 10 s per acceptor, then a count of what was
//!   suppressed), so a flood cannot fill the log;
//! * everything else — scanners, plain-HTTP probes, clients that hang up or time out — is noise
//!   and goes to `debug`.

use std::fmt;
use std::io;
use std::net::SocketAddr;

use rustls::{CertificateError, Error as TlsError};

use crate::identity::CertificateSummary;
use crate::rate_limit::LogLimiter;

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
