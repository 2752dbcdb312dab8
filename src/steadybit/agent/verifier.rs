//! The extension's certificate as the agent checks it: pinned end-entity certificates or CAs,
//! with the hostname check only as strict as the agent's mode.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{WebPkiServerVerifier, verify_server_name};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::ParsedCertificate;
use x509_parser::certificate::X509Certificate;
use x509_parser::prelude::FromDer;

use super::{AgentError, HostnameVerification, vars};
use crate::ConfigError;
use crate::tls::certificates_from_file;
use crate::tls::config::load::{self, Source};
use rustls::{CertificateError, DigitallySignedStruct, Error, RootCertStore, SignatureScheme};

/// Verifies the extension's certificate as the agent does: against the pinned end-entity
/// certificates and the CAs of its server-certificate file, forgiving a name mismatch only
/// where the [`HostnameVerification`] mode allows.
#[derive(Debug)]
pub(super) struct AgentServerVerifier {
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

/// CA certificates and pinned end-entity certificates, before the verifier is built.
struct Trust {
    roots: RootCertStore,
    pinned: Vec<Pinned>,
}

impl Default for Trust {
    fn default() -> Self {
        Self {
            roots: RootCertStore::empty(),
            pinned: Vec::new(),
        }
    }
}

impl Trust {
    /// A CA becomes a root; an end-entity certificate is pinned.
    fn add(
        &mut self,
        der: CertificateDer<'static>,
        path: &Path,
        index: usize,
        variable: &'static str,
    ) -> Result<(), AgentError> {
        let invalid = |reason: String| AgentError::File {
            variable,
            source: ConfigError::InvalidCertificate {
                path: path.to_owned(),
                index,
                reason,
            },
        };
        let (_, parsed) =
            X509Certificate::from_der(der.as_ref()).map_err(|e| invalid(e.to_string()))?;
        // Undecodable basicConstraints is an error, never a guess either way.
        let is_ca = parsed
            .basic_constraints()
            .map_err(|e| invalid(format!("basicConstraints does not decode ({e})")))?
            .is_some_and(|bc| bc.value.ca);
        if is_ca {
            self.roots
                .add(der.clone())
                .map_err(|e| invalid(format!("not a usable trust anchor: {e}")))?;
        } else {
            self.pinned.push(Pinned {
                not_before: parsed.validity().not_before.timestamp(),
                not_after: parsed.validity().not_after.timestamp(),
                der,
            });
        }
        Ok(())
    }

    fn verifier(
        self,
        mode: HostnameVerification,
        provider: Arc<CryptoProvider>,
    ) -> Result<AgentServerVerifier, AgentError> {
        let algorithms = provider.signature_verification_algorithms;
        let webpki = if self.roots.is_empty() {
            None
        } else {
            Some(
                WebPkiServerVerifier::builder_with_provider(Arc::new(self.roots), provider)
                    .build()
                    .map_err(|e| Error::General(e.to_string()))?,
            )
        };
        Ok(AgentServerVerifier {
            webpki,
            pinned: self.pinned,
            mode,
            algorithms,
        })
    }
}

impl AgentServerVerifier {
    /// Trusts the certificates of `path` (`STEADYBIT_AGENT_EXTENSIONS_SERVER_CERT`).
    pub(super) fn load(
        path: &Path,
        mode: HostnameVerification,
        provider: Arc<CryptoProvider>,
    ) -> Result<Self, AgentError> {
        let certs = certificates_from_file(path).map_err(|source| AgentError::File {
            variable: vars::SERVER_CERT,
            source,
        })?;
        let mut trust = Trust::default();
        for (i, der) in certs.into_iter().enumerate() {
            trust.add(der, path, i + 1, vars::SERVER_CERT)?;
        }
        trust.verifier(mode, provider)
    }

    /// The default trust store, as the chart documents for an unset server certificate: the
    /// platform's roots (rustls-native-certs: `SSL_CERT_FILE` / `SSL_CERT_DIR` when set, else
    /// the system store), plus the certificates of `extra` (`STEADYBIT_AGENT_EXTRA_CERTS_PATH`,
    /// the chart's `agent.extraCertificates.path`: a file or a directory).
    pub(super) fn platform(
        extra: Option<&Path>,
        mode: HostnameVerification,
        provider: Arc<CryptoProvider>,
    ) -> Result<Self, AgentError> {
        let mut trust = Trust::default();
        let native = rustls_native_certs::load_native_certs();
        for error in &native.errors {
            tracing::warn!(%error, "the platform's trust store: a certificate source could not be read");
        }
        let (added, ignored) = trust.roots.add_parsable_certificates(native.certs);
        tracing::debug!(added, ignored, "the platform's trust store loaded");
        if let Some(extra) = extra {
            let source = Source::Path(extra.to_owned());
            let file_error = |source| AgentError::File {
                variable: vars::EXTRA_CERTS_PATH,
                source,
            };
            let read = source.read().map_err(file_error)?;
            for cert in load::trust_certificates(&source, &read).map_err(file_error)? {
                trust.add(cert.der, &cert.path, cert.index, vars::EXTRA_CERTS_PATH)?;
            }
        }
        if trust.roots.is_empty() && trust.pinned.is_empty() {
            return Err(AgentError::Env {
                variable: vars::SERVER_CERT,
                reason: format!(
                    "not set, and the platform's trust store holds no usable certificate{}: set \
                     it to the extension's tls.crt or its CA (or {})",
                    native
                        .errors
                        .first()
                        .map(|e| format!(" ({e})"))
                        .unwrap_or_default(),
                    vars::EXTRA_CERTS_PATH
                ),
            });
        }
        trust.verifier(mode, provider)
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

/// `STEADYBIT_AGENT_EXTENSIONS_INSECURE_SKIP_VERIFY=true`: the chart's "never in production"
/// switch. Any certificate is accepted, for any name; only the handshake's signatures are still
/// checked (as Go's `InsecureSkipVerify` does), which proves nothing about who the server is.
#[derive(Debug)]
pub(super) struct InsecureVerifier {
    pub(super) algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for InsecureVerifier {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
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
