//! The client certificate verifier: webpki chains, pinned leaves, CRLs.
//!
//! Trust certificates are sorted by what they are, and anything that cannot be decoded is a
//! configuration error, never a guess:
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
//! Both paths apply one extended-key-usage rule (none, or one that includes clientAuth —
//! `anyExtendedKeyUsage` alone is not enough), refuse certificates with unknown critical
//! extensions and X.509 v1 certificates, and consult the same revocation index
//! ([`crate::crl`]). A pin deliberately does **not** check the certificate's own signature nor
//! a CA's name constraints: it trusts those exact bytes.
//!
//! The CertificateRequest advertises the subjects of the CAs **and** the issuer (and subject)
//! names of the pinned leaves: the JVM's key manager offers a certificate only if an issuer in
//! its chain is on that list.

use std::fmt;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::{CertificateDer, TrustAnchor, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, Error, SignatureScheme};

use crate::tls::accept::error::HandshakeFailure;
use crate::tls::trust::crl::{Authority, Floating};
use crate::tls::trust::x509::NameKey;

mod build;
mod check;
mod report;

pub(crate) use report::TrustNote;
pub use report::{CrlDetails, TrustDetails, TrustSummary, TrustedCertificate};

use check::display_subject;

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
    /// The failure class, as [`AcceptorStats`](crate::tls::AcceptorStats) counts it.
    pub kind: HandshakeFailure,
    /// What exactly is wrong (for a revoked certificate: which CRL file revoked it).
    pub reason: String,
}

/// A trusted CA.
struct Anchor {
    spki: Vec<u8>,
    name: NameKey,
    subject: String,
    /// Its subjectKeyIdentifier, when it has one.
    key_id: Option<Vec<u8>>,
    /// The authoritative CRL information for what this CA issued.
    crls: Option<Arc<Authority>>,
}

/// A trusted end-entity certificate, accepted as itself.
struct PinnedLeaf {
    der: CertificateDer<'static>,
    not_before: u64,
    not_after: u64,
    serial: Vec<u8>,
    issuer: NameKey,
    authority_key_id: Option<Vec<u8>>,
    /// The configured CA that signed it, when one did.
    issued_by: Option<usize>,
    crls: Option<Arc<Authority>>,
}

/// Verifies client certificates against CA anchors and pinned leaves. See the module docs.
pub(crate) struct ClientVerifier {
    anchors: Vec<Anchor>,
    webpki_anchors: Vec<TrustAnchor<'static>>,
    pinned: Vec<PinnedLeaf>,
    floating: Floating,
    has_crls: bool,
    require_fresh: bool,
    hints: Vec<DistinguishedName>,
    mandatory: bool,
    algorithms: WebPkiSupportedAlgorithms,
    limits: ChainLimits,
}

impl fmt::Debug for ClientVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientVerifier")
            .field("anchors", &self.anchors.len())
            .field("pinned", &self.pinned.len())
            .field("hints", &self.hints.len())
            .field("mandatory", &self.mandatory)
            .finish()
    }
}

impl ClientVerifier {
    /// The CA names the CertificateRequest lists.
    pub(crate) fn hints(&self) -> &[DistinguishedName] {
        &self.hints
    }

    /// The offline verdict: see [`TlsConfig::verify_client_chain`](crate::TlsConfig::verify_client_chain).
    pub(crate) fn judge(
        &self,
        chain: &[CertificateDer<'_>],
        time: SystemTime,
    ) -> Result<ClientAccepted, ClientRefused> {
        let Some((leaf, intermediates)) = chain.split_first() else {
            return Err(ClientRefused {
                kind: HandshakeFailure::NoClientCertificate,
                reason: "no certificate presented".into(),
            });
        };
        let now = UnixTime::since_unix_epoch(time.duration_since(UNIX_EPOCH).unwrap_or_default());
        match self.check(leaf, intermediates, now) {
            Ok(verified) => Ok(ClientAccepted {
                subject: display_subject(leaf.as_ref()),
                trusted_by: verified.trusted_by,
            }),
            Err(refusal) => Err(ClientRefused {
                kind: crate::tls::accept::error::classify_tls(&refusal.error),
                reason: refusal.reason,
            }),
        }
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
        match self.check(end_entity, intermediates, now) {
            Ok(verified) => {
                crate::tls::trust::scope::note_verified(verified.until);
                Ok(ClientCertVerified::assertion())
            }
            Err(refusal) => {
                crate::tls::trust::scope::note_refused(end_entity, Some(refusal.reason));
                Err(refusal.error)
            }
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms).inspect_err(
            |e| {
                crate::tls::trust::scope::note_refused(
                    cert,
                    Some(format!("handshake signature: {e}")),
                )
            },
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms).inspect_err(
            |e| {
                crate::tls::trust::scope::note_refused(
                    cert,
                    Some(format!("handshake signature: {e}")),
                )
            },
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}
