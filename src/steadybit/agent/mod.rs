//! The agent side of the Steadybit contract: how the agent connects to an extension.
//!
//! Steadybit's agent Helm chart (`agent.extensions.tls.*`) hands the agent these variables:
//!
//! | variable | meaning |
//! |---|---|
//! | `STEADYBIT_AGENT_EXTENSIONS_CLIENT_CERT_CHAIN_FILE` | PEM: the agent's client certificate chain, leaf first |
//! | `STEADYBIT_AGENT_EXTENSIONS_CLIENT_CERT_KEY_FILE` | PEM: its key, plain (PKCS#8, PKCS#1, SEC1) or encrypted PKCS#8 |
//! | `STEADYBIT_AGENT_EXTENSIONS_CLIENT_CERT_PASSWORD` | the key's password, when it is encrypted |
//! | `STEADYBIT_AGENT_EXTENSIONS_SERVER_CERT` | PEM: the extension's certificate, or its CA, to trust; unset: the platform's trust store |
//! | `STEADYBIT_AGENT_EXTRA_CERTS_PATH` | a file or directory of certificates added to the platform's trust store (`agent.extraCertificates.path`) |
//! | `STEADYBIT_AGENT_EXTENSIONS_HOSTNAME_VERIFICATION` | `strict`, `unsafe` or `unsafe_ip_addresses` (default) |
//! | `STEADYBIT_AGENT_EXTENSIONS_INSECURE_SKIP_VERIFY` | `true`: no verification of the extension's certificate at all ("never in production") |
//!
//! Without a server certificate the agent uses "the default certificate pool or those in
//! `agent.extraCertificates`" (the chart's `values.yaml`): [`AgentTls`] reads the platform's
//! roots with `rustls-native-certs` — chosen over `rustls-platform-verifier` because it yields
//! plain roots that this module's own verifier uses with pins and the agent's hostname modes,
//! like a JVM's trust store, and because `SSL_CERT_FILE` / `SSL_CERT_DIR` point it at another
//! bundle on every platform (the documented way to test it, or to use a bundle of one's own).
//!
//! The chart's path mode (`clientCertificate.path` without `key.path`) sets the chain file but
//! no key file; the key is then read from the chain file itself (one PEM holding the chain and
//! its key). A chain file without a key is an error that says which chart value to set.
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
//! use tower_mtls::steadybit::agent::{AgentTls, HostnameVerification};
//!
//! # fn run() -> Result<(), tower_mtls::steadybit::agent::AgentError> {
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
//!
//! # Calling an extension
//!
//! The configuration goes to the HTTP client by value. With reqwest (feature `rustls` or
//! `rustls-no-provider`, and `http2`, on by default, as the configuration offers `h2`), hand
//! it over as a preconfigured backend (`tls_backend_preconfigured` since reqwest 0.13,
//! `use_preconfigured_tls` before; an `Arc` of it is an "unknown TLS backend" at `build`):
//!
//! ```no_run
//! use tower_mtls::steadybit::agent::AgentTls;
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let agent = AgentTls::from_env()?;
//! let client = reqwest::Client::builder()
//!     .tls_backend_preconfigured(agent.client_config()?)
//!     .build()?;
//! let index = client
//!     .get("https://extension-host.steadybit-agent.svc:8080/")
//!     .send()
//!     .await?
//!     .error_for_status()?
//!     .text()
//!     .await?;
//! println!("{index}");
//! # Ok(()) }
//! ```
//!
//! With hyper-util's client, through hyper-rustls's connector (which sets ALPN itself from the
//! HTTP versions it is given, and refuses a configuration that already has some):
//!
//! ```no_run
//! use bytes::Bytes;
//! use http_body_util::{BodyExt, Empty};
//! use hyper_util::client::legacy::Client;
//! use hyper_util::rt::TokioExecutor;
//! use tower_mtls::steadybit::agent::AgentTls;
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let mut config = AgentTls::from_env()?.client_config()?;
//! config.alpn_protocols.clear();
//! let https = hyper_rustls::HttpsConnectorBuilder::new()
//!     .with_tls_config(config)
//!     .https_only()
//!     .enable_http1()
//!     .enable_http2()
//!     .build();
//! let client: Client<_, Empty<Bytes>> = Client::builder(TokioExecutor::new()).build(https);
//! let response = client
//!     .get("https://extension-host.steadybit-agent.svc:8080/".parse()?)
//!     .await?;
//! let body = response.into_body().collect().await?.to_bytes();
//! println!("{}", String::from_utf8_lossy(&body));
//! # Ok(()) }
//! ```

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;

use rustls::client::danger::ServerCertVerifier;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{PrivateKeyDer, ServerName};
use rustls::sign::{CertifiedKey, SingleCertAndKey};
use rustls::{ClientConfig, Error};

use crate::ConfigError;
use crate::tls::certificates_from_file;
use crate::tls::config::load::{self, LoadedFile};

mod jvm;
mod key;
#[cfg(test)]
mod tests;
mod verifier;

pub use jvm::{JvmChoice, jvm_key_manager_choice, name_text};

use key::{encrypted_pkcs8_block, holds_private_key, read};
use verifier::{AgentServerVerifier, InsecureVerifier};

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
    /// `true`: the agent does not verify the extension's certificate at all (the chart's
    /// `agent.extensions.tls.insecureSkipVerify`, "never in production").
    pub const INSECURE_SKIP_VERIFY: &str = "STEADYBIT_AGENT_EXTENSIONS_INSECURE_SKIP_VERIFY";
    /// A file or directory of extra trusted certificates (the chart's
    /// `agent.extraCertificates.path`), added to the platform's trust store when
    /// [`SERVER_CERT`] is unset.
    pub const EXTRA_CERTS_PATH: &str = "STEADYBIT_AGENT_EXTRA_CERTS_PATH";
}

/// Whether the agent checks that the extension's certificate is made out for the name it
/// connects to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
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
    extra_certs: Option<PathBuf>,
    hostname_verification: HostnameVerification,
    insecure_skip_verify: bool,
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
            .field("extra_certs", &self.extra_certs)
            .field("hostname_verification", &self.hostname_verification)
            .field("insecure_skip_verify", &self.insecure_skip_verify)
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
    /// certificate, the platform's trust store.
    pub fn new() -> Self {
        Self {
            client_cert_chain: None,
            client_key: None,
            key_password: None,
            server_cert: None,
            extra_certs: None,
            hostname_verification: HostnameVerification::default(),
            insecure_skip_verify: false,
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
        tls.extra_certs = get(vars::EXTRA_CERTS_PATH).map(PathBuf::from);
        tls.insecure_skip_verify =
            crate::steadybit::boolean(vars::INSECURE_SKIP_VERIFY, get(vars::INSECURE_SKIP_VERIFY))
                .map_err(|e| AgentError::Env {
                    variable: vars::INSECURE_SKIP_VERIFY,
                    reason: match e {
                        ConfigError::Env { reason, .. } => reason,
                        other => other.to_string(),
                    },
                })?
                .unwrap_or(false);
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

    /// Extra trusted certificates (a PEM file or a directory of them) added to the platform's
    /// trust store, which is used when no [`server_cert_file`](Self::server_cert_file) is set.
    pub fn extra_certs_path(mut self, path: impl Into<PathBuf>) -> Self {
        self.extra_certs = Some(path.into());
        self
    }

    /// `true`: accept any server certificate, for any name — no verification at all, as the
    /// chart's `insecureSkipVerify` ("never in production"). Every
    /// [`client_config`](Self::client_config) built so logs a warning.
    pub fn insecure_skip_verify(mut self, skip: bool) -> Self {
        self.insecure_skip_verify = skip;
        self
    }

    /// Whether the extension's certificate goes unverified
    /// ([`insecure_skip_verify`](Self::insecure_skip_verify)).
    pub fn skips_server_verification(&self) -> bool {
        self.insecure_skip_verify
    }

    /// The extra certificates' path, if set.
    pub fn extra_certs_file(&self) -> Option<&Path> {
        self.extra_certs.as_deref()
    }

    /// How the server's name is checked (default
    /// [`UnsafeIpAddresses`](HostnameVerification::UnsafeIpAddresses)).
    pub fn hostname_verification(mut self, mode: HostnameVerification) -> Self {
        self.hostname_verification = mode;
        self
    }

    /// The crypto provider. Defaults to the bundled one (`aws-lc-rs`, else `ring`: see
    /// `tls::default_provider`), and then the process-wide default is never consulted. Built
    /// with neither feature, it defaults to the process default the application installed,
    /// and without one building fails saying so.
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
    ///
    /// By value, as HTTP clients take it: reqwest's `tls_backend_preconfigured(config)`
    /// (`use_preconfigured_tls` before 0.13) accepts a `rustls::ClientConfig` (an `Arc` of one
    /// fails at runtime with "Unknown TLS backend"); tokio-rustls takes `Arc::new(config)`,
    /// hyper-rustls the configuration without ALPN (the [module docs](self) show both
    /// clients).
    pub fn client_config(&self) -> Result<ClientConfig, AgentError> {
        let provider = crate::crypto::provider(self.provider.clone())?;
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
        Ok(config)
    }

    /// The verifier [`client_config`](Self::client_config) checks the extension's certificate
    /// with, for tools that wrap it (to record what the server presented, say).
    pub fn server_cert_verifier(&self) -> Result<Arc<dyn ServerCertVerifier>, AgentError> {
        self.server_cert_verifier_with(crate::crypto::provider(self.provider.clone())?)
    }

    fn server_cert_verifier_with(
        &self,
        provider: Arc<CryptoProvider>,
    ) -> Result<Arc<dyn ServerCertVerifier>, AgentError> {
        if self.insecure_skip_verify {
            tracing::warn!(
                "{}=true: the extension's certificate is NOT verified — anyone can pose as the \
                 extension; never in production",
                vars::INSECURE_SKIP_VERIFY
            );
            return Ok(Arc::new(InsecureVerifier {
                algorithms: provider.signature_verification_algorithms,
            }));
        }
        Ok(Arc::new(match &self.server_cert {
            Some(server_cert) => {
                AgentServerVerifier::load(server_cert, self.hostname_verification, provider)?
            }
            None => AgentServerVerifier::platform(
                self.extra_certs.as_deref(),
                self.hostname_verification,
                provider,
            )?,
        }))
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
            // The chart's path mode without `key.path`: one PEM file with chain and key.
            (Some(cert), None) => {
                let file = read(vars::CLIENT_CERT_CHAIN_FILE, cert)?;
                if !holds_private_key(&file.bytes) {
                    return Err(AgentError::Env {
                        variable: vars::CLIENT_CERT_KEY_FILE,
                        reason: format!(
                            "not set, and {} ({}) holds no private key: set the chart's \
                             agent.extensions.tls.clientCertificate.key.path (or use \
                             clientCertificate.fromSecret, which sets both files), or put the \
                             key into the chain file",
                            vars::CLIENT_CERT_CHAIN_FILE,
                            cert.display()
                        ),
                    });
                }
                (cert, cert)
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
