//! The agent side of the Steadybit contract: how the agent connects to an extension.
//!
//! Steadybit's agent Helm chart (`agent.extensions.tls.*`) hands the agent these variables:
//!
//! | variable | meaning |
//! |---|---|
//! | `STEADYBIT_AGENT_EXTENSIONS_CLIENT_CERT_CHAIN_FILE` | PEM: the agent's client certificate chain, leaf first |
//! | `STEADYBIT_AGENT_EXTENSIONS_CLIENT_CERT_KEY_FILE` | PEM: its key, plain (PKCS#8, PKCS#1, SEC1) or encrypted PKCS#8 |
//! | `STEADYBIT_AGENT_EXTENSIONS_CLIENT_CERT_PASSWORD` | the key's password, when it is encrypted |
//! | `STEADYBIT_AGENT_EXTENSIONS_SERVER_CERT` | PEM: the extension's certificate, or its CA, to trust |
//! | `STEADYBIT_AGENT_EXTENSIONS_HOSTNAME_VERIFICATION` | `strict`, `unsafe` or `unsafe_ip_addresses` (default) |
//!
//! [`AgentTls`] reads them ([`AgentTls::from_env`], [`AgentTls::from_lookup`]) or takes each
//! value from a builder method, and builds the rustls [`ClientConfig`] the agent's JVM would
//! effectively use ([`AgentTls::client_config`]): the server certificate file may hold the
//! extension's own leaf — *pinned*, accepted as itself while it is valid, as a Java trust store
//! accepts a trusted end-entity certificate — or the CA that issued it. The hostname modes only
//! ever forgive a name mismatch; every other check (chain, validity, signatures) still applies.
//!
//! The JVM's key manager sends a client certificate only when the issuer of a certificate in
//! its chain is among the CA names of the server's CertificateRequest (an empty list gets no
//! certificate): [`jvm_key_manager_choice`] applies that rule, so tools can tell why a JVM
//! agent stays silent where rustls would have sent its certificate.
//!
//! ```no_run
//! use tower_mtls::agent::{AgentTls, HostnameVerification};
//!
//! # fn run() -> Result<(), tower_mtls::agent::AgentError> {
//! // From the agent's environment, as its Helm chart sets it…
//! let config = AgentTls::from_env()?.client_config()?;
//! // …or spelled out; each builder method overrides what the environment said.
//! let config = AgentTls::new()
//!     .client_cert_chain_file("/etc/agent/tls/tls.crt")
//!     .client_key_file("/etc/agent/tls/tls.key")
//!     .client_key_password("changeit")
//!     .server_cert_file("/etc/agent/extension-ca.crt")
//!     .hostname_verification(HostnameVerification::Strict)
//!     .client_config()?;
//! # drop(config);
//! # Ok(()) }
//! ```

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{WebPkiServerVerifier, verify_server_name};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::ParsedCertificate;
use rustls::sign::{CertifiedKey, SingleCertAndKey};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, Error, RootCertStore, SignatureScheme,
};
use x509_parser::certificate::X509Certificate;
use x509_parser::prelude::FromDer;
use x509_parser::x509::X509Name;

use crate::crl::NameKey;
use crate::crypto::default_provider;
use crate::error::ConfigError;
use crate::load::{self, LoadedFile, Source};

/// The agent's environment variable names.
pub mod vars {
    /// PEM file: the agent's client certificate chain, leaf first.
    pub const CLIENT_CERT_CHAIN_FILE: &str = "STEADYBIT_AGENT_EXTENSIONS_CLIENT_CERT_CHAIN_FILE";
    /// PEM file: the client certificate's key, possibly encrypted (PKCS#8).
    pub const CLIENT_CERT_KEY_FILE: &str = "STEADYBIT_AGENT_EXTENSIONS_CLIENT_CERT_KEY_FILE";
    /// The key's password, when it is encrypted.
    pub const CLIENT_CERT_PASSWORD: &str = "STEADYBIT_AGENT_EXTENSIONS_CLIENT_CERT_PASSWORD";
    /// PEM file: the extension's certificate (or its CA) that the agent trusts.
    pub const SERVER_CERT: &str = "STEADYBIT_AGENT_EXTENSIONS_SERVER_CERT";
    /// `strict`, `unsafe` or `unsafe_ip_addresses`.
    pub const HOSTNAME_VERIFICATION: &str = "STEADYBIT_AGENT_EXTENSIONS_HOSTNAME_VERIFICATION";
}

/// Whether the agent checks that the extension's certificate is made out for the name it
/// connects to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum HostnameVerification {
    /// Always check the name (DNS name or IP address) against the certificate's SANs.
    Strict,
    /// Never check the name. The certificate must still be trusted and valid.
    Unsafe,
    /// Skip the name check only when connecting by IP address (the agent's default: pods are
    /// often called by IP, and their certificates rarely list it).
    #[default]
    UnsafeIpAddresses,
}

impl HostnameVerification {
    /// The value as the variable spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Strict => "strict",
            Self::Unsafe => "unsafe",
            Self::UnsafeIpAddresses => "unsafe_ip_addresses",
        }
    }

    /// Whether a certificate not made out for `server_name` is still accepted in this mode.
    pub fn forgives_name_mismatch(self, server_name: &ServerName<'_>) -> bool {
        match self {
            Self::Strict => false,
            Self::Unsafe => true,
            Self::UnsafeIpAddresses => matches!(server_name, ServerName::IpAddress(_)),
        }
    }
}

impl fmt::Display for HostnameVerification {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A value that is not one of `strict`, `unsafe`, `unsafe_ip_addresses`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("expected strict, unsafe or unsafe_ip_addresses, got {value:?}")]
pub struct InvalidHostnameVerification {
    /// The value given.
    pub value: String,
}

/// Parses `strict`, `unsafe` or `unsafe_ip_addresses` (ASCII case-insensitive, surrounding
/// spaces ignored).
impl FromStr for HostnameVerification {
    type Err = InvalidHostnameVerification;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let v = s.trim();
        [Self::Strict, Self::Unsafe, Self::UnsafeIpAddresses]
            .into_iter()
            .find(|mode| v.eq_ignore_ascii_case(mode.as_str()))
            .ok_or_else(|| InvalidHostnameVerification { value: s.into() })
    }
}

/// Why the agent's TLS configuration cannot be built. Every variant names the variable, and
/// the file when there is one.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AgentError {
    /// A variable is malformed, or inconsistent with another one.
    #[error("{variable}: {reason}")]
    Env {
        /// The variable at fault.
        variable: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// The file a variable points to is missing, unreadable or holds the wrong thing.
    #[error("{variable}: {source}")]
    File {
        /// The variable whose file it is.
        variable: &'static str,
        /// What is wrong, naming the file.
        #[source]
        source: ConfigError,
    },
    /// The key is encrypted and no password is set.
    #[error(
        "{}: {}: the private key is encrypted, but {} is not set",
        vars::CLIENT_CERT_KEY_FILE,
        path.display(),
        vars::CLIENT_CERT_PASSWORD
    )]
    PasswordRequired {
        /// The key file.
        path: PathBuf,
    },
    /// The password does not decrypt the key.
    #[error(
        "{}: {}: wrong password: {} does not decrypt this key (or the key is damaged)",
        vars::CLIENT_CERT_KEY_FILE,
        path.display(),
        vars::CLIENT_CERT_PASSWORD
    )]
    WrongPassword {
        /// The key file.
        path: PathBuf,
    },
    /// The encrypted key cannot be decoded or uses an unsupported cipher.
    #[error("{}: {}: unusable encrypted private key: {reason}", vars::CLIENT_CERT_KEY_FILE, path.display())]
    EncryptedKey {
        /// The key file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// rustls refused the assembled configuration.
    #[error("TLS client configuration rejected: {0}")]
    Tls(#[from] rustls::Error),
}

/// The agent's TLS settings, and the rustls client configuration built from them. See the
/// [module documentation](self).
#[derive(Clone)]
#[must_use]
pub struct AgentTls {
    client_cert_chain: Option<PathBuf>,
    client_key: Option<PathBuf>,
    key_password: Option<String>,
    server_cert: Option<PathBuf>,
    hostname_verification: HostnameVerification,
    provider: Option<Arc<CryptoProvider>>,
}

impl fmt::Debug for AgentTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AgentTls")
            .field("client_cert_chain", &self.client_cert_chain)
            .field("client_key", &self.client_key)
            // Never the password itself.
            .field("key_password", &self.key_password.as_ref().map(|_| "<set>"))
            .field("server_cert", &self.server_cert)
            .field("hostname_verification", &self.hostname_verification)
            .finish()
    }
}

impl Default for AgentTls {
    fn default() -> Self {
        Self::new()
    }
}

impl AgentTls {
    /// Nothing configured: hostname verification `unsafe_ip_addresses`, no client
    /// certificate, no server trust (which [`client_config`](Self::client_config) requires).
    pub fn new() -> Self {
        Self {
            client_cert_chain: None,
            client_key: None,
            key_password: None,
            server_cert: None,
            hostname_verification: HostnameVerification::default(),
            provider: None,
        }
    }

    /// Reads the agent's variables from the process environment.
    pub fn from_env() -> Result<Self, AgentError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads the agent's variables through `lookup` (a variable name → its value). Empty values
    /// count as unset; files are read only by [`client_config`](Self::client_config).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, AgentError> {
        let get = |name: &str| {
            lookup(name)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        let mut tls = Self::new();
        tls.client_cert_chain = get(vars::CLIENT_CERT_CHAIN_FILE).map(PathBuf::from);
        tls.client_key = get(vars::CLIENT_CERT_KEY_FILE).map(PathBuf::from);
        // A password is taken as it is: spaces may belong to it.
        tls.key_password = lookup(vars::CLIENT_CERT_PASSWORD).filter(|v| !v.is_empty());
        tls.server_cert = get(vars::SERVER_CERT).map(PathBuf::from);
        if let Some(mode) = get(vars::HOSTNAME_VERIFICATION) {
            tls.hostname_verification =
                mode.parse()
                    .map_err(|e: InvalidHostnameVerification| AgentError::Env {
                        variable: vars::HOSTNAME_VERIFICATION,
                        reason: e.to_string(),
                    })?;
        }
        Ok(tls)
    }

    /// The client certificate chain: a PEM file, leaf first.
    pub fn client_cert_chain_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.client_cert_chain = Some(path.into());
        self
    }

    /// The client certificate's key: a PEM file, plain or encrypted PKCS#8.
    pub fn client_key_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.client_key = Some(path.into());
        self
    }

    /// The password of an encrypted key.
    pub fn client_key_password(mut self, password: impl Into<String>) -> Self {
        self.key_password = Some(password.into());
        self
    }

    /// The extension's certificate, or its CA, to trust: a PEM file. CA certificates become
    /// trust anchors; an end-entity certificate is pinned (accepted as itself while valid).
    pub fn server_cert_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.server_cert = Some(path.into());
        self
    }

    /// How the server's name is checked (default
    /// [`UnsafeIpAddresses`](HostnameVerification::UnsafeIpAddresses)).
    pub fn hostname_verification(mut self, mode: HostnameVerification) -> Self {
        self.hostname_verification = mode;
        self
    }

    /// The crypto provider. Defaults to [`crate::default_provider`]; the process-wide default
    /// is never consulted.
    pub fn crypto_provider(mut self, provider: Arc<CryptoProvider>) -> Self {
        self.provider = Some(provider);
        self
    }

    /// The client certificate chain file, if set.
    pub fn client_cert_chain_path(&self) -> Option<&Path> {
        self.client_cert_chain.as_deref()
    }

    /// The key file, if set.
    pub fn client_key_path(&self) -> Option<&Path> {
        self.client_key.as_deref()
    }

    /// Whether a key password is set.
    pub fn has_key_password(&self) -> bool {
        self.key_password.is_some()
    }

    /// The trusted server certificate file, if set.
    pub fn server_cert_path(&self) -> Option<&Path> {
        self.server_cert.as_deref()
    }

    /// The hostname verification mode.
    pub fn hostname_verification_mode(&self) -> HostnameVerification {
        self.hostname_verification
    }

    /// Loads every file and builds the rustls client configuration: TLS 1.3 and 1.2, ALPN
    /// `h2` and `http/1.1`, the client certificate when one is configured, and a server
    /// verifier for the trusted certificate(s) and the hostname mode.
    pub fn client_config(&self) -> Result<Arc<ClientConfig>, AgentError> {
        let provider = self.provider.clone().unwrap_or_else(default_provider);
        let verifier = self.server_cert_verifier_with(provider.clone())?;
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
            .dangerous()
            .with_custom_certificate_verifier(verifier);
        let mut config = match self.client_identity(&provider)? {
            Some(certified) => {
                builder.with_client_cert_resolver(Arc::new(SingleCertAndKey::from(certified)))
            }
            None => builder.with_no_client_auth(),
        };
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }

    /// The verifier [`client_config`](Self::client_config) checks the extension's certificate
    /// with, for tools that wrap it (to record what the server presented, say).
    pub fn server_cert_verifier(&self) -> Result<Arc<dyn ServerCertVerifier>, AgentError> {
        self.server_cert_verifier_with(self.provider.clone().unwrap_or_else(default_provider))
    }

    fn server_cert_verifier_with(
        &self,
        provider: Arc<CryptoProvider>,
    ) -> Result<Arc<dyn ServerCertVerifier>, AgentError> {
        let server_cert = self.server_cert.as_ref().ok_or(AgentError::Env {
            variable: vars::SERVER_CERT,
            reason: "not set: the agent needs the extension's certificate (its tls.crt) or the \
                     CA that issued it, to trust"
                .into(),
        })?;
        Ok(Arc::new(AgentServerVerifier::load(
            server_cert,
            self.hostname_verification,
            provider,
        )?))
    }

    /// The client certificate chain and signing key, checked to belong together; `None`
    /// without a client certificate.
    fn client_identity(
        &self,
        provider: &CryptoProvider,
    ) -> Result<Option<CertifiedKey>, AgentError> {
        let (cert_path, key_path) = match (&self.client_cert_chain, &self.client_key) {
            (None, None) => {
                if self.key_password.is_some() {
                    return Err(AgentError::Env {
                        variable: vars::CLIENT_CERT_PASSWORD,
                        reason: format!("set, but {} is not", vars::CLIENT_CERT_KEY_FILE),
                    });
                }
                return Ok(None);
            }
            (Some(cert), Some(key)) => (cert, key),
            (Some(_), None) => {
                return Err(AgentError::Env {
                    variable: vars::CLIENT_CERT_KEY_FILE,
                    reason: format!(
                        "not set, but {} is: a client certificate needs its key",
                        vars::CLIENT_CERT_CHAIN_FILE
                    ),
                });
            }
            (None, Some(_)) => {
                return Err(AgentError::Env {
                    variable: vars::CLIENT_CERT_CHAIN_FILE,
                    reason: format!(
                        "not set, but {} is: a key needs its certificate",
                        vars::CLIENT_CERT_KEY_FILE
                    ),
                });
            }
        };
        let chain = certificates_from_file(cert_path).map_err(|source| AgentError::File {
            variable: vars::CLIENT_CERT_CHAIN_FILE,
            source,
        })?;
        let key_file = read(vars::CLIENT_CERT_KEY_FILE, key_path)?;
        let key = self.private_key(&key_file)?;
        let signing_key =
            provider
                .key_provider
                .load_private_key(key)
                .map_err(|e| AgentError::File {
                    variable: vars::CLIENT_CERT_KEY_FILE,
                    source: ConfigError::UnsupportedKey {
                        path: key_path.clone(),
                        reason: e.to_string(),
                    },
                })?;
        let certified = CertifiedKey::new(chain, signing_key);
        match certified.keys_match() {
            Ok(()) | Err(Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => {}
            Err(_) => {
                return Err(AgentError::File {
                    variable: vars::CLIENT_CERT_KEY_FILE,
                    source: ConfigError::KeyMismatch {
                        cert: cert_path.clone(),
                        key: key_path.clone(),
                    },
                });
            }
        }
        Ok(Some(certified))
    }

    /// The key of `file`: decrypted when it is an encrypted PKCS#8 key, else as the server
    /// reads keys (PKCS#8, PKCS#1, SEC1).
    fn private_key(&self, file: &LoadedFile) -> Result<PrivateKeyDer<'static>, AgentError> {
        let Some(encrypted) = encrypted_pkcs8_block(&file.bytes) else {
            if self.key_password.is_some() {
                tracing::warn!(
                    path = %file.path.display(),
                    "{} is set, but the key is not encrypted; the password is not used",
                    vars::CLIENT_CERT_PASSWORD
                );
            }
            return load::private_key(file).map_err(|source| AgentError::File {
                variable: vars::CLIENT_CERT_KEY_FILE,
                source,
            });
        };
        let path = file.path.clone();
        let der = pkcs8::der::pem::decode_vec(encrypted)
            .map(|(_, der)| der)
            .map_err(|e| AgentError::EncryptedKey {
                path: path.clone(),
                reason: format!("malformed PEM: {e}"),
            })?;
        let info = pkcs8::EncryptedPrivateKeyInfo::try_from(der.as_slice()).map_err(|e| {
            AgentError::EncryptedKey {
                path: path.clone(),
                reason: e.to_string(),
            }
        })?;
        let Some(password) = &self.key_password else {
            return Err(AgentError::PasswordRequired { path });
        };
        let decrypted = info.decrypt(password.as_bytes()).map_err(|e| match e {
            // A wrong password shows as bad padding (CBC) or an undecodable result; pkcs5 0.7
            // reports bad padding as `EncryptFailed`.
            pkcs8::Error::EncryptedPrivateKey(
                pkcs8::pkcs5::Error::DecryptFailed | pkcs8::pkcs5::Error::EncryptFailed,
            )
            | pkcs8::Error::Asn1(_)
            | pkcs8::Error::KeyMalformed => AgentError::WrongPassword { path: path.clone() },
            other => AgentError::EncryptedKey {
                path: path.clone(),
                reason: other.to_string(),
            },
        })?;
        // Garbage that happens to unpad must still be a PrivateKeyInfo.
        pkcs8::PrivateKeyInfo::try_from(decrypted.as_bytes())
            .map_err(|_| AgentError::WrongPassword { path: path.clone() })?;
        Ok(PrivateKeyDer::Pkcs8(decrypted.as_bytes().to_vec().into()))
    }
}

/// The `ENCRYPTED PRIVATE KEY` PEM block of `bytes`, begin and end lines included.
fn encrypted_pkcs8_block(bytes: &[u8]) -> Option<&[u8]> {
    const BEGIN: &[u8] = b"-----BEGIN ENCRYPTED PRIVATE KEY-----";
    const END: &[u8] = b"-----END ENCRYPTED PRIVATE KEY-----";
    let start = find(bytes, BEGIN)?;
    let end = start + find(&bytes[start..], END)? + END.len();
    Some(&bytes[start..end])
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn read(variable: &'static str, path: &Path) -> Result<LoadedFile, AgentError> {
    Source::Path(path.to_owned())
        .read_file()
        .map_err(|source| AgentError::File { variable, source })
}

/// The certificates of a PEM file, in order, read as the server reads its certificate file
/// (an error naming the file when it is missing, unreadable or holds no certificate).
pub fn certificates_from_file(path: &Path) -> Result<Vec<CertificateDer<'static>>, ConfigError> {
    let file = Source::Path(path.to_owned()).read_file()?;
    load::certificates(&file)
}

/// Verifies the extension's certificate as the agent does: against the pinned end-entity
/// certificates and the CAs of its server-certificate file, forgiving a name mismatch only
/// where the [`HostnameVerification`] mode allows.
#[derive(Debug)]
struct AgentServerVerifier {
    /// rustls's verifier over the CA certificates; `None` when the file holds none.
    webpki: Option<Arc<WebPkiServerVerifier>>,
    pinned: Vec<Pinned>,
    mode: HostnameVerification,
    algorithms: WebPkiSupportedAlgorithms,
}

#[derive(Debug)]
struct Pinned {
    der: CertificateDer<'static>,
    not_before: i64,
    not_after: i64,
}

impl AgentServerVerifier {
    fn load(
        path: &Path,
        mode: HostnameVerification,
        provider: Arc<CryptoProvider>,
    ) -> Result<Self, AgentError> {
        let file_error = |source| AgentError::File {
            variable: vars::SERVER_CERT,
            source,
        };
        let certs = certificates_from_file(path).map_err(file_error)?;
        let mut roots = RootCertStore::empty();
        let mut pinned = Vec::new();
        for (i, der) in certs.into_iter().enumerate() {
            let invalid = |reason: String| {
                file_error(ConfigError::InvalidCertificate {
                    path: path.to_owned(),
                    index: i + 1,
                    reason,
                })
            };
            let (_, parsed) =
                X509Certificate::from_der(der.as_ref()).map_err(|e| invalid(e.to_string()))?;
            // Undecodable basicConstraints is an error, never a guess either way.
            let is_ca = parsed
                .basic_constraints()
                .map_err(|e| invalid(format!("basicConstraints does not decode ({e})")))?
                .is_some_and(|bc| bc.value.ca);
            if is_ca {
                roots
                    .add(der.clone())
                    .map_err(|e| invalid(format!("not a usable trust anchor: {e}")))?;
            } else {
                pinned.push(Pinned {
                    not_before: parsed.validity().not_before.timestamp(),
                    not_after: parsed.validity().not_after.timestamp(),
                    der,
                });
            }
        }
        let algorithms = provider.signature_verification_algorithms;
        let webpki = if roots.is_empty() {
            None
        } else {
            Some(
                WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
                    .build()
                    .map_err(|e| Error::General(e.to_string()))?,
            )
        };
        Ok(Self {
            webpki,
            pinned,
            mode,
            algorithms,
        })
    }

    fn forgive(&self, result: Result<(), Error>, name: &ServerName<'_>) -> Result<(), Error> {
        match result {
            Err(Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) if self.mode.forgives_name_mismatch(name) => {
                tracing::debug!(mode = %self.mode, "server certificate name mismatch forgiven");
                Ok(())
            }
            other => other,
        }
    }
}

impl ServerCertVerifier for AgentServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        if let Some(pin) = self.pinned.iter().find(|p| p.der == *end_entity) {
            let at = |s: i64| {
                UnixTime::since_unix_epoch(Duration::from_secs(u64::try_from(s).unwrap_or(0)))
            };
            let secs = i64::try_from(now.as_secs()).unwrap_or(i64::MAX);
            if secs < pin.not_before {
                return Err(Error::InvalidCertificate(
                    CertificateError::NotValidYetContext {
                        time: now,
                        not_before: at(pin.not_before),
                    },
                ));
            }
            if secs > pin.not_after {
                return Err(Error::InvalidCertificate(
                    CertificateError::ExpiredContext {
                        time: now,
                        not_after: at(pin.not_after),
                    },
                ));
            }
            let parsed = ParsedCertificate::try_from(end_entity)?;
            self.forgive(verify_server_name(&parsed, server_name), server_name)?;
            return Ok(ServerCertVerified::assertion());
        }
        let Some(webpki) = &self.webpki else {
            return Err(Error::InvalidCertificate(CertificateError::UnknownIssuer));
        };
        // rustls checks the name last, after the chain, validity and revocation: a name error
        // means everything else passed.
        self.forgive(
            webpki
                .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
                .map(|_| ()),
            server_name,
        )?;
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// What the JVM's default key manager does with a client certificate chain, given the CA names
/// of the server's CertificateRequest: see [`jvm_key_manager_choice`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum JvmChoice {
    /// The server listed no CA names: the JVM sends no certificate.
    NoCaNames,
    /// The issuer of certificate `index` of the chain (0 is the leaf) is among the names: the
    /// JVM sends the chain.
    Offers {
        /// Position in the chain, from 0.
        index: usize,
        /// The matching issuer name, RFC 4514.
        issuer: String,
    },
    /// No certificate of the chain has an issuer among the names: the JVM sends no
    /// certificate.
    NoMatch,
}

impl JvmChoice {
    /// Whether the JVM would send the chain.
    pub fn offers(&self) -> bool {
        matches!(self, Self::Offers { .. })
    }
}

/// The JVM key manager's rule: a chain is offered only if the issuer of one of its
/// certificates is among `ca_names` (DER-encoded X.500 names, as rustls hands them to
/// [`ResolvesClientCert::resolve`](rustls::client::ResolvesClientCert::resolve)); an empty list
/// gets no certificate. Names compare as the JVM's `X500Principal` does, by their canonical
/// form (attribute values case-folded and whitespace-collapsed), not byte for byte.
/// Certificates and names that do not parse match nothing.
pub fn jvm_key_manager_choice(chain: &[CertificateDer<'_>], ca_names: &[&[u8]]) -> JvmChoice {
    if ca_names.is_empty() {
        return JvmChoice::NoCaNames;
    }
    let names: Vec<NameKey> = ca_names
        .iter()
        .filter_map(|der| X509Name::from_der(der).ok().map(|(_, n)| NameKey::of(&n)))
        .collect();
    for (index, cert) in chain.iter().enumerate() {
        let Ok((_, parsed)) = X509Certificate::from_der(cert.as_ref()) else {
            continue;
        };
        if names.contains(&NameKey::of(parsed.issuer())) {
            return JvmChoice::Offers {
                index,
                issuer: name_text(parsed.issuer().as_raw()),
            };
        }
    }
    JvmChoice::NoMatch
}

/// A DER-encoded X.500 name (such as a CertificateRequest's CA name) in RFC 4514 form, with
/// control characters escaped; `<undecodable name>` when it does not parse.
pub fn name_text(der: &[u8]) -> String {
    X509Name::from_der(der)
        .ok()
        .and_then(|(_, name)| crate::identity::DistinguishedName::from_x509(&name, "name").ok())
        .map_or_else(|| "<undecodable name>".to_owned(), |n| n.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostname_verification_parses_the_three_values() {
        assert_eq!("strict".parse(), Ok(HostnameVerification::Strict));
        assert_eq!("unsafe".parse(), Ok(HostnameVerification::Unsafe));
        assert_eq!(
            "unsafe_ip_addresses".parse(),
            Ok(HostnameVerification::UnsafeIpAddresses)
        );
        assert_eq!(" STRICT ".parse(), Ok(HostnameVerification::Strict));
        for mode in [
            HostnameVerification::Strict,
            HostnameVerification::Unsafe,
            HostnameVerification::UnsafeIpAddresses,
        ] {
            assert_eq!(mode.as_str().parse(), Ok(mode));
        }
    }

    #[test]
    fn hostname_verification_refuses_anything_else() {
        for bad in ["", "none", "unsafe-ip-addresses", "true", "strictly"] {
            let err = bad.parse::<HostnameVerification>().unwrap_err();
            assert_eq!(err.value, bad);
            assert!(
                err.to_string()
                    .contains("strict, unsafe or unsafe_ip_addresses")
            );
        }
    }

    #[test]
    fn hostname_verification_defaults_to_unsafe_ip_addresses() {
        assert_eq!(
            HostnameVerification::default(),
            HostnameVerification::UnsafeIpAddresses
        );
        assert_eq!(
            AgentTls::new().hostname_verification_mode(),
            HostnameVerification::UnsafeIpAddresses
        );
    }

    #[test]
    fn a_bad_hostname_verification_variable_is_named() {
        let err = AgentTls::from_lookup(|name| {
            (name == vars::HOSTNAME_VERIFICATION).then(|| "sometimes".to_owned())
        })
        .unwrap_err();
        let text = err.to_string();
        assert!(text.starts_with(vars::HOSTNAME_VERIFICATION), "{text}");
        assert!(text.contains("\"sometimes\""), "{text}");
    }

    #[test]
    fn only_the_modes_that_say_so_forgive_a_name_mismatch() {
        let ip = ServerName::try_from("127.0.0.1").unwrap();
        let dns = ServerName::try_from("extension.example").unwrap();
        use HostnameVerification::*;
        assert!(!Strict.forgives_name_mismatch(&ip));
        assert!(!Strict.forgives_name_mismatch(&dns));
        assert!(Unsafe.forgives_name_mismatch(&ip));
        assert!(Unsafe.forgives_name_mismatch(&dns));
        assert!(UnsafeIpAddresses.forgives_name_mismatch(&ip));
        assert!(!UnsafeIpAddresses.forgives_name_mismatch(&dns));
    }

    #[test]
    fn the_agent_variables_are_read_and_empty_means_unset() {
        let tls = AgentTls::from_lookup(|name| match name {
            vars::CLIENT_CERT_CHAIN_FILE => Some("/a/tls.crt".into()),
            vars::CLIENT_CERT_KEY_FILE => Some(" /a/tls.key ".into()),
            vars::CLIENT_CERT_PASSWORD => Some(" secret ".into()),
            vars::SERVER_CERT => Some(String::new()),
            vars::HOSTNAME_VERIFICATION => Some("strict".into()),
            _ => None,
        })
        .unwrap();
        assert_eq!(tls.client_cert_chain_path(), Some(Path::new("/a/tls.crt")));
        assert_eq!(tls.client_key_path(), Some(Path::new("/a/tls.key")));
        assert_eq!(tls.key_password.as_deref(), Some(" secret "));
        assert_eq!(tls.server_cert_path(), None);
        assert_eq!(
            tls.hostname_verification_mode(),
            HostnameVerification::Strict
        );
        assert!(!format!("{tls:?}").contains("secret"));
        let err = tls.client_config().unwrap_err();
        assert!(err.to_string().starts_with(vars::SERVER_CERT), "{err}");
    }

    /// `SEQUENCE { SET { SEQUENCE { OID 2.5.4.3, UTF8String cn } } }`.
    fn cn_name(cn: &str) -> Vec<u8> {
        let mut atv = vec![0x06, 0x03, 0x55, 0x04, 0x03, 0x0c, cn.len() as u8];
        atv.extend_from_slice(cn.as_bytes());
        let mut seq = vec![0x30, atv.len() as u8];
        seq.extend(atv);
        let mut set = vec![0x31, seq.len() as u8];
        set.extend(seq);
        let mut name = vec![0x30, set.len() as u8];
        name.extend(set);
        name
    }

    /// A certificate for `subject` signed by a throwaway CA named `issuer`.
    fn cert_issued_by(issuer: &str, subject: &str) -> CertificateDer<'static> {
        let ca = rcgen::KeyPair::generate().unwrap();
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.distinguished_name = rcgen::DistinguishedName::new();
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, issuer);
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let issuer = rcgen::Issuer::new(ca_params, ca);
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, subject);
        params.signed_by(&key, &issuer).unwrap().der().clone()
    }

    #[test]
    fn the_jvm_offers_a_chain_whose_leaf_issuer_is_listed() {
        let leaf = cert_issued_by("Agent CA", "agent");
        let names = [cn_name("Other CA"), cn_name("Agent CA")];
        let names: Vec<&[u8]> = names.iter().map(Vec::as_slice).collect();
        let choice = jvm_key_manager_choice(&[leaf], &names);
        assert_eq!(
            choice,
            JvmChoice::Offers {
                index: 0,
                issuer: "CN=Agent CA".into()
            }
        );
        assert!(choice.offers());
    }

    #[test]
    fn the_jvm_offers_a_chain_whose_intermediate_issuer_is_listed() {
        let leaf = cert_issued_by("Agent Intermediate", "agent");
        let intermediate = cert_issued_by("Agent Root", "Agent Intermediate");
        let names = [cn_name("Agent Root")];
        let names: Vec<&[u8]> = names.iter().map(Vec::as_slice).collect();
        assert!(matches!(
            jvm_key_manager_choice(&[leaf, intermediate], &names),
            JvmChoice::Offers { index: 1, .. }
        ));
    }

    #[test]
    fn the_jvm_compares_names_canonically_not_byte_for_byte() {
        let leaf = cert_issued_by("Agent CA", "agent");
        let names = [cn_name("agent  ca")];
        let names: Vec<&[u8]> = names.iter().map(Vec::as_slice).collect();
        assert!(jvm_key_manager_choice(&[leaf], &names).offers());
    }

    #[test]
    fn the_jvm_sends_nothing_without_a_match_or_without_names() {
        let leaf = cert_issued_by("Agent CA", "agent");
        // The leaf's own subject is not its issuer: listing it does not help.
        let names = [cn_name("agent"), cn_name("Server CA")];
        let names: Vec<&[u8]> = names.iter().map(Vec::as_slice).collect();
        assert_eq!(
            jvm_key_manager_choice(std::slice::from_ref(&leaf), &names),
            JvmChoice::NoMatch
        );
        assert_eq!(jvm_key_manager_choice(&[leaf], &[]), JvmChoice::NoCaNames);
        assert_eq!(jvm_key_manager_choice(&[], &names), JvmChoice::NoMatch);
        // Garbage names and certificates match nothing, and do not panic.
        let junk: &[u8] = b"\x30\x03\x01\x02";
        assert_eq!(
            jvm_key_manager_choice(&[CertificateDer::from(vec![1, 2, 3])], &[junk]),
            JvmChoice::NoMatch
        );
    }

    #[test]
    fn names_are_shown_as_rfc_4514() {
        assert_eq!(name_text(&cn_name("Agent CA")), "CN=Agent CA");
        assert_eq!(name_text(b"junk"), "<undecodable name>");
    }
}
