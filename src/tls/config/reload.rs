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
//! [`ReloadOutcome::Rejected`] — only when the same failure is seen on the same file contents
//! twice in a row; a failure that the next check no longer sees was a write in progress.
//!
//! Every rebuild makes a fresh rustls `ServerConfig` and with it a fresh session cache, so no
//! session resumed after a change of trust (CA removed, CRL added) was established before it;
//! shared session tickets bind a digest of the trust they were issued under, so those issued
//! before the change (here or on any replica) are refused too.

use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use tokio::sync::broadcast;

use crate::identity::Fingerprint;
use crate::rate_limit::LogLimiter;
use crate::tls::accept::observe::TlsObserver;
use crate::tls::config::events::{ReloadOutcome, ReloadReport};
use crate::tls::config::material::{Active, Inputs, Spec};

/// The default interval of [`TlsConfig::watch`](crate::TlsConfig::watch).
pub const DEFAULT_WATCH_INTERVAL: Duration = Duration::from_secs(1);

pub(crate) struct ReloadState {
    inner: Mutex<Digests>,
    events: broadcast::Sender<ReloadOutcome>,
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
    /// Changed files seen once by the watch, not applied yet: see [`Settle`].
    unsettled: Option<[Fingerprint; 3]>,
}

/// Whether a change is applied as soon as it is seen, or only once it has settled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Settle {
    /// Apply what the files hold now: the caller knows they are complete (an explicit
    /// [`TlsConfig::reload`](crate::TlsConfig::reload)).
    Now,
    /// Apply a change only when two checks in a row read the same contents (the watch). A file
    /// written in place can pass through a state that is valid but incomplete — a bundle cut
    /// after its first certificate, a CRL file missing one issuer's CRL — and one poll could
    /// apply it: trust lost, or a revocation undone, for one interval. The kubelet's `..data`
    /// swap never shows such a state; in-place writers do. The price is one interval.
    Twice,
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
                unsettled: None,
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
    fn report(&self, event: ReloadOutcome) {
        #[cfg(feature = "metrics")]
        {
            let applied = matches!(event, ReloadOutcome::Applied(_));
            crate::tls::accept::metrics::reload(applied);
            crate::tls::accept::metrics::reload_rejected(!applied);
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
    /// `active_slot`. Blocking file I/O. One reload at a time.
    pub(crate) fn apply(
        &self,
        spec: &Spec,
        active_slot: &RwLock<Arc<Active>>,
        settle: Settle,
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
                digests.unsettled = None;
                Ok(None)
            }
            Ok(inputs)
                if settle == Settle::Twice
                    && digests.unsettled
                        != Some([
                            inputs.identity_digest,
                            inputs.trust_digest,
                            inputs.tickets_digest,
                        ]) =>
            {
                // Seen for the first time: maybe mid-write. Applied at the next check if the
                // files still hold the same.
                digests.unsettled = Some([
                    inputs.identity_digest,
                    inputs.trust_digest,
                    inputs.tickets_digest,
                ]);
                tracing::debug!(
                    "TLS files changed; applying them once the next check reads the same"
                );
                return ReloadOutcome::Unchanged;
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
        match built {
            Ok(None) => {
                digests.pending = None;
                if digests.reported.take().is_some() {
                    tracing::info!("TLS files are back to the configuration in use");
                    #[cfg(feature = "metrics")]
                    crate::tls::accept::metrics::reload_rejected(false);
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
                crate::tls::accept::metrics::trust_files(&active.trust_digest);
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
                digests.unsettled = None;
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
                self.report(ReloadOutcome::Applied(report.clone()));
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
                    self.report(ReloadOutcome::Rejected(error.clone()));
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
    pub(crate) fn subscribe(&self) -> broadcast::Receiver<ReloadOutcome> {
        self.events.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};

    use super::*;
    use crate::TlsConfig;

    fn ca_pem(cn: &str) -> String {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, cn);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let key = KeyPair::generate().expect("key");
        params.self_signed(&key).expect("CA").pem()
    }

    fn write(path: &Path, text: &str) {
        std::fs::write(path, text).expect("write");
    }

    #[test]
    fn the_watch_applies_a_change_once_two_checks_read_the_same_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        let key = KeyPair::generate().expect("key");
        let server = CertificateParams::new(vec!["localhost".to_owned()])
            .expect("params")
            .self_signed(&key)
            .expect("server");
        let (cert, key_path, trust) = (
            dir.path().join("tls.crt"),
            dir.path().join("tls.key"),
            dir.path().join("cas.pem"),
        );
        write(&cert, &server.pem());
        write(&key_path, &key.serialize_pem());
        let (a, b) = (ca_pem("CA A"), ca_pem("CA B"));
        write(&trust, &a);
        let tls = TlsConfig::from_pem_files(&cert, &key_path)
            .client_trust(&trust)
            .build()
            .expect("config");
        let shared = &tls.shared;
        let check = || {
            shared
                .reload
                .apply(&shared.spec, &shared.active, Settle::Twice)
        };
        let anchors = || tls.trust_summary().anchors;

        // An in-place writer's first half (a valid bundle of one CA), then the whole file:
        // neither is applied on first sight, the whole one once it is read twice.
        write(&trust, &b);
        assert!(matches!(check(), ReloadOutcome::Unchanged));
        write(&trust, &format!("{b}{a}"));
        assert!(matches!(check(), ReloadOutcome::Unchanged));
        assert_eq!(anchors(), 1, "nothing applied yet");
        assert!(matches!(check(), ReloadOutcome::Applied(_)));
        assert_eq!(anchors(), 2);
        assert!(matches!(check(), ReloadOutcome::Unchanged));

        // Back to what is in use before a second check: nothing to apply, nothing pending.
        write(&trust, &b);
        assert!(matches!(check(), ReloadOutcome::Unchanged));
        write(&trust, &format!("{b}{a}"));
        assert!(matches!(check(), ReloadOutcome::Unchanged));
        write(&trust, &b);
        assert!(matches!(check(), ReloadOutcome::Unchanged));
        assert_eq!(anchors(), 2);

        // An explicit reload applies what the files hold at once.
        assert!(matches!(tls.blocking_reload(), ReloadOutcome::Applied(_)));
        assert_eq!(anchors(), 1);
    }
}
