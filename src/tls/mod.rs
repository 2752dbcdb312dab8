//! The TLS transport: configuration, loading, verification, revocation, rotation, and the
//! acceptor that runs handshakes.
//!
//! | file | owns |
//! |---|---|
//! | `config.rs` | [`TlsConfig`](crate::TlsConfig) and its builder: what users configure, reloads and the watch |
//! | `material.rs` | files → one built generation (`ServerConfig`, verifier), swapped whole on reload |
//! | `load.rs` | PEM files and mounted secret directories → certificates, keys, CRLs |
//! | `verify/` | the client certificate verifier: building it, one verdict for handshakes and the offline check, what is logged |
//! | `crl.rs` | CRLs bound to issuer name and key, the authoritative one per issuer |
//! | `x509.rs` | DER, signatures, times and RFC 5280 name comparison, where webpki keeps them private |
//! | `session.rs` | resumption bounded by what the full handshake verified |
//! | `tickets.rs` | shared, rotating session ticket keys: stateless tickets bound to trust and verification |
//! | `reload.rs` | change detection and applying a reload |
//! | `events.rs` | the reload outcome and events |
//! | `acceptor.rs` | [`MtlsAcceptor`](crate::MtlsAcceptor): one handshake per connection, with a deadline |
//! | `error.rs` | [`ConfigError`](crate::ConfigError), handshake failures and their classes |
//! | `stats.rs` | the acceptor's counters |
//! | `trust.rs` | [`ClientTrust`]: the client verdict from trust sources alone, no server identity |
//! | `observe.rs` | the telemetry hook ([`TlsObserver`]) and the certificate expiry check |
//! | `metrics.rs` | [`metrics`](mod@metrics): what is recorded through the `metrics` facade (feature `metrics`), in one table |

pub(crate) mod acceptor;
pub(crate) mod config;
pub(crate) mod crl;
pub(crate) mod error;
mod events;
pub(crate) mod load;
mod material;
pub mod metrics;
mod observe;
mod reload;
mod session;
mod stats;
mod tickets;
mod trust;
pub(crate) mod verify;
pub(crate) mod x509;

pub use acceptor::{DEFAULT_HANDSHAKE_TIMEOUT, DEFAULT_MAX_CONCURRENT_HANDSHAKES};
pub use config::ReloadHandle;
pub use error::{ChainTooLarge, HandshakeError, HandshakeFailure};
pub use events::{ReloadEvent, ReloadOutcome, ReloadReport};
pub use load::certificates_from_file;
pub use observe::{
    CertificateRole, DEFAULT_EXPIRY_WARNING, EXPIRY_CHECK_INTERVAL, ExpiryWarning, HandshakeEvent,
    TlsObserver,
};
pub use reload::DEFAULT_WATCH_INTERVAL;
pub use session::{resumption_scope, resumption_scope_sync};
pub use stats::AcceptorStats;
pub use tickets::{
    SESSION_TICKET_LIFETIME, SessionTicketKeys, TicketRefusal, TicketStats, new_session_ticket_key,
};
pub use trust::{ClientTrust, ClientTrustBuilder};
pub use verify::{
    ClientAccepted, ClientRefused, CrlDetails, TrustDetails, TrustSummary, TrustedBy,
    TrustedCertificate,
};

pub use crate::crypto::{default_provider, install_default_provider};
