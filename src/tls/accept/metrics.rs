//! Metrics, through the [`metrics`](https://docs.rs/metrics) facade (feature `metrics`).
//!
//! With the feature on, the crate records the following into whatever `metrics` recorder the
//! process installed (e.g. `metrics-exporter-prometheus`; the `extension` example serves it at
//! `/metrics` on its health port; with that exporter's `install_recorder`, run its upkeep
//! periodically, as the example does, or the duration histogram's samples pile up until a
//! scrape). Without a recorder, recording costs next to nothing. Names
//! and labels follow the Prometheus conventions (base units, `_total` counters, `_seconds`).
//!
//! | name | type | labels | meaning |
//! |---|---|---|---|
//! | `tower_mtls_handshakes_total` | counter | `outcome` (`succeeded`, `failed`), `class` (`none`, or the [`HandshakeFailure`] class, e.g. `no_client_certificate`, `unknown_ca`, `timeout`) | TLS handshakes finished |
//! | `tower_mtls_handshake_duration_seconds` | histogram | `outcome` | time from the first call to `accept` to the handshake's end |
//! | `tower_mtls_handshakes_in_progress` | gauge | | handshakes running now |
//! | `tower_mtls_connections_open` | gauge | | TLS connections open now (handshake done, not closed yet) |
//! | `tower_mtls_sessions_total` | counter | `kind` (`full`, `resumed`) | handshakes that succeeded, by whether they resumed a session |
//! | `tower_mtls_session_tickets_total` | counter | `outcome` (`issued`, `accepted`, `refused`), `reason` (`none`, or the [`TicketRefusal`](crate::tls::trust::scope::TicketRefusal), e.g. `unknown_key`, `other_trust`, `bound_passed`) | shared session tickets ([`TlsConfigBuilder::session_ticket_keys`](crate::TlsConfigBuilder::session_ticket_keys)) sealed, and presented ones opened or refused |
//! | `tower_mtls_reloads_total` | counter | `outcome` (`applied`, `rejected`) | reloads that found changed files (a rejected change is counted once) |
//! | `tower_mtls_reload_rejected` | gauge | | 1 while the files on disk are a rejected change (the previous configuration stays in use), else 0 |
//! | `tower_mtls_trust_files_digest` | gauge | | the first 48 bits of [`TlsConfig::trust_files_digest`](crate::TlsConfig::trust_files_digest) of the trust and CRL files in use, as an integer (exact in a float): one series, whatever the number of rotations |
//! | `tower_mtls_policy_decisions_total` | counter | `decision` (`allow`, `deny`), `reason` (`none`, or the [`RejectReason`](crate::policy::RejectReason) code, e.g. `client_certificate_not_allowed`) | requests a [`ClientCertLayer`](crate::ClientCertLayer) decided |
//! | `tower_mtls_server_certificate_not_after_seconds` | gauge | | the served certificate's notAfter, Unix seconds |
//! | `tower_mtls_trust_earliest_not_after_seconds` | gauge | | the earliest notAfter among trusted CAs and pinned certificates, Unix seconds (absent without client trust) |
//! | `tower_mtls_crl_earliest_next_update_seconds` | gauge | | the earliest nextUpdate among the configured CRLs, Unix seconds (absent without CRLs) |
//!
//! The expiry gauges are set when a configuration is built, when a reload is applied, when a
//! watch starts and once a day by the watch (with the expiry warnings,
//! [`TlsConfig::check_expiry`](crate::TlsConfig::check_expiry)); with several configurations in one process the
//! last one set wins. Call [`describe`] once after installing a recorder to give every metric
//! its help text and unit.
//!
//! For other telemetry, an [`TlsObserver`](crate::tls::TlsObserver) gets every handshake and reload
//! outcome as a callback.

#[cfg(feature = "metrics")]
use std::time::{Duration, SystemTime, UNIX_EPOCH};

#[cfg(feature = "metrics")]
use crate::tls::accept::error::HandshakeFailure;
#[cfg(feature = "metrics")]
use crate::tls::trust::verify::TrustDetails;

/// `tower_mtls_handshakes_total`.
pub const HANDSHAKES_TOTAL: &str = "tower_mtls_handshakes_total";
/// `tower_mtls_handshake_duration_seconds`.
pub const HANDSHAKE_DURATION_SECONDS: &str = "tower_mtls_handshake_duration_seconds";
/// `tower_mtls_handshakes_in_progress`.
pub const HANDSHAKES_IN_PROGRESS: &str = "tower_mtls_handshakes_in_progress";
/// `tower_mtls_connections_open`.
pub const CONNECTIONS_OPEN: &str = "tower_mtls_connections_open";
/// `tower_mtls_sessions_total`.
pub const SESSIONS_TOTAL: &str = "tower_mtls_sessions_total";
/// `tower_mtls_session_tickets_total`.
pub const SESSION_TICKETS_TOTAL: &str = "tower_mtls_session_tickets_total";
/// `tower_mtls_reloads_total`.
pub const RELOADS_TOTAL: &str = "tower_mtls_reloads_total";
/// `tower_mtls_reload_rejected`.
pub const RELOAD_REJECTED: &str = "tower_mtls_reload_rejected";
/// `tower_mtls_trust_files_digest`.
pub const TRUST_FILES_DIGEST: &str = "tower_mtls_trust_files_digest";
/// `tower_mtls_policy_decisions_total`.
pub const POLICY_DECISIONS_TOTAL: &str = "tower_mtls_policy_decisions_total";
/// `tower_mtls_server_certificate_not_after_seconds`.
pub const SERVER_CERTIFICATE_NOT_AFTER_SECONDS: &str =
    "tower_mtls_server_certificate_not_after_seconds";
/// `tower_mtls_trust_earliest_not_after_seconds`.
pub const TRUST_EARLIEST_NOT_AFTER_SECONDS: &str = "tower_mtls_trust_earliest_not_after_seconds";
/// `tower_mtls_crl_earliest_next_update_seconds`.
pub const CRL_EARLIEST_NEXT_UPDATE_SECONDS: &str = "tower_mtls_crl_earliest_next_update_seconds";

/// Gives every metric of the table its help text and unit in the installed recorder.
#[cfg(feature = "metrics")]
#[cfg_attr(docsrs, doc(cfg(feature = "metrics")))]
pub fn describe() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_counter!(
        HANDSHAKES_TOTAL,
        "TLS handshakes finished, by outcome and failure class"
    );
    describe_histogram!(
        HANDSHAKE_DURATION_SECONDS,
        Unit::Seconds,
        "Duration of TLS handshakes"
    );
    describe_gauge!(HANDSHAKES_IN_PROGRESS, "TLS handshakes running now");
    describe_gauge!(CONNECTIONS_OPEN, "TLS connections open now");
    describe_counter!(
        SESSIONS_TOTAL,
        "Successful TLS handshakes, by kind: full or resumed"
    );
    describe_counter!(
        SESSION_TICKETS_TOTAL,
        "Shared session tickets issued, accepted and refused, by reason"
    );
    describe_counter!(
        RELOADS_TOTAL,
        "TLS reloads that found changed files, by outcome"
    );
    describe_gauge!(
        RELOAD_REJECTED,
        "1 while the TLS files on disk are a rejected change and the previous configuration stays in use"
    );
    describe_gauge!(
        TRUST_FILES_DIGEST,
        "First 48 bits of the SHA-256 of the trust and CRL files in use, as an integer"
    );
    describe_counter!(
        POLICY_DECISIONS_TOTAL,
        "Client-certificate policy decisions, by decision and reason"
    );
    describe_gauge!(
        SERVER_CERTIFICATE_NOT_AFTER_SECONDS,
        Unit::Seconds,
        "notAfter of the served certificate, Unix seconds"
    );
    describe_gauge!(
        TRUST_EARLIEST_NOT_AFTER_SECONDS,
        Unit::Seconds,
        "Earliest notAfter among trusted CAs and pinned certificates, Unix seconds"
    );
    describe_gauge!(
        CRL_EARLIEST_NEXT_UPDATE_SECONDS,
        Unit::Seconds,
        "Earliest nextUpdate among the configured CRLs, Unix seconds"
    );
}

#[cfg(feature = "metrics")]
fn unix(time: SystemTime) -> f64 {
    match time.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_secs_f64(),
        Err(e) => -e.duration().as_secs_f64(),
    }
}

/// Records one finished handshake.
#[cfg(feature = "metrics")]
pub(crate) fn handshake(failure: Option<HandshakeFailure>, duration: Duration) {
    let (outcome, class) = match failure {
        None => ("succeeded", "none"),
        Some(kind) => ("failed", kind.as_str()),
    };
    metrics::counter!(HANDSHAKES_TOTAL, "outcome" => outcome, "class" => class).increment(1);
    metrics::histogram!(HANDSHAKE_DURATION_SECONDS, "outcome" => outcome).record(duration);
}

/// Records a successful handshake's kind.
#[cfg(feature = "metrics")]
pub(crate) fn session(resumed: bool) {
    let kind = if resumed { "resumed" } else { "full" };
    metrics::counter!(SESSIONS_TOTAL, "kind" => kind).increment(1);
}

/// Records a ticket sealed and sent.
#[cfg(feature = "metrics")]
pub(crate) fn session_ticket_issued() {
    metrics::counter!(SESSION_TICKETS_TOTAL, "outcome" => "issued", "reason" => "none")
        .increment(1);
}

/// Records a presented ticket: accepted (`None`) or refused, with the refusal's label.
#[cfg(feature = "metrics")]
pub(crate) fn session_ticket(refused: Option<&'static str>) {
    let (outcome, reason) = match refused {
        None => ("accepted", "none"),
        Some(reason) => ("refused", reason),
    };
    metrics::counter!(SESSION_TICKETS_TOTAL, "outcome" => outcome, "reason" => reason).increment(1);
}

/// Moves a connection gauge by one.
#[cfg(feature = "metrics")]
pub(crate) fn gauge(name: &'static str, up: bool) {
    let gauge = metrics::gauge!(name);
    if up {
        gauge.increment(1.0);
    } else {
        gauge.decrement(1.0);
    }
}

/// Records a reload that found changed files.
#[cfg(feature = "metrics")]
pub(crate) fn reload(applied: bool) {
    let outcome = if applied { "applied" } else { "rejected" };
    metrics::counter!(RELOADS_TOTAL, "outcome" => outcome).increment(1);
}

/// Sets `tower_mtls_reload_rejected`.
#[cfg(feature = "metrics")]
pub(crate) fn reload_rejected(rejected: bool) {
    metrics::gauge!(RELOAD_REJECTED).set(if rejected { 1.0 } else { 0.0 });
}

/// Sets `tower_mtls_trust_files_digest` for the files in use. A label per digest would leave
/// a series behind for every rotation (the facade cannot remove one); 48 bits are exact in a
/// gauge's float and plenty to tell two sets of files apart.
#[cfg(feature = "metrics")]
pub(crate) fn trust_files(digest: &crate::identity::Fingerprint) {
    metrics::gauge!(TRUST_FILES_DIGEST).set(digest_prefix(digest) as f64);
}

/// The first 48 bits of `digest`, big-endian: what `tower_mtls_trust_files_digest` holds.
pub fn digest_prefix(digest: &crate::identity::Fingerprint) -> u64 {
    digest.as_bytes()[..6]
        .iter()
        .fold(0u64, |acc, b| (acc << 8) | u64::from(*b))
}

/// Records one policy decision.
#[cfg(feature = "metrics")]
pub(crate) fn policy_decision(denied: Option<&'static str>) {
    let (decision, reason) = match denied {
        None => ("allow", "none"),
        Some(reason) => ("deny", reason),
    };
    metrics::counter!(POLICY_DECISIONS_TOTAL, "decision" => decision, "reason" => reason)
        .increment(1);
}

/// Sets the expiry gauges from the configuration in use.
#[cfg(feature = "metrics")]
pub(crate) fn expiry(server_not_after: SystemTime, trust: &TrustDetails) {
    metrics::gauge!(SERVER_CERTIFICATE_NOT_AFTER_SECONDS).set(unix(server_not_after));
    if let Some(earliest) = trust
        .anchors
        .iter()
        .chain(&trust.pinned)
        .map(|c| c.not_after)
        .min()
    {
        metrics::gauge!(TRUST_EARLIEST_NOT_AFTER_SECONDS).set(unix(earliest));
    }
    if let Some(earliest) = trust.crls.iter().filter_map(|c| c.next_update).min() {
        metrics::gauge!(CRL_EARLIEST_NEXT_UPDATE_SECONDS).set(unix(earliest));
    }
}
