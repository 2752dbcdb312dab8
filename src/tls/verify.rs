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

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, HashSet};
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, CertificateRevocationListDer, TrustAnchor, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{
    CertificateError, DigitallySignedStruct, DistinguishedName, Error, OtherError, SignatureScheme,
};
use webpki::{EndEntityCert, KeyUsage, VerifiedPath};
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::ParsedExtension;
use x509_parser::prelude::{FromDer, X509Error};
use x509_parser::x509::X509Version;

use super::crl::{Authority, Crl, Floating, NameKey, Revoked, Signed, cert_not_after, utc};
use super::error::{ChainTooLarge, ConfigError, HandshakeFailure};
use super::load::TrustCert;
use crate::identity::ClientIdentity;

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

/// One trusted certificate, as [`TrustDetails`] lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct TrustedCertificate {
    /// Subject, RFC 4514.
    pub subject: String,
    /// End of its validity period.
    pub not_after: SystemTime,
    /// The file it was read from (or the label of in-memory material).
    pub path: PathBuf,
}

/// One configured CRL, as [`TrustDetails`] lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct CrlDetails {
    /// Its issuer, RFC 4514.
    pub issuer: String,
    /// Its CRLNumber in hex (`none` when absent).
    pub number: String,
    /// When it says the next CRL is due; `None` when it does not say.
    pub next_update: Option<SystemTime>,
    /// The file it was read from.
    pub path: PathBuf,
}

/// Everything the client trust of a configuration holds, and every warning the server logs
/// about it: from [`TlsConfig::trust_details`](crate::TlsConfig::trust_details).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct TrustDetails {
    /// CA certificates used as trust anchors.
    pub anchors: Vec<TrustedCertificate>,
    /// End-entity certificates accepted as themselves.
    pub pinned: Vec<TrustedCertificate>,
    /// Certificate revocation lists.
    pub crls: Vec<CrlDetails>,
    /// The warnings logged when this configuration was applied (skipped certificates, CRLs
    /// for no configured issuer, directories that also trust a CA, stale CRLs), one line each.
    pub warnings: Vec<String>,
    /// Bytes of the CA names the CertificateRequest lists (each DER name plus its 2-byte
    /// length). JVM clients refuse a CertificateRequest over 32 KiB in all.
    pub certificate_request_ca_names_bytes: usize,
}

fn system_time(secs: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(u64::try_from(secs).unwrap_or(0))
}

impl TrustDetails {
    pub(crate) fn from_notes(notes: &[TrustNote], hints: &[DistinguishedName]) -> Self {
        let mut details = Self {
            certificate_request_ca_names_bytes: hints.iter().map(|h| h.as_ref().len() + 2).sum(),
            ..Self::default()
        };
        let now = unix_now();
        for note in notes {
            match note {
                TrustNote::Anchor {
                    subject,
                    not_after,
                    path,
                } => details.anchors.push(TrustedCertificate {
                    subject: subject.clone(),
                    not_after: system_time(*not_after),
                    path: path.clone(),
                }),
                TrustNote::Pinned {
                    subject,
                    not_after,
                    path,
                } => details.pinned.push(TrustedCertificate {
                    subject: subject.clone(),
                    not_after: system_time(*not_after),
                    path: path.clone(),
                }),
                TrustNote::Crl {
                    issuer,
                    number,
                    next_update,
                    path,
                } => {
                    if let Some(next) = next_update.filter(|n| *n <= now) {
                        details.warnings.push(format!(
                            "{}: CRL of {issuer} is stale: its nextUpdate {} passed {} s ago",
                            path.display(),
                            utc(next),
                            now - next
                        ));
                    }
                    details.crls.push(CrlDetails {
                        issuer: issuer.clone(),
                        number: number.clone(),
                        next_update: next_update.map(system_time),
                        path: path.clone(),
                    });
                }
                TrustNote::FloatingCrl { issuer, path } => details.warnings.push(format!(
                    "{}: CRL of {issuer} matches no configured CA and no pinned certificate's \
                     issuer; it applies only to an intermediate CA of that name that a client \
                     presents",
                    path.display()
                )),
                TrustNote::Skipped {
                    path,
                    index,
                    subject,
                    reason,
                } => details.warnings.push(format!(
                    "{}: certificate #{index} ({subject}) ignored: {reason}",
                    path.display()
                )),
                TrustNote::MixedDirectory {
                    directory,
                    ca_subject,
                    pinned_subject,
                } => details.warnings.push(format!(
                    "{}: the directory trusts the CA {ca_subject} besides the pinned \
                     {pinned_subject}: every certificate that CA issued is admitted",
                    directory.display()
                )),
            }
        }
        details
    }
}

/// A trusted CA.
struct Anchor {
    spki: Vec<u8>,
    name: NameKey,
    subject: String,
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

/// Something to tell the operator about the trust in use: logged at startup and on each
/// applied reload (never for a configuration that is not applied).
#[derive(Debug, Clone)]
pub(crate) enum TrustNote {
    Anchor {
        subject: String,
        not_after: i64,
        path: PathBuf,
    },
    Pinned {
        subject: String,
        not_after: i64,
        path: PathBuf,
    },
    Crl {
        issuer: String,
        number: String,
        next_update: Option<i64>,
        path: PathBuf,
    },
    FloatingCrl {
        issuer: String,
        path: PathBuf,
    },
    Skipped {
        path: PathBuf,
        index: usize,
        subject: String,
        reason: String,
    },
    MixedDirectory {
        directory: PathBuf,
        ca_subject: String,
        pinned_subject: String,
    },
}

impl TrustNote {
    pub(crate) fn log(&self) {
        match self {
            Self::Anchor {
                subject,
                not_after,
                path,
            } => tracing::info!(
                %subject,
                not_after = %utc(*not_after),
                path = %path.display(),
                "trusted CA for client certificates"
            ),
            Self::Pinned {
                subject,
                not_after,
                path,
            } => tracing::info!(
                %subject,
                not_after = %utc(*not_after),
                path = %path.display(),
                "pinned client certificate: trusted as itself"
            ),
            Self::Crl {
                issuer,
                number,
                next_update,
                path,
            } => {
                let next = next_update.map_or_else(|| "none".into(), utc);
                tracing::info!(%issuer, %number, next_update = %next, path = %path.display(), "CRL");
                let now = unix_now();
                if let Some(next) = next_update.filter(|n| *n <= now) {
                    tracing::warn!(
                        %issuer,
                        next_update = %utc(next),
                        stale_for = %format!("{} s", now - next),
                        path = %path.display(),
                        "CRL is stale: its nextUpdate has passed; it is still applied \
                         (require fresh CRLs to refuse this issuer's clients instead)"
                    );
                }
            }
            Self::FloatingCrl { issuer, path } => tracing::warn!(
                %issuer,
                path = %path.display(),
                "CRL matches no configured CA and no pinned certificate's issuer; it is applied \
                 only to an intermediate CA of that name that a client presents, once its \
                 signature verifies against that intermediate"
            ),
            Self::Skipped {
                path,
                index,
                subject,
                reason,
            } => tracing::warn!(
                path = %path.display(),
                index,
                %subject,
                "trust certificate ignored: {reason}"
            ),
            Self::MixedDirectory {
                directory,
                ca_subject,
                pinned_subject,
            } => tracing::warn!(
                directory = %directory.display(),
                ca = %ca_subject,
                pinned = %pinned_subject,
                "trust directory also holds a CA certificate: every certificate that CA issued is \
                 admitted, not only the pinned one; to trust that client alone, list its tls.crt \
                 file instead of the directory, or add a ClientCertLayer rule"
            ),
        }
    }
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
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

/// What one trust certificate is.
enum Kind {
    Ca,
    Leaf,
    /// Cannot authenticate a client; the reason says why.
    Skip(String),
}

/// Sorts one trust certificate, refusing what cannot be decoded.
fn classify(cert: &TrustCert, parsed: &X509Certificate<'_>) -> Result<Kind, ConfigError> {
    let unusable = |reason: String| ConfigError::UnusableTrust {
        path: cert.path.clone(),
        index: cert.index,
        reason,
    };
    let mut seen = HashSet::new();
    for ext in parsed.extensions() {
        let name = match ext.oid.to_id_string().as_str() {
            "2.5.29.19" => "basicConstraints",
            "2.5.29.15" => "keyUsage",
            "2.5.29.37" => "extendedKeyUsage",
            _ => continue,
        };
        if !seen.insert(name) {
            return Err(unusable(format!("its {name} extension appears twice")));
        }
        if let ParsedExtension::ParseError { error } = ext.parsed_extension() {
            return Err(unusable(format!(
                "its {name} extension does not decode ({error})"
            )));
        }
        if ext.parsed_extension().unsupported() {
            return Err(unusable(format!("its {name} extension does not decode")));
        }
    }
    if parsed.version() != X509Version::V3 {
        return Err(unusable(format!(
            "it is an X.509 version {} certificate: without extensions it can be neither a CA \
             (no basicConstraints) nor a client certificate to pin; reissue it as version 3",
            parsed.version().0 + 1
        )));
    }
    let is_ca = parsed
        .basic_constraints()
        .map_err(|e| {
            unusable(format!(
                "its basicConstraints extension does not decode ({e})"
            ))
        })?
        .is_some_and(|bc| bc.value.ca);
    let key_usage = parsed
        .key_usage()
        .map_err(|e| unusable(format!("its keyUsage extension does not decode ({e})")))?;
    if is_ca {
        if key_usage.is_some_and(|ku| !ku.value.key_cert_sign()) {
            return Err(unusable(
                "a CA certificate whose keyUsage lacks keyCertSign cannot issue client \
                 certificates"
                    .into(),
            ));
        }
        return Ok(Kind::Ca);
    }
    let eku = parsed.extended_key_usage().map_err(|e| {
        unusable(format!(
            "its extendedKeyUsage extension does not decode ({e})"
        ))
    })?;
    if let Some(eku) = eku {
        if !eku.value.client_auth {
            let mut has = Vec::new();
            if eku.value.server_auth {
                has.push("serverAuth");
            }
            if eku.value.any {
                has.push("anyExtendedKeyUsage");
            }
            if eku.value.code_signing || eku.value.email_protection || !eku.value.other.is_empty() {
                has.push("others");
            }
            return Ok(Kind::Skip(format!(
                "an end-entity certificate whose extendedKeyUsage lacks clientAuth (it has: {}); \
                 it cannot authenticate a client",
                has.join(", ")
            )));
        }
    }
    // The same parse a chained leaf gets: unknown critical extensions and the like.
    EndEntityCert::try_from(&cert.der)
        .map_err(|e| unusable(format!("it cannot be pinned as a client certificate: {e}")))?;
    Ok(Kind::Leaf)
}

impl ClientVerifier {
    pub(crate) fn build(
        trust: &[TrustCert],
        crls: &[(PathBuf, CertificateRevocationListDer<'static>)],
        mode: ClientAuth,
        limits: ChainLimits,
        require_fresh: bool,
        provider: &Arc<CryptoProvider>,
    ) -> Result<(Arc<Self>, TrustSummary, Vec<TrustNote>), ConfigError> {
        let algorithms = provider.signature_verification_algorithms;
        let mut notes = Vec::new();
        let mut anchors: Vec<Anchor> = Vec::new();
        let mut webpki_anchors = Vec::new();
        let mut pinned: Vec<PinnedLeaf> = Vec::new();
        let mut hints: Vec<DistinguishedName> = Vec::new();
        let push_hint = |hints: &mut Vec<DistinguishedName>, raw: &[u8]| {
            if !hints.iter().any(|h| h.as_ref() == raw) {
                hints.push(DistinguishedName::from(raw.to_vec()));
            }
        };
        // Per source: how many certificates were usable, and why the others were not.
        let mut usable: HashMap<&PathBuf, (usize, Vec<String>)> = HashMap::new();
        // Per directory source: a pinned subject and a CA subject it contributed.
        let mut mixed: HashMap<&PathBuf, (Option<String>, Option<String>)> = HashMap::new();
        let mut seen = HashSet::new();

        for cert in trust {
            let entry = usable.entry(&cert.source).or_default();
            if !seen.insert(cert.der.as_ref().to_vec()) {
                entry.0 += 1;
                continue;
            }
            let (_, parsed) =
                X509Certificate::from_der(cert.der.as_ref()).map_err(|e| match e {
                    x509_parser::nom::Err::Error(X509Error::DuplicateExtensions)
                    | x509_parser::nom::Err::Failure(X509Error::DuplicateExtensions) => {
                        ConfigError::UnusableTrust {
                            path: cert.path.clone(),
                            index: cert.index,
                            reason: "an extension appears twice".into(),
                        }
                    }
                    e => ConfigError::InvalidCertificate {
                        path: cert.path.clone(),
                        index: cert.index,
                        reason: e.to_string(),
                    },
                })?;
            let subject = display_subject(cert.der.as_ref());
            let not_after = parsed.validity().not_after.timestamp();
            match classify(cert, &parsed)? {
                Kind::Skip(reason) => {
                    entry.1.push(format!(
                        "certificate #{} of {}: {reason}",
                        cert.index,
                        cert.path.display()
                    ));
                    notes.push(TrustNote::Skipped {
                        path: cert.path.clone(),
                        index: cert.index,
                        subject,
                        reason,
                    });
                }
                Kind::Ca => {
                    let anchor = webpki::anchor_from_trusted_cert(&cert.der).map_err(|e| {
                        ConfigError::UnusableTrust {
                            path: cert.path.clone(),
                            index: cert.index,
                            reason: format!("not a usable trust anchor: {e}"),
                        }
                    })?;
                    entry.0 += 1;
                    let anchor = anchor.to_owned();
                    anchors.push(Anchor {
                        spki: webpki::spki_for_anchor(&anchor).as_ref().to_vec(),
                        name: NameKey::of(parsed.subject()),
                        subject: subject.clone(),
                        crls: None,
                    });
                    webpki_anchors.push(anchor);
                    push_hint(&mut hints, parsed.subject().as_raw());
                    if cert.from_directory {
                        mixed.entry(&cert.source).or_default().1 = Some(subject.clone());
                    }
                    notes.push(TrustNote::Anchor {
                        subject,
                        not_after,
                        path: cert.path.clone(),
                    });
                }
                Kind::Leaf => {
                    entry.0 += 1;
                    let validity = parsed.validity();
                    let authority_key_id =
                        parsed
                            .extensions()
                            .iter()
                            .find_map(|ext| match ext.parsed_extension() {
                                ParsedExtension::AuthorityKeyIdentifier(aki) => {
                                    aki.key_identifier.as_ref().map(|k| k.0.to_vec())
                                }
                                _ => None,
                            });
                    pinned.push(PinnedLeaf {
                        der: cert.der.clone(),
                        not_before: u64::try_from(validity.not_before.timestamp()).unwrap_or(0),
                        not_after: u64::try_from(validity.not_after.timestamp()).unwrap_or(0),
                        serial: super::crl::serial_key(parsed.raw_serial()).to_vec(),
                        issuer: NameKey::of(parsed.issuer()),
                        authority_key_id,
                        issued_by: None,
                        crls: None,
                    });
                    push_hint(&mut hints, parsed.issuer().as_raw());
                    push_hint(&mut hints, parsed.subject().as_raw());
                    if cert.from_directory {
                        mixed.entry(&cert.source).or_default().0 = Some(subject.clone());
                    }
                    notes.push(TrustNote::Pinned {
                        subject,
                        not_after,
                        path: cert.path.clone(),
                    });
                }
            }
        }

        // Every source must contribute something; say why one did not.
        let mut sources: Vec<_> = usable.into_iter().collect();
        sources.sort_by(|a, b| a.0.cmp(b.0));
        for (source, (count, reasons)) in sources {
            if count == 0 {
                return Err(ConfigError::EmptyTrustSource {
                    path: source.clone(),
                    reason: format!(
                        "no certificate here can authenticate a client: {}",
                        reasons.join("; ")
                    ),
                });
            }
        }
        if anchors.is_empty() && pinned.is_empty() {
            return Err(ConfigError::EmptyTrustSource {
                path: trust.first().map(|c| c.path.clone()).unwrap_or_default(),
                reason: "no certificate found that can authenticate a client".into(),
            });
        }
        let mut mixed: Vec<_> = mixed.into_iter().collect();
        mixed.sort_by(|a, b| a.0.cmp(b.0));
        for (directory, pair) in mixed {
            if let (Some(pinned_subject), Some(ca_subject)) = pair {
                notes.push(TrustNote::MixedDirectory {
                    directory: directory.clone(),
                    ca_subject,
                    pinned_subject,
                });
            }
        }

        // Which configured CA signed each pinned leaf, if any: its CRLs are that CA's.
        for pin in &mut pinned {
            if let Some(signed) = Signed::parse(pin.der.as_ref()) {
                pin.issued_by = anchors
                    .iter()
                    .position(|a| a.name == pin.issuer && signed.verified_by(&a.spki, &algorithms));
            }
        }

        // Bind each CRL to the issuers whose key verifies it (see crate::crl).
        let mut anchor_crls: Vec<Vec<Arc<Crl>>> = anchors.iter().map(|_| Vec::new()).collect();
        let mut pinned_crls: Vec<Vec<Arc<Crl>>> = pinned.iter().map(|_| Vec::new()).collect();
        let mut floating = Floating::default();
        for (path, der) in crls {
            let crl = Arc::new(Crl::parse(path, der.as_ref())?);
            notes.push(TrustNote::Crl {
                issuer: crl.issuer_display.clone(),
                number: crl.number_display(),
                next_update: crl.next_update,
                path: path.clone(),
            });
            let mut bound = false;
            let mut same_name = Vec::new();
            for (i, anchor) in anchors.iter().enumerate() {
                if anchor.name == crl.issuer {
                    same_name.push(anchor.subject.as_str());
                    if crl.verified_by(&anchor.spki, &algorithms) {
                        anchor_crls[i].push(crl.clone());
                        bound = true;
                    }
                }
            }
            for (j, pin) in pinned.iter().enumerate() {
                let compatible = match (&pin.authority_key_id, &crl.authority_key_id) {
                    (Some(a), Some(b)) => a == b,
                    _ => true,
                };
                if pin.issued_by.is_none() && pin.issuer == crl.issuer && compatible {
                    pinned_crls[j].push(crl.clone());
                    bound = true;
                }
            }
            if bound {
                continue;
            }
            if !same_name.is_empty() {
                return Err(ConfigError::InvalidCrl {
                    path: path.clone(),
                    reason: format!(
                        "its issuer {} is a trusted CA, but its signature verifies with the key \
                         of no trusted CA of that name: it is not that CA's CRL",
                        crl.issuer_display
                    ),
                });
            }
            notes.push(TrustNote::FloatingCrl {
                issuer: crl.issuer_display.clone(),
                path: path.clone(),
            });
            floating.push(crl);
        }
        for (anchor, crls) in anchors.iter_mut().zip(&anchor_crls) {
            let refs: Vec<&Crl> = crls.iter().map(|c| &**c).collect();
            anchor.crls = Authority::select(&refs);
        }
        for (pin, crls) in pinned.iter_mut().zip(&pinned_crls) {
            pin.crls = match pin.issued_by {
                Some(i) => anchors[i].crls.clone(),
                None => {
                    let refs: Vec<&Crl> = crls.iter().map(|c| &**c).collect();
                    Authority::select(&refs)
                }
            };
        }

        let summary = TrustSummary {
            anchors: anchors.len(),
            pinned: pinned.len(),
            crls: crls.len(),
        };
        Ok((
            Arc::new(Self {
                anchors,
                webpki_anchors,
                pinned,
                floating,
                has_crls: !crls.is_empty(),
                require_fresh,
                hints,
                mandatory: mode == ClientAuth::Required,
                algorithms,
                limits,
            }),
            summary,
            notes,
        ))
    }

    /// The CA names the CertificateRequest lists.
    pub(crate) fn hints(&self) -> &[DistinguishedName] {
        &self.hints
    }

    fn check_limits(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
    ) -> Result<(), Refusal> {
        let certs = intermediates.len() + 1;
        let bytes = end_entity.len() + intermediates.iter().map(|c| c.len()).sum::<usize>();
        if certs > self.limits.max_certs || bytes > self.limits.max_bytes {
            let too_large = ChainTooLarge {
                certs,
                bytes,
                max_certs: self.limits.max_certs,
                max_bytes: self.limits.max_bytes,
            };
            return Err(Refusal {
                reason: too_large.to_string(),
                error: Error::InvalidCertificate(CertificateError::Other(OtherError(Arc::new(
                    too_large,
                )))),
            });
        }
        Ok(())
    }

    /// The one verdict, for handshakes and the offline check alike.
    fn check(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<Verified, Refusal> {
        self.check_limits(end_entity, intermediates)?;
        if let Some(pin) = self
            .pinned
            .iter()
            .find(|p| p.der.as_ref() == end_entity.as_ref())
        {
            return pin.check(now, self.require_fresh);
        }
        if self.webpki_anchors.is_empty() {
            return Err(Refusal::from(Error::InvalidCertificate(
                CertificateError::UnknownIssuer,
            )));
        }
        let cert = EndEntityCert::try_from(end_entity).map_err(|e| Refusal::from(pki_error(e)))?;
        let revoked: RefCell<Option<Revoked>> = RefCell::new(None);
        let until = Cell::new(u64::MAX);
        let check_path = |path: &VerifiedPath<'_>| self.check_path(path, now, &revoked, &until);
        match cert.verify_for_usage(
            self.algorithms.all,
            &self.webpki_anchors,
            intermediates,
            now,
            KeyUsage::client_auth(),
            None,
            Some(&check_path),
        ) {
            Ok(path) => {
                let spki = webpki::spki_for_anchor(path.anchor());
                let subject = self
                    .anchors
                    .iter()
                    .find(|a| a.spki == spki.as_ref())
                    .map(|a| a.subject.clone())
                    .unwrap_or_default();
                Ok(Verified {
                    trusted_by: TrustedBy::Anchor { subject },
                    until: until.get(),
                })
            }
            Err(e) => {
                let error = pki_error(e);
                Err(match revoked.into_inner() {
                    Some(revoked)
                        if matches!(
                            error,
                            Error::InvalidCertificate(
                                CertificateError::Revoked
                                    | CertificateError::ExpiredRevocationListContext { .. }
                            )
                        ) =>
                    {
                        Refusal {
                            reason: revoked.reason().to_owned(),
                            error,
                        }
                    }
                    _ => Refusal::from(error),
                })
            }
        }
    }

    /// Revocation of every certificate of a candidate path, and how long the path holds.
    fn check_path(
        &self,
        path: &VerifiedPath<'_>,
        now: UnixTime,
        revoked: &RefCell<Option<Revoked>>,
        until: &Cell<u64>,
    ) -> Result<(), webpki::Error> {
        let mut certs: Vec<&webpki::Cert<'_>> = vec![path.end_entity()];
        certs.extend(path.intermediate_certificates());
        let mut bound = u64::MAX;
        for cert in &certs {
            match cert_not_after(cert.der().as_ref()).and_then(|t| u64::try_from(t).ok()) {
                Some(t) => bound = bound.min(t),
                None => return Err(webpki::Error::BadDerTime),
            }
        }
        if self.has_crls {
            let anchor_spki = webpki::spki_for_anchor(path.anchor());
            for (i, cert) in certs.iter().enumerate() {
                let issuer_spki = match certs.get(i + 1) {
                    Some(next) => next.subject_public_key_info(),
                    None => anchor_spki.clone(),
                };
                let issuer = NameKey::from_contents(cert.issuer()).ok_or(webpki::Error::BadDer)?;
                let Some(authority) = self.authority_for(&issuer, issuer_spki.as_ref()) else {
                    continue;
                };
                match authority.check(cert.serial(), now.as_secs(), self.require_fresh) {
                    Ok(()) => {
                        if self.require_fresh {
                            if let Some(next) = authority.next_update {
                                bound = bound.min(u64::try_from(next - 1).unwrap_or(0));
                            }
                        }
                    }
                    Err(refusal) => {
                        let error = match &refusal {
                            Revoked::Listed { .. } => webpki::Error::CertRevoked,
                            Revoked::Stale { next_update, .. } => webpki::Error::CrlExpired {
                                time: now,
                                next_update: UnixTime::since_unix_epoch(Duration::from_secs(
                                    *next_update,
                                )),
                            },
                        };
                        *revoked.borrow_mut() = Some(refusal);
                        return Err(error);
                    }
                }
            }
        }
        until.set(bound);
        Ok(())
    }

    /// The revocation authority for certificates issued by the CA named `issuer` whose key is
    /// `spki`: a configured CA's CRLs, else CRLs kept for intermediates that this key verifies.
    fn authority_for(&self, issuer: &NameKey, spki: &[u8]) -> Option<Arc<Authority>> {
        if let Some(anchor) = self
            .anchors
            .iter()
            .find(|a| a.spki == spki && &a.name == issuer)
        {
            return anchor.crls.clone();
        }
        if self.floating.is_empty() {
            return None;
        }
        self.floating.authority(issuer, spki, &self.algorithms)
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
                kind: super::error::classify_tls(&refusal.error),
                reason: refusal.reason,
            }),
        }
    }
}

/// A certificate's subject for messages; `<unparsable>` when it does not parse.
fn display_subject(der: &[u8]) -> String {
    ClientIdentity::parse(der).map_or_else(|_| "<unparsable>".into(), |id| id.subject().to_string())
}

/// An accepted chain.
struct Verified {
    trusted_by: TrustedBy,
    /// Until when (Unix seconds) this verdict holds: the earliest notAfter in the path, or a
    /// required-fresh CRL's nextUpdate.
    until: u64,
}

/// A refused chain: the error rustls turns into an alert, and the reason to log.
struct Refusal {
    error: Error,
    reason: String,
}

impl From<Error> for Refusal {
    fn from(error: Error) -> Self {
        Self {
            reason: error.to_string(),
            error,
        }
    }
}

impl PinnedLeaf {
    fn check(&self, now: UnixTime, require_fresh: bool) -> Result<Verified, Refusal> {
        let secs = now.as_secs();
        let at = |s: u64| UnixTime::since_unix_epoch(Duration::from_secs(s));
        if secs < self.not_before {
            return Err(Refusal::from(Error::InvalidCertificate(
                CertificateError::NotValidYetContext {
                    time: now,
                    not_before: at(self.not_before),
                },
            )));
        }
        if secs > self.not_after {
            return Err(Refusal::from(Error::InvalidCertificate(
                CertificateError::ExpiredContext {
                    time: now,
                    not_after: at(self.not_after),
                },
            )));
        }
        let mut until = self.not_after;
        if let Some(authority) = &self.crls {
            match authority.check(&self.serial, secs, require_fresh) {
                Ok(()) => {
                    if require_fresh {
                        if let Some(next) = authority.next_update {
                            until = until.min(u64::try_from(next - 1).unwrap_or(0));
                        }
                    }
                }
                Err(Revoked::Listed { reason }) => {
                    return Err(Refusal {
                        error: Error::InvalidCertificate(CertificateError::Revoked),
                        reason,
                    });
                }
                Err(Revoked::Stale {
                    next_update,
                    reason,
                }) => {
                    return Err(Refusal {
                        error: Error::InvalidCertificate(
                            CertificateError::ExpiredRevocationListContext {
                                time: now,
                                next_update: at(next_update),
                            },
                        ),
                        reason,
                    });
                }
            }
        }
        Ok(Verified {
            trusted_by: TrustedBy::Pinned,
            until,
        })
    }
}

/// rustls-webpki's error as the rustls error a handshake reports (the mapping rustls itself
/// uses); what rustls has no variant for stays typed inside `CertificateError::Other`.
fn pki_error(error: webpki::Error) -> Error {
    use webpki::Error as W;
    let cert = |e: CertificateError| Error::InvalidCertificate(e);
    match error {
        W::BadDer | W::BadDerTime | W::TrailingData(_) => cert(CertificateError::BadEncoding),
        W::CertNotValidYet { time, not_before } => {
            cert(CertificateError::NotValidYetContext { time, not_before })
        }
        W::CertExpired { time, not_after } => {
            cert(CertificateError::ExpiredContext { time, not_after })
        }
        W::InvalidCertValidity => cert(CertificateError::Expired),
        W::UnknownIssuer => cert(CertificateError::UnknownIssuer),
        W::CertRevoked => cert(CertificateError::Revoked),
        W::UnknownRevocationStatus => cert(CertificateError::UnknownRevocationStatus),
        W::CrlExpired { time, next_update } => {
            cert(CertificateError::ExpiredRevocationListContext { time, next_update })
        }
        W::InvalidSignatureForPublicKey => cert(CertificateError::BadSignature),
        #[allow(deprecated)]
        W::UnsupportedSignatureAlgorithm | W::UnsupportedSignatureAlgorithmForPublicKey => {
            cert(CertificateError::UnsupportedSignatureAlgorithm)
        }
        #[allow(deprecated)]
        W::RequiredEkuNotFound | W::RequiredEkuNotFoundContext(_) => {
            cert(CertificateError::InvalidPurpose)
        }
        other => cert(CertificateError::Other(OtherError(Arc::new(other)))),
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
                super::session::note_verified(verified.until);
                Ok(ClientCertVerified::assertion())
            }
            Err(refusal) => {
                super::error::note_refused(end_entity, Some(refusal.reason));
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
            |e| super::error::note_refused(cert, Some(format!("handshake signature: {e}"))),
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms).inspect_err(
            |e| super::error::note_refused(cert, Some(format!("handshake signature: {e}"))),
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}
