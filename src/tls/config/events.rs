//! What a reload reports: one outcome type, for the caller of a reload, its subscribers and
//! observers alike. Below both the reload logic and the telemetry hook, so neither imports the other.

use std::sync::Arc;

use crate::identity::CertificateSummary;
use crate::tls::config::error::ConfigError;
use crate::tls::trust::verify::TrustSummary;

/// What a reload changed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ReloadReport {
    /// The server certificate now in use.
    pub server_certificate: CertificateSummary,
    /// The server certificate in use before.
    pub previous_server_certificate: CertificateSummary,
    /// Whether the server certificate or key files changed.
    pub identity_changed: bool,
    /// What the client trust holds now.
    pub trust: TrustSummary,
    /// Whether any trust or CRL file changed. Sessions from before are no longer resumable.
    pub trust_changed: bool,
    /// Whether the session ticket key file changed (a rotation). Tickets sealed with a key
    /// still in the file keep resuming.
    pub session_ticket_keys_changed: bool,
}

/// The outcome of a reload: what [`TlsConfig::reload`](crate::TlsConfig::reload) returns, and
/// what subscribers ([`TlsConfig::subscribe`](crate::TlsConfig::subscribe)) and observers
/// ([`TlsObserver::on_reload`](crate::tls::TlsObserver::on_reload)) receive for each change a
/// reload or the watch found (never `Unchanged`).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum ReloadOutcome {
    /// No file changed.
    Unchanged,
    /// The files changed and the new configuration is in use.
    Applied(Arc<ReloadReport>),
    /// The files changed but do not make a valid configuration; the previous one stays.
    Rejected(Arc<ConfigError>),
}
