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
use std::time::SystemTime;

use rustls::ServerConfig;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::danger::ClientCertVerifier;
use rustls::sign::{CertifiedKey, SingleCertAndKey};

use crate::crypto::{Sha256, default_provider};
use crate::error::ConfigError;
use crate::identity::{ClientIdentity, Fingerprint};
use crate::load::{self, LoadedFile, Source};
use crate::reload::ReloadState;
use crate::verify::{
    ChainLimits, ClientAccepted, ClientRefused, ClientVerifier, TrustDetails, TrustNote,
    TrustSummary,
};

/// Whether the server asks clients for a certificate, and whether it insists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ClientAuth {
    /// No client certificate is requested.
    None,
    /// A client certificate is requested; clients without one are let through the handshake
    /// (a [`ClientCertLayer`](crate::ClientCertLayer) can still turn them away per route), but
    /// a certificate that is presented must verify.
    Optional,
    /// Every client must present a certificate that verifies, or the handshake fails
    /// (TLS 1.3 `certificate_required` alert).
    Required,
}

impl ClientAuth {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Optional => "optional",
            Self::Required => "required",
        }
    }
}

impl fmt::Display for ClientAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What identifies a certificate in logs and reload reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateSummary {
    /// Subject, RFC 4514.
    pub subject: String,
    /// Serial number, lowercase hex.
    pub serial: String,
    /// End of the validity period.
    pub not_after: SystemTime,
    /// SHA-256 of the certificate.
    pub sha256: Fingerprint,
}

impl CertificateSummary {
    pub(crate) fn of(der: &CertificateDer<'_>) -> Result<Self, String> {
        let id = ClientIdentity::parse(der.as_ref()).map_err(|e| e.to_string())?;
        Ok(Self {
            subject: id.subject().to_string(),
            serial: id.serial_hex(),
            not_after: id.not_after(),
            sha256: id.sha256(),
        })
    }
}

/// Builds a [`TlsConfig`]. Start with [`TlsConfig::builder`].
///
/// ```no_run
/// use tower_mtls::{ClientAuth, TlsConfig};
///
/// let config = TlsConfig::builder()
///     .server_cert_file("/etc/extension/certificates/server-cert/tls.crt")
///     .server_key_file("/etc/extension/certificates/server-cert/tls.key")
///     .client_trust("/etc/extension/certificates/agent-cert") // a mounted secret directory
///     .client_trust("/etc/extension/certificates/other-ca/ca.crt")
///     .client_auth(ClientAuth::Required)
///     .build()?;
/// # Ok::<(), tower_mtls::ConfigError>(())
/// ```
#[derive(Debug, Clone)]
#[must_use]
pub struct TlsConfigBuilder {
    server_cert: Option<Source>,
    server_key: Option<Source>,
    client_trust: Vec<Source>,
    client_crls: Vec<Source>,
    client_auth: Option<ClientAuth>,
    provider: Option<Arc<CryptoProvider>>,
    tls12: bool,
    alpn: Vec<Vec<u8>>,
    chain_limits: ChainLimits,
    require_fresh_crls: bool,
}

impl Default for TlsConfigBuilder {
    fn default() -> Self {
        Self {
            server_cert: None,
            server_key: None,
            client_trust: Vec::new(),
            client_crls: Vec::new(),
            client_auth: None,
            provider: None,
            tls12: true,
            alpn: vec![b"h2".to_vec(), b"http/1.1".to_vec()],
            chain_limits: ChainLimits::default(),
            require_fresh_crls: false,
        }
    }
}

impl TlsConfigBuilder {
    /// The server certificate chain: a PEM file, leaf first (a secret's `tls.crt`).
    pub fn server_cert_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.server_cert = Some(Source::Path(path.into()));
        self
    }

    /// The server's private key: a PEM file in PKCS#8, PKCS#1 (RSA) or SEC1 (EC) form
    /// (a secret's `tls.key`).
    pub fn server_key_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.server_key = Some(Source::Path(path.into()));
        self
    }

    /// The server certificate chain and key as PEM bytes. Material given this way is not
    /// watched for changes.
    pub fn server_identity_pem(
        mut self,
        cert_pem: impl Into<Vec<u8>>,
        key_pem: impl Into<Vec<u8>>,
    ) -> Self {
        self.server_cert = Some(Source::memory("server certificate", cert_pem));
        self.server_key = Some(Source::memory("server key", key_pem));
        self
    }

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
    /// DER) or a directory of them.
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
    /// as [`HandshakeFailure::StaleCrl`](crate::HandshakeFailure::StaleCrl). Issuers without
    /// any CRL are not affected.
    pub fn require_fresh_crls(mut self, required: bool) -> Self {
        self.require_fresh_crls = required;
        self
    }

    /// Whether client certificates are requested and required. Defaults to
    /// [`ClientAuth::Required`] when a trust source is configured, else [`ClientAuth::None`].
    pub fn client_auth(mut self, mode: ClientAuth) -> Self {
        self.client_auth = Some(mode);
        self
    }

    /// The crypto provider. Defaults to [`crate::default_provider`]; the process-wide default
    /// is never consulted.
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

    /// Loads and checks everything, and builds the configuration.
    pub fn build(self) -> Result<TlsConfig, ConfigError> {
        let (server_cert, server_key) = match (self.server_cert, self.server_key) {
            (Some(cert), Some(key)) => (cert, key),
            (Some(_), None) => {
                return Err(ConfigError::Incomplete(
                    "a server certificate is configured but no private key",
                ));
            }
            (None, Some(_)) => {
                return Err(ConfigError::Incomplete(
                    "a server private key is configured but no certificate",
                ));
            }
            (None, None) => {
                return Err(ConfigError::Incomplete(
                    "no server certificate and private key are configured",
                ));
            }
        };
        let client_auth = match (self.client_auth, self.client_trust.is_empty()) {
            (None, true) => ClientAuth::None,
            (None, false) => ClientAuth::Required,
            (Some(ClientAuth::None), false) => {
                return Err(ConfigError::Incomplete(
                    "client trust sources are configured but client authentication is off",
                ));
            }
            (Some(mode @ (ClientAuth::Optional | ClientAuth::Required)), true) => {
                return Err(ConfigError::NoClientTrust {
                    mode: mode.as_str(),
                });
            }
            (Some(mode), _) => mode,
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
            provider: self.provider.unwrap_or_else(default_provider),
            tls12: self.tls12,
            alpn: self.alpn,
            chain_limits: self.chain_limits,
            require_fresh_crls: self.require_fresh_crls,
        };
        let inputs = spec.read()?;
        let active = spec.build(&inputs)?;
        active.log_trust();
        Ok(TlsConfig {
            shared: Arc::new(Shared {
                active: RwLock::new(Arc::new(active)),
                reload: ReloadState::new(&inputs),
                spec,
            }),
        })
    }
}

/// The sources and options a configuration is (re)built from.
#[derive(Debug)]
pub(crate) struct Spec {
    server_cert: Source,
    server_key: Source,
    client_trust: Vec<Source>,
    client_crls: Vec<Source>,
    client_auth: ClientAuth,
    provider: Arc<CryptoProvider>,
    tls12: bool,
    alpn: Vec<Vec<u8>>,
    chain_limits: ChainLimits,
    pub(crate) require_fresh_crls: bool,
}

/// Everything read from the sources, before anything is built from it.
pub(crate) struct Inputs {
    cert_file: LoadedFile,
    key_file: LoadedFile,
    trust: Vec<(usize, crate::load::SourceFiles)>,
    crls: Vec<(usize, crate::load::SourceFiles)>,
    /// Digest of the server identity files: equal digests, same identity.
    pub(crate) identity_digest: Fingerprint,
    /// Digest of the trust and CRL files.
    pub(crate) trust_digest: Fingerprint,
}

/// One built generation of the configuration. Handshakes hold an `Arc` to the generation
/// they started with.
pub(crate) struct Active {
    pub(crate) server_config: Arc<ServerConfig>,
    pub(crate) verifier: Option<Arc<ClientVerifier>>,
    pub(crate) server_certificate: CertificateSummary,
    pub(crate) trust: TrustSummary,
    /// What to tell the operator about the trust when this generation is applied.
    pub(crate) trust_notes: Vec<TrustNote>,
}

impl Active {
    /// Logs the trust in use: each CA, pinned certificate and CRL, and every warning about
    /// them. Called when a generation is applied (startup, successful reload).
    pub(crate) fn log_trust(&self) {
        for note in &self.trust_notes {
            note.log();
        }
    }
}

impl Spec {
    /// Every path this configuration reads, for watching.
    pub(crate) fn paths(&self) -> Vec<&Path> {
        [&self.server_cert, &self.server_key]
            .into_iter()
            .chain(&self.client_trust)
            .chain(&self.client_crls)
            .filter_map(|s| match s {
                Source::Path(p) => Some(p.as_path()),
                Source::Memory { .. } => None,
            })
            .collect()
    }

    /// Reads every source. Errors name the file that could not be read.
    pub(crate) fn read(&self) -> Result<Inputs, ConfigError> {
        // Path, length and bytes of each file, so that moving bytes between files changes it.
        fn note(digest: &mut Sha256, file: &LoadedFile) {
            digest.update(file.path.as_os_str().as_encoded_bytes());
            digest.update(&[0]);
            digest.update(&(file.bytes.len() as u64).to_be_bytes());
            digest.update(&file.bytes);
        }
        let cert_file = self.server_cert.read_file()?;
        let key_file = self.server_key.read_file()?;
        let mut identity = Sha256::new();
        note(&mut identity, &cert_file);
        note(&mut identity, &key_file);

        let mut trust_digest = Sha256::new();
        let mut read_all = |sources: &[Source]| -> Result<Vec<_>, ConfigError> {
            let mut out = Vec::new();
            for (i, source) in sources.iter().enumerate() {
                let read = source.read()?;
                read.files.iter().for_each(|f| note(&mut trust_digest, f));
                trust_digest.update(&[0xff]);
                out.push((i, read));
            }
            Ok(out)
        };
        let trust = read_all(&self.client_trust)?;
        let crls = read_all(&self.client_crls)?;
        Ok(Inputs {
            cert_file,
            key_file,
            trust,
            crls,
            identity_digest: Fingerprint::from_bytes(identity.finish()),
            trust_digest: Fingerprint::from_bytes(trust_digest.finish()),
        })
    }

    /// Builds a generation from what [`Spec::read`] returned.
    pub(crate) fn build(&self, inputs: &Inputs) -> Result<Active, ConfigError> {
        let chain = load::certificates(&inputs.cert_file)?;
        let key = load::private_key(&inputs.key_file)?;
        let mut trust = Vec::new();
        for (i, read) in &inputs.trust {
            trust.extend(load::trust_certificates(&self.client_trust[*i], read)?);
        }
        let mut crls = Vec::new();
        for (i, read) in &inputs.crls {
            crls.extend(load::crls(&self.client_crls[*i], read)?);
        }

        let cert_path = &inputs.cert_file.path;
        let server_certificate = CertificateSummary::of(&chain[0]).map_err(|reason| {
            ConfigError::InvalidCertificate {
                path: cert_path.clone(),
                index: 1,
                reason,
            }
        })?;
        let (verifier, trust, trust_notes) = match self.client_auth {
            ClientAuth::None => (None, TrustSummary::default(), Vec::new()),
            mode => {
                let (verifier, summary, notes) = ClientVerifier::build(
                    &trust,
                    &crls,
                    mode,
                    self.chain_limits,
                    self.require_fresh_crls,
                    &self.provider,
                )?;
                (Some(verifier), summary, notes)
            }
        };
        let server_config = self.server_config(
            chain,
            key,
            cert_path,
            &inputs.key_file.path,
            verifier.clone(),
        )?;
        Ok(Active {
            server_config,
            verifier,
            server_certificate,
            trust,
            trust_notes,
        })
    }

    fn server_config(
        &self,
        chain: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
        cert_path: &Path,
        key_path: &Path,
        verifier: Option<Arc<ClientVerifier>>,
    ) -> Result<Arc<ServerConfig>, ConfigError> {
        let signing_key = self
            .provider
            .key_provider
            .load_private_key(key)
            .map_err(|e| ConfigError::UnsupportedKey {
                path: key_path.to_owned(),
                reason: e.to_string(),
            })?;
        let certified = CertifiedKey::new(chain, signing_key);
        match certified.keys_match() {
            Ok(()) | Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => {}
            Err(rustls::Error::InconsistentKeys(_)) => {
                return Err(ConfigError::KeyMismatch {
                    cert: cert_path.to_owned(),
                    key: key_path.to_owned(),
                });
            }
            Err(e) => {
                return Err(ConfigError::InvalidCertificate {
                    path: cert_path.to_owned(),
                    index: 1,
                    reason: e.to_string(),
                });
            }
        }

        let versions: &[&'static rustls::SupportedProtocolVersion] = if self.tls12 {
            &[&rustls::version::TLS13, &rustls::version::TLS12]
        } else {
            &[&rustls::version::TLS13]
        };
        let builder = ServerConfig::builder_with_provider(self.provider.clone())
            .with_protocol_versions(versions)?;
        let builder = match verifier {
            Some(v) => builder.with_client_cert_verifier(v as Arc<dyn ClientCertVerifier>),
            None => builder.with_no_client_auth(),
        };
        let mut config = builder.with_cert_resolver(Arc::new(SingleCertAndKey::from(certified)));
        config.alpn_protocols = self.alpn.clone();
        if self.client_auth != ClientAuth::None {
            // Sessions expire with the client verification they were made from.
            config.session_storage = Arc::new(crate::session::BoundedSessions::new());
        }
        Ok(Arc::new(config))
    }
}

/// A server's TLS configuration: identity, client trust, client-auth mode.
///
/// Cheap to clone (an `Arc`); clones share one live state, so a reload through any clone is
/// seen by every [`TlsAcceptor`](crate::TlsAcceptor) built from any of them.
#[derive(Clone)]
pub struct TlsConfig {
    pub(crate) shared: Arc<Shared>,
}

pub(crate) struct Shared {
    pub(crate) spec: Spec,
    pub(crate) active: RwLock<Arc<Active>>,
    pub(crate) reload: ReloadState,
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
    /// Starts a [`TlsConfigBuilder`].
    pub fn builder() -> TlsConfigBuilder {
        TlsConfigBuilder::default()
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
                kind: crate::HandshakeFailure::UnknownCa,
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
