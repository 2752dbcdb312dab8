//! The client trust alone: the verdict a handshake would give a client certificate, built from
//! trust sources and CRLs without the server's certificate or private key.
//!
//! A [`TlsConfig`](crate::TlsConfig) needs the server identity to build; a question such as
//! "would the extension accept this client certificate?" does not. [`ClientTrust`] reads the
//! same sources through the same loading and builds the same verifier the handshake uses, so
//! its verdict is the handshake's (short of the proof that the client holds its key).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::SystemTime;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::CertificateDer;

use crate::tls::config::error::ConfigError;
use crate::tls::config::load::{self, Source};
use crate::tls::trust::verify::{
    ChainLimits, ClientAccepted, ClientAuth, ClientRefused, ClientVerifier, TrustDetails,
    TrustNote, TrustSummary,
};

/// The client trust of a configuration — trusted CAs, pinned client certificates, CRLs —
/// judging client certificate chains as a handshake would. Built by [`ClientTrust::builder`].
///
/// ```no_run
/// use std::time::SystemTime;
/// use tower_mtls::tls::{ClientTrust, certificates_from_file};
///
/// # fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let trust = ClientTrust::builder()
///     .client_trust("/etc/extension/certificates/agent-cert") // file or secret directory
///     .client_crl("/etc/extension/crls")
///     .build()?;
/// let chain = certificates_from_file("agent/tls.crt".as_ref())?;
/// match trust.verify_client_chain(&chain, SystemTime::now()) {
///     Ok(accepted) => println!("accepted: {}", accepted.subject),
///     Err(refused) => println!("refused ({}): {}", refused.kind, refused.reason),
/// }
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct ClientTrust {
    verifier: Arc<ClientVerifier>,
    summary: TrustSummary,
    notes: Arc<[TrustNote]>,
}

/// Builds a [`ClientTrust`]: the client-trust options of
/// [`TlsConfigBuilder`](crate::TlsConfigBuilder), with the same defaults.
#[derive(Debug, Clone)]
#[must_use]
pub struct ClientTrustBuilder {
    trust: Vec<Source>,
    crls: Vec<Source>,
    require_fresh_crls: bool,
    chain_limits: ChainLimits,
    provider: Option<Arc<CryptoProvider>>,
}

impl ClientTrust {
    /// A builder with no trust source yet.
    pub fn builder() -> ClientTrustBuilder {
        ClientTrustBuilder {
            trust: Vec::new(),
            crls: Vec::new(),
            require_fresh_crls: false,
            chain_limits: ChainLimits::default(),
            provider: None,
        }
    }

    /// Judges a client certificate chain (leaf first) as a handshake at `time` would, through
    /// the handshake's verifier: anchors, pinned certificates, CRLs and chain limits. Like
    /// [`TlsConfig::verify_client_chain`](crate::TlsConfig::verify_client_chain), it cannot
    /// check that the client holds the leaf's key.
    pub fn verify_client_chain(
        &self,
        chain: &[CertificateDer<'_>],
        time: SystemTime,
    ) -> Result<ClientAccepted, ClientRefused> {
        self.verifier.judge(chain, time)
    }

    /// How many CAs, pinned certificates and CRLs the trust holds.
    pub fn trust_summary(&self) -> TrustSummary {
        self.summary.clone()
    }

    /// Each CA, pinned certificate and CRL, and the warnings a server would log about them.
    pub fn trust_details(&self) -> TrustDetails {
        TrustDetails::from_notes(&self.notes, self.verifier.hints())
    }
}

impl ClientTrustBuilder {
    /// Trusts the certificates of a PEM file or of a directory of them (a mounted secret), as
    /// [`TlsConfigBuilder::client_trust`](crate::TlsConfigBuilder::client_trust) does.
    pub fn client_trust(mut self, path: impl Into<PathBuf>) -> Self {
        self.trust.push(Source::Path(path.into()));
        self
    }

    /// Certificate revocation lists: a file (PEM or DER) or a directory of them.
    pub fn client_crl(mut self, path: impl Into<PathBuf>) -> Self {
        self.crls.push(Source::Path(path.into()));
        self
    }

    /// Refuse a client whose issuer's CRL is past its nextUpdate (default: no), as
    /// [`TlsConfigBuilder::require_fresh_crls`](crate::TlsConfigBuilder::require_fresh_crls).
    pub fn require_fresh_crls(mut self, required: bool) -> Self {
        self.require_fresh_crls = required;
        self
    }

    /// Caps the client's chain, as
    /// [`TlsConfigBuilder::max_client_chain`](crate::TlsConfigBuilder::max_client_chain).
    pub fn max_client_chain(mut self, max_certs: usize, max_bytes: usize) -> Self {
        self.chain_limits = ChainLimits {
            max_certs,
            max_bytes,
        };
        self
    }

    /// The crypto provider whose signature algorithms verify chains (default
    /// [`default_provider`](crate::tls::default_provider)).
    pub fn crypto_provider(mut self, provider: Arc<CryptoProvider>) -> Self {
        self.provider = Some(provider);
        self
    }

    /// Reads every source and builds the verifier, with the errors a server's startup would
    /// give (naming the file). At least one trust source is required.
    pub fn build(self) -> Result<ClientTrust, ConfigError> {
        if self.trust.is_empty() {
            return Err(ConfigError::NoClientTrust {
                mode: ClientAuth::Required.as_str(),
            });
        }
        let mut trust = Vec::new();
        for source in &self.trust {
            trust.extend(load::trust_certificates(source, &source.read()?)?);
        }
        let mut crls = Vec::new();
        for source in &self.crls {
            crls.extend(load::crls(source, &source.read()?)?);
        }
        let provider = crate::crypto::provider(self.provider)?;
        let (verifier, summary, notes) = ClientVerifier::build(
            &trust,
            &crls,
            ClientAuth::Required,
            self.chain_limits,
            self.require_fresh_crls,
            &provider,
        )?;
        Ok(ClientTrust {
            verifier,
            summary,
            notes: notes.into(),
        })
    }
}
