//! The verdict on one chain: limits, the pinned path, the webpki path with revocation of
//! every certificate in it, and how long the verdict holds.

use std::cell::{Cell, RefCell};
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::{CertificateError, Error, OtherError};
use webpki::{EndEntityCert, KeyUsage, VerifiedPath};
use x509_parser::prelude::FromDer;

use crate::identity::ClientIdentity;
use crate::tls::accept::error::ChainTooLarge;
use crate::tls::trust::crl::{Authority, CertFacts, Revoked};
use crate::tls::trust::x509::{NameKey, cert_not_after};

use super::{ClientVerifier, PinnedLeaf, TrustedBy};

impl ClientVerifier {
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
    pub(super) fn check(
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
                if matches!(
                    error,
                    Error::InvalidCertificate(CertificateError::BadSignature)
                ) && let Some(refusal) =
                    self.other_key_of_a_trusted_name(end_entity, intermediates)
                {
                    return Err(refusal);
                }
                Err(match revoked.into_inner() {
                    Some(revoked)
                        if matches!(
                            error,
                            Error::InvalidCertificate(
                                CertificateError::Revoked
                                    | CertificateError::UnknownRevocationStatus
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

    /// A chain whose issuer has a trusted CA's name but whose signature no trusted key of that
    /// name verifies, and which does not claim (by its authorityKeyIdentifier) to be signed by
    /// one of them: issued by another CA of that name (re-keyed, retired, or an impostor). That
    /// is an unknown CA (`unknown_ca`), not a corrupted signature (`decrypt_error`), and the
    /// operator reads which name it was.
    fn other_key_of_a_trusted_name(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
    ) -> Option<Refusal> {
        for der in std::iter::once(end_entity).chain(intermediates) {
            let Some(signed) = crate::tls::trust::x509::Signed::parse(der.as_ref()) else {
                continue;
            };
            let Ok((_, cert)) = x509_parser::certificate::X509Certificate::from_der(der.as_ref())
            else {
                continue;
            };
            let issuer = NameKey::of(cert.issuer());
            let same_name: Vec<&super::Anchor> =
                self.anchors.iter().filter(|a| a.name == issuer).collect();
            if same_name.is_empty()
                || same_name
                    .iter()
                    .any(|a| signed.verified_by(&a.spki, &self.algorithms))
            {
                continue;
            }
            let claimed = cert
                .extensions()
                .iter()
                .find_map(|ext| match ext.parsed_extension() {
                    x509_parser::extensions::ParsedExtension::AuthorityKeyIdentifier(aki) => {
                        aki.key_identifier.as_ref().map(|k| k.0.to_vec())
                    }
                    _ => None,
                });
            if claimed.is_some_and(|id| same_name.iter().any(|a| a.key_id.as_ref() == Some(&id))) {
                // It names the trusted key and does not verify with it: a bad signature.
                return None;
            }
            return Some(Refusal {
                error: Error::InvalidCertificate(CertificateError::UnknownIssuer),
                reason: format!(
                    "issued by a CA named {}: a CA of that name is trusted, but not the key \
                     that signed this certificate (the CA was re-keyed or retired, or this is \
                     another CA with the same name)",
                    same_name[0].subject
                ),
            });
        }
        None
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
                let der = cert.der();
                let facts = CertFacts::new(der.as_ref(), cert.serial(), i > 0);
                match authority.check(&facts, now.as_secs(), self.require_fresh) {
                    Ok(not_revoked) => bound = bound.min(not_revoked.until),
                    Err(refusal) => {
                        let error = match &refusal {
                            Revoked::Listed { .. } => webpki::Error::CertRevoked,
                            Revoked::Unknown { .. } => webpki::Error::UnknownRevocationStatus,
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
}

/// A certificate's subject for messages; `<unparsable>` when it does not parse.
pub(super) fn display_subject(der: &[u8]) -> String {
    ClientIdentity::parse(der).map_or_else(|_| "<unparsable>".into(), |id| id.subject().to_string())
}

/// An accepted chain.
pub(super) struct Verified {
    pub(super) trusted_by: TrustedBy,
    /// Until when (Unix seconds) this verdict holds: the earliest notAfter in the path, or a
    /// required-fresh CRL's nextUpdate.
    pub(super) until: u64,
}

/// A refused chain: the error rustls turns into an alert, and the reason to log.
pub(super) struct Refusal {
    pub(super) error: Error,
    pub(super) reason: String,
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
    pub(super) fn check(&self, now: UnixTime, require_fresh: bool) -> Result<Verified, Refusal> {
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
            let facts = CertFacts::new(self.der.as_ref(), &self.serial, false);
            match authority.check(&facts, secs, require_fresh) {
                Ok(not_revoked) => until = until.min(not_revoked.until),
                Err(Revoked::Listed { reason }) => {
                    return Err(Refusal {
                        error: Error::InvalidCertificate(CertificateError::Revoked),
                        reason,
                    });
                }
                Err(Revoked::Unknown { reason }) => {
                    return Err(Refusal {
                        error: Error::InvalidCertificate(CertificateError::UnknownRevocationStatus),
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
pub(super) fn pki_error(error: webpki::Error) -> Error {
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
