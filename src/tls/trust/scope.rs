//! One handshake's notes: what the verifier, the session store and the ticketer learn while a
//! handshake runs, in one task-local slot the acceptor opens around it.
//!
//! rustls calls the verifier and the session store synchronously from inside the handshake, with
//! no way to hand back more than a verdict. What the acceptor needs afterwards — the leaf the
//! verifier refused and why (for the log line), the moment until which the client verification
//! holds (for resumption, see [`session`](crate::tls::trust::session)) and why a presented
//! ticket was refused (for the observers) — is noted here. Outside a scope every note is a
//! no-op, and a configuration with client authentication then stores no session.

use std::cell::RefCell;
use std::fmt;
use std::future::Future;

use rustls::pki_types::CertificateDer;

tokio::task_local! {
    static NOTES: RefCell<Notes>;
}

/// What one handshake noted.
#[derive(Debug, Default)]
pub(crate) struct Notes {
    /// The moment (Unix seconds) until which this handshake's client verification holds;
    /// `None` while no client certificate has been verified nor a session resumed.
    pub(crate) verified_until: Option<u64>,
    /// The leaf the verifier refused, if any (DER), and what exactly was wrong.
    pub(crate) refused: Option<(Vec<u8>, Option<String>)>,
    /// Why the ticket the client offered was refused, if it was.
    pub(crate) ticket_refused: Option<TicketRefusal>,
}

/// Runs one connection's TLS handshake in its own scope, so that its session can be resumed
/// safely.
///
/// [`MtlsAcceptor`](crate::MtlsAcceptor) does this itself. Only code that drives a rustls
/// `ServerConnection` built from [`TlsConfig::server_config`](crate::TlsConfig::server_config)
/// on its own (its own tokio-rustls accept, an in-memory benchmark) needs it: outside a scope,
/// a configuration with client authentication stores no session, so clients always get a full,
/// fully verified handshake. Wrap exactly one connection's handshake in each scope.
pub async fn handshake_scope<F: Future>(handshake: F) -> F::Output {
    NOTES.scope(RefCell::default(), handshake).await
}

/// [`handshake_scope`] for a handshake driven synchronously (`ServerConnection` fed by hand).
pub fn handshake_scope_sync<R>(handshake: impl FnOnce() -> R) -> R {
    NOTES.sync_scope(RefCell::default(), handshake)
}

/// Runs `handshake` in a fresh scope and returns its output with what it noted.
pub(crate) async fn with_notes<F: Future>(handshake: F) -> (F::Output, Notes) {
    NOTES
        .scope(RefCell::default(), async {
            let output = handshake.await;
            let notes = NOTES.try_with(|slot| slot.take()).unwrap_or_default();
            (output, notes)
        })
        .await
}

/// Called by the verifier when it accepts a client certificate whose verification holds until
/// `until` (Unix seconds, inclusive), and by the store when it resumes a session bounded so.
/// The slot keeps the earlier bound.
pub(crate) fn note_verified(until: u64) {
    let _ = NOTES.try_with(|slot| {
        let mut notes = slot.borrow_mut();
        notes.verified_until = Some(notes.verified_until.map_or(until, |held| held.min(until)));
    });
}

/// This handshake's verification bound, for the ticketer and the store: `None` outside a
/// handshake's scope, `Some(None)` while no client certificate has been verified nor a
/// bounded session resumed.
pub(crate) fn verified_until() -> Option<Option<u64>> {
    NOTES.try_with(|slot| slot.borrow().verified_until).ok()
}

/// Called by the verifier when it refuses `end_entity`, with what exactly was wrong.
pub(crate) fn note_refused(end_entity: &CertificateDer<'_>, detail: Option<String>) {
    let _ = NOTES.try_with(|slot| {
        slot.borrow_mut().refused = Some((end_entity.as_ref().to_vec(), detail));
    });
}

/// Called by the ticketer when it refuses a presented ticket.
pub(crate) fn note_ticket_refused(reason: TicketRefusal) {
    let _ = NOTES.try_with(|slot| slot.borrow_mut().ticket_refused = Some(reason));
}

/// Why a presented ticket was not resumed; the client got a full handshake instead.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TicketRefusal {
    /// Sealed with a key no longer (or never) in the key file: rotated out, or another
    /// deployment's.
    UnknownKey = 0,
    /// Issued under other trust: another trust or CRL file, client-auth mode or limit —
    /// on this replica before a reload, or on a replica configured differently.
    OtherTrust,
    /// The client verification it descends from has run out (the client certificate's
    /// notAfter, or a required-fresh CRL's nextUpdate).
    BoundPassed,
    /// Not a ticket this crate sealed, or damaged: too short, or it does not authenticate.
    Invalid,
}

pub(crate) const REFUSALS: usize = 4;

impl TicketRefusal {
    /// Every reason, for iterating counters.
    pub const ALL: [TicketRefusal; REFUSALS] = [
        Self::UnknownKey,
        Self::OtherTrust,
        Self::BoundPassed,
        Self::Invalid,
    ];

    /// A stable snake_case name, for logs and metrics: `unknown_key`, `other_trust`,
    /// `bound_passed` or `invalid`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::UnknownKey => "unknown_key",
            Self::OtherTrust => "other_trust",
            Self::BoundPassed => "bound_passed",
            Self::Invalid => "invalid",
        }
    }
}

impl fmt::Display for TicketRefusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
