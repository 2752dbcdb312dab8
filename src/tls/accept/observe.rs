//! The telemetry hook ([`TlsObserver`]) and the certificate expiry check.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::identity::CertificateSummary;
use crate::tls::accept::error::HandshakeFailure;
use crate::tls::config::events::ReloadOutcome;
use crate::tls::trust::verify::TrustDetails;
use crate::tls::trust::x509::utc;

/// The default window of the expiry warnings: 30 days.
pub const DEFAULT_EXPIRY_WARNING: Duration = Duration::from_secs(30 * 24 * 60 * 60);

/// How often a watched configuration repeats the expiry check: once a day.
pub const EXPIRY_CHECK_INTERVAL: Duration = Duration::from_secs(24 * 60 * 60);

/// One finished handshake, as a [`TlsObserver`] sees it.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct HandshakeEvent {
    /// `None` when the handshake succeeded, else its failure class.
    pub failure: Option<HandshakeFailure>,
    /// From the first call to [`accept`](crate::MtlsAcceptor::accept) to the handshake's end
    /// (waiting for a handshake slot included).
    pub duration: Duration,
    /// The client's address, when the transport has one.
    pub remote_addr: Option<SocketAddr>,
    /// The subject (RFC 4514) of the client certificate presented — accepted or refused —
    /// when there was one and it parses.
    pub client_subject: Option<String>,
    /// Whether the handshake succeeded by resuming a session (a full handshake otherwise).
    pub resumed: bool,
    /// The client offered a shared session ticket
    /// ([`TlsConfigBuilder::session_ticket_keys`](crate::TlsConfigBuilder::session_ticket_keys))
    /// that was refused, and why; the handshake then was a full one.
    pub ticket_refused: Option<crate::tls::trust::scope::TicketRefusal>,
}

impl HandshakeEvent {
    /// Whether the handshake succeeded.
    pub fn succeeded(&self) -> bool {
        self.failure.is_none()
    }

    /// `none` for a success, else the failure class ([`HandshakeFailure::as_str`]).
    pub fn class(&self) -> &'static str {
        self.failure.map_or("none", HandshakeFailure::as_str)
    }
}

/// A callback for other telemetry: told about every handshake outcome of the
/// [`MtlsAcceptor`](crate::MtlsAcceptor) it is given to (see
/// [`MtlsAcceptor::observer`](crate::MtlsAcceptor::observer)) and every reload outcome of its
/// [`TlsConfig`](crate::TlsConfig). Both methods default to doing nothing.
///
/// Called inline on the connection's task (handshakes) or the reload's thread: keep it quick
/// and never block.
///
/// ```
/// use tower_mtls::tls::{HandshakeEvent, TlsObserver};
///
/// struct Log;
/// impl TlsObserver for Log {
///     fn on_handshake(&self, event: &HandshakeEvent) {
///         tracing::debug!(class = event.class(), duration = ?event.duration, "handshake");
///     }
/// }
/// ```
pub trait TlsObserver: Send + Sync + 'static {
    /// A handshake finished (succeeded or failed).
    fn on_handshake(&self, event: &HandshakeEvent) {
        let _ = event;
    }

    /// A reload found changed files and applied or rejected them.
    fn on_reload(&self, event: &ReloadOutcome) {
        let _ = event;
    }
}

/// What a certificate in use is, in an [`ExpiryWarning`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum CertificateRole {
    /// The server's own certificate.
    Server,
    /// A CA trusted for client certificates.
    TrustedCa,
    /// A client certificate trusted as itself.
    Pinned,
}

impl CertificateRole {
    /// `server`, `trusted_ca` or `pinned`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Server => "server",
            Self::TrustedCa => "trusted_ca",
            Self::Pinned => "pinned",
        }
    }
}

/// A certificate in use that expires within the warning window, or has expired: from
/// [`TlsConfig::check_expiry`](crate::TlsConfig::check_expiry).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ExpiryWarning {
    /// What the certificate is used for.
    pub role: CertificateRole,
    /// Its subject, RFC 4514.
    pub subject: String,
    /// The end of its validity period.
    pub not_after: SystemTime,
    /// The file it was read from, when known.
    pub path: Option<PathBuf>,
    /// Whether it has expired already (logged at `error`; otherwise at `warn`).
    pub expired: bool,
}

fn unix_secs(time: SystemTime) -> i64 {
    match time.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_secs()).unwrap_or(i64::MAX),
    }
}

/// The certificates in use that expire before `now + window`, each logged once here.
pub(crate) fn check_expiry(
    server: &CertificateSummary,
    trust: &TrustDetails,
    window: Duration,
    now: SystemTime,
) -> Vec<ExpiryWarning> {
    let horizon = now + window;
    let candidates = std::iter::once((
        CertificateRole::Server,
        server.subject.clone(),
        server.not_after,
        None,
    ))
    .chain(trust.anchors.iter().map(|c| {
        (
            CertificateRole::TrustedCa,
            c.subject.clone(),
            c.not_after,
            Some(c.path.clone()),
        )
    }))
    .chain(trust.pinned.iter().map(|c| {
        (
            CertificateRole::Pinned,
            c.subject.clone(),
            c.not_after,
            Some(c.path.clone()),
        )
    }));
    let mut warnings = Vec::new();
    for (role, subject, not_after, path) in candidates {
        if not_after > horizon {
            continue;
        }
        let warning = ExpiryWarning {
            role,
            subject,
            not_after,
            path,
            expired: not_after <= now,
        };
        warning.log(now);
        warnings.push(warning);
    }
    warnings
}

impl ExpiryWarning {
    fn log(&self, now: SystemTime) {
        let not_after = utc(unix_secs(self.not_after));
        let path = self
            .path
            .as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_default();
        if self.expired {
            let days_ago = now
                .duration_since(self.not_after)
                .unwrap_or_default()
                .as_secs()
                / 86_400;
            tracing::error!(
                certificate.role = self.role.as_str(),
                certificate.subject = %self.subject,
                certificate.not_after = %not_after,
                certificate.path = %path,
                days_ago,
                "certificate has expired"
            );
        } else {
            let days_left = self
                .not_after
                .duration_since(now)
                .unwrap_or_default()
                .as_secs()
                / 86_400;
            tracing::warn!(
                certificate.role = self.role.as_str(),
                certificate.subject = %self.subject,
                certificate.not_after = %not_after,
                certificate.path = %path,
                days_left,
                "certificate expires soon"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::Fingerprint;
    use crate::tls::trust::verify::TrustedCertificate;

    #[test]
    fn expiry_window_and_expired() {
        let now = UNIX_EPOCH + Duration::from_secs(2_000_000_000);
        let day = Duration::from_secs(86_400);
        let server = CertificateSummary {
            subject: "CN=localhost".into(),
            issuer: "CN=ca".into(),
            serial: "01".into(),
            not_after: now + day * 10,
            sha256: Fingerprint::of(b"x"),
        };
        let mut trust = TrustDetails::default();
        trust.anchors.push(TrustedCertificate {
            subject: "CN=ca".into(),
            not_after: now + day * 400,
            path: "ca.crt".into(),
        });
        trust.pinned.push(TrustedCertificate {
            subject: "CN=agent".into(),
            not_after: now - day,
            path: "agent.crt".into(),
        });
        let warnings = check_expiry(&server, &trust, DEFAULT_EXPIRY_WARNING, now);
        assert_eq!(warnings.len(), 2, "{warnings:?}");
        assert_eq!(warnings[0].role, CertificateRole::Server);
        assert!(!warnings[0].expired);
        assert_eq!(warnings[1].role, CertificateRole::Pinned);
        assert!(warnings[1].expired);
        assert!(check_expiry(&server, &trust, day, now).len() == 1);
    }
}
