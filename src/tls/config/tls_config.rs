//! [`TlsConfig`]: the server identity, the client trust and the client-auth mode.
//!
//! A `TlsConfig` remembers where its material came from (files, directories, or bytes handed
//! over in code), loads all of it at [`TlsConfigBuilder::build`] — failing with an error that
//! names the file and the reason — and keeps the resulting rustls `ServerConfig` in memory.
//! Handshakes only ever read that in-memory snapshot; [`TlsConfig::reload`] and
//! [`TlsConfig::watch`](crate::TlsConfig::watch) replace it atomically.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use rustls::ServerConfig;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::CertificateDer;
use tokio::sync::broadcast;
use tokio::task::JoinHandle;

use crate::identity::CertificateSummary;
use crate::tls::accept::observe::{
    DEFAULT_EXPIRY_WARNING, EXPIRY_CHECK_INTERVAL, ExpiryWarning, TlsObserver, check_expiry,
};
use crate::tls::config::error::ConfigError;
use crate::tls::config::events::ReloadOutcome;
use crate::tls::config::load::Source;
use crate::tls::config::material::{Active, Spec};
use crate::tls::config::reload::{ReloadState, Settle};
use crate::tls::trust::verify::{
    ChainLimits, ClientAccepted, ClientAuth, ClientRefused, TrustDetails, TrustSummary,
};

/// Builds a [`TlsConfig`]. Start with the server's identity — [`TlsConfig::from_pem_files`] or
/// [`TlsConfig::from_pem`] — so there is no configuration without one.
///
/// Client authentication follows from the trust given: with a trust source, clients must
/// present a certificate that verifies; without, none is asked for.
/// [`optional_client_auth`](Self::optional_client_auth) is the one explicit step.
///
/// ```no_run
/// use tower_mtls::TlsConfig;
///
/// let config = TlsConfig::from_pem_files(
///     "/etc/extension/certificates/server-cert/tls.crt",
///     "/etc/extension/certificates/server-cert/tls.key",
/// )
/// .client_trust("/etc/extension/certificates/agent-cert") // a mounted secret directory
/// .client_trust("/etc/extension/certificates/other-ca/ca.crt")
/// .build()?;
/// # Ok::<(), tower_mtls::ConfigError>(())
/// ```
#[derive(Debug, Clone)]
#[must_use]
pub struct TlsConfigBuilder {
    server_cert: Source,
    server_key: Source,
    client_trust: Vec<Source>,
    client_crls: Vec<Source>,
    optional_client_auth: bool,
    provider: Option<Arc<CryptoProvider>>,
    tls12: bool,
    alpn: Vec<Vec<u8>>,
    chain_limits: ChainLimits,
    require_fresh_crls: bool,
    session_ticket_keys: Option<PathBuf>,
    expiry_warning: Duration,
}

impl TlsConfigBuilder {
    fn new(server_cert: Source, server_key: Source) -> Self {
        Self {
            server_cert,
            server_key,
            client_trust: Vec::new(),
            client_crls: Vec::new(),
            optional_client_auth: false,
            provider: None,
            tls12: true,
            alpn: vec![b"h2".to_vec(), b"http/1.1".to_vec()],
            chain_limits: ChainLimits::default(),
            require_fresh_crls: false,
            session_ticket_keys: None,
            expiry_warning: DEFAULT_EXPIRY_WARNING,
        }
    }
}

impl TlsConfigBuilder {
    /// Trusts the certificates of a PEM file, or of every PEM file in a directory (a mounted
    /// Kubernetes secret works as it is), for client authentication. May be called any number of
    /// times; the sources may come from unrelated CAs.
    ///
    /// CA certificates become trust anchors; an end-entity certificate is accepted as itself
    /// (see the [`verify` notes](crate#trust-cas-and-pinned-leaves)).
    pub fn client_trust(mut self, path: impl Into<PathBuf>) -> Self {
        self.client_trust.push(Source::Path(path.into()));
        self
    }

    /// Trusts certificates given as PEM bytes, like [`client_trust`](Self::client_trust).
    pub fn client_trust_pem(mut self, pem: impl Into<Vec<u8>>) -> Self {
        let n = self.client_trust.len() + 1;
        self.client_trust
            .push(Source::memory(&format!("client trust #{n}"), pem));
        self
    }

    /// Checks client certificates against the certificate revocation lists of a file (PEM or
    /// DER, at most 64 MiB) or a directory of them.
    ///
    /// A CRL counts for the trusted CA whose name it carries and whose key signed it; it speaks
    /// for the certificates within its scope (its issuingDistributionPoint, if any) from its
    /// thisUpdate on (a CRL dated later is set aside until then); of several for one issuer and
    /// scope, the highest CRL number decides. A CRL no trusted key signed revokes nothing and is
    /// skipped with a warning; one that decodes but cannot be used refuses the clients of its
    /// own issuer. SECURITY.md has the whole rule.
    pub fn client_crl(mut self, path: impl Into<PathBuf>) -> Self {
        self.client_crls.push(Source::Path(path.into()));
        self
    }

    /// Certificate revocation lists as PEM or DER bytes.
    pub fn client_crl_bytes(mut self, bytes: impl Into<Vec<u8>>) -> Self {
        let n = self.client_crls.len() + 1;
        self.client_crls
            .push(Source::memory(&format!("client CRL #{n}"), bytes));
        self
    }

    /// Refuse a client whose certificate's issuer has a CRL that is past its nextUpdate
    /// (default: no — a stale CRL is still applied, and logged at `warn` at startup and on
    /// every reload that keeps it). A refused client gets an `unknown_ca` alert and is counted
    /// as [`HandshakeFailure::StaleCrl`](crate::tls::accept::error::HandshakeFailure::StaleCrl). Issuers without
    /// any CRL are not affected.
    pub fn require_fresh_crls(mut self, required: bool) -> Self {
        self.require_fresh_crls = required;
        self
    }

    /// Whether a client trust source was given (then client certificates are requested).
    pub fn has_client_trust(&self) -> bool {
        !self.client_trust.is_empty()
    }

    /// Lets clients without a certificate finish the handshake ([`ClientAuth::Optional`]); a
    /// certificate that is presented must still verify. A
    /// [`ClientCertLayer`](crate::ClientCertLayer) then answers them per route (401, or gRPC
    /// `UNAUTHENTICATED`). Needs a trust source: the build fails without one.
    ///
    /// Without this step a configuration with trust sources requires a certificate
    /// ([`ClientAuth::Required`]), and one without asks for none ([`ClientAuth::None`]).
    pub fn optional_client_auth(mut self) -> Self {
        self.optional_client_auth = true;
        self
    }

    /// The crypto provider. Defaults to the bundled one (`aws-lc-rs`, else `ring`: see
    /// `tls::default_provider`), and then the process-wide default is never consulted. Built
    /// with neither feature, it defaults to the process default the application installed,
    /// and without one [`build`](Self::build) fails saying so.
    pub fn crypto_provider(mut self, provider: Arc<CryptoProvider>) -> Self {
        self.provider = Some(provider);
        self
    }

    /// Whether TLS 1.2 is offered besides TLS 1.3 (default: yes). Both use only
    /// forward-secret (ECDHE) key exchange.
    pub fn tls12(mut self, enabled: bool) -> Self {
        self.tls12 = enabled;
        self
    }

    /// ALPN protocols to offer, most preferred first. Defaults to `h2`, `http/1.1`, which the
    /// serve helper both speaks.
    pub fn alpn_protocols(mut self, protocols: Vec<Vec<u8>>) -> Self {
        self.alpn = protocols;
        self
    }

    /// Caps the client's certificate chain: at most `max_certs` certificates (leaf included)
    /// and `max_bytes` bytes of DER. Defaults: 8 certificates, 32 KiB.
    pub fn max_client_chain(mut self, max_certs: usize, max_bytes: usize) -> Self {
        self.chain_limits = ChainLimits {
            max_certs,
            max_bytes,
        };
        self
    }

    /// Shares session resumption between replicas: issues stateless session tickets (TLS 1.3
    /// and 1.2) sealed with the keys of this file, which every replica mounts (a key of a
    /// Kubernetes secret). Default: none — each process resumes only its own sessions.
    ///
    /// The file holds one key per line, each the base64 of 32 random bytes (`openssl rand
    /// -base64 32`); the first seals new tickets, every line opens them; empty lines are
    /// ignored. Rotate by prepending a new key and, later, dropping the oldest: the file is
    /// watched and reloaded like the others. A malformed file stops the build (and is refused
    /// by a reload) with the file and line named, never its content.
    ///
    /// A ticket resumes only under the same trust (trust and CRL files, client-auth mode,
    /// fresh-CRL requirement, chain limits) and only until the client verification it
    /// descends from runs out; otherwise the client gets a full handshake. See the
    /// `tls::tickets` notes in SECURITY.md for what a leaked key exposes.
    pub fn session_ticket_keys(mut self, path: impl Into<PathBuf>) -> Self {
        self.session_ticket_keys = Some(path.into());
        self
    }

    /// Warns about a server certificate, trusted CA or pinned certificate that expires within
    /// `window` (default [`DEFAULT_EXPIRY_WARNING`](crate::tls::DEFAULT_EXPIRY_WARNING), 30 days):
    /// at `warn`, or at `error` once it has expired. Checked at build, on each applied reload,
    /// when a watch starts and once a day while it runs (see [`TlsConfig::check_expiry`]).
    pub fn expiry_warning(mut self, window: Duration) -> Self {
        self.expiry_warning = window;
        self
    }

    /// Loads and checks everything, and builds the configuration.
    pub fn build(self) -> Result<TlsConfig, ConfigError> {
        let (server_cert, server_key) = (self.server_cert, self.server_key);
        let client_auth = match (self.optional_client_auth, self.client_trust.is_empty()) {
            (false, true) => ClientAuth::None,
            (false, false) => ClientAuth::Required,
            (true, false) => ClientAuth::Optional,
            (true, true) => {
                return Err(ConfigError::NoClientTrust {
                    mode: ClientAuth::Optional.as_str(),
                });
            }
        };
        if client_auth == ClientAuth::None && !self.client_crls.is_empty() {
            return Err(ConfigError::Incomplete(
                "certificate revocation lists are configured but client authentication is off",
            ));
        }
        let spec = Spec {
            server_cert,
            server_key,
            client_trust: self.client_trust,
            client_crls: self.client_crls,
            client_auth,
            provider: crate::crypto::provider(self.provider)?,
            tls12: self.tls12,
            alpn: self.alpn,
            chain_limits: self.chain_limits,
            require_fresh_crls: self.require_fresh_crls,
            session_ticket_keys: self.session_ticket_keys.map(Source::Path),
            ticket_counters: Arc::default(),
        };
        let inputs = spec.read()?;
        let active = spec.build(&inputs)?;
        active.log_trust();
        let config = TlsConfig {
            shared: Arc::new(Shared {
                active: RwLock::new(Arc::new(active)),
                reload: ReloadState::new(&inputs),
                spec,
                expiry_warning: self.expiry_warning,
            }),
        };
        config.check_expiry();
        Ok(config)
    }
}

/// A server's TLS configuration: identity, client trust, client-auth mode.
///
/// Cheap to clone (an `Arc`); clones share one live state, so a reload through any clone is
/// seen by every [`MtlsAcceptor`](crate::MtlsAcceptor) built from any of them.
#[derive(Clone)]
pub struct TlsConfig {
    pub(crate) shared: Arc<Shared>,
}

pub(crate) struct Shared {
    pub(crate) spec: Spec,
    pub(crate) active: RwLock<Arc<Active>>,
    pub(crate) reload: ReloadState,
    expiry_warning: Duration,
}

impl fmt::Debug for TlsConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let active = self.active();
        f.debug_struct("TlsConfig")
            .field("client_auth", &self.client_auth())
            .field("server_certificate", &active.server_certificate)
            .field("trust", &active.trust)
            .finish()
    }
}

impl TlsConfig {
    /// Starts a configuration from the server's certificate chain (a PEM file, leaf first: a
    /// secret's `tls.crt`) and private key (PKCS#8, PKCS#1 or SEC1 PEM: `tls.key`). The files are
    /// read at [`build`](TlsConfigBuilder::build) and watched by [`watch`](Self::watch).
    pub fn from_pem_files(
        cert_chain: impl Into<PathBuf>,
        private_key: impl Into<PathBuf>,
    ) -> TlsConfigBuilder {
        TlsConfigBuilder::new(
            Source::Path(cert_chain.into()),
            Source::Path(private_key.into()),
        )
    }

    /// Starts a configuration from the server's certificate chain and private key as PEM
    /// bytes. Material given this way is not watched for changes.
    pub fn from_pem(
        cert_chain: impl Into<Vec<u8>>,
        private_key: impl Into<Vec<u8>>,
    ) -> TlsConfigBuilder {
        TlsConfigBuilder::new(
            Source::memory("server certificate", cert_chain),
            Source::memory("server key", private_key),
        )
    }

    /// The client-auth mode.
    pub fn client_auth(&self) -> ClientAuth {
        self.shared.spec.client_auth
    }

    /// The rustls configuration new handshakes use now.
    pub fn server_config(&self) -> Arc<ServerConfig> {
        self.active().server_config.clone()
    }

    /// The server certificate in use now.
    pub fn server_certificate(&self) -> CertificateSummary {
        self.active().server_certificate.clone()
    }

    /// Logs every certificate in use — the server's, each trusted CA, each pinned
    /// certificate — that expires within the warning window (at `warn`) or has expired (at
    /// `error`), and returns them. With the `metrics` feature it also sets the expiry gauges
    /// (see [`metrics`](crate::tls::accept::metrics)).
    pub fn check_expiry(&self) -> Vec<ExpiryWarning> {
        let active = self.active();
        let trust = self.trust_details();
        #[cfg(feature = "metrics")]
        {
            crate::tls::accept::metrics::expiry(active.server_certificate.not_after, &trust);
            crate::tls::accept::metrics::trust_files(&active.trust_digest);
        }
        check_expiry(
            &active.server_certificate,
            &trust,
            self.shared.expiry_warning,
            SystemTime::now(),
        )
    }

    pub(crate) fn add_reload_observer(&self, observer: Arc<dyn TlsObserver>) {
        self.shared.reload.add_observer(observer);
    }

    /// What the shared session ticket keys did so far: tickets issued, accepted and refused by
    /// reason (all zero without [`TlsConfigBuilder::session_ticket_keys`]).
    pub fn session_ticket_stats(&self) -> crate::tls::trust::tickets::TicketStats {
        self.shared.spec.ticket_counters.snapshot()
    }

    /// What the client trust holds now.
    pub fn trust_summary(&self) -> TrustSummary {
        self.active().trust.clone()
    }

    /// The files and directories this configuration was built from (in-memory material is not
    /// listed).
    pub fn watched_paths(&self) -> Vec<PathBuf> {
        self.shared
            .spec
            .paths()
            .into_iter()
            .map(Path::to_path_buf)
            .collect()
    }

    /// SHA-256 over the paths and contents of the trust and CRL files of the configuration in
    /// use. A configuration built from the same files elsewhere (the doctor's `check` in the
    /// same pod) has the same digest, so comparing the two tells whether the files on disk are
    /// what the server applies; with the `metrics` feature its first 48 bits are the gauge
    /// `tower_mtls_trust_files_digest` ([`digest_prefix`](crate::tls::accept::metrics::digest_prefix)).
    pub fn trust_files_digest(&self) -> crate::identity::Fingerprint {
        self.active().trust_digest
    }

    /// Everything the client trust holds now — each CA, pinned certificate and CRL — and the
    /// warnings the server logged about it; empty without client authentication.
    pub fn trust_details(&self) -> TrustDetails {
        let active = self.active();
        let hints = active.verifier.as_ref().map_or(&[][..], |v| v.hints());
        TrustDetails::from_notes(&active.trust_notes, hints)
    }

    /// Judges a client certificate chain (leaf first) as a handshake at `time` would: the same
    /// trust anchors, pinned certificates, CRLs and limits, through the same code. It cannot
    /// check what only a live handshake proves — that the client holds the leaf's key.
    pub fn verify_client_chain(
        &self,
        chain: &[CertificateDer<'_>],
        time: SystemTime,
    ) -> Result<ClientAccepted, ClientRefused> {
        let active = self.active();
        let Some(verifier) = &active.verifier else {
            return Err(ClientRefused {
                kind: crate::tls::accept::error::HandshakeFailure::UnknownCa,
                reason:
                    "client authentication is off: this configuration trusts no client certificate"
                        .into(),
            });
        };
        verifier.judge(chain, time)
    }

    pub(crate) fn active(&self) -> Arc<Active> {
        match self.shared.active.read() {
            Ok(guard) => guard.clone(),
            // A panic while swapping cannot leave a torn value: the guard holds one Arc.
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }
}

impl TlsConfig {
    /// Re-reads every source now and swaps in the rebuilt configuration if anything changed
    /// and it is valid. The file I/O runs on Tokio's blocking pool.
    ///
    /// Every file is compared by content with what is in use; nothing changed, nothing
    /// happens. A change that does not build keeps the previous configuration (see
    /// [`ReloadOutcome`]).
    pub async fn reload(&self) -> ReloadOutcome {
        let config = self.clone();
        match tokio::task::spawn_blocking(move || config.blocking_reload()).await {
            Ok(outcome) => outcome,
            Err(e) => ReloadOutcome::Rejected(Arc::new(ConfigError::Tls(rustls::Error::General(
                format!("reload task failed: {e}"),
            )))),
        }
    }

    /// [`reload`](Self::reload) on the calling thread (blocking file I/O).
    pub(crate) fn blocking_reload(&self) -> ReloadOutcome {
        self.reload_blocking(Settle::Now)
    }

    fn reload_blocking(&self, settle: Settle) -> ReloadOutcome {
        let outcome = self
            .shared
            .reload
            .apply(&self.shared.spec, &self.shared.active, settle);
        if let ReloadOutcome::Applied(_) = outcome {
            self.check_expiry();
        }
        outcome
    }

    /// Subscribes to reload events: each change that was applied, and each broken change
    /// (reported once, after it was seen twice in a row, until the files change again).
    pub fn subscribe(&self) -> broadcast::Receiver<ReloadOutcome> {
        self.shared.reload.subscribe()
    }

    /// Starts watching the configuration's files on the current Tokio runtime, reloading when
    /// their contents change: new handshakes use new material within about two `interval`s
    /// (see [`DEFAULT_WATCH_INTERVAL`](crate::tls::DEFAULT_WATCH_INTERVAL)): a change is applied
    /// once two checks in a row read the same contents, so a file written in place is never
    /// applied half-written, even when its first half is a valid configuration (a bundle cut
    /// after one certificate, a CRL file missing one issuer's CRL). The watch stops when the
    /// handle is dropped, so keep it for as long as the server runs.
    ///
    /// The watch also repeats [`check_expiry`](Self::check_expiry) once a day
    /// ([`EXPIRY_CHECK_INTERVAL`](crate::tls::EXPIRY_CHECK_INTERVAL)); with the `metrics` feature it
    /// sets the expiry gauges when it starts, in case the recorder was installed after the build.
    ///
    /// # Panics
    ///
    /// Outside a Tokio runtime, like `tokio::spawn`.
    #[must_use = "the watch stops when the handle is dropped: keep it while the server runs"]
    pub fn watch(&self, interval: Duration) -> ReloadHandle {
        let config = self.clone();
        #[cfg(feature = "metrics")]
        {
            let active = self.active();
            crate::tls::accept::metrics::expiry(
                active.server_certificate.not_after,
                &self.trust_details(),
            );
        }
        let task = tokio::spawn(async move {
            let mut ticker = tokio::time::interval(interval);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            ticker.tick().await;
            let mut daily = tokio::time::interval_at(
                tokio::time::Instant::now() + EXPIRY_CHECK_INTERVAL,
                EXPIRY_CHECK_INTERVAL,
            );
            daily.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = ticker.tick() => {
                        // A change is applied once two ticks read the same files (see
                        // `Settle::Twice`): never a state an in-place writer passes through.
                        let watched = config.clone();
                        let outcome = tokio::task::spawn_blocking(move || {
                            watched.reload_blocking(Settle::Twice)
                        })
                        .await;
                        if let Ok(ReloadOutcome::Rejected(e)) = outcome {
                            // Reported by the reload itself once it persists; the watch goes on.
                            tracing::trace!(error = %e, "TLS reload rejected");
                        }
                    }
                    _ = daily.tick() => {
                        config.check_expiry();
                    }
                }
            }
        });
        ReloadHandle {
            config: self.clone(),
            task,
        }
    }
}

/// The watch of a [`TlsConfig`] ([`TlsConfig::watch`]): dropping it stops the watch. Reload and
/// subscribe through the [`config`](Self::config) itself.
#[derive(Debug)]
#[must_use = "the watch stops when the handle is dropped: keep it while the server runs"]
pub struct ReloadHandle {
    config: TlsConfig,
    task: JoinHandle<()>,
}

impl ReloadHandle {
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
