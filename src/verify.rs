//! The client certificate verifier: webpki chains, pinned leaves, CRLs.
//!
//! Trust certificates are sorted by what they are:
//!
//! * a **CA certificate** (basicConstraints `cA`) becomes a webpki trust anchor: a client chain
//!   that verifies up to it, with the clientAuth usage, is accepted;
//! * an **end-entity certificate** becomes a *pinned leaf*: a client presenting exactly that
//!   certificate is accepted while it is within its validity period. This is what Steadybit's
//!   Helm charts need, as they pass each client secret's own `tls.crt` as trust material. The
//!   handshake still proves possession of the key (rustls checks the CertificateVerify
//!   signature after this verifier accepts the certificate), and a CA certificate presented as
//!   a client's own is refused by webpki.
//!
//! The CertificateRequest advertises the subjects of the CAs **and** the issuer (and subject)
//! names of the pinned leaves: the JVM's key manager offers a certificate only if an issuer in
//! its chain is on that list.

use std::collections::HashSet;
use std::fmt;
use std::sync::Arc;

use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, CertificateRevocationListDer, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{
    CertificateError, DigitallySignedStruct, DistinguishedName, Error, OtherError, RootCertStore,
    SignatureScheme,
};
use x509_parser::certificate::X509Certificate;
use x509_parser::prelude::FromDer;
use x509_parser::revocation_list::CertificateRevocationList;

use crate::config::ClientAuth;
use crate::error::ConfigError;
use crate::load::TrustCert;

/// Limits on the chain a client may present.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ChainLimits {
    /// Most certificates (leaf included).
    pub(crate) max_certs: usize,
    /// Most bytes of DER, all certificates together.
    pub(crate) max_bytes: usize,
}

impl Default for ChainLimits {
    fn default() -> Self {
        Self {
            max_certs: 8,
            max_bytes: 32 * 1024,
        }
    }
}

/// The client presented more certificates, or more bytes of them, than the configured cap.
#[derive(Debug, thiserror::Error)]
#[error(
    "client certificate chain too large: {certs} certificates, {bytes} bytes (limit {max_certs} certificates, {max_bytes} bytes)"
)]
pub struct ChainTooLarge {
    /// Certificates presented, leaf included.
    pub certs: usize,
    /// Bytes of DER presented.
    pub bytes: usize,
    /// The certificate cap.
    pub max_certs: usize,
    /// The byte cap.
    pub max_bytes: usize,
}

/// A trusted end-entity certificate, accepted as itself.
struct PinnedLeaf {
    der: CertificateDer<'static>,
    not_before: u64,
    not_after: u64,
    revoked: bool,
}

/// What the trust configuration holds, for logs and reload reports.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustSummary {
    /// CA certificates used as trust anchors.
    pub anchors: usize,
    /// End-entity certificates accepted as themselves.
    pub pinned: usize,
    /// Certificate revocation lists.
    pub crls: usize,
}

/// Verifies client certificates against CA anchors and pinned leaves. See the module docs.
pub(crate) struct ClientVerifier {
    webpki: Option<Arc<dyn ClientCertVerifier>>,
    pinned: Vec<PinnedLeaf>,
    hints: Vec<DistinguishedName>,
    mandatory: bool,
    algorithms: WebPkiSupportedAlgorithms,
    limits: ChainLimits,
}

impl fmt::Debug for ClientVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientVerifier")
            .field("anchors", &self.webpki.is_some())
            .field("pinned", &self.pinned.len())
            .field("hints", &self.hints.len())
            .field("mandatory", &self.mandatory)
            .finish()
    }
}

impl ClientVerifier {
    pub(crate) fn build(
        trust: &[TrustCert],
        crls: &[(std::path::PathBuf, CertificateRevocationListDer<'static>)],
        mode: ClientAuth,
        limits: ChainLimits,
        provider: &Arc<CryptoProvider>,
    ) -> Result<(Arc<Self>, TrustSummary), ConfigError> {
        // (issuer name DER, serial) of every revoked certificate, for pinned leaves.
        let mut revoked = HashSet::new();
        for (path, crl) in crls {
            let (_, parsed) = CertificateRevocationList::from_der(crl.as_ref()).map_err(|e| {
                ConfigError::InvalidCrl {
                    path: path.clone(),
                    reason: e.to_string(),
                }
            })?;
            for entry in parsed.iter_revoked_certificates() {
                revoked.insert((
                    parsed.issuer().as_raw().to_vec(),
                    entry.raw_serial().to_vec(),
                ));
            }
        }

        let mut roots = RootCertStore::empty();
        let mut pinned = Vec::new();
        let mut hints: Vec<DistinguishedName> = Vec::new();
        let mut seen = HashSet::new();
        let push_hint = |hints: &mut Vec<DistinguishedName>, raw: &[u8]| {
            if !hints.iter().any(|h| h.as_ref() == raw) {
                hints.push(DistinguishedName::from(raw.to_vec()));
            }
        };
        for cert in trust {
            if !seen.insert(cert.der.as_ref().to_vec()) {
                continue;
            }
            let (_, parsed) = X509Certificate::from_der(cert.der.as_ref()).map_err(|e| {
                ConfigError::InvalidCertificate {
                    path: cert.path.clone(),
                    index: cert.index,
                    reason: e.to_string(),
                }
            })?;
            let unusable = |reason: String| ConfigError::UnusableTrust {
                path: cert.path.clone(),
                index: cert.index,
                reason,
            };
            if parsed.is_ca() {
                roots
                    .add(cert.der.clone())
                    .map_err(|e| unusable(e.to_string()))?;
                push_hint(&mut hints, parsed.subject().as_raw());
                continue;
            }
            let client_auth = match parsed.extended_key_usage() {
                Ok(None) => true,
                Ok(Some(eku)) => eku.value.client_auth || eku.value.any,
                Err(e) => return Err(unusable(format!("malformed extendedKeyUsage: {e}"))),
            };
            if !client_auth {
                tracing::warn!(
                    path = %cert.path.display(),
                    index = cert.index,
                    subject = %parsed.subject(),
                    "trust certificate is an end-entity certificate without the clientAuth usage; \
                     it cannot authenticate a client and is ignored"
                );
                continue;
            }
            let validity = parsed.validity();
            pinned.push(PinnedLeaf {
                der: cert.der.clone(),
                not_before: u64::try_from(validity.not_before.timestamp()).unwrap_or(0),
                not_after: u64::try_from(validity.not_after.timestamp()).unwrap_or(0),
                revoked: revoked.contains(&(
                    parsed.issuer().as_raw().to_vec(),
                    parsed.raw_serial().to_vec(),
                )),
            });
            push_hint(&mut hints, parsed.issuer().as_raw());
            push_hint(&mut hints, parsed.subject().as_raw());
        }

        if roots.is_empty() && pinned.is_empty() {
            let path = trust.first().map(|c| c.path.clone()).unwrap_or_default();
            return Err(ConfigError::EmptyTrustSource {
                path,
                reason: "no certificate found that can authenticate a client".into(),
            });
        }

        let summary = TrustSummary {
            anchors: roots.len(),
            pinned: pinned.len(),
            crls: crls.len(),
        };
        let webpki = if roots.is_empty() {
            None
        } else {
            let mut builder =
                WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone());
            if !crls.is_empty() {
                // Only CAs with a configured CRL are checked; the others have none to consult.
                builder = builder
                    .with_crls(crls.iter().map(|(_, c)| c.clone()))
                    .allow_unknown_revocation_status();
            }
            if mode == ClientAuth::Optional {
                builder = builder.allow_unauthenticated();
            }
            Some(builder.build().map_err(|e| match e {
                rustls::server::VerifierBuilderError::InvalidCrl(e) => ConfigError::InvalidCrl {
                    path: crls.first().map(|c| c.0.clone()).unwrap_or_default(),
                    reason: format!("{e:?}"),
                },
                other => ConfigError::Tls(Error::General(other.to_string())),
            })?)
        };

        Ok((
            Arc::new(Self {
                webpki,
                pinned,
                hints,
                mandatory: mode == ClientAuth::Required,
                algorithms: provider.signature_verification_algorithms,
                limits,
            }),
            summary,
        ))
    }

    fn check_limits(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
    ) -> Result<(), Error> {
        let certs = intermediates.len() + 1;
        let bytes = end_entity.len() + intermediates.iter().map(|c| c.len()).sum::<usize>();
        if certs > self.limits.max_certs || bytes > self.limits.max_bytes {
            return Err(Error::InvalidCertificate(CertificateError::Other(
                OtherError(Arc::new(ChainTooLarge {
                    certs,
                    bytes,
                    max_certs: self.limits.max_certs,
                    max_bytes: self.limits.max_bytes,
                })),
            )));
        }
        Ok(())
    }
}

impl ClientVerifier {
    /// The offline verdict: see [`TlsConfig::verify_client_chain`](crate::TlsConfig::verify_client_chain).
    pub(crate) fn judge(
        &self,
        chain: &[CertificateDer<'_>],
        time: std::time::SystemTime,
    ) -> Result<ClientAccepted, ClientRefused> {
        let Some((leaf, intermediates)) = chain.split_first() else {
            return Err(ClientRefused {
                kind: crate::HandshakeFailure::NoClientCertificate,
                reason: "no certificate presented".into(),
            });
        };
        let secs = time
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        let now = UnixTime::since_unix_epoch(secs);
        let subject = crate::identity::ClientIdentity::parse(leaf.as_ref())
            .map(|id| id.subject().to_string())
            .unwrap_or_else(|_| "<unparsable>".into());
        match self.verify_client_cert(leaf, intermediates, now) {
            Ok(_) => Ok(ClientAccepted {
                subject,
                trusted_by: if self.pinned.iter().any(|p| p.der.as_ref() == leaf.as_ref()) {
                    TrustedBy::Pinned
                } else {
                    TrustedBy::Anchor {
                        subject: String::new(),
                    }
                },
            }),
            Err(e) => Err(ClientRefused {
                kind: crate::failure::classify_tls(&e),
                reason: e.to_string(),
            }),
        }
    }
}

impl PinnedLeaf {
    fn check(&self, now: UnixTime) -> Result<(), Error> {
        let secs = now.as_secs();
        if secs < self.not_before {
            return Err(Error::InvalidCertificate(
                CertificateError::NotValidYetContext {
                    time: now,
                    not_before: UnixTime::since_unix_epoch(std::time::Duration::from_secs(
                        self.not_before,
                    )),
                },
            ));
        }
        if secs > self.not_after {
            return Err(Error::InvalidCertificate(
                CertificateError::ExpiredContext {
                    time: now,
                    not_after: UnixTime::since_unix_epoch(std::time::Duration::from_secs(
                        self.not_after,
                    )),
                },
            ));
        }
        if self.revoked {
            return Err(Error::InvalidCertificate(CertificateError::Revoked));
        }
        Ok(())
    }
}

impl ClientCertVerifier for ClientVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        self.mandatory
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &self.hints
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, Error> {
        let result = self.check_limits(end_entity, intermediates).and_then(|()| {
            if let Some(pin) = self
                .pinned
                .iter()
                .find(|p| p.der.as_ref() == end_entity.as_ref())
            {
                return pin.check(now).map(|()| ClientCertVerified::assertion());
            }
            match &self.webpki {
                Some(webpki) => webpki.verify_client_cert(end_entity, intermediates, now),
                None => Err(Error::InvalidCertificate(CertificateError::UnknownIssuer)),
            }
        });
        if result.is_err() {
            crate::failure::note_refused(end_entity);
        }
        result
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

/// How the offline verdict ([`TlsConfig::verify_client_chain`](crate::TlsConfig::verify_client_chain))
/// came to trust a client certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum TrustedBy {
    /// The chain verified up to this trusted CA.
    Anchor {
        /// The CA's subject, RFC 4514.
        subject: String,
    },
    /// The leaf is one of the pinned end-entity certificates.
    Pinned,
}

/// A client certificate chain the configuration accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ClientAccepted {
    /// The leaf's subject, RFC 4514.
    pub subject: String,
    /// What vouched for it.
    pub trusted_by: TrustedBy,
}

/// A client certificate chain the configuration refuses, with the class a handshake would
/// count and the reason it would log.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind}: {reason}")]
#[non_exhaustive]
pub struct ClientRefused {
    /// The failure class, as [`AcceptorStats`](crate::AcceptorStats) counts it.
    pub kind: crate::HandshakeFailure,
    /// What exactly is wrong (for a revoked certificate: which CRL file revoked it).
    pub reason: String,
}
