//! Live rotation: re-read the sources, rebuild, swap atomically; keep the old config on error.
//!
//! [`TlsConfig::reload`](crate::TlsConfig::reload) reads every file the configuration was built from and compares digests
//! of their contents with what is in use. Nothing changed: nothing happens. Something changed:
//! the whole configuration is rebuilt and, only if every check passes, swapped in — new
//! handshakes use it, open connections keep theirs. A change that does not build (a key that
//! does not match its certificate, a half-written PEM, a deleted file) is rejected: the previous
//! configuration stays in use, the error is logged once, and a later fix is picked up.
//!
//! Comparing contents rather than modification times catches every way files really change:
//! the kubelet's `..data` symlink swap, write-then-rename, in-place writes, delete and
//! re-create. [`TlsConfig::watch`](crate::TlsConfig::watch) runs the check on an interval (default 1 s).
//!
//! Files are often written in steps (a certificate a moment before its key, a PEM file in
//! chunks). A failure is therefore reported — logged at `error` and sent as
//! [`ReloadEvent::Rejected`] — only when the same failure is seen on the same file contents
//! twice in a row; a failure that the next check no longer sees was a write in progress.
//!
//! Written in place, files also pass through states that build: half of a bundle can be whole
//! certificates (or, in a file of several CRLs, whole CRLs), fewer than the writer meant. So
//! [`TlsConfig::watch`](crate::TlsConfig::watch) applies a change only once two checks in a row
//! read the same contents; an explicit [`TlsConfig::reload`](crate::TlsConfig::reload) applies
//! what it reads at once.
//!
//! Every rebuild makes a fresh rustls `ServerConfig` and with it a fresh session cache, so no
//! session resumed after a change of trust (CA removed, CRL added) was established before it;
//! shared session tickets bind a digest of the trust they were issued under, so those issued
//! before the change (here or on any replica) are refused too.

use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use tokio::sync::broadcast;

use super::events::{ReloadEvent, ReloadOutcome, ReloadReport};
use super::material::{Active, Inputs, Spec};
use super::observe::TlsObserver;
use crate::identity::Fingerprint;
use crate::rate_limit::LogLimiter;

/// The default interval of [`TlsConfig::watch`](crate::TlsConfig::watch).
pub const DEFAULT_WATCH_INTERVAL: Duration = Duration::from_secs(1);

pub(crate) struct ReloadState {
    inner: Mutex<Digests>,
    events: broadcast::Sender<ReloadEvent>,
    observers: RwLock<Vec<Arc<dyn TlsObserver>>>,
    /// Checks that could not open the files (the process out of descriptors): a line a minute.
    unreadable: LogLimiter,
}

struct Digests {
    identity: Fingerprint,
    trust: Fingerprint,
    tickets: Fingerprint,
    /// A failure seen once, not yet reported: files may be mid-write.
    pending: Option<Failure>,
    /// The failure last reported, so that it is reported once.
    reported: Option<Failure>,
    /// Changed contents that built, read once: the watch applies them when the next check reads
    /// them again.
    candidate: Option<[Fingerprint; 3]>,
}

/// What identifies a failed reload: the error's text and, when the files could be read, what
/// they held.
#[derive(PartialEq, Eq)]
struct Failure {
    message: String,
    inputs: Option<[Fingerprint; 3]>,
}

impl ReloadState {
    pub(crate) fn new(inputs: &Inputs) -> Self {
        Self {
            inner: Mutex::new(Digests {
                identity: inputs.identity_digest,
                trust: inputs.trust_digest,
                tickets: inputs.tickets_digest,
                pending: None,
                reported: None,
                candidate: None,
            }),
            events: broadcast::channel(64).0,
            observers: RwLock::default(),
            unreadable: LogLimiter::new(1, Duration::from_secs(60)),
        }
    }

    pub(crate) fn add_observer(&self, observer: Arc<dyn TlsObserver>) {
        self.observers
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .push(observer);
    }

    /// Tells the subscribers, the observers and the metrics about a reported outcome.
    fn report(&self, event: ReloadEvent) {
        #[cfg(feature = "metrics")]
        {
            let applied = matches!(event, ReloadEvent::Applied(_));
            super::metrics::reload(applied);
            super::metrics::reload_rejected(!applied);
        }
        for observer in self
            .observers
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
        {
            observer.on_reload(&event);
        }
        let _ = self.events.send(event);
    }
}

impl ReloadState {
    /// Re-reads `spec`'s sources and, when they changed and build, swaps the result into
    /// `active_slot` — with `settle`, only when the previous call read the same contents.
    /// Blocking file I/O. One reload at a time.
    pub(crate) fn apply(
        &self,
        spec: &Spec,
        active_slot: &RwLock<Arc<Active>>,
        settle: bool,
    ) -> ReloadOutcome {
        // One reload at a time; a poisoned lock only means an earlier reload panicked.
        let mut digests = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        let built = match spec.read() {
            // Out of file descriptors (a connection storm), the files could not even be opened:
            // nothing is known about them, so there is nothing to reject or count. The
            // configuration in use stays; the next check reads them again.
            Err(error) if error.is_resource_exhaustion() => {
                if let Some(suppressed) = self.unreadable.admit() {
                    tracing::warn!(
                        %error,
                        suppressed,
                        "cannot read the TLS files now; keeping the configuration in use"
                    );
                }
                return ReloadOutcome::Rejected(Arc::new(error));
            }
            Err(error) => Err((error, None)),
            Ok(inputs)
                if inputs.identity_digest == digests.identity
                    && inputs.trust_digest == digests.trust
                    && inputs.tickets_digest == digests.tickets =>
            {
                Ok(None)
            }
            Ok(inputs) => match spec.build(&inputs) {
                Ok(active) => Ok(Some((inputs, active))),
                Err(error) => Err((
                    error,
                    Some([
                        inputs.identity_digest,
                        inputs.trust_digest,
                        inputs.tickets_digest,
                    ]),
                )),
            },
        };
        if let (true, Ok(Some((inputs, _)))) = (settle, &built) {
            let seen = [
                inputs.identity_digest,
                inputs.trust_digest,
                inputs.tickets_digest,
            ];
            if digests.candidate.replace(seen) != Some(seen) {
                tracing::debug!(
                    "TLS files changed; applying them when the next check reads the same"
                );
                return ReloadOutcome::Unchanged;
            }
        }
        digests.candidate = None;
        match built {
            Ok(None) => {
                digests.pending = None;
                if digests.reported.take().is_some() {
                    tracing::info!("TLS files are back to the configuration in use");
                    #[cfg(feature = "metrics")]
                    super::metrics::reload_rejected(false);
                }
                ReloadOutcome::Unchanged
            }
            Ok(Some((inputs, active))) => {
                let active = Arc::new(active);
                let previous = {
                    let mut slot = active_slot.write().unwrap_or_else(PoisonError::into_inner);
                    std::mem::replace(&mut *slot, active.clone())
                };
                active.log_trust();
                #[cfg(feature = "metrics")]
                super::metrics::trust_files(Some(&previous.trust_digest), &active.trust_digest);
                let report = Arc::new(ReloadReport {
                    server_certificate: active.server_certificate.clone(),
                    previous_server_certificate: previous.server_certificate.clone(),
                    identity_changed: inputs.identity_digest != digests.identity,
                    trust: active.trust.clone(),
                    trust_changed: inputs.trust_digest != digests.trust,
                    session_ticket_keys_changed: inputs.tickets_digest != digests.tickets,
                });
                digests.identity = inputs.identity_digest;
                digests.trust = inputs.trust_digest;
                digests.tickets = inputs.tickets_digest;
                digests.pending = None;
                digests.reported = None;
                tracing::info!(
                    server_certificate.subject = %report.server_certificate.subject,
                    server_certificate.serial = %report.server_certificate.serial,
                    server_certificate.not_after = ?report.server_certificate.not_after,
                    identity_changed = report.identity_changed,
                    trust_changed = report.trust_changed,
                    session_ticket_keys_changed = report.session_ticket_keys_changed,
                    trust.anchors = report.trust.anchors,
                    trust.pinned = report.trust.pinned,
                    trust.crls = report.trust.crls,
                    "TLS configuration reloaded"
                );
                self.report(ReloadEvent::Applied(report.clone()));
                ReloadOutcome::Applied(report)
            }
            Err((error, inputs)) => {
                let failure = Failure {
                    message: error.to_string(),
                    inputs,
                };
                let error = Arc::new(error);
                if digests.reported.as_ref() == Some(&failure) {
                    // Reported already; the files have not changed since.
                } else if digests.pending.as_ref() == Some(&failure) {
                    // The same failure on the same files twice in a row: not a write in
                    // progress, a broken update.
                    tracing::error!(
                        error = %failure.message,
                        "TLS files changed but cannot be used; keeping the previous configuration"
                    );
                    digests.pending = None;
                    digests.reported = Some(failure);
                    self.report(ReloadEvent::Rejected(error.clone()));
                } else {
                    tracing::debug!(
                        error = %failure.message,
                        "TLS files changed but cannot be used yet; waiting for them to settle"
                    );
                    digests.pending = Some(failure);
                }
                ReloadOutcome::Rejected(error)
            }
        }
    }

    /// Subscribes to the events of this configuration's reloads.
    pub(crate) fn subscribe(&self) -> broadcast::Receiver<ReloadEvent> {
        self.events.subscribe()
    }
}
