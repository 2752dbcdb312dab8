//! Why handshakes fail: classification, counters, and log lines an operator can act on.
//!
//! Every failed handshake gets a [`HandshakeFailure`] class and is counted in the acceptor's
//! [`AcceptorStats`]. Log levels follow what the failure means:
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
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rustls::pki_types::CertificateDer;
use rustls::{CertificateError, Error as TlsError};

use crate::identity::{ClientIdentity, Fingerprint};
use crate::verify::ChainTooLarge;

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

const CLASSES: usize = 18;

impl HandshakeFailure {
    /// Every class, for iterating counters.
    pub const ALL: [HandshakeFailure; CLASSES] = [
        Self::PlainHttp,
        Self::NotTls,
        Self::ProtocolVersion,
        Self::NoClientCertificate,
        Self::UnknownCa,
        Self::Expired,
        Self::NotYetValid,
        Self::Revoked,
        Self::StaleCrl,
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

    fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for HandshakeFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The certificate a refused client presented, for the log and for [`HandshakeError`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PresentedCertificate {
    /// Subject, RFC 4514.
    pub subject: String,
    /// Issuer, RFC 4514.
    pub issuer: String,
    /// SHA-256 of the certificate.
    pub sha256: Fingerprint,
}

impl PresentedCertificate {
    fn of(der: &[u8]) -> Self {
        match ClientIdentity::parse(der) {
            Ok(id) => Self {
                subject: id.subject().to_string(),
                issuer: id.issuer().to_string(),
                sha256: id.sha256(),
            },
            Err(_) => Self {
                subject: "<unparsable>".into(),
                issuer: "<unparsable>".into(),
                sha256: Fingerprint::of(der),
            },
        }
    }
}

tokio::task_local! {
    /// The leaf the verifier refused during this handshake, if any, and why.
    static REFUSED: RefCell<Option<(Vec<u8>, Option<String>)>>;
}

/// Runs a handshake future with a slot in which the verifier notes a refused certificate.
pub(crate) async fn capture_refused<F: std::future::Future>(
    handshake: F,
) -> (F::Output, Option<(PresentedCertificate, Option<String>)>) {
    REFUSED
        .scope(RefCell::new(None), async {
            let output = handshake.await;
            let refused = REFUSED
                .try_with(|slot| slot.borrow_mut().take())
                .ok()
                .flatten()
                .map(|(der, detail)| (PresentedCertificate::of(&der), detail));
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
    presented: Option<PresentedCertificate>,
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
        refused: Option<(PresentedCertificate, Option<String>)>,
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
    pub fn presented_certificate(&self) -> Option<&PresentedCertificate> {
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
            let verdict = self.detail.as_deref().unwrap_or("-");
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

/// Admits a burst of log lines per window and counts the rest.
#[derive(Debug)]
pub(crate) struct LogLimiter {
    window: Duration,
    burst: u32,
    state: Mutex<LimiterState>,
}

#[derive(Debug)]
struct LimiterState {
    window_start: Option<Instant>,
    admitted: u32,
    suppressed: u64,
}

impl LogLimiter {
    pub(crate) fn new(burst: u32, window: Duration) -> Self {
        Self {
            window,
            burst,
            state: Mutex::new(LimiterState {
                window_start: None,
                admitted: 0,
                suppressed: 0,
            }),
        }
    }

    /// `Some(n)` when a line may be logged, `n` being how many were suppressed since the last
    /// admitted one; `None` when this one is suppressed.
    pub(crate) fn admit(&self) -> Option<u64> {
        let mut state = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let now = Instant::now();
        let fresh = state
            .window_start
            .is_none_or(|start| now.duration_since(start) >= self.window);
        if fresh {
            state.window_start = Some(now);
            state.admitted = 0;
        }
        if state.admitted < self.burst {
            state.admitted += 1;
            Some(std::mem::take(&mut state.suppressed))
        } else {
            state.suppressed += 1;
            None
        }
    }
}

impl Default for LogLimiter {
    fn default() -> Self {
        Self::new(10, Duration::from_secs(10))
    }
}

/// Live counters of one acceptor (shared by its clones).
#[derive(Debug, Default)]
pub(crate) struct Counters {
    succeeded: AtomicU64,
    failed: [AtomicU64; CLASSES],
    active: AtomicU64,
    in_progress: AtomicU64,
}

impl Counters {
    pub(crate) fn succeeded(&self) {
        self.succeeded.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn failed(&self, kind: HandshakeFailure) {
        self.failed[kind.index()].fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn snapshot(&self) -> AcceptorStats {
        let mut failures = [0; CLASSES];
        for (slot, counter) in failures.iter_mut().zip(&self.failed) {
            *slot = counter.load(Ordering::Relaxed);
        }
        AcceptorStats {
            handshakes_succeeded: self.succeeded.load(Ordering::Relaxed),
            failures,
            active_connections: self.active.load(Ordering::Relaxed),
            handshakes_in_progress: self.in_progress.load(Ordering::Relaxed),
        }
    }
}

/// Counts one thing for as long as it lives.
#[derive(Debug)]
pub(crate) struct Gauge {
    counters: std::sync::Arc<Counters>,
    which: GaugeKind,
}

#[derive(Debug, Clone, Copy)]
pub(crate) enum GaugeKind {
    Active,
    InProgress,
}

impl Gauge {
    pub(crate) fn new(counters: &std::sync::Arc<Counters>, which: GaugeKind) -> Self {
        Self::counter(counters, which).fetch_add(1, Ordering::Relaxed);
        Self {
            counters: counters.clone(),
            which,
        }
    }

    fn counter(counters: &Counters, which: GaugeKind) -> &AtomicU64 {
        match which {
            GaugeKind::Active => &counters.active,
            GaugeKind::InProgress => &counters.in_progress,
        }
    }
}

impl Drop for Gauge {
    fn drop(&mut self) {
        Self::counter(&self.counters, self.which).fetch_sub(1, Ordering::Relaxed);
    }
}

/// A snapshot of an acceptor's counters, from [`TlsAcceptor::stats`](crate::TlsAcceptor::stats).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AcceptorStats {
    /// Handshakes completed.
    pub handshakes_succeeded: u64,
    failures: [u64; CLASSES],
    /// TLS connections open now (handshake done, stream not dropped yet).
    pub active_connections: u64,
    /// Handshakes running now.
    pub handshakes_in_progress: u64,
}

impl AcceptorStats {
    /// Handshakes that failed, all classes together.
    pub fn handshakes_failed(&self) -> u64 {
        self.failures.iter().sum()
    }

    /// Handshakes that failed with `kind`.
    pub fn failures(&self, kind: HandshakeFailure) -> u64 {
        self.failures[kind.index()]
    }

    /// Every class with its count, zeros included.
    pub fn failures_by_class(&self) -> impl Iterator<Item = (HandshakeFailure, u64)> + '_ {
        HandshakeFailure::ALL
            .iter()
            .map(|kind| (*kind, self.failures[kind.index()]))
    }
}

impl fmt::Display for AcceptorStats {
    /// One line: `handshakes ok=12 failed=3 (unknown_ca=2 timeout=1) active=4 in_progress=0`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "handshakes ok={} failed={}",
            self.handshakes_succeeded,
            self.handshakes_failed()
        )?;
        let mut classes = self.failures_by_class().filter(|(_, n)| *n > 0).peekable();
        if classes.peek().is_some() {
            f.write_str(" (")?;
            let mut first = true;
            for (kind, n) in classes {
                if !first {
                    f.write_str(" ")?;
                }
                first = false;
                write!(f, "{kind}={n}")?;
            }
            f.write_str(")")?;
        }
        write!(
            f,
            " active={} in_progress={}",
            self.active_connections, self.handshakes_in_progress
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_limiter_admits_a_burst_then_counts() {
        let limiter = LogLimiter::new(3, Duration::from_secs(3600));
        assert_eq!(limiter.admit(), Some(0));
        assert_eq!(limiter.admit(), Some(0));
        assert_eq!(limiter.admit(), Some(0));
        for _ in 0..5 {
            assert_eq!(limiter.admit(), None);
        }
        // A zero-length window opens a new one each time and reports what was suppressed.
        let limiter = LogLimiter {
            window: Duration::ZERO,
            ..limiter
        };
        assert_eq!(limiter.admit(), Some(5));
        assert_eq!(limiter.admit(), Some(0));
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
    fn stats_display_lists_only_what_happened() {
        let counters = std::sync::Arc::new(Counters::default());
        counters.succeeded();
        counters.failed(HandshakeFailure::UnknownCa);
        counters.failed(HandshakeFailure::UnknownCa);
        counters.failed(HandshakeFailure::Timeout);
        let active = Gauge::new(&counters, GaugeKind::Active);
        let stats = counters.snapshot();
        assert_eq!(stats.handshakes_failed(), 3);
        assert_eq!(stats.failures(HandshakeFailure::UnknownCa), 2);
        assert_eq!(
            stats.to_string(),
            "handshakes ok=1 failed=3 (unknown_ca=2 timeout=1) active=1 in_progress=0"
        );
        drop(active);
        assert_eq!(counters.snapshot().active_connections, 0);
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
