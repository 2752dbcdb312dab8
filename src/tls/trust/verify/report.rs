//! What the trust in use holds, as users read it ([`TrustDetails`], [`TrustSummary`]) and as
//! the server logs it when a configuration is applied.

use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rustls::DistinguishedName;

use crate::tls::trust::x509::utc;

/// What the trust configuration holds, for logs and reload reports.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct TrustSummary {
    /// CA certificates used as trust anchors.
    pub anchors: usize,
    /// End-entity certificates accepted as themselves.
    pub pinned: usize,
    /// Certificate revocation lists.
    pub crls: usize,
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
    /// When it was issued; it is in force from then on (give or take a minute of clock
    /// skew), and set aside until then.
    pub this_update: SystemTime,
    /// Which of its issuer's certificates it speaks for: `every certificate of the issuer`,
    /// or its issuingDistributionPoint's URIs.
    pub scope: String,
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
                    this_update,
                    next_update,
                    scope,
                    path,
                } => {
                    if *this_update > now + crate::tls::trust::crl::CLOCK_SKEW as i64 {
                        details.warnings.push(format!(
                            "{}: CRL of {issuer} (number {number}) is not yet in force: it is \
                             set aside until its thisUpdate {}",
                            path.display(),
                            utc(*this_update)
                        ));
                    }
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
                        this_update: system_time(*this_update),
                        scope: scope.clone(),
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
                TrustNote::UnusableCrl {
                    issuer,
                    reason,
                    path,
                } => details.warnings.push(format!(
                    "{}: CRL of {issuer} cannot be used ({reason}): the certificates of its \
                     issuer are refused until it is fixed or removed",
                    path.display()
                )),
                TrustNote::UnverifiedCrl { issuer, path } => details.warnings.push(format!(
                    "{}: CRL names the trusted CA {issuer} but no trusted key of that name \
                     signed it (a retired or re-keyed CA's CRL?): it is ignored for the \
                     trusted CAs",
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
        this_update: i64,
        next_update: Option<i64>,
        scope: String,
        path: PathBuf,
    },
    FloatingCrl {
        issuer: String,
        path: PathBuf,
    },
    /// A CRL naming a trusted CA whose signature no key of a trusted CA of that name verifies.
    UnverifiedCrl {
        issuer: String,
        path: PathBuf,
    },
    /// A CRL that decodes but cannot be used: its issuer's certificates are refused.
    UnusableCrl {
        issuer: String,
        reason: String,
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
                this_update,
                next_update,
                scope,
                path,
            } => {
                let next = next_update.map_or_else(|| "none".into(), utc);
                tracing::info!(
                    %issuer,
                    %number,
                    this_update = %utc(*this_update),
                    next_update = %next,
                    %scope,
                    path = %path.display(),
                    "CRL"
                );
                let now = unix_now();
                if *this_update > now + crate::tls::trust::crl::CLOCK_SKEW as i64 {
                    tracing::warn!(
                        %issuer,
                        %number,
                        this_update = %utc(*this_update),
                        path = %path.display(),
                        "CRL is not yet in force: it is set aside until its thisUpdate, and the \
                         CRL in force until then stays authoritative"
                    );
                }
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
            Self::UnusableCrl {
                issuer,
                reason,
                path,
            } => tracing::error!(
                %issuer,
                path = %path.display(),
                "CRL cannot be used ({reason}): the certificates of its issuer are refused \
                 (revocation_unknown) until it is fixed or removed"
            ),
            Self::UnverifiedCrl { issuer, path } => tracing::warn!(
                %issuer,
                path = %path.display(),
                "CRL names a trusted CA, but no trusted key of that name signed it (a retired or \
                 re-keyed CA's CRL?): it revokes nothing of the trusted CAs and is ignored for \
                 them; it applies only to an intermediate of that name whose key verifies it"
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
