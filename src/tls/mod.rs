//! The TLS transport: configuration, loading, verification, revocation, rotation, and the
//! acceptor that runs handshakes.
//!
//! | folder | owns |
//! |---|---|
//! | `config/` | [`TlsConfig`] and its builder, files and secrets → one built generation, the watch and reloads, [`ConfigError`] |
//! | `trust/` | the client certificate verifier, CRLs, DER and name comparison, resumption bounds and shared tickets, [`ClientTrust`] |
//! | `accept/` | [`MtlsAcceptor`]: one handshake per connection with a deadline, failure classes, counters, [`TlsObserver`], [`metrics`](mod@metrics) |
//!
//! In detail:
//!
//! | file | owns |
//! |---|---|
//! | `config/tls_config.rs` | [`TlsConfig`] and its builder: what users configure, reloads and the watch |
//! | `config/material.rs` | files → one built generation (`ServerConfig`, verifier), swapped whole on reload |
//! | `config/load.rs` | PEM files and mounted secret directories → certificates, keys, CRLs |
//! | `trust/verify/` | the client certificate verifier: building it, one verdict for handshakes and the offline check, what is logged |
//! | `trust/crl.rs` | CRLs bound to issuer name and key, the authoritative one per issuer |
//! | `trust/x509.rs` | DER, signatures, times and RFC 5280 name comparison, where webpki keeps them private |
//! | `trust/scope.rs` | one handshake's notes: the refused leaf, the verification bound, a refused ticket |
//! | `trust/session.rs` | resumption bounded by what the full handshake verified |
//! | `trust/tickets.rs` | shared, rotating session ticket keys: stateless tickets bound to trust and verification |
//! | `config/reload.rs` | change detection and applying a reload |
//! | `config/events.rs` | the reload outcome and events |
//! | `accept/acceptor.rs` | [`MtlsAcceptor`]: one handshake per connection, with a deadline |
//! | `config/error.rs` | [`ConfigError`] |
//! | `accept/error.rs` | handshake failures and their classes |
//! | `accept/stats.rs` | the acceptor's counters |
//! | `trust/client.rs` | [`ClientTrust`]: the client verdict from trust sources alone, no server identity |
//! | `accept/observe.rs` | the telemetry hook ([`TlsObserver`]) and the certificate expiry check |
//! | `accept/metrics.rs` | [`metrics`](mod@metrics): what is recorded through the `metrics` facade (feature `metrics`), in one table |

pub(crate) mod accept;
pub(crate) mod config;
pub(crate) mod trust;

pub use accept::acceptor::{
    DEFAULT_HANDSHAKE_TIMEOUT, DEFAULT_MAX_CONCURRENT_HANDSHAKES, MtlsAcceptor, MtlsStream,
};
pub use accept::error::{ChainTooLarge, HandshakeError, HandshakeFailure};
#[doc(inline)]
pub use accept::metrics;
pub use accept::observe::{
    CertificateRole, DEFAULT_EXPIRY_WARNING, EXPIRY_CHECK_INTERVAL, ExpiryWarning, HandshakeEvent,
    TlsObserver,
};
pub use accept::stats::AcceptorStats;
pub use config::error::ConfigError;
pub use config::events::{ReloadOutcome, ReloadReport};
pub use config::load::certificates_from_file;
pub use config::reload::DEFAULT_WATCH_INTERVAL;
pub use config::tls_config::{ReloadHandle, TlsConfig, TlsConfigBuilder};
pub use trust::client::{ClientTrust, ClientTrustBuilder};
pub use trust::scope::{TicketRefusal, handshake_scope, handshake_scope_sync};
pub use trust::tickets::{
    SESSION_TICKET_LIFETIME, SessionTicketKeys, TicketStats, new_session_ticket_key,
};
pub use trust::verify::{
    ClientAccepted, ClientAuth, ClientRefused, CrlDetails, TrustDetails, TrustSummary, TrustedBy,
    TrustedCertificate,
};

#[cfg(any(feature = "aws-lc-rs", feature = "ring"))]
pub use crate::crypto::{default_provider, install_default_provider};
