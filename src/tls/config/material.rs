//! The material of a configuration: its sources read ([`Inputs`]), and one built generation
//! ([`Active`]: the rustls `ServerConfig`, the verifier, what to log about the trust).
//!
//! Handshakes only ever read an `Active`; reloads build a new one from fresh `Inputs` and swap
//! it in whole.

use std::path::Path;
use std::sync::Arc;

use rustls::ServerConfig;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::danger::ClientCertVerifier;
use rustls::sign::{CertifiedKey, SingleCertAndKey};

use crate::crypto::Sha256;
use crate::identity::{CertificateSummary, Fingerprint};
use crate::tls::config::error::ConfigError;
use crate::tls::config::load::{self, LoadedFile, Source, SourceFiles};
use crate::tls::trust::tickets::{self, SessionTicketKeys, TicketCounters, Ticketer};
use crate::tls::trust::verify::{ChainLimits, ClientAuth, ClientVerifier, TrustNote, TrustSummary};

/// The sources and options a configuration is (re)built from.
#[derive(Debug)]
pub(crate) struct Spec {
    pub(crate) server_cert: Source,
    pub(crate) server_key: Source,
    pub(crate) client_trust: Vec<Source>,
    pub(crate) client_crls: Vec<Source>,
    pub(crate) client_auth: ClientAuth,
    pub(crate) provider: Arc<CryptoProvider>,
    pub(crate) tls12: bool,
    pub(crate) alpn: Vec<Vec<u8>>,
    pub(crate) chain_limits: ChainLimits,
    pub(crate) require_fresh_crls: bool,
    /// The shared session ticket key file, when tickets are to resume across replicas.
    pub(crate) session_ticket_keys: Option<Source>,
    /// The ticket counters, kept across generations.
    pub(crate) ticket_counters: Arc<TicketCounters>,
}

/// Everything read from the sources, before anything is built from it.
pub(crate) struct Inputs {
    cert_file: LoadedFile,
    key_file: LoadedFile,
    trust: Vec<(usize, SourceFiles)>,
    crls: Vec<(usize, SourceFiles)>,
    /// Digest of the server identity files: equal digests, same identity.
    pub(crate) identity_digest: Fingerprint,
    /// Digest of the trust and CRL files.
    pub(crate) trust_digest: Fingerprint,
    ticket_keys: Option<LoadedFile>,
    /// Digest of the session ticket key file (of nothing without one).
    pub(crate) tickets_digest: Fingerprint,
}

impl Drop for Inputs {
    fn drop(&mut self) {
        // The ticket key file is read on every watch tick: leave no copy of it behind.
        if let Some(file) = &mut self.ticket_keys {
            tickets::wipe(&mut file.bytes);
        }
    }
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
    /// Digest of the trust and CRL files it was built from ([`Inputs::trust_digest`]).
    pub(crate) trust_digest: Fingerprint,
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
            .chain(&self.session_ticket_keys)
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
        let mut read_all = |sources: &[Source], max: u64| -> Result<Vec<_>, ConfigError> {
            let mut out = Vec::new();
            for (i, source) in sources.iter().enumerate() {
                let read = source.read_up_to(max)?;
                read.files.iter().for_each(|f| note(&mut trust_digest, f));
                trust_digest.update(&[0xff]);
                out.push((i, read));
            }
            Ok(out)
        };
        let trust = read_all(&self.client_trust, load::MAX_PEM_FILE)?;
        let crls = read_all(&self.client_crls, load::MAX_CRL_FILE)?;
        let ticket_keys = self
            .session_ticket_keys
            .as_ref()
            .map(Source::read_file)
            .transpose()?;
        let mut tickets_digest = Sha256::new();
        if let Some(file) = &ticket_keys {
            note(&mut tickets_digest, file);
        }
        Ok(Inputs {
            cert_file,
            key_file,
            trust,
            crls,
            identity_digest: Fingerprint::from_bytes(identity.finish()),
            trust_digest: Fingerprint::from_bytes(trust_digest.finish()),
            ticket_keys,
            tickets_digest: Fingerprint::from_bytes(tickets_digest.finish()),
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
        let server_certificate = CertificateSummary::of(chain[0].as_ref()).map_err(|e| {
            ConfigError::InvalidCertificate {
                path: cert_path.clone(),
                index: 1,
                reason: e.to_string(),
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
        let ticketer = match &inputs.ticket_keys {
            None => None,
            Some(file) => {
                let keys = SessionTicketKeys::parse(&file.path, &file.bytes)?;
                let binding = tickets::trust_binding(
                    &inputs.trust_digest,
                    self.client_auth,
                    self.require_fresh_crls,
                    self.chain_limits,
                );
                Some(Arc::new(Ticketer::new(
                    Arc::new(keys),
                    binding,
                    self.provider.secure_random,
                    self.ticket_counters.clone(),
                    self.client_auth,
                )))
            }
        };
        let server_config = self.server_config(
            chain,
            key,
            cert_path,
            &inputs.key_file.path,
            verifier.clone(),
            ticketer,
        )?;
        Ok(Active {
            server_config,
            verifier,
            server_certificate,
            trust,
            trust_notes,
            trust_digest: inputs.trust_digest,
        })
    }

    fn server_config(
        &self,
        chain: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
        cert_path: &Path,
        key_path: &Path,
        verifier: Option<Arc<ClientVerifier>>,
        ticketer: Option<Arc<Ticketer>>,
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
            config.session_storage = Arc::new(crate::tls::trust::session::BoundedSessions::new());
        }
        if let Some(ticketer) = ticketer {
            // Stateless tickets (TLS 1.3 and 1.2) that every replica with the same keys and
            // trust can resume; TLS 1.2 session ids stay in the bounded store above.
            config.ticketer = ticketer;
        }
        Ok(Arc::new(config))
    }
}
