//! Live rotation: re-read the sources, rebuild, swap atomically; keep the old config on error.
//!
//! [`TlsConfig::reload`] reads every file the configuration was built from and compares digests
//! of their contents with what is in use. Nothing changed: nothing happens. Something changed:
//! the whole configuration is rebuilt and, only if every check passes, swapped in — new
//! handshakes use it, open connections keep theirs. A change that does not build (a key that
//! does not match its certificate, a half-written PEM, a deleted file) is rejected: the previous
//! configuration stays in use, the error is logged once, and a later fix is picked up.
//!
//! Comparing contents rather than modification times catches every way files really change:
//! the kubelet's `..data` symlink swap, write-then-rename, in-place writes, delete and
//! re-create. [`TlsConfig::watch`] runs the check on an interval (default 1 s).
//!
//! Files are often written in steps (a certificate a moment before its key, a PEM file in
//! chunks). A failure is therefore reported — logged at `error` and sent as
//! [`ReloadEvent::Rejected`] — only when the same failure is seen on the same file contents
//! twice in a row; a failure that the next check no longer sees was a write in progress.
//!
//! Every rebuild makes a fresh rustls `ServerConfig` and with it a fresh session cache, so no
//! session resumed after a change of trust (CA removed, CRL added) was established before it.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::broadcast;
use tokio::task::JoinHandle;

use crate::config::{CertificateSummary, Inputs, TlsConfig};
use crate::error::ConfigError;
use crate::identity::Fingerprint;
use crate::verify::TrustSummary;

/// The default interval of [`TlsConfig::watch`].
pub const DEFAULT_WATCH_INTERVAL: Duration = Duration::from_secs(1);

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
}

/// The outcome of a reload that found changed files.
#[derive(Debug, Clone)]
pub enum ReloadEvent {
    /// The new configuration is in use for new handshakes.
    Applied(Arc<ReloadReport>),
    /// The new files do not make a valid configuration; the previous one stays in use.
    Rejected(Arc<ConfigError>),
}

/// The outcome of one [`TlsConfig::reload`].
#[derive(Debug, Clone)]
pub enum ReloadOutcome {
    /// No file changed.
    Unchanged,
    /// The files changed and the new configuration is in use.
    Applied(Arc<ReloadReport>),
    /// The files changed but do not make a valid configuration; the previous one stays.
    Rejected(Arc<ConfigError>),
}

pub(crate) struct ReloadState {
    inner: Mutex<Digests>,
    events: broadcast::Sender<ReloadEvent>,
}

struct Digests {
    identity: Fingerprint,
    trust: Fingerprint,
    /// A failure seen once, not yet reported: files may be mid-write.
    pending: Option<Failure>,
    /// The failure last reported, so that it is reported once.
    reported: Option<Failure>,
}

/// What identifies a failed reload: the error's text and, when the files could be read, what
/// they held.
#[derive(PartialEq, Eq)]
struct Failure {
    message: String,
    inputs: Option<(Fingerprint, Fingerprint)>,
}

impl ReloadState {
    pub(crate) fn new(inputs: &Inputs) -> Self {
        Self {
            inner: Mutex::new(Digests {
                identity: inputs.identity_digest,
                trust: inputs.trust_digest,
                pending: None,
                reported: None,
            }),
            events: broadcast::channel(64).0,
        }
    }
}

impl TlsConfig {
    /// Re-reads every source now and swaps in the rebuilt configuration if anything changed
    /// and it is valid. The file I/O runs on Tokio's blocking pool.
    pub async fn reload(&self) -> ReloadOutcome {
        let config = self.clone();
        match tokio::task::spawn_blocking(move || config.blocking_reload()).await {
            Ok(outcome) => outcome,
            Err(e) => ReloadOutcome::Rejected(Arc::new(ConfigError::Tls(rustls::Error::General(
                format!("reload task failed: {e}"),
            )))),
        }
    }

    /// [`reload`](Self::reload) on the calling thread: blocking file I/O, for code outside an
    /// async context.
    pub fn blocking_reload(&self) -> ReloadOutcome {
        let shared = &self.shared;
        // One reload at a time; a poisoned lock only means an earlier reload panicked.
        let mut digests = shared
            .reload
            .inner
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let built = match shared.spec.read() {
            Err(error) => Err((error, None)),
            Ok(inputs)
                if inputs.identity_digest == digests.identity
                    && inputs.trust_digest == digests.trust =>
            {
                Ok(None)
            }
            Ok(inputs) => match shared.spec.build(&inputs) {
                Ok(active) => Ok(Some((inputs, active))),
                Err(error) => Err((error, Some((inputs.identity_digest, inputs.trust_digest)))),
            },
        };
        match built {
            Ok(None) => {
                digests.pending = None;
                if digests.reported.take().is_some() {
                    tracing::info!("TLS files are back to the configuration in use");
                }
                ReloadOutcome::Unchanged
            }
            Ok(Some((inputs, active))) => {
                let active = Arc::new(active);
                let previous = {
                    let mut slot = shared
                        .active
                        .write()
                        .unwrap_or_else(PoisonError::into_inner);
                    std::mem::replace(&mut *slot, active.clone())
                };
                active.log_trust();
                let report = Arc::new(ReloadReport {
                    server_certificate: active.server_certificate.clone(),
                    previous_server_certificate: previous.server_certificate.clone(),
                    identity_changed: inputs.identity_digest != digests.identity,
                    trust: active.trust.clone(),
                    trust_changed: inputs.trust_digest != digests.trust,
                });
                digests.identity = inputs.identity_digest;
                digests.trust = inputs.trust_digest;
                digests.pending = None;
                digests.reported = None;
                tracing::info!(
                    server_certificate.subject = %report.server_certificate.subject,
                    server_certificate.serial = %report.server_certificate.serial,
                    server_certificate.not_after = ?report.server_certificate.not_after,
                    identity_changed = report.identity_changed,
                    trust_changed = report.trust_changed,
                    trust.anchors = report.trust.anchors,
                    trust.pinned = report.trust.pinned,
                    trust.crls = report.trust.crls,
                    "TLS configuration reloaded"
                );
                let _ = shared
                    .reload
                    .events
                    .send(ReloadEvent::Applied(report.clone()));
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
                    let _ = shared
                        .reload
                        .events
                        .send(ReloadEvent::Rejected(error.clone()));
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

    /// Subscribes to reload events: each change that was applied, and each broken change
    /// (reported once, after it was seen twice in a row, until the files change again).
    pub fn subscribe(&self) -> broadcast::Receiver<ReloadEvent> {
        self.shared.reload.events.subscribe()
    }

    /// Starts watching the configuration's files on the current Tokio runtime, reloading when
    /// their contents change: new handshakes use new material within about `interval`
    /// (see [`DEFAULT_WATCH_INTERVAL`]). The watch stops when the handle is dropped, so keep
    /// it for as long as the server runs.
    ///
    /// # Panics
    ///
    /// Outside a Tokio runtime, like `tokio::spawn`.
    #[must_use = "the watch stops when the handle is dropped: keep it while the server runs"]
    pub fn watch(&self, interval: Duration) -> ReloadHandle {
        let config = self.clone();
        let task = tokio::spawn(async move {
            let mut ticker = tokio::time::interval(interval);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            ticker.tick().await;
            loop {
                ticker.tick().await;
                if let ReloadOutcome::Rejected(e) = config.reload().await {
                    // Reported by the reload itself once it persists; the watch goes on.
                    tracing::trace!(error = %e, "TLS reload rejected");
                }
            }
        });
        ReloadHandle {
            config: self.clone(),
            task,
        }
    }
}

/// Drives and observes reloads of a watched [`TlsConfig`]. Dropping it stops the watch.
#[derive(Debug)]
#[must_use = "the watch stops when the handle is dropped: keep it while the server runs"]
pub struct ReloadHandle {
    config: TlsConfig,
    task: JoinHandle<()>,
}

impl ReloadHandle {
    /// Reloads now, off the async threads, and returns the outcome.
    pub async fn reload_now(&self) -> ReloadOutcome {
        self.config.reload().await
    }

    /// Subscribes to reload events, as [`TlsConfig::subscribe`].
    pub fn subscribe(&self) -> broadcast::Receiver<ReloadEvent> {
        self.config.subscribe()
    }

    /// The configuration being watched.
    pub fn config(&self) -> &TlsConfig {
        &self.config
    }
}

impl Drop for ReloadHandle {
    fn drop(&mut self) {
        self.task.abort();
    }
}
